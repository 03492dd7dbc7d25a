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
 */
import { KernwayError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { hostPort } from '../../k8s/ip.js';
import type { ServiceEntry, ServiceTable } from '../../model/service-table.js';
import { datapathAddr } from './addr.js';
import {
  IPPROTO_TCP, IPPROTO_UDP, SVC_F_AFFINITY, SVC_F_MAGLEV, decodeBackend, decodeSlotKey, decodeSvcKey, decodeSvcVal,
  decodeU32, encodeBackend, encodeMaglevTable, encodeSlotKey, encodeSvcKey, encodeSvcVal, encodeU32,
} from './codec.js';
import { checkLayout, type LbMaps, type MapLike } from './lb-maps.js';
import { maglevTable } from './maglev.js';

/** A frontend as the maps hold it, plus the Service entry it was written from. */
interface LiveFrontend {
  vip: string;
  port: number;
  proto: number;
  svcId: number;
  setId: number;
  flags: number;
  affinityTimeout: number;
  /** Backend ids of the live set in slot order (each backend of this frontend once). */
  ids: number[];
  /** Slot keys the set has in the map: its count (the map may miss some when adopted broken). */
  slotCount: number;
  hasMaglev: boolean;
  /** The maps disagree with themselves (found at adoption): rewrite on the next reconcile. */
  dirty: boolean;
  /** The service table entry last applied (the same object next time: nothing to do). */
  entry: ServiceEntry | undefined;
  /** Backend names parallel to `ids`, when adopted from the maps (otherwise derived from `entry`). */
  adoptedNames: string[] | undefined;
}

function frontendId(vip: string, port: number, proto: number): string {
  return `${vip}|${port}|${proto}`;
}

/** Backend names ('ip:port') parallel to f.ids. */
function namesOf(f: LiveFrontend): readonly string[] {
  if (f.adoptedNames) return f.adoptedNames;
  return f.entry ? f.entry.backends.map((b) => backendNameOf(datapathAddr(b.ip), b.port)) : [];
}

export interface ReconcileResult {
  /** Frontends created, changed (new backend set or new flags) and removed. */
  created: number;
  changed: number;
  removed: number;
  unchanged: number;
  /** Map operations, all maps together. */
  writes: number;
  deletes: number;
  /** Entries skipped because the kernel path does not balance them (SCTP). */
  skipped: string[];
}

export interface MapUsage { name: string; entries: number; capacity: number }

const NO_SET = 0;

function protoOf(e: ServiceEntry): number | undefined {
  return e.proto === 'TCP' ? IPPROTO_TCP : e.proto === 'UDP' ? IPPROTO_UDP : undefined;
}

function backendNameOf(ip: string, port: number): string {
  return hostPort(ip, port);
}

/** svc ids: 0 .. limit-1 (they index kw_svc_stats), lowest free first. */
class SmallIds {
  private readonly used = new Set<number>();
  private next = 0;
  constructor(private readonly limit: number) {}
  take(): number {
    if (this.used.size >= this.limit) throw new KernwayError('KW_MAP_FULL', `no free service id: all ${this.limit} are in use; raise the capacity of kw_svc and kw_svc_stats`);
    while (this.used.has(this.next)) this.next = this.next + 1 >= this.limit ? 0 : this.next + 1;
    this.used.add(this.next);
    return this.next;
  }
  mark(id: number): void { this.used.add(id); }
  free(id: number): void { this.used.delete(id); if (id < this.next) this.next = id; }
  reset(): void { this.used.clear(); this.next = 0; }
}

/**
 * Set and backend ids: a counter over 1 .. 2^32-2, so an id is not reused before four
 * billion others (a connect() holding a stale id misses). After a wrap, ids still in
 * use (asked to `inUse`) are skipped.
 */
class SerialIds {
  private next = 1;
  private wrapped: Set<number> | undefined;
  constructor(private readonly inUse: () => Set<number>) {}
  take(): number {
    for (;;) {
      if (this.next >= 0xffffffff) { this.next = 1; this.wrapped = this.inUse(); }
      const id = this.next++;
      if (!this.wrapped?.has(id)) { this.wrapped?.add(id); return id; }
    }
  }
  mark(id: number): void { if (id >= this.next) this.next = id + 1; }
  reset(): void { this.next = 1; this.wrapped = undefined; }
}

/** Changes over a map, read through, applied to it by commit() (a failed reconcile leaves it as it was). */
class Overlay<K, V> {
  private readonly changes = new Map<K, V | undefined>();
  constructor(private readonly base: Map<K, V>) {}
  get(k: K): V | undefined { return this.changes.has(k) ? this.changes.get(k) : this.base.get(k); }
  has(k: K): boolean { return this.get(k) !== undefined; }
  set(k: K, v: V): void { this.changes.set(k, v); }
  delete(k: K): void { this.changes.set(k, undefined); }
  get size(): number {
    let n = this.base.size;
    for (const [k, v] of this.changes) n += (v !== undefined ? 1 : 0) - (this.base.has(k) ? 1 : 0);
    return n;
  }
  commit(): Map<K, V> {
    for (const [k, v] of this.changes) if (v === undefined) this.base.delete(k); else this.base.set(k, v);
    return this.base;
  }
}

/** Map entries of one reconcile, encoded in place into one growing buffer pair. */
class Batch {
  private k: Buffer;
  private v: Buffer;
  count = 0;
  constructor(readonly keySize: number, readonly valueSize: number) {
    this.k = Buffer.alloc(keySize * 64);
    this.v = Buffer.alloc(Math.max(valueSize, 1) * 64);
  }
  /** Reserves one entry; returns its index (key at index*keySize, value at index*valueSize). */
  add(): number {
    if ((this.count + 1) * this.keySize > this.k.length) {
      const k = Buffer.alloc(this.k.length * 2); this.k.copy(k); this.k = k;
      const v = Buffer.alloc(this.v.length * 2); this.v.copy(v); this.v = v;
    }
    return this.count++;
  }
  /** The buffers to encode into: read them after add(), which may replace them. */
  get keyBuf(): Buffer { return this.k; }
  get valueBuf(): Buffer { return this.v; }
  keys(): Buffer { return this.k.subarray(0, this.count * this.keySize); }
  values(): Buffer { return this.v.subarray(0, this.count * this.valueSize); }
  /** The keys as separate buffers (copies). */
  keyList(): Buffer[] {
    const out: Buffer[] = [];
    for (let i = 0; i < this.count; i++) out.push(Buffer.from(this.k.subarray(i * this.keySize, (i + 1) * this.keySize)));
    return out;
  }
}

export class ServiceSync {
  private readonly maps: LbMaps;
  private readonly log: Logger | undefined;
  readonly maglevM: number;
  private live = new Map<string, LiveFrontend>();
  /** Service table key -> frontend id, for entries applied since the last full reconcile. */
  private idByKey = new Map<string, string>();
  /** A full reconcile happened since adoption: incremental ones may follow. */
  private synced = false;
  private readonly svcIds: SmallIds;
  private readonly setIds = new SerialIds(() => new Set([...this.live.values()].map((f) => f.setId)));
  private readonly backendIds = new SerialIds(() => new Set([...this.live.values()].flatMap((f) => f.ids)));
  private statsZero: Buffer | undefined;
  private counts = { slots: 0, backends: 0, maglev: 0 };

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
    return [...this.live.values()].map((f) => ({
      svcId: f.svcId, service: f.entry?.service, portName: f.entry?.portName, vip: f.vip, port: f.port, proto: f.proto, backends: f.ids.length,
    }));
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
    const kept: ServiceTable = new Map();
    const fresh: Array<[string, ServiceEntry]> = [];
    for (const [k, e] of table) {
      const proto = protoOf(e);
      if (proto !== undefined && this.live.has(frontendId(datapathAddr(e.vip), e.port, proto))) kept.set(k, e);
      else fresh.push([k, e]);
    }
    const left: ServiceEntry[] = [];
    for (const [k, e] of fresh) {
      if (kept.size < limit || protoOf(e) === undefined) kept.set(k, e);
      else left.push(e);
    }
    return { table: kept, left };
  }

  // ---------------------------------------------------------------- adoption

  /**
   * Reads the maps into the mirror. Sets, tables and backends no service entry uses
   * (left by an agent that stopped halfway through an update) are deleted; a service
   * whose set is incomplete is marked for rewriting. Live entries are never deleted.
   */
  adopt(): void {
    this.live.clear();
    this.idByKey.clear();
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
        vip: key.vip, port: key.port, proto: key.proto, svcId: val.svcId, setId: val.setId, flags: val.flags,
        affinityTimeout: val.affinityTimeout, ids: [], slotCount: val.count, hasMaglev: false, dirty: false, entry: undefined, adoptedNames: [],
      };
      const names = f.adoptedNames!;
      this.svcIds.mark(val.svcId);
      if (val.setId !== NO_SET) { this.setIds.mark(val.setId); liveSets.add(val.setId); }
      const set = sets.get(val.setId);
      const mine = backendsBySvc.get(val.svcId);
      for (let s = 0; s < val.count; s++) {
        const id = set?.get(s);
        const b = id === undefined ? undefined : mine?.get(id);
        if (id === undefined || b === undefined) { f.dirty = true; continue; }
        if (names.includes(b.name)) f.dirty = true; // the same backend twice: rewrite
        f.ids.push(id);
        names.push(b.name);
      }
      if (set && set.size !== val.count) f.dirty = true;
      f.hasMaglev = maglevSets.has(val.setId);
      if ((val.flags & SVC_F_MAGLEV) !== 0 && val.count > 0 && !f.hasMaglev) f.dirty = true;
      for (const id of f.ids) { liveBackends.add(id); this.backendIds.mark(id); }
      this.live.set(frontendId(f.vip, f.port, f.proto), f);
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
    const incremental = changed !== undefined && this.synced;
    const keys = incremental ? new Set(changed) : undefined;
    const result: ReconcileResult = { created: 0, changed: 0, removed: 0, unchanged: 0, writes: 0, deletes: 0, skipped: [] };
    const backendPut = new Batch(4, 24);
    const slotPut = new Batch(8, 4);
    const maglevPut: Array<[Buffer, Buffer]> = [];
    const statsPut = new Batch(4, this.zeroStats().length);
    const svcPut = new Batch(20, 20);
    const svcDel: Buffer[] = [];
    const slotDel = new Batch(8, 0);
    const maglevDel = new Batch(4, 0);
    const backendDel = new Batch(4, 0);
    /** What the mirror becomes once everything is applied. */
    // Changes are recorded over the mirror and committed only once the maps took them.
    const next = new Overlay(incremental ? this.live : new Map<string, LiveFrontend>());
    const idByKey = new Overlay(incremental ? this.idByKey : new Map<string, string>());
    const freedSvcIds: number[] = [];
    const counts = { ...this.counts };

    const delSet = (f: LiveFrontend): void => {
      for (let s = 0; s < f.slotCount; s++) { const i = slotDel.add(); encodeSlotKey({ setId: f.setId, slot: s }, slotDel.keyBuf, i * 8); }
      counts.slots -= f.slotCount;
      if (f.hasMaglev) { const i = maglevDel.add(); encodeU32(f.setId, maglevDel.keyBuf, i * 4); counts.maglev--; }
    };
    const delBackend = (id: number): void => {
      const i = backendDel.add();
      encodeU32(id, backendDel.keyBuf, i * 4);
      counts.backends--;
    };

    try {
      const entries = keys ? [...keys].map((k) => table.get(k)).filter((e): e is ServiceEntry => e !== undefined) : table.values();
      for (const e of entries) {
        const proto = protoOf(e);
        if (proto === undefined) { result.skipped.push(e.key); continue; }
        const vip = datapathAddr(e.vip);
        const id = frontendId(vip, e.port, proto);
        idByKey.set(e.key, id);
        const old = this.live.get(id);
        // The service table hands over the same entry object when nothing changed.
        if (old && old.entry === e && !old.dirty) { next.set(id, old); result.unchanged++; continue; }

        const flags = (e.algorithm === 'maglev' ? SVC_F_MAGLEV : 0) | (e.affinity ? SVC_F_AFFINITY : 0);
        const timeout = e.affinity ? e.affinity.timeoutSeconds : 0;
        const ips = e.backends.map((b) => datapathAddr(b.ip));
        const names = e.backends.map((b, i) => backendNameOf(ips[i]!, b.port));
        const f: LiveFrontend = old
          ? { ...old, entry: e, adoptedNames: undefined }
          : {
            vip, port: e.port, proto, svcId: this.svcIds.take(), setId: NO_SET, flags, affinityTimeout: timeout,
            ids: [], slotCount: 0, hasMaglev: false, dirty: false, entry: e, adoptedNames: undefined,
          };
        // Counters of a new svc id start at zero (batch values are zero-filled).
        if (!old) { const i = statsPut.add(); encodeU32(f.svcId, statsPut.keyBuf, i * 4); }
        const wantMaglev = (flags & SVC_F_MAGLEV) !== 0 && names.length > 0;
        const oldNames = old ? namesOf(old) : [];
        const sameSet = old !== undefined && !old.dirty && sameList(oldNames, names) && (!wantMaglev || old.hasMaglev);
        if (sameSet) {
          if (old.flags === flags && old.affinityTimeout === timeout) { next.set(id, f); result.unchanged++; continue; }
        } else {
          // 1. the backends this frontend does not have yet, and the new set.
          const reuse = new Map<string, number>();
          if (old && !old.dirty) for (let i = 0; i < oldNames.length; i++) reuse.set(oldNames[i]!, old.ids[i]!);
          const ids: number[] = new Array<number>(names.length);
          for (let i = 0; i < names.length; i++) {
            let bid = reuse.get(names[i]!);
            if (bid === undefined) {
              bid = this.backendIds.take();
              const k = backendPut.add();
              encodeU32(bid, backendPut.keyBuf, k * 4);
              encodeBackend({ ip: ips[i]!, port: e.backends[i]!.port, proto, svcId: f.svcId }, backendPut.valueBuf, k * 24);
              counts.backends++;
            } else {
              reuse.delete(names[i]!);
            }
            ids[i] = bid;
          }
          const setId = ids.length > 0 ? this.setIds.take() : NO_SET;
          for (let s = 0; s < ids.length; s++) {
            const k = slotPut.add();
            encodeSlotKey({ setId, slot: s }, slotPut.keyBuf, k * 8);
            encodeU32(ids[s]!, slotPut.valueBuf, k * 4);
          }
          counts.slots += ids.length;
          if (wantMaglev) {
            const t = maglevTable(names, this.maglevM);
            for (let i = 0; i < t.length; i++) t[i] = ids[t[i]!]!;
            maglevPut.push([encodeU32(setId), encodeMaglevTable(t)]);
            counts.maglev++;
          }
          // 3. (later) the old set and the backends that left (all of them when the old set was broken).
          if (old) {
            delSet(old);
            if (old.dirty) { for (const bid of old.ids) delBackend(bid); } else { for (const bid of reuse.values()) delBackend(bid); }
          }
          f.setId = setId;
          f.ids = ids;
          f.slotCount = ids.length;
          f.hasMaglev = wantMaglev;
          f.dirty = false;
        }
        f.flags = flags;
        f.affinityTimeout = timeout;
        // 2. the switch.
        const k = svcPut.add();
        encodeSvcKey({ vip, port: e.port, proto }, svcPut.keyBuf, k * 20);
        encodeSvcVal({ count: f.ids.length, setId: f.setId, svcId: f.svcId, flags, affinityTimeout: timeout }, svcPut.valueBuf, k * 20);
        next.set(id, f);
        if (old) result.changed++; else result.created++;
      }
      const gone: Array<[string, LiveFrontend]> = [];
      if (keys) {
        for (const k of keys) {
          if (table.has(k)) continue;
          const id = idByKey.get(k);
          const old = id === undefined ? undefined : this.live.get(id);
          idByKey.delete(k);
          if (id !== undefined && old && next.get(id) === old) { next.delete(id); gone.push([id, old]); }
        }
      } else {
        for (const [id, old] of this.live) if (!next.has(id)) gone.push([id, old]);
      }
      for (const [, old] of gone) {
        svcDel.push(encodeSvcKey({ vip: old.vip, port: old.port, proto: old.proto }));
        delSet(old);
        for (const bid of old.ids) delBackend(bid);
        freedSvcIds.push(old.svcId);
        result.removed++;
      }
      // Old and new sets live side by side until the deletions: check the peak.
      this.checkCapacity(next.size + svcDel.length, {
        slots: this.counts.slots + slotPut.count,
        backends: this.counts.backends + backendPut.count,
        maglev: this.counts.maglev + maglevPut.length,
      });

      // Apply: writes first, then the switch, then the deletions.
      result.writes += this.put(this.maps.kw_backend, backendPut);
      result.writes += this.put(this.maps.kw_slot, slotPut);
      for (const [k, v] of maglevPut) this.maps.kw_maglev.update(k, v);
      result.writes += maglevPut.length;
      result.writes += this.put(this.maps.kw_svc_stats, statsPut);
      result.writes += this.put(this.maps.kw_svc, svcPut);
      result.deletes += this.deleteAll(this.maps.kw_svc, svcDel);
      result.deletes += this.deleteBatch(this.maps.kw_slot, slotDel);
      result.deletes += this.deleteBatch(this.maps.kw_maglev, maglevDel);
      result.deletes += this.deleteBatch(this.maps.kw_backend, backendDel);
    } catch (err) {
      // The maps are the truth: read them back so the next reconcile diffs against reality.
      try { this.adopt(); } catch (e2) { this.log?.error({ err: errorMessage(e2) }, 'reading the maps back failed'); }
      if (err instanceof KernwayError) throw err;
      const e = err as { code?: string; map?: string };
      throw new KernwayError('KW_DATAPATH_APPLY', `writing the load balancer maps failed${e.map ? ` (map ${e.map})` : ''}: ${errorMessage(err)}`,
        { code: e.code }, { cause: err });
    }

    for (const id of freedSvcIds) this.svcIds.free(id);
    this.live = next.commit();
    this.idByKey = idByKey.commit();
    this.synced = true;
    this.counts = counts;
    return result;
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

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
