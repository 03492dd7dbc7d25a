import { getHeapStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { ScrapeMemory, youngGenerationBytes } from '../../agent/datapath/memory.js';
import { compactHeap } from '../../common/heap.js';
import { metricsTextOf, pooledBuffers } from '../../common/metrics-text.js';

/** ~20 MiB of objects that live long enough to be promoted to V8's old generation, then are dropped. */
function growOldGeneration(): void {
  const keep: Array<{ i: number; s: string }> = [];
  for (let i = 0; i < 300_000; i++) keep.push({ i, s: `scrape-row-${i}` });
  expect(keep.length).toBe(300_000);
  // Dropped on return.
}

describe('ScrapeMemory: what a /metrics scrape leaves in the agent', () => {
  it('compacts nothing before the first sync has settled, whatever the heap did', () => {
    const m = new ScrapeMemory(1 << 20);
    growOldGeneration();
    expect(m.afterScrape()).toBe('trimmed');
  });

  it('compacts when the committed heap grew past the threshold since the last compaction, and measures from there', () => {
    // The previous case's dropped objects compacted away first: otherwise their free pages can
    // hold this case's growth and the committed heap need not grow.
    compactHeap();
    const m = new ScrapeMemory(4 << 20);
    m.settled();
    const before = getHeapStatistics().total_heap_size;
    growOldGeneration();
    const grown = getHeapStatistics().total_heap_size;
    expect(grown).toBeGreaterThan(before + (4 << 20));
    expect(m.afterScrape()).toBe('compacted');
    // The dropped objects' pages are given back.
    expect(getHeapStatistics().total_heap_size).toBeLessThan(grown - (8 << 20));
    // Nothing grew since: the next scrape only trims malloc.
    expect(m.afterScrape()).toBe('trimmed');
  });

  it('only trims malloc while the heap stays within the threshold and the young generation at its size', () => {
    compactHeap();
    const m = new ScrapeMemory(256 << 20);
    m.settled();
    const young = youngGenerationBytes();
    // A few KiB: no scavenge grows anything.
    const rows = Array.from({ length: 100 }, (_, i) => `scrape-row-${i}`);
    expect(rows.length).toBe(100);
    expect(youngGenerationBytes()).toBe(young);
    expect(m.afterScrape()).toBe('trimmed');
  });

  it('compacts when the young generation grew since the last compaction, however little the old one did, and shrinks it back', () => {
    compactHeap();
    const m = new ScrapeMemory(256 << 20);
    m.settled();
    const young = youngGenerationBytes();
    // Objects that survive a scavenge or two (kept in batches, then dropped), until V8 grows the young generation.
    let keep: Array<{ i: number; s: string }> = [];
    for (let i = 0; i < 5_000_000 && youngGenerationBytes() <= young; i++) {
      keep.push({ i, s: `young-${i}` });
      if (keep.length > 20_000) keep = [];
    }
    const grown = youngGenerationBytes();
    expect(grown).toBeGreaterThan(young);
    expect(getHeapStatistics().total_heap_size).toBeLessThan((m as unknown as { base: number }).base + (256 << 20));
    expect(m.afterScrape()).toBe('compacted');
    expect(youngGenerationBytes()).toBeLessThan(grown);
    expect(m.afterScrape()).toBe('trimmed');
  });

  it("frees the /metrics text's pooled chunk buffers after each scrape, compacted or trimmed", async () => {
    const m = new ScrapeMemory(256 << 20);
    m.settled();
    await metricsTextOf(function* (w) { for (let i = 0; i < 5_000; i++) { w.text(`kw_row{i="${i}"} `); w.value(i); w.text('\n'); yield; } });
    expect(pooledBuffers()).toBeGreaterThan(0);
    // (Compacted when the text's writing grew the young generation.)
    expect(['compacted', 'trimmed']).toContain(m.afterScrape());
    expect(pooledBuffers()).toBe(0);
  });
});
