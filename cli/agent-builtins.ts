/**
 * The Node.js built-in modules `kernway agent` loads, taken before its V8 flags change
 * (common/heap.ts `leaveOutTurbofanAndSparkplug`): Node.js compiles a built-in from a code cache embedded
 * in its binary, which V8 accepts only while its flags hash as they did when node was built.
 * Once the agent sets `--no-turbofan` every built-in loaded afterwards is compiled from its
 * source (node's own count: `compiledWithoutCache`), which touches more of the binary's pages
 * and leaves more malloc. Measured in a bare Node.js 24 with TurboFan left out after loading
 * them: the standalone agent's built-ins 0.85 MiB of RSS less, with node:http2 and node:tls
 * (the API path's) 1.0-1.2 MiB less (docs/kubernetes-api.md, "Eleventh session").
 *
 * Only modules the agent loads anyway: those its command's module graph imports (test/agent/
 * fixed-cost.test.ts checks each is), and node:http2 and node:tls on the Kubernetes API path,
 * which its source loads when it starts.
 */

/** What `import('./agent.js')` loads, public names (their internal modules come with them). */
const EVERY_AGENT = ['string_decoder', 'os', 'stream', 'stream/promises', 'perf_hooks', 'net', 'module', 'crypto', 'dgram',
  'child_process', 'v8', 'vm', 'worker_threads', 'assert', 'http'];

/** The Kubernetes API source's connection (sources/kube-config.ts): TLS and HTTP/2. */
const API_PATH = ['tls', 'http2'];

/** The built-ins to load before the agent's flags are set, for the agent's command-line arguments. */
export function agentBuiltins(argv: readonly string[]): string[] {
  const standalone = argv.some((a) => a === '--standalone' || a.startsWith('--standalone='));
  return (standalone ? EVERY_AGENT : [...EVERY_AGENT, ...API_PATH]).map((m) => `node:${m}`);
}
