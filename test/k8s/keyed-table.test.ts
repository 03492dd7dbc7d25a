/** KeyedTable: a Map of values holding their own key, in one array of slots, against a plain Map change after change. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { KeyedTable, hashKey, hsiphash } from '../../k8s/keyed-table.js';
import { allocatedPerCall, dist } from '../fixtures/allocation.js';

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

  it.each(['for...of', 'forEach'])('visits every value left once when values are deleted while iterating (%s)', (how) => {
    const t = new KeyedTable<V>(keyOf);
    for (let i = 0; i < 1000; i++) t.add({ key: `k${i}`, n: i });
    const visited: number[] = [];
    const visit = (v: V, k: string): void => {
      expect(k).toBe(v.key);
      visited.push(v.n);
      if (v.n % 3 === 0) t.delete(k);
      // delete one not visited yet (if still there): it must not be visited afterwards
      const later = `k${(v.n * 7 + 1) % 1000}`;
      if (!visited.includes((v.n * 7 + 1) % 1000)) t.delete(later);
    };
    if (how === 'forEach') t.forEach(visit);
    else for (const [k, v] of t) visit(v, k);
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

  it('forEach allocates nothing per value without TurboFan (as the agent runs; a generator step allocates its result)', async () => {
    const setup = `
      const { KeyedTable } = await import(${dist('k8s/keyed-table.js')});
      const t = new KeyedTable((v) => v.key);
      for (let i = 0; i < 1000; i++) t.add({ key: 'ns/svc-' + i, n: i });
      let sum = 0;
      const add = (v) => { sum += v.n; };`;
    const perPass = await allocatedPerCall(setup, 't.forEach(add);', 300);
    const generator = await allocatedPerCall(setup, 'for (const v of t.values()) sum += v.n;', 300);
    expect(perPass / 1000).toBeLessThan(1); // bytes per value
    expect(generator / 1000).toBeGreaterThan(8); // the measure sees what a generator's step allocates
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
  it('hashes as the kernel\'s hsiphash (HalfSipHash-1-3): its test vectors', () => {
    // lib/tests/siphash_kunit.c, the 32-bit build: vector n is the hash of the bytes 0..n-1
    // under the key 00 01 .. 07. A string's bytes are its UTF-16LE code units, so the vectors
    // of even lengths are the strings of code units (2j) | (2j+1) << 8.
    const vectors = [
      0x5814c896, 0xe7e864ca, 0xbc4b0e30, 0x01539939, 0x7e059ea6, 0x88e3d89b, 0xa0080b65, 0x9d38d9d6,
      0x577999b1, 0xc839caed, 0xe4fa32cf, 0x959246ee, 0x6b28096c, 0x66dd9cd6, 0x16658a7c, 0xd0257b04,
      0x8b31d501, 0x2b1cd04b, 0x06712339, 0x522aca67, 0x911bb605, 0x90a65f0e, 0xf826ef7b, 0x62512deb,
      0x57150ad7, 0x5d473507, 0x1ec47442, 0xab64afd3, 0x0a4100d0, 0x6d2ce652, 0x2331b6a3, 0x08d8791a,
      0xbc6dda8d, 0xe0f6c934, 0xb0652033, 0x9b9851cc, 0x7c46fb7f, 0x732ba8cb, 0xf142997a, 0xfcc9aa1b,
      0x05327eb2, 0xe110131c, 0xf9e5e7c0, 0xa7d708a6, 0x11795ab1, 0x65671619, 0x9f5fff91, 0xd89c5267,
      0x007783eb, 0x95766243, 0xab639262, 0x9c7e1390, 0xc368dda6, 0x38ddc455, 0xfa13d379, 0x979ea4e8,
      0x53ecd77e, 0x2ee80657, 0x33dbb66a, 0xae3f0577, 0x88b4c4cc, 0x3e7f480b, 0x74c1ebf8, 0x87178304,
    ];
    for (let n = 0; n < 64; n += 2) {
      let s = '';
      for (let j = 0; j < n; j += 2) s += String.fromCharCode(j | ((j + 1) << 8));
      expect(hsiphash(s, 0x03020100, 0x07060504), `${n} bytes`).toBe(vectors[n]);
    }
  });

  it('keys its hash per process: names made to collide under a fixed hash spread out', () => {
    // The table's hash before this one: FNV-1a then murmur3's final mix, the same for everyone.
    const fixed = (s: string): number => {
      let h = 0x811c9dc5;
      for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
      h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b); h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
      return (h ^ (h >>> 16)) >>> 0;
    };
    // What a tenant could do offline: 2,000 Service names whose fixed hash shares its low 10
    // bits, so every one of them would probe past all the others in a table of 1,024+ slots.
    const names: string[] = [];
    for (let i = 0; names.length < 2_000; i++) if ((fixed(`evil/s${i}`) & 1023) === 0) names.push(`evil/s${i}`);
    const buckets = new Set(names.map((s) => hashKey(s) & 1023));
    // A random hash puts 2,000 names in ~885 of 1,024 buckets; a fixed one would put them in 1.
    expect(buckets.size).toBeGreaterThan(700);
    // The key is this process's: the same name hashes the same here, differently elsewhere.
    expect(hashKey(names[0]!)).toBe(hashKey(names[0]!));
    const other = spawnSync(process.execPath, ['--input-type=module', '-e',
      `import { hashKey } from ${JSON.stringify(pathToFileURL(join(process.cwd(), 'dist', 'k8s', 'keyed-table.js')).href)};` +
      `process.stdout.write(JSON.stringify(${JSON.stringify(names.slice(0, 8))}.map(hashKey)))`], { encoding: 'utf8' });
    expect(other.status, other.stderr).toBe(0);
    expect(JSON.parse(other.stdout)).not.toEqual(names.slice(0, 8).map(hashKey));
    // And a table of them finds every one.
    const t = new KeyedTable<string>((s) => s, names);
    expect(names.every((s) => t.get(s) === s)).toBe(true);
  });
});
