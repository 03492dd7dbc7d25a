/** Reconcile planners (agent/datapath/plan.ts): what to write and remove, without a kernel. */
import { describe, expect, it } from 'vitest';
import { planMap } from '../../agent/datapath/plan.js';
import { planIdentities } from '../../agent/datapath/policy.js';
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
});
