/**
 * bench/waypoint/steal.ts: what disturbed a measurement window. The time the host took a
 * vCPU (which this VM's kernel does not report as steal) is seen by steal-probe.c as late
 * wake-ups; the parts that decide the numbers are how gaps are clipped to a window, the
 * CPU's slowdown from the probe's loop, and /proc/stat and /proc/net/snmp as read. The
 * probe itself is built with the machine's cc and run (root: SCHED_FIFO).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { allProcesses, buildStealProbe, cpuTimes, lostIn, procTimes, slowdownIn, startStealProbe, tcpOpens, topOthers } from '../../bench/waypoint/steal.js';

it('counts the part of each late wake-up inside the window, not what lies outside', () => {
  // Woke at 10.050 s, 30 ms late: the gap was 10.020-10.050. Window 10.000-10.040: 20 ms of it.
  const gaps = [{ atUs: 10_050_000, lateUs: 30_000 }, { atUs: 10_100_000, lateUs: 2_000 }, { atUs: 9_000_000, lateUs: 5_000 }];
  // Wake-ups every 4 ms: the window 10.000-10.200 held 50, two of which came late (4 %); the one at 10.050 is outside 10.000-10.040.
  expect(lostIn(gaps, 10_000, 10_040)).toEqual({ ms: 20, maxMs: 20, count: 1, lateShare: 0 });
  expect(lostIn(gaps, 10_000, 10_200)).toEqual({ ms: 32, maxMs: 30, count: 2, lateShare: 0.04 });
  expect(lostIn(gaps, 11_000, 12_000)).toEqual({ ms: 0, maxMs: 0, count: 0, lateShare: 0 });
});

it("gives the CPU's slowdown in a window as the loop's median there over its fastest second", () => {
  const speeds = [{ atUs: 1_000_000, loopNs: 4000, loadsNs: 20_000, callsNs: 10_000, wideNs: 1 }, { atUs: 2_000_000, loopNs: 6000, loadsNs: 30_000, callsNs: -1, wideNs: 1 },
    { atUs: 3_000_000, loopNs: 5000, loadsNs: 40_000, callsNs: 12_000, wideNs: 1 }, { atUs: 4_000_000, loopNs: 6000, loadsNs: 40_000, callsNs: 15_000, wideNs: 1 }];
  expect(slowdownIn(speeds, 1500, 4500)).toBe(1.5);
  expect(slowdownIn(speeds, 1500, 4500, 'loadsNs')).toBe(2);
  // A second with no sample of a kind (-1) counts neither inside the window nor as the fastest.
  expect(slowdownIn(speeds, 1500, 4500, 'callsNs')).toBe(1.5);
  expect(slowdownIn(speeds, 900, 1100)).toBe(1);
  expect(slowdownIn(speeds, 5000, 6000)).toBeNaN();
});

it('reads a CPU line of /proc/stat in seconds, and the TCP opens of /proc/net/snmp', () => {
  const stat = 'cpu  19882 0 8842 19892 368 0 205 7 0 0\ncpu0 8913 10 3808 11775 33 5 60 3 0 0\ncpu1 10968 0 5033 8117 335 0 144 4 0 0\n';
  const c = cpuTimes(0, stat);
  expect(c.busy).toBeCloseTo((8913 + 10 + 3808 + 5 + 60) / 100, 9);
  expect(c.idle).toBeCloseTo((11775 + 33) / 100, 9);
  expect(c.steal).toBeCloseTo(0.03, 9);
  expect(c.softirq).toBeCloseTo(0.6, 9);
  expect(() => cpuTimes(2, stat)).toThrow(/cpu2/);
  const snmp = 'Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails\nTcp: 1 200 120000 -1 4242 4100 3\n';
  expect(tcpOpens(snmp)).toEqual({ active: 4242, passive: 4100 });
  const here = tcpOpens();
  expect(here.active).toBeGreaterThanOrEqual(0);
});

it("reads this process's CPU and scheduler time from /proc, every thread's run time included", () => {
  const end = Date.now() + 50;
  while (Date.now() < end) { /* spin: run time to see */ }
  const t = procTimes([process.pid]);
  expect(t.runMs).toBeGreaterThan(50);
  // The spin ran on this process's main thread: its run time alone holds it, and never exceeds all threads'.
  expect(t.mainRunMs).toBeGreaterThan(50);
  expect(t.mainRunMs).toBeLessThanOrEqual(t.runMs);
  expect(t.user + t.sys).toBeGreaterThan(0);
  expect(procTimes([2 ** 22 + 1])).toEqual({ user: 0, sys: 0, runMs: 0, mainRunMs: 0, waitMs: 0, voluntary: 0, involuntary: 0 });
});

it('names the processes that used the most CPU in a window, the proxy left out, a process born in it counted whole', () => {
  const a = new Map([[1, { name: 'tsc', ms: 1000 }], [2, { name: 'node', ms: 500 }], [3, { name: 'nginx', ms: 10 }]]);
  const b = new Map([[1, { name: 'tsc', ms: 1900 }], [2, { name: 'node', ms: 2500 }], [3, { name: 'nginx', ms: 410 }], [4, { name: 'wrk', ms: 600 }]]);
  expect(topOthers(a, b, [2])).toEqual([{ name: 'tsc', ms: 900 }, { name: 'wrk', ms: 600 }, { name: 'nginx', ms: 400 }]);
  expect(topOthers(a, b, [2], 1)).toEqual([{ name: 'tsc', ms: 900 }]);
  expect(allProcesses().get(process.pid)?.name).toBe(readFileSync('/proc/self/comm', 'utf8').trim());
});

it('builds and runs the probe: ready at SCHED_FIFO on the CPU, a speed sample each second', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kw-steal-probe-'));
  try {
    const probe = await startStealProbe(await buildStealProbe(dir), 0);
    try {
      const deadline = Date.now() + 5000;
      while (probe.speeds.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(probe.speeds.length).toBeGreaterThan(0);
      expect(probe.speeds[0]!.loopNs).toBeGreaterThan(0);
      expect(probe.speeds[0]!.loadsNs).toBeGreaterThan(0);
      expect(probe.speeds[0]!.callsNs).toBeGreaterThan(0);
      expect(probe.speeds[0]!.wideNs).toBeGreaterThan(0);
      expect(Math.abs(probe.speeds[0]!.atUs / 1000 - Date.now())).toBeLessThan(5000);
      for (const g of probe.gaps) expect(g.lateUs).toBeGreaterThan(250);
    } finally {
      probe.stop();
    }
    await expect(startStealProbe(join(dir, 'steal-probe'), 4096)).rejects.toThrow(/CPU 4096/);
    // A bench that dies leaves no SCHED_FIFO probe behind: the probe ends with its parent,
    // even with its output going nowhere (no broken pipe to end it).
    const parent = spawn('sh', ['-c', '"$0" 0 4000 250 > /dev/null & echo $!; exec sleep 30', join(dir, 'steal-probe')], { stdio: ['ignore', 'pipe', 'inherit'] });
    const probePid = await new Promise<number>((resolve, reject) => {
      parent.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
      parent.once('error', reject);
    });
    // Running, and not a zombie (its parent, the shell, has not reaped it yet when it ends).
    const alive = (pid: number): boolean => {
      try { return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z'; } catch { return false; }
    };
    try {
      expect(alive(probePid)).toBe(true);
      parent.kill('SIGKILL');
      const deadline = Date.now() + 5000;
      while (alive(probePid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(alive(probePid)).toBe(false);
    } finally {
      parent.kill('SIGKILL');
      if (alive(probePid)) process.kill(probePid, 'SIGKILL');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
