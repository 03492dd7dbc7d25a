/**
 * The waypoint against Debian's nginx, one hop each, proxying the same echo backend, in
 * one run on the same CPUs: the proxy under test alone on one CPU, the load tool and the
 * backend on another. wrk (HTTP/1.1) and h2load (h2c) measure throughput with many
 * connections and latency with one; then the waypoint's memory with 1,000 HTTPRoutes.
 *
 *   node dist/bench/waypoint/run.js [--seconds 10] [--connections 64] [--proxy-cpu 0]
 *     [--load-cpu 1] [--routes 1000] [--out DIR] [--skip-memory] [--skip-load]
 *
 * Results: DIR/results.json and DIR/report.md (default .bench-out/waypoint-<time>/).
 * Not part of the test suite: it measures, it does not assert.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { projectRoot } from '../../common/version.js';
import { parseH2load, parseWrk, WRK_SCRIPT, type Sample } from '../tools.js';
import { measureMemory, type MemoryResult } from './memory.js';
import { runTool, startNginx, startWaypoint, waitPort, type Proc } from './procs.js';

export interface LoadOptions { seconds: number; connections: number; h2Connections: number; h2Streams: number; proxyCpu: number; loadCpu: number; warmupSeconds: number }

interface Run { proxy: 'waypoint' | 'nginx'; tool: 'wrk' | 'h2load'; kind: 'throughput' | 'latency'; sample: Sample }

const ADDR = '127.93.0.1';
const BACKEND = { address: '127.93.0.10', port: 18181 };
const NGINX = { h1: 18180, h2: 18182 };
const WAYPOINT = { port: 18183, admin: 18190 };

function backendBlock(): string {
  return `  access_log off;
  server {
    listen ${BACKEND.address}:${BACKEND.port} reuseport backlog=4096;
    location / { default_type text/plain; return 200 "$request_method $request_uri\\n"; }
  }`;
}

function nginxProxyBlock(dir: string): string {
  return `  upstream echo { server ${BACKEND.address}:${BACKEND.port}; keepalive 256; }
  access_log ${join(dir, 'nginx-proxy.access.log')} combined buffer=64k flush=1s;
  server {
    listen ${ADDR}:${NGINX.h1} backlog=4096;
    listen ${ADDR}:${NGINX.h2} http2 backlog=4096;
    location / {
      proxy_pass http://echo;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }`;
}

export function waypointBenchManifests(): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: kernway}
spec: {controllerName: kernway.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: bench}
spec:
  gatewayClassName: kernway
  listeners: [{name: http, port: ${WAYPOINT.port}, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: bench}
spec: {clusterIP: 10.96.93.1, ports: [{name: http, port: 80, targetPort: ${BACKEND.port}}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: bench, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: http, port: ${BACKEND.port}, protocol: TCP}]
endpoints: [{addresses: [${BACKEND.address}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: bench}
spec:
  parentRefs: [{name: bench}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: echo, port: 80}]
`;
}

async function wrk(o: LoadOptions, dir: string, url: string, connections: number, seconds: number): Promise<Sample> {
  const script = join(dir, 'wrk.lua');
  writeFileSync(script, WRK_SCRIPT);
  const r = await runTool(o.loadCpu, 'wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', script, url], (seconds + 30) * 1000);
  if (r.code !== 0) throw new Error(`wrk failed: ${r.out}`);
  return parseWrk(r.out);
}

async function h2load(o: LoadOptions, dir: string, url: string, connections: number, streams: number, seconds: number): Promise<Sample> {
  const log = join(dir, 'h2load.log');
  rmSync(log, { force: true });
  const r = await runTool(o.loadCpu, 'h2load', [`-c${connections}`, `-m${streams}`, `-D${seconds}`, '--warm-up-time=1', `--log-file=${log}`, url], (seconds + 30) * 1000);
  if (r.code !== 0) throw new Error(`h2load failed: ${r.out}`);
  const { readFileSync } = await import('node:fs');
  return parseH2load(r.out, readFileSync(log, 'utf8'));
}

/** One proxy: warm up, then throughput and latency with wrk and h2load. */
async function measure(proxy: Run['proxy'], o: LoadOptions, dir: string, h1: string, h2: string): Promise<Run[]> {
  const runs: Run[] = [];
  await wrk(o, dir, h1, o.connections, o.warmupSeconds);
  runs.push({ proxy, tool: 'wrk', kind: 'throughput', sample: await wrk(o, dir, h1, o.connections, o.seconds) });
  runs.push({ proxy, tool: 'wrk', kind: 'latency', sample: await wrk(o, dir, h1, 1, o.seconds) });
  await h2load(o, dir, h2, o.h2Connections, o.h2Streams, o.warmupSeconds);
  runs.push({ proxy, tool: 'h2load', kind: 'throughput', sample: await h2load(o, dir, h2, o.h2Connections, o.h2Streams, o.seconds) });
  runs.push({ proxy, tool: 'h2load', kind: 'latency', sample: await h2load(o, dir, h2, 1, 1, o.seconds) });
  return runs;
}

export interface LoadResult { runs: Run[]; ratios: { tool: string; kind: string; rps: number; p50: number; p99: number }[] }

export async function runLoad(o: LoadOptions, dir: string): Promise<LoadResult> {
  const procs: Proc[] = [];
  try {
    procs.push(await startNginx('backend', dir, o.loadCpu, backendBlock(), BACKEND));
    const runs: Run[] = [];
    // nginx
    const ng = await startNginx('proxy', dir, o.proxyCpu, nginxProxyBlock(dir), { address: ADDR, port: NGINX.h1 });
    procs.push(ng);
    await waitPort(ADDR, NGINX.h2, 'nginx h2c');
    runs.push(...await measure('nginx', o, dir, `http://${ADDR}:${NGINX.h1}/echo`, `http://${ADDR}:${NGINX.h2}/echo`));
    await ng.stop();
    // waypoint
    const mdir = join(dir, 'manifests');
    mkdirSync(mdir, { recursive: true });
    writeFileSync(join(mdir, 'bench.yaml'), waypointBenchManifests());
    const wp = await startWaypoint(join(projectRoot(), 'dist', 'cli', 'main.js'), o.proxyCpu, [
      '--namespace', 'bench', '--manifests', mdir, '--listen-address', ADDR, '--mesh-port', '0',
      '--metrics-address', `${ADDR}:${WAYPOINT.admin}`, '--access-log', join(dir, 'waypoint.access.log'),
    ], { address: ADDR, port: WAYPOINT.port }, join(dir, 'waypoint.log'));
    procs.push(wp);
    const url = `http://${ADDR}:${WAYPOINT.port}/echo`;
    runs.push(...await measure('waypoint', o, dir, url, url));
    await wp.stop();
    const ratios = (['wrk', 'h2load'] as const).flatMap((tool) => (['throughput', 'latency'] as const).map((kind) => {
      const w = runs.find((r) => r.proxy === 'waypoint' && r.tool === tool && r.kind === kind)!.sample;
      const n = runs.find((r) => r.proxy === 'nginx' && r.tool === tool && r.kind === kind)!.sample;
      return { tool, kind, rps: w.rps! / n.rps!, p50: w.p50! / n.p50!, p99: w.p99! / n.p99! };
    }));
    return { runs, ratios };
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
}

function fmt(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : 'n/a';
}

export function report(load: LoadResult | undefined, memory: MemoryResult | undefined, o: LoadOptions): string {
  const lines = ['# kernway waypoint vs nginx', '',
    `One hop each, same echo backend (nginx \`return 200\`), proxy alone on CPU ${o.proxyCpu} (nginx: 1 worker; waypoint: 1 Node.js process), load tool and backend on CPU ${o.loadCpu}.`,
    `wrk: -t1 -c${o.connections} (throughput) and -c1 (latency); h2load: -c${o.h2Connections} -m${o.h2Streams} (throughput) and -c1 -m1 (latency); ${o.seconds}s each after ${o.warmupSeconds}s of warm-up.`, ''];
  if (load) {
    lines.push('| tool | run | proxy | req/s | p50 (us) | p99 (us) | errors |', '|---|---|---|---:|---:|---:|---:|');
    for (const r of load.runs) lines.push(`| ${r.tool} | ${r.kind} | ${r.proxy} | ${fmt(r.sample.rps!, 0)} | ${fmt(r.sample.p50!, 0)} | ${fmt(r.sample.p99!, 0)} | ${r.sample.errors} |`);
    lines.push('', '| tool | run | throughput waypoint/nginx (target >= 0.5) | p50 ratio | p99 ratio (target <= 2) |', '|---|---|---:|---:|---:|');
    for (const r of load.ratios) lines.push(`| ${r.tool} | ${r.kind} | ${fmt(r.rps)} | ${fmt(r.p50)} | ${fmt(r.p99)} |`);
  }
  if (memory) {
    lines.push('', `## Memory with ${memory.routes} HTTPRoutes (target < 100 MiB)`, '',
      `| routes | RSS after load (MiB) | heap used (MiB) | config build (ms) | requests checked |`, '|---:|---:|---:|---:|---:|');
    for (const m of memory.points) lines.push(`| ${m.routes} | ${fmt(m.rssBytes / 1048576, 1)} | ${fmt(m.heapUsedBytes / 1048576, 1)} | ${fmt(m.readyMs, 0)} | ${m.requestsOk} |`);
  }
  return lines.join('\n') + '\n';
}

async function cli(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' }, connections: { type: 'string' }, 'proxy-cpu': { type: 'string' }, 'load-cpu': { type: 'string' },
      routes: { type: 'string' }, out: { type: 'string' }, 'skip-memory': { type: 'boolean' }, 'skip-load': { type: 'boolean' },
    },
  });
  const o: LoadOptions = {
    seconds: Number(values.seconds ?? 10), connections: Number(values.connections ?? 64), h2Connections: 16, h2Streams: 8,
    proxyCpu: Number(values['proxy-cpu'] ?? 0), loadCpu: Number(values['load-cpu'] ?? 1), warmupSeconds: 3,
  };
  const out = values.out ?? join(projectRoot(), '.bench-out', `waypoint-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(out, { recursive: true });
  const scratch = mkdtempSync(join(tmpdir(), 'kw-bench-waypoint-'));
  try {
    const load = values['skip-load'] ? undefined : await runLoad(o, scratch);
    const memory = values['skip-memory'] ? undefined : await measureMemory(scratch, { routes: Number(values.routes ?? 1000), cpu: o.proxyCpu, loadCpu: o.loadCpu });
    writeFileSync(join(out, 'results.json'), JSON.stringify({ options: o, load, memory, node: process.version, at: new Date().toISOString() }, null, 2));
    const md = report(load, memory, o);
    writeFileSync(join(out, 'report.md'), md);
    console.log(md);
    console.log(`results: ${join(out, 'results.json')}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] && process.argv[1].endsWith(join('bench', 'waypoint', 'run.js'))) {
  cli().catch((e: unknown) => { console.error(`bench/waypoint: ${(e as Error).message}`); process.exitCode = 1; });
}
