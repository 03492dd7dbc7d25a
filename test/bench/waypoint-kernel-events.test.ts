/**
 * bench/waypoint/kernel-events.ts: the proxy's kernel events and CPU profile per window, read
 * from perf's own output; then perf run on a child process doing known work (root: perf may
 * attach to any PID).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { countKernelEvents, parsePerfStat, parseProfile, recordProfile } from '../../bench/waypoint/kernel-events.js';

it("reads perf stat's CSV lines, an event it could not count as NaN", () => {
  const text = [
    '12001,,raw_syscalls:sys_enter,3001234567,100.00,,',
    '<not counted>,,ipi:ipi_send_cpu,0,100.00,,',
    '2040,,sched:sched_waking,3001234567,100.00,,',
    '37,,page-faults,3001234567,100.00,,',
    '5,,context-switches,3001234567,100.00,,',
    '',
  ].join('\n');
  const e = parsePerfStat(text)!;
  expect(e).toMatchObject({ syscalls: 12001, wakeups: 2040, pageFaults: 37, contextSwitches: 5 });
  expect(e.ipis).toBeNaN();
  expect(parsePerfStat('perf: command not found\n')).toBeUndefined();
});

it("splits perf report's samples into kernel, node, JIT code by tier and libc, each sample 1/hz s", () => {
  const report = [
    '    17.02%           300  [kernel.kallsyms]    [k] pvm_irq_enable',
    '     2.39%           100  libc.so.6            [.] read',
    '     2.10%            50  node                 [.] v8::Value::IsFunction',
    '     1.46%            20  [JIT] tid 23252      [.] JS:+Conn.p.<computed> file:///x/h1-client.js:57:40',
    '     1.17%            40  [JIT] tid 23252      [.] JS:*\'head file:///x/h1-head.js:23:9',
    '     0.03%             2  [JIT] tid 23252      [.] JS:^H1Conn file:///x/h1-server.js:394:16',
    '     0.05%             8  libstdc++.so.6.0.30  [.] operator new',
    '',
  ].join('\n');
  const s = parseProfile(report, 100);
  expect(s.samples).toBe(520);
  expect(s.kernel).toBeCloseTo(3, 9);
  expect(s.libc).toBeCloseTo(1, 9);
  expect(s.node).toBeCloseTo(0.5, 9);
  expect(s.jit).toBeCloseTo(0.62, 9);
  expect(s.turbofan).toBeCloseTo(0.4, 9);
  expect(s.maglev).toBeCloseTo(0.2, 9);
  expect(s.baseline).toBeCloseTo(0.02, 9);
  expect(s.interpreted).toBe(0);
  expect(s.other).toBeCloseTo(0.08, 9);
});

/** A child that makes system calls in a loop for `ms`, then exits. */
function busyChild(ms: number): { pid: number; done: Promise<void> } {
  const child = spawn(process.execPath, ['-e', `const fs = require('node:fs'); const end = Date.now() + ${ms}; while (Date.now() < end) fs.statSync('/');`], { stdio: 'ignore' });
  return { pid: child.pid!, done: new Promise((resolve) => child.once('exit', () => resolve())) };
}

it('counts the system calls of a process that makes them, and profiles where its time went', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kw-kernel-events-'));
  try {
    const c = busyChild(1500);
    // Both resolve once perf counts (acknowledged through its control descriptor), while the child runs;
    // perf ends with the process it counts, and stop() then reads what it wrote.
    const counting = await countKernelEvents([c.pid]);
    const recording = await recordProfile([c.pid], join(dir, 'p.data'));
    await c.done;
    const e = await counting.stop();
    const s = await recording.stop();
    expect(e).toBeDefined();
    // statSync in a loop: thousands of system calls a second, each one counted.
    expect(e!.syscalls).toBeGreaterThan(1000);
    expect(s).toBeDefined();
    // The CPU clock sampled at 999 Hz, split between the kernel (stat) and the process's own code.
    expect(s!.samples).toBeGreaterThan(20);
    expect(s!.kernel).toBeGreaterThan(0);
    expect(s!.kernel + s!.node + s!.jit + s!.libc + s!.other).toBeCloseTo(s!.samples / 999, 6);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
