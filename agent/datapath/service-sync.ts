/**
 * Keeps the load balancer's maps equal to the service table: diffs what is wanted
 * against what the maps hold and writes only the difference.
 *
 * The maps are the truth. At start the sync adopts whatever a previous agent left
 * pinned (nothing is flushed: connections keep being balanced while we start), and
 * after a failed write it reads them back again before the next attempt.
 *
 * Every change of a frontend's backends builds a new backend set (bpf/include/lb.h):
 *   1. new backends, the new set's slots and Maglev table are written;
 *   2. the service entry is switched to the new set (one atomic map update);
 *   3. the old set, its Maglev table and the backends no longer used are deleted.
 * A reconcile runs each step for all frontends at once (batched), so step 2 of any
 * frontend happens after step 1 of all of them and before any step 3.
 *
 * Planning (service-plan.ts, pure: no map touched) is apart from applying (here).
 */
import { KernwayError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { aloneInService, type ServiceEntry, type ServiceTable } from '../../model/service-table.js';
import { datapathAddr } from './addr.js';
import { SVC_F_MAGLEV, decodeBackend, decodeSlotKey, decodeSvcKey, decodeSvcVal, decodeU32, encodeU32 } from './codec.js';
import { checkLayout, type LbMaps, type MapLike } from './lb-maps.js';
import {
  Batch, Mirror, NO_IDS, NO_SET, addressOf, SerialIds, SmallIds, backendNameOf, frontendId, idCount, idList, packIds, planServices, protoOf,
  type EntryCounts, type LiveFrontend, type ReconcileResult, type ServicePlan,
} from './service-plan.js';

export type { ReconcileResult } from './service-plan.js';

export interface MapUsage { name: string; entries: number; capacity: number }

export class ServiceSync {
  private readonly maps: LbMaps;
  private readonly log: Logger | undefined;
  readonly maglevM: number;
  /** What the maps hold, by frontend id (compact: service-plan.ts `Mirror`). */
  private live = new Mirror();
  /** A full reconcile happened since adoption: incremental ones may follow. */
  private synced = false;
  private readonly svcIds: SmallIds;
  private readonly setIds = new SerialIds(() => new Set([...this.live.values()].map((f) => f.setId)));
  private readonly backendIds = new SerialIds(() => new Set([...this.live.values()].flatMap((f) => idList(f))));
  private statsZero: Buffer | undefined;
  private counts: EntryCounts = { slots: 0, backends: 0, maglev: 0 };

  constructor(maps: LbMaps, opts: { log?: Logger } = {}) {
    this.maps = maps;
    this.log = opts.log;
    this.maglevM = checkLayout(maps).maglevM;
    // svc_id indexes kw_svc_stats: it must stay below both maps' sizes.
    const limit = Math.min(maps.kw_svc.info().maxEntries, maps.kw_svc_stats.info().maxEntries);
    this.svcIds = new SmallIds(limit);
    this.adopt();
  }

  /** Frontends the maps hold now (after adoption or the last reconcile). */
  get size(): number {
    return this.live.size;
  }

  /** The svc ids of live frontends, with the Service they belong to when known. */
  frontends(): Array<{ svcId: number; service: string | undefined; portName: string | undefined; vip: string; port: number; proto: number; backends: number }> {
    return [...this.live.values()].map((f) => {
      const { vip, port, proto } = addressOf(f);
      return { svcId: f.svcId, service: f.entry?.service, portName: f.entry?.portName, vip, port, proto, backends: idCount(f) };
    });
  }

  /**
   * Calls `fn` for every live frontend with its svc id, the name its counters are summed
   * under (its Service, ns/name, or `vip:port` for one adopted without a Service), and whether
   * it is surely its Service's only frontend (then no other frontend has that name). Allocates
   * nothing per frontend that has a Service (a /metrics scrape walks all of them; frontends()
   * builds an object each).
   */
  forEachCounted(fn: (svcId: number, name: string, alone: boolean) => void): void {
    this.live.forEachEntry((svcId, entry, id) => {
      const service = entry?.service;
      if (service !== undefined) fn(svcId, service, aloneInService(entry!));
      else {
        const { vip, port } = addressOf(this.live.get(id)!);
        fn(svcId, `${vip}:${port}`, false);
      }
    });
  }

  /** Entries in use per map (those the agent writes: counted from what it wrote) and capacity. */
  usage(): MapUsage[] {
    const cap = (m: MapLike): number => m.info().maxEntries;
    return [
      { name: 'kw_svc', entries: this.live.size, capacity: cap(this.maps.kw_svc) },
      { name: 'kw_slot', entries: this.counts.slots, capacity: cap(this.maps.kw_slot) },
      { name: 'kw_backend', entries: this.counts.backends, capacity: cap(this.maps.kw_backend) },
      { name: 'kw_maglev', entries: this.counts.maglev, capacity: cap(this.maps.kw_maglev) },
    ];
  }

  /**
   * The part of `table` that fits kw_svc (and the service ids), for when the whole does
   * not: every frontend the maps hold now first (what is there stays), then new ones in
   * the table's order. `left` are the entries that did not fit.
   */
  fit(table: ServiceTable): { table: ServiceTable; left: ServiceEntry[] } {
    const limit = Math.min(this.maps.kw_svc.info().maxEntries, this.maps.kw_svc_stats.info().maxEntries);
    const kept = this.present(table);
    const left: ServiceEntry[] = [];
    for (const [k, e] of table) {
      if (kept.has(k)) continue;
      if (kept.size < limit || protoOf(e) === undefined) kept.set(k, e);
      else left.push(e);
    }
    return { table: kept, left };
  }

  /**
   * The part of `table` whose frontends the maps hold now. Reconciled alone it only changes
   * and removes frontends: no new kw_svc entry, no new service id. A reconcile writes new
   * frontends before it removes those going away (make before break), so a full kw_svc
   * takes a change that swaps Services in two steps: this part first, then the whole.
   */
  present(table: ServiceTable): ServiceTable {
    const kept: ServiceTable = new Map();
    for (const [k, e] of table) {
      const proto = protoOf(e);
      if (proto !== undefined && this.live.has(frontendId(datapathAddr(e.vip), e.port, proto))) kept.set(k, e);
    }
    return kept;
  }

  // ---------------------------------------------------------------- adoption

  /**
   * Reads the maps into the mirror. Sets, tables and backends no service entry uses
   * (left by an agent that stopped halfway through an update) are deleted; a service
   * whose set is incomplete is marked for rewriting. Live entries are never deleted.
   */
  adopt(): void {
    this.live.clear();
    this.synced = false;
    this.svcIds.reset();
    this.setIds.reset();
    this.backendIds.reset();
    const svc = this.maps.kw_svc.batchLookup();
    const slotDump = this.maps.kw_slot.batchLookup();
    const backendDump = this.maps.kw_backend.batchLookup();
    const maglevSets = new Set<number>();
    for (const k of this.maps.kw_maglev.keys()) maglevSets.add(decodeU32(k));

    const sets = new Map<number, Map<number, number>>();
    for (let i = 0; i < slotDump.keys.length; i++) {
      const k = decodeSlotKey(slotDump.keys[i]!);
      let s = sets.get(k.setId);
      if (!s) sets.set(k.setId, (s = new Map()));
      s.set(k.slot, decodeU32(slotDump.values[i]!));
    }
    const backendsBySvc = new Map<number, Map<number, { name: string }>>();
    for (let i = 0; i < backendDump.keys.length; i++) {
      const id = decodeU32(backendDump.keys[i]!);
      const b = decodeBackend(backendDump.values[i]!);
      let m = backendsBySvc.get(b.svcId);
      if (!m) backendsBySvc.set(b.svcId, (m = new Map()));
      m.set(id, { name: backendNameOf(b.ip, b.port) });
    }

    const liveSets = new Set<number>();
    const liveBackends = new Set<number>();
    for (let i = 0; i < svc.keys.length; i++) {
      const key = decodeSvcKey(svc.keys[i]!);
      const val = decodeSvcVal(svc.values[i]!);
      const f: LiveFrontend = {
        svcId: val.svcId, setId: val.setId, flags: val.flags, affinityTimeout: val.affinityTimeout, ids: NO_IDS, slotCount: val.count,
        hasMaglev: false, dirty: false, entry: undefined, adopted: { vip: key.vip, port: key.port, proto: key.proto, names: [] },
      };
      const names = f.adopted!.names;
      const ids: number[] = [];
      this.svcIds.mark(val.svcId);
      if (val.setId !== NO_SET) { this.setIds.mark(val.setId); liveSets.add(val.setId); }
      const set = sets.get(val.setId);
      const mine = backendsBySvc.get(val.svcId);
      for (let s = 0; s < val.count; s++) {
        const id = set?.get(s);
        const b = id === undefined ? undefined : mine?.get(id);
        if (id === undefined || b === undefined) { f.dirty = true; continue; }
        if (names.includes(b.name)) f.dirty = true; // the same backend twice: rewrite
        ids.push(id);
        names.push(b.name);
      }
      if (set && set.size !== val.count) f.dirty = true;
      f.hasMaglev = maglevSets.has(val.setId);
      if ((val.flags & SVC_F_MAGLEV) !== 0 && val.count > 0 && !f.hasMaglev) f.dirty = true;
      f.ids = packIds(ids, f.slotCount);
      for (const id of ids) { liveBackends.add(id); this.backendIds.mark(id); }
      this.live.set(frontendId(key.vip, key.port, key.proto), f);
    }

    // Leftovers of an interrupted update: nothing live points at them.
    const slotOrphans: Buffer[] = [];
    const countOf = new Map<number, number>();
    for (const f of this.live.values()) countOf.set(f.setId, f.slotCount);
    for (let i = 0; i < slotDump.keys.length; i++) {
      const k = decodeSlotKey(slotDump.keys[i]!);
      if (!liveSets.has(k.setId) || k.slot >= countOf.get(k.setId)!) slotOrphans.push(slotDump.keys[i]!);
    }
    const maglevOrphans = [...maglevSets].filter((s) => !liveSets.has(s)).map((s) => encodeU32(s));
    const backendOrphans = backendDump.keys.filter((k) => !liveBackends.has(decodeU32(k)));
    this.deleteAll(this.maps.kw_slot, slotOrphans);
    this.deleteAll(this.maps.kw_maglev, maglevOrphans);
    this.deleteAll(this.maps.kw_backend, backendOrphans);
    this.counts = {
      slots: slotDump.keys.length - slotOrphans.length,
      backends: backendDump.keys.length - backendOrphans.length,
      maglev: maglevSets.size - maglevOrphans.length,
    };
    const dirty = [...this.live.values()].filter((f) => f.dirty).length;
    this.log?.info({ frontends: this.live.size, backends: this.counts.backends, dirty,
      orphans: slotOrphans.length + maglevOrphans.length + backendOrphans.length }, 'adopted the load balancer maps');
  }

  private deleteAll(map: MapLike, keys: Buffer[]): number {
    if (keys.length === 0) return 0;
    try {
      return map.batchDelete(keys);
    } catch {
      // Some keys may be gone already (batch delete stops at the first miss): go one by one.
      let n = 0;
      for (const k of keys) if (map.delete(k)) n++;
      return n;
    }
  }

  // ---------------------------------------------------------------- reconcile

  /**
   * Makes the maps hold `table`. With `changed` (the table keys added, changed or removed
   * since the last call, as ServiceTableBuilder.update() returns them) only those are
   * looked at; the first reconcile after adoption is always whole.
   * Throws KW_DATAPATH_APPLY (after re-reading the maps) when a write fails.
   */
  reconcile(table: ServiceTable, changed?: Iterable<string>): ReconcileResult {
    let plan: ServicePlan;
    try {
      plan = this.plan(table, changed);
      // Old and new sets live side by side until the deletions: check the peak.
      this.checkCapacity(plan.peak.frontends, plan.peak);
      this.apply(plan);
    } catch (err) {
      // The maps are the truth: read them back so the next reconcile diffs against reality.
      try { this.adopt(); } catch (e2) { this.log?.error({ err: errorMessage(e2) }, 'reading the maps back failed'); }
      if (err instanceof KernwayError) throw err;
      const e = err as { code?: string; map?: string };
      throw new KernwayError('KW_DATAPATH_APPLY', `writing the load balancer maps failed${e.map ? ` (map ${e.map})` : ''}: ${errorMessage(err)}`,
        { code: e.code }, { cause: err });
    }

    for (const id of plan.freedSvcIds) this.svcIds.free(id);
    const live = plan.next.commit();
    // A whole reconcile plans over a new plain Map: kept as a Mirror.
    this.live = live instanceof Mirror ? live : Mirror.of(live);
    this.synced = true;
    this.counts = plan.counts;
    return plan.result;
  }

  /** The writes and deletions that make the maps hold `table` (service-plan.ts); takes ids, touches no map. */
  plan(table: ServiceTable, changed?: Iterable<string>): ServicePlan {
    return planServices({ live: this.live, synced: this.synced, counts: this.counts }, table, changed, {
      ids: { svc: this.svcIds, set: this.setIds, backend: this.backendIds }, maglevM: this.maglevM, statsValueSize: this.zeroStats().length,
    });
  }

  /** Writes a plan in its order: writes first, then the switch, then the deletions; counts in plan.result. */
  private apply(plan: ServicePlan): void {
    const result = plan.result;
    result.writes += this.put(this.maps.kw_backend, plan.backendPut);
    result.writes += this.put(this.maps.kw_slot, plan.slotPut);
    for (const [k, v] of plan.maglevPut) this.maps.kw_maglev.update(k, v);
    result.writes += plan.maglevPut.length;
    result.writes += this.put(this.maps.kw_svc_stats, plan.statsPut);
    result.writes += this.put(this.maps.kw_svc, plan.svcPut);
    result.deletes += this.deleteAll(this.maps.kw_svc, plan.svcDel);
    result.deletes += this.deleteBatch(this.maps.kw_slot, plan.slotDel);
    result.deletes += this.deleteBatch(this.maps.kw_maglev, plan.maglevDel);
    result.deletes += this.deleteBatch(this.maps.kw_backend, plan.backendDel);
  }

  private put(map: MapLike, b: Batch): number {
    if (b.count === 0) return 0;
    return map.batchUpdate(b.keys(), b.values());
  }

  private deleteBatch(map: MapLike, b: Batch): number {
    if (b.count === 0) return 0;
    try {
      return map.batchDelete(b.keys());
    } catch {
      return this.deleteAll(map, b.keyList());
    }
  }

  private zeroStats(): Buffer {
    if (!this.statsZero) {
      const sample = this.maps.kw_svc_stats.lookup(encodeU32(0));
      this.statsZero = Buffer.alloc(sample ? sample.length : 16);
    }
    return this.statsZero;
  }

  private checkCapacity(frontends: number, counts: { slots: number; backends: number; maglev: number }): void {
    const check = (name: keyof LbMaps, n: number, what: string): void => {
      const max = this.maps[name].info().maxEntries;
      if (n > max) throw new KernwayError('KW_MAP_FULL', `${what}: ${n} needed, map ${name} holds ${max}; raise its capacity`);
    };
    check('kw_svc', frontends, 'service ports');
    check('kw_slot', counts.slots, 'backend slots');
    check('kw_backend', counts.backends, 'backends');
    check('kw_maglev', counts.maglev, 'Maglev tables');
  }
}
