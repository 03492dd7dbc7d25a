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
import { hostPort } from '../model/ip.js';
import type { ServiceEntry, ServiceTable } from '../model/service-table.js';
import { canonicalAddr } from './addr.js';
import {
  IPPROTO_TCP, IPPROTO_UDP, SVC_F_AFFINITY, SVC_F_MAGLEV, decodeBackend, decodeSlotKey, decodeSvcKey, decodeSvcVal,
  decodeU32, encodeBackend, encodeMaglevTable, encodeSlotKey, encodeSvcKey, encodeSvcVal, encodeU32,
} from './codec.js';
import { checkLayout, type LbMaps, type MapLike } from './lb-maps.js';
import { maglevTable } from './maglev.js';

/** A frontend as the maps hold it, plus the names we know it by. */
interface LiveFrontend {
  /** `${canonical vip}|${port}|${proto number}` */
  id: string;
  keyBuf: Buffer;
  vip: string;
  port: number;
  proto: number;
  svcId: number;
  setId: number;
  flags: number;
  affinityTimeout: number;
  /** Backend ids of the live set, in slot order. */
  slots: number[];
  /** Slot keys the live set has in the map (= its count; more than slots.length only when adopted broken). */
  slotCount: number;
  /** Backend ids of this frontend by backend name ('ip:port'). */
  backends: Map<string, number>;
  hasMaglev: boolean;
  /** The maps disagree with themselves (found at adoption): rewrite on the next reconcile. */
  dirty: boolean;
  /** The service table entry last applied (same object: nothing to do). */
  entry: ServiceEntry | undefined;
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

/** Ids from 1 up to `limit - 1`, reused only after the counter wraps (so a stale reference misses). */
class IdAllocator {
  private readonly used = new Set<number>();
  private next = 1;
  constructor(private readonly limit: number, private readonly what: string) {}
  take(): number {
    if (this.used.size >= this.limit - 1) throw new KernwayError('KW_MAP_FULL', `no free ${this.what} id: all ${this.limit - 1} are in use`);
    for (;;) {
      const id = this.next;
      this.next = this.next + 1 >= this.limit ? 1 : this.next + 1;
      if (!this.used.has(id)) { this.used.add(id); return id; }
    }
  }
  mark(id: number): void { this.used.add(id); if (id >= this.next && id + 1 < this.limit) this.next = id + 1; }
  free(id: number): void { this.used.delete(id); }
  get size(): number { return this.used.size; }
  reset(): void { this.used.clear(); this.next = 1; }
}

/** Collected map writes of one reconcile, applied phase by phase. */
class Batch {
  readonly keys: Buffer[] = [];
  readonly values: Buffer[] = [];
  put(k: Buffer, v: Buffer): void { this.keys.push(k); this.values.push(v); }
}

export class ServiceSync {
  private readonly maps: LbMaps;
  private readonly log: Logger | undefined;
  readonly maglevM: number;
  private readonly live = new Map<string, LiveFrontend>();
  private readonly svcIds: IdAllocator;
  private readonly setIds = new IdAllocator(0xffffffff, 'backend set');
  private readonly backendIds = new IdAllocator(0xffffffff, 'backend');
  private statsZero: Buffer | undefined;
  private counts = { slots: 0, backends: 0, maglev: 0 };

  constructor(maps: LbMaps, opts: { log?: Logger } = {}) {
    this.maps = maps;
    this.log = opts.log;
    this.maglevM = checkLayout(maps).maglevM;
    // svc_id indexes kw_svc_stats: it must stay below both maps' sizes.
    const limit = Math.min(maps.kw_svc.info().maxEntries, maps.kw_svc_stats.info().maxEntries);
    this.svcIds = new IdAllocator(limit, 'service');
    this.adopt();
  }

  /** Frontends the maps hold now (after adoption or the last reconcile). */
  get size(): number {
    return this.live.size;
  }

  /** The svc ids of live frontends, with the Service they belong to when known. */
  frontends(): Array<{ svcId: number; service: string | undefined; portName: string | undefined; vip: string; port: number; proto: number; backends: number }> {
    return [...this.live.values()].map((f) => ({
      svcId: f.svcId, service: f.entry?.service, portName: f.entry?.portName, vip: f.vip, port: f.port, proto: f.proto, backends: f.slots.length,
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

  // ---------------------------------------------------------------- adoption

  /**
   * Reads the maps into the mirror. Sets, tables and backends no service entry uses
   * (left by an agent that stopped halfway through an update) are deleted; a service
   * whose set is incomplete is marked for rewriting. Live entries are never deleted.
   */
  adopt(): void {
    this.live.clear();
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
        id: `${key.vip}|${key.port}|${key.proto}`, keyBuf: Buffer.from(svc.keys[i]!), vip: key.vip, port: key.port, proto: key.proto,
        svcId: val.svcId, setId: val.setId, flags: val.flags, affinityTimeout: val.affinityTimeout,
        slots: [], slotCount: val.count, backends: new Map(), hasMaglev: false, dirty: false, entry: undefined,
      };
      this.svcIds.mark(val.svcId);
      if (val.setId !== NO_SET) { this.setIds.mark(val.setId); liveSets.add(val.setId); }
      const set = sets.get(val.setId);
      const mine = backendsBySvc.get(val.svcId);
      for (let s = 0; s < val.count; s++) {
        const id = set?.get(s);
        const b = id === undefined ? undefined : mine?.get(id);
        if (id === undefined || b === undefined) { f.dirty = true; continue; }
        f.slots.push(id);
        if (!f.backends.has(b.name)) f.backends.set(b.name, id);
      }
      if (set && set.size !== val.count) f.dirty = true;
      f.hasMaglev = maglevSets.has(val.setId);
      if ((val.flags & SVC_F_MAGLEV) !== 0 && val.count > 0 && !f.hasMaglev) f.dirty = true;
      for (const id of f.backends.values()) { liveBackends.add(id); this.backendIds.mark(id); }
      this.live.set(f.id, f);
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

  /** Makes the maps hold `table`. Throws KW_DATAPATH_APPLY (after re-reading the maps) when a write fails. */
  reconcile(table: ServiceTable): ReconcileResult {
    const result: ReconcileResult = { created: 0, changed: 0, removed: 0, unchanged: 0, writes: 0, deletes: 0, skipped: [] };
    const backendPut = new Batch();
    const slotPut = new Batch();
    const maglevPut = new Batch();
    const statsPut = new Batch();
    const svcPut = new Batch();
    const svcDel: Buffer[] = [];
    const slotDel: Buffer[] = [];
    const maglevDel: Buffer[] = [];
    const backendDel: Buffer[] = [];
    /** What the mirror becomes once everything is applied. */
    const next = new Map<string, LiveFrontend>();
    const freedSvcIds: number[] = [];
    const freedSets: number[] = [];
    const freedBackends: number[] = [];
    const counts = { ...this.counts };
    const taken = { svc: [] as number[], set: [] as number[], backend: [] as number[] };

    try {
      for (const e of table.values()) {
        const proto = protoOf(e);
        if (proto === undefined) { result.skipped.push(e.key); continue; }
        const vip = canonicalAddr(e.vip);
        const id = `${vip}|${e.port}|${proto}`;
        const old = this.live.get(id);
        if (old && old.entry === e && !old.dirty) { next.set(id, old); result.unchanged++; continue; }

        const flags = (e.algorithm === 'maglev' ? SVC_F_MAGLEV : 0) | (e.affinity ? SVC_F_AFFINITY : 0);
        const timeout = e.affinity ? e.affinity.timeoutSeconds : 0;
        const names = e.backends.map((b) => backendNameOf(canonicalAddr(b.ip), b.port));
        const f: LiveFrontend = old
          ? { ...old, backends: new Map(old.backends), entry: e }
          : {
            id, keyBuf: encodeSvcKey({ vip, port: e.port, proto }), vip, port: e.port, proto,
            svcId: 0, setId: NO_SET, flags, affinityTimeout: timeout, slots: [], slotCount: 0, backends: new Map(),
            hasMaglev: false, dirty: false, entry: e,
          };
        if (!old) {
          f.svcId = this.svcIds.take();
          taken.svc.push(f.svcId);
          statsPut.put(encodeU32(f.svcId), this.zeroStats());
        }
        const wantMaglev = (flags & SVC_F_MAGLEV) !== 0 && names.length > 0;
        const sameSet = old !== undefined && !old.dirty && sameNames(old, names) && (!wantMaglev || old.hasMaglev);
        if (sameSet) {
          if (old.flags === flags && old.affinityTimeout === timeout) { next.set(id, f); result.unchanged++; continue; }
        } else {
          // 1. backends this frontend does not have yet, and the new set.
          const ids: number[] = [];
          for (let i = 0; i < names.length; i++) {
            let bid = f.backends.get(names[i]!);
            if (bid === undefined || f.dirty) {
              bid = this.backendIds.take();
              taken.backend.push(bid);
              const b = e.backends[i]!;
              backendPut.put(encodeU32(bid), encodeBackend({ ip: canonicalAddr(b.ip), port: b.port, proto, svcId: f.svcId }));
              if (f.backends.has(names[i]!)) { backendDel.push(encodeU32(f.backends.get(names[i]!)!)); freedBackends.push(f.backends.get(names[i]!)!); counts.backends--; }
              f.backends.set(names[i]!, bid);
              counts.backends++;
            }
            ids.push(bid);
          }
          const setId = ids.length > 0 ? this.setIds.take() : NO_SET;
          if (setId !== NO_SET) taken.set.push(setId);
          for (let s = 0; s < ids.length; s++) slotPut.put(encodeSlotKey({ setId, slot: s }), encodeU32(ids[s]!));
          counts.slots += ids.length;
          if (wantMaglev) {
            const t = maglevTable(names, this.maglevM);
            for (let i = 0; i < t.length; i++) t[i] = ids[t[i]!]!;
            maglevPut.put(encodeU32(setId), encodeMaglevTable(t));
            counts.maglev++;
          }
          // 3. (later) the old set and the backends that left.
          if (old) {
            for (let s = 0; s < old.slotCount; s++) slotDel.push(encodeSlotKey({ setId: old.setId, slot: s }));
            counts.slots -= old.slotCount;
            if (old.hasMaglev) { maglevDel.push(encodeU32(old.setId)); counts.maglev--; }
            if (old.setId !== NO_SET) freedSets.push(old.setId);
            const keep = new Set(names);
            for (const [name, bid] of [...f.backends]) {
              if (!keep.has(name)) { backendDel.push(encodeU32(bid)); freedBackends.push(bid); f.backends.delete(name); counts.backends--; }
            }
          }
          f.setId = setId;
          f.slots = ids;
          f.slotCount = ids.length;
          f.hasMaglev = wantMaglev;
          f.dirty = false;
        }
        f.flags = flags;
        f.affinityTimeout = timeout;
        // 2. the switch.
        svcPut.put(f.keyBuf, encodeSvcVal({ count: f.slots.length, setId: f.setId, svcId: f.svcId, flags, affinityTimeout: timeout }));
        next.set(id, f);
        if (old) result.changed++; else result.created++;
      }
      for (const [id, old] of this.live) {
        if (next.has(id)) continue;
        svcDel.push(old.keyBuf);
        for (let s = 0; s < old.slotCount; s++) slotDel.push(encodeSlotKey({ setId: old.setId, slot: s }));
        counts.slots -= old.slotCount;
        if (old.hasMaglev) { maglevDel.push(encodeU32(old.setId)); counts.maglev--; }
        if (old.setId !== NO_SET) freedSets.push(old.setId);
        for (const bid of old.backends.values()) { backendDel.push(encodeU32(bid)); freedBackends.push(bid); counts.backends--; }
        freedSvcIds.push(old.svcId);
        result.removed++;
      }
      // Old and new sets live side by side until the deletions: check the peak.
      this.checkCapacity(next.size + svcDel.length, {
        slots: this.counts.slots + slotPut.keys.length,
        backends: this.counts.backends + backendPut.keys.length,
        maglev: this.counts.maglev + maglevPut.keys.length,
      });

      // Apply: writes first, then the switch, then the deletions.
      result.writes += this.put(this.maps.kw_backend, backendPut);
      result.writes += this.put(this.maps.kw_slot, slotPut);
      for (let i = 0; i < maglevPut.keys.length; i++) this.maps.kw_maglev.update(maglevPut.keys[i]!, maglevPut.values[i]!);
      result.writes += maglevPut.keys.length;
      for (let i = 0; i < statsPut.keys.length; i++) this.maps.kw_svc_stats.update(statsPut.keys[i]!, statsPut.values[i]!);
      result.writes += this.put(this.maps.kw_svc, svcPut);
      result.deletes += this.deleteAll(this.maps.kw_svc, svcDel);
      result.deletes += this.deleteAll(this.maps.kw_slot, slotDel);
      result.deletes += this.deleteAll(this.maps.kw_maglev, maglevDel);
      result.deletes += this.deleteAll(this.maps.kw_backend, backendDel);
    } catch (err) {
      // The maps are the truth: read them back so the next reconcile diffs against reality.
      try { this.adopt(); } catch (e2) { this.log?.error({ err: errorMessage(e2) }, 'reading the maps back failed'); }
      if (err instanceof KernwayError) throw err;
      const e = err as { code?: string; map?: string };
      throw new KernwayError('KW_DATAPATH_APPLY', `writing the load balancer maps failed${e.map ? ` (map ${e.map})` : ''}: ${errorMessage(err)}`,
        { code: e.code }, { cause: err });
    }

    for (const id of freedSvcIds) this.svcIds.free(id);
    for (const id of freedSets) this.setIds.free(id);
    for (const id of freedBackends) this.backendIds.free(id);
    this.live.clear();
    for (const [k, v] of next) this.live.set(k, v);
    this.counts = counts;
    return result;
  }

  private put(map: MapLike, b: Batch): number {
    if (b.keys.length === 0) return 0;
    return map.batchUpdate(Buffer.concat(b.keys), Buffer.concat(b.values));
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

function sameNames(f: LiveFrontend, names: string[]): boolean {
  if (f.slots.length !== names.length) return false;
  const byId = new Map<number, string>();
  for (const [name, id] of f.backends) byId.set(id, name);
  for (let i = 0; i < names.length; i++) if (byId.get(f.slots[i]!) !== names[i]) return false;
  return true;
}
