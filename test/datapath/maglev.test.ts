import { describe, expect, it } from 'vitest';
import { isPrime, maglevTable } from '../../agent/datapath/maglev.js';

const M = 16381;
const names = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `10.244.0.${from + i + 2}:8080`);

function counts(table: Uint32Array, n: number): number[] {
  const c = new Array<number>(n).fill(0);
  for (const x of table) c[x]!++;
  return c;
}

describe('maglevTable', () => {
  it('gives every backend floor(M/N) or ceil(M/N) entries', () => {
    for (const n of [1, 2, 3, 5, 10, 97]) {
      const c = counts(maglevTable(names(n), M), n);
      for (const x of c) {
        expect(x).toBeGreaterThanOrEqual(Math.floor(M / n));
        expect(x).toBeLessThanOrEqual(Math.ceil(M / n));
      }
    }
  });

  it('does not depend on the order of the backends', () => {
    const a = names(7);
    const b = [...a].reverse();
    const ta = maglevTable(a, M);
    const tb = maglevTable(b, M);
    for (let i = 0; i < M; i++) expect(a[ta[i]!]).toBe(b[tb[i]!]);
  });

  it('removing one of N backends moves about 1/N of the entries', () => {
    for (const n of [5, 10, 20]) {
      const before = names(n);
      const removed = before[2]!;
      const after = before.filter((x) => x !== removed);
      const tb = maglevTable(before, M);
      const ta = maglevTable(after, M);
      let moved = 0;
      let movedOthers = 0;
      for (let i = 0; i < M; i++) {
        const was = before[tb[i]!]!;
        const now = after[ta[i]!]!;
        if (was !== now) {
          moved++;
          if (was !== removed) movedOthers++;
        }
      }
      // The removed backend's entries (1/N) must move; Maglev moves few others.
      expect(moved / M).toBeGreaterThanOrEqual(1 / n - 0.001);
      expect(moved / M).toBeLessThan(1.25 / n);
      expect(movedOthers / M).toBeLessThan(0.25 / n);
    }
  });

  it('adding a backend moves about 1/(N+1) of the entries, all to the new one mostly', () => {
    const before = names(4);
    const after = names(5);
    const tb = maglevTable(before, M);
    const ta = maglevTable(after, M);
    let moved = 0;
    for (let i = 0; i < M; i++) if (before[tb[i]!] !== after[ta[i]!]) moved++;
    expect(moved / M).toBeGreaterThanOrEqual(1 / 5 - 0.001);
    expect(moved / M).toBeLessThan(1.25 / 5);
  });

  it('rejects a table size that is not prime, no backends, and duplicate names', () => {
    expect(() => maglevTable(names(3), 16380)).toThrow(/prime/);
    expect(() => maglevTable([], M)).toThrow(/at least one/);
    expect(() => maglevTable(['a', 'b', 'a'], M)).toThrow(/unique/);
  });

  it('isPrime', () => {
    expect([2, 3, 251, 16381, 65521].every(isPrime)).toBe(true);
    expect([0, 1, 4, 16383, 65535].some(isPrime)).toBe(false);
  });
});
