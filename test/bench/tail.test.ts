/**
 * bench/waypoint/tail.ts: what the slow requests of a one-connection run coincide with. Its
 * parts that decide the numbers: h2load's request log, the p99 wrk would print for the same
 * requests (its coordinated-omission correction), `perf sched timehist` lines as spans of
 * running and waiting for a CPU, and how much of the slow requests' time each span covers.
 */
import { expect, it } from 'vitest';
import { overlap, parseH2loadLog, parseTimehist, wrkCorrected } from '../../bench/waypoint/tail.js';

it("reads h2load's request log (start µs, status, duration µs) and skips what is not a record", () => {
  const text = '1796499030604634\t200\t125\n1796499030604800\t200\t3100\n\ngarbage\n1796499030608000\t503\t90\n';
  expect(parseH2loadLog(text)).toEqual([
    { startUs: 1796499030604634, status: 200, us: 125 },
    { startUs: 1796499030604800, status: 200, us: 3100 },
    { startUs: 1796499030608000, status: 503, us: 90 },
  ]);
});

it('adds the samples wrk adds for a request slower than twice the interval, none for faster ones', () => {
  // interval 100: 150 adds nothing (< 200); 450 adds 350, 250, 150 (and stops above the interval).
  expect(wrkCorrected([100, 150, 450], 100).sort((a, b) => a - b)).toEqual([100, 150, 150, 250, 350, 450]);
  // One stall of 10 ms among 1,000 requests of 100 µs moves the p99 from 100 µs to milliseconds.
  const us = [...Array(999).fill(100), 10_000];
  const corrected = wrkCorrected(us, 100).sort((a, b) => a - b);
  expect(corrected.length).toBe(1000 + 98);
  expect(corrected[Math.ceil(corrected.length * 0.99) - 1]).toBeGreaterThan(8000);
  expect(wrkCorrected(us, Number.NaN)).toEqual(us);
});

it('turns perf sched timehist lines into running and waiting spans of the tasks asked for', () => {
  const text = [
    '           time    cpu  task name                       wait time  sch delay   run time',
    '                        [tid/pid]                          (msec)     (msec)     (msec)',
    '--------------- ------  ------------------------------  ---------  ---------  ---------',
    '   59319.350567 [0001]  MainThread[29677]                5000.514      0.314      1.041 ',
    '   59320.100993 [0000]  nginx[29693]                      325.015    314.986      0.643 ',
    '   59320.200000 [0000]  h2load[40000/39999]                 0.100      0.000      0.050 ',
    '   59320.300000 [0000]  perf[1]                             0.100      0.200      0.050 ',
  ].join('\n');
  const spans = parseTimehist(text, (tid, comm) => tid === 29677 ? 'proxy' : comm === 'h2load' ? 'h2load' : tid === 29693 ? 'backend' : undefined);
  const at = (s: number): number => Math.round(s * 1e6);
  expect(spans.map((s) => ({ ...s, from: Math.round(s.from), to: Math.round(s.to) }))).toEqual([
    { from: at(59319.350567) - 1041, to: at(59319.350567), task: 'proxy', state: 'run' },
    { from: at(59319.350567) - 1041 - 314, to: at(59319.350567) - 1041, task: 'proxy', state: 'wait' },
    { from: at(59320.100993) - 643, to: at(59320.100993), task: 'backend', state: 'run' },
    { from: at(59320.100993) - 643 - 314986, to: at(59320.100993) - 643, task: 'backend', state: 'wait' },
    { from: at(59320.2) - 50, to: at(59320.2), task: 'h2load', state: 'run' },
  ]);
});

it("sums each task's running and waiting time inside the windows, clipped to them", () => {
  const spans = [
    { from: 0, to: 100, task: 'proxy', state: 'wait' as const },
    { from: 100, to: 130, task: 'proxy', state: 'run' as const },
    { from: 50, to: 400, task: 'backend', state: 'wait' as const },
    { from: 1000, to: 1100, task: 'proxy', state: 'run' as const },
  ];
  expect(overlap([{ from: 80, to: 120 }, { from: 300, to: 1050 }], spans)).toEqual({
    'proxy wait': 20, 'proxy run': 20 + 50, 'backend wait': 40 + 100,
  });
  expect(overlap([], spans)).toEqual({});
});
