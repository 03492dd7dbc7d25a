/**
 * TextChunks' tentative families: what a failing reader wrote is taken back whole, also when
 * it spans several chunks or a text longer than a chunk; what came before the mark goes on.
 */
import { describe, expect, it } from 'vitest';
import { CHUNK_BYTES, TextChunks, recycle, releasePooledBuffers } from '../../common/metrics-text.js';

function collect(): { w: TextChunks; text: () => string } {
  const chunks: Buffer[] = [];
  const w = new TextChunks((c) => chunks.push(Buffer.from(c)));
  return { w, text: () => Buffer.concat(chunks).toString('utf8') };
}

describe('TextChunks tentative families', () => {
  it('a rolled back family leaves nothing, whether it fit in the chunk, spanned chunks or held a text longer than a chunk', () => {
    for (const body of ['x 1\n', 'y 2\n'.repeat(CHUNK_BYTES / 2), 'z'.repeat(CHUNK_BYTES)]) {
      const { w, text } = collect();
      w.family('a', 'first', 'gauge');
      w.text('a 1\n');
      w.tentative();
      w.family('b', 'dropped', 'gauge');
      w.text(body);
      w.rollback();
      w.family('c', 'third', 'gauge');
      w.text('c 3\n');
      w.release();
      expect(text()).toBe('# HELP a first\n# TYPE a gauge\na 1\n\n# HELP c third\n# TYPE c gauge\nc 3\n');
    }
  });

  it('a committed family goes on in order, with a text longer than a chunk', () => {
    const { w, text } = collect();
    w.text('before\n');
    w.tentative();
    w.text('z'.repeat(CHUNK_BYTES));
    w.text('\nafter\n');
    w.commit();
    w.release();
    expect(text()).toBe(`before\n${'z'.repeat(CHUNK_BYTES)}\nafter\n`);
  });
});

describe('the pooled chunk buffers', () => {
  it('are freed by releasePooledBuffers (detached: their memory goes at once), and the next text is written in new ones, the same', async () => {
    const { metricsTextOf, pooledBuffers, releasePooledBuffers } = await import('../../common/metrics-text.js');
    // Ten chunks' worth of series; metricsTextOf recycles each chunk once the text is joined.
    const render = function* (w: TextChunks): Iterable<unknown> {
      w.family('kw_test_total', 'a test family', 'counter');
      for (let i = 0; i < 40_000; i++) { w.text('kw_test_total{service="'); w.label(`ns/svc-${i}`); w.text('"} '); w.value(i); w.text('\n'); if (i % 1000 === 0) yield; }
    };
    const first = await metricsTextOf(render);
    expect(first.length).toBeGreaterThan(8 * CHUNK_BYTES);
    const pooled = pooledBuffers();
    expect(pooled).toBeGreaterThan(0);
    expect(releasePooledBuffers()).toBe(pooled);
    expect(pooledBuffers()).toBe(0);
    expect(await metricsTextOf(render)).toBe(first);
    expect(pooledBuffers()).toBeGreaterThan(0);
  });

  it('detached buffers are not used again: a chunk view of one reads as empty', () => {
    const chunks: Buffer[] = [];
    const w = new TextChunks((c) => chunks.push(c));
    w.text('x'.repeat(100));
    w.release();
    expect(chunks[0]!.length).toBe(100);
    recycle(chunks[0]!);
    expect(releasePooledBuffers()).toBeGreaterThan(0);
    expect(chunks[0]!.length).toBe(0);
    expect(chunks[0]!.buffer.byteLength).toBe(0);
  });
});
