/**
 * `kernway bench`: latency and scaling of kernway (ebpf) against kube-proxy's iptables
 * mode, sidecars and no mesh, on this machine, in lab namespaces (docs/bench.md).
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { InvalidArgumentError, KernwayError, errorMessage } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { joinNegativeValues } from '../common/args.js';
import type { Command } from './command.js';

const USAGE = `kernway bench [--quick] [--modes LIST] [--services LIST] [--workloads LIST] [--rounds N]
              [--seconds N] [--out DIR]

  --quick            short run (2 rounds of 1 s, 10 and 10,000 Services): about 3 minutes, plus
                     about 3 for the iptables mode (a lab cluster; 10,000 Services through its API)
  --modes LIST       comma-separated, from: direct, ebpf, iptables, sidecar, waypoint (default: all)
  --services LIST    numbers of Services installed, e.g. 10,1000,10000 (default: 10,1000,10000;
                     --quick: 10,10000); only one Service carries the traffic
  --workloads LIST   from: tcp-rr, conn-rate, http1, h2c, throughput (default: all)
  --rounds N         rounds; every mode is measured once per round (default 5; --quick 2)
  --seconds N        seconds per measurement (default 3; --quick 1)
  --out DIR          where results.json, report.md and charts/ go (default ./kernway-bench-<time>)

Needs root (network namespaces, cgroups, BPF). Everything it creates is removed at the
end, also on Ctrl-C. The machine's own namespace and iptables are never touched.`;

function list(name: string, v: string | undefined, allowed?: readonly string[]): string[] | undefined {
  if (v === undefined) return undefined;
  const items = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new InvalidArgumentError(name, 'a comma-separated list', v);
  if (allowed) for (const i of items) if (!allowed.includes(i)) throw new InvalidArgumentError(name, `items from ${allowed.join(', ')}`, i);
  if (new Set(items).size !== items.length) throw new InvalidArgumentError(name, 'a list without repeats', v);
  return items;
}

function int(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const x = /^[0-9]+$/.test(v) ? Number(v) : Number.NaN;
  if (!(x >= min && x <= max)) throw new InvalidArgumentError(name, `an integer from ${min} to ${max}`, v);
  return x;
}

export const command: Command = {
  summary: 'benchmark kernway against iptables (kube-proxy), sidecars and no mesh, on this machine',
  usage: USAGE,
  async run(argv) {
    const { MODE_NAMES } = await import('../bench/modes.js');
    const { WORKLOAD_NAMES } = await import('../bench/workloads.js');
    const { MAX_SERVICES } = await import('../bench/services.js');
    const { defaultOptions, runBench } = await import('../bench/run.js');
    const { writeReport, writeResultsJson } = await import('../bench/report.js');
    const { verdict } = await import('../bench/analyse.js');
    let opts;
    let out: string;
    try {
      const options = {
        quick: { type: 'boolean', default: false }, modes: { type: 'string' }, services: { type: 'string' }, workloads: { type: 'string' },
        rounds: { type: 'string' }, seconds: { type: 'string' }, out: { type: 'string' },
      } as const;
      const { values } = parseArgs({ args: joinNegativeValues(argv, options), strict: true, allowPositionals: false, options });
      opts = defaultOptions(values.quick === true);
      const modes = list('--modes', values.modes, MODE_NAMES);
      if (modes) opts.modes = MODE_NAMES.filter((m) => modes.includes(m));
      const ws = list('--workloads', values.workloads, WORKLOAD_NAMES);
      if (ws) opts.workloads = WORKLOAD_NAMES.filter((w) => ws.includes(w));
      const svc = list('--services', values.services);
      if (svc) {
        opts.services = svc.map((s) => int('--services', s, 1, MAX_SERVICES)!).sort((a, b) => a - b);
        if (new Set(opts.services).size !== opts.services.length) throw new InvalidArgumentError('--services', 'distinct numbers', values.services);
      }
      opts.rounds = int('--rounds', values.rounds, 1, 100) ?? opts.rounds;
      opts.seconds = int('--seconds', values.seconds, 1, 600) ?? opts.seconds;
      out = resolve(values.out ?? `kernway-bench-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`);
    } catch (e) {
      console.error(`kernway bench: ${e instanceof InvalidArgumentError ? e.message : errorMessage(e)}\nusage: ${USAGE}`);
      return 2;
    }
    if (process.getuid?.() !== 0) {
      console.error('kernway bench: needs root (it creates network namespaces, cgroups and BPF programs in a lab)');
      return 1;
    }
    const log = createLogger('kernway-bench', process.env.KERNWAY_LOG_LEVEL ?? 'warn');
    const t0 = Date.now();
    const stamp = (): string => `${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s`;
    try {
      const results = await runBench(opts, {
        log,
        progress: (line) => console.log(`${stamp()} ${line}`),
        checkpoint: (r) => writeResultsJson(out, r),
      });
      const files = writeReport(out, results);
      console.log(`\n${stamp()} done: ${files.report}, ${files.json}, ${files.charts.length} chart(s)`);
      for (const t of results.analysis?.targets ?? []) {
        console.log(`  ${verdict(t).padEnd(12)} ${t.text} [${t.where}]: ${t.ratio ? `${t.ratio.median} (${t.ratio.min}-${t.ratio.max})` : '-'} (target ${t.threshold})`);
      }
      return results.analysis && results.analysis.failures > 0 ? 1 : 0;
    } catch (e) {
      const code = e instanceof KernwayError ? e.code : (e as { code?: string }).code ?? 'KW_INTERNAL';
      console.error(`kernway bench: ${errorMessage(e)} [${code}]`);
      return 1;
    }
  },
};
