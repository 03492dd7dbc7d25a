/**
 * CPU time for the benchmark's CPU-per-transaction figures, in clock ticks (USER_HZ, 100
 * per second on Linux): the whole machine's busy time from /proc/stat (user, nice,
 * system, irq, softirq, steal: kernel work in softirq belongs to no process), and the
 * utime + stime of given processes from /proc/<pid>/stat. This kernel has no IRQ time
 * accounting (CONFIG_IRQ_TIME_ACCOUNTING unset), so a process's stime includes the softirq
 * work done while it ran (a veth or loopback packet's receive path, mostly); cgroup v2's
 * cpu.stat stays at 0 on this hybrid machine, hence per process.
 */
import { readFileSync } from 'node:fs';

export const TICKS_PER_SECOND = 100;

/** Busy ticks of all CPUs since boot: the first line of /proc/stat minus idle and iowait. */
export function parseProcStat(text: string): number {
  const m = /^cpu\s+(.*)$/m.exec(text);
  if (!m) return Number.NaN;
  const [user, nice, system, , , irq, softirq, steal] = m[1]!.trim().split(/\s+/).map(Number);
  return user! + nice! + system! + irq! + softirq! + (steal ?? 0);
}

export function machineBusyTicks(): number {
  return parseProcStat(readFileSync('/proc/stat', 'utf8'));
}

/** utime + stime of a process from its /proc/<pid>/stat text. */
export function parsePidStat(text: string): number {
  const f = text.slice(text.lastIndexOf(')') + 2).trim().split(/\s+/);
  // f[0] is field 3 (state): utime is field 14, stime 15.
  return Number(f[11]) + Number(f[12]);
}

/** utime + stime per PID, for the PIDs still running. */
export function processTicks(pids: readonly number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    try {
      out.set(pid, parsePidStat(readFileSync(`/proc/${pid}/stat`, 'utf8')));
    } catch {
      // gone
    }
  }
  return out;
}

/** Ticks the processes running at both snapshots spent between them. */
export function ticksBetween(before: Map<number, number>, after: Map<number, number>): number {
  let t = 0;
  for (const [pid, a] of after) {
    const b = before.get(pid);
    if (b !== undefined && a >= b) t += a - b;
  }
  return t;
}
