/**
 * Pods handled incrementally: the identity allocator and the policy compiler given only
 * what changed must end where the whole-set computation ends, and touch only what the
 * change affects.
 */
import { describe, expect, it } from 'vitest';
import { PolicyCompiler, type CompileResult } from '../../agent/datapath/policy-compile.js';
import { IdentityAllocator, type IdentityAssignment } from '../../model/identity.js';
import { PodSubset } from '../../model/workload.js';
import type { AuthorizationPolicy, Identity } from '../../k8s/policy-types.js';
import type { Pod } from '../../k8s/types.js';
import { parsePolicy, pod } from './helpers.js';

function policy(ns: string, name: string, spec: unknown): AuthorizationPolicy {
  const r = parsePolicy({ object: { apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec } as never, file: `/m/${name}.yaml`, index: 0 });
  if (!r.policy) throw new Error(r.problems.map((p) => p.message).join('; '));
  return r.policy;
}

/** A seeded generator (the same cases every run). */
function random(seed: number): (n: number) => number {
  let x = seed;
  return (n) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return (x >>> 8) % n;
  };
}

/** An assignment in terms that do not depend on which ids were handed out. */
function shape(a: IdentityAssignment): unknown {
  const byPod = [...a.byPod].map(([k, i]) => `${k}=${i.key}`).sort();
  const addresses = [...a.addresses.values()].map((v) => `${v.ip}=${v.pod}/${a.identities.get(v.id)!.key}`).sort();
  const identities = [...a.identities.values()].map((i) => i.key).sort();
  const conflicts = a.conflicts.map((c) => `${c.ip}:${[...c.pods].sort().join(',')}>${c.winner}`).sort();
  return { byPod, addresses, identities, conflicts };
}

/** A compilation in terms of identity keys, tables by content. */
function compiled(r: CompileResult, ids: ReadonlyMap<number, Identity>): unknown {
  const key = (id: number): string => ids.get(id)?.key ?? String(id);
  return {
    destinations: [...r.destinations].map(([id, d]) => `${key(id)}=${d.flags}/${d.table.key}`).sort(),
    tables: [...r.tables.keys()].sort(),
    workloads: [...r.workloads.values()].map((w) => JSON.stringify({ ...w, id: key(w.id) })).sort(),
    policies: [...r.policies.values()].map((s) => JSON.stringify({ ...s, selects: s.selects.map(key) })).sort(),
    problems: r.problems.map((p) => `${p.code}:${p.object ?? ''}:${p.message}`).sort(),
    entryCount: r.entryCount,
    cidrs: r.cidrs.map((c) => `${c.cidr.text}=${c.cls}`),
  };
}

describe('pods handled incrementally', () => {
  it('the identity allocator given only the changed pods ends where assigning every pod ends, and keeps ids', () => {
    const rnd = random(7);
    const pods = new Map<string, Pod>();
    const inc = new IdentityAllocator();
    const idOf = new Map<string, number>(); // identity key -> id, while it lives
    for (let step = 0; step < 300; step++) {
      const changed = new Set<string>();
      for (let c = 0, n = 1 + rnd(6); c < n; c++) {
        const ns = ['a', 'b', 'c'][rnd(3)]!;
        const name = `p${rnd(40)}`;
        const key = `${ns}/${name}`;
        changed.add(key);
        if (rnd(4) === 0) { pods.delete(key); continue; }
        // Few addresses, so that two pods claim one now and then (a finished one and a running one).
        pods.set(key, pod(ns, name, { labels: { app: `x${rnd(4)}`, 'pod-template-hash': `h${rnd(9)}` }, sa: `sa${rnd(2)}`,
          ips: [`10.1.0.${rnd(30)}`], phase: ['Running', 'Pending', 'Succeeded', 'Failed'][rnd(4)]! }));
      }
      const delta = inc.update(pods, changed);
      expect(delta.pods.size).toBeLessThanOrEqual(changed.size);
      const cur = inc.current;
      expect(shape(cur)).toEqual(shape(new IdentityAllocator().assign(pods.values())));
      // An identity that lives on keeps its id; released ones are reported, created ones too.
      for (const r of delta.removed) { expect(idOf.get(r.key)).toBe(r.id); idOf.delete(r.key); }
      for (const a of delta.added) { expect(idOf.has(a.key)).toBe(false); idOf.set(a.key, a.id); }
      expect(new Map([...cur.identities.values()].map((i) => [i.key, i.id]))).toEqual(idOf);
    }
  });

  it('a pod that did not change (same object) costs nothing; a new pod of a known identity creates none', () => {
    const a = new IdentityAllocator();
    const p1 = pod('shop', 'web-1', { labels: { app: 'web' }, ips: ['10.2.0.1'] });
    const all = new Map([[p1.key, p1]]);
    expect(a.update(all, [p1.key]).added).toHaveLength(1);
    expect(a.update(all, [p1.key]).pods.size).toBe(0);
    const p2 = pod('shop', 'web-2', { labels: { app: 'web', 'pod-template-hash': 'z' }, ips: ['10.2.0.2'] });
    all.set(p2.key, p2);
    const d = a.update(all, [p2.key]);
    expect(d.added).toHaveLength(0);
    expect([...d.addresses]).toEqual(['10.2.0.2']);
  });

  it('the compiler given the identities created and released ends where compiling from scratch ends', () => {
    const rnd = random(11);
    const policies = [
      policy('a', 'deny-all', {}),
      policy('a', 'allow-b', { selector: { matchLabels: { app: 'x1' } }, rules: [{ from: [{ source: { namespaces: ['b'] } }], to: [{ operation: { ports: ['80'] } }] }] }),
      policy('a', 'allow-sa', { selector: { matchLabels: { app: 'x2' } }, rules: [{ from: [{ source: { serviceAccounts: ['c/sa1'] } }, { source: { ipBlocks: ['192.0.2.0/24'] } }] }] }),
      policy('b', 'deny-l7', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }),
      policy('b', 'allow-l7', { selector: { matchLabels: { app: 'x0' } }, rules: [{ from: [{ source: { namespaces: ['c*'] } }], to: [{ operation: { methods: ['GET'] } }] }] }),
      policy('kernway-system', 'root-deny', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['evil'] } }] }] }),
    ];
    const waypoints = new Map([['b', [900_001]]]);
    const pods = new Map<string, Pod>();
    const alloc = new IdentityAllocator();
    const inc = new PolicyCompiler();
    inc.compile({ identities: alloc.current.identities, policies, waypoints });
    let incremental = 0;
    for (let step = 0; step < 200; step++) {
      const changed = new Set<string>();
      for (let c = 0, n = 1 + rnd(4); c < n; c++) {
        const ns = ['a', 'b', 'c', 'c2', 'evil'][rnd(5)]!;
        const key = `${ns}/p${rnd(25)}`;
        changed.add(key);
        if (rnd(3) === 0) pods.delete(key);
        else pods.set(key, pod(ns, key.split('/')[1]!, { labels: { app: `x${rnd(4)}` }, sa: `sa${rnd(2)}` }));
      }
      const delta = alloc.update(pods, changed);
      const ids = alloc.current.identities;
      const before = inc.compile({ identities: ids, policies, waypoints }, delta);
      if (delta.added.length + delta.removed.length > 0) incremental++;
      const want = new PolicyCompiler().compile({ identities: ids, policies, waypoints });
      expect(compiled(before, ids)).toEqual(compiled(want, ids));
    }
    expect(incremental).toBeGreaterThan(50);
  });

  it('a new identity no policy source names recompiles only its own table; one a source names recompiles the destinations of that policy', () => {
    const web = { id: 1001, namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' }, key: 'shop/web' };
    const db = { id: 1002, namespace: 'shop', serviceAccount: 'db', labels: { app: 'db' }, key: 'shop/db' };
    const policies = [policy('shop', 'allow-front', { rules: [{ from: [{ source: { namespaces: ['front'] } }] }] })];
    const ids = new Map<number, Identity>([[web.id, web], [db.id, db]]);
    const c = new PolicyCompiler();
    const r0 = c.compile({ identities: ids, policies });
    const webTable = r0.destinations.get(web.id)!.table;
    expect(webTable.entries).toHaveLength(0); // nobody in front yet: allow-listed, nothing admitted

    // A third identity in shop: the policy's sources do not name it, the existing tables stay the same objects.
    const api = { id: 1003, namespace: 'shop', serviceAccount: 'api', labels: { app: 'api' }, key: 'shop/api' };
    ids.set(api.id, api);
    const r1 = c.compile({ identities: ids, policies }, { added: [api], removed: [] });
    expect(r1.destinations.get(web.id)!.table).toBe(webTable);
    expect(r1.destinations.get(api.id)!.table.key).toBe(webTable.key);

    // An identity in front: the policy's source now names it, every destination it selects admits it.
    const client = { id: 1004, namespace: 'front', serviceAccount: 'client', labels: {}, key: 'front/client' };
    ids.set(client.id, client);
    const r2 = c.compile({ identities: ids, policies }, { added: [client], removed: [] });
    for (const d of [web, db, api]) expect(r2.destinations.get(d.id)!.table.entries.map((e) => e.src)).toEqual([client.id]);
    expect(r2.policies.get('shop/allow-front')!.selects).toEqual([1001, 1002, 1003]);
    expect(r2.tables.size).toBe(1);

    // Released again: back to the empty table; nothing changed at all: the same result.
    ids.delete(client.id);
    const r3 = c.compile({ identities: ids, policies }, { added: [], removed: [client] });
    expect(r3.destinations.get(web.id)!.table.entries).toHaveLength(0);
    expect(c.compile({ identities: ids, policies }, { added: [], removed: [] })).toBe(r3);
  });

  it('a pod subset follows the change sets and says when it moved', () => {
    const local = new PodSubset((p) => p.nodeName === 'node-a');
    const a = pod('x', 'a', { node: 'node-a' });
    const b = pod('x', 'b', { node: 'node-b' });
    const all = new Map([[a.key, a], [b.key, b]]);
    expect(local.update(all, ['ignored-first-call-looks-at-all'])).toBe(true);
    expect([...local.pods.keys()]).toEqual(['x/a']);
    const b2 = pod('x', 'b', { node: 'node-b', ips: ['10.3.0.1'] });
    all.set(b2.key, b2);
    expect(local.update(all, [b2.key])).toBe(false);
    const a2 = pod('x', 'a', { node: 'node-b' });
    all.set(a2.key, a2);
    expect(local.update(all, [a2.key])).toBe(true);
    expect(local.pods.size).toBe(0);
  });
});
