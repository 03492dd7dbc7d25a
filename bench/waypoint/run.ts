/**
 * The waypoint against Debian's nginx, one hop each, proxying the same echo backend, in
 * one run on the same CPUs: the proxy under test alone on one CPU, the load tool and the
 * backend on another. wrk (HTTP/1.1) and h2load (h2c) measure throughput with many
 * connections and latency with one; then the waypoint's memory with 1,000 HTTPRoutes.
 *
 *   node dist/bench/waypoint/run.js [--seconds 10] [--connections 64] [--rounds 3]
 *     [--proxy-cpu 0] [--load-cpu 1] [--routes 1000] [--node-flags '...'] [--out DIR]
 *     [--skip-memory] [--skip-load] [--baselines] [--node-path]
 *
 * --node-path adds the waypoint with `--http1-server node` (the previous HTTP/1.1 path).
 * --policy adds a waypoint whose echo Service has a BackendTrafficPolicy attached (every
 * engine part on the request path, limits never reached): CPU per request with and without.
 * --before-dist DIR adds the waypoint built from another checkout's dist/ (e.g. before a
 * change), to compare the path without a policy against it; the memory phase then measures
 * both builds in turn (1,000 routes, both layouts, the waypoint's own flags only). --h1-only skips h2load,
 * --h2-only skips wrk (for the proxies h2load measures).
 * --h2-node adds the waypoint with `--http2-server node` (Node's http2 on nghttp2, the previous h2c
 * path) beside the default one, for a same-run comparison (with --h2-only: h2load only); its ratios to nginx are reported too.
 * --net 127.94 moves every address to 127.94.0.x (default 127.93: two runs at once need two), the memory phase's too.
 * Every run is listed with what disturbed it (bench/waypoint/steal.ts): a probe on each CPU
 * (steal-probe.c, built with cc) sees time the VM's host took, which this kernel does not
 * report as steal; a disturbed run is flagged, never dropped. --no-steal-probe runs without it.
 * --keep-scratch keeps the temp folder (the processes' logs, e.g. --node-flags '--trace-deopt').
 * --kernel-events counts, per window, the proxy's system calls, IPIs sent, tasks woken, page faults and
 * context switches (perf stat; bench/waypoint/kernel-events.ts); --profile records its CPU clock in every
 * throughput window (perf record, the waypoints with --perf-basic-prof-only-functions for JS names) and
 * splits it into kernel, node, JIT code by tier and libc. Both cost the proxies a little CPU: not for the
 * runs whose ratios are the result, for telling a slow window from a fast one.
 *
 * Results: DIR/results.json and DIR/report.md (default .bench-out/waypoint-<time>/).
 * Not part of the test suite: it measures, it does not assert.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { projectRoot } from '../../common/version.js';
import { parseH2load, parseWrk, WRK_SCRIPT, type Sample } from '../tools.js';
import { BASELINE_PROGRAMS, startBaseline } from './baselines.js';
import { backendManifests, gatewayManifests } from './manifests.js';
import { measureMemory, memoryNet, type MemoryResult } from './memory.js';
import { WAYPOINT_NODE_FLAGS, runTool, startNginx, startWaypoint, waitPort, type Proc } from './procs.js';
import { countKernelEvents, recordProfile, type KernelEvents, type ProfileSplit } from './kernel-events.js';
import { buildStealProbe, closeWindow, openWindow, startStealProbe, type Disturbance, type Gap, type Speed, processStartMs, type StealProbe } from './steal.js';

export interface LoadOptions {
  seconds: number; connections: number; h2Connections: number; h2Streams: number; proxyCpu: number; loadCpu: number; warmupSeconds: number;
  /** Rounds; each measures both proxies (order alternating), results are the medians. */
  rounds: number;
  /** Node.js flags for the waypoint process (as the deployment runs it). */
  nodeFlags: string[];
  /** Also measure what Node.js itself costs (bench/waypoint/baselines.ts), with wrk only. */
  baselines: boolean;
  /** Also measure the waypoint with `--http1-server node` (the previous HTTP/1.1 path). */
  nodePath: boolean;
  /** Also measure a waypoint with a BackendTrafficPolicy on the echo Service. */
  policy?: boolean;
  /** Also measure the waypoint of another build (its dist/ folder). */
  beforeDist?: string | undefined;
  /** wrk only (no h2load). */
  h1Only?: boolean;
  /** h2load only (no wrk). */
  h2Only?: boolean;
  /** Also measure the waypoint with `--http2-server node`. */
  h2Node?: boolean;
  /** Run bench/waypoint/steal-probe.c on both CPUs (default: yes) to see time the VM's host took. */
  stealProbe?: boolean;
  /** Count the proxy's kernel events in every window (perf stat: bench/waypoint/kernel-events.ts). */
  kernelEvents?: boolean;
  /** Profile the proxy's CPU clock in every throughput window (perf record). */
  profile?: boolean;
}

type ProxyName = 'waypoint' | 'waypoint-node-http' | 'waypoint-h2-node' | 'waypoint-policy' | 'waypoint-before' | 'nginx' | 'node-hello' | 'node-proxy-http-request' | 'node-proxy-raw-sockets';
interface Run {
  round: number; proxy: ProxyName; tool: 'wrk' | 'h2load'; kind: 'throughput' | 'latency'; sample: Sample; cpuUsPerRequest: number;
  /** A waypoint's garbage collection during the run (its /metrics): share of its CPU time, young-generation collections per 100 requests, full (major) collections. */
  gc?: { cpuShare: number; minorPer100: number; minor: number; major: number; pauseMs: number; newSpaceBytes: number };
  /** What else happened in the window (bench/waypoint/steal.ts); reasons non-empty: a disturbed run, reported, not dropped. */
  disturbance: Disturbance;
  /** --kernel-events: the proxy's kernel events over the window (counts). */
  kernel?: KernelEvents;
  /** --profile (throughput runs): where the proxy's CPU time went (seconds over the window) and the perf data file (in the scratch folder: --keep-scratch). */
  profile?: ProfileSplit & { file: string };
}

/** Loopback addresses of the run: `--net A.B` uses A.B.0.x (two runs at once on one machine need two nets). */
let NET = '127.93';
let ADDR = `${NET}.0.1`;
const BACKEND = { address: `${NET}.0.10`, port: 18181 };
const NGINX = { h1: 18180, h2: 18182 };
const WAYPOINT = { port: 18183, admin: 18190 };
/** The same waypoint with `--http1-server node` (the previous HTTP/1.1 path), for comparison. */
const WAYPOINT_NODE = { address: `${NET}.0.2`, admin: 18189 };
/** The waypoint with a BackendTrafficPolicy attached, and the one of another build. */
const WAYPOINT_POLICY = { address: `${NET}.0.3`, admin: 18188 };
const WAYPOINT_BEFORE = { address: `${NET}.0.4`, admin: 18187 };
/** The waypoint with `--http2-server node`. */
const WAYPOINT_H2N = { address: `${NET}.0.5`, admin: 18186 };

/** Moves every address of the run to `net`.0.x (`net`: two octets, inside 127/8). */
export function useNet(net: string): void {
  if (!/^127\.(25[0-5]|2[0-4]\d|1?\d?\d)$/.test(net)) throw new Error(`--net: two octets inside 127/8 expected, like 127.93, got ${JSON.stringify(net)}`);
  NET = net;
  ADDR = `${NET}.0.1`;
  BACKEND.address = `${NET}.0.10`;
  WAYPOINT_NODE.address = `${NET}.0.2`;
  WAYPOINT_POLICY.address = `${NET}.0.3`;
  WAYPOINT_BEFORE.address = `${NET}.0.4`;
  WAYPOINT_H2N.address = `${NET}.0.5`;
  memoryNet(NET);
}

/** A BackendTrafficPolicy on the echo Service that exercises every per-request part and never refuses. */
export const BENCH_POLICY = `
---
apiVersion: kernway.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: echo, namespace: bench}
spec:
  targetRefs: [{group: "", kind: Service, name: echo}]
  circuitBreaker: {maxConnections: 100000, maxPendingRequests: 100000, maxParallelRequests: 100000, maxParallelRetries: 100000}
  healthCheck: {passive: {consecutive5XxErrors: 5, consecutiveGatewayErrors: 5}}
  faultInjection: {delay: {fixedDelay: 1s, percentage: 0}}
  rateLimit: {type: Local, local: {rules: [{limit: {requests: 1000000000, unit: Second}}]}}
  timeout: {http: {requestTimeout: 30s, connectionIdleTimeout: 60s}}
  retry: {numRetries: 1, budget: {percent: 20}}
`;

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
  return gatewayManifests('bench', 'bench', WAYPOINT.port)
    + backendManifests({ name: 'echo', namespace: 'bench', gateway: 'bench', clusterIP: '10.96.93.1', endpoint: BACKEND.address, targetPort: BACKEND.port, pathPrefix: '/' });
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
  return parseH2load(r.out, readFileSync(log, 'utf8'));
}

/** nginx's worker processes (children of the master). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '').map(Number);
  } catch {
    return [];
  }
}

interface Target { proxy: ProxyName; h1: string; h2: string | undefined; pids: () => number[]; metrics?: string }

/** GC pause seconds (all kinds) and young-generation (minor) collections so far, from a waypoint's /metrics (prom-client's nodejs_gc_duration_seconds). */
export function gcTotals(text: string): { seconds: number; minor: number; major: number; newSpace: number } {
  let seconds = 0, minor = 0, major = 0, newSpace = Number.NaN;
  for (const line of text.split('\n')) {
    if (line.includes('nodejs_heap_space_size_total_bytes{space="new"}')) newSpace = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (!line.includes('nodejs_gc_duration_seconds_')) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.includes('_sum{')) seconds += value;
    else if (line.includes('_count{') && line.includes('kind="minor"')) minor += value;
    else if (line.includes('_count{') && line.includes('kind="major"')) major += value;
  }
  return { seconds, minor, major, newSpace };
}

async function gcNow(url: string | undefined): Promise<ReturnType<typeof gcTotals> | undefined> {
  if (url === undefined) return undefined;
  try {
    const r = await fetch(url);
    return r.ok ? gcTotals(await r.text()) : undefined;
  } catch {
    return undefined;
  }
}

/** One proxy, one round: throughput and latency with wrk and h2load, with the proxy's CPU per request. */
async function measure(t: Target, round: number, o: LoadOptions, dir: string, probes: ReadonlyMap<number, StealProbe>): Promise<Run[]> {
  const runs: Run[] = [];
  const timed = async (tool: Run['tool'], kind: Run['kind'], f: () => Promise<Sample>): Promise<void> => {
    const pids = t.pids();
    const g0 = await gcNow(t.metrics);
    const profileFile = join(dir, `profile-${t.proxy}-r${round}-${tool}-${kind}.data`);
    // perf attaches (and acknowledges) before the window opens: the counts span it whole.
    const counting = o.kernelEvents ? await countKernelEvents(pids) : undefined;
    const recording = o.profile && kind === 'throughput' ? await recordProfile(pids, profileFile) : undefined;
    const w = openWindow(pids, [o.proxyCpu, o.loadCpu]);
    const sample = await f();
    const disturbance = closeWindow(w, pids, [o.proxyCpu, o.loadCpu], probes);
    const kernel = await counting?.stop();
    const split = await recording?.stop();
    const g1 = await gcNow(t.metrics);
    const requests = sample.rps! * o.seconds;
    // The proxy's user + system time over the window (the window's own /proc reads around the tool's run).
    const cpu = disturbance.proxy.user + disturbance.proxy.sys;
    const gc = g0 && g1 && requests > 0 && cpu > 0 ? { cpuShare: (g1.seconds - g0.seconds) / cpu, minorPer100: (100 * (g1.minor - g0.minor)) / requests, minor: g1.minor - g0.minor, major: g1.major - g0.major, pauseMs: (g1.seconds - g0.seconds) * 1000, newSpaceBytes: g1.newSpace } : undefined;
    runs.push({ round, proxy: t.proxy, tool, kind, sample, cpuUsPerRequest: requests > 0 ? (cpu * 1e6) / requests : Number.NaN, gc, disturbance,
      ...(kernel ? { kernel } : {}), ...(split ? { profile: { ...split, file: profileFile } } : {}) });
  };
  if (!o.h2Only || t.h2 === undefined) {
    await wrk(o, dir, t.h1, o.connections, o.warmupSeconds);
    await timed('wrk', 'throughput', () => wrk(o, dir, t.h1, o.connections, o.seconds));
    await timed('wrk', 'latency', () => wrk(o, dir, t.h1, 1, o.seconds));
  }
  const h2 = t.h2;
  if (h2 === undefined) return runs;
  await h2load(o, dir, h2, o.h2Connections, o.h2Streams, o.warmupSeconds);
  await timed('h2load', 'throughput', () => h2load(o, dir, h2, o.h2Connections, o.h2Streams, o.seconds));
  await timed('h2load', 'latency', () => h2load(o, dir, h2, 1, 1, o.seconds));
  return runs;
}

export interface Summary {
  proxy: ProxyName; tool: string; kind: string; rps: number; p50: number; p99: number; cpuUsPerRequest: number; errors: number; gcCpuShare: number; minorGcPer100: number;
  /** Runs the medians are over, and how many of them were disturbed (Run.disturbance). */
  runs: number; disturbed: number;
}
export interface LoadResult {
  runs: Run[]; summary: Summary[]; ratios: { tool: string; kind: string; rps: number; p50: number; p99: number; cpuPerRequest: number }[];
  /** CPU per request ratios per round (throughput runs): waypoint-policy ÷ waypoint, waypoint ÷ waypoint-before. */
  policy?: { withOverWithout: number[]; withoutOverBefore: number[] };
  /** --h2-node: the waypoint with Node's HTTP/2 server ÷ nginx. */
  ratiosH2Node?: LoadResult['ratios'];
  /** When some runs were disturbed: waypoint ÷ nginx over the others only (the ratios over all runs stay the result). */
  ratiosUndisturbed?: LoadResult['ratios'];
  /** The probes over the whole run, by CPU: late wake-ups (steal.ts's Gap: wall-clock µs, lateness µs) and the loop's speed each second. */
  probes?: Record<number, { gaps: Gap[]; speeds: Speed[] }>;
  /** When each proxy's (first) process started, wall-clock ms: to place its own logs (e.g. V8's --log-deopt, timed from its start) against the runs' windows. */
  startedMs?: Partial<Record<ProxyName, number>>;
}

function med(xs: number[]): number {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export async function runLoad(o: LoadOptions, dir: string): Promise<LoadResult> {
  const procs: Proc[] = [];
  // --profile: V8 writes /tmp/perf-PID.map, which names the JIT's code (and its tier) in the profile.
  const nodeFlags = o.profile ? [...o.nodeFlags, '--perf-basic-prof-only-functions'] : o.nodeFlags;
  const probes = new Map<number, StealProbe>();
  try {
    if (o.stealProbe !== false) {
      const bin = await buildStealProbe(dir);
      for (const cpu of new Set([o.proxyCpu, o.loadCpu])) probes.set(cpu, await startStealProbe(bin, cpu));
    }
    procs.push(await startNginx('backend', dir, o.loadCpu, backendBlock(), BACKEND));
    const ng = await startNginx('proxy', dir, o.proxyCpu, nginxProxyBlock(dir), { address: ADDR, port: NGINX.h1 });
    procs.push(ng);
    await waitPort(ADDR, NGINX.h2, 'nginx h2c');
    const mdir = join(dir, 'manifests');
    mkdirSync(mdir, { recursive: true });
    writeFileSync(join(mdir, 'bench.yaml'), waypointBenchManifests());
    const wp = await startWaypoint(join(projectRoot(), 'dist', 'cli', 'main.js'), o.proxyCpu, [
      '--namespace', 'bench', '--manifests', mdir, '--listen-address', ADDR, '--mesh-port', '0',
      '--metrics-address', `${ADDR}:${WAYPOINT.admin}`, '--access-log', join(dir, 'waypoint.access.log'),
    ], { address: ADDR, port: WAYPOINT.port }, join(dir, 'waypoint.log'), nodeFlags);
    procs.push(wp);
    const url = `http://${ADDR}:${WAYPOINT.port}/echo`;
    let wpNode: Proc | undefined;
    if (o.nodePath) {
      wpNode = await startWaypoint(join(projectRoot(), 'dist', 'cli', 'main.js'), o.proxyCpu, [
        '--namespace', 'bench', '--manifests', mdir, '--listen-address', WAYPOINT_NODE.address, '--mesh-port', '0', '--http1-server', 'node',
        '--metrics-address', `${WAYPOINT_NODE.address}:${WAYPOINT_NODE.admin}`, '--access-log', join(dir, 'waypoint-node.access.log'),
      ], { address: WAYPOINT_NODE.address, port: WAYPOINT.port }, join(dir, 'waypoint-node.log'), nodeFlags);
      procs.push(wpNode);
    }
    const extra: Target[] = [];
    /** Another waypoint on its own address, from `mainJs`, reading `manifestsDir`. */
    const another = async (proxy: ProxyName, mainJs: string, manifestsDir: string, at: { address: string; admin: number }, args: string[] = []): Promise<void> => {
      const p = await startWaypoint(mainJs, o.proxyCpu, [
        '--namespace', 'bench', '--manifests', manifestsDir, '--listen-address', at.address, '--mesh-port', '0', ...args,
        '--metrics-address', `${at.address}:${at.admin}`, '--access-log', join(dir, `${proxy}.access.log`),
      ], { address: at.address, port: WAYPOINT.port }, join(dir, `${proxy}.log`), nodeFlags);
      procs.push(p);
      const u = `http://${at.address}:${WAYPOINT.port}/echo`;
      extra.push({ proxy, h1: u, h2: o.h1Only ? undefined : u, pids: () => [p.pid], metrics: `http://${at.address}:${at.admin}/metrics` });
    };
    if (o.policy) {
      const pdir = join(dir, 'manifests-policy');
      mkdirSync(pdir, { recursive: true });
      writeFileSync(join(pdir, 'bench.yaml'), waypointBenchManifests() + BENCH_POLICY);
      await another('waypoint-policy', join(projectRoot(), 'dist', 'cli', 'main.js'), pdir, WAYPOINT_POLICY);
    }
    if (o.h2Node) await another('waypoint-h2-node', join(projectRoot(), 'dist', 'cli', 'main.js'), mdir, WAYPOINT_H2N, ['--http2-server', 'node']);
    if (o.beforeDist !== undefined) await another('waypoint-before', join(o.beforeDist, 'cli', 'main.js'), mdir, WAYPOINT_BEFORE);
    const targets: Target[] = [
      { proxy: 'nginx', h1: `http://${ADDR}:${NGINX.h1}/echo`, h2: `http://${ADDR}:${NGINX.h2}/echo`, pids: () => [ng.pid, ...childrenOf(ng.pid)] },
      { proxy: 'waypoint', h1: url, h2: o.h1Only ? undefined : url, pids: () => [wp.pid], metrics: `http://${ADDR}:${WAYPOINT.admin}/metrics` },
      ...extra,
    ];
    if (o.h1Only) targets[0]!.h2 = undefined;
    if (wpNode) {
      const u = `http://${WAYPOINT_NODE.address}:${WAYPOINT.port}/echo`;
      const pid = wpNode.pid;
      targets.push({ proxy: 'waypoint-node-http', h1: u, h2: o.h1Only ? undefined : u, pids: () => [pid], metrics: `http://${WAYPOINT_NODE.address}:${WAYPOINT_NODE.admin}/metrics` });
    }
    if (o.baselines) {
      let port = 18191;
      for (const name of Object.keys(BASELINE_PROGRAMS) as ProxyName[]) {
        const b = await startBaseline(name, dir, o.proxyCpu, { address: ADDR, port }, BACKEND);
        procs.push(b);
        targets.push({ proxy: name, h1: `http://${ADDR}:${port}/echo`, h2: undefined, pids: () => [b.pid] });
        port++;
      }
    }
    const startedMs: Partial<Record<ProxyName, number>> = {};
    for (const t of targets) { try { startedMs[t.proxy] = processStartMs(t.pids()[0]!); } catch { /* gone */ } }
    const runs: Run[] = [];
    for (let round = 0; round < o.rounds; round++) {
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) runs.push(...await measure(t, round, o, dir, probes));
    }
    const summarise = (of: Run[]): Summary[] => {
      const summary: Summary[] = [];
      for (const proxy of targets.map((t) => t.proxy)) for (const tool of ['wrk', 'h2load'] as const) for (const kind of ['throughput', 'latency'] as const) {
        const rs = of.filter((r) => r.proxy === proxy && r.tool === tool && r.kind === kind);
        if (rs.length === 0) continue;
        summary.push({
          proxy, tool, kind, rps: med(rs.map((r) => r.sample.rps!)), p50: med(rs.map((r) => r.sample.p50!)), p99: med(rs.map((r) => r.sample.p99!)),
          cpuUsPerRequest: med(rs.map((r) => r.cpuUsPerRequest)), errors: rs.reduce((n, r) => n + (r.sample.errors ?? 0), 0),
          gcCpuShare: med(rs.map((r) => r.gc?.cpuShare ?? Number.NaN)), minorGcPer100: med(rs.map((r) => r.gc?.minorPer100 ?? Number.NaN)),
          runs: rs.length, disturbed: rs.filter((r) => r.disturbance.reasons.length > 0).length,
        });
      }
      return summary;
    };
    const summary = summarise(runs);
    const ratiosIn = (s: Summary[], a: ProxyName, b: ProxyName): LoadResult['ratios'] => (['wrk', 'h2load'] as const).flatMap((tool) => (['throughput', 'latency'] as const).flatMap((kind) => {
      const w = s.find((r) => r.proxy === a && r.tool === tool && r.kind === kind);
      const n = s.find((r) => r.proxy === b && r.tool === tool && r.kind === kind);
      if (!w || !n) return [];
      return [{ tool, kind, rps: w.rps / n.rps, p50: w.p50 / n.p50, p99: w.p99 / n.p99, cpuPerRequest: w.cpuUsPerRequest / n.cpuUsPerRequest }];
    }));
    const ratiosOf = (a: ProxyName, b: ProxyName): LoadResult['ratios'] => ratiosIn(summary, a, b);
    // The same ratios over the undisturbed runs only, beside (never instead of) the ratios over all runs.
    const quiet = runs.filter((r) => r.disturbance.reasons.length === 0);
    const ratiosUndisturbed = quiet.length < runs.length ? ratiosIn(summarise(quiet), 'waypoint', 'nginx') : undefined;
    // Per round, then the median: with and without a policy, and without a policy against the build before.
    const perRound = (a: ProxyName, b: ProxyName): number[] => runs.filter((r) => r.proxy === a && r.kind === 'throughput').map((r) => {
      const other = runs.find((x) => x.proxy === b && x.round === r.round && x.tool === r.tool && x.kind === r.kind);
      return other ? r.cpuUsPerRequest / other.cpuUsPerRequest : Number.NaN;
    }).filter((x) => Number.isFinite(x));
    const policy = {
      withOverWithout: perRound('waypoint-policy', 'waypoint'),
      withoutOverBefore: perRound('waypoint', 'waypoint-before'),
    };
    return { runs, summary, ratios: ratiosOf('waypoint', 'nginx'), ...(o.h2Node ? { ratiosH2Node: ratiosOf('waypoint-h2-node', 'nginx') } : {}), policy, ...(ratiosUndisturbed ? { ratiosUndisturbed } : {}),
      probes: Object.fromEntries([...probes].map(([cpu, p]) => [cpu, { gaps: p.gaps, speeds: p.speeds }])), startedMs };
  } finally {
    for (const p of procs.reverse()) await p.stop();
    for (const p of probes.values()) p.stop();
    // --profile: the maps V8 wrote for perf (--perf-basic-prof-only-functions: /tmp/perf-PID.map), one per waypoint process.
    if (o.profile) for (const p of procs) rmSync(`/tmp/perf-${p.pid}.map`, { force: true });
  }
}

function fmt(x: number, digits = 2): string {
  return Number.isFinite(x) ? x.toFixed(digits) : 'n/a';
}

/**
 * Every run, with what else happened in its window (bench/waypoint/steal.ts): the waypoint's
 * stalls show here as a run whose CPU per request and p99 rise while its CPU lost time.
 */
export function runsTable(runs: readonly Run[]): string[] {
  const lines = ['## Every run and what disturbed it', '',
    'CPU/req: user + system time (/proc/PID/stat, sampled at the tick) per request, as the summary, then split (the stalls of a slow host phase show as user time per request ×1.8–1.9 in nginx and the waypoint alike: docs/waypoint-bench.md); exact: the same from every thread\'s scheduler run time (/proc/PID/task/*/schedstat); lost: time the probe (bench/waypoint/steal-probe.c, SCHED_FIFO, every 4 ms) found the guest not running on that CPU, gaps over 0.25 ms, summed; late wake-ups: the share of its wake-ups that came late, an estimate of the share of the time the CPU did not run the guest, short gaps included (the host took the vCPU: this kernel reports no steal, so the time is charged to the task that was running); CPU/req less lost: the proxy\'s CPU time less the time lost on its CPU (the larger of the two estimates, times the proxy\'s share of the CPU\'s busy time), per request; CPU slowdown: the probe\'s fixed arithmetic loop on the proxy\'s CPU in the run (median) ÷ its fastest second in the whole bench (a host running the vCPU slower without taking it away); wide loop, loads, calls slowdown: the same for its multiplies in 8 independent chains (throughput-bound: a busy sibling hyperthread), its random loads over 32 MiB and its system calls (caches, memory and the hypervisor the host shares with other guests); others: busy time on the proxy\'s CPU not the proxy\'s (the probe\'s own ~0.6 % included); idle: the proxy\'s CPU idle (in a throughput run: the proxy waited for the load tool or the backend, whose CPU may have lost time); wait: the proxy\'s run-queue wait (/proc/PID/schedstat); GC: young / full collections, their pauses, the young generation\'s size after the run; helper threads: the share of the proxy\'s exact CPU time not run by its main threads (a Node.js process\'s compiler and GC threads, libuv\'s pool); kernel events per request (--kernel-events, perf stat on the proxy\'s PIDs): system calls, IPIs sent (each a trip through the host on this VM), tasks woken, page faults; profile per request (--profile, perf record of the CPU clock, throughput runs): time in the kernel, in node\'s own code, in the JIT\'s code (of which TurboFan / Maglev), in libc and elsewhere (nginx\'s own binary, libstdc++, the vDSO); top other processes: CPU time in the window on either CPU, the proxy excluded (wrk and the backend among them).', '',
    '| round | proxy | tool | run | req/s | p99 (us) | max (ms) | CPU/req (us) | exact (us) | user / sys per req (us) | CPU/req less lost | CPU slowdown proxy / load | wide loop, loads, calls slowdown proxy CPU | lost proxy CPU ms (gaps, longest) | late wake-ups proxy / load CPU | lost load CPU ms | others ms | idle ms | wait ms | invol. switches | TCP opens (connect / accept) | GC | helper threads | syscalls / IPIs / wake-ups / faults per req | profile per req (us): kernel / node / JS (TurboFan, Maglev) / libc / other | top other processes (ms) | disturbed |',
    '|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|'];
  for (const r of runs) {
    const d = r.disturbance;
    // A gap is charged to whatever ran on the CPU: to the proxy in the share of the busy time that was its own.
    const cpu = d.proxy.user + d.proxy.sys;
    const lostMs = Math.max(d.lostProxyCpuMs, d.lateShareProxyCpu * d.windowMs) * ((cpu * 1000) / (cpu * 1000 + d.othersOnProxyCpuMs));
    const less = cpu > 0 ? r.cpuUsPerRequest * (1 - lostMs / 1000 / cpu) : Number.NaN;
    // Requests in the window (the tool's own count when it gives one): the counts and the profile span all of it.
    const n = Number.isFinite(r.sample.requests) ? r.sample.requests! : r.sample.rps! * (d.windowMs / 1000);
    const k = r.kernel;
    const events = k && n > 0 ? `${fmt(k.syscalls / n)} / ${fmt(k.ipis / n)} / ${fmt(k.wakeups / n)} / ${fmt(k.pageFaults / n, 3)}` : '–';
    const us = (s: number): string => fmt((s * 1e6) / n, 1);
    const pr = r.profile;
    const profile = pr && n > 0 ? `${us(pr.kernel)} / ${us(pr.node)} / ${us(pr.jit)} (${us(pr.turbofan)}, ${us(pr.maglev)}) / ${us(pr.libc)} / ${us(pr.other)}` : '–';
    const helpers = d.proxy.runMs > 0 ? `${fmt((100 * (d.proxy.runMs - d.proxy.mainRunMs)) / d.proxy.runMs, 1)} %` : '–';
    lines.push(`| ${r.round} | ${r.proxy} | ${r.tool} | ${r.kind} | ${fmt(r.sample.rps!, 0)} | ${fmt(r.sample.p99!, 0)} | ${fmt((r.sample.max ?? Number.NaN) / 1000, 1)} | ${fmt(r.cpuUsPerRequest, 1)} | ${fmt(r.cpuUsPerRequest * (d.proxy.runMs / 1000 / cpu), 1)} | ${cpu > 0 ? `${fmt((r.cpuUsPerRequest * d.proxy.user) / cpu, 1)} / ${fmt((r.cpuUsPerRequest * d.proxy.sys) / cpu, 1)}` : '–'} | ${fmt(less, 1)} | ${fmt(d.slowdownProxyCpu)} / ${fmt(d.slowdownLoadCpu)} | ${fmt(d.wideSlowdownProxyCpu)}, ${fmt(d.loadsSlowdownProxyCpu)}, ${fmt(d.callsSlowdownProxyCpu)} | ${fmt(d.lostProxyCpuMs, 0)} (${d.lostProxyCpuCount}, ${fmt(d.lostProxyCpuMaxMs, 1)}) | ${fmt(100 * d.lateShareProxyCpu, 1)} / ${fmt(100 * d.lateShareLoadCpu, 1)} % | ${fmt(d.lostLoadCpuMs, 0)} | ${fmt(d.othersOnProxyCpuMs, 0)} | ${fmt(d.idleProxyCpuMs, 0)} | ${fmt(d.proxy.waitMs, 0)} | ${d.proxy.involuntary} | ${d.tcpActiveOpens} / ${d.tcpPassiveOpens} | ${r.gc ? `${r.gc.minor} / ${r.gc.major}, ${fmt(r.gc.pauseMs, 0)} ms, ${fmt(r.gc.newSpaceBytes / 1048576, 0)} MiB` : '–'} | ${helpers} | ${events} | ${profile} | ${d.top.map((t) => `${t.name} ${t.ms}`).join(', ')} | ${d.reasons.join('; ') || 'no'} |`);
  }
  return lines;
}

export function report(load: LoadResult | undefined, memory: MemoryResult | undefined, o: LoadOptions): string {
  const lines = ['# kernway waypoint vs nginx', '',
    `One hop each, same echo backend (nginx \`return 200\`), the proxy under test alone on CPU ${o.proxyCpu} (nginx: 1 worker; waypoint: 1 Node.js process${o.nodeFlags.length ? ` with ${o.nodeFlags.join(' ')}` : ''}), load tool and backend on CPU ${o.loadCpu}; both log every request.`,
    `wrk: -t1 -c${o.connections} (throughput) and -c1 (latency); h2load (h2c): -c${o.h2Connections} -m${o.h2Streams} (throughput) and -c1 -m1 (latency); ${o.seconds}s each after ${o.warmupSeconds}s of warm-up; ${o.rounds} rounds alternating the order, medians.`,
    'CPU/request: user+system CPU time of the proxy process(es) divided by the requests served — less sensitive to other load on the machine than req/s.', ''];
  if (load) {
    lines.push('GC: the waypoints\' garbage collection during the run (their /metrics): pause time as a share of their CPU time, and young-generation collections per 100 requests (each one pauses the request it lands on).', '');
    lines.push('| tool | run | proxy | req/s | p50 (us) | p99 (us) | CPU/request (us) | GC share of CPU | young GCs / 100 requests | errors | disturbed runs |', '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of load.summary) lines.push(`| ${r.tool} | ${r.kind} | ${r.proxy} | ${fmt(r.rps, 0)} | ${fmt(r.p50, 0)} | ${fmt(r.p99, 0)} | ${fmt(r.cpuUsPerRequest, 1)} | ${Number.isFinite(r.gcCpuShare) ? `${fmt(100 * r.gcCpuShare, 0)} %` : '–'} | ${Number.isFinite(r.minorGcPer100) ? fmt(r.minorGcPer100) : '–'} | ${r.errors} | ${r.disturbed} of ${r.runs} |`);
    lines.push('', '| tool | run | req/s waypoint/nginx (target >= 0.5) | p50 ratio | p99 ratio (target <= 2) | CPU/request ratio |', '|---|---|---:|---:|---:|---:|');
    for (const r of load.ratios) lines.push(`| ${r.tool} | ${r.kind} | ${fmt(r.rps)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.cpuPerRequest)} |`);
    if (load.ratiosUndisturbed && load.ratiosUndisturbed.length > 0) {
      lines.push('', '| tool | run | undisturbed runs only: req/s waypoint/nginx | p50 ratio | p99 ratio | CPU/request ratio |', '|---|---|---:|---:|---:|---:|');
      for (const r of load.ratiosUndisturbed) lines.push(`| ${r.tool} | ${r.kind} | ${fmt(r.rps)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.cpuPerRequest)} |`);
    }
    lines.push('', ...runsTable(load.runs));
    if (load.ratiosH2Node) {
      lines.push('', '| tool | run | req/s waypoint --http2-server node / nginx | p50 ratio | p99 ratio | CPU/request ratio |', '|---|---|---:|---:|---:|---:|');
      for (const r of load.ratiosH2Node) lines.push(`| ${r.tool} | ${r.kind} | ${fmt(r.rps)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.cpuPerRequest)} |`);
    }
    const p = load.policy;
    if (p && (p.withOverWithout.length > 0 || p.withoutOverBefore.length > 0)) {
      const range = (xs: number[]): string => xs.length === 0 ? 'n/a' : `${fmt(med(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}, ${xs.length} runs)`;
      lines.push('', '## BackendTrafficPolicy cost (CPU per request, throughput runs, per round then median)', '',
        `- with a policy ÷ without: ${range(p.withOverWithout)}`,
        `- without a policy ÷ the build before (--before-dist): ${range(p.withoutOverBefore)}`);
    }
  }
  if (memory) {
    lines.push('', `## Memory with ${memory.routes} HTTPRoutes (target < 100 MiB)`, '',
      'RSS after every route served a request (new space: V8\'s young generation), peak RSS during 3 s of wrk -c16 over every route, then during 3 s of h2load -c16 -m8 (h2c, one route), RSS once idle after them (the waypoint\'s idle compaction: count and pause), and after one /metrics scrape and three in a row (with the CPU time the waypoint spent per scrape and the size of the text); the manifests in one file, or one file per route.', '',
      '| routes | layout | node flags | RSS served (MiB) | heap used | new space | RSS under load | under h2c load (requests 200) | RSS idle after load | new space idle | compactions (pause ms) | RSS after a scrape | after 3 scrapes | CPU per scrape (ms) | text (MB) | ready after (ms) | requests answered 200 |', '|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|');
    const mb = (b: number): string => fmt(b / 1048576, 1);
    for (const m of memory.points) lines.push(`| ${m.routes} | ${m.layout} | ${m.nodeFlags.join(' ') || '(defaults)'}${m.build === 'before' ? ' (--before-dist)' : ''} | ${mb(m.rssBytes)} | ${mb(m.heapUsedBytes)} | ${mb(m.newSpaceBytes)} | ${mb(m.rssUnderLoadBytes)} | ${mb(m.rssUnderH2LoadBytes)} (${m.h2LoadSucceeded}) | ${mb(m.rssIdleBytes)} | ${mb(m.newSpaceIdleBytes)} | ${m.idleCompactions} (${fmt(m.idleCompactionMs, 0)}) | ${mb(m.rssAfterScrapeBytes)} | ${mb(m.rssAfter3ScrapesBytes)} | ${fmt(m.scrapeCpuMs, 0)} | ${fmt(m.scrapeBytes / 1e6, 2)} | ${fmt(m.readyMs, 0)} | ${m.requestsOk} |`);
  }
  return lines.join('\n') + '\n';
}

async function cli(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' }, connections: { type: 'string' }, 'proxy-cpu': { type: 'string' }, 'load-cpu': { type: 'string' },
      routes: { type: 'string' }, out: { type: 'string' }, 'skip-memory': { type: 'boolean' }, 'skip-load': { type: 'boolean' },
      rounds: { type: 'string' }, 'node-flags': { type: 'string' }, baselines: { type: 'boolean' }, 'node-path': { type: 'boolean' },
      policy: { type: 'boolean' }, 'before-dist': { type: 'string' }, 'h1-only': { type: 'boolean' }, 'h2-only': { type: 'boolean' }, net: { type: 'string' }, 'h2-node': { type: 'boolean' },
      'no-steal-probe': { type: 'boolean' }, 'keep-scratch': { type: 'boolean' }, 'kernel-events': { type: 'boolean' }, profile: { type: 'boolean' },
    },
  });
  if (values.net !== undefined) useNet(values.net);
  const nodeFlags = (values['node-flags'] ?? WAYPOINT_NODE_FLAGS.join(' ')).split(' ').filter((x) => x !== '');
  const o: LoadOptions = {
    seconds: Number(values.seconds ?? 10), connections: Number(values.connections ?? 64), h2Connections: 16, h2Streams: 8,
    proxyCpu: Number(values['proxy-cpu'] ?? 0), loadCpu: Number(values['load-cpu'] ?? 1), warmupSeconds: 3,
    rounds: Number(values.rounds ?? 3), nodeFlags, baselines: values.baselines ?? false, nodePath: values['node-path'] ?? false,
    policy: values.policy ?? false, beforeDist: values['before-dist'], h1Only: values['h1-only'] ?? false, h2Only: values['h2-only'] ?? false,
    h2Node: values['h2-node'] ?? false, stealProbe: !(values['no-steal-probe'] ?? false),
    kernelEvents: values['kernel-events'] ?? false, profile: values.profile ?? false,
  };
  const out = values.out ?? join(projectRoot(), '.bench-out', `waypoint-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(out, { recursive: true });
  const scratch = mkdtempSync(join(tmpdir(), 'kw-bench-waypoint-'));
  try {
    const load = values['skip-load'] ? undefined : await runLoad(o, scratch);
    const memory = values['skip-memory'] ? undefined : await measureMemory(scratch, { routes: Number(values.routes ?? 1000), cpu: o.proxyCpu, loadCpu: o.loadCpu, nodeFlags, beforeDist: o.beforeDist });
    writeFileSync(join(out, 'results.json'), JSON.stringify({ options: o, load, memory, node: process.version, at: new Date().toISOString() }, null, 2));
    const md = report(load, memory, o);
    writeFileSync(join(out, 'report.md'), md);
    console.log(md);
    console.log(`results: ${join(out, 'results.json')}`);
  } finally {
    if (values['keep-scratch']) console.log(`scratch (logs, configs) kept: ${scratch}`);
    else rmSync(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] && process.argv[1].endsWith(join('bench', 'waypoint', 'run.js'))) {
  cli().catch((e: unknown) => { console.error(`bench/waypoint: ${(e as Error).message}`); process.exitCode = 1; });
}
