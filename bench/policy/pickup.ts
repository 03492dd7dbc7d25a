/**
 * How fast a new pod is picked up (its tc programs attached) by the policy engine fed by
 * the standalone source, as the agent runs it:
 *   - veth after manifest (the kubelet's usual order): from the moment the lab starts
 *     creating the pod's veth to tc attached; the engine learns of it from `ip monitor`;
 *   - manifest after veth: from the manifest written to tc attached (the directory watch,
 *     its debounce, the model, the engine, one `ip` read of routes and links).
 *
 *   node dist/bench/policy/pickup.js [--pods 10] [--debounce-ms 20]
 *
 * Needs root (a lab). Prints one JSON line with p50 and max of each, in milliseconds.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Lab } from '../../lab/index.js';
import { PolicyEngine } from '../../agent/datapath/policy-engine.js';
import { MODEL, StandaloneSource, type StandaloneSnapshot } from '../../agent/standalone.js';
import { invokedDirectly } from '../lb/main-guard.js';

const NODE = 'bench-node';

function manifest(name: string, ips: string[]): string {
  return JSON.stringify({
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: 'bench', labels: { app: 'x' }, annotations: { 'kernway.io/cgroup': `pod-${name}` } },
    spec: { nodeName: NODE }, status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) },
  });
}

async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setImmediate(r));
  }
}

export async function pickupBench(opts: { pods: number; debounceMs: number }): Promise<Record<string, unknown>> {
  const lab = await Lab.create({ tag: 'benchpick' });
  const undo = lab.destroyOnSignals();
  const dir = mkdtempSync(join(tmpdir(), 'kernway-bench-pickup-'));
  let engine: PolicyEngine | undefined;
  let source: StandaloneSource | undefined;
  const write = (file: string, text: string): void => {
    writeFileSync(join(dir, `.${file}`), text);
    renameSync(join(dir, `.${file}`), join(dir, file));
  };
  try {
    engine = await PolicyEngine.start({ nodeName: NODE, cgroupPath: lab.cgroupPath, bpffsDir: lab.bpffsDir, netns: lab.nodeNsPath });
    source = new StandaloneSource(dir, { debounceMs: opts.debounceMs });
    const first = await source.start();
    const e = engine;
    e.update({ pods: first.model.pods, namespaces: first.model.namespaces });
    source.on(MODEL, (s: StandaloneSnapshot) => e.update({ pods: s.model.pods, namespaces: s.model.namespaces }));
    const attached = (key: string): boolean => e.endpoints.list().some((x) => x.key === key && x.status === 'attached');
    const vethAfter: number[] = [];
    const manifestAfter: number[] = [];
    let n = 2;
    for (let i = 0; i < opts.pods; i++) {
      // Veth after manifest.
      const a = `a${i}`;
      write(`${a}.json`, manifest(a, [`10.244.0.${n}`]));
      await until(() => e.endpoints.list().some((x) => x.key === `bench/${a}`));
      const t0 = performance.now();
      const addA = lab.addPod(a);
      await until(() => attached(`bench/${a}`));
      vethAfter.push(performance.now() - t0);
      await addA;
      n++;
      // Manifest after veth.
      const b = `b${i}`;
      const pod = await lab.addPod(b);
      n++;
      const t1 = performance.now();
      write(`${b}.json`, manifest(b, [pod.ipv4, pod.ipv6]));
      await until(() => attached(`bench/${b}`));
      manifestAfter.push(performance.now() - t1);
    }
    const stat = (xs: number[]) => {
      const s = [...xs].sort((x, y) => x - y);
      return { p50: +s[Math.floor(s.length / 2)]!.toFixed(1), max: +s[s.length - 1]!.toFixed(1) };
    };
    return { bench: 'policy-pickup', unit: 'ms', pods: opts.pods, debounceMs: opts.debounceMs, vethAfterManifest: stat(vethAfter), manifestAfterVeth: stat(manifestAfter) };
  } finally {
    source?.close();
    if (engine) {
      await engine.endpoints.detachAll().catch(() => {});
      await engine.close().catch(() => {});
    }
    undo();
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (invokedDirectly(import.meta.url)) {
  const { values } = parseArgs({ options: { pods: { type: 'string', default: '10' }, 'debounce-ms': { type: 'string', default: '20' } } });
  pickupBench({ pods: Number(values.pods), debounceMs: Number(values['debounce-ms']) }).then(
    (r) => { console.log(JSON.stringify(r)); },
    (e: unknown) => { console.error(`bench/policy/pickup: ${(e as Error).message}`); process.exitCode = 1; },
  );
}
