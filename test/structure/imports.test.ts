/**
 * The layout's rules, read from the imports of every source file (static, dynamic and
 * type-only alike): data flows sources → model → {datapath → kernel, feed → waypoint}
 * (docs/DESIGN.md, "Parts and their rooms").
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../common/version.js';

const ROOT = projectRoot();
const FOLDERS = ['k8s', 'model', 'sources', 'agent', 'waypoint', 'native', 'lab', 'cli', 'common', 'bench'];

function files(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((n) => {
    const p = posix.join(dir, n);
    if (statSync(join(ROOT, p)).isDirectory()) return files(p);
    return p.endsWith('.ts') && !p.endsWith('.test.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

/** file → the project files it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const f of FOLDERS.flatMap(files)) {
    const text = readFileSync(join(ROOT, f), 'utf8');
    const deps = new Set<string>();
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g)) {
      deps.add(posix.normalize(posix.join(posix.dirname(f), m[1]!)).replace(/\.js$/, '.ts'));
    }
    graph.set(f, [...deps]);
  }
  return graph;
}

/** Strongly connected components of more than one file (Tarjan), or a file importing itself. */
export function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next); low.set(v, next); next++;
    stack.push(v); onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do { w = stack.pop()!; onStack.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

/** What each part may import, besides itself (prefixes of project paths). */
const ALLOWED: Record<string, readonly string[]> = {
  'k8s/': ['common/'],
  'model/': ['k8s/', 'common/'],
  'sources/': ['k8s/', 'common/'],
  'native/': ['common/'],
  'common/': [],
};

/** Parts that must never import each other, in either direction. */
const APART: ReadonlyArray<[string, string]> = [['agent/', 'waypoint/']];

/** Only these may import the addon (native/). */
const ADDON_USERS = ['native/', 'agent/datapath/'];

function violations(graph: Map<string, string[]>): string[] {
  const bad: string[] = [];
  for (const [f, deps] of graph) {
    for (const d of deps) {
      const own = Object.keys(ALLOWED).find((p) => f.startsWith(p));
      if (own && !d.startsWith(own) && !ALLOWED[own]!.some((p) => d.startsWith(p))) bad.push(`${f} imports ${d}: ${own} may import only ${[own, ...ALLOWED[own]!].join(', ')}`);
      for (const [a, b] of APART) {
        if ((f.startsWith(a) && d.startsWith(b)) || (f.startsWith(b) && d.startsWith(a))) bad.push(`${f} imports ${d}: ${a} and ${b} never import each other`);
      }
      if (d.startsWith('native/') && !ADDON_USERS.some((p) => f.startsWith(p))) bad.push(`${f} imports ${d}: only ${ADDON_USERS.join(', ')} import the addon`);
    }
  }
  return bad;
}

describe('the import graph', () => {
  const graph = importGraph();

  it('reads every part of the project', () => {
    for (const folder of FOLDERS) expect([...graph.keys()].some((f) => f.startsWith(`${folder}/`)), folder).toBe(true);
    // The reader sees static, type-only and dynamic imports.
    expect(graph.get('cli/main.ts')).toContain('cli/agent.ts');
    expect(graph.get('agent/datapath/sock-lb.ts')?.some((d) => d.startsWith('native/'))).toBe(true);
  });

  it('has no cycle', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('finds a cycle when there is one', () => {
    const g = new Map([['a.ts', ['b.ts']], ['b.ts', ['c.ts']], ['c.ts', ['a.ts']], ['d.ts', ['a.ts']]]);
    expect(cycles(g)).toEqual([['a.ts', 'b.ts', 'c.ts']]);
  });

  it('flows one way: vocabulary ← model ← {datapath, waypoint}; agent and waypoint apart; only the datapath holds the addon', () => {
    expect(violations(graph)).toEqual([]);
  });

  it('reports a forbidden direction', () => {
    const g = new Map([
      ['waypoint/a.ts', ['agent/model.ts']],
      ['model/x.ts', ['sources/y.ts']],
      ['cli/p.ts', ['native/probe.ts']],
      ['k8s/t.ts', ['common/errors.ts']],
    ]);
    const v = violations(g);
    expect(v).toHaveLength(3);
    expect(v.join('\n')).toMatch(/waypoint\/a\.ts imports agent\/model\.ts/);
    expect(v.join('\n')).toMatch(/model\/x\.ts imports sources\/y\.ts/);
    expect(v.join('\n')).toMatch(/only native\/, agent\/datapath\/ import the addon/);
  });
});
