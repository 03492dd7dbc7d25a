/**
 * A Map of values that hold their own key, in one array of slots (open addressing, linear
 * probing): no key kept beside the value, no entry record, no hash chain.
 *
 * V8's Map keeps 3.5 words per slot (key, value, chain, and half a bucket) and doubles its
 * slots when full: 10,000 entries sit in 16,384 slots, 448 KiB. This table keeps one word per
 * slot (the value; its key is read from it by `keyOf`): 16,384 slots for 10,000 entries are
 * 128 KiB. It is used where a big map's values already carry their key (the Kubernetes API
 * source's objects by 'namespace/name', the model's Services...).
 *
 * - Keys are strings hashed here, since V8's own string hash is not reachable from
 *   JavaScript; a lookup reads `keyOf` of the values it probes. The hash is keyed with a
 *   random key per process (HalfSipHash-1-3, as the Linux kernel's hsiphash): keys are names
 *   users choose (Services, EndpointSlices), and with a hash anyone can compute, names made
 *   to share their low bits would turn every probe into a walk over all of them (HashDoS).
 * - At most 3/4 of the slots are used (values and deletion marks). When an add() finds
 *   them full, the values are laid out again in as many slots as they need (after many
 *   deletions: fewer). `reserve(n)` makes room for n values at once (a list knows its size).
 * - A deleted value's slot is marked, not emptied, so deleting while iterating visits every
 *   other value once, as with a Map. Values added while iterating may be missed (a Map
 *   would visit them): iterate over a copy to add.
 * - Iteration order is the slots' order, not the order of insertion.
 */

import { randomBytes } from 'node:crypto';

/** A deleted slot: probing goes on past it. */
const GONE: unique symbol = Symbol('gone');
type Slot<V> = V | typeof GONE | undefined;

const MIN_SLOTS = 8;

/** This process's hash key: two random 32-bit words. */
const SEED = randomBytes(8);
const K0 = SEED.readUInt32LE(0);
const K1 = SEED.readUInt32LE(4);

/**
 * The table's hash of a key: HalfSipHash-1-3 under this process's random key. The same string
 * gives the same hash in one process and an unpredictable one in another. Unsigned 32 bits.
 */
export function hashKey(s: string): number {
  return hsiphash(s, K0, K1);
}

/**
 * HalfSipHash-1-3 (the Linux kernel's 32-bit hsiphash) of the string's UTF-16LE bytes (two
 * code units to a 32-bit word) under the key (k0, k1).
 */
export function hsiphash(s: string, k0: number, k1: number): number {
  const n = s.length;
  let v0 = k0 | 0;
  let v1 = k1 | 0;
  let v2 = 0x6c796765 ^ k0;
  let v3 = 0x74656462 ^ k1;
  let b = (n * 2) << 24;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const m = s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16);
    v3 ^= m;
    // one SipRound
    v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
    v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
    v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
    v0 ^= m;
  }
  if (i < n) b |= s.charCodeAt(i);
  v3 ^= b;
  for (let r = 0; r < 4; r++) {
    if (r === 1) { v0 ^= b; v2 ^= 0xff; }
    v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
    v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
    v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  }
  return (v1 ^ v3) >>> 0;
}

/** The power of two of slots that holds `n` values at most 3/4 full. */
function slotsFor(n: number): number {
  let c = MIN_SLOTS;
  while (c * 3 < n * 4) c *= 2;
  return c;
}

export class KeyedTable<V> implements Map<string, V> {
  private slots: Array<Slot<V>> = [];
  private count = 0;
  /** Slots holding GONE. */
  private gone = 0;

  /** `keyOf(v)` is v's key: the same string for as long as v is in the table. */
  constructor(private readonly keyOf: (v: V) => string, values?: Iterable<V>) {
    if (values) for (const v of values) this.add(v);
  }

  get size(): number { return this.count; }

  get [Symbol.toStringTag](): string { return 'KeyedTable'; }

  /** Room for `n` values in all without growing (a table never holds fewer slots than its values need). */
  reserve(n: number): void {
    const want = slotsFor(Math.max(n, this.count));
    if (want > this.slots.length) this.rehash(want);
  }

  /** The slot of `key`, or -1. */
  private find(key: string): number {
    const slots = this.slots;
    if (this.count === 0) return -1;
    const mask = slots.length - 1;
    for (let i = hashKey(key) & mask; ; i = (i + 1) & mask) {
      const v = slots[i];
      if (v === undefined) return -1;
      if (v !== GONE && this.keyOf(v) === key) return i;
    }
  }

  get(key: string): V | undefined {
    const i = this.find(key);
    return i < 0 ? undefined : this.slots[i] as V;
  }

  has(key: string): boolean {
    return this.find(key) >= 0;
  }

  /** Puts `v` in place of the value of its key (if any). */
  add(v: V): this {
    const key = this.keyOf(v);
    const i = this.find(key);
    if (i >= 0) { this.slots[i] = v; return this; }
    // Full (values and deletion marks): the values alone in as many slots as they need, which
    // is fewer after many deletions.
    if ((this.count + this.gone + 1) * 4 > this.slots.length * 3) this.rehash(slotsFor(this.count + 1));
    const slots = this.slots;
    const mask = slots.length - 1;
    let j = hashKey(key) & mask;
    while (slots[j] !== undefined && slots[j] !== GONE) j = (j + 1) & mask;
    if (slots[j] === GONE) this.gone--;
    slots[j] = v;
    this.count++;
    return this;
  }

  /** As a Map's; `key` must be `v`'s own key. */
  set(key: string, v: V): this {
    if (this.keyOf(v) !== key) throw new Error(`KeyedTable: value keyed ${JSON.stringify(this.keyOf(v))} set under ${JSON.stringify(key)}`);
    return this.add(v);
  }

  delete(key: string): boolean {
    const i = this.find(key);
    if (i < 0) return false;
    this.slots[i] = GONE;
    this.count--;
    this.gone++;
    if (this.count === 0) this.clear(); // the slots left are all GONE: an iteration under way ends as it would
    return true;
  }

  clear(): void {
    this.slots = [];
    this.count = 0;
    this.gone = 0;
  }

  private rehash(n: number): void {
    const old = this.slots;
    // A plain array of exactly n slots (Array(n) then fill: one backing store of n words).
    const slots = new Array<Slot<V>>(n).fill(undefined);
    const mask = n - 1;
    for (const v of old) {
      if (v === undefined || v === GONE) continue;
      let j = hashKey(this.keyOf(v)) & mask;
      while (slots[j] !== undefined) j = (j + 1) & mask;
      slots[j] = v;
    }
    this.slots = slots;
    this.gone = 0;
  }

  *values(): MapIterator<V> {
    const slots = this.slots;
    for (let i = 0; i < slots.length; i++) {
      const v = slots[i];
      if (v !== undefined && v !== GONE) yield v;
    }
  }

  *keys(): MapIterator<string> {
    for (const v of this.values()) yield this.keyOf(v);
  }

  *entries(): MapIterator<[string, V]> {
    for (const v of this.values()) yield [this.keyOf(v), v];
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }

  /**
   * As a Map's, over the slots with an index: no iterator result per value (a generator's step
   * allocates one where TurboFan does not run, as in the agent). Changes made meanwhile: as
   * while iterating values() (the class's notes).
   */
  forEach(cb: (value: V, key: string, map: Map<string, V>) => void, thisArg?: unknown): void {
    const slots = this.slots;
    for (let i = 0; i < slots.length; i++) {
      const v = slots[i];
      if (v !== undefined && v !== GONE) cb.call(thisArg, v, this.keyOf(v), this);
    }
  }
}
