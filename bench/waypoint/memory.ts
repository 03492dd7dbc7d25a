/**
 * The waypoint's memory with many HTTPRoutes: N routes (each with its own host name, three
 * rules, a header filter) over 100 Services, loaded from manifests; after every route has
 * served a request, the process's resident memory (VmRSS) and V8 heap are read. Compared
 * with the same waypoint with no route.
 */
import http from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../common/version.js';
import { gatewayManifests } from './manifests.js';
import { SMALL_YOUNG_GENERATION, rssBytes, startNginx, startWaypoint, type Proc } from './procs.js';

export interface MemoryPoint { routes: number; layout: 'one file' | 'file per route'; nodeFlags: string[]; rssBytes: number; heapUsedBytes: number; readyMs: number; requestsOk: number }
export interface MemoryResult { routes: number; points: MemoryPoint[] }

const ADDR = '127.93.0.1';
const BACKEND = { address: '127.93.0.11', port: 18281 };
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

async function point(dir: string, n: number, cpu: number, layout: MemoryPoint['layout'], nodeFlags: string[]): Promise<MemoryPoint> {
  const mdir = join(dir, `manifests-${n}-${layout.replace(/ /g, '-')}-${nodeFlags.length}`);
  mkdirSync(mdir, { recursive: true });
  const docs = manyRoutes(n).split('\n---\n');
  if (layout === 'one file') writeFileSync(join(mdir, 'routes.yaml'), docs.join('\n---\n'));
  else docs.forEach((d, i) => writeFileSync(join(mdir, `${String(i).padStart(5, '0')}.yaml`), `${d}\n`));
  const t0 = Date.now();
  const wp = await startWaypoint(join(projectRoot(), 'dist', 'cli', 'main.js'), cpu, [
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
    const metrics = await get(ADDR, '/metrics', agent, ADMIN);
    const heap = /^kernway_waypoint_nodejs_heap_size_used_bytes ([\d.e+]+)$/m.exec(metrics.body);
    return { routes: n, layout, nodeFlags, rssBytes: rssBytes(wp.pid), heapUsedBytes: heap ? Number(heap[1]) : Number.NaN, readyMs, requestsOk: ok };
  } finally {
    agent.destroy();
    await wp.stop();
  }
}

export async function measureMemory(dir: string, o: { routes: number; cpu: number; loadCpu: number; nodeFlags: string[] }): Promise<MemoryResult> {
  const procs: Proc[] = [];
  try {
    procs.push(await startNginx('memory-backend', dir, o.loadCpu, `  access_log off;
  server { listen ${BACKEND.address}:${BACKEND.port}; location / { return 200 "ok\\n"; } }`, BACKEND));
    const points: MemoryPoint[] = [];
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
