/**
 * The benchmark run: sets the modes up side by side (one lab each), then, round after
 * round, for each number of Services (ascending, then descending on the next round, so
 * counts are interleaved too) installs the Services in every mode and measures every
 * workload in every mode. A workload is measured in all its modes back to back, in an
 * order that rotates from round to round (A B C, B C A, C A B, ...), so machine noise
 * hits all modes alike. Every raw sample is kept; ratios are computed within a round
 * (mode / baseline, measured seconds apart) and summarised across rounds.
 *
 * Everything created is removed at the end, on error, and on SIGINT/SIGTERM.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../common/log.js';
import { KernwayError, errorMessage } from '../common/errors.js';
import { projectRoot, version } from '../common/version.js';
import { pidAlive, run as runCmd } from '../lab/system.js';
import { sweepLeftovers } from '../lab/sweep.js';
import { kubeBinDir } from '../lab/cluster/bin.js';
import { MODES, modeDef, type ConfigureResult, type ModeInstance, type ModeName } from './modes.js';
import { benchServices } from './services.js';
import { WORKLOADS, workload, type WorkloadName } from './workloads.js';
import { DEFAULT_TOOL_SETTINGS } from './tools.js';
import { analyse, type Analysis } from './analyse.js';
import { TICKS_PER_SECOND, machineBusyTicks, processTicks, ticksBetween } from './cpu.js';
import type { BenchOptions, RawSample } from './samples.js';

export type { BenchOptions, RawSample } from './samples.js';


export const QUICK: Readonly<Omit<BenchOptions, 'modes' | 'workloads' | 'settings'>> = Object.freeze({ services: [10, 10_000], rounds: 2, seconds: 1, quick: true });
export const FULL: Readonly<Omit<BenchOptions, 'modes' | 'workloads' | 'settings'>> = Object.freeze({ services: [10, 1000, 10_000], rounds: 5, seconds: 3, quick: false });

const WARMUP_SECONDS = 1;


export interface ConfigureRecord extends ConfigureResult { services: number; mode: ModeName }

export interface MachineInfo {
  kernel: string;
  cpu: string;
  cpus: number;
  loadAverageBefore: number[];
  loadAverageAfter?: number[];
  iptables: string;
  node: string;
  tools: Record<string, string>;
}

export interface BenchResults {
  kernway: string;
  startedAt: string;
  finishedAt?: string;
  durationSeconds?: number;
  options: BenchOptions;
  machine: MachineInfo;
  modes: Array<{ name: ModeName; description: string; workloads: WorkloadName[] }>;
  configure: ConfigureRecord[];
  samples: RawSample[];
  /** Warm-up measurements (HTTP paths, once, before the first round): not analysed. */
  warmup: RawSample[];
  evidence: Record<string, Record<string, unknown>>;
  analysis?: Analysis;
  aborted?: string;
}

function toolVersion(cmd: string, args: string[]): string {
  // Some tools print their version on stderr (nginx -v), some exit non-zero (wrk -v).
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  const text = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').map((l) => l.trim()).find((l) => l !== '');
  return text ?? 'unknown';
}

export function machineInfo(): MachineInfo {
  return {
    kernel: release(),
    cpu: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
    loadAverageBefore: loadavg().map((x) => +x.toFixed(2)),
    iptables: toolVersion('iptables', ['-V']),
    node: process.version,
    tools: {
      sockperf: toolVersion('sockperf', ['--version']).replace(/^sockperf,\s*/, ''),
      wrk: toolVersion('wrk', ['-v']),
      h2load: toolVersion('h2load', ['--version']),
      iperf3: toolVersion('iperf3', ['--version']),
      nginx: toolVersion('nginx', ['-v']),
      cc: toolVersion('cc', ['--version']),
    },
  };
}

/** Checks the tools a run needs are installed; names the missing ones (and the Debian packages). */
export function checkTools(opts: BenchOptions): void {
  const need = new Map<string, string>([['iptables-restore', 'iptables'], ['nsenter', 'util-linux'], ['ss', 'iproute2'], ['cc', 'gcc or clang']]);
  const ws = opts.workloads.map(workload);
  if (ws.some((w) => w.tool === 'sockperf')) need.set('sockperf', 'sockperf');
  if (ws.some((w) => w.tool === 'wrk')) need.set('wrk', 'wrk');
  if (ws.some((w) => w.tool === 'h2load')) need.set('h2load', 'nghttp2-client');
  if (ws.some((w) => w.tool === 'iperf3')) need.set('iperf3', 'iperf3');
  need.set('nginx', 'nginx-light');
  if (opts.modes.includes('sidecar')) need.set('setpriv', 'util-linux');
  const missing: string[] = [];
  for (const [cmd, pkg] of need) {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    } catch {
      missing.push(`${cmd} (${pkg})`);
    }
  }
  if (opts.modes.includes('sidecar') && !existsSync('/usr/lib/nginx/modules/ngx_stream_module.so')) missing.push('nginx stream module (libnginx-mod-stream)');
  // The iptables mode runs the real kube-proxy in a lab cluster: KW_LAB_KUBE_MISSING says how to build it.
  if (opts.modes.includes('iptables')) kubeBinDir();
  if (missing.length > 0) throw new KernwayError('KW_BENCH_TOOLS', `kernway bench needs: ${missing.join(', ')}. Install the Debian packages named in brackets.`);
}

/**
 * Removes the scratch folders of earlier runs that were killed before they could clean up
 * (kernway-bench-<pid>-* and kernway-sidecar-<pid>-* whose process is gone). Their labs
 * (namespaces, cgroups, pins) are swept by the lab's own sweep (lab/sweep.ts).
 */
export function sweepScratch(dir = tmpdir()): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    const m = /^kernway-(?:bench|sidecar)-(\d+)-[A-Za-z0-9]{6}$/.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** Compiles bench/connrate.c with the machine's cc into `dir`. */
export async function buildConnrate(dir: string): Promise<string> {
  const src = join(projectRoot(), 'bench', 'connrate.c');
  const bin = join(dir, 'connrate');
  await runCmd('cc', ['-O2', '-pthread', '-o', bin, src], { timeoutMs: 60_000 });
  return bin;
}

/**
 * Round r's order of the numbers of Services: ascending on even rounds, descending on
 * odd ones (10, 1k, 10k | 10k, 1k, 10 | ...), so that the counts are interleaved across
 * the run like the modes are, at the cost of one reinstallation per count and round
 * (none at the turn).
 */
export function serviceOrder(services: readonly number[], round: number): number[] {
  return round % 2 === 0 ? [...services] : [...services].reverse();
}

/** Round r's order of the given modes: rotated by r, so each mode takes each position in turn. */
export function roundOrder<T>(items: readonly T[], round: number): T[] {
  if (items.length === 0) return [];
  const k = round % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

export interface RunHooks {
  log: Logger;
  progress?: (line: string) => void;
  /** Called with the results so far after each sample (to write them out as the run goes). */
  checkpoint?: (r: BenchResults) => void;
}

/**
 * Runs the benchmark. Resolves with the results (also when a measurement failed: its
 * sample carries the error); rejects only when the setup fails. Cleans up in all cases.
 */
export async function runBench(opts: BenchOptions, hooks: RunHooks): Promise<BenchResults> {
  const progress = hooks.progress ?? (() => undefined);
  checkTools(opts);
  for (const name of sweepScratch()) progress(`removed ${name}, left by a run that was killed`);
  const swept = await sweepLeftovers();
  const sweptCount = swept.cgroups.length + swept.bpffs.length + swept.netns.length;
  if (sweptCount > 0) progress(`removed ${sweptCount} lab object(s) left by processes that are gone`);
  const started = Date.now();
  const results: BenchResults = {
    kernway: version(),
    startedAt: new Date(started).toISOString(),
    options: opts,
    machine: machineInfo(),
    modes: opts.modes.map((m) => ({ name: m, description: modeDef(m).description, workloads: opts.workloads.filter((w) => modeDef(m).carries(workload(w))) })),
    configure: [],
    samples: [],
    warmup: [],
    evidence: {},
  };
  const tmp = mkdtempSync(join(tmpdir(), `kernway-bench-${process.pid}-`));
  const instances: ModeInstance[] = [];
  let closing: Promise<void> | undefined;
  const cleanup = (): Promise<void> => {
    closing ??= (async () => {
      for (const m of instances.splice(0).reverse()) {
        try { await m.close(); } catch (e) { hooks.log.warn({ mode: m.name, err: errorMessage(e) }, 'bench: closing a mode failed'); }
      }
      rmSync(tmp, { recursive: true, force: true });
    })();
    return closing;
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    progress(`${sig}: cleaning up`);
    void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const connrate = await buildConnrate(tmp);
    const env = (name: string): { dir: string; log: Logger; node: string; kernwayMain: string } => {
      const dir = join(tmp, name);
      mkdirSync(dir, { recursive: true });
      return { dir, log: hooks.log, node: process.execPath, kernwayMain: join(projectRoot(), 'dist', 'cli', 'main.js') };
    };
    for (const name of opts.modes) {
      progress(`setting up mode ${name}`);
      instances.push(await modeDef(name).create(env(name)));
    }
    const byName = new Map(instances.map((m) => [m.name, m]));
    const scratch = join(tmp, 'tools');
    mkdirSync(scratch, { recursive: true });

    const measure = async (m: ModeInstance, wname: WorkloadName, sample: RawSample): Promise<void> => {
      try {
        const w = workload(wname);
        const cpu = { ticks: 0 };
        const procs0 = processTicks(m.cpuPids());
        const machine0 = machineBusyTicks();
        const values = await w.run({ lab: m.lab, client: m.client, dir: scratch, connrate, cpu }, m.endpoint(w), sample.seconds, opts.settings);
        const machine = machineBusyTicks() - machine0;
        const procs = ticksBetween(procs0, processTicks(m.cpuPids())) + cpu.ticks;
        const tx = w.transactions?.(values);
        if (tx !== undefined && tx > 0) {
          const us = 1e6 / TICKS_PER_SECOND;
          values.cpu = (procs * us) / tx;
          values.mcpu = (machine * us) / tx;
          values.transactions = tx;
        }
        values.load1 = +loadavg()[0]!.toFixed(2);
        sample.values = values;
      } catch (e) {
        sample.error = errorMessage(e);
        hooks.log.warn({ mode: m.name, workload: wname, services: sample.services, round: sample.round, err: sample.error }, 'bench: a measurement failed');
      }
    };
    let installed: number | undefined;
    const install = async (n: number): Promise<void> => {
      if (installed === n) return;
      for (const m of instances) {
        progress(`installing ${n} Services in mode ${m.name}`);
        const rec = await m.configure(benchServices(n, m.server.ipv4));
        results.configure.push({ ...rec, services: n, mode: m.name });
        progress(`  ${m.name}: ${rec.what} in ${rec.ms.toFixed(0)} ms`);
      }
      installed = n;
    };
    for (let round = 0; round < opts.rounds; round++) {
      for (const n of serviceOrder(opts.services, round)) {
        await install(n);
        if (round === 0 && results.warmup.length === 0) {
          // A proxy written in a JIT-compiled language (the waypoint) is slow for its first
          // second or so: every HTTP path is warmed once, and these samples are kept apart.
          for (const wname of opts.workloads.filter((x) => workload(x).l7)) {
            for (const mn of opts.modes.filter((x) => modeDef(x).carries(workload(wname)))) {
              const sample: RawSample = { services: n, round: -1, workload: wname, mode: mn, order: 0, startedAt: new Date().toISOString(), seconds: WARMUP_SECONDS };
              await measure(byName.get(mn)!, wname, sample);
              results.warmup.push(sample);
              progress(`  warm-up ${wname} ${mn}: ${sample.values ? `p50=${sample.values['p50']}` : `FAILED: ${sample.error!.split('\n')[0]}`}`);
            }
          }
        }
        for (const wname of opts.workloads) {
          const w = workload(wname);
          const modes = opts.modes.filter((mn) => modeDef(mn).carries(w));
          const order = roundOrder(modes, round);
          for (const [pos, mn] of order.entries()) {
            const m = byName.get(mn)!;
            const seconds = Math.max(1, Math.round(opts.seconds * w.durationFactor));
            const sample: RawSample = { services: n, round, workload: wname, mode: mn, order: pos, startedAt: new Date().toISOString(), seconds };
            await measure(m, wname, sample);
            results.samples.push(sample);
            const v = sample.values;
            progress(`  [round ${round + 1}/${opts.rounds}, ${n} svc] ${wname.padEnd(10)} ${mn.padEnd(8)} ${v ? `${w.headline}=${v[w.headline]!.toFixed(w.headline === 'gbps' ? 2 : 1)}` : `FAILED: ${sample.error!.split('\n')[0]}`}`);
            hooks.checkpoint?.(results);
          }
        }
      }
    }
    for (const m of instances) results.evidence[m.name] = await m.evidence();
  } catch (e) {
    results.aborted = errorMessage(e);
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
    results.machine.loadAverageAfter = loadavg().map((x) => +x.toFixed(2));
    results.finishedAt = new Date().toISOString();
    results.durationSeconds = Math.round((Date.now() - started) / 1000);
  }
  results.analysis = analyse(results);
  return results;
}

export function defaultOptions(quick: boolean): BenchOptions {
  const base = quick ? QUICK : FULL;
  return {
    ...base, services: [...base.services],
    modes: MODES.map((m) => m.name),
    workloads: WORKLOADS.map((w) => w.name),
    settings: { ...DEFAULT_TOOL_SETTINGS },
  };
}
