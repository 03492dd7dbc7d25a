/**
 * The agent's control-plane speed and size with many Services:
 *
 *   1. reconcile N Services x E endpoints from nothing into the maps (targets: N=10,000,
 *      E=10 under 2 s), timed for the datapath alone (service table -> maps) and for the
 *      whole path (objects -> model -> service table -> maps);
 *   2. a real `kernway agent` process over a directory of N Services: one endpoint
 *      change, from the file write to the map update seen in the pinned map, repeated
 *      (target: p99 under 50 ms), and its resident memory (target: under 80 MiB).
 *
 *   node dist/bench/lb/reconcile.js [--services 10000] [--endpoints 10] [--files 10000] [--changes 200]
 *
 * --files: how many manifest files the Services are spread over (default one per Service).
 *
 * Needs root (a lab for the cgroup and bpffs folder). Prints one JSON line.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { Lab } from '../../lab/index.js';
import { buildModel } from '../../model/model.js';
import { buildServiceTable } from '../../model/service-table.js';
import type { SourcedObject } from '../../k8s/types.js';
import { ServiceSync } from '../../agent/datapath/service-sync.js';
import { loadSockLb, openPinnedMaps, uninstall } from '../../agent/datapath/sock-lb.js';
import { encodeSvcKey, IPPROTO_TCP } from '../../agent/datapath/codec.js';
import { serviceObject, sliceObject, writeManifest } from '../../agent/demo/manifests.js';
import { invokedDirectly } from './main-guard.js';

const NODE = 'bench-node';

function vipOf(i: number): string {
  return `10.96.${(i >> 8) & 255}.${i & 255}`;
}
function endpointOf(i: number, j: number, gen = 0): string {
  const n = i * 16 + j + gen * 7;
  return `10.${100 + ((n >> 16) & 63)}.${(n >> 8) & 255}.${n & 255}`;
}
/** The manifest files: Services spread evenly over `files` files; gens[i] shifts Service i's first endpoint. */
function writeFiles(dir: string, services: number, endpoints: number, files: number, gens: Map<number, number>, only?: number): void {
  const per = Math.ceil(services / files);
  for (let f = 0; f < files; f++) {
    if (only !== undefined && Math.floor(only / per) !== f) continue;
    const objs: Array<Record<string, unknown>> = [];
    for (let i = f * per; i < Math.min(services, (f + 1) * per); i++) objs.push(...objectsOf(i, endpoints, gens.get(i) ?? 0));
    writeManifest(dir, `svc-${f}.yaml`, objs);
  }
}

function objectsOf(i: number, endpoints: number, gen = 0): Array<Record<string, unknown>> {
  const name = `svc-${i}`;
  return [
    serviceObject({ name, namespace: 'bench', clusterIPs: [vipOf(i + 1)], ports: [{ port: 80, targetPort: 8080 }] }),
    sliceObject({
      name: `${name}-1`, namespace: 'bench', service: name, ports: [{ port: 8080 }],
      endpoints: Array.from({ length: endpoints }, (_, j) => ({ ip: endpointOf(i, j, j === 0 ? gen : 0) })),
    }),
  ];
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

async function reconcileFromNothing(lab: Lab, services: number, endpoints: number): Promise<Record<string, number>> {
  const srcs: SourcedObject[] = [];
  for (let i = 0; i < services; i++) {
    objectsOf(i, endpoints).forEach((object, index) => srcs.push({ object: object as SourcedObject['object'], file: `svc-${i}.yaml`, index }));
  }
  const bpffs = join(lab.bpffsDir, 'reconcile');
  const lb = await loadSockLb({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs });
  try {
    const sync = new ServiceSync(lb.maps);
    const t0 = performance.now();
    const model = buildModel(srcs);
    const table = buildServiceTable(model, { nodeName: NODE });
    const t1 = performance.now();
    const r = sync.reconcile(table);
    const t2 = performance.now();
    if (r.created !== services) throw new Error(`created ${r.created} frontends, expected ${services}`);
    // A second pass with nothing changed: the cost of a no-op reconcile.
    const t3 = performance.now();
    sync.reconcile(buildServiceTable(buildModel(srcs), { nodeName: NODE }));
    const t4 = performance.now();
    return {
      modelMs: +(t1 - t0).toFixed(1), datapathMs: +(t2 - t1).toFixed(1), totalMs: +(t2 - t0).toFixed(1),
      mapWrites: r.writes, noopReconcileMs: +(t4 - t3).toFixed(1),
    };
  } finally {
    lb.close();
    uninstall(bpffs);
  }
}

/**
 * A real `kernway agent` process over N Services: its resident memory, and the time from
 * an EndpointSlice file write to the switch of that Service's entry in the pinned
 * kw_svc map (polled from this process, so it is the kernel's view, not the agent's).
 */
async function agentProcess(lab: Lab, services: number, endpoints: number, files: number, changes: number): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'kernway-bench-'));
  const bpffs = join(lab.bpffsDir, 'agent');
  const main = fileURLToPath(new URL('../../cli/main.js', import.meta.url));
  const gens = new Map<number, number>();
  try {
    writeFiles(dir, services, endpoints, files, gens);
    const t0 = performance.now();
    const child = spawn(process.execPath, [main, 'agent', '--standalone', dir, '--node-name', NODE, '--cgroup', lab.cgroupPath,
      '--bpffs', bpffs, '--admin-socket', join(dir, '.admin.sock'), '--metrics-address', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      await new Promise<void>((resolve, reject) => {
        const rl = createInterface({ input: child.stderr! });
        const timer = setTimeout(() => reject(new Error('agent not running within 180 s')), 180_000);
        // Keep reading after that: a pipe nobody drains would block the agent's log writes.
        rl.on('line', (l) => { if (l.includes('"msg":"agent running"')) { clearTimeout(timer); resolve(); } });
        child.once('exit', (c) => { clearTimeout(timer); reject(new Error(`agent exited ${c}`)); });
      });
      const startMs = performance.now() - t0;
      const rss = (): { rss: number; hwm: number } => {
        const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
        const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
        return { rss: +(kb('VmRSS') / 1024).toFixed(1), hwm: +(kb('VmHWM') / 1024).toFixed(1) };
      };
      const atReady = rss();

      const maps = openPinnedMaps(bpffs);
      const samples: number[] = [];
      try {
        for (let k = 0; k < changes; k++) {
          const i = (k * 7919) % services;
          const key = encodeSvcKey({ vip: vipOf(i + 1), port: 80, proto: IPPROTO_TCP });
          const before = maps.kw_svc.lookup(key)!.toString('hex');
          gens.set(i, k + 1);
          const tw = performance.now();
          writeFiles(dir, services, endpoints, files, gens, i);
          for (;;) {
            const now = maps.kw_svc.lookup(key)?.toString('hex');
            if (now !== undefined && now !== before) break;
            if (performance.now() - tw > 5000) throw new Error(`change ${k} not in the map within 5 s`);
            await new Promise((r) => setImmediate(r));
          }
          samples.push(performance.now() - tw);
          await new Promise((r) => setTimeout(r, 10));
        }
      } finally {
        for (const m of Object.values(maps)) m.close?.();
      }
      // V8 hands start-up garbage back to the system once allocation calms down.
      await new Promise((r) => setTimeout(r, 10_000));
      const settled = rss();
      return {
        agentStartMs: +startMs.toFixed(0),
        endpointChange: { changes: samples.length, p50Ms: +percentile(samples, 50).toFixed(1), p99Ms: +percentile(samples, 99).toFixed(1), maxMs: +Math.max(...samples).toFixed(1) },
        memory: { rssAtReadyMiB: atReady.rss, rssSettledMiB: settled.rss, peakMiB: settled.hwm },
      };
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    }
  } finally {
    uninstall(bpffs);
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function reconcileBench(opts: { services: number; endpoints: number; files: number; changes: number }): Promise<Record<string, unknown>> {
  const lab = await Lab.create({ tag: 'benchrec' });
  const undo = lab.destroyOnSignals();
  try {
    const fromNothing = await reconcileFromNothing(lab, opts.services, opts.endpoints);
    const agent = await agentProcess(lab, opts.services, opts.endpoints, opts.files, opts.changes);
    return { bench: 'lb-reconcile', ...opts, fromNothing, agent };
  } finally {
    undo();
    await lab.destroy();
  }
}

if (invokedDirectly(import.meta.url)) {
  const { values } = parseArgs({ options: {
    services: { type: 'string', default: '10000' }, endpoints: { type: 'string', default: '10' }, changes: { type: 'string', default: '200' },
    files: { type: 'string', default: '10000' },
  } });
  reconcileBench({ services: Number(values.services), endpoints: Number(values.endpoints), files: Number(values.files), changes: Number(values.changes) })
    .then((r) => console.log(JSON.stringify(r)), (e: unknown) => { console.error(e); process.exitCode = 1; });
}
