/**
 * Writes a run out: DIR/results.json (options, machine, every raw sample, ratios,
 * scaling, targets), DIR/report.md (tables, targets met or missed with the measured
 * ratio) and DIR/charts/*.svg (latency percentiles per mode; cost against the number of
 * Services).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchResults } from './run.js';
import type { ModeName } from './modes.js';
import { workload } from './workloads.js';
import type { Spread } from './stats.js';
import { barChart, lineChart } from './svg.js';
import { verdict } from './analyse.js';

/** JSON.stringify with NaN/Infinity as null (JSON has no NaN). */
export function toJson(r: unknown): string {
  return JSON.stringify(r, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n';
}

export function writeResultsJson(dir: string, r: BenchResults): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'results.json');
  writeFileSync(`${file}.tmp`, toJson(r));
  renameSync(`${file}.tmp`, file);
  return file;
}

const n = (x: number): string => x.toLocaleString('en-US');

function num(x: number | undefined, digits = 3): string {
  if (x === undefined || !Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  return String(+x.toPrecision(digits));
}

function spreadText(s: Spread | undefined, digits = 3): string {
  if (!s || !Number.isFinite(s.median)) return '–';
  return `${num(s.median, digits)} (${num(s.min, digits)}–${num(s.max, digits)})`;
}

const PCTS = ['p50', 'p90', 'p99', 'p999'];

function chartFiles(r: BenchResults): Array<{ file: string; title: string; svg: string }> {
  const a = r.analysis!;
  const out: Array<{ file: string; title: string; svg: string }> = [];
  const modes = r.options.modes;
  for (const wname of r.options.workloads) {
    const w = workload(wname);
    const latencyMetrics = w.metrics.filter((m) => PCTS.includes(m.key));
    for (const svc of r.options.services) {
      if (latencyMetrics.length > 0) {
        const series = modes.map((mode) => ({
          name: mode,
          values: latencyMetrics.map((m) => a.values.find((v) => v.services === svc && v.workload === wname && v.mode === mode && v.metric === m.key)?.value
            ?? { median: Number.NaN, min: Number.NaN, max: Number.NaN }),
        })).filter((s) => s.values.some((v) => Number.isFinite(v.median)));
        if (series.length > 0) {
          out.push({
            file: `latency-${wname}-${svc}.svg`, title: `${w.title}: latency percentiles, ${n(svc)} Services`,
            svg: barChart({ title: `${wname}: latency, ${n(svc)} Services (median of rounds, bars min–max)`, categories: latencyMetrics.map((m) => m.label), series, yLabel: 'microseconds (log)', log: true }),
          });
        }
      }
    }
    if (r.options.services.length > 1) {
      const metric = w.metrics.find((m) => m.key === w.headline)!;
      const series = modes.map((mode) => ({
        name: mode,
        values: r.options.services.map((svc) => a.values.find((v) => v.services === svc && v.workload === wname && v.mode === mode && v.metric === metric.key)?.value
          ?? { median: Number.NaN, min: Number.NaN, max: Number.NaN }),
      })).filter((s) => s.values.some((v) => Number.isFinite(v.median)));
      if (series.length > 0) {
        out.push({
          file: `scaling-${wname}.svg`, title: `${w.title}: ${metric.label} against the number of Services`,
          svg: lineChart({ title: `${wname}: ${metric.label} vs number of Services`, categories: r.options.services.map(n), series, yLabel: `${metric.label}${metric.unit === 'us' ? ' (us)' : ''}` }),
        });
      }
    }
  }
  return out;
}

export function reportMarkdown(r: BenchResults, charts: Array<{ file: string; title: string }>): string {
  const a = r.analysis!;
  const o = r.options;
  const L: string[] = [];
  L.push(`# kernway bench${o.quick ? ' --quick' : ''}`, '');
  L.push(`kernway ${r.kernway}, ${r.startedAt} → ${r.finishedAt ?? '?'} (${r.durationSeconds ?? '?'} s).`);
  L.push(`Machine: ${r.machine.cpus} × ${r.machine.cpu}, kernel ${r.machine.kernel}, ${r.machine.iptables}, node ${r.machine.node}.`);
  L.push(`Load average (1, 5, 15 min) before: ${r.machine.loadAverageBefore.join(', ')}; after: ${r.machine.loadAverageAfter?.join(', ') ?? '?'}.`);
  L.push(`Modes: ${o.modes.join(', ')}. Services: ${o.services.map(n).join(', ')}. Rounds: ${o.rounds}, ${o.seconds} s per measurement, modes interleaved and rotated each round.`);
  L.push(`Tools: ${Object.entries(r.machine.tools).map(([k, v]) => `${k} ${v}`).join('; ')}.`);
  if (r.aborted) L.push('', `**The run was aborted: ${r.aborted}**`);
  if (a.failures > 0) L.push('', `**${a.failures} measurement(s) failed** (their errors are in results.json, samples[].error).`);
  L.push('');
  L.push('Every number below is the median across rounds, with the min–max across rounds in brackets. Ratios are computed within each round (the modes of a round run minutes apart at most) and then summarised.', '');

  L.push('## Targets', '');
  L.push('| target | where | measured ratio (median, min–max) | threshold | result |', '|---|---|---|---|---|');
  for (const t of a.targets) {
    const res = t.met === null ? `not measured (${t.note ?? ''})` : `**${verdict(t)}**`;
    L.push(`| ${t.text} | ${t.where} | ${spreadText(t.ratio)} | ${t.threshold} | ${res} |`);
  }
  L.push('');

  for (const svc of o.services) {
    L.push(`## ${n(svc)} Services`, '');
    const conf = r.configure.filter((c) => c.services === svc);
    if (conf.length > 0) {
      L.push('Installing them:', '');
      for (const c of conf) L.push(`- ${c.mode}: ${c.what} — ${num(c.ms)} ms`);
      L.push('');
    }
    for (const wname of o.workloads) {
      const w = workload(wname);
      const modes = o.modes.filter((m) => a.values.some((v) => v.services === svc && v.workload === wname && v.mode === m));
      if (modes.length === 0) continue;
      L.push(`### ${w.title}`, '');
      const head = w.metrics.map((m) => `${m.label}${m.unit === 'us' ? ' (us)' : ''}`);
      L.push(`| mode | ${head.join(' | ')} |`, `|---|${w.metrics.map(() => '---').join('|')}|`);
      for (const mode of modes) {
        const cells = w.metrics.map((m) => spreadText(a.values.find((v) => v.services === svc && v.workload === wname && v.mode === mode && v.metric === m.key)?.value));
        L.push(`| ${mode} | ${cells.join(' | ')} |`);
      }
      L.push('');
      const rr = a.ratios.filter((x) => x.services === svc && x.workload === wname);
      if (rr.length > 0) {
        const pairs = [...new Set(rr.map((x) => `${x.mode}/${x.baseline}`))];
        L.push('Ratios (mode / baseline, within each round; for rates and throughput higher is better, for latencies lower is better):', '');
        L.push(`| ratio | ${head.join(' | ')} |`, `|---|${w.metrics.map(() => '---').join('|')}|`);
        for (const p of pairs) {
          const [mode, base] = p.split('/') as [ModeName, ModeName];
          const cells = w.metrics.map((m) => spreadText(rr.find((x) => x.mode === mode && x.baseline === base && x.metric === m.key)?.ratio));
          L.push(`| ${mode} / ${base} | ${cells.join(' | ')} |`);
        }
        L.push('');
      }
    }
  }

  if (o.services.length > 1) {
    L.push('## Cost as the number of Services grows', '');
    L.push(`Each cell: the headline metric at N Services divided by the same mode's value at ${n(o.services[0]!)} Services (same round).`, '');
    L.push(`| workload (metric) | mode | ${o.services.slice(1).map((s) => `${n(s)} / ${n(o.services[0]!)}`).join(' | ')} |`, `|---|---|${o.services.slice(1).map(() => '---').join('|')}|`);
    for (const wname of o.workloads) {
      const w = workload(wname);
      for (const mode of o.modes) {
        const cells = o.services.slice(1).map((s) => spreadText(a.scaling.find((x) => x.workload === wname && x.mode === mode && x.metric === w.headline && x.services === s)?.ratio));
        if (cells.every((c) => c === '–')) continue;
        L.push(`| ${wname} (${w.metrics.find((m) => m.key === w.headline)!.label}) | ${mode} | ${cells.join(' | ')} |`);
      }
    }
    L.push('');
  }

  if (charts.length > 0) {
    L.push('## Charts', '');
    for (const c of charts) L.push(`![${c.title}](charts/${c.file})`, '');
  }

  L.push('## Evidence that each mode carried the traffic', '');
  for (const [mode, ev] of Object.entries(r.evidence)) L.push(`- ${mode}: \`${JSON.stringify(ev).slice(0, 1000)}\``);
  L.push('');
  L.push('## How this was measured', '');
  L.push('See docs/bench.md. Each mode runs in a lab of its own (network namespaces for the node and the pods, a cgroup, a bpffs folder); the machine\'s own namespace and iptables are never touched. All raw samples are in results.json.');
  return L.join('\n') + '\n';
}

/** Writes results.json, report.md and the charts; returns the report's path. */
export function writeReport(dir: string, r: BenchResults): { json: string; report: string; charts: string[] } {
  const json = writeResultsJson(dir, r);
  const charts = chartFiles(r);
  mkdirSync(join(dir, 'charts'), { recursive: true });
  for (const c of charts) writeFileSync(join(dir, 'charts', c.file), c.svg);
  const report = join(dir, 'report.md');
  writeFileSync(report, reportMarkdown(r, charts));
  return { json, report, charts: charts.map((c) => join(dir, 'charts', c.file)) };
}

