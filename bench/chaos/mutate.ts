/**
 * Seeded mutations of manifest files, for the manifest fault of bench/chaos: random field
 * changes, wrong types, huge values, truncated files and garbage. Same seed, same
 * sequence of mutations.
 */

export type MutationKind = 'field' | 'type' | 'huge' | 'truncate' | 'garbage';
export const MUTATION_KINDS: readonly MutationKind[] = ['field', 'type', 'huge', 'truncate', 'garbage'];
/** The kinds that make a file invalid or are meant to: a file in force gets only these. */
export const BREAKING_KINDS: readonly MutationKind[] = ['type', 'huge', 'truncate', 'garbage'];

export interface Mutation { kind: MutationKind; path: string; text: string }

/** mulberry32: small, fast, seeded. */
export class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0; }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  pick<T>(a: readonly T[]): T { return a[this.int(a.length)]!; }
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Slot = { parent: Json[] | { [k: string]: Json }; key: string | number; path: string };

/** Every place in a JSON document a value sits (objects' keys and arrays' items). */
function slots(doc: Json, path = '', out: Slot[] = []): Slot[] {
  if (Array.isArray(doc)) doc.forEach((v, i) => { out.push({ parent: doc, key: i, path: `${path}[${i}]` }); slots(v, `${path}[${i}]`, out); });
  else if (doc !== null && typeof doc === 'object') for (const [k, v] of Object.entries(doc)) { out.push({ parent: doc, key: k, path: path ? `${path}.${k}` : k }); slots(v, path ? `${path}.${k}` : k, out); }
  return out;
}

function get(s: Slot): Json { return (s.parent as Record<string | number, Json>)[s.key]!; }
function set(s: Slot, v: Json): void { (s.parent as Record<string | number, Json>)[s.key] = v; }

function randomString(r: Rng, n: number): string {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789-./:_ ';
  let s = '';
  for (let i = 0; i < n; i++) s += chars[r.int(chars.length)];
  return s;
}

/** A value of the same type as `v`, changed. */
function changed(r: Rng, v: Json): Json {
  if (typeof v === 'number') return r.pick([v + 1, v - 1, 0, r.int(70000), -v]);
  if (typeof v === 'string') return r.pick([randomString(r, 1 + r.int(12)), '', v.toUpperCase(), `${v}x`]);
  if (typeof v === 'boolean') return !v;
  if (Array.isArray(v)) return r.pick([[], v.slice(1), [...v, ...v]]);
  if (v === null) return r.pick(['', 0]);
  const o = { ...v };
  const keys = Object.keys(o);
  if (keys.length > 0 && r.next() < 0.5) delete o[r.pick(keys)];
  else o[randomString(r, 6)] = randomString(r, 6);
  return o;
}

/** A value of another type than `v`. */
function wrongType(r: Rng, v: Json): Json {
  const options: Json[] = [];
  if (typeof v !== 'number') options.push(r.int(100000) - 50000, 3.5);
  if (typeof v !== 'string') options.push(randomString(r, 8), '');
  if (typeof v !== 'boolean') options.push(true);
  if (!Array.isArray(v)) options.push([randomString(r, 3)], []);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) options.push({ [randomString(r, 4)]: 1 });
  if (v !== null) options.push(null);
  return r.pick(options);
}

function huge(r: Rng): Json {
  switch (r.int(6)) {
    case 0: return 1e308;
    case 1: return Number.MAX_SAFE_INTEGER * 1024;
    case 2: return -2147483649;
    case 3: return 'x'.repeat(1 << 20);
    case 4: return Array.from({ length: 50_000 }, (_, i) => i);
    default: {
      let o: Json = 'deep';
      for (let i = 0; i < 2000; i++) o = { d: o };
      return o;
    }
  }
}

/** One mutation of a JSON manifest's text, of the given kind (or a random one). */
export function mutate(r: Rng, text: string, kinds: readonly MutationKind[] = MUTATION_KINDS): Mutation {
  const kind = r.pick(kinds);
  if (kind === 'truncate') {
    // A non-empty proper prefix: an empty file is a valid empty manifest, not a truncated one.
    const at = 1 + r.int(Math.max(text.length - 2, 1));
    return { kind, path: `(first ${at} of ${text.length} bytes)`, text: text.slice(0, at) };
  }
  if (kind === 'garbage') {
    const b = Buffer.alloc(1 + r.int(4096));
    for (let i = 0; i < b.length; i++) b[i] = r.int(256);
    return { kind, path: `(${b.length} random bytes)`, text: b.toString('latin1') };
  }
  const doc = JSON.parse(text) as Json;
  const all = slots(doc);
  const s = r.pick(all);
  const before = get(s);
  set(s, kind === 'field' ? changed(r, before) : kind === 'type' ? wrongType(r, before) : huge(r));
  return { kind, path: s.path, text: JSON.stringify(doc) };
}
