/**
 * What a proxy's processes asked of the kernel in a measurement window, counted by
 * `perf stat` on their PIDs (tracepoints and software events: this VM has no hardware
 * counters), and optionally where their CPU time went (`perf record` of the CPU clock).
 *
 * The waypoint runs at two speeds per process (docs/waypoint-bench.md, "two speeds"): its
 * user and system time per request both double in the slow one while the probe's timings on
 * the same CPU stay normal. These counts say, per request, whether the slow windows make
 * more system calls, send more IPIs (each one a trip through the host on this PVM guest),
 * wake more tasks or take more page faults than the fast ones; the profile says whether the
 * extra time is in the kernel, in node's own code, in the JIT's code or spread over all.
 * Counting costs the counted processes ~0.1 us per event (a loop of getppid: 0.95 -> 1.06 us per
 * call while counted), ~0.5 us per request for either proxy: both are opt-in (`--kernel-events`,
 * `--profile`), not for the runs whose ratios are the result.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

/** Counts over a window (whole numbers; NaN: perf could not count that one). */
export interface KernelEvents {
  /** System calls entered. */
  syscalls: number;
  /** IPIs sent to one CPU (waking a task on the other CPU, mostly: on this VM each is a trip through the host). */
  ipis: number;
  /** Tasks woken (the load tool and the backend, by the proxy's writes). */
  wakeups: number;
  /** Page faults (minor and major). */
  pageFaults: number;
  /** Context switches of the proxy's threads. */
  contextSwitches: number;
}

/** The perf events behind KernelEvents, in its order. */
export const KERNEL_EVENTS: Readonly<Record<keyof KernelEvents, string>> = {
  syscalls: 'raw_syscalls:sys_enter', ipis: 'ipi:ipi_send_cpu', wakeups: 'sched:sched_waking', pageFaults: 'page-faults', contextSwitches: 'context-switches',
};

/** `perf stat -x,` output (its stderr) as KernelEvents; undefined when none of the events is in it. */
export function parsePerfStat(text: string): KernelEvents | undefined {
  const byEvent = new Map<string, number>();
  for (const line of text.split('\n')) {
    const f = line.split(',');
    if (f.length < 3) continue;
    const value = Number(f[0]);
    byEvent.set(f[2]!, f[0]!.startsWith('<') || f[0] === '' ? Number.NaN : value);
  }
  const out = {} as KernelEvents;
  let found = 0;
  for (const [k, event] of Object.entries(KERNEL_EVENTS) as [keyof KernelEvents, string][]) {
    const v = byEvent.get(event);
    if (v !== undefined) found++;
    out[k] = v ?? Number.NaN;
  }
  return found > 0 ? out : undefined;
}

/** A perf process attached to the proxy's PIDs, counting, until stop(). */
interface Attached { child: ChildProcess; err: string; exited: Promise<void> }

/**
 * Starts `perf <args>` with its events off and turns them on through its control descriptors
 * (`--control fd:3,4`): resolves once perf has acknowledged, so the window that follows is counted
 * whole; undefined when perf is missing, fails or does not answer within 10 s.
 */
async function attach(args: string[]): Promise<Attached | undefined> {
  let child: ChildProcess;
  try {
    child = spawn('perf', [args[0]!, '-D', '-1', '--control', 'fd:3,4', ...args.slice(1)], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
  } catch {
    return undefined;
  }
  const a: Attached = { child, err: '', exited: new Promise((resolve) => { child.once('close', () => resolve()); child.once('error', () => resolve()); }) };
  child.stderr!.on('data', (d: Buffer) => { a.err += d.toString(); });
  const ctl = child.stdio[3] as NodeJS.WritableStream & { on(e: 'error', f: () => void): void };
  const ack = child.stdio[4] as NodeJS.ReadableStream;
  ctl.on('error', () => { /* perf gone: the ack below never comes */ });
  const acked = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 10_000);
    let got = '';
    ack.on('data', (d: Buffer) => { got += d.toString(); if (got.includes('ack')) { clearTimeout(timer); resolve(true); } });
    void a.exited.then(() => { clearTimeout(timer); resolve(false); });
    ctl.write('enable\n');
  });
  if (!acked) {
    child.kill('SIGKILL');
    await a.exited;
    return undefined;
  }
  return a;
}

async function detach(a: Attached): Promise<void> {
  // perf prints its counts (or closes its data file) on SIGINT.
  if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGINT');
  const timer = setTimeout(() => a.child.kill('SIGKILL'), 10_000);
  await a.exited;
  clearTimeout(timer);
}

/** Counts KERNEL_EVENTS for `pids` from when it resolves; stop() gives the counts (undefined: perf missing or refused). */
export async function countKernelEvents(pids: readonly number[]): Promise<{ stop(): Promise<KernelEvents | undefined> }> {
  const a = await attach(['stat', '-x,', '-e', Object.values(KERNEL_EVENTS).join(','), '-p', pids.join(',')]);
  return {
    async stop() {
      if (!a) return undefined;
      await detach(a);
      return parsePerfStat(a.err);
    },
  };
}

/** Samples per second of the profile (CPU clock). */
export const PROFILE_HZ = 999;

/** CPU time by where it ran, from a profile: the kernel, node's binary, the JIT's code (by tier), libc and the rest (seconds). */
export interface ProfileSplit { kernel: number; node: number; jit: number; libc: number; other: number; samples: number;
  /** The JIT's code by tier (V8's perf map prefixes: * TurboFan, + Maglev, ^ Sparkplug, ~ interpreted; seconds). */
  turbofan: number; maglev: number; baseline: number; interpreted: number }

/**
 * `perf report --sort dso,sym -n` lines ("  12.34%  567  [kernel.kallsyms]  [k] tcp_sendmsg") as a
 * ProfileSplit, each sample 1/hz s; JIT symbols come from the waypoint's --perf-basic-prof-only-functions map.
 */
export function parseProfile(report: string, hz = PROFILE_HZ): ProfileSplit {
  const s: ProfileSplit = { kernel: 0, node: 0, jit: 0, libc: 0, other: 0, samples: 0, turbofan: 0, maglev: 0, baseline: 0, interpreted: 0 };
  for (const line of report.split('\n')) {
    const m = /^\s*[\d.]+%\s+(\d+)\s+(\S+(?: tid \d+)?)\s+\[(.)\]\s+(.*)$/.exec(line);
    if (!m) continue;
    const n = Number(m[1]), dso = m[2]!, sym = m[4]!, t = n / hz;
    s.samples += n;
    if (dso.startsWith('[kernel') || m[3] === 'k') s.kernel += t;
    else if (dso.startsWith('[JIT]') || sym.startsWith('JS:')) {
      s.jit += t;
      const tier = /^JS:([*+^~])/.exec(sym)?.[1];
      if (tier === '*') s.turbofan += t;
      else if (tier === '+') s.maglev += t;
      else if (tier === '^') s.baseline += t;
      else if (tier === '~') s.interpreted += t;
    } else if (dso === 'node' || dso.endsWith('/node')) s.node += t;
    else if (dso.startsWith('libc.so') || dso.startsWith('libc-')) s.libc += t;
    else s.other += t;
  }
  return s;
}

/** Profiles the CPU clock of `pids` into `file` from when it resolves; stop() gives the split (undefined: perf missing, refused or no samples). */
export async function recordProfile(pids: readonly number[], file: string): Promise<{ stop(): Promise<ProfileSplit | undefined> }> {
  const a = await attach(['record', '-q', '-e', 'cpu-clock', '-F', String(PROFILE_HZ), '-o', file, '-p', pids.join(',')]);
  return {
    async stop() {
      if (!a) return undefined;
      await detach(a);
      const r = spawnSync('perf', ['report', '-i', file, '--no-children', '--sort', 'dso,sym', '-n', '-q', '-g', 'none'], { encoding: 'utf8', maxBuffer: 1 << 28, timeout: 120_000 });
      if (r.status !== 0) return undefined;
      const split = parseProfile(r.stdout);
      return split.samples > 0 ? split : undefined;
    },
  };
}
