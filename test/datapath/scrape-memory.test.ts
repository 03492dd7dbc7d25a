import { getHeapStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { ScrapeMemory } from '../../agent/datapath/memory.js';
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

  it('only trims malloc while the heap stays within the threshold', () => {
    const m = new ScrapeMemory(256 << 20);
    m.settled();
    growOldGeneration();
    expect(m.afterScrape()).toBe('trimmed');
  });

  it("frees the /metrics text's pooled chunk buffers after each scrape, compacted or trimmed", async () => {
    const m = new ScrapeMemory(256 << 20);
    m.settled();
    await metricsTextOf(function* (w) { for (let i = 0; i < 5_000; i++) { w.text(`kw_row{i="${i}"} `); w.value(i); w.text('\n'); yield; } });
    expect(pooledBuffers()).toBeGreaterThan(0);
    expect(m.afterScrape()).toBe('trimmed');
    expect(pooledBuffers()).toBe(0);
  });
});
