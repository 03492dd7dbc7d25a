/**
 * The agent → waypoint feed (docs/feed.md), measured:
 *
 *   node --expose-gc dist/bench/feed.js [--namespaces 100] [--services 10000] [--changes 200] [--routes 1000]
 *
 * 1. The agent's feed server (agent/feed/server.ts, in this process) holds `--services`
 *    Services with their EndpointSlices (10 endpoints each) spread over `--namespaces`
 *    namespaces, each with a Gateway and a probe HTTPRoute; `--client-processes` (4) child
 *    processes connect one waypoint feed client per namespace over a Unix socket (the waypoint's own path:
 *    sources/feed-source.ts → model builder → waypoint config → routing table).
 * 2. Change → connected waypoint latency: `--changes` HTTPRoute changes and as many
 *    EndpointSlice changes, one every 20 ms to a rotating namespace, each stamped with the
 *    time it was made; the client reports when its routing table has it. p50/p99/max.
 * 3. The agent's cost per connected waypoint: heap and RSS before and after the clients
 *    synced (with --expose-gc: after a full GC), divided by their number.
 * 4. RSS of a real `kernway waypoint --agent` process fed `--routes` HTTPRoutes (default
 *    Node flags), against the same waypoint reading the same objects from --manifests.
 *
 * Every line printed is JSON; load averages are recorded with each measurement.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { createLogger } from '../common/log.js';
import { FeedServer } from '../agent/feed/server.js';
import type { K8sObject, SourcedObject } from '../k8s/types.js';
import { parseFeedAddress } from '../sources/feed/protocol.js';
import { FeedSource } from '../sources/feed-source.js';
import { ModelConfigSource } from '../waypoint/config/source.js';
import { buildRoutingTable } from '../waypoint/routing/table.js';

const { values } = parseArgs({
  options: {
    namespaces: { type: 'string', default: '100' },
    services: { type: 'string', default: '10000' },
    changes: { type: 'string', default: '200' },
    routes: { type: 'string', default: '1000' },
    child: { type: 'string' },
    'client-processes': { type: 'string', default: '4' },
    from: { type: 'string', default: '0' },
    socket: { type: 'string' },
  },
});

const now = (): number => performance.timeOrigin + performance.now();
const MAIN = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'cli', 'main.js');

function src(object: K8sObject, file: string): SourcedObject {
  return { object, file, index: 0 };
}

function route(ns: string, name: string, path: string, backend = 'svc-0'): K8sObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: ns },
    spec: { parentRefs: [{ name: 'gw' }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: path } }], backendRefs: [{ name: backend, port: 80 }] }] },
  } as K8sObject;
}

function service(ns: string, i: number, vip: string, prefix = 'svc'): K8sObject {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: `${prefix}-${i}`, namespace: ns }, spec: { clusterIP: vip, ports: [{ port: 80, targetPort: 8080 }] } } as K8sObject;
}

function slice(ns: string, i: number, base: number, nodeName = 'node-a', prefix = 'svc'): K8sObject {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `${prefix}-${i}-1`, namespace: ns, labels: { 'kubernetes.io/service-name': `${prefix}-${i}` } },
    addressType: 'IPv4', ports: [{ port: 8080, protocol: 'TCP' }],
    endpoints: Array.from({ length: 10 }, (_, e) => ({ addresses: [`10.${100 + (base >> 16)}.${(base >> 8) & 255}.${(base & 255) + e}`], conditions: { ready: true }, nodeName })),
  } as K8sObject;
}

function gateway(ns: string, port: number): K8sObject {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: ns }, spec: { gatewayClassName: 'kernway', listeners: [{ name: 'http', port, protocol: 'HTTP' }] } } as K8sObject;
}

const CLASS: K8sObject = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'kernway' }, spec: { controllerName: 'kernway.io/gateway-controller' } } as K8sObject;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!.toFixed(2);
}

function vmRss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The child: one waypoint feed client per namespace; prints `synced` once all are, then one line per stamp seen. */
async function child(socket: string, from: number, namespaces: number): Promise<void> {
  let synced = 0;
  const seen = new Map<string, string>();
  await Promise.all(Array.from({ length: namespaces }, async (_, k) => {
    const n = from + k;
    const ns = `ns-${n}`;
    const source = new ModelConfigSource(new FeedSource({ address: parseFeedAddress('--agent', `unix://${socket}`), namespace: ns, name: `bench-${n}` }));
    await source.start((u) => {
      buildRoutingTable(u.config, { namespace: ns, listenAddress: '127.0.0.1' });
      u.settle?.();
      const t = now();
      const r = u.config.routes.find((x) => x.meta.name === 'probe');
      const p = r?.rules[0]?.matches[0]?.path.value ?? '';
      const stamps = [p.slice(3)];
      const eps = u.config.model.slicesByService.get(`${ns}/svc-0`)?.[0]?.endpoints;
      const node = eps && eps.length > 0 ? eps.nodeName(0) ?? '' : '';
      if (node.startsWith('t')) stamps.push(node.slice(1));
      for (const s of stamps) {
        if (!s || seen.get(`${ns}/${s.length}`) === s) continue;
        seen.set(`${ns}/${s.length}`, s);
        if (/^\d+$/.test(s)) process.stdout.write(`${JSON.stringify({ ns, stamp: s, ms: t - Number(s) / 1000 })}\n`);
      }
    });
    synced++;
  }));
  process.stdout.write(`${JSON.stringify({ synced })}\n`);
  setInterval(() => undefined, 1 << 30);
}

async function main(): Promise<void> {
  const N = Number(values.namespaces), S = Number(values.services), changes = Number(values.changes), R = Number(values.routes);
  const dir = mkdtempSync(join(tmpdir(), 'kw-bench-feed-'));
  const socket = join(dir, 'feed.sock');
  const log = createLogger('bench-feed', 'silent');
  const server = new FeedServer({ addresses: [parseFeedAddress('--feed-address', `unix://${socket}`)], log, agentId: 'bench' });
  const objects: SourcedObject[] = [src(CLASS, 'class.yaml')];
  const perNs = Math.ceil(S / N);
  for (let n = 0; n < N; n++) {
    const ns = `ns-${n}`;
    objects.push(src({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } } as K8sObject, `${ns}/ns.yaml`), src(gateway(ns, 10000 + n), `${ns}/gw.yaml`), src(route(ns, 'probe', '/p/0'), `${ns}/probe.yaml`));
    for (let i = 0; i < perNs && n * perNs + i < S; i++) {
      const k = n * perNs + i;
      objects.push(src(service(ns, i, `10.${96 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`), `${ns}/svc-${i}.yaml`), src(slice(ns, i, k * 16), `${ns}/slice-${i}.yaml`));
    }
  }
  server.update(objects, []);
  await server.start();
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.(); gc?.();
  const before = process.memoryUsage();

  // The clients in a few processes (a real waypoint is a process of its own with a small heap).
  const P = Math.max(1, Math.min(N, Number(values['client-processes'])));
  const per = Math.ceil(N / P);
  const kids = Array.from({ length: P }, (_, p) => spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', '1', '--socket', socket,
    '--from', String(p * per), '--namespaces', String(Math.min(per, N - p * per))], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const latencies: Record<'route' | 'endpoints', number[]> = { route: [], endpoints: [] };
  const kindOf = new Map<string, 'route' | 'endpoints'>();
  let syncedAt = 0;
  const t0 = now();
  let syncedKids = 0;
  const synced = new Promise<void>((resolve) => {
    for (const c of kids) {
      createInterface({ input: c.stdout! }).on('line', (l) => {
        const m = JSON.parse(l) as { synced?: number; stamp?: string; ms?: number };
        if (m.synced !== undefined) { if (++syncedKids === P) { syncedAt = now(); resolve(); } return; }
        const k = kindOf.get(m.stamp!);
        if (k) latencies[k].push(m.ms!);
      });
    }
  });
  await synced;
  const connectMs = syncedAt - t0;
  gc?.(); gc?.();
  const after = process.memoryUsage();
  const load0 = loadavg();
  console.log(JSON.stringify({
    measure: 'agent cost per connected waypoint', waypoints: server.connected, clientProcesses: P, services: S, objects: objects.length, snapshotAllMs: +connectMs.toFixed(0),
    heapPerWaypointKiB: +((after.heapUsed - before.heapUsed) / N / 1024).toFixed(1), rssPerWaypointKiB: +((after.rss - before.rss) / N / 1024).toFixed(1),
    agentHeapUsedMiB: +(after.heapUsed / 1048576).toFixed(1), agentRssMiB: +(after.rss / 1048576).toFixed(1), gc: gc !== undefined, load: load0,
  }));

  const prev = new Map<string, SourcedObject>();
  for (const o of objects) prev.set(o.file, o);
  for (let i = 1; i <= changes * 2; i++) {
    const n = i % N, ns = `ns-${n}`;
    const stamp = String(Math.round(now() * 1000));
    const isRoute = i % 2 === 0;
    kindOf.set(stamp, isRoute ? 'route' : 'endpoints');
    const file = isRoute ? `${ns}/probe.yaml` : `${ns}/slice-0.yaml`;
    const next = src(isRoute ? route(ns, 'probe', `/p/${stamp}`) : slice(ns, 0, n * perNs * 16, `t${stamp}`), file);
    server.update([next], [prev.get(file)!]);
    prev.set(file, next);
    await new Promise((r) => setTimeout(r, 20));
  }
  const end = Date.now() + 5000;
  while (latencies.route.length + latencies.endpoints.length < changes * 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  for (const k of ['route', 'endpoints'] as const) {
    const xs = latencies[k];
    console.log(JSON.stringify({ measure: `${k} change -> connected waypoint`, waypoints: N, services: S, changes, seen: xs.length, p50Ms: pct(xs, 50), p99Ms: pct(xs, 99), maxMs: pct(xs, 100), targetP99Ms: 100, load: loadavg() }));
  }
  for (const c of kids) c.kill('SIGKILL');

  // Waypoint RSS with R HTTPRoutes: fed over the feed, and from --manifests (same objects).
  const big: SourcedObject[] = [src({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'big' } } as K8sObject, 'big/ns.yaml'), src(gateway('big', 0), 'big/gw.yaml')];
  for (let i = 0; i < R; i++) {
    big.push(src(route('big', `r-${i}`, `/r/${i}`, `s-${i % 100}`), `big/r-${i}.yaml`));
  }
  for (let i = 0; i < 100; i++) big.push(src(service('big', i, `10.111.0.${i + 1}`, 's'), `big/s-${i}.yaml`), src(slice('big', i, (1 << 20) + i * 16, 'node-a', 's'), `big/sl-${i}.yaml`));
  server.update(big, []);
  const manifests = join(dir, 'manifests');
  mkdirSync(manifests);
  writeFileSync(join(manifests, 'class.yaml'), stringify(CLASS));
  for (let i = 0; i < big.length; i += 50) writeFileSync(join(manifests, `big-${i}.yaml`), big.slice(i, i + 50).map((o) => stringify(o.object)).join('---\n'));
  const rss: Record<string, number> = {};
  for (const via of ['agent', 'manifests'] as const) {
    const port = 20000 + (process.pid % 1000) * 2 + (via === 'agent' ? 0 : 1);
    const w = spawn(process.execPath, [MAIN, 'waypoint', '--namespace', 'big', via === 'agent' ? '--agent' : '--manifests', via === 'agent' ? `unix://${socket}` : manifests,
      '--listen-address', '127.0.0.1', '--mesh-port', '0', '--metrics-address', `127.0.0.1:${port}`, '--access-log', 'off'], { stdio: ['ignore', 'ignore', 'ignore'] });
    const deadline = Date.now() + 60_000;
    for (;;) {
      try { if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) break; } catch { /* not yet */ }
      if (Date.now() > deadline) throw new Error(`waypoint (${via}) not ready`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const routes = ((await (await fetch(`http://127.0.0.1:${port}/debug/routes`)).json()) as { routes?: unknown[] }).routes?.length;
    await new Promise((r) => setTimeout(r, 2000));
    rss[via] = vmRss(w.pid!);
    console.log(JSON.stringify({ measure: `waypoint RSS, ${R} HTTPRoutes, via ${via}`, routes, rssMiB: +rss[via]!.toFixed(1), targetMiB: 100, load: loadavg() }));
    w.kill('SIGKILL');
  }
  console.log(JSON.stringify({ measure: 'waypoint RSS ratio agent feed / manifests', ratio: +(rss.agent! / rss.manifests!).toFixed(2) }));
  await server.close();
  rmSync(dir, { recursive: true, force: true });
}

if (values.child) await child(values.socket!, Number(values.from), Number(values.namespaces));
else await main();
