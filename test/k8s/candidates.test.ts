/** Candidates per key, and FoldedCandidates: the sole candidate in use kept only by the owner's map. */
import { describe, expect, it } from 'vitest';
import { Candidates, FoldedCandidates } from '../../k8s/candidates.js';

interface C { name: string; rank: number }
const byRank = (a: C, b: C): number => a.rank - b.rank;
const c = (name: string, rank: number): C => ({ name, rank });

describe('FoldedCandidates', () => {
  it('gives the same answers as Candidates while holding only what the map in use does not', () => {
    const inUse = new Map<string, C>();
    const folded = new FoldedCandidates<C>(byRank, inUse);
    const plain = new Candidates<C>(byRank);
    // `inUse` holds the first candidate of a key unless the key is "unused" (as a Service that lost its cluster IP).
    const unused = new Set<string>();
    const settle = (): void => {
      for (const key of ['a', 'b', 'c']) {
        const first = plain.first(key);
        if (first && !unused.has(key)) inUse.set(key, first); else inUse.delete(key);
      }
      folded.settle();
    };
    const check = (): void => {
      for (const key of ['a', 'b', 'c']) {
        expect(folded.first(key)).toBe(plain.first(key));
        expect(folded.all(key)).toEqual(plain.all(key));
        expect(folded.contested(key)).toBe(plain.contested(key));
      }
    };
    const a1 = c('a1', 1), a2 = c('a2', 2), b1 = c('b1', 1), c1 = c('c1', 1);
    const steps: Array<() => void> = [
      () => { folded.add('a', a1); plain.add('a', a1); folded.add('b', b1); plain.add('b', b1); },
      () => { folded.add('a', a2); plain.add('a', a2); }, // contested: a1 first
      () => { folded.remove('a', a1); plain.remove('a', a1); }, // a2 alone
      () => { unused.add('b'); folded.open('b'); }, // b's candidate is not in use: held apart
      () => { folded.add('c', c1); plain.add('c', c1); unused.delete('b'); folded.open('b'); },
      () => { expect(folded.remove('c', a1)).toBe(false); plain.remove('c', a1); },
      () => { folded.remove('a', a2); plain.remove('a', a2); folded.remove('c', c1); plain.remove('c', c1); },
    ];
    for (const step of steps) {
      step();
      check(); // before settle: what was opened is held apart
      settle();
      check();
    }
    expect(folded.first('b')).toBe(b1);
    expect(inUse.get('b')).toBe(b1);
  });

  it('holds nothing of its own for keys whose sole candidate is in use', () => {
    const inUse = new Map<string, C>();
    const folded = new FoldedCandidates<C>(byRank, inUse);
    for (let i = 0; i < 100; i++) { const v = c(`k${i}`, i); folded.add(`k${i}`, v); inUse.set(`k${i}`, v); }
    folded.settle();
    expect((folded as unknown as { one: Map<string, C> }).one.size).toBe(0);
    expect(folded.first('k7')?.name).toBe('k7');
    // One key not in use: held.
    folded.open('k7');
    inUse.delete('k7');
    folded.settle();
    expect((folded as unknown as { one: Map<string, C> }).one.size).toBe(1);
    expect(folded.first('k7')?.name).toBe('k7');
  });
});

describe('Candidates with keyOf (a sole candidate under its own key kept in a KeyedTable)', () => {
  it('gives the same answers as plain Candidates, change after change, for candidates of one key and of several', () => {
    // Values claim keys as Services claim cluster IPs: the first of their keys is their own.
    interface Claim { ips: string[]; rank: number }
    const keyed = new Candidates<Claim>((a, b) => a.rank - b.rank, (v) => v.ips[0]!);
    const plain = new Candidates<Claim>((a, b) => a.rank - b.rank);
    let x = 3;
    const rand = (n: number): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x % n; };
    const live: Claim[] = [];
    const ip = (): string => `10.96.${rand(2)}.${rand(200)}`;
    for (let step = 0; step < 6000; step++) {
      if (live.length > 0 && rand(100) < (step > 4000 ? 80 : 40)) {
        const v = live.splice(rand(live.length), 1)[0]!;
        for (const k of v.ips) expect(keyed.remove(k, v)).toBe(plain.remove(k, v));
      } else {
        const v: Claim = { ips: rand(4) === 0 ? [ip(), `fd00::${rand(300)}`] : [ip()], rank: rand(50) };
        if (new Set(v.ips).size !== v.ips.length) continue;
        live.push(v);
        for (const k of v.ips) { keyed.add(k, v); plain.add(k, v); }
      }
      if (step % 500 === 0 || step > 5900) {
        expect(keyed.size).toBe(plain.size);
        for (const v of live) {
          for (const k of v.ips) {
            expect(keyed.first(k)).toBe(plain.first(k));
            expect(keyed.all(k)).toEqual(plain.all(k));
            expect(keyed.contested(k)).toBe(plain.contested(k));
          }
        }
      }
    }
    for (const v of live.splice(0)) for (const k of v.ips) { keyed.remove(k, v); plain.remove(k, v); }
    expect(keyed.size).toBe(0);
    expect(keyed.first('10.96.0.1')).toBeUndefined();
  });
});
