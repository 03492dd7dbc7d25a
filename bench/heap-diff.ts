/**
 * A V8 heap snapshot (.heapsnapshot, as bench/kube-api --heap-snapshot writes) summarised, or
 * two compared: self size and count by node type and constructor name, and by what retains
 * them (strings, arrays and V8's internal objects grouped under their first retainer's name,
 * which tells "strings kept by the model's Services" from "strings kept by a parse buffer").
 *
 *   node dist/bench/heap-diff.js A.heapsnapshot [B.heapsnapshot] [--top 40] [--retained Name,Name]
 *
 * --retained: the size each named constructor's objects keep alive (what would be freed
 * without them: reachable from the roots, minus reachable when they are cut off), per file.
 *
 * With two files, rows are sorted by B − A (what B holds more of than A).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

interface Row { count: number; bytes: number }

/** A snapshot's arrays and the offsets of the fields used (nodes and edges are flat arrays of N and E numbers each). */
function load(file: string) {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const nf = s.snapshot.meta.node_fields;
  const ef = s.snapshot.meta.edge_fields;
  return {
    s, N: nf.length, E: ef.length, types: s.snapshot.meta.node_types[0], count: s.nodes.length / nf.length,
    iType: nf.indexOf('type'), iName: nf.indexOf('name'), iSize: nf.indexOf('self_size'), iEdges: nf.indexOf('edge_count'),
    eType: ef.indexOf('type'), eTo: ef.indexOf('to_node'), weak: s.snapshot.meta.edge_types[0].indexOf('weak'),
  };
}

/** Self size by 'type name' and by 'type <- retainer' (first retainer by a non-weak edge). */
export function summarise(file: string): { byName: Map<string, Row>; byRetainer: Map<string, Row>; total: number } {
  const { s, N, E, types, count, iType, iName, iSize, iEdges, eType, eTo, weak } = load(file);
  const retainer = new Int32Array(count).fill(-1);
  let e = 0;
  for (let n = 0; n < count; n++) {
    const edges = s.nodes[n * N + iEdges]!;
    for (let k = 0; k < edges; k++, e += E) {
      if (s.edges[e + eType] === weak) continue;
      const to = s.edges[e + eTo]! / N;
      if (retainer[to] === -1 && to !== n) retainer[to] = n;
    }
  }
  const nameOf = (n: number): string => {
    const t = types[s.nodes[n * N + iType]!]!;
    const name = s.strings[s.nodes[n * N + iName]!]!;
    return t === 'string' || t === 'concatenated string' || t === 'sliced string' ? t : `${t} ${name.slice(0, 60)}`;
  };
  const byName = new Map<string, Row>();
  const byRetainer = new Map<string, Row>();
  const add = (m: Map<string, Row>, k: string, b: number): void => {
    const r = m.get(k) ?? { count: 0, bytes: 0 };
    r.count++;
    r.bytes += b;
    m.set(k, r);
  };
  let total = 0;
  for (let n = 0; n < count; n++) {
    const b = s.nodes[n * N + iSize]!;
    total += b;
    const own = nameOf(n);
    add(byName, own, b);
    const t = types[s.nodes[n * N + iType]!]!;
    if (t === 'object' || t === 'closure') continue;
    // Walk up through arrays and internals to the first object or closure that holds them.
    let r = retainer[n]!;
    for (let hops = 0; r >= 0 && hops < 4; hops++) {
      const rt = types[s.nodes[r * N + iType]!]!;
      if (rt === 'object' || rt === 'closure' || rt === 'synthetic') break;
      r = retainer[r]!;
    }
    add(byRetainer, `${own.split(' ')[0]} <- ${r >= 0 ? nameOf(r) : '(none)'}`, b);
  }
  return { byName, byRetainer, total };
}

/** For each name: the bytes reachable from the snapshot's root only through objects of that constructor name. */
export function retained(file: string, names: readonly string[]): Map<string, { objects: number; bytes: number }> {
  const { s, N, E, types, count, iType, iName, iSize, iEdges, eType, eTo, weak } = load(file);
  const first = new Int32Array(count + 1);
  for (let n = 0, e = 0; n < count; n++) { first[n] = e; e += s.nodes[n * N + iEdges]! * E; }
  first[count] = s.edges.length;
  const reach = (cut: (n: number) => boolean): Uint8Array => {
    const seen = new Uint8Array(count);
    const stack = [0];
    seen[0] = 1;
    while (stack.length > 0) {
      const n = stack.pop()!;
      for (let e = first[n]!; e < first[n + 1]!; e += E) {
        if (s.edges[e + eType] === weak) continue;
        const to = s.edges[e + eTo]! / N;
        if (seen[to] || cut(to)) continue;
        seen[to] = 1;
        stack.push(to);
      }
    }
    return seen;
  };
  const all = reach(() => false);
  const out = new Map<string, { objects: number; bytes: number }>();
  for (const name of names) {
    const id = s.strings.indexOf(name);
    const isIt = (n: number): boolean => s.nodes[n * N + iName] === id && types[s.nodes[n * N + iType]!] === 'object';
    const without = reach(isIt);
    let bytes = 0;
    let objects = 0;
    for (let n = 0; n < count; n++) {
      if (all[n] && !without[n]) bytes += s.nodes[n * N + iSize]!;
      if (all[n] && isIt(n)) objects++;
    }
    out.set(name, { objects, bytes });
  }
  return out;
}

function main(): void {
  const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '40' }, retained: { type: 'string' } }, allowPositionals: true });
  if (values.retained) {
    for (const f of positionals) {
      console.log(f);
      for (const [name, r] of retained(f, values.retained.split(','))) console.log(`${(r.bytes / 1048576).toFixed(2).padStart(7)} MiB  ${String(r.objects).padStart(5)} × ${name}`);
    }
    return;
  }
  const top = Number(values.top);
  const [a, b] = positionals.map(summarise);
  if (!a) throw new Error('usage: heap-diff A.heapsnapshot [B.heapsnapshot]');
  const mib = (x: number): string => (x / 1048576).toFixed(2).padStart(7);
  const table = (title: string, pick: (x: ReturnType<typeof summarise>) => Map<string, Row>): void => {
    console.log(`\n${title}`);
    const keys = new Set([...pick(a).keys(), ...(b ? pick(b).keys() : [])]);
    const rows = [...keys].map((k) => {
      const x = pick(a).get(k) ?? { count: 0, bytes: 0 };
      const y = b ? pick(b).get(k) ?? { count: 0, bytes: 0 } : undefined;
      return { k, x, y, d: y ? y.bytes - x.bytes : x.bytes };
    }).sort((p, q) => Math.abs(q.d) - Math.abs(p.d)).slice(0, top);
    for (const r of rows) {
      console.log(b
        ? `${mib(r.x.bytes)} ${mib(r.y!.bytes)} ${mib(r.d)} MiB  ${String(r.x.count).padStart(8)} ${String(r.y!.count).padStart(8)}  ${r.k}`
        : `${mib(r.x.bytes)} MiB ${String(r.x.count).padStart(8)}  ${r.k}`);
    }
  };
  console.log(b ? `total ${mib(a.total)} -> ${mib(b.total)} MiB (columns: A, B, B-A MiB; counts A, B)` : `total ${mib(a.total)} MiB`);
  table('by type and constructor', (x) => x.byName);
  table('by type and first retaining object', (x) => x.byRetainer);
}

main();
