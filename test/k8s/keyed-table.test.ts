/** KeyedTable: a Map of values holding their own key, in one array of slots, against a plain Map change after change. */
import { describe, expect, it } from 'vitest';
import { KeyedTable, hashKey } from '../../k8s/keyed-table.js';

interface V { key: string; n: number }
const keyOf = (v: V): string => v.key;

/** A small deterministic generator (xorshift32), so a failure repeats. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 0x100000000; };
}

function same(t: KeyedTable<V>, m: Map<string, V>): void {
  expect(t.size).toBe(m.size);
  const wrong = [...m].filter(([k, v]) => t.get(k) !== v || !t.has(k)).map(([k]) => k);
  expect(wrong).toEqual([]);
  const seen = new Map([...t]);
  expect(seen.size).toBe(m.size); // each value once
  expect([...seen].filter(([k, v]) => m.get(k) !== v || k !== v.key).map(([k]) => k)).toEqual([]);
  expect([...t.keys()].sort()).toEqual([...m.keys()].sort());
  expect(new Set(t.values())).toEqual(new Set(m.values()));
}

describe('KeyedTable', () => {
  it('answers as a Map through adds, replacements and deletions, growing and shrinking', () => {
    const r = rng(7);
    const t = new KeyedTable<V>(keyOf);
    const m = new Map<string, V>();
    // Keys as the agent's: namespace/name, many sharing a prefix, some unique.
    const key = (): string => (r() < 0.8 ? `bench/svc-${Math.floor(r() * 3000)}` : `ns-${Math.floor(r() * 50)}/x${Math.floor(r() * 20)}`);
    for (let step = 0; step < 40_000; step++) {
      const k = key();
      const p = r();
      // Phases: grow to thousands, then mostly delete (down to a few), then grow again.
      const deleting = step % 20_000 > 12_000 ? 0.8 : 0.25;
      if (p < deleting) {
        expect(t.delete(k)).toBe(m.delete(k));
      } else {
        const v = { key: k, n: step };
        t.set(k, v);
        m.set(k, v);
      }
      expect(t.get(k)).toBe(m.get(k));
      if (step % 4999 === 0) same(t, m);
    }
    same(t, m);
    for (const k of [...m.keys()]) { expect(t.delete(k)).toBe(true); m.delete(k); }
    same(t, m);
    expect(t.get('bench/svc-1')).toBeUndefined();
    t.set('a', { key: 'a', n: 1 });
    same(t, new Map([['a', t.get('a')!]]));
  });

  it('visits every value left once when values are deleted while iterating', () => {
    const t = new KeyedTable<V>(keyOf);
    for (let i = 0; i < 1000; i++) t.add({ key: `k${i}`, n: i });
    const visited: number[] = [];
    for (const [k, v] of t) {
      visited.push(v.n);
      if (v.n % 3 === 0) t.delete(k);
      // delete one not visited yet (if still there): it must not be visited afterwards
      const later = `k${(v.n * 7 + 1) % 1000}`;
      if (!visited.includes((v.n * 7 + 1) % 1000)) t.delete(later);
    }
    expect(new Set(visited).size).toBe(visited.length);
    for (const v of t.values()) expect(visited).toContain(v.n);
    // every value deleted ahead of its visit was not visited
    for (let i = 0; i < 1000; i++) if (!visited.includes(i)) expect(t.has(`k${i}`)).toBe(false);
  });

  it('ends an iteration when its last value is deleted during it', () => {
    const t = new KeyedTable<V>(keyOf, [{ key: 'a', n: 1 }, { key: 'b', n: 2 }]);
    const seen: string[] = [];
    for (const k of t.keys()) { seen.push(k); t.delete('a'); t.delete('b'); }
    expect(seen).toHaveLength(1);
    expect(t.size).toBe(0);
  });

  it('keeps its values through reserve, and refuses a value set under another key', () => {
    const t = new KeyedTable<V>(keyOf);
    const m = new Map<string, V>();
    for (let i = 0; i < 100; i++) { const v = { key: `k${i}`, n: i }; t.add(v); m.set(v.key, v); }
    t.reserve(10_000);
    same(t, m);
    for (let i = 100; i < 10_000; i++) { const v = { key: `k${i}`, n: i }; t.add(v); m.set(v.key, v); }
    same(t, m);
    expect(() => t.set('k1', { key: 'k2', n: 0 })).toThrow(/keyed "k2" set under "k1"/);
    expect(t.get('k1')).toBe(m.get('k1'));
    t.clear();
    expect(t.size).toBe(0);
    expect([...t]).toEqual([]);
    expect(Object.prototype.toString.call(t)).toBe('[object KeyedTable]');
  });

  it('spreads the agent keys over the low bits', () => {
    // 10,000 keys differing only in their digits, into 16,384 slots: no slot holds many.
    const slots = new Uint16Array(16_384);
    for (let i = 0; i < 10_000; i++) slots[hashKey(`bench/svc-${i}`) & 16_383]!++;
    expect(Math.max(...slots)).toBeLessThan(8);
  });
});
