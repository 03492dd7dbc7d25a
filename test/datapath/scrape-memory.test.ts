import { getHeapStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { ScrapeMemory } from '../../agent/datapath/memory.js';
import { youngGenerationBytes } from '../../common/heap.js';
import { compactHeap } from '../../common/heap.js';
import { metricsTextOf, pooledBuffers } from '../../common/metrics-text.js';

/** ~20 MiB of objects that live long enough to be promoted to V8's old generation, then are dropped. */
function growOldGeneration(): void {
  const keep: Array<{ i: number; s: string }> = [];
  for (let i = 0; i < 300_000; i++) keep.push({ i, s: `scrape-row-${i}` });
  expect(keep.length).toBe(300_000);
  // Dropped on return.
}

/** Objects that survive a scavenge or two (kept in batches, then dropped), until V8 grows the young generation. */
function growYoungGeneration(): number {
  const young = youngGenerationBytes();
  let keep: Array<{ i: number; s: string }> = [];
  for (let i = 0; i < 5_000_000 && youngGenerationBytes() <= young; i++) {
    keep.push({ i, s: `young-${i}` });
    if (keep.length > 20_000) keep = [];
  }
  return youngGenerationBytes();
}

describe('ScrapeMemory: what a /metrics scrape leaves in the agent', () => {
  it('compacts nothing before the first sync has settled, whatever the heap did', () => {
    const m = new ScrapeMemory();
    growOldGeneration();
    expect(m.afterScrape()).toBe('trimmed');
  });

  it('compacts after every scrape once settled: dropped objects promoted to the old generation are given back', () => {
    // The previous case's dropped objects compacted away first: otherwise their free pages can
    // hold this case's growth and the committed heap need not grow.
    compactHeap();
    const m = new ScrapeMemory();
    m.settled();
    const before = getHeapStatistics().total_heap_size;
    growOldGeneration();
    const grown = getHeapStatistics().total_heap_size;
    expect(grown).toBeGreaterThan(before + (4 << 20));
    expect(m.afterScrape()).toBe('compacted');
    expect(getHeapStatistics().total_heap_size).toBeLessThan(grown - (8 << 20));
  });

  it('shrinks the young generation back when it grew, however little the old one did (one scrape in three at 10,000 Services, +1.75 MiB of RSS)', () => {
    compactHeap();
    const m = new ScrapeMemory();
    m.settled();
    const young = youngGenerationBytes();
    const grown = growYoungGeneration();
    expect(grown).toBeGreaterThan(young);
    expect(m.afterScrape()).toBe('compacted');
    expect(youngGenerationBytes()).toBeLessThan(grown);
  });

  it('a compaction due while changes come waits for a quiet moment, or its longest wait; scrapes meanwhile share it', async () => {
    const until = async (what: string, ok: () => boolean): Promise<void> => {
      for (let i = 0; !ok(); i++) {
        if (i > 2000) throw new Error(`not ${what}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    // A change just before the scrape: deferred, then compacted once nothing came for quietMs.
    const m = new ScrapeMemory({ quietMs: 100, maxDeferMs: 60_000 });
    m.settled();
    m.changed();
    expect(m.afterScrape()).toBe('deferred');
    expect(m.afterScrape()).toBe('deferred');
    expect(m.compactions).toBe(0);
    await until('compacted after the quiet moment', () => m.compactions === 1);
    // Quiet since: at once.
    await new Promise((r) => setTimeout(r, 120));
    expect(m.afterScrape()).toBe('compacted');
    expect(m.compactions).toBe(2);
    // Changes that never stop: compacted maxDeferMs after the scrape all the same.
    const busy = new ScrapeMemory({ quietMs: 100, maxDeferMs: 300 });
    busy.settled();
    const churn = setInterval(() => busy.changed(), 10);
    try {
      busy.changed();
      const t0 = performance.now();
      expect(busy.afterScrape()).toBe('deferred');
      await until('compacted under churn', () => busy.compactions === 1);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    } finally {
      clearInterval(churn);
    }
    // Stopped: a waiting compaction is dropped.
    const stopped = new ScrapeMemory({ quietMs: 50 });
    stopped.settled();
    stopped.changed();
    expect(stopped.afterScrape()).toBe('deferred');
    stopped.stop();
    await new Promise((r) => setTimeout(r, 120));
    expect(stopped.compactions).toBe(0);
  });

  it("frees the /metrics text's pooled chunk buffers after each scrape, compacted or trimmed", async () => {
    for (const settled of [false, true]) {
      const m = new ScrapeMemory();
      if (settled) m.settled();
      await metricsTextOf(function* (w) { for (let i = 0; i < 5_000; i++) { w.text(`kw_row{i="${i}"} `); w.value(i); w.text('\n'); yield; } });
      expect(pooledBuffers()).toBeGreaterThan(0);
      expect(m.afterScrape()).toBe(settled ? 'compacted' : 'trimmed');
      expect(pooledBuffers()).toBe(0);
    }
  });
});
