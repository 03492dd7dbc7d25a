/**
 * What the slow requests of a one-connection run coincide with: nginx and the waypoint, one
 * hop each to the same echo backend, pinned as bench/waypoint/run.ts pins them (proxy on one
 * CPU, load tool and backend on the other), each measured with one connection by h2load
 * (`--h1` for HTTP/1.1, h2c with --h2), whose request log gives every request's start and
 * duration. For each proxy it reports:
 *   - the percentiles of the real requests, and the p99 wrk would print for the same requests
 *     (wrk corrects for coordinated omission: a request slower than twice the mean interval
 *     adds synthetic samples, so one stall of S ms counts about S / interval times);
 *   - the proxy's scheduler time over the run (/proc/PID/schedstat): running, and runnable but
 *     waiting for a CPU — on a shared machine most of a tail is the second;
 *   - for the waypoint, the GC pauses (bench/waypoint/gc-probe.ts, loaded with --import) that
 *     overlap a slow request;
 *   - with --perf (root): `perf sched record` during the run, and for the slow requests how much
 *     of their time the proxy, the backend and the load tool spent running or waiting for a CPU.
 *
 *   node dist/bench/waypoint/tail.js [--seconds 5] [--h2] [--perf] [--slow-us 1000]
 *     [--proxy-cpu 0] [--load-cpu 1] [--net 127.95] [--node-flags '...'] [--out DIR]
 *
 * Results: DIR/tail.json and DIR/tail.md (default .bench-out/tail-<time>/). It measures, it
 * does not assert.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { projectRoot } from '../../common/version.js';
import { percentile, sortedCopy } from '../stats.js';
import { backendManifests, gatewayManifests } from './manifests.js';
import { runTool, startNginx, startWaypoint, type Proc } from './procs.js';

/** One request of h2load's log: start (µs since the epoch), status, duration (µs). */
export interface LoggedRequest { startUs: number; status: number; us: number }

/** h2load's --log-file: `start<TAB>status<TAB>duration` per line, times in microseconds. */
export function parseH2loadLog(text: string): LoggedRequest[] {
  const out: LoggedRequest[] = [];
  for (const line of text.split('\n')) {
    const f = line.split('\t');
    if (f.length < 3) continue;
    const r = { startUs: Number(f[0]), status: Number(f[1]), us: Number(f[2]) };
    if (Number.isFinite(r.startUs) && Number.isFinite(r.us)) out.push(r);
  }
  return out;
}

/**
 * The latencies wrk would compute its percentiles from (wrk's stats_correct): with `interval`
 * the mean time between requests of one connection, every request taking n >= 2 x interval adds
 * n - interval, n - 2 x interval, … while above the interval.
 */
export function wrkCorrected(us: readonly number[], interval: number): number[] {
  const out = [...us];
  if (!(interval > 0)) return out;
  for (const n of us) for (let m = n - interval; n >= 2 * interval && m > interval; m -= interval) out.push(m);
  return out;
}

/** A stretch of time (µs, CLOCK_MONOTONIC) a task spent running or waiting for a CPU. */
export interface SchedSpan { from: number; to: number; task: string; state: 'run' | 'wait' }

/**
 * `perf sched timehist` lines (`time cpu task[tid/pid] wait sch-delay run`, ms; time in s, the
 * end of a run) as spans: the run [time - run, time], and before it the wait for a CPU
 * [time - run - sch-delay, time - run]. `name` maps a tid to the task it is counted as.
 */
export function parseTimehist(text: string, name: (tid: number, comm: string) => string | undefined): SchedSpan[] {
  const spans: SchedSpan[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([\d.]+)\s+\[\d+\]\s+(\S+)\[(\d+)(?:\/\d+)?\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$/.exec(line);
    if (!m) continue;
    const task = name(Number(m[3]), m[2]!);
    if (task === undefined) continue;
    const end = Number(m[1]) * 1e6, run = Number(m[6]) * 1e3, delay = Number(m[5]) * 1e3;
    spans.push({ from: end - run, to: end, task, state: 'run' });
    if (delay > 0) spans.push({ from: end - run - delay, to: end - run, task, state: 'wait' });
  }
  return spans;
}

/** How much of the windows' time (µs) each task spent per state, summed over the windows. */
export function overlap(windows: ReadonlyArray<{ from: number; to: number }>, spans: readonly SchedSpan[]): Record<string, number> {
  const sorted = [...spans].sort((a, b) => a.from - b.from);
  const total: Record<string, number> = {};
  for (const w of windows) {
    for (const s of sorted) {
      if (s.from >= w.to) break;
      if (s.to <= w.from) continue;
      const k = `${s.task} ${s.state}`;
      total[k] = (total[k] ?? 0) + Math.min(s.to, w.to) - Math.max(s.from, w.from);
    }
  }
  return total;
}

interface ProxyResult {
  proxy: string; requests: number; p50: number; p90: number; p99: number; p999: number; max: number;
  wrkP99: number;
  /** The proxy's time over the run (ms): running, waiting for a CPU; and per request (µs). */
  sched: { runMs: number; waitMs: number; runUsPerRequest: number; waitUsPerRequest: number };
  slow: { threshold: number; count: number; ms: number; withGc?: number; gcMs?: number; attribution?: Record<string, number> };
  gc?: { pauses: number; ms: number; maxMs: number; byKind: Record<string, number> };
}

function schedstat(pids: readonly number[]): [number, number] {
  let run = 0, wait = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ');
      run += Number(f[0]);
      wait += Number(f[1]);
    } catch { /* gone */ }
  }
  return [run / 1e6, wait / 1e6];
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '').map(Number);
  } catch {
    return [];
  }
}

/** CLOCK_MONOTONIC (what perf -k mono and process.hrtime use) minus the epoch clock, in µs. */
function monoMinusEpochUs(): number {
  return Number(process.hrtime.bigint() / 1000n) - Date.now() * 1000;
}

interface TailOptions { seconds: number; h2: boolean; perf: boolean; slowUs: number; proxyCpu: number; loadCpu: number; net: string; nodeFlags: string[] }

async function run(o: TailOptions, dir: string): Promise<ProxyResult[]> {
  const addr = `${o.net}.0.1`;
  const backend = { address: `${o.net}.0.10`, port: 18381 };
  const ports = { nginxH1: 18380, nginxH2: 18382, waypoint: 18383, admin: 18390 };
  const procs: Proc[] = [];
  try {
    procs.push(await startNginx('backend', dir, o.loadCpu, `access_log off;
  server { listen ${backend.address}:${backend.port} reuseport backlog=4096; location / { default_type text/plain; return 200 "$request_method $request_uri\\n"; } }`, backend));
    const ng = await startNginx('proxy', dir, o.proxyCpu, `upstream echo { server ${backend.address}:${backend.port}; keepalive 256; }
  access_log ${join(dir, 'nginx-proxy.access.log')} combined buffer=64k flush=1s;
  server {
    listen ${addr}:${ports.nginxH1} backlog=4096;
    listen ${addr}:${ports.nginxH2} http2 backlog=4096;
    location / { proxy_pass http://echo; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }
  }`, { address: addr, port: ports.nginxH1 });
    procs.push(ng);
    const mdir = join(dir, 'manifests');
    mkdirSync(mdir, { recursive: true });
    writeFileSync(join(mdir, 'bench.yaml'), gatewayManifests('bench', 'bench', ports.waypoint)
      + backendManifests({ name: 'echo', namespace: 'bench', gateway: 'bench', clusterIP: '10.96.95.1', endpoint: backend.address, targetPort: backend.port, pathPrefix: '/' }));
    const gcOut = join(dir, 'gc.json');
    process.env.KW_GC_PROBE_OUT = gcOut;
    const wp = await startWaypoint(join(projectRoot(), 'dist', 'cli', 'main.js'), o.proxyCpu, [
      '--namespace', 'bench', '--manifests', mdir, '--listen-address', addr, '--mesh-port', '0',
      '--metrics-address', `${addr}:${ports.admin}`, '--access-log', join(dir, 'waypoint.access.log'),
    ], { address: addr, port: ports.waypoint }, join(dir, 'waypoint.log'), ['--import', join(projectRoot(), 'dist', 'bench', 'waypoint', 'gc-probe.js'), ...o.nodeFlags]);
    delete process.env.KW_GC_PROBE_OUT;
    procs.push(wp);
    const targets = [
      { proxy: 'nginx', port: o.h2 ? ports.nginxH2 : ports.nginxH1, pids: () => childrenOf(ng.pid) },
      { proxy: 'waypoint', port: ports.waypoint, pids: () => [wp.pid] },
    ];
    const measured: Array<{ proxy: string; log: LoggedRequest[]; run: number; wait: number; spans?: SchedSpan[]; offset: number }> = [];
    for (const t of targets) {
      const url = `http://${addr}:${t.port}/echo`;
      const warm = await runTool(o.loadCpu, 'wrk', ['-t1', '-c64', '-d3s', url], 60_000);
      if (warm.code !== 0) throw new Error(`wrk failed: ${warm.out}`);
      const logFile = join(dir, `${t.proxy}.h2load.log`);
      const pids = t.pids();
      let perf: ReturnType<typeof spawn> | undefined;
      const perfData = join(dir, `${t.proxy}.perf.data`);
      if (o.perf) {
        perf = spawn('perf', ['sched', 'record', '-k', 'mono', '-o', perfData, '--', 'sleep', String(o.seconds + 2)], { stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, 300));
      }
      const offset = monoMinusEpochUs();
      const [r0, w0] = schedstat(pids);
      const r = await runTool(o.loadCpu, 'h2load', [...(o.h2 ? [] : ['--h1']), '-c1', '-m1', `-D${o.seconds}`, '--warm-up-time=1', `--log-file=${logFile}`, url], (o.seconds + 30) * 1000);
      const [r1, w1] = schedstat(pids);
      if (r.code !== 0) throw new Error(`h2load failed: ${r.out}`);
      let spans: SchedSpan[] | undefined;
      if (perf) {
        await new Promise((res) => perf.once('exit', res));
        const th = await runTool(o.loadCpu, 'perf', ['sched', 'timehist', '-i', perfData], 120_000);
        const proxyPids = new Set(pids), backendPids = new Set(childrenOf(procs[0]!.pid));
        spans = parseTimehist(th.out, (tid, comm) => proxyPids.has(tid) ? 'proxy' : backendPids.has(tid) ? 'backend' : comm === 'h2load' ? 'h2load' : undefined);
        rmSync(perfData, { force: true });
      }
      measured.push({ proxy: t.proxy, log: parseH2loadLog(readFileSync(logFile, 'utf8')), run: r1 - r0, wait: w1 - w0, spans, offset });
    }
    for (const p of procs.splice(0).reverse()) await p.stop();
    let gc: Array<[number, number, number]> = [];
    try { gc = (JSON.parse(readFileSync(gcOut, 'utf8')) as { pauses: Array<[number, number, number]> }).pauses; } catch { /* the probe wrote nothing */ }
    return measured.map((m) => summarise(m, m.proxy === 'waypoint' ? gc : undefined, o));
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
}

function summarise(m: { proxy: string; log: LoggedRequest[]; run: number; wait: number; spans?: SchedSpan[]; offset: number }, gc: Array<[number, number, number]> | undefined, o: TailOptions): ProxyResult {
  const us = sortedCopy(m.log.map((r) => r.us));
  const n = us.length;
  const first = m.log[0]?.startUs ?? 0, last = m.log.at(-1) ? m.log.at(-1)!.startUs + m.log.at(-1)!.us : 0;
  const interval = n > 0 ? (last - first) / n : Number.NaN;
  const slow = m.log.filter((r) => r.us > o.slowUs);
  const res: ProxyResult = {
    proxy: m.proxy, requests: n, p50: percentile(us, 50), p90: percentile(us, 90), p99: percentile(us, 99), p999: percentile(us, 99.9), max: us[n - 1] ?? Number.NaN,
    wrkP99: percentile(sortedCopy(wrkCorrected(us, interval)), 99),
    sched: { runMs: m.run, waitMs: m.wait, runUsPerRequest: (m.run * 1000) / n, waitUsPerRequest: (m.wait * 1000) / n },
    slow: { threshold: o.slowUs, count: slow.length, ms: slow.reduce((a, r) => a + r.us, 0) / 1000 },
  };
  if (gc) {
    const during = gc.filter(([t]) => t * 1000 >= first && t * 1000 <= last);
    const byKind: Record<string, number> = {};
    for (const [, d, k] of during) byKind[String(k)] = (byKind[String(k)] ?? 0) + d;
    res.gc = { pauses: during.length, ms: during.reduce((a, [, d]) => a + d, 0), maxMs: Math.max(0, ...during.map(([, d]) => d)), byKind };
    let withGc = 0, gcMs = 0;
    for (const r of slow) {
      const hit = during.filter(([t, d]) => t * 1000 < r.startUs + r.us && (t + d) * 1000 > r.startUs);
      if (hit.length > 0) withGc++;
      gcMs += hit.reduce((a, [t, d]) => a + Math.min((t + d) * 1000, r.startUs + r.us) - Math.max(t * 1000, r.startUs), 0) / 1000;
    }
    res.slow.withGc = withGc;
    res.slow.gcMs = gcMs;
  }
  if (m.spans) {
    const att = overlap(slow.map((r) => ({ from: r.startUs + m.offset, to: r.startUs + r.us + m.offset })), m.spans);
    res.slow.attribution = Object.fromEntries(Object.entries(att).map(([k, v]) => [k, +(v / 1000).toFixed(1)]));
  }
  return res;
}

function fmt(x: number | undefined, d = 0): string {
  return x !== undefined && Number.isFinite(x) ? x.toFixed(d) : '–';
}

export function tailReport(rs: readonly ProxyResult[], o: TailOptions, load: string): string {
  const lines = [`# One connection (${o.h2 ? 'h2c' : 'HTTP/1.1'}): what the slow requests coincide with`, '',
    `h2load -c1 -m1 for ${o.seconds} s per proxy after 3 s of wrk -c64; proxy on CPU ${o.proxyCpu}, load tool and backend on CPU ${o.loadCpu}. Load before/after: ${load}.${o.nodeFlags.length > 0 ? ` Waypoint started with ${o.nodeFlags.join(' ')}.` : ''}`, '',
    '| proxy | requests | p50 | p90 | p99 | p99.9 | max | p99 as wrk counts it | run µs/request | CPU wait µs/request |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|'];
  for (const r of rs) lines.push(`| ${r.proxy} | ${r.requests} | ${fmt(r.p50)} | ${fmt(r.p90)} | ${fmt(r.p99)} | ${fmt(r.p999)} | ${fmt(r.max)} | ${fmt(r.wrkP99)} | ${fmt(r.sched.runUsPerRequest, 1)} | ${fmt(r.sched.waitUsPerRequest, 1)} |`);
  lines.push('', '(latencies in µs)', '');
  for (const r of rs) {
    lines.push(`- ${r.proxy}: ${r.slow.count} requests slower than ${r.slow.threshold} µs, ${fmt(r.slow.ms, 1)} ms in all`
      + (r.slow.withGc !== undefined ? `; ${r.slow.withGc} of them overlap a GC pause (${fmt(r.slow.gcMs, 1)} ms of pause inside them)` : '')
      + (r.gc ? `; during the run ${r.gc.pauses} GC pauses, ${fmt(r.gc.ms, 1)} ms, longest ${fmt(r.gc.maxMs, 2)} ms (ms by kind, 1 minor 4 major 8 incremental: ${JSON.stringify(Object.fromEntries(Object.entries(r.gc.byKind).map(([k, v]) => [k, +v.toFixed(1)])))})` : ''));
    if (r.slow.attribution) lines.push(`  - time of those requests (ms) spent by each task running or runnable waiting for a CPU (perf sched): ${JSON.stringify(r.slow.attribution)}`);
  }
  return lines.join('\n') + '\n';
}

async function cli(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' }, h2: { type: 'boolean' }, perf: { type: 'boolean' }, 'slow-us': { type: 'string' },
      'proxy-cpu': { type: 'string' }, 'load-cpu': { type: 'string' }, net: { type: 'string' }, out: { type: 'string' }, 'node-flags': { type: 'string' },
    },
  });
  const net = values.net ?? '127.95';
  if (!/^127\.(25[0-5]|2[0-4]\d|1?\d?\d)$/.test(net)) throw new Error(`--net: two octets inside 127/8 expected, like 127.95, got ${JSON.stringify(net)}`);
  const o: TailOptions = {
    seconds: Number(values.seconds ?? 5), h2: values.h2 ?? false, perf: values.perf ?? false, slowUs: Number(values['slow-us'] ?? 1000),
    proxyCpu: Number(values['proxy-cpu'] ?? 0), loadCpu: Number(values['load-cpu'] ?? 1), net,
    nodeFlags: (values['node-flags'] ?? '').split(' ').filter((x) => x !== ''),
  };
  const out = values.out ?? join(projectRoot(), '.bench-out', `tail-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(out, { recursive: true });
  const scratch = mkdtempSync(join(tmpdir(), 'kw-bench-tail-'));
  try {
    const before = readFileSync('/proc/loadavg', 'utf8').split(' ')[0]!;
    const rs = await run(o, scratch);
    const load = `${before} / ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]!}`;
    writeFileSync(join(out, 'tail.json'), JSON.stringify({ options: o, load, results: rs, at: new Date().toISOString() }, null, 2));
    const md = tailReport(rs, o, load);
    writeFileSync(join(out, 'tail.md'), md);
    console.log(md);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] && process.argv[1].endsWith(join('bench', 'waypoint', 'tail.js'))) {
  cli().catch((e: unknown) => { console.error(`bench/waypoint/tail: ${(e as Error).message}`); process.exitCode = 1; });
}
