/**
 * Loaded into the waypoint by bench/waypoint/tail.ts (`node --import …/gc-probe.js`), never
 * by the product: records every GC pause with its wall-clock start (ms since the epoch),
 * duration (ms) and kind (perf_hooks' constants: 1 minor, 4 major, 8 incremental marking,
 * 16 weak callbacks), and writes them as JSON to $KW_GC_PROBE_OUT when the process exits.
 */
import { writeFileSync } from 'node:fs';
import { PerformanceObserver, performance } from 'node:perf_hooks';

const out = process.env.KW_GC_PROBE_OUT;
if (out !== undefined && out !== '') {
  const origin = performance.timeOrigin;
  const pauses: Array<[number, number, number]> = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) pauses.push([origin + e.startTime, e.duration, ((e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0)]);
  }).observe({ entryTypes: ['gc'] });
  process.on('exit', () => writeFileSync(out, JSON.stringify({ pauses })));
}
