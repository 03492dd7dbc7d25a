/** The load balancer's reconcile planner (agent/datapath/service-plan.ts): what to write and delete, without a kernel. */
import { describe, expect, it } from 'vitest';
import { buildModel } from '../../model/model.js';
import { buildServiceTable, type ServiceEntry, type ServiceTable } from '../../model/service-table.js';
import type { SourcedObject } from '../../k8s/types.js';
import { idCount, idList, Mirror, packIds, planServices, SerialIds, SmallIds, type LiveFrontend, type ServicePlan, type ServiceState } from '../../agent/datapath/service-plan.js';
import { decodeBackend, decodeSlotKey, decodeSvcKey, decodeSvcVal, decodeU32, SVC_F_MAGLEV } from '../../agent/datapath/codec.js';
import { serviceObject, sliceObject } from '../../agent/demo/manifests.js';

interface Svc { name: string; vip: string; backends: string[]; algorithm?: 'maglev'; affinity?: number }
function table(svcs: Svc[]): ServiceTable {
  const srcs: SourcedObject[] = [];
  for (const s of svcs) {
    const objs = [
      serviceObject({ name: s.name, clusterIPs: [s.vip], algorithm: s.algorithm, affinityTimeoutSeconds: s.affinity, ports: [{ port: 80, targetPort: 8080 }] }),
      sliceObject({ name: `${s.name}-1`, service: s.name, ports: [{ port: 8080 }], endpoints: s.backends.map((ip) => ({ ip })) }),
    ];
    objs.forEach((o, index) => srcs.push({ object: o as SourcedObject['object'], file: `${s.name}.yaml`, index }));
  }
  const m = buildModel(srcs);
  expect(m.problems).toEqual([]);
  return buildServiceTable(m, { nodeName: 'n' });
}

/** A planner with fresh ids, and the state it plans from, committed after each plan as the applier would. */
function planner() {
  let state: ServiceState = { live: new Map(), synced: false, counts: { slots: 0, backends: 0, maglev: 0 } };
  const svc = new SmallIds(16);
  const ids = { svc, set: new SerialIds(() => new Set()), backend: new SerialIds(() => new Set()) };
  return (t: ServiceTable, changed?: Iterable<string>): ServicePlan => {
    const plan = planServices(state, t, changed, { ids, maglevM: 7, statsValueSize: 16 });
    for (const id of plan.freedSvcIds) svc.free(id);
    state = { live: plan.next.commit(), synced: true, counts: plan.counts };
    return plan;
  };
}

const rows = (b: { count: number; keyBuf: Buffer; valueBuf: Buffer; keySize: number; valueSize: number }) =>
  Array.from({ length: b.count }, (_, i) => ({
    key: b.keyBuf.subarray(i * b.keySize, (i + 1) * b.keySize),
    value: b.valueBuf.subarray(i * b.valueSize, (i + 1) * b.valueSize),
  }));

describe('service reconcile planning', () => {
  it('plans a new Service whole: backends, a set, zeroed counters and the switch', () => {
    const plan = planner()(table([{ name: 'a', vip: '10.96.0.1', backends: ['10.0.0.1', '10.0.0.2'] }]));
    expect(plan.result).toMatchObject({ created: 1, changed: 0, removed: 0, unchanged: 0, writes: 0, deletes: 0 });
    expect(rows(plan.backendPut).map((r) => [decodeU32(r.key), decodeBackend(r.value)])).toEqual([
      [1, { ip: '10.0.0.1', port: 8080, proto: 6, svcId: 0 }],
      [2, { ip: '10.0.0.2', port: 8080, proto: 6, svcId: 0 }],
    ]);
    expect(rows(plan.slotPut).map((r) => [decodeSlotKey(r.key), decodeU32(r.value)])).toEqual([
      [{ setId: 1, slot: 0 }, 1], [{ setId: 1, slot: 1 }, 2],
    ]);
    expect(rows(plan.statsPut).map((r) => [decodeU32(r.key), r.value.equals(Buffer.alloc(16))])).toEqual([[0, true]]);
    expect(rows(plan.svcPut).map((r) => [decodeSvcKey(r.key), decodeSvcVal(r.value)])).toEqual([
      [{ vip: '10.96.0.1', port: 80, proto: 6 }, { count: 2, setId: 1, svcId: 0, flags: 0, affinityTimeout: 0 }],
    ]);
    expect([plan.svcDel.length, plan.slotDel.count, plan.maglevDel.count, plan.backendDel.count]).toEqual([0, 0, 0, 0]);
    expect(plan.counts).toEqual({ slots: 2, backends: 2, maglev: 0 });
    expect(plan.peak).toEqual({ frontends: 1, slots: 2, backends: 2, maglev: 0 });
  });

  it('plans a changed endpoint as a new set beside the old, the switch, then the old set and backend out', () => {
    const plan = planner();
    const a: Svc = { name: 'a', vip: '10.96.0.1', backends: ['10.0.0.1', '10.0.0.2', '10.0.0.3'] };
    plan(table([a]));
    expect(plan(table([a])).result).toMatchObject({ unchanged: 1, created: 0, changed: 0 });
    const p = plan(table([{ ...a, backends: ['10.0.0.1', '10.0.0.2', '10.0.0.4'] }]));
    expect(p.result).toMatchObject({ changed: 1 });
    expect(rows(p.backendPut).map((r) => [decodeU32(r.key), decodeBackend(r.value).ip])).toEqual([[4, '10.0.0.4']]);
    expect(rows(p.slotPut).map((r) => [decodeSlotKey(r.key), decodeU32(r.value)])).toEqual([
      [{ setId: 2, slot: 0 }, 1], [{ setId: 2, slot: 1 }, 2], [{ setId: 2, slot: 2 }, 4],
    ]);
    expect(rows(p.slotDel).map((r) => decodeSlotKey(r.key))).toEqual([0, 1, 2].map((slot) => ({ setId: 1, slot })));
    expect(rows(p.backendDel).map((r) => decodeU32(r.key))).toEqual([3]);
    expect(p.peak).toMatchObject({ slots: 6, backends: 4 });
    expect(p.counts).toEqual({ slots: 3, backends: 3, maglev: 0 });
  });

  it('plans Maglev tables, an affinity change as the service entry alone, and a removal', () => {
    const plan = planner();
    const a: Svc = { name: 'a', vip: '10.96.0.1', backends: ['10.0.0.1', '10.0.0.2'], algorithm: 'maglev' };
    const first = plan(table([a]));
    expect(first.maglevPut).toHaveLength(1);
    expect(decodeU32(first.maglevPut[0]![0])).toBe(1);
    expect(decodeSvcVal(rows(first.svcPut)[0]!.value).flags & SVC_F_MAGLEV).toBe(SVC_F_MAGLEV);

    const aff = plan(table([{ ...a, affinity: 60 }]));
    expect(aff.result).toMatchObject({ changed: 1 });
    expect([aff.backendPut.count, aff.slotPut.count, aff.maglevPut.length, aff.slotDel.count]).toEqual([0, 0, 0, 0]);
    expect(decodeSvcVal(rows(aff.svcPut)[0]!.value).affinityTimeout).toBe(60);

    const t = table([]);
    const gone = plan(t, ['10.96.0.1:80/TCP']);
    expect(gone.result).toMatchObject({ removed: 1 });
    expect(gone.svcDel.map((k) => decodeSvcKey(k))).toEqual([{ vip: '10.96.0.1', port: 80, proto: 6 }]);
    expect([gone.slotDel.count, gone.maglevDel.count, gone.backendDel.count]).toEqual([2, 1, 2]);
    expect(gone.freedSvcIds).toEqual([0]);
    expect(gone.counts).toEqual({ slots: 0, backends: 0, maglev: 0 });
  });

  it('looks only at the changed keys once synced', () => {
    const plan = planner();
    const a: Svc = { name: 'a', vip: '10.96.0.1', backends: ['10.0.0.1'] };
    const b: Svc = { name: 'b', vip: '10.96.0.2', backends: ['10.0.0.2'] };
    plan(table([a, b]));
    const p = plan(table([a, { ...b, backends: ['10.0.0.3'] }]), ['10.96.0.2:80/TCP']);
    expect(p.result).toMatchObject({ changed: 1, unchanged: 0, created: 0 });
    expect(p.next.size).toBe(2);
  });

  it('refuses a new Service when no service id is free, before anything is written', () => {
    const state: ServiceState = { live: new Map(), synced: false, counts: { slots: 0, backends: 0, maglev: 0 } };
    const ids = { svc: new SmallIds(1), set: new SerialIds(() => new Set()), backend: new SerialIds(() => new Set()) };
    const t = table([{ name: 'a', vip: '10.96.0.1', backends: ['10.0.0.1'] }, { name: 'b', vip: '10.96.0.2', backends: ['10.0.0.2'] }]);
    expect(() => planServices(state, t, undefined, { ids, maglevM: 7, statsValueSize: 16 })).toThrow(/KW_MAP_FULL|no free service id/);
    expect(state.live.size).toBe(0);
  });
});

describe('the mirror\'s packed parts', () => {
  it('backend ids: a run of new ids is its first id, any other list a string; both read back exactly', () => {
    const run = packIds([7, 8, 9], 3);
    expect(run).toBe(7);
    expect(idList({ ids: run, slotCount: 3 })).toEqual([7, 8, 9]);
    // not a run, or fewer ids than slots (a set adopted broken): the list itself
    for (const [ids, slots] of [[[7, 9, 8], 3], [[7, 8], 3], [[0xfffffffe, 1, 0x10000, 0xffff], 4], [[], 0]] as Array<[number[], number]>) {
      const p = packIds(ids, slots);
      expect(typeof p).toBe('string');
      expect(idCount({ ids: p, slotCount: slots })).toBe(ids.length);
      expect(idList({ ids: p, slotCount: slots })).toEqual(ids);
    }
  });

  it('service ids: the lowest free one first, freed ids reused, a clear error when all are taken', () => {
    const ids = new SmallIds(10);
    ids.mark(0); ids.mark(2);
    expect([ids.take(), ids.take(), ids.take()]).toEqual([1, 3, 4]);
    ids.free(2);
    expect(ids.take()).toBe(2);
    for (let i = 0; i < 5; i++) ids.take();
    expect(() => ids.take()).toThrow(/no free service id: all 10/);
    ids.reset();
    expect(ids.take()).toBe(0);
  });
});

describe('Mirror (the compact mirror of the maps)', () => {
  it('gives back every record as it was set, runs and id texts, adopted and dirty; slots of deleted frontends are reused', () => {
    const m = new Mirror();
    const entry = table([{ name: 'a', vip: '10.96.0.1', backends: ['10.0.0.1'] }]).get('10.96.0.1:80/TCP')!;
    const recs: Array<[string, LiveFrontend]> = [];
    for (let i = 0; i < 200; i++) {
      const f: LiveFrontend = {
        svcId: i, setId: 1000 + i, flags: i % 4, affinityTimeout: i % 3 === 0 ? 10800 : 0, ids: i % 2 === 0 ? 5 + i * 10 : packIds([7, 3 + i, 0xfffffffe], 3),
        slotCount: i % 2 === 0 ? 10 : 3, hasMaglev: i % 5 === 0, dirty: i % 7 === 0, entry: i % 3 === 1 ? undefined : entry,
        adopted: i % 3 === 1 ? { vip: '10.96.0.9', port: i, proto: 6, names: [`10.0.0.${i % 250}:80`] } : undefined,
      };
      m.set(`k${i}`, f);
      recs.push([`k${i}`, f]);
    }
    expect(m.size).toBe(200);
    for (const [k, f] of recs) expect(m.get(k)).toEqual(f);
    expect([...m]).toEqual(recs);
    expect(idList(m.get('k1')!)).toEqual([7, 4, 0xfffffffe]);
    for (let i = 0; i < 200; i += 2) m.delete(`k${i}`);
    expect(m.size).toBe(100);
    expect(m.get('k0')).toBeUndefined();
    // Rewritten in place, then new frontends in the freed slots.
    m.set('k1', { ...recs[1]![1], ids: 42, slotCount: 2, adopted: undefined, entry });
    expect(m.get('k1')).toEqual({ ...recs[1]![1], ids: 42, slotCount: 2, adopted: undefined, entry });
    for (let i = 0; i < 100; i++) m.set(`n${i}`, recs[i]![1]);
    expect(m.size).toBe(200);
    for (let i = 0; i < 100; i++) expect(m.get(`n${i}`)).toEqual(recs[i]![1]);
    const seen: string[] = [];
    m.forEachEntry((svcId, e, id) => { seen.push(id); expect(svcId).toBe(m.get(id)!.svcId); expect(e).toBe(m.get(id)!.entry); });
    expect(seen.length).toBe(200);
    m.clear();
    expect(m.size).toBe(0);
  });

  it('answers as a plain Map of the same records through thousands of sets and deletes (ids found through their slots, from their entries)', () => {
    const m = new Mirror();
    const o = new Map<string, LiveFrontend>();
    let x = 11;
    const rand = (n: number): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x % n; };
    for (let step = 0; step < 20_000; step++) {
      const id = `10.96.${rand(8)}.${rand(250)}:${80 + rand(2)}/TCP`;
      if (rand(100) < (step > 14_000 ? 85 : 35)) {
        m.delete(id); o.delete(id);
      } else {
        // Its entry's key is its id (most frontends), or there is no entry (adopted), or another text.
        const e = rand(3);
        const entry = e === 0 ? { key: id } as ServiceEntry : e === 1 ? undefined : { key: `other ${id}` } as ServiceEntry;
        const f: LiveFrontend = { svcId: step, setId: rand(1000), flags: 0, affinityTimeout: 0, ids: rand(5000), slotCount: rand(4), hasMaglev: false, dirty: false, entry, adopted: undefined };
        m.set(id, f); o.set(id, f);
      }
      expect(m.get(id)).toEqual(o.get(id));
      if (step % 1000 === 0 || step === 19_999) {
        expect(m.size).toBe(o.size);
        expect(new Map([...m])).toEqual(o);
        const ids: string[] = [];
        m.forEachEntry((svcId, _e, id2) => { ids.push(id2); expect(svcId).toBe(o.get(id2)!.svcId); });
        expect(ids.sort()).toEqual([...o.keys()].sort());
      }
    }
  });

  it('plans over a Mirror as over a Map, change after change', () => {
    const ids = () => ({ svc: new SmallIds(64), set: new SerialIds(() => new Set()), backend: new SerialIds(() => new Set()) });
    const a = ids(), b = ids();
    let overMap: ServiceState = { live: new Map(), synced: false, counts: { slots: 0, backends: 0, maglev: 0 } };
    let overMirror: ServiceState = { live: new Mirror(), synced: false, counts: { slots: 0, backends: 0, maglev: 0 } };
    const svcs = Array.from({ length: 20 }, (_, i) => ({ name: `s${i}`, vip: `10.96.0.${i + 1}`, backends: [`10.0.0.${i + 1}`, `10.0.1.${i + 1}`] }));
    let prev: ServiceTable = new Map();
    for (let step = 0; step < 6; step++) {
      if (step > 0) {
        svcs[step]!.backends = [`10.0.2.${step}`, ...svcs[step]!.backends.slice(1)];
        if (step % 2 === 0) svcs.pop();
      }
      const t = table(svcs);
      const changed = step === 0 ? undefined : [...new Set([...t.keys(), ...prev.keys()])].filter((k) => t.get(k)?.backends.length !== prev.get(k)?.backends.length || !t.get(k)?.backends.equals(prev.get(k)!.backends));
      const p1 = planServices(overMap, t, changed, { ids: a, maglevM: 7, statsValueSize: 16 });
      const p2 = planServices(overMirror, t, changed, { ids: b, maglevM: 7, statsValueSize: 16 });
      expect(p2.result).toEqual(p1.result);
      for (const k of ['backendPut', 'slotPut', 'statsPut', 'svcPut', 'slotDel', 'maglevDel', 'backendDel'] as const) expect(p2[k].keys()).toEqual(p1[k].keys());
      expect(p2.svcDel).toEqual(p1.svcDel);
      for (const id of p1.freedSvcIds) a.svc.free(id);
      for (const id of p2.freedSvcIds) b.svc.free(id);
      overMap = { live: p1.next.commit(), synced: true, counts: p1.counts };
      const live = p2.next.commit();
      overMirror = { live: live instanceof Mirror ? live : Mirror.of(live), synced: true, counts: p2.counts };
      expect([...overMirror.live].map(([k, f]) => [k, f.setId, idList(f)])).toEqual([...overMap.live].map(([k, f]) => [k, f.setId, idList(f)]));
      prev = t;
    }
  });
});
