/**
 * The workloads, as data: which tool, which port of the target Service, which metrics
 * (and whether lower or higher is better), and whether the workload is L7 (HTTP: the
 * only kind a waypoint carries).
 */
import type { TargetPortName } from './services.js';
import { runConnrate, runH2load, runIperf3, runSockperf, runWrk, type Endpoint, type Sample, type ToolContext, type ToolSettings } from './tools.js';

export const WORKLOAD_NAMES = ['tcp-rr', 'conn-rate', 'http1', 'h2c', 'throughput'] as const;
export type WorkloadName = typeof WORKLOAD_NAMES[number];

export interface Metric {
  key: string;
  label: string;
  unit: string;
  better: 'lower' | 'higher';
}

export interface Workload {
  name: WorkloadName;
  title: string;
  tool: string;
  port: TargetPortName;
  /** HTTP: carried by a waypoint too. */
  l7: boolean;
  metrics: Metric[];
  /** The metric charts and ratios lead with. */
  headline: string;
  /** Seconds of a measurement relative to the run's base duration. */
  durationFactor: number;
  /** Transactions in a sample (round trips, connections, requests), for CPU per transaction; none for a stream. */
  transactions?: (s: Sample) => number;
  run(ctx: ToolContext, to: Endpoint, seconds: number, s: ToolSettings): Promise<Sample>;
}

/**
 * CPU per transaction, in microseconds: `cpu` counts the mode's processes (the client tool,
 * the server apps, proxies, agent or kube-proxy; utime + stime, which hold the softirq work
 * done in their context), `mcpu` the whole machine's busy time from /proc/stat (all of the
 * kernel's work, but also every other process on the machine: read it with the load).
 */
export const CPU_METRICS: readonly Metric[] = [
  { key: 'cpu', label: 'CPU/tx, mode processes', unit: 'us', better: 'lower' },
  { key: 'mcpu', label: 'CPU/tx, whole machine', unit: 'us', better: 'lower' },
];

const latency = (unit: string): Metric[] => [
  { key: 'p50', label: 'p50', unit, better: 'lower' },
  { key: 'p90', label: 'p90', unit, better: 'lower' },
  { key: 'p99', label: 'p99', unit, better: 'lower' },
  { key: 'p999', label: 'p99.9', unit, better: 'lower' },
];

/** The slowest request of a sample: where a stall of one process shows once (docs/waypoint-bench.md, "Stalls"). */
const MAX: Metric = { key: 'max', label: 'max', unit: 'us', better: 'lower' };

export const WORKLOADS: readonly Workload[] = Object.freeze([
  {
    name: 'tcp-rr', title: 'TCP request/response (sockperf ping-pong, 64 B, round trip)', tool: 'sockperf', port: 'sockperf', l7: false,
    metrics: [...latency('us'), ...CPU_METRICS], headline: 'p50', durationFactor: 1,
    transactions: (s) => s.observations!,
    run: runSockperf,
  },
  {
    name: 'conn-rate', title: 'Connection rate (connect + HTTP/1.0 request + close, bench/connrate.c)', tool: 'connrate', port: 'connrate', l7: false,
    metrics: [{ key: 'rate', label: 'connections/s', unit: '1/s', better: 'higher' }, ...latency('us'), ...CPU_METRICS], headline: 'rate', durationFactor: 1,
    transactions: (s) => s.connections!,
    run: runConnrate,
  },
  {
    name: 'http1', title: 'HTTP/1.1 keep-alive (wrk)', tool: 'wrk', port: 'http', l7: true,
    metrics: [{ key: 'rps', label: 'requests/s', unit: '1/s', better: 'higher' }, ...latency('us'), MAX, ...CPU_METRICS], headline: 'p50', durationFactor: 1,
    transactions: (s) => s.requests!,
    run: runWrk,
  },
  {
    name: 'h2c', title: 'HTTP/2 cleartext (h2load)', tool: 'h2load', port: 'h2c', l7: true,
    metrics: [{ key: 'rps', label: 'requests/s', unit: '1/s', better: 'higher' }, ...latency('us'), MAX, ...CPU_METRICS], headline: 'p50', durationFactor: 1,
    transactions: (s) => s.requests!,
    run: runH2load,
  },
  {
    name: 'throughput', title: 'Throughput, one TCP stream (iperf3)', tool: 'iperf3', port: 'iperf', l7: false,
    metrics: [{ key: 'gbps', label: 'Gbit/s', unit: 'Gbit/s', better: 'higher' }], headline: 'gbps', durationFactor: 1,
    run: (ctx, to, seconds) => runIperf3(ctx, to, seconds),
  },
]);

export function workload(name: WorkloadName): Workload {
  return WORKLOADS.find((w) => w.name === name)!;
}
