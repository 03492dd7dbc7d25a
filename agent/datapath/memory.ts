/**
 * Memory the agent gives back after a burst. A first sync reads, parses and drops the whole
 * state (10,000 Services x 10 endpoints: tens of MiB of file text, YAML trees and Buffers).
 * V8 keeps the dead objects' pages in its old generation, and glibc's malloc keeps the freed
 * pages of the Buffers mapped; RSS counts both. A compacting GC (common/heap.ts) and then
 * malloc_trim(0) return them: measured 152 → 108 MiB idle on that model (docs/agent-model.md).
 */
import { mallocTrim } from '../../native/index.js';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
import { compactHeap } from '../../common/heap.js';
import { releasePooledBuffers } from '../../common/metrics-text.js';

/**
 * Compacts the heap, then returns freed malloc memory to the kernel; whether malloc released any.
 * After the first sync, with `flushCode`, the same GC drops the bytecode of the functions that
 * are not running (common/heap.ts): what only the start-up ran is compiled again if ever called.
 */
export function releaseFreedMemory(opts: { flushCode?: boolean } = {}): boolean {
  compactHeap(opts);
  return mallocTrim();
}

/**
 * What a /metrics scrape leaves: malloc's freed pages (returned each time) and V8 heap pages
 * that stay committed until a memory-reducing GC, which an idle agent does not run
 * (docs/agent-model.md, "Ninth session (lead)"; docs/kubernetes-api.md, "Twelfth session"):
 *
 * - the young generation's: V8 grows it from 1 to 2 MiB (as getHeapSpaceStatistics reports
 *   it; no further with `--semi-space-growth-factor=1`, common/heap.ts) once enough has
 *   survived its scavenges, and all of it is then resident (0.26 MiB before); only a
 *   memory-reducing GC shrinks it back (measured at 10,000 Services: +1.75 MiB of RSS after
 *   one scrape in three, those the old generation's threshold let through);
 * - the old generation's, when the committed heap grew by more than `thresholdBytes`.
 *
 * So after a scrape the heap is compacted (common/heap.ts compactHeap, which reduces memory)
 * when either grew since the last compaction (the first sync's, or one of these); otherwise
 * only malloc is trimmed. A scrape itself allocates little (common/metrics-text.ts,
 * agent/datapath/service-counters.ts: ~1.4 MiB at 10,000 Services), so a compaction follows the
 * scrapes after which the agent's other work (changes, Lease renewals) had grown the young
 * generation, or a large one; it costs ~40-90 ms of CPU at 10,000 Services, a few ms on a small
 * heap. Malloc's freed pages (V8's compile zones, a scrape's buffers) are returned after every scrape.
 */
export class ScrapeMemory {
  private base: number | undefined;
  private young = 0;
  constructor(private readonly thresholdBytes = 1 << 20) {}

  /** The heap was just compacted (the first sync): later growth is measured from here. */
  settled(): void {
    this.base = getHeapStatistics().total_heap_size;
    this.young = youngGenerationBytes();
  }

  /**
   * After the scrapes under way are done: what was released. Nothing is compacted before
   * `settled()`. The /metrics text's pooled chunk buffers are freed first (common/metrics-text.ts
   * releasePooledBuffers: up to 1 MiB that malloc_trim then returns; the next scrape allocates its own).
   */
  afterScrape(): 'compacted' | 'trimmed' {
    releasePooledBuffers();
    if (this.base !== undefined && (getHeapStatistics().total_heap_size > this.base + this.thresholdBytes || youngGenerationBytes() > this.young)) {
      releaseFreedMemory();
      this.settled();
      return 'compacted';
    }
    mallocTrim();
    return 'trimmed';
  }
}

/** V8's young generation as committed now (both semi-spaces), bytes. */
export function youngGenerationBytes(): number {
  for (const s of getHeapSpaceStatistics()) if (s.space_name === 'new_space') return s.space_size;
  return 0;
}
