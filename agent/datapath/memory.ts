/**
 * Memory the agent gives back after a burst. A first sync reads, parses and drops the whole
 * state (10,000 Services x 10 endpoints: tens of MiB of file text, YAML trees and Buffers).
 * V8 keeps the dead objects' pages in its old generation, and glibc's malloc keeps the freed
 * pages of the Buffers mapped; RSS counts both. A compacting GC (common/heap.ts) and then
 * malloc_trim(0) return them: measured 152 → 108 MiB idle on that model (docs/agent-model.md).
 */
import { mallocTrim } from '../../native/index.js';
import { compactHeap } from '../../common/heap.js';

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
 * Returns freed malloc memory to the kernel, without the heap compaction (cheap: run after
 * each /metrics scrape, whose response buffers and V8 compile zones leave freed pages in
 * malloc's arenas, ~4-6 MiB of RSS otherwise kept). Whether malloc released any.
 */
export function releaseFreedMalloc(): boolean {
  return mallocTrim();
}
