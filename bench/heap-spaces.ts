/**
 * A preload for bench/kube-api.ts --heap-spaces (`--import` in the agent's NODE_OPTIONS): on
 * SIGURG the process appends one JSON line to $KW_BENCH_HEAP_SPACES/PID.jsonl: V8's heap spaces
 * as committed and resident (MiB), and the major GCs it has run so far. Diagnostics only: it
 * loads node:perf_hooks and keeps an observer, so the RSS it is measured with is not the agent's own.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';

const dir = process.env.KW_BENCH_HEAP_SPACES;
if (dir) {
  let majorGcs = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if ((e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majorGcs++;
  }).observe({ entryTypes: ['gc'] });
  const mib = (x: number): number => +(x / 1048576).toFixed(2);
  process.on('SIGURG', () => {
    const spaces: Record<string, [number, number]> = {};
    for (const s of getHeapSpaceStatistics()) if (s.space_size > 0) spaces[s.space_name.replace(/_space$/, '')] = [mib(s.space_size), mib(s.physical_space_size)];
    // V8's pages as the kernel sees them: anonymous read-write mappings of 256 KiB (a page each), their count and resident KiB.
    let pages = 0, pagesRss = 0, cur = false;
    for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
      const h = /^([0-9a-f]+)-([0-9a-f]+) rw-p \S+ \S+ 0\s*$/.exec(line);
      if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) { cur = !!h && parseInt(h[2]!, 16) - parseInt(h[1]!, 16) === 256 << 10; if (cur) pages++; continue; }
      const r = cur && /^Rss:\s+(\d+)/.exec(line);
      if (r) pagesRss += Number(r[1]);
    }
    appendFileSync(join(dir, `${process.pid}.jsonl`), JSON.stringify({ majorGcs, spaces, pages, pagesRssMiB: mib(pagesRss * 1024) }) + '\n');
  });
}
