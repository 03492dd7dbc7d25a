/**
 * What disturbed a measurement window, from outside the proxy: per CPU, the time the guest
 * did not run at all (bench/waypoint/steal-probe.c: a SCHED_FIFO sleeper woken late), the
 * steal the kernel reports (/proc/stat, which stays 0 on this PVM guest), the time other
 * tasks ran on the proxy's CPU; per process, CPU time split into user and system, the
 * scheduler's run and run-queue wait (/proc/PID/schedstat) and context switches.
 *
 * On a VM whose host does not report steal, time the vCPU is descheduled while the proxy
 * runs is charged to the proxy: its CPU per request rises and its throughput falls with no
 * change in the work it does. The probe sees that time as gaps in its wake-ups.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../common/version.js';
import { run as runCmd } from '../../lab/system.js';

/**
 * The probe wakes every PROBE_PERIOD_US on its CPU (~25 µs of CPU each time on this VM: ~0.6 %)
 * and records wake-ups later than PROBE_THRESHOLD_US. Each wake-up samples whether the vCPU
 * was running guest code at that instant, so the share of late wake-ups estimates the share
 * of time it was not, for gaps longer than the threshold however short against the period;
 * the sum of the lateness counts the time of gaps longer than the period.
 */
export const PROBE_PERIOD_US = 4000;
export const PROBE_THRESHOLD_US = 250;

/** A late wake-up: when it woke (µs since the epoch) and how late (µs): the CPU ran no guest code (or ran with preemption off) for about that long before it. */
export interface Gap { atUs: number; lateUs: number }

/**
 * Once a second, medians (ns) of the probe's timed work: its arithmetic loop (the CPU's speed
 * as the guest sees it), its random loads over 32 MiB (caches and memory shared with the host's
 * other guests) and its system calls (each one through the host on this PVM guest); higher
 * is slower.
 */
export interface Speed { atUs: number; loopNs: number; loadsNs: number; callsNs: number; wideNs: number }

export interface StealProbe { cpu: number; gaps: Gap[]; speeds: Speed[]; stop(): void }

/** Compiles steal-probe.c into `dir`. */
export async function buildStealProbe(dir: string): Promise<string> {
  const bin = join(dir, 'steal-probe');
  await runCmd('cc', ['-O2', '-o', bin, join(projectRoot(), 'bench', 'waypoint', 'steal-probe.c')], { timeoutMs: 60_000 });
  return bin;
}

/** Starts the probe on `cpu`; resolves once it runs at SCHED_FIFO there. */
export function startStealProbe(bin: string, cpu: number): Promise<StealProbe> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(bin, [String(cpu), String(PROBE_PERIOD_US), String(PROBE_THRESHOLD_US)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const gaps: Gap[] = [];
    const speeds: Speed[] = [];
    let rest = '', err = '', ready = false;
    child.stdout!.on('data', (d: Buffer) => {
      const lines = (rest + d.toString()).split('\n');
      rest = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('ready')) {
          ready = true;
          resolve({ cpu, gaps, speeds, stop: () => { child.kill('SIGTERM'); } });
          continue;
        }
        if (line.startsWith('s ')) {
          const [, at, loop, , loads, calls, wide] = line.split(' ').map(Number);
          if (Number.isFinite(at) && Number.isFinite(loop)) speeds.push({ atUs: at!, loopNs: loop!, loadsNs: loads ?? Number.NaN, callsNs: calls ?? Number.NaN, wideNs: wide ?? Number.NaN });
          continue;
        }
        const [at, late] = line.split(' ').map(Number);
        if (Number.isFinite(at) && Number.isFinite(late)) gaps.push({ atUs: at!, lateUs: late! });
      }
    });
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    child.once('exit', (code) => { if (!ready) reject(new Error(`steal-probe on CPU ${cpu} exited (${code}): ${err.trim()}`)); });
    child.once('error', reject);
  });
}

/**
 * Time lost (ms) in [fromMs, toMs] (wall clock): the late wake-ups in the window, each clipped
 * to it; the longest; how many; and their share of the wake-ups the window held (`periodUs`
 * apart): an estimate of the share of the window the CPU did not run the guest.
 */
export function lostIn(gaps: readonly Gap[], fromMs: number, toMs: number, periodUs = PROBE_PERIOD_US): { ms: number; maxMs: number; count: number; lateShare: number } {
  let us = 0, max = 0, count = 0, late = 0;
  for (const g of gaps) {
    const end = g.atUs, start = g.atUs - g.lateUs;
    const a = Math.max(start, fromMs * 1000), b = Math.min(end, toMs * 1000);
    if (end >= fromMs * 1000 && end <= toMs * 1000) late++;
    if (b <= a) continue;
    us += b - a;
    max = Math.max(max, b - a);
    count++;
  }
  return { ms: us / 1000, maxMs: max / 1000, count, lateShare: toMs > fromMs ? late / (((toMs - fromMs) * 1000) / periodUs) : Number.NaN };
}

/** One of the probe's timings on a CPU in [fromMs, toMs] (median) ÷ its fastest second so far (1: as fast as the CPU has been in this run; NaN: no sample). */
export function slowdownIn(speeds: readonly Speed[], fromMs: number, toMs: number, what: 'loopNs' | 'loadsNs' | 'callsNs' | 'wideNs' = 'loopNs'): number {
  const all = speeds.map((s) => s[what]).filter((x) => x > 0);
  const inside = speeds.filter((s) => s.atUs >= fromMs * 1000 && s.atUs <= toMs * 1000 && s[what] > 0).map((s) => s[what]).sort((a, b) => a - b);
  if (inside.length === 0 || all.length === 0) return Number.NaN;
  return inside[Math.floor(inside.length / 2)]! / Math.min(...all);
}

/** One CPU's times from /proc/stat (seconds): busy (user, nice, system, irq, softirq), idle (with iowait), steal. */
export interface CpuTimes { busy: number; idle: number; steal: number; softirq: number }

export function cpuTimes(cpu: number, stat = readFileSync('/proc/stat', 'utf8')): CpuTimes {
  const line = stat.split('\n').find((l) => l.startsWith(`cpu${cpu} `));
  if (!line) throw new Error(`/proc/stat: no line for cpu${cpu}`);
  const f = line.trim().split(/\s+/).slice(1).map((x) => Number(x) / 100);
  return { busy: f[0]! + f[1]! + f[2]! + f[5]! + f[6]!, idle: f[3]! + f[4]!, steal: f[7] ?? 0, softirq: f[6]! };
}

/**
 * A set of processes' counters (summed): CPU seconds (user, system: sampled at the 250 Hz
 * tick), scheduler run and wait (ms, every thread's /proc/PID/task/TID/schedstat: exact, and
 * V8's helper threads included) and the main threads' run alone (each PID's own thread: a Node.js
 * process's event loop; the rest is V8's compiler and GC threads and libuv's pool), voluntary and
 * involuntary context switches of the main thread.
 */
export interface ProcTimes { user: number; sys: number; runMs: number; mainRunMs: number; waitMs: number; voluntary: number; involuntary: number }

export function procTimes(pids: readonly number[]): ProcTimes {
  const t: ProcTimes = { user: 0, sys: 0, runMs: 0, mainRunMs: 0, waitMs: 0, voluntary: 0, involuntary: 0 };
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      t.user += Number(f[11]) / 100;
      t.sys += Number(f[12]) / 100;
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        try {
          const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number);
          t.runMs += run! / 1e6;
          if (tid === String(pid)) t.mainRunMs += run! / 1e6;
          t.waitMs += wait! / 1e6;
        } catch { /* thread gone */ }
      }
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      t.voluntary += Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(status)?.[1] ?? 0);
      t.involuntary += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)$/m.exec(status)?.[1] ?? 0);
    } catch { /* gone */ }
  }
  return t;
}

export function procDelta(a: ProcTimes, b: ProcTimes): ProcTimes {
  return { user: b.user - a.user, sys: b.sys - a.sys, runMs: b.runMs - a.runMs, mainRunMs: b.mainRunMs - a.mainRunMs, waitMs: b.waitMs - a.waitMs, voluntary: b.voluntary - a.voluntary, involuntary: b.involuntary - a.involuntary };
}

/** What happened around a measurement, beside the proxy's own work. */
export interface Disturbance {
  /** The window: start (wall clock, ms since the epoch) and length. */
  fromMs: number; windowMs: number;
  /** The proxy's processes over the window. */
  proxy: ProcTimes;
  /** Time the probe on the proxy's / the load tool's CPU found the guest not running (ms), the longest gap, their count. */
  lostProxyCpuMs: number; lostProxyCpuMaxMs: number; lostProxyCpuCount: number; lostLoadCpuMs: number;
  /** Share of the probe's wake-ups on the proxy's / load tool's CPU that came late (lostIn's lateShare). */
  lateShareProxyCpu: number; lateShareLoadCpu: number;
  /** Busy time on the proxy's CPU not spent by the proxy (other tasks, interrupts; ms), and the kernel's steal on both CPUs (ms). */
  othersOnProxyCpuMs: number; stealMs: number;
  /** The processes that used the most CPU in the window, on either CPU (the load tool and the backend among them), the proxy excluded. */
  top: { name: string; ms: number }[];
  /** Idle time on the proxy's CPU (ms): a proxy that was the bottleneck leaves none; idle time in a throughput run means it waited for the load tool or the backend (their CPU lost time, or they were slow). */
  idleProxyCpuMs: number;
  /** The probe's fixed loop on the proxy's / load tool's CPU during the window ÷ its fastest second in the run (1.2: the CPU ran 20 % slower). */
  slowdownProxyCpu: number; slowdownLoadCpu: number;
  /** The same for the probe's random loads, its system calls and its wide (throughput-bound) loop on the proxy's CPU. */
  loadsSlowdownProxyCpu: number; callsSlowdownProxyCpu: number; wideSlowdownProxyCpu: number;
  /** TCP connections opened in the window (/proc/net/snmp, the whole network namespace: other work's too): by a connect, by an accept. A proxy that reconnects to its backend shows here. */
  tcpActiveOpens: number; tcpPassiveOpens: number;
  /** Why the window counts as disturbed (empty: not disturbed). */
  reasons: string[];
}

/** A window is disturbed when more than this share of it was lost, or went to other work, on the proxy's CPU. */
export const DISTURBED_SHARE = 0.03;
/** ... or when one of the probe's loops, or its system calls, ran this much slower there than in the CPU's fastest second of the run. */
export const SLOW_CPU = 1.1;

/** When a process started (wall clock, ms since the epoch, to 10 ms): /proc/PID/stat's start time after boot, and /proc/stat's btime. */
export function processStartMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
  return btime * 1000 + Number(f[19]) * 10;
}

/** Tcp: ActiveOpens and PassiveOpens of /proc/net/snmp. */
export function tcpOpens(snmp = readFileSync('/proc/net/snmp', 'utf8')): { active: number; passive: number } {
  const lines = snmp.split('\n').filter((l) => l.startsWith('Tcp:'));
  if (lines.length < 2) return { active: Number.NaN, passive: Number.NaN };
  const names = lines[0]!.split(/\s+/), values = lines[1]!.split(/\s+/).map(Number);
  return { active: values[names.indexOf('ActiveOpens')] ?? Number.NaN, passive: values[names.indexOf('PassiveOpens')] ?? Number.NaN };
}

/** Every process's CPU time (user + system, ms) and name, by PID. */
export function allProcesses(): Map<number, { name: string; ms: number }> {
  const out = new Map<number, { name: string; ms: number }>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(d), { name, ms: (Number(f[11]) + Number(f[12])) * 10 });
    } catch { /* gone */ }
  }
  return out;
}

/** The processes that used the most CPU between two allProcesses() readings (on any CPU; a process born in between counts whole), the proxy's excluded. */
export function topOthers(a: ReadonlyMap<number, { name: string; ms: number }>, b: ReadonlyMap<number, { name: string; ms: number }>, exclude: readonly number[], n = 3): { name: string; ms: number }[] {
  const used: { name: string; ms: number }[] = [];
  for (const [pid, p] of b) {
    if (exclude.includes(pid)) continue;
    const ms = p.ms - (a.get(pid)?.ms ?? 0);
    if (ms > 0) used.push({ name: p.name, ms });
  }
  return used.sort((x, y) => y.ms - x.ms).slice(0, n);
}

export interface Window { t0: number; proxy0: ProcTimes; cpu0: CpuTimes[]; tcp0: { active: number; passive: number }; all0: Map<number, { name: string; ms: number }> }

export function openWindow(pids: readonly number[], cpus: readonly number[]): Window {
  const all0 = allProcesses();
  const stat = readFileSync('/proc/stat', 'utf8');
  return { t0: Date.now(), proxy0: procTimes(pids), cpu0: cpus.map((c) => cpuTimes(c, stat)), tcp0: tcpOpens(), all0 };
}

/** Closes a window: `cpus` as given to openWindow, [proxy CPU, load CPU]; `probes` by CPU. */
export function closeWindow(w: Window, pids: readonly number[], cpus: readonly [number, number], probes: ReadonlyMap<number, StealProbe>): Disturbance {
  const t1 = Date.now();
  const tcp = tcpOpens();
  const top = topOthers(w.all0, allProcesses(), pids);
  const stat = readFileSync('/proc/stat', 'utf8');
  const proxy = procDelta(w.proxy0, procTimes(pids));
  const c1 = cpus.map((c) => cpuTimes(c, stat));
  const windowMs = t1 - w.t0;
  const p = probes.get(cpus[0]), l = probes.get(cpus[1]);
  const none = { ms: Number.NaN, maxMs: Number.NaN, count: 0, lateShare: Number.NaN };
  const lp = p ? lostIn(p.gaps, w.t0, t1) : none;
  const ll = l ? lostIn(l.gaps, w.t0, t1) : none;
  const busy = (c1[0]!.busy - w.cpu0[0]!.busy) * 1000;
  const othersOnProxyCpuMs = Math.max(0, busy - (proxy.user + proxy.sys) * 1000);
  const idleProxyCpuMs = (c1[0]!.idle - w.cpu0[0]!.idle) * 1000;
  const stealMs = (c1[0]!.steal - w.cpu0[0]!.steal + c1[1]!.steal - w.cpu0[1]!.steal) * 1000;
  const slowdownProxyCpu = p ? slowdownIn(p.speeds, w.t0, t1) : Number.NaN;
  const slowdownLoadCpu = l ? slowdownIn(l.speeds, w.t0, t1) : Number.NaN;
  const loadsSlowdownProxyCpu = p ? slowdownIn(p.speeds, w.t0, t1, 'loadsNs') : Number.NaN;
  const callsSlowdownProxyCpu = p ? slowdownIn(p.speeds, w.t0, t1, 'callsNs') : Number.NaN;
  const wideSlowdownProxyCpu = p ? slowdownIn(p.speeds, w.t0, t1, 'wideNs') : Number.NaN;
  const reasons: string[] = [];
  const pct = (ms: number): string => `${((100 * ms) / windowMs).toFixed(1)} %`;
  if (lp.ms > DISTURBED_SHARE * windowMs || lp.lateShare > DISTURBED_SHARE) reasons.push(`CPU ${cpus[0]} not running the guest: ${pct(lp.ms)} of the time in ${lp.count} gaps (longest ${lp.maxMs.toFixed(1)} ms), ${(100 * lp.lateShare).toFixed(1)} % of the probe's wake-ups late`);
  if (slowdownProxyCpu > SLOW_CPU) reasons.push(`CPU ${cpus[0]} ${((slowdownProxyCpu - 1) * 100).toFixed(0)} % slower than its fastest second`);
  if (wideSlowdownProxyCpu > SLOW_CPU) reasons.push(`CPU ${cpus[0]}'s wide loop ${((wideSlowdownProxyCpu - 1) * 100).toFixed(0)} % slower than its fastest second (a busy sibling hyperthread?)`);
  // System calls 10 % slower went with the slow phases on a quiet machine (docs/waypoint-bench.md); the loads' slowdown
  // is reported, not a reason: the bench's own load moves it (1.8x in a window where the waypoint ran at its usual cost).
  if (callsSlowdownProxyCpu > SLOW_CPU) reasons.push(`system calls on CPU ${cpus[0]} ${((callsSlowdownProxyCpu - 1) * 100).toFixed(0)} % slower than in its fastest second`);
  if (othersOnProxyCpuMs > DISTURBED_SHARE * windowMs) reasons.push(`other work on CPU ${cpus[0]} ${pct(othersOnProxyCpuMs)}`);
  if (ll.ms > DISTURBED_SHARE * windowMs || ll.lateShare > DISTURBED_SHARE) reasons.push(`CPU ${cpus[1]} (load tool, backend) not running the guest: ${pct(ll.ms)} of the time, ${(100 * ll.lateShare).toFixed(1)} % of wake-ups late`);
  if (stealMs > DISTURBED_SHARE * windowMs) reasons.push(`steal ${pct(stealMs)}`);
  return { fromMs: w.t0, windowMs, proxy, lostProxyCpuMs: lp.ms, lostProxyCpuMaxMs: lp.maxMs, lostProxyCpuCount: lp.count, lostLoadCpuMs: ll.ms, lateShareProxyCpu: lp.lateShare, lateShareLoadCpu: ll.lateShare, othersOnProxyCpuMs, stealMs, top, idleProxyCpuMs, slowdownProxyCpu, slowdownLoadCpu, loadsSlowdownProxyCpu, callsSlowdownProxyCpu, wideSlowdownProxyCpu, tcpActiveOpens: tcp.active - w.tcp0.active, tcpPassiveOpens: tcp.passive - w.tcp0.passive, reasons };
}
