/**
 * Memory the agent gives back after a burst. A first sync reads, parses and drops the whole
 * state (10,000 Services x 10 endpoints: tens of MiB of file text, YAML trees and Buffers).
 * V8 keeps the dead objects' pages in its old generation, and glibc's malloc keeps the freed
 * pages of the Buffers mapped; RSS counts both. A compacting GC (common/heap.ts) and then
 * malloc_trim(0) return them: measured 152 → 108 MiB idle on that model (docs/agent-model.md).
 */
import { mallocTrim } from '../../native/index.js';
import { getHeapStatistics } from 'node:v8';
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
 * What a /metrics scrape leaves: malloc's freed pages (returned each time) and, with many
 * Services, V8 heap pages its counters and text passed through: ~3 MiB of committed heap at
 * 10,000 Services x 10 endpoints that stayed until the next major GC, which an idle agent does
 * not run (docs/agent-model.md, "Ninth session (lead)"). So after a scrape the heap is compacted
 * when V8's committed heap grew by more than `thresholdBytes` since the last compaction (the
 * first sync's, or one of these); otherwise only malloc is trimmed. A small cluster's scrapes
 * never reach the threshold; a large one pays one compaction per scrape (measured ~30-80 ms more
 * CPU per scrape at 10,000 Services, beside the scrape's own ~120 ms; Prometheus scrapes every
 * 15-60 s). Malloc's freed pages (a scrape's buffers, V8's compile zones: ~4-6 MiB otherwise
 * kept) are returned after every scrape.
 */
export class ScrapeMemory {
  private base: number | undefined;
  constructor(private readonly thresholdBytes = 1 << 20) {}

  /** The heap was just compacted (the first sync): later growth is measured from here. */
  settled(): void {
    this.base = getHeapStatistics().total_heap_size;
  }

  /**
   * After the scrapes under way are done: what was released. Nothing is compacted before
   * `settled()`. The /metrics text's pooled chunk buffers are freed first (common/metrics-text.ts
   * releasePooledBuffers: up to 1 MiB that malloc_trim then returns; the next scrape allocates its own).
   */
  afterScrape(): 'compacted' | 'trimmed' {
    releasePooledBuffers();
    if (this.base !== undefined && getHeapStatistics().total_heap_size > this.base + this.thresholdBytes) {
      releaseFreedMemory();
      this.settled();
      return 'compacted';
    }
    mallocTrim();
    return 'trimmed';
  }
}
