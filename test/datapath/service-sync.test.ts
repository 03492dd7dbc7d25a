/**
 * ServiceSync against real kernel maps (the sock_lb object loaded, nothing attached):
 * minimal diffs, the backend-set switch, adoption of what a crashed agent left, and
 * errors that leave the maps as they were.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { BpfObject } from '../../native/index.js';
import { buildModel } from '../../model/model.js';
import { buildServiceTable, ServiceTableBuilder, type ServiceTable } from '../../model/service-table.js';
import type { SourcedObject } from '../../k8s/types.js';
import { ServiceSync } from '../../agent/datapath/service-sync.js';
import { ServiceCounterTable } from '../../agent/datapath/service-counters.js';
import { defaultObjectPath } from '../../agent/datapath/sock-lb.js';
import { LB_MAP_NAMES, type LbMaps } from '../../agent/datapath/lb-maps.js';
import { readKernelServices } from '../../agent/datapath/inspect.js';
import { decodeMaglevTable, decodeSvcKey, decodeSvcStatsPerCpu, decodeSvcVal, decodeU32, encodeBackend, encodeSlotKey, encodeU32, IPPROTO_TCP } from '../../agent/datapath/codec.js';
import { serviceObject, sliceObject } from '../../agent/demo/manifests.js';

const objects: BpfObject[] = [];

async function maps(maxEntries: Record<string, number> = {}): Promise<LbMaps> {
  const obj = BpfObject.open(defaultObjectPath(), { maxEntries });
  objects.push(obj);
  await obj.load();
  return Object.fromEntries(LB_MAP_NAMES.map((n) => [n, obj.map(n)])) as unknown as LbMaps;
}

afterEach(() => {
  for (const o of objects.splice(0)) o.close();
});

interface Svc { name: string; vip: string; backends: string[]; algorithm?: 'maglev'; affinity?: number }
function model(svcs: Svc[]) {
  const srcs: SourcedObject[] = [];
  for (const s of svcs) {
    const objs = [
      serviceObject({ name: s.name, clusterIPs: [s.vip], algorithm: s.algorithm, affinityTimeoutSeconds: s.affinity, ports: [{ port: 80, targetPort: 8080 }] }),
      sliceObject({ name: `${s.name}-1`, service: s.name, ports: [{ port: 8080 }], endpoints: s.backends.map((ip) => ({ ip })) }),
    ];
    objs.forEach((o, index) => srcs.push({ object: o as SourcedObject['object'], file: `${s.name}.yaml`, index }));
  }
  return buildModel(srcs);
}

function table(svcs: Svc[]): ServiceTable {
  const m = model(svcs);
  expect(m.problems).toEqual([]);
  return buildServiceTable(m, { nodeName: 'n' });
}

const count = (m: LbMaps, name: keyof LbMaps): number => m[name].batchLookup().keys.length;

describe('ServiceSync', () => {
  it('writes a new Service whole, then only what changes', async () => {
    const m = await maps();
    const sync = new ServiceSync(m);
    const a: Svc = { name: 'a', vip: '10.96.0.1', backends: ['10.0.0.1', '10.0.0.2', '10.0.0.3'] };
    let r = sync.reconcile(table([a]));
    expect(r).toMatchObject({ created: 1, changed: 0, removed: 0 });
    expect(r.writes).toBe(3 + 3 + 1 + 1); // backends, slots, stats, service entry
    expect(readKernelServices(m)).toMatchObject([{ frontend: '10.96.0.1:80/TCP', algorithm: 'random', affinityTimeoutSeconds: null,
      backends: ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080'] }]);

    // Nothing changed: nothing written.
    r = sync.reconcile(table([a]));
    expect(r).toMatchObject({ unchanged: 1, writes: 0, deletes: 0 });

    // One endpoint replaced: one backend, a new set of 3 slots, the switch; the old set and backend go.
    r = sync.reconcile(table([{ ...a, backends: ['10.0.0.1', '10.0.0.2', '10.0.0.4'] }]));
    expect(r).toMatchObject({ changed: 1, writes: 1 + 3 + 1, deletes: 3 + 1 });
    expect(count(m, 'kw_slot')).toBe(3);
    expect(count(m, 'kw_backend')).toBe(3);
    expect(readKernelServices(m)[0]!.backends).toEqual(['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.4:8080']);

    // Only the affinity changes: the service entry alone.
    r = sync.reconcile(table([{ ...a, backends: ['10.0.0.1', '10.0.0.2', '10.0.0.4'], affinity: 60 }]));
    expect(r).toMatchObject({ changed: 1, writes: 1, deletes: 0 });
    expect(readKernelServices(m)[0]!.affinityTimeoutSeconds).toBe(60);

    // Removed: everything of it goes.
    r = sync.reconcile(table([]));
    expect(r).toMatchObject({ removed: 1 });
    for (const name of ['kw_svc', 'kw_slot', 'kw_backend'] as const) expect(count(m, name)).toBe(0);
  });

  it('a Service without endpoints has an entry with no backend (refused), and gets them later', async () => {
    const m = await maps();
    const sync = new ServiceSync(m);
    sync.reconcile(table([{ name: 'e', vip: '10.96.0.2', backends: [] }]));
    expect(readKernelServices(m)).toMatchObject([{ frontend: '10.96.0.2:80/TCP', backends: [] }]);
    sync.reconcile(table([{ name: 'e', vip: '10.96.0.2', backends: ['10.0.0.9'] }]));
    expect(readKernelServices(m)[0]!.backends).toEqual(['10.0.0.9:8080']);
  });

  it('Maglev: the live set has a full table of its backend ids', async () => {
    const m = await maps();
    const sync = new ServiceSync(m);
    sync.reconcile(table([{ name: 'g', vip: '10.96.0.3', algorithm: 'maglev', backends: ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5'] }]));
    const [svc] = readKernelServices(m);
    expect(svc).toMatchObject({ algorithm: 'maglev', maglevTable: true });
    const tables = m.kw_maglev.batchLookup();
    expect(tables.keys.length).toBe(1);
    const t = decodeMaglevTable(tables.values[0]!);
    expect(t.length).toBe(sync.maglevM);
    const ids = new Set(m.kw_backend.batchLookup().keys.map((k) => decodeU32(k)));
    const per = new Map<number, number>();
    for (const id of t) per.set(id, (per.get(id) ?? 0) + 1);
    expect([...per.keys()].sort()).toEqual([...ids].sort());
    for (const n of per.values()) expect(Math.abs(n - sync.maglevM / 5)).toBeLessThanOrEqual(1);
    // Back to random: the table goes with the next set.
    sync.reconcile(table([{ name: 'g', vip: '10.96.0.3', backends: ['10.0.0.1', '10.0.0.2'] }]));
    expect(count(m, 'kw_maglev')).toBe(0);
  });

  it('adopts the maps of a previous agent: nothing rewritten, leftovers of a half-done update removed, a broken set repaired', async () => {
    const m = await maps();
    const first = new ServiceSync(m);
    const svcs: Svc[] = [{ name: 'a', vip: '10.96.0.1', backends: ['10.0.0.1', '10.0.0.2'] }, { name: 'b', vip: '10.96.0.2', backends: ['10.0.0.3'] }];
    first.reconcile(table(svcs));
    // A crash between steps 1 and 2 of an update leaves a set and a backend nothing uses.
    m.kw_slot.update(encodeSlotKey({ setId: 999, slot: 0 }), encodeU32(777));
    m.kw_backend.update(encodeU32(777), encodeBackend({ ip: '10.0.0.77', port: 8080, proto: IPPROTO_TCP, svcId: 1 }));
    const again = new ServiceSync(m);
    expect(again.size).toBe(2);
    expect(count(m, 'kw_slot')).toBe(3);
    expect(count(m, 'kw_backend')).toBe(3);
    const r = again.reconcile(table(svcs));
    expect(r).toMatchObject({ created: 0, changed: 0, removed: 0, writes: 0, deletes: 0 });

    // A set with a slot missing is rewritten by the next reconcile.
    const entries = m.kw_svc.batchLookup();
    const i = entries.keys.findIndex((k) => decodeSvcKey(k).vip === '10.96.0.1');
    expect(m.kw_slot.delete(encodeSlotKey({ setId: decodeSvcVal(entries.values[i]!).setId, slot: 1 }))).toBe(true);
    const third = new ServiceSync(m);
    const r3 = third.reconcile(table(svcs));
    expect(r3.changed).toBeGreaterThanOrEqual(1);
    expect(readKernelServices(m).map((s) => s.backends)).toEqual([['10.0.0.1:8080', '10.0.0.2:8080'], ['10.0.0.3:8080']]);
    expect(count(m, 'kw_slot')).toBe(3);
    expect(count(m, 'kw_backend')).toBe(3);
  });

  it('incremental reconciles (only the changed table keys) give the same maps as whole ones', async () => {
    const m = await maps();
    const sync = new ServiceSync(m);
    const builder = new ServiceTableBuilder({ nodeName: 'n' });
    const svcs: Svc[] = Array.from({ length: 20 }, (_, i) => ({ name: `s${i}`, vip: `10.96.1.${i + 1}`, backends: [`10.0.1.${i + 1}`, `10.0.2.${i + 1}`] }));
    builder.update(model(svcs));
    expect(sync.reconcile(builder.table).created).toBe(20);
    // s3 changes, s7 goes, s20 comes.
    const next = svcs.filter((s) => s.name !== 's7').map((s) => (s.name === 's3' ? { ...s, backends: ['10.0.9.9'] } : s));
    next.push({ name: 's20', vip: '10.96.1.100', backends: ['10.0.3.1'] });
    const changed = builder.update(model(next), ['default/s3', 'default/s7', 'default/s20']);
    expect(changed.size).toBe(3);
    const r = sync.reconcile(builder.table, changed);
    expect(r).toMatchObject({ created: 1, changed: 1, removed: 1, unchanged: 0 });
    const whole = readKernelServices(m).map((s) => `${s.frontend} ${s.backends.join(',')}`);
    // The same maps as a fresh sync reconciling the whole table from scratch would leave.
    const m2 = await maps();
    new ServiceSync(m2).reconcile(table(next));
    expect(readKernelServices(m2).map((s) => `${s.frontend} ${s.backends.join(',')}`)).toEqual(whole);
    expect(whole).toContain('10.96.1.4:80/TCP 10.0.9.9:8080');
    expect(whole.some((l) => l.startsWith('10.96.1.8:'))).toBe(false);
  });

  it('too many Services for the map: a clear error, and the maps keep their last good state', async () => {
    const m = await maps({ kw_svc: 2, kw_svc_stats: 2 });
    const sync = new ServiceSync(m);
    sync.reconcile(table([{ name: 'a', vip: '10.96.0.1', backends: ['10.0.0.1'] }]));
    expect(() => sync.reconcile(table([
      { name: 'a', vip: '10.96.0.1', backends: ['10.0.0.1'] }, { name: 'b', vip: '10.96.0.2', backends: ['10.0.0.2'] },
      { name: 'd', vip: '10.96.0.4', backends: ['10.0.0.4'] },
    ]))).toThrow(/service id|kw_svc/);
    expect(readKernelServices(m).map((s) => s.frontend)).toEqual(['10.96.0.1:80/TCP']);
    // And it recovers once the table fits again.
    const r = sync.reconcile(table([{ name: 'c', vip: '10.96.0.3', backends: ['10.0.0.3'] }]));
    expect(r).toMatchObject({ created: 1, removed: 1 });
  });
});

describe('ServiceCounterTable', () => {
  /** The counters as the agent summed them before the table: frontends(), BigInt sums, a Map by Service. */
  function expected(sync: ServiceSync, m: LbMaps): Array<{ service: string; balanced: number; refused: number }> {
    const by = new Map<string, { service: string; balanced: number; refused: number }>();
    for (const f of sync.frontends()) {
      const raw = m.kw_svc_stats.lookup(encodeU32(f.svcId));
      if (!raw) continue;
      const st = decodeSvcStatsPerCpu(raw);
      const name = f.service ?? `${f.vip}:${f.port}`;
      let c = by.get(name);
      if (!c) by.set(name, (c = { service: name, balanced: 0, refused: 0 }));
      c.balanced += Number(st.balanced);
      c.refused += Number(st.refused);
    }
    return [...by.values()];
  }
  const rows = (t: ServiceCounterTable) => Array.from({ length: t.size }, (_, i) => ({ service: t.service(i), balanced: t.balanced(i), refused: t.refused(i) }));
  /** Writes counters into every CPU's slot of each live frontend's stats entry (large ones: both u64 halves count). */
  function bump(sync: ServiceSync, m: LbMaps, round: number): void {
    for (const f of sync.frontends()) {
      const v = Buffer.alloc(m.kw_svc_stats.valueBytes!);
      for (let o = 0; o + 16 <= v.length; o += 16) {
        v.writeBigUInt64LE(BigInt(f.svcId * 1000 + round) + (o === 0 ? 2n ** 33n : 0n), o);
        v.writeBigUInt64LE(BigInt(f.svcId + round + o), o + 8);
      }
      m.kw_svc_stats.update(encodeU32(f.svcId), v);
    }
  }

  it('sums every frontend of a Service as the Map of BigInt sums did, in the same order, across reads and removals', async () => {
    const m = await maps();
    const sync = new ServiceSync(m);
    const svcs: Svc[] = Array.from({ length: 200 }, (_, i) => ({ name: `s${i}`, vip: `10.96.${1 + (i >> 7)}.${(i & 127) + 1}`, backends: ['10.0.0.1'] }));
    sync.reconcile(table(svcs));
    const counted = new ServiceCounterTable();
    bump(sync, m, 1);
    counted.read(sync, m.kw_svc_stats);
    expect(counted.size).toBe(200);
    expect(rows(counted)).toEqual(expected(sync, m));
    bump(sync, m, 2);
    counted.read(sync, m.kw_svc_stats);
    expect(rows(counted)).toEqual(expected(sync, m));
    // Most Services gone: the table keeps only what is live (and compacts its slots).
    sync.reconcile(table(svcs.slice(190)));
    bump(sync, m, 3);
    counted.read(sync, m.kw_svc_stats);
    expect(counted.size).toBe(10);
    expect(rows(counted)).toEqual(expected(sync, m));
    counted.read(sync, m.kw_svc_stats);
    expect(rows(counted)).toEqual(expected(sync, m));
    // Adopted by a new agent: frontends without a Service count under vip:port.
    const adopted = new ServiceSync(m);
    counted.read(adopted, m.kw_svc_stats);
    expect(rows(counted)).toEqual(expected(adopted, m));
    expect(counted.service(0)).toMatch(/^10\.96\.\d+\.\d+:80$/);
    counted.clear();
    expect(counted.size).toBe(0);
  });

  it('one row per Service while its ports come and go (rows of one-port Services are made without a map)', async () => {
    const m = await maps();
    const sync = new ServiceSync(m);
    const tb = new ServiceTableBuilder({ nodeName: 'n' });
    const ports = (n: number) => Array.from({ length: n }, (_, i) => ({ port: 80 + i, targetPort: 8080 + i, name: `p${i}` }));
    const model = (n: number) => buildModel([
      serviceObject({ name: 'grow', clusterIPs: ['10.96.3.1'], ports: ports(n) }),
      sliceObject({ name: 'grow-1', service: 'grow', ports: ports(3).map((p) => ({ port: p.targetPort, name: p.name })), endpoints: [{ ip: '10.0.0.7' }] }),
      serviceObject({ name: 'one', clusterIPs: ['10.96.3.2'], ports: ports(1) }),
      sliceObject({ name: 'one-1', service: 'one', ports: [{ port: 8080, name: 'p0' }], endpoints: [{ ip: '10.0.0.8' }] }),
    ].map((o, index) => ({ object: o as SourcedObject['object'], file: 'grow.yaml', index })));
    const counted = new ServiceCounterTable();
    let first = true;
    for (const [round, n] of [1, 3, 2, 1, 3].entries()) {
      const mm = model(n);
      const changed = tb.update(mm, first ? undefined : ['default/grow']);
      sync.reconcile(tb.table, first ? undefined : changed);
      first = false;
      expect(sync.size).toBe(n + 1);
      bump(sync, m, round);
      counted.read(sync, m.kw_svc_stats);
      expect(counted.size).toBe(2);
      expect(rows(counted)).toEqual(expected(sync, m));
    }
  });

  it('sums the ports of one Service into one row', async () => {
    const m = await maps();
    const sync = new ServiceSync(m);
    const objs = [
      serviceObject({ name: 'multi', clusterIPs: ['10.96.2.1'], ports: [{ port: 80, targetPort: 8080, name: 'http' }, { port: 443, targetPort: 8443, name: 'https' }] }),
      sliceObject({ name: 'multi-1', service: 'multi', ports: [{ port: 8080, name: 'http' }, { port: 8443, name: 'https' }], endpoints: [{ ip: '10.0.0.9' }] }),
    ];
    const mm = buildModel(objs.map((o, index) => ({ object: o as SourcedObject['object'], file: 'multi.yaml', index })));
    expect(mm.problems).toEqual([]);
    sync.reconcile(buildServiceTable(mm, { nodeName: 'n' }));
    expect(sync.size).toBe(2);
    bump(sync, m, 5);
    const counted = new ServiceCounterTable();
    counted.read(sync, m.kw_svc_stats);
    expect(counted.size).toBe(1);
    expect(rows(counted)).toEqual(expected(sync, m));
    expect(counted.balanced(0)).toBeGreaterThan(2 ** 33);
  });
});
