/**
 * Memory the agent gives back after a burst. A first sync reads, parses and drops the whole
 * state (10,000 Services x 10 endpoints: tens of MiB of file text, YAML trees and Buffers).
 * V8 keeps the dead objects' pages in its old generation, and glibc's malloc keeps the freed
 * pages of the Buffers mapped; RSS counts both. A compacting GC (common/heap.ts) and then
 * malloc_trim(0) return them: measured 152 → 108 MiB idle on that model (docs/agent-model.md).
 */
import { mallocTrim } from '../../native/index.js';
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
 * What a /metrics scrape leaves, and what is given back after it. V8 heap pages stay resident
 * until a memory-reducing GC, which an idle agent does not run (its memory reducer follows a
 * full GC, and a scrape causes none): measured on the agent with 10,000 Services (bench/kube-api
 * --heap-spaces; docs/kubernetes-api.md, "Twelfth session"), 1 s after a scrape, +1.5-2.8 MiB over
 * the idle figure without a compaction, +0.4-0.8 with one:
 *
 * - the young generation: V8 grows it from 1 to 2 MiB (as getHeapSpaceStatistics reports it; no
 *   further with `--semi-space-growth-factor=1`, common/heap.ts) once enough has survived its
 *   scavenges, all of it then resident (0.26 MiB after a compaction); it uses its pages in turn;
 * - the old generation's free ranges, which the idle compaction had given back to the kernel
 *   and which promoted objects and recompiled code then write again (in no V8 figure: its
 *   "physical" sizes count committed pages);
 * - the scrape's own code, compiled again after the first sync's compaction flushed it
 *   (`flushCode`): code and bytecode +0.6 MiB, which stays (the next scrape runs it).
 *
 * No V8 figure tells the first two from noise (the committed heap moves by 0.25-0.5 MiB), and a
 * threshold on the committed heap (the ninth session's, 1 MiB) let one scrape in three through.
 * So once the first sync has settled, the heap is compacted after every scrape (common/heap.ts
 * compactHeap, which reduces memory: the young generation shrunk, free ranges discarded), then
 * malloc trimmed. A scrape itself allocates little (~1.4 MiB at 10,000 Services:
 * common/metrics-text.ts, agent/datapath/service-counters.ts); the compaction costs ~100 ms of
 * CPU at 10,000 Services and a few ms on a small heap, once per scrape (Prometheus scrapes every
 * 15-60 s; scrapes at the same time share one).
 */
export class ScrapeMemory {
  private ready = false;
  private lastChange = -Infinity;
  /** A compaction waiting for a quiet moment: since when, and its timer. */
  private deferred: { since: number; timer: NodeJS.Timeout } | undefined;
  private readonly quietMs: number;
  private readonly maxDeferMs: number;
  /** Compactions run (tests, diagnostics). */
  compactions = 0;

  /**
   * `quietMs`: a compaction waits until no change has come for this long (default 1 s);
   * `maxDeferMs`: but no longer than this after its scrape (default 10 s, before the next
   * scrape of a 15 s interval).
   */
  constructor(opts: { quietMs?: number; maxDeferMs?: number } = {}) {
    this.quietMs = opts.quietMs ?? 1000;
    this.maxDeferMs = opts.maxDeferMs ?? 10_000;
  }

  /** The first sync's compaction is done: compactions after scrapes may start. */
  settled(): void {
    this.ready = true;
  }

  /**
   * The model changed (a reconcile): a compaction due now waits for a quiet moment. The
   * compaction stops the process for ~100 ms at 10,000 Services; a change arriving then
   * waits for it, and changes come in bursts (a rollout, a relist).
   */
  changed(): void {
    this.lastChange = performance.now();
  }

  /**
   * After the scrapes under way are done: what was released ('deferred': the compaction
   * runs later, once no change has come for `quietMs`, or `maxDeferMs` after the scrape at
   * the latest). Nothing is compacted before `settled()` (the first sync's own compaction
   * comes then). The /metrics text's pooled chunk buffers are freed first
   * (common/metrics-text.ts releasePooledBuffers: up to 1 MiB that malloc_trim then returns;
   * the next scrape allocates its own).
   */
  afterScrape(): 'compacted' | 'trimmed' | 'deferred' {
    releasePooledBuffers();
    if (!this.ready) {
      mallocTrim();
      return 'trimmed';
    }
    if (this.deferred) return 'deferred'; // one compaction for the scrapes meanwhile
    const now = performance.now();
    if (now - this.lastChange >= this.quietMs) {
      this.compact();
      return 'compacted';
    }
    this.deferred = { since: now, timer: this.wait(now, now) };
    return 'deferred';
  }

  /** Drops a compaction still waiting (the agent stopping). */
  stop(): void {
    if (this.deferred) clearTimeout(this.deferred.timer);
    this.deferred = undefined;
  }

  /** A timer for when a compaction deferred since `since` may run: the quiet moment, or its longest wait. */
  private wait(since: number, now: number): NodeJS.Timeout {
    const due = Math.min(this.lastChange + this.quietMs, since + this.maxDeferMs);
    const t = setTimeout(() => {
      const d = this.deferred;
      if (!d) return;
      const at = performance.now();
      if (at - this.lastChange >= this.quietMs || at - d.since >= this.maxDeferMs) {
        this.deferred = undefined;
        this.compact();
      } else {
        d.timer = this.wait(d.since, at);
      }
    }, Math.max(1, due - now));
    t.unref();
    return t;
  }

  private compact(): void {
    this.compactions++;
    releaseFreedMemory();
  }
}
