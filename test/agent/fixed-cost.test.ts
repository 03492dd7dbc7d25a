/**
 * The agent's fixed cost: importing `kernway agent`'s modules loads neither undici nor
 * node:http2. An ESM import of node:http reads its lazy `WebSocket` getters, which load
 * both (58.6 against 45.1 MiB of RSS in an empty Node.js 24 process); the agent takes
 * node:http with process.getBuiltinModule. gRPC (http2) loads only when the feed serves.
 *
 * Nor node:https, node:tls, node:zlib or @opentelemetry/api: prom-client's package entry
 * loads them (its Pushgateway, the exemplars of process_cpu_*); the agent takes its
 * registry and metric files one by one (agent/metrics/prom.ts): 3.3 MiB of RSS.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../common/version.js';

describe("the agent's fixed cost", () => {
  it('its command module graph loads node:http but neither undici nor node:http2', () => {
    const script = `
      await import(${JSON.stringify(pathToFileURL(join(projectRoot(), 'dist', 'cli', 'agent.js')).href)});
      console.log(JSON.stringify(process.moduleLoadList.filter((m) => /undici|^NativeModule http2?$/.test(m))));`;
    const loaded = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as string[];
    expect(loaded).toContain('NativeModule http'); // the module graph was loaded
    expect(loaded.filter((m) => m.includes('undici'))).toEqual([]);
    expect(loaded).not.toContain('NativeModule http2');
  });

  it('nor node:https, node:tls, node:zlib, prom-client\'s entry or @opentelemetry/api, and it still serves the process metrics', () => {
    const script = `
      const { command } = await import(${JSON.stringify(pathToFileURL(join(projectRoot(), 'dist', 'cli', 'agent.js')).href)});
      const { AgentMetrics } = await import(${JSON.stringify(pathToFileURL(join(projectRoot(), 'dist', 'agent', 'metrics', 'registry.js')).href)});
      const text = await new AgentMetrics().text();
      const { createRequire } = await import('node:module');
      const cjs = Object.keys(createRequire(import.meta.url).cache).map((f) => f.slice(f.lastIndexOf('node_modules/') + 13));
      console.log(JSON.stringify({ command: typeof command.run, text, cjs,
        builtins: process.moduleLoadList.filter((m) => /^NativeModule (https|tls|zlib|crypto)$/.test(m)) }));`;
    const r = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as
      { command: string; text: string; cjs: string[]; builtins: string[] };
    expect(r.command).toBe('function');
    expect(r.cjs).toContain('prom-client/lib/registry.js'); // the module graph was loaded
    expect(r.cjs.filter((f) => f.startsWith('@opentelemetry/') || f === 'prom-client/index.js' || f === 'prom-client/lib/pushgateway.js')).toEqual([]);
    expect(r.builtins.filter((m) => m !== 'NativeModule crypto')).toEqual([]);
    // The process metrics collectDefaultMetrics gives, process_cpu_* written by the agent itself.
    for (const name of ['process_cpu_user_seconds_total', 'process_cpu_system_seconds_total', 'process_cpu_seconds_total',
      'process_resident_memory_bytes', 'process_start_time_seconds', 'process_open_fds', 'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds', 'nodejs_version_info', 'nodejs_gc_duration_seconds']) {
      expect(r.text, name).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
    }
    expect(Number(/^process_cpu_seconds_total (\S+)$/m.exec(r.text)?.[1])).toBeGreaterThan(0);
  });

  it("nor the elected agent's duties (Lease, status writer, waypoint controller): they load with the Kubernetes API source", () => {
    const script = `
      const { registerHooks } = await import('node:module');
      const seen = [];
      registerHooks({ load(url, ctx, next) { seen.push(url); return next(url, ctx); } });
      await import(${JSON.stringify(pathToFileURL(join(projectRoot(), 'dist', 'cli', 'agent.js')).href)});
      console.log(JSON.stringify(seen.filter((u) => u.includes('/dist/')).map((u) => u.slice(u.indexOf('/dist/') + 6))));`;
    const loaded = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as string[];
    expect(loaded).toContain('agent/agent.js');
    expect(loaded.filter((f) => f.startsWith('agent/cluster/') || f.startsWith('sources/kube-'))).toEqual([]);
  });
});

describe("the built-ins the agent takes before its V8 flags change (cli/agent-builtins.ts)", () => {
  const url = (f: string): string => JSON.stringify(pathToFileURL(join(projectRoot(), 'dist', f)).href);
  /** A child process that imports the agent's command, with TurboFan left out first (after `preload` built-ins): node's own counts. */
  const run = (preload: string): { loaded: string[]; withoutCache: string[] } => {
    const script = `
      const { leaveOutTurbofanAndSparkplug } = await import(${url('common/heap.js')});
      leaveOutTurbofanAndSparkplug(${preload});
      await import(${url('cli/agent.js')});
      await import(${url('sources/kube-config.js')});
      const { createRequire } = await import('node:module');
      const { internalBinding } = createRequire(import.meta.url)('internal/test/binding');
      console.log(JSON.stringify({ loaded: process.moduleLoadList, withoutCache: [...internalBinding('builtins').getCacheUsage().compiledWithoutCache] }));`;
    return JSON.parse(execFileSync(process.execPath, ['--no-warnings', '--expose-internals', '--input-type=module', '-e', script], { encoding: 'utf8' })) as
      { loaded: string[]; withoutCache: string[] };
  };

  it('are modules its command (and on the API path, its source) loads anyway, each compiled from node\'s code cache', async () => {
    const { agentBuiltins } = await import('../../cli/agent-builtins.js');
    const standalone = agentBuiltins(['--standalone', '/srv/manifests']);
    const api = agentBuiltins(['--kubeconfig', '/k']);
    expect(agentBuiltins(['--standalone=/srv/manifests'])).toEqual(standalone);
    expect(api.filter((m) => !standalone.includes(m))).toEqual(['node:tls', 'node:http2']);

    // Without the preload: every one of them is loaded by the module graph (and node:http2 by the
    // API source's connection, which takes it when it connects), compiled from source after the flag.
    const after = run('[]');
    const names = (l: readonly string[]): string[] => l.map((m) => m.slice('node:'.length));
    for (const m of names(standalone)) expect(after.loaded, m).toContain(`NativeModule ${m}`);
    expect(after.loaded).toContain('NativeModule tls');
    expect(after.withoutCache).toContain('http');
    expect(after.withoutCache).toContain('tls');

    // With it: none of them is compiled without the cache.
    const before = run(JSON.stringify(api));
    expect(names(api).filter((m) => before.withoutCache.includes(m))).toEqual([]);
    expect(before.loaded).toContain('NativeModule http2');
  });
});
