/**
 * CPU time for the benchmark's CPU per transaction: /proc/stat and /proc/<pid>/stat
 * parsing against this machine's real files, and the tool wrapper's line.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { machineBusyTicks, parsePidStat, parseProcStat, processTicks, ticksBetween } from '../../bench/cpu.js';
import { childrenCpu } from '../../bench/tools.js';

/** Busy-loops until this process has used `ms` more milliseconds of CPU (not wall time: the machine is shared). */
function spinCpu(ms: number): void {
  const start = process.cpuUsage();
  while (process.cpuUsage(start).user + process.cpuUsage(start).system < ms * 1000) { /* spin */ }
}

describe('bench CPU accounting', () => {
  it('reads the machine\'s busy ticks (user+nice+system+irq+softirq+steal) from /proc/stat', () => {
    expect(parseProcStat('cpu  100 2 30 5000 7 1 4 3 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n')).toBe(100 + 2 + 30 + 1 + 4 + 3);
    expect(parseProcStat('intr 1 2 3')).toBeNaN();
    const a = machineBusyTicks();
    expect(a).toBeGreaterThan(0);
    // A busy loop of ~100 ms shows up (other processes only add to it).
    spinCpu(100);
    expect(machineBusyTicks()).toBeGreaterThan(a);
  });

  it('reads utime + stime of a process, also with spaces and parentheses in its name', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    expect(parsePidStat(`42 (a (b) c) ${fields.join(' ')}`)).toBe(14 + 15);
    const own = processTicks([process.pid, 999_999_999]);
    expect([...own.keys()]).toEqual([process.pid]);
    spinCpu(200);
    const after = processTicks([process.pid]);
    // 200 ms of CPU is 20 ticks; tick sampling is coarse.
    expect(ticksBetween(own, after)).toBeGreaterThanOrEqual(10);
    expect(ticksBetween(new Map(), after)).toBe(0);
    expect(parsePidStat(readFileSync('/proc/self/stat', 'utf8'))).toBeGreaterThan(0);
  });

  it('gets a tool\'s CPU time from its waiting shell\'s cutime and cstime', () => {
    const wrapper = '"$@"; r=$?; read -r s < /proc/self/stat; echo "kw-children-cpu $s" >&2; exit $r';
    // The child burns 400 ms of CPU (40 ticks), then exits 3: the exit code passes through.
    const r = spawnSync('sh', ['-c', wrapper, 'sh', process.execPath, '-e', 'while (process.cpuUsage().user < 400000) {} console.error("tool output"); process.exit(3)'], { encoding: 'utf8' });
    expect(r.status).toBe(3);
    const { ticks, rest } = childrenCpu(r.stderr);
    expect(ticks).toBeGreaterThanOrEqual(25);
    expect(rest).toContain('tool output');
    expect(rest).not.toContain('kw-children-cpu');
    expect(childrenCpu('no line').ticks).toBeNaN();
  });
});
