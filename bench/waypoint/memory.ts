/**
 * The waypoint's memory with many HTTPRoutes: N routes (each with its own host name, three
 * rules, a header filter) over 100 Services, loaded from manifests; after every route has
 * served a request, the process's resident memory (VmRSS) and V8 heap are read. Then 3 s
 * of wrk (16 connections, every route in turn): the peak RSS under load; then 3 s of h2load
 * over h2c (16 connections of 8 streams, one route): the peak RSS under it; then the waypoint
 * is left idle until it has given back the young generation (waypoint/idle-memory.ts, up to
 * 20 s): the idle RSS and the compaction's pause; then the RSS after one /metrics scrape. Compared with the same waypoint with no
 * route.
 */
import http from 'node:http';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../common/version.js';
import { gatewayManifests } from './manifests.js';
import { SMALL_YOUNG_GENERATION, rssBytes, runTool, startNginx, startWaypoint, type Proc } from './procs.js';

export interface MemoryPoint {
  routes: number; layout: 'one file' | 'file per route'; nodeFlags: string[];
  /** The waypoint measured: this checkout's, or the one of --before-dist (then only the waypoint's own flags, both builds in turn). */
  build: 'this' | 'before';
  /** After every route served a request. */
  rssBytes: number; heapUsedBytes: number; readyMs: number; requestsOk: number;
  /** V8's young generation (new space) after every route served a request. */
  newSpaceBytes: number;
  /** Peak RSS during 3 s of wrk (-c16, every route in turn), and the requests it made. */
  rssUnderLoadBytes: number; loadRequests: number;
  /** Then peak RSS during 3 s of h2load over h2c (-c16 -m8, one route's host: the waypoint's HTTP/2 server and its per-connection state), and the requests that succeeded. */
  rssUnderH2LoadBytes: number; h2LoadSucceeded: number;
  /** After the load, once the waypoint went idle and compacted (or 20 s passed: idleCompactions 0); then after one /metrics scrape. */
  rssIdleBytes: number; rssAfterScrapeBytes: number; newSpaceIdleBytes: number; heapUsedIdleBytes: number; idleCompactions: number; idleCompactionMs: number;
  /** After two more scrapes (three in a row); the waypoint's CPU time per scrape (user + system, the mean of the three); the text's size. */
  rssAfter3ScrapesBytes: number; scrapeCpuMs: number; scrapeBytes: number;
}
export interface MemoryResult { routes: number; points: MemoryPoint[] }

/** Loopback addresses: `--net` of bench/waypoint/run.ts moves them (memoryNet). */
let ADDR = '127.93.0.1';
const BACKEND = { address: '127.93.0.11', port: 18281 };

/** Moves the memory phase's addresses to `net`.0.x (checked by run.ts's useNet). */
export function memoryNet(net: string): void {
  ADDR = `${net}.0.1`;
  BACKEND.address = `${net}.0.11`;
}
const PORT = 18283;
const ADMIN = 18290;
const SERVICES = 100;

export function manyRoutes(n: number): string {
  const parts: string[] = [gatewayManifests('bench', 'bench', PORT)];
  for (let s = 0; s < SERVICES; s++) {
    parts.push(`apiVersion: v1
kind: Service
metadata: {name: svc-${s}, namespace: bench}
spec: {clusterIP: 10.96.${94 + Math.floor(s / 250)}.${(s % 250) + 1}, ports: [{name: http, port: 80, targetPort: ${BACKEND.port}}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc-${s}-1, namespace: bench, labels: {kubernetes.io/service-name: svc-${s}}}
addressType: IPv4
ports: [{name: http, port: ${BACKEND.port}, protocol: TCP}]
endpoints: [{addresses: [${BACKEND.address}]}]`);
  }
  for (let i = 0; i < n; i++) {
    const svc = `svc-${i % SERVICES}`;
    parts.push(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route-${i}, namespace: bench, creationTimestamp: '2026-01-01T00:00:00Z'}
spec:
  parentRefs: [{name: bench}]
  hostnames: [app-${i}.bench.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api/v1/items}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: route-${i}}]}
    backendRefs: [{name: ${svc}, port: 80}]
  - matches: [{path: {type: Exact, value: /health}}, {headers: [{name: x-canary, value: 'true'}]}]
    backendRefs: [{name: ${svc}, port: 80, weight: 90}, {name: svc-${(i + 1) % SERVICES}, port: 80, weight: 10}]
  - matches: [{path: {type: PathPrefix, value: /}, method: GET}]
    timeouts: {request: 10s}
    backendRefs: [{name: ${svc}, port: 80}]`);
  }
  return parts.join('\n---\n') + '\n';
}

function get(host: string, path: string, agent: http.Agent, port = PORT): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: ADDR, port, path, headers: { host }, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

async function point(dir: string, n: number, cpu: number, layout: MemoryPoint['layout'], nodeFlags: string[], beforeDist?: string): Promise<MemoryPoint> {
  const mdir = join(dir, `manifests-${n}-${layout.replace(/ /g, '-')}-${nodeFlags.length}`);
  mkdirSync(mdir, { recursive: true });
  const build = beforeDist === undefined ? 'this' : 'before';
  const docs = manyRoutes(n).split('\n---\n');
  if (layout === 'one file') writeFileSync(join(mdir, 'routes.yaml'), docs.join('\n---\n'));
  else docs.forEach((d, i) => writeFileSync(join(mdir, `${String(i).padStart(5, '0')}.yaml`), `${d}\n`));
  const t0 = Date.now();
  const wp = await startWaypoint(join(beforeDist ?? join(projectRoot(), 'dist'), 'cli', 'main.js'), cpu, [
    '--namespace', 'bench', '--manifests', mdir, '--listen-address', ADDR, '--mesh-port', '0',
    '--metrics-address', `${ADDR}:${ADMIN}`, '--access-log', 'off',
  ], { address: ADDR, port: PORT }, join(dir, `waypoint-memory-${n}.log`), nodeFlags);
  const readyMs = Date.now() - t0;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  try {
    let ok = 0;
    const work = Array.from({ length: Math.max(n, 1) }, (_, i) => i);
    await Promise.all(Array.from({ length: 16 }, async () => {
      for (let i = work.pop(); i !== undefined; i = work.pop()) {
        const r = await get(n === 0 ? 'none.example' : `app-${i}.bench.example`, `/api/v1/items/${i}`, agent);
        if (r.status === 200) ok++;
        if (n > 0 && i % 3 === 0 && (await get(`app-${i}.bench.example`, '/health', agent)).status === 200) ok++;
      }
    }));
    const rss = rssBytes(wp.pid);
    const served = metricValues((await get(ADDR, '/metrics', agent, ADMIN)).body);
    agent.destroy();
    // Load: wrk over every route in turn, the RSS sampled while it runs.
    const lua = join(dir, 'routes.lua');
    writeFileSync(lua, `local i = 0\nrequest = function()\n  i = (i + 1) % ${Math.max(n, 1)}\n  return wrk.format("GET", "/api/v1/items/" .. i, { Host = ${n === 0 ? '"none.example"' : '"app-" .. i .. ".bench.example"'} })\nend\n`);
    let peak = 0;
    const sampler = setInterval(() => { try { peak = Math.max(peak, rssBytes(wp.pid)); } catch { /* gone */ } }, 100);
    const wrk = await runTool(cpu === 0 ? 1 : 0, 'wrk', ['-t1', '-c16', '-d3s', '-s', lua, `http://${ADDR}:${PORT}/`], 30_000).finally(() => clearInterval(sampler));
    const loadRequests = Number(/(\d+) requests in/.exec(wrk.out)?.[1] ?? Number.NaN);
    // h2c: the same, through the waypoint's HTTP/2 server (h2load sends one :authority: the first route's host).
    let peakH2 = 0;
    const sampler2 = setInterval(() => { try { peakH2 = Math.max(peakH2, rssBytes(wp.pid)); } catch { /* gone */ } }, 100);
    const h2 = await runTool(cpu === 0 ? 1 : 0, 'h2load', ['-c16', '-m8', '-D3', '-H', `:authority: ${n === 0 ? 'none.example' : 'app-0.bench.example'}`, `http://${ADDR}:${PORT}/api/v1/items/0`], 30_000).finally(() => clearInterval(sampler2));
    const h2LoadSucceeded = Number(/requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded/.exec(h2.out)?.[1] ?? Number.NaN);
    // Idle: the waypoint's idle compaction looks every 5 s and runs at the first look that finds a whole interval
    // without requests: at most 10 s after the last one. RSS is read from /proc, not through a /metrics scrape
    // (a scrape grows the young generation), so the bench waits those 10 s (and 1 more) rather than polling: RSS
    // dropping by itself (V8's memory reducer) ended an earlier poll before the compaction had run.
    await new Promise((r) => setTimeout(r, 11_000));
    // V8 unmaps the freed pages from background threads: read once RSS stays within 0.5 MiB for a second (at most 5 s).
    for (let t = Date.now(), prev = 0; Date.now() - t < 5000;) {
      const now = rssBytes(wp.pid);
      if (Math.abs(now - prev) < 512 * 1024) break;
      prev = now;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const rssIdle = rssBytes(wp.pid);
    const cpu0 = cpuMs(wp.pid);
    const page = (await get(ADDR, '/metrics', agent, ADMIN)).body;
    const idle = metricValues(page);
    const rssScraped = rssBytes(wp.pid);
    for (let i = 0; i < 2; i++) await get(ADDR, '/metrics', agent, ADMIN);
    const scrapeCpuMs = (cpuMs(wp.pid) - cpu0) / 3;
    const rssScraped3 = rssBytes(wp.pid);
    return {
      routes: n, layout, nodeFlags, build, rssBytes: rss, heapUsedBytes: served.get('kernway_waypoint_nodejs_heap_size_used_bytes') ?? Number.NaN, readyMs, requestsOk: ok,
      newSpaceBytes: served.get('kernway_waypoint_nodejs_heap_space_size_total_bytes{space="new"}') ?? Number.NaN,
      rssUnderLoadBytes: peak, loadRequests, rssUnderH2LoadBytes: peakH2, h2LoadSucceeded,
      rssIdleBytes: rssIdle, rssAfterScrapeBytes: rssScraped, newSpaceIdleBytes: idle.get('kernway_waypoint_nodejs_heap_space_size_total_bytes{space="new"}') ?? Number.NaN,
      heapUsedIdleBytes: idle.get('kernway_waypoint_nodejs_heap_size_used_bytes') ?? Number.NaN,
      idleCompactions: idle.get('kernway_waypoint_idle_compactions_total') ?? 0, idleCompactionMs: (idle.get('kernway_waypoint_idle_compaction_seconds_total') ?? 0) * 1000,
      rssAfter3ScrapesBytes: rssScraped3, scrapeCpuMs, scrapeBytes: Buffer.byteLength(page),
    };
  } finally {
    agent.destroy();
    await wp.stop();
  }
}

/** A process's CPU time so far (user + system), from /proc. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 (utime, stime) in clock ticks (100 per second on Linux).
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** `name{labels} value` lines of a Prometheus text page, by `name{labels}`. */
function metricValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

export async function measureMemory(dir: string, o: { routes: number; cpu: number; loadCpu: number; nodeFlags: string[]; beforeDist?: string | undefined }): Promise<MemoryResult> {
  const procs: Proc[] = [];
  try {
    procs.push(await startNginx('memory-backend', dir, o.loadCpu, `  access_log off;
  server { listen ${BACKEND.address}:${BACKEND.port}; location / { return 200 "ok\\n"; } }`, BACKEND));
    const points: MemoryPoint[] = [];
    if (o.beforeDist !== undefined) {
      // A/B: this build and the one before, in turn, with the waypoint's own flags.
      for (const layout of ['one file', 'file per route'] as const) {
        for (const before of [o.beforeDist, undefined]) points.push(await point(dir, o.routes, o.cpu, layout, o.nodeFlags, before));
      }
      return { routes: o.routes, points };
    }
    // The flags the waypoint runs with, Node's defaults, and V8's memory-over-speed mode.
    const variants: string[][] = [o.nodeFlags, [], [...SMALL_YOUNG_GENERATION], ['--optimize-for-size']].filter((f, i, all) => all.findIndex((g) => g.join(' ') === f.join(' ')) === i);
    for (const flags of variants) {
      points.push(await point(dir, 0, o.cpu, 'one file', flags));
      points.push(await point(dir, o.routes, o.cpu, 'one file', flags));
      points.push(await point(dir, o.routes, o.cpu, 'file per route', flags));
    }
    return { routes: o.routes, points };
  } finally {
    for (const p of procs) await p.stop();
  }
}
