/**
 * Planning of the load balancer's reconcile (agent/datapath/service-sync.ts applies it):
 * from the mirror of what the maps hold and the service table, the entries to write and
 * to delete, encoded, in the order they must be applied. Nothing here touches a map, so
 * planners are tested without a kernel (test/datapath/service-plan.test.ts); the only
 * state it changes is the id allocators it is given (ids taken for new sets, backends
 * and services).
 */
import { KernwayError } from '../../common/errors.js';
import { hostPort } from '../../k8s/ip.js';
import { KeyedTable } from '../../k8s/keyed-table.js';
import type { ServiceEntry, ServiceTable } from '../../model/service-table.js';
import { datapathAddr } from './addr.js';
import {
  IPPROTO_TCP, IPPROTO_UDP, SVC_F_AFFINITY, SVC_F_MAGLEV, encodeBackend, encodeMaglevTable, encodeSlotKey, encodeSvcKey, encodeSvcVal, encodeU32,
} from './codec.js';
import { maglevTable } from './maglev.js';

/**
 * A frontend as the maps hold it, plus the Service entry it was written from (its address is
 * the entry's: `addressOf`). One per Service port: each field is 80 KiB at 10,000.
 */
export interface LiveFrontend {
  svcId: number;
  setId: number;
  flags: number;
  affinityTimeout: number;
  /**
   * Backend ids of the live set in slot order (each backend of this frontend once); read them
   * with `idCount`/`idAt`/`idList`. A number n: the `slotCount` ids n, n+1, ... (a set written
   * with new backends only: 8 bytes); otherwise a string of two UTF-16 code units per id (10 ids:
   * 56 bytes; an array of them was 128, 1.2 MiB for 10,000 frontends).
   */
  ids: number | string;
  /** Slot keys the set has in the map: its count (the map may miss some when adopted broken). */
  slotCount: number;
  hasMaglev: boolean;
  /** The maps disagree with themselves (found at adoption): rewrite on the next reconcile. */
  dirty: boolean;
  /** The service table entry last applied (the same object next time: nothing to do). */
  entry: ServiceEntry | undefined;
  /** What adoption read from the maps, until the frontend is written from an entry (then undefined). */
  adopted: AdoptedFrontend | undefined;
}

/** A frontend read from the maps: its address and its backends' names parallel to `ids`. */
export interface AdoptedFrontend { vip: string; port: number; proto: number; names: string[] }

/** A frontend's address as the maps key it (from adoption, or from its entry). */
export function addressOf(f: LiveFrontend): { vip: string; port: number; proto: number } {
  if (f.adopted) return f.adopted;
  const e = f.entry!;
  return { vip: datapathAddr(e.vip), port: e.port, proto: protoOf(e)! };
}

/** Backend ids packed as `LiveFrontend.ids` holds them, for a set of `slotCount` slots. */
export function packIds(ids: readonly number[], slotCount: number): number | string {
  const n = ids.length;
  if (n > 0 && n === slotCount && ids[n - 1] === ids[0]! + n - 1) {
    let run = true;
    for (let i = 1; i < n && run; i++) run = ids[i] === ids[0]! + i;
    if (run) return ids[0]!;
  }
  const units = new Array<number>(n * 2);
  for (let i = 0; i < n; i++) { const id = ids[i]!; units[2 * i] = id >>> 16; units[2 * i + 1] = id & 0xffff; }
  let out = '';
  // fromCharCode with a bounded number of arguments; one call (a flat string) in the common case.
  for (let i = 0; i < units.length; i += 8192) out += String.fromCharCode.apply(null, units.slice(i, i + 8192));
  return out;
}

export const NO_IDS = '';

export function idCount(f: Pick<LiveFrontend, 'ids' | 'slotCount'>): number {
  return typeof f.ids === 'number' ? f.slotCount : f.ids.length >> 1;
}

export function idAt(f: Pick<LiveFrontend, 'ids'>, i: number): number {
  const ids = f.ids;
  return typeof ids === 'number' ? ids + i : ids.charCodeAt(2 * i) * 0x10000 + ids.charCodeAt(2 * i + 1);
}

export function idList(f: Pick<LiveFrontend, 'ids' | 'slotCount'>): number[] {
  const out = new Array<number>(idCount(f));
  for (let i = 0; i < out.length; i++) out[i] = idAt(f, i);
  return out;
}

/**
 * A frontend's id, the key of the mirror: the text of the service table's key for it
 * (`10.96.0.1:80/TCP`, model/service-table.ts serviceKey), so that the mirror keys a frontend
 * written from a table entry by the entry's own key string (`entryFrontendId`), not a string of
 * its own (0.3 MiB for 10,000 frontends).
 */
export function frontendId(vip: string, port: number, proto: number): string {
  // join makes one flat string; a template of 13 characters or more is a tree of V8 cons
  // strings, kept as such by the maps it keys (docs/agent-model.md).
  return [hostPort(vip, port), proto === IPPROTO_TCP ? 'TCP' : proto === IPPROTO_UDP ? 'UDP' : String(proto)].join('/');
}

/** The frontend id of a table entry whose address in the datapath's form is `vip`: the entry's key when it is that text. */
export function entryFrontendId(e: ServiceEntry, vip: string, proto: number): string {
  const id = frontendId(vip, e.port, proto);
  return id === e.key ? e.key : id;
}

/** Backend names ('ip:port') parallel to f.ids. */
export function namesOf(f: LiveFrontend): readonly string[] {
  if (f.adopted) return f.adopted.names;
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

export const NO_SET = 0;

export function protoOf(e: ServiceEntry): number | undefined {
  return e.proto === 'TCP' ? IPPROTO_TCP : e.proto === 'UDP' ? IPPROTO_UDP : undefined;
}

export function backendNameOf(ip: string, port: number): string {
  return hostPort(ip, port);
}

/** svc ids: 0 .. limit-1 (they index kw_svc_stats), lowest free first; a bitmap (a Set of 10,000 was 0.3 MiB). */
export class SmallIds {
  private readonly used: Uint8Array;
  private count = 0;
  private next = 0;
  constructor(private readonly limit: number) { this.used = new Uint8Array((limit + 7) >> 3); }
  private has(id: number): boolean { return (this.used[id >> 3]! & (1 << (id & 7))) !== 0; }
  take(): number {
    if (this.count >= this.limit) throw new KernwayError('KW_MAP_FULL', `no free service id: all ${this.limit} are in use; raise the capacity of kw_svc and kw_svc_stats`);
    while (this.has(this.next)) this.next = this.next + 1 >= this.limit ? 0 : this.next + 1;
    this.mark(this.next);
    return this.next;
  }
  mark(id: number): void {
    if (id < 0 || id >= this.limit || this.has(id)) return;
    this.used[id >> 3] = this.used[id >> 3]! | (1 << (id & 7));
    this.count++;
  }
  free(id: number): void {
    if (id < 0 || id >= this.limit || !this.has(id)) return;
    this.used[id >> 3] = this.used[id >> 3]! & ~(1 << (id & 7));
    this.count--;
    if (id < this.next) this.next = id;
  }
  reset(): void { this.used.fill(0); this.count = 0; this.next = 0; }
}

/**
 * Set and backend ids: a counter over 1 .. 2^32-2, so an id is not reused before four
 * billion others (a connect() holding a stale id misses). After a wrap, ids still in
 * use (asked to `inUse`) are skipped.
 */
export class SerialIds {
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

/** What an Overlay reads through and commits to: a Map, or the compact `Mirror`. */
export interface FrontendMap<K, V> {
  readonly size: number;
  get(k: K): V | undefined;
  has(k: K): boolean;
  set(k: K, v: V): unknown;
  delete(k: K): unknown;
  [Symbol.iterator](): IterableIterator<[K, V]>;
  values(): IterableIterator<V>;
}

/** Changes over a map, read through, applied to it by commit() (a failed reconcile leaves it as it was). */
export class Overlay<K, V, B extends FrontendMap<K, V> = Map<K, V>> {
  private readonly changes = new Map<K, V | undefined>();
  constructor(private readonly base: B) {}
  get(k: K): V | undefined { return this.changes.has(k) ? this.changes.get(k) : this.base.get(k); }
  has(k: K): boolean { return this.get(k) !== undefined; }
  set(k: K, v: V): void { this.changes.set(k, v); }
  delete(k: K): void { this.changes.set(k, undefined); }
  /** Whether `k` was set or deleted over the base. */
  touched(k: K): boolean { return this.changes.has(k); }
  get size(): number {
    let n = this.base.size;
    for (const [k, v] of this.changes) n += (v !== undefined ? 1 : 0) - (this.base.has(k) ? 1 : 0);
    return n;
  }
  commit(): B {
    for (const [k, v] of this.changes) if (v === undefined) this.base.delete(k); else this.base.set(k, v);
    return this.base;
  }
}

const HAS_MAGLEV = 1, DIRTY = 2, IDS_TEXT = 4;

/**
 * The mirror of the maps' frontends by frontend id, compact: each frontend's numbers in typed
 * arrays at a slot of its own, its entry and backend id text in two arrays, what adoption read
 * in a map of the few adopted frontends not yet rewritten. A LiveFrontend object per frontend
 * was 104 bytes (0.99 MiB at 10,000); `get` and iteration make one on demand (the planner
 * reads only the frontends of changed keys, or all of them in a whole reconcile). A record
 * read is a copy: change it and `set` it back.
 */
export class Mirror implements FrontendMap<string, LiveFrontend> {
  /** Each frontend's id, by slot. */
  /**
   * A frontend's id where it is not its entry's key (no entry: adopted and not yet rewritten;
   * or another text of the address), by slot. Nearly every frontend's id is its entry's key.
   */
  private readonly ownId = new Map<number, string>();
  /** Slots by their frontend's id (k8s/keyed-table.ts: the id read from the slot's entry, one word per slot: 128 KiB at 10,000 where a Map takes 448). */
  private readonly slotOf = new KeyedTable<number>((s) => this.idOf(s)!);

  /** The id of the frontend at slot `s`, or undefined for a free slot. */
  private idOf(s: number): string | undefined {
    return this.ownId.size > 0 ? this.ownId.get(s) ?? this.entryAt[s]?.key : this.entryAt[s]?.key;
  }
  private readonly freeSlots: number[] = [];
  private end = 0;
  private svcId = new Uint32Array(0);
  private setId = new Uint32Array(0);
  private flags = new Uint32Array(0);
  private affinityTimeout = new Uint32Array(0);
  private slotCount = new Uint32Array(0);
  private firstId = new Uint32Array(0);
  private bits = new Uint8Array(0);
  private readonly entryAt: Array<ServiceEntry | undefined> = [];
  private readonly idsText: Array<string | undefined> = [];
  private readonly adoptedAt = new Map<number, AdoptedFrontend>();

  /** A mirror holding `from`'s frontends. */
  static of(from: Iterable<[string, LiveFrontend]> & { readonly size?: number }): Mirror {
    const m = new Mirror();
    if (from.size !== undefined) { m.grow(from.size); m.slotOf.reserve(from.size); } // exactly: a mirror made after a whole reconcile holds them all
    for (const [id, f] of from) m.set(id, f);
    return m;
  }

  get size(): number { return this.slotOf.size; }
  has(id: string): boolean { return this.slotOf.has(id); }

  get(id: string): LiveFrontend | undefined {
    const s = this.slotOf.get(id);
    return s === undefined ? undefined : this.at(s);
  }

  set(id: string, f: LiveFrontend): this {
    let s = this.slotOf.get(id);
    const fresh = s === undefined;
    if (fresh) s = this.take();
    // The slot's id stays `id` whatever its entry is now.
    if (f.entry?.key === id) { this.entryAt[s!] = f.entry; this.ownId.delete(s!); } else { this.ownId.set(s!, id); this.entryAt[s!] = f.entry; }
    if (fresh) this.slotOf.add(s!);
    const at = s!;
    this.svcId[at] = f.svcId;
    this.setId[at] = f.setId;
    this.flags[at] = f.flags;
    this.affinityTimeout[at] = f.affinityTimeout;
    this.slotCount[at] = f.slotCount;
    const text = typeof f.ids === 'string';
    this.firstId[at] = text ? 0 : f.ids as number;
    this.idsText[at] = text ? f.ids as string : undefined;
    this.bits[at] = (f.hasMaglev ? HAS_MAGLEV : 0) | (f.dirty ? DIRTY : 0) | (text ? IDS_TEXT : 0);
    if (f.adopted) this.adoptedAt.set(at, f.adopted); else this.adoptedAt.delete(at);
    return this;
  }

  delete(id: string): boolean {
    const s = this.slotOf.get(id);
    if (s === undefined) return false;
    this.slotOf.delete(id);
    this.ownId.delete(s);
    this.entryAt[s] = undefined;
    this.idsText[s] = undefined;
    this.adoptedAt.delete(s);
    this.freeSlots.push(s);
    return true;
  }

  clear(): void {
    this.slotOf.clear();
    this.ownId.clear();
    this.freeSlots.length = 0;
    this.end = 0;
    this.entryAt.length = 0;
    this.idsText.length = 0;
    this.adoptedAt.clear();
  }

  /** In slot order: the order frontends were set in, until a deleted one's slot is reused. */
  *entries(): IterableIterator<[string, LiveFrontend]> {
    for (let s = 0; s < this.end; s++) { const id = this.idOf(s); if (id !== undefined) yield [id, this.at(s)]; }
  }
  [Symbol.iterator](): IterableIterator<[string, LiveFrontend]> { return this.entries(); }
  *values(): IterableIterator<LiveFrontend> {
    for (let s = 0; s < this.end; s++) if (this.idOf(s) !== undefined) yield this.at(s);
  }

  /** Calls `fn` with each frontend's svc id and entry, making no record. */
  forEachEntry(fn: (svcId: number, entry: ServiceEntry | undefined, id: string) => void): void {
    for (let s = 0; s < this.end; s++) { const id = this.idOf(s); if (id !== undefined) fn(this.svcId[s]!, this.entryAt[s], id); }
  }

  private at(s: number): LiveFrontend {
    const bits = this.bits[s]!;
    return {
      svcId: this.svcId[s]!, setId: this.setId[s]!, flags: this.flags[s]!, affinityTimeout: this.affinityTimeout[s]!,
      ids: (bits & IDS_TEXT) !== 0 ? this.idsText[s]! : this.firstId[s]!, slotCount: this.slotCount[s]!,
      hasMaglev: (bits & HAS_MAGLEV) !== 0, dirty: (bits & DIRTY) !== 0, entry: this.entryAt[s], adopted: this.adoptedAt.get(s),
    };
  }

  private take(): number {
    const s = this.freeSlots.pop();
    if (s !== undefined) return s;
    if (this.end >= this.svcId.length) this.grow(Math.max(64, Math.ceil(this.end * 1.25)));
    return this.end++;
  }

  private grow(n: number): void {
    const g = <T extends Uint32Array | Uint8Array>(a: T): T => { const b = new (a.constructor as new (n: number) => T)(n); b.set(a); return b; };
    this.svcId = g(this.svcId); this.setId = g(this.setId); this.flags = g(this.flags); this.affinityTimeout = g(this.affinityTimeout);
    this.slotCount = g(this.slotCount); this.firstId = g(this.firstId); this.bits = g(this.bits);
  }
}

/** Map entries of one reconcile, encoded in place into one growing buffer pair. */
export class Batch {
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

/** Entries in use per map, as the agent wrote them. */
export interface EntryCounts { slots: number; backends: number; maglev: number }

/** What the planner reads: the mirror of the maps (not changed by planning). */
export interface ServiceState {
  /** By frontend id; a table key's frontend is the one whose `entry` has that key (no second map: 0.44 MiB at 10,000). */
  live: FrontendMap<string, LiveFrontend>;
  /** A full reconcile happened since adoption: incremental ones may follow. */
  synced: boolean;
  counts: EntryCounts;
}

export interface IdSource { take(): number }

export interface PlanOptions {
  ids: { svc: IdSource; set: IdSource; backend: IdSource };
  maglevM: number;
  /** Value size of kw_svc_stats (the zeroed counters written for a new svc id). */
  statsValueSize: number;
}

/** One reconcile's writes and deletions, in apply order, and the mirror once applied. */
export interface ServicePlan {
  result: ReconcileResult;
  /** 1. new backends, new sets' slots, Maglev tables, zeroed counters of new svc ids. */
  backendPut: Batch;
  slotPut: Batch;
  maglevPut: Array<[Buffer, Buffer]>;
  statsPut: Batch;
  /** 2. the switch: service entries. */
  svcPut: Batch;
  /** 3. removed services, old sets, old Maglev tables, backends no longer used. */
  svcDel: Buffer[];
  slotDel: Batch;
  maglevDel: Batch;
  backendDel: Batch;
  /** The mirror once applied (commit() after the maps took it). */
  next: Overlay<string, LiveFrontend, FrontendMap<string, LiveFrontend>>;
  freedSvcIds: number[];
  counts: EntryCounts;
  /** Entries held at the peak (old and new sets side by side until the deletions). */
  peak: { frontends: number } & EntryCounts;
}

/**
 * Plans making the maps hold `table`. With `changed` (the table keys added, changed or
 * removed since the last call) only those are looked at, unless the state is not synced.
 */
export function planServices(state: ServiceState, table: ServiceTable, changed: Iterable<string> | undefined, opts: PlanOptions): ServicePlan {
  const incremental = changed !== undefined && state.synced;
  const keys = incremental ? new Set(changed) : undefined;
  const { ids } = opts;
  const result: ReconcileResult = { created: 0, changed: 0, removed: 0, unchanged: 0, writes: 0, deletes: 0, skipped: [] };
  const backendPut = new Batch(4, 24);
  const slotPut = new Batch(8, 4);
  const maglevPut: Array<[Buffer, Buffer]> = [];
  const statsPut = new Batch(4, opts.statsValueSize);
  const svcPut = new Batch(20, 20);
  const svcDel: Buffer[] = [];
  const slotDel = new Batch(8, 0);
  const maglevDel = new Batch(4, 0);
  const backendDel = new Batch(4, 0);
  // Changes are recorded over the mirror and committed only once the maps took them.
  const next = new Overlay<string, LiveFrontend, FrontendMap<string, LiveFrontend>>(incremental ? state.live : new Map<string, LiveFrontend>());
  const freedSvcIds: number[] = [];
  const counts = { ...state.counts };

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

  const entries = keys ? [...keys].map((k) => table.get(k)).filter((e): e is ServiceEntry => e !== undefined) : table.values();
  for (const e of entries) {
    const proto = protoOf(e);
    if (proto === undefined) { result.skipped.push(e.key); continue; }
    const vip = datapathAddr(e.vip);
    const id = entryFrontendId(e, vip, proto);
    const old = state.live.get(id);
    // The service table hands over the same entry object when nothing changed.
    if (old && old.entry === e && !old.dirty) { next.set(id, old); result.unchanged++; continue; }

    const flags = (e.algorithm === 'maglev' ? SVC_F_MAGLEV : 0) | (e.affinity ? SVC_F_AFFINITY : 0);
    const timeout = e.affinity ? e.affinity.timeoutSeconds : 0;
    const ips = e.backends.map((b) => datapathAddr(b.ip));
    const names = e.backends.map((b, i) => backendNameOf(ips[i]!, b.port));
    const f: LiveFrontend = old
      ? { ...old, entry: e, adopted: undefined }
      : {
        svcId: ids.svc.take(), setId: NO_SET, flags, affinityTimeout: timeout,
        ids: NO_IDS, slotCount: 0, hasMaglev: false, dirty: false, entry: e, adopted: undefined,
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
      if (old && !old.dirty) for (let i = 0; i < oldNames.length; i++) reuse.set(oldNames[i]!, idAt(old, i));
      const bids: number[] = new Array<number>(names.length);
      for (let i = 0; i < names.length; i++) {
        let bid = reuse.get(names[i]!);
        if (bid === undefined) {
          bid = ids.backend.take();
          const k = backendPut.add();
          encodeU32(bid, backendPut.keyBuf, k * 4);
          encodeBackend({ ip: ips[i]!, port: e.backends.port(i), proto, svcId: f.svcId }, backendPut.valueBuf, k * 24);
          counts.backends++;
        } else {
          reuse.delete(names[i]!);
        }
        bids[i] = bid;
      }
      const setId = bids.length > 0 ? ids.set.take() : NO_SET;
      for (let s = 0; s < bids.length; s++) {
        const k = slotPut.add();
        encodeSlotKey({ setId, slot: s }, slotPut.keyBuf, k * 8);
        encodeU32(bids[s]!, slotPut.valueBuf, k * 4);
      }
      counts.slots += bids.length;
      if (wantMaglev) {
        const t = maglevTable(names, opts.maglevM);
        for (let i = 0; i < t.length; i++) t[i] = bids[t[i]!]!;
        maglevPut.push([encodeU32(setId), encodeMaglevTable(t)]);
        counts.maglev++;
      }
      // 3. (later) the old set and the backends that left (all of them when the old set was broken).
      if (old) {
        delSet(old);
        if (old.dirty) { for (let i = 0; i < idCount(old); i++) delBackend(idAt(old, i)); } else { for (const bid of reuse.values()) delBackend(bid); }
      }
      f.setId = setId;
      f.ids = packIds(bids, bids.length);
      f.slotCount = bids.length;
      f.hasMaglev = wantMaglev;
      f.dirty = false;
    }
    f.flags = flags;
    f.affinityTimeout = timeout;
    // 2. the switch.
    const k = svcPut.add();
    encodeSvcKey({ vip, port: e.port, proto }, svcPut.keyBuf, k * 20);
    encodeSvcVal({ count: idCount(f), setId: f.setId, svcId: f.svcId, flags, affinityTimeout: timeout }, svcPut.valueBuf, k * 20);
    next.set(id, f);
    if (old) result.changed++; else result.created++;
  }
  const gone: Array<[string, LiveFrontend]> = [];
  if (keys) {
    // Keys gone from the table: their frontends are those last written from an entry of that key
    // (one pass over the mirror, only when something was removed).
    const removed = new Set<string>();
    for (const k of keys) if (!table.has(k)) removed.add(k);
    if (removed.size > 0) {
      for (const [id, old] of state.live) {
        if (old.entry !== undefined && removed.has(old.entry.key) && !next.touched(id)) { next.delete(id); gone.push([id, old]); }
      }
    }
  } else {
    for (const [id, old] of state.live) if (!next.has(id)) gone.push([id, old]);
  }
  for (const [, old] of gone) {
    svcDel.push(encodeSvcKey(addressOf(old)));
    delSet(old);
    for (let i = 0; i < idCount(old); i++) delBackend(idAt(old, i));
    freedSvcIds.push(old.svcId);
    result.removed++;
  }
  const peak = {
    frontends: next.size + svcDel.length,
    slots: state.counts.slots + slotPut.count,
    backends: state.counts.backends + backendPut.count,
    maglev: state.counts.maglev + maglevPut.length,
  };
  return { result, backendPut, slotPut, maglevPut, statsPut, svcPut, svcDel, slotDel, maglevDel, backendDel, next, freedSvcIds, counts, peak };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
