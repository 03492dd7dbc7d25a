/**
 * The load tools the benchmark runs (Debian's sockperf, wrk, h2load, iperf3, and the
 * connection-rate client built from bench/connrate.c), and the parsers of their output.
 * Each runner starts the tool in the client pod and returns one sample: a flat record of
 * numbers (latencies in microseconds, rates per second, throughput in Gbit/s).
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecOptions } from '../lab/index.js';
import type { RunResult } from '../lab/system.js';
import { KernwayError } from '../common/errors.js';
import { percentile, sortedCopy } from './stats.js';

export type Sample = Record<string, number>;

export interface Endpoint { host: string; port: number }

export class ToolError extends KernwayError {
  constructor(tool: string, message: string, output: string) {
    super('KW_BENCH_TOOL', `${tool}: ${message}${output ? `\n${output.trim().split('\n').slice(-15).join('\n')}` : ''}`, { tool });
  }
}

// ---------------------------------------------------------------- parsers

/** sockperf ping-pong summary: "---> percentile 99.900 =   93.899" (usec), "avg-rtt=16.481". */
export function parseSockperf(out: string): Sample {
  // eslint-disable-next-line no-control-regex -- ANSI colour codes start with ESC
  const text = out.replace(/\x1b\[[0-9;]*m/g, '');
  const pct = (p: string): number => {
    const m = new RegExp(`percentile ${p.replace('.', '\\.')} =\\s+([\\d.]+)`).exec(text);
    if (!m) throw new ToolError('sockperf', `no percentile ${p} in the output`, text);
    return Number(m[1]);
  };
  const avg = /avg-(?:rtt|lat)=\s*([\d.]+)/.exec(text);
  const obs = /Total (\d+) observations/.exec(text);
  return {
    p50: pct('50.000'), p90: pct('90.000'), p99: pct('99.000'), p999: pct('99.900'),
    avg: avg ? Number(avg[1]) : Number.NaN,
    observations: obs ? Number(obs[1]) : Number.NaN,
  };
}

function wrkDuration(v: string, unit: string): number {
  const x = Number(v);
  return unit === 'us' ? x : unit === 'ms' ? x * 1000 : unit === 's' ? x * 1e6 : Number.NaN;
}

/** Lua for wrk: prints the percentiles wrk's --latency leaves out (p99.9) from its own histogram. */
export const WRK_SCRIPT = `done = function(summary, latency, requests)
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("kw-percentile %g %d\\n", p, latency:percentile(p)))
  end
  io.write(string.format("kw-summary requests=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\\n",
    summary.requests, summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
`;

/**
 * wrk with --latency and WRK_SCRIPT: requests/s, p50/p90/p99/p99.9 and max (usec), errors.
 * wrk's percentiles are corrected for coordinated omission (a stall adds synthetic samples);
 * its max is the slowest real request.
 */
export function parseWrk(out: string): Sample {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!rps) throw new ToolError('wrk', 'no Requests/sec in the output', out);
  const fromScript = new Map<string, number>();
  for (const m of out.matchAll(/^kw-percentile ([\d.]+) (\d+)$/gm)) fromScript.set(m[1]!, Number(m[2]));
  const fromLatency = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
    return m ? wrkDuration(m[1]!, m[2]!) : Number.NaN;
  };
  const get = (p: string): number => fromScript.get(p) ?? fromLatency(p);
  const s = /kw-summary requests=(\d+) non2xx=(\d+) connect=(\d+) read=(\d+) write=(\d+) timeout=(\d+)/.exec(out);
  const errors = s ? Number(s[2]) + Number(s[3]) + Number(s[4]) + Number(s[5]) + Number(s[6]) : 0;
  // The slowest request as measured: a stall counts once here, where wrk's corrected percentiles count it many times.
  const max = /^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s/m.exec(out);
  const sample = { rps: Number(rps[1]), p50: get('50'), p90: get('90'), p99: get('99'), p999: get('99.9'), max: max ? wrkDuration(max[1]!, max[2]!) : Number.NaN, requests: s ? Number(s[1]) : Number.NaN, errors };
  if (!Number.isFinite(sample.p50)) throw new ToolError('wrk', 'no latency percentiles in the output (was --latency given?)', out);
  return sample;
}

/**
 * h2load: the summary ("finished in 2.00s, 12345.67 req/s", "requests: ... N succeeded,
 * N failed") and the per-request log (--log-file: start time, status, microseconds
 * until the end of the response), from which the percentiles are computed.
 */
export function parseH2load(out: string, log: string): Sample {
  const fin = /finished in ([\d.]+)(ms|s), ([\d.]+) req\/s/.exec(out);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  if (!fin || !req) throw new ToolError('h2load', 'no summary in the output', out);
  const times: number[] = [];
  for (const line of log.split('\n')) {
    const f = line.split('\t');
    if (f.length >= 3 && f[1]!.startsWith('2')) times.push(Number(f[2]));
  }
  if (times.length === 0) throw new ToolError('h2load', 'the request log has no successful request', out);
  const s = sortedCopy(times);
  return {
    rps: Number(fin[3]), p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), p999: percentile(s, 99.9), max: s[s.length - 1]!,
    requests: Number(req[4]), errors: Number(req[5]) + Number(req[6]) + Number(req[7]),
  };
}

/** iperf3 -J: received throughput (Gbit/s) and the sender's retransmits. */
export function parseIperf3(json: string): Sample {
  let j: { error?: string; end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } } };
  try {
    j = JSON.parse(json) as typeof j;
  } catch {
    throw new ToolError('iperf3', 'the output is not JSON', json);
  }
  if (j.error) throw new ToolError('iperf3', j.error, '');
  const bps = j.end?.sum_received?.bits_per_second;
  if (typeof bps !== 'number') throw new ToolError('iperf3', 'no end.sum_received.bits_per_second', json.slice(0, 500));
  return { gbps: bps / 1e9, retransmits: j.end?.sum_sent?.retransmits ?? Number.NaN };
}

/** bench/connrate.c's JSON line. */
export function parseConnrate(out: string): Sample {
  let j: { connections: number; errors: { connect: number; io: number; response: number }; seconds: number; rate: number; p50_us: number; p90_us: number; p99_us: number; p999_us: number };
  try {
    j = JSON.parse(out.trim().split('\n').pop() ?? '') as typeof j;
  } catch {
    throw new ToolError('connrate', 'the output is not JSON', out);
  }
  return {
    rate: j.rate, connections: j.connections, errors: j.errors.connect + j.errors.io + j.errors.response,
    p50: j.p50_us, p90: j.p90_us, p99: j.p99_us, p999: j.p999_us,
  };
}

// ---------------------------------------------------------------- runners

/** What a tool runs in: a lab (lab/index.ts) with its client pod, or a lab cluster's pods (bench/cluster-mode.ts). */
export interface PodRunner<T = unknown> {
  exec(target: T, cmd: string, args: string[], opts?: ExecOptions): Promise<RunResult>;
}

export interface ToolContext {
  lab: PodRunner<any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  client: unknown;
  /** The CPU time (clock ticks, utime + stime) of the tool processes run in this context adds up here. */
  cpu?: { ticks: number };
  /** A scratch folder of this run (h2load's request log, wrk's script). */
  dir: string;
  /** The compiled connection-rate client. */
  connrate: string;
}

/**
 * Runs the tool under a shell that waits for it, then prints its own /proc/self/stat:
 * cutime and cstime there are the CPU time of the waited-for tool (with the softirq work
 * done in its context: this kernel has no IRQ time accounting).
 */
const CPU_WRAPPER = '"$@"; r=$?; read -r s < /proc/self/stat; echo "kw-children-cpu $s" >&2; exit $r';

/** The tool's CPU ticks (cutime + cstime) from the wrapper's line; the output without it. */
export function childrenCpu(out: string): { ticks: number; rest: string } {
  const m = /^kw-children-cpu .*\) (.*)$/m.exec(out);
  if (!m) return { ticks: Number.NaN, rest: out };
  const f = m[1]!.trim().split(/\s+/);
  // After the comm field: state is field 3, so field n is f[n - 3]; cutime 16, cstime 17.
  return { ticks: Number(f[13]) + Number(f[14]), rest: out.replace(m[0], '').replace(/\n\n/, '\n') };
}

async function exec(ctx: ToolContext, tool: string, cmd: string, args: string[], seconds: number): Promise<string> {
  const r = await ctx.lab.exec(ctx.client, 'sh', ['-c', CPU_WRAPPER, 'sh', cmd, ...args], { timeoutMs: (seconds + 30) * 1000 });
  const { ticks, rest } = childrenCpu(r.stderr);
  if (ctx.cpu && Number.isFinite(ticks)) ctx.cpu.ticks += ticks;
  if (r.code !== 0) throw new ToolError(tool, `exited with ${r.code} (${cmd} ${args.join(' ')})`, rest + r.stdout);
  return r.stdout + rest;
}

export interface ToolSettings {
  /** sockperf message size, bytes. */
  msgSize: number;
  /** wrk connections, h2load clients and streams per client, connrate threads. */
  wrkConnections: number;
  h2Clients: number;
  h2Streams: number;
  connrateThreads: number;
}

export const DEFAULT_TOOL_SETTINGS: Readonly<ToolSettings> = Object.freeze({
  msgSize: 64, wrkConnections: 8, h2Clients: 4, h2Streams: 4, connrateThreads: 4,
});

export async function runSockperf(ctx: ToolContext, to: Endpoint, seconds: number, s: ToolSettings): Promise<Sample> {
  const out = await exec(ctx, 'sockperf', 'sockperf', ['ping-pong', '--tcp', '-i', to.host, '-p', String(to.port), '-t', String(seconds),
    '-m', String(s.msgSize), '--full-rtt'], seconds);
  return parseSockperf(out);
}

export async function runWrk(ctx: ToolContext, to: Endpoint, seconds: number, s: ToolSettings): Promise<Sample> {
  const script = join(ctx.dir, 'wrk-percentiles.lua');
  writeFileSync(script, WRK_SCRIPT);
  const out = await exec(ctx, 'wrk', 'wrk', ['-t', '1', '-c', String(s.wrkConnections), '-d', `${seconds}s`, '--latency', '-s', script,
    `http://${to.host}:${to.port}/`], seconds);
  return parseWrk(out);
}

export async function runH2load(ctx: ToolContext, to: Endpoint, seconds: number, s: ToolSettings): Promise<Sample> {
  const log = join(ctx.dir, `h2load-${process.hrtime.bigint()}.log`);
  try {
    const out = await exec(ctx, 'h2load', 'h2load', ['-c', String(s.h2Clients), '-m', String(s.h2Streams), '-t', '1', '-D', String(seconds),
      `--log-file=${log}`, `http://${to.host}:${to.port}/`], seconds);
    return parseH2load(out, readFileSync(log, 'utf8'));
  } finally {
    rmSync(log, { force: true });
  }
}

export async function runIperf3(ctx: ToolContext, to: Endpoint, seconds: number): Promise<Sample> {
  const r = await ctx.lab.exec(ctx.client, 'iperf3', ['-c', to.host, '-p', String(to.port), '-t', String(seconds), '-J'], { timeoutMs: (seconds + 30) * 1000 });
  if (r.code !== 0) throw new ToolError('iperf3', `exited with ${r.code}`, r.stdout + r.stderr);
  return parseIperf3(r.stdout);
}

export async function runConnrate(ctx: ToolContext, to: Endpoint, seconds: number, s: ToolSettings): Promise<Sample> {
  const out = await exec(ctx, 'connrate', ctx.connrate, [to.host, String(to.port), String(seconds), String(s.connrateThreads)], seconds);
  return parseConnrate(out);
}
