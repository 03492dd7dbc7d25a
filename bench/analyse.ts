/**
 * From raw samples to what the report says: per-round values, per-round ratios to the
 * baselines (iptables, direct, and sidecar for the waypoint) summarised across rounds,
 * the cost of each mode as the number of Services grows, and the targets, each
 * judged on the median ratio and shown with its spread. Nothing here is tuned to a
 * target: a missed target is reported with its measured ratio.
 */
import type { BenchOptions, RawSample } from './samples.js';
import type { ModeName } from './modes.js';
import { WORKLOADS, workload, type WorkloadName } from './workloads.js';
import { ratio, spread, type Spread } from './stats.js';

export interface ValueRow { services: number; workload: WorkloadName; mode: ModeName; metric: string; value: Spread }
export interface RatioRow { services: number; workload: WorkloadName; metric: string; mode: ModeName; baseline: ModeName; ratio: Spread }
export interface ScalingRow { workload: WorkloadName; mode: ModeName; metric: string; services: number; from: number; ratio: Spread }

export interface TargetResult {
  id: string;
  text: string;
  /** Where it was measured ("10,000 Services", ...). */
  where: string;
  threshold: string;
  ratio?: Spread;
  /** true met, false missed, null not measured (mode or workload not in the run, or failed). Judged on the median. */
  met: boolean | null;
  /** Whether every round, taken alone, gives the same verdict as the median (false: the spread crosses the threshold). */
  everyRound?: boolean;
  note?: string;
}

export interface Analysis {
  values: ValueRow[];
  ratios: RatioRow[];
  scaling: ScalingRow[];
  targets: TargetResult[];
  failures: number;
}

export const BASELINES: readonly ModeName[] = ['iptables', 'direct', 'sidecar'];

/** value of a metric per round for (services, workload, mode); NaN where missing. */
function perRound(samples: readonly RawSample[], rounds: number, services: number, w: WorkloadName, mode: ModeName, metric: string): number[] {
  const out = new Array<number>(rounds).fill(Number.NaN);
  for (const s of samples) {
    if (s.services === services && s.workload === w && s.mode === mode && s.values && s.round < rounds) out[s.round] = s.values[metric] ?? Number.NaN;
  }
  return out;
}

const hasValues = (xs: number[]): boolean => xs.some((x) => Number.isFinite(x));

export function analyse(r: { options: BenchOptions; samples: readonly RawSample[] }): Analysis {
  const { rounds, services } = r.options;
  const modes = r.options.modes;
  const values: ValueRow[] = [];
  const ratios: RatioRow[] = [];
  const scaling: ScalingRow[] = [];
  for (const wname of r.options.workloads) {
    const w = workload(wname);
    for (const metric of w.metrics.map((m) => m.key)) {
      for (const n of services) {
        for (const mode of modes) {
          const xs = perRound(r.samples, rounds, n, wname, mode, metric);
          if (!hasValues(xs)) continue;
          values.push({ services: n, workload: wname, mode, metric, value: spread(xs) });
          for (const base of BASELINES) {
            // direct is the floor: other modes are divided by it, never the reverse.
            if (base === mode || mode === 'direct' || !modes.includes(base)) continue;
            if (base === 'sidecar' && mode !== 'waypoint') continue;
            const bs = perRound(r.samples, rounds, n, wname, base, metric);
            if (!hasValues(bs)) continue;
            ratios.push({ services: n, workload: wname, metric, mode, baseline: base, ratio: spread(xs.map((x, i) => ratio(x, bs[i]))) });
          }
        }
      }
      const from = services[0];
      if (from === undefined) continue;
      for (const mode of modes) {
        const xs0 = perRound(r.samples, rounds, from, wname, mode, metric);
        if (!hasValues(xs0)) continue;
        for (const n of services.slice(1)) {
          const xs = perRound(r.samples, rounds, n, wname, mode, metric);
          if (!hasValues(xs)) continue;
          scaling.push({ workload: wname, mode, metric, services: n, from, ratio: spread(xs.map((x, i) => ratio(x, xs0[i]))) });
        }
      }
    }
  }
  return { values, ratios, scaling, targets: targets(r.options.services, ratios, scaling), failures: r.samples.filter((s) => s.error).length };
}

const fmtN = (n: number): string => n.toLocaleString('en-US');

function judge(id: string, text: string, threshold: string, rows: Array<{ where: string; ratio: Spread | undefined }>, ok: (x: number) => boolean, missingNote: string): TargetResult[] {
  if (rows.length === 0 || rows.every((x) => x.ratio === undefined)) return [{ id, text, where: '-', threshold, met: null, note: missingNote }];
  return rows.map(({ where, ratio: s }) => (s === undefined || !Number.isFinite(s.median)
    ? { id, text, where, threshold, met: null, note: missingNote }
    : { id, text, where, threshold, ratio: s, met: ok(s.median), everyRound: s.rounds.filter((x) => Number.isFinite(x)).every((x) => ok(x) === ok(s.median)) }));
}

function targets(services: readonly number[], ratios: readonly RatioRow[], scaling: readonly ScalingRow[]): TargetResult[] {
  const find = (n: number, w: WorkloadName, metric: string, mode: ModeName, baseline: ModeName): Spread | undefined =>
    ratios.find((x) => x.services === n && x.workload === w && x.metric === metric && x.mode === mode && x.baseline === baseline)?.ratio;
  const out: TargetResult[] = [];
  const at = (n: number): string => `${fmtN(n)} Services`;
  out.push(...judge('tcp-rr-vs-iptables', 'Same-node TCP request/response via a ClusterIP: ebpf p50 <= 0.8x iptables', '<= 0.80',
    services.map((n) => ({ where: at(n), ratio: find(n, 'tcp-rr', 'p50', 'ebpf', 'iptables') })), (x) => x <= 0.8, 'needs modes ebpf and iptables and workload tcp-rr'));
  out.push(...judge('tcp-rr-vs-direct', 'Same-node TCP request/response via a ClusterIP: ebpf p50 <= 1.0x direct (no mesh)', '<= 1.00',
    services.map((n) => ({ where: at(n), ratio: find(n, 'tcp-rr', 'p50', 'ebpf', 'direct') })), (x) => x <= 1.0, 'needs modes ebpf and direct and workload tcp-rr'));
  const big = services.includes(10_000) ? 10_000 : services[services.length - 1];
  const small = services[0];
  out.push(...judge('conn-rate-vs-iptables', `Connection rate with ${big !== undefined ? fmtN(big) : '10,000'} Services: ebpf >= 1.5x iptables`, '>= 1.50',
    big === undefined ? [] : [{ where: at(big), ratio: find(big, 'conn-rate', 'rate', 'ebpf', 'iptables') }], (x) => x >= 1.5, 'needs modes ebpf and iptables and workload conn-rate'));
  const sc = big !== undefined && small !== undefined && big !== small
    ? scaling.find((x) => x.workload === 'conn-rate' && x.metric === 'rate' && x.mode === 'ebpf' && x.services === big && x.from === small)?.ratio : undefined;
  const two = big !== undefined && small !== undefined && big !== small;
  out.push(...judge('conn-rate-scaling', `Connection rate: ebpf at ${two ? fmtN(big) : '10,000'} Services within 5% of ebpf at ${two ? fmtN(small) : '10'}`, '>= 0.95',
    big !== undefined && small !== undefined && big !== small ? [{ where: `${at(big)} / ${at(small)}`, ratio: sc }] : [], (x) => x >= 0.95,
    'needs mode ebpf, workload conn-rate and at least two Service counts'));
  for (const w of ['http1', 'h2c'] as const) {
    out.push(...judge(`${w}-waypoint-vs-sidecar`, `HTTP p50 (${WORKLOADS.find((x) => x.name === w)!.tool}) through the waypoint lower than through sidecars`, '< 1.00',
      services.map((n) => ({ where: at(n), ratio: find(n, w, 'p50', 'waypoint', 'sidecar') })), (x) => x < 1.0, `needs modes waypoint and sidecar and workload ${w}`));
  }
  return out;
}

/** "met", "missed", with a note when the rounds disagree; "not measured". */
export function verdict(t: TargetResult): string {
  if (t.met === null) return 'not measured';
  const v = t.met ? 'met' : 'missed';
  return t.everyRound === false ? `${v} (on the median; not in every round)` : v;
}
