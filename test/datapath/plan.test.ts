/** Reconcile planners (agent/datapath/plan.ts): what to write and remove, without a kernel. */
import { describe, expect, it } from 'vitest';
import { planMap } from '../../agent/datapath/plan.js';
import { planIdentities, planPolicies, type PolicyState } from '../../agent/datapath/policy.js';
import { PolicyCompiler } from '../../agent/datapath/policy-compile.js';
import { decodePolKey } from '../../agent/datapath/policy-codec.js';
import { IdentityAllocator } from '../../model/identity.js';
import type { AuthorizationPolicy } from '../../k8s/policy-types.js';
import { parsePolicy, pod } from '../policy/helpers.js';
import { encodeLocalPods, SM_POD_OFF } from '../../agent/datapath/sockmap.js';

describe('reconcile planning', () => {
  it('writes new and changed entries, removes the unwanted ones, leaves equal ones alone', () => {
    const have = new Map([['a', 1], ['b', 2], ['c', 3]]);
    const want = new Map([['a', 1], ['b', 5], ['d', 4]]);
    expect(planMap(have, want)).toEqual({
      upserts: [{ key: 'b', value: 5, added: false }, { key: 'd', value: 4, added: true }],
      removals: ['c'],
    });
    expect(planMap(want, want)).toEqual({ upserts: [], removals: [] });
    expect(planMap(new Map(), want).upserts.every((u) => u.added)).toBe(true);
  });

  it('plans kw_ident from the model: encoded keys and values, only what differs from what was applied', () => {
    const first = planIdentities(new Map(), new Map([['10.0.0.1', { id: 7, epId: 1 }], ['fd00::1', { id: 8, epId: 0 }]]));
    expect(first.upserts.map((u) => [u.key, u.value])).toEqual([
      ['00000000000000000000ffff0a000001', '0700000001000000'],
      ['fd000000000000000000000000000001', '0800000000000000'],
    ]);
    const applied = new Map(first.upserts.map((u) => [u.key, u.value]));
    const next = planIdentities(applied, new Map([['10.0.0.1', { id: 9, epId: 1 }]]));
    expect(next.upserts).toEqual([{ key: '00000000000000000000ffff0a000001', value: '0900000001000000', added: false }]);
    expect(next.removals).toEqual(['fd000000000000000000000000000001']);
  });

  it('plans kw_sm_pods: an address listed twice is off when either says so', () => {
    const want = new Map([...encodeLocalPods([{ ip: '10.244.0.2' }, { ip: '10.244.0.2', sockmapOff: true }, { ip: '10.244.0.3' }])].map(([k, v]) => [k, v.flags]));
    const plan = planMap(new Map([['00000000000000000000ffff0af40003', SM_POD_OFF]]), want);
    expect(plan).toEqual({
      upserts: [
        { key: '00000000000000000000ffff0af40002', value: SM_POD_OFF, added: true },
        { key: '00000000000000000000ffff0af40003', value: 0, added: false },
      ],
      removals: [],
    });
  });

  it('plans a policy compilation: new tables under fresh ids, the destination switch, CIDR classes, old tables out', () => {
    const policy = (ns: string, name: string, spec: unknown): AuthorizationPolicy => {
      const r = parsePolicy({ object: { apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec } as never, file: `/m/${name}.yaml`, index: 0 });
      if (!r.policy) throw new Error(r.problems.map((p) => p.message).join('; '));
      return r.policy;
    };
    const ids = new IdentityAllocator().assign([
      pod('shop', 'web', { labels: { app: 'web' }, sa: 'web', ips: ['10.0.0.10'] }),
      pod('front', 'client', { sa: 'client', ips: ['10.0.1.10'] }),
    ]);
    const web = ids.byPod.get('shop/web')!.id;
    const compiler = new PolicyCompiler();
    const allow = (ports: string[]) => compiler.compile({ identities: ids.identities, policies: [
      policy('shop', 'allow', { selector: { matchLabels: { app: 'web' } }, rules: [
        { from: [{ source: { serviceAccounts: ['front/client'] } }], to: [{ operation: { ports } }] },
        { from: [{ source: { ipBlocks: ['192.0.2.0/24'] } }] },
      ] }),
    ] });
    const empty: PolicyState = { tableIds: new Map(), tableKeys: new Map(), pdst: new Map(), cidr: new Map(), nextTable: 5 };
    const first = allow(['8080']);
    const p1 = planPolicies(empty, first);
    expect(p1.tables).toHaveLength(1);
    expect(p1.tables[0]!.tbl).toBe(5);
    expect(p1.tables[0]!.keys.every((k) => decodePolKey(k).tbl === 5)).toBe(true);
    expect(p1.tables[0]!.keys.length).toBe(p1.tables[0]!.values.length);
    expect(p1.pdst.upserts.map((u) => u.key)).toEqual([web]);
    expect(Buffer.from(p1.pdst.upserts[0]!.value, 'hex').readUInt32LE(0)).toBe(5);
    expect(p1.cidr.upserts).toHaveLength(1);
    expect([p1.pdst.removals, p1.cidr.removals, p1.forget, p1.tablesOut]).toEqual([[], [], [], []]);

    // As applied, then the same compilation again: nothing to do.
    const t = p1.tables[0]!;
    const applied: PolicyState = {
      tableIds: new Map([[t.key, t.tbl]]), tableKeys: new Map([[t.tbl, t.keys]]),
      pdst: new Map(p1.pdst.upserts.map((u) => [u.key, u.value])), cidr: new Map(p1.cidr.upserts.map((u) => [u.key, u.value])), nextTable: 6,
    };
    const same = planPolicies(applied, first);
    expect([same.tables, same.pdst.upserts, same.pdst.removals, same.cidr.upserts, same.cidr.removals, same.tablesOut]).toEqual([[], [], [], [], [], []]);

    // Another port: a new table 6, the destination switched to it, table 5 out; the CIDR stays.
    const p2 = planPolicies(applied, allow(['9090']));
    expect(p2.tables.map((x) => x.tbl)).toEqual([6]);
    expect(Buffer.from(p2.pdst.upserts[0]!.value, 'hex').readUInt32LE(0)).toBe(6);
    expect(p2.forget).toEqual([t.key]);
    expect(p2.tablesOut).toEqual([5]);
    expect([p2.cidr.upserts, p2.cidr.removals]).toEqual([[], []]);

    // No policy: the destination and the CIDR leave, the table goes.
    const none = planPolicies(applied, compiler.compile({ identities: ids.identities, policies: [] }));
    expect(none.pdst.removals).toEqual([web]);
    expect(none.cidr.removals).toHaveLength(1);
    expect(none.tablesOut).toEqual([5]);
  });
});
