/**
 * Maglev lookup tables (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
 * Load Balancer", NSDI 2016, section 3.4). The kernel indexes the table with a hash of
 * the client (bpf/include/maglev.h); this module fills it.
 *
 * Each backend gets a permutation of the M table positions from two hashes of its name
 * (offset, skip); backends take turns claiming their next free preferred position until
 * the table is full. Every backend owns floor(M/N) or ceil(M/N) entries, and removing
 * one backend moves about 1/N of the entries. The result depends only on the set of
 * names, not on their order or on backend ids, so a restarted agent computes the same
 * table.
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../../common/errors.js';

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/** offset and skip of a backend name (two independent 32-bit hashes). */
function offsetSkip(name: string, m: number): { offset: number; skip: number } {
  const h = createHash('sha256').update(name).digest();
  return { offset: h.readUInt32LE(0) % m, skip: (h.readUInt32LE(4) % (m - 1)) + 1 };
}

/**
 * The lookup table for backends named `names` (unique), of prime size `m`: entry i is
 * the index in `names` of the backend owning position i.
 */
export function maglevTable(names: readonly string[], m: number): Uint32Array {
  if (!isPrime(m)) throw new InvalidArgumentError('maglev table size', 'a prime number', m);
  const n = names.length;
  if (n === 0) throw new InvalidArgumentError('maglev backends', 'at least one backend', n);
  if (n > m) throw new InvalidArgumentError('maglev backends', `at most the table size ${m}`, n);
  // Fill in name order so the table does not depend on the order we were given.
  const order = names.map((name, i) => ({ name, i })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (let k = 1; k < n; k++) {
    if (order[k]!.name === order[k - 1]!.name) throw new InvalidArgumentError(`maglev backends[${order[k]!.i}]`, 'a unique name', order[k]!.name);
  }
  const offset = new Uint32Array(n);
  const skip = new Uint32Array(n);
  for (let k = 0; k < n; k++) {
    const os = offsetSkip(order[k]!.name, m);
    offset[k] = os.offset;
    skip[k] = os.skip;
  }
  const next = new Uint32Array(n);
  const UNSET = 0xffffffff;
  const table = new Uint32Array(m).fill(UNSET);
  let filled = 0;
  for (;;) {
    for (let k = 0; k < n; k++) {
      let c = (offset[k]! + next[k]! * skip[k]!) % m;
      while (table[c] !== UNSET) {
        next[k]!++;
        c = (offset[k]! + next[k]! * skip[k]!) % m;
      }
      table[c] = order[k]!.i;
      next[k]!++;
      if (++filled === m) return table;
    }
  }
}
