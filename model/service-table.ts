/**
 * The service table: what the socket load balancer needs, one entry per
 * (cluster IP, port, protocol), with the backends chosen as kube-proxy chooses them:
 *
 * - the endpoints of the Service's EndpointSlices of the VIP's address family, matched to
 *   the Service port by port name and protocol (so a named targetPort resolves to each
 *   slice's own port number); the first address of each endpoint; duplicates once;
 * - ready endpoints; when none is ready, the serving-and-terminating ones;
 * - internalTrafficPolicy Local: only this node's endpoints (same rule among them), and
 *   none at all when this node has none;
 * - headless and ExternalName Services (and Services without a cluster IP) have no entry;
 *   a Service with no usable endpoint has an entry with no backend, so connect() can be
 *   refused at once.
 *
 * ServiceTableBuilder recomputes only the Services a model change names, and an entry equal
 * to the one before is that same object (`prev.get(k) === next.get(k)` means "no change").
 */
import { KernwayError } from '../common/errors.js';
import { familyOf, hostPort } from '../k8s/ip.js';
import { KeyedTable } from '../k8s/keyed-table.js';
import { PackedBackends, PackedEndpoints, type Backend } from '../k8s/packed.js';
import { own } from '../k8s/strings.js';
import type { EndpointSlice, IPFamily, LbAlgorithm, Protocol, Service, ServicePort } from '../k8s/types.js';
import type { Model } from './types.js';

export type { Backend } from '../k8s/packed.js';

export interface ServiceEntry {
  /** serviceKey(vip, port, proto), e.g. '10.96.0.10:80/TCP' or '[fd00::10]:53/UDP'. */
  key: string;
  vip: string;
  family: IPFamily;
  port: number;
  proto: Protocol;
  /** Sorted by ip (as text) then port, packed (k8s/packed.ts). Empty: no usable endpoint, refuse. */
  backends: PackedBackends;
  algorithm: LbAlgorithm;
  /** ClientIP session affinity, or null. */
  affinity: { timeoutSeconds: number } | null;
  /** 'ns/name' of the Service. */
  service: string;
  /** The Service port's name ('' when unnamed). */
  portName: string;
  /** True when no endpoint was ready and the backends are serving-and-terminating ones. */
  terminatingFallback: boolean;
}

export type ServiceTable = Map<string, ServiceEntry>;

export interface ServiceTableOptions {
  /** This node's name: internalTrafficPolicy Local keeps only endpoints whose nodeName is this. */
  nodeName: string;
}

export function serviceKey(vip: string, port: number, proto: Protocol): string {
  return own(`${hostPort(vip, port)}/${proto}`); // a flat copy: keys live long, a concatenation keeps its pieces
}

/**
 * An entry the builder made, with the Service object its entries were last built from (not
 * enumerable: an entry reads, spreads and compares as the plain ServiceEntry). That Service's
 * cluster IPs and ports are the keys of all the Service's entries, so the builder finds a
 * Service's entries through the table itself instead of a map per Service (0.44 MiB at 10,000).
 */
class BuiltEntry implements ServiceEntry {
  key: string; vip: string; family: IPFamily; port: number; proto: Protocol; backends: PackedBackends; algorithm: LbAlgorithm;
  affinity: { timeoutSeconds: number } | null; service: string; portName: string; terminatingFallback: boolean;
  #from: Service;
  constructor(svc: Service, vip: string, family: IPFamily, sp: ServicePort, backends: PackedBackends, terminatingFallback: boolean) {
    this.key = serviceKey(vip, sp.port, sp.protocol); this.vip = vip; this.family = family; this.port = sp.port; this.proto = sp.protocol;
    this.backends = backends; this.algorithm = svc.algorithm; this.affinity = svc.affinity; this.service = svc.key; this.portName = sp.name;
    this.terminatingFallback = terminatingFallback; this.#from = svc;
  }
  static from(e: ServiceEntry): Service | undefined { return e instanceof BuiltEntry ? e.#from : undefined; }
  static setFrom(e: ServiceEntry, svc: Service): void { if (e instanceof BuiltEntry) e.#from = svc; }
}

/**
 * Whether `e` is the only entry of its Service (one cluster IP, one port: most Services), so a
 * consumer that sums per Service needs no map for it. False when not known (an entry made
 * elsewhere).
 */
export function aloneInService(e: ServiceEntry): boolean {
  const svc = BuiltEntry.from(e);
  return svc !== undefined && svc.clusterIPs.length === 1 && svc.ports.length === 1;
}

const NO_SLICES: readonly EndpointSlice[] = Object.freeze([]);
const NO_ENTRIES: ServiceEntry[] = Object.freeze([]) as unknown as ServiceEntry[];

/** The whole table, from scratch. */
export function buildServiceTable(model: Model, opts: ServiceTableOptions): ServiceTable {
  checkOptions(opts);
  const table: ServiceTable = new Map();
  for (const svc of model.services.values()) {
    for (const e of serviceEntries(svc, model.slicesByService.get(svc.key) ?? NO_SLICES, opts.nodeName)) if (!table.has(e.key)) table.set(e.key, e);
  }
  return table;
}

/**
 * The service table kept up to date with a ModelBuilder's changes: `update(change)`
 * recomputes only the Services named in the change. `table` is live (the same Map, updated
 * in place); an entry that did not change stays the same object.
 */
export class ServiceTableBuilder {
  /** Each entry under its own key, in a KeyedTable (k8s/keyed-table.ts: one word per slot, 128 KiB at 10,000 entries where a Map takes 448). */
  readonly table: ServiceTable = new KeyedTable<ServiceEntry>((e) => e.key);
  private readonly nodeName: string;

  constructor(opts: ServiceTableOptions) {
    checkOptions(opts);
    this.nodeName = opts.nodeName;
  }

  /**
   * Bring the table in line with `model` for the Services `services` (all Services, and
   * those in the table, when omitted). Returns the keys of the entries added, changed or
   * removed.
   */
  update(model: Model, services?: Iterable<string>): Set<string> {
    const changed = new Set<string>();
    // Each Service's entries before this update, found before anything is changed: through the
    // Service's keys when an entry of it is at one of them, else (a new or removed Service, new
    // cluster IPs or ports) by one pass over the table for all such Services together.
    const before = new Map<string, readonly ServiceEntry[]>();
    let lost: Set<string> | undefined;
    if (services === undefined) {
      const all = new Set(model.services.keys());
      this.table.forEach((e) => { all.add(e.service); });
      lost = all;
    } else {
      for (const svcKey of services) {
        if (before.has(svcKey) || lost?.has(svcKey)) continue;
        const svc = model.services.get(svcKey);
        const prev = svc ? this.entriesFrom(svc) : undefined;
        if (prev) before.set(svcKey, prev);
        else (lost ??= new Set()).add(svcKey);
      }
    }
    if (lost) {
      // A new or removed Service (or new cluster IPs or ports): one pass over the table, with
      // forEach (no iterator result per entry: k8s/keyed-table.ts).
      const found = new Map<string, ServiceEntry[]>();
      const wanted = lost;
      this.table.forEach((e) => {
        if (!wanted.has(e.service)) return;
        const list = found.get(e.service);
        if (list) list.push(e); else found.set(e.service, [e]);
      });
      for (const svcKey of lost) before.set(svcKey, found.get(svcKey) ?? NO_ENTRIES);
    }
    for (const [svcKey, prev] of before) {
      const svc = model.services.get(svcKey);
      const next = svc ? entriesOf(svc, model.slicesByService.get(svcKey) ?? NO_SLICES, this.nodeName, prev) : NO_ENTRIES;
      if (svc) for (const e of next) BuiltEntry.setFrom(e, svc);
      if (prev === next) continue;
      for (const e of prev) {
        if (this.table.get(e.key) === e && !next.some((n) => n.key === e.key)) { this.table.delete(e.key); changed.add(e.key); }
      }
      for (const e of next) {
        if (this.table.get(e.key) !== e) { this.table.set(e.key, e); changed.add(e.key); }
      }
    }
    return changed;
  }

  /**
   * The entries of `svc`'s Service in the table, in the order they were built, when one of
   * them is at one of `svc`'s keys (then the Service they were built from names them all);
   * undefined when none is.
   */
  private entriesFrom(svc: Service): readonly ServiceEntry[] | undefined {
    let from: Service | undefined;
    for (const vip of svc.clusterIPs) {
      for (const sp of svc.ports) {
        const e = this.table.get(serviceKey(vip, sp.port, sp.protocol));
        if (e !== undefined && e.service === svc.key) { from = BuiltEntry.from(e); break; }
      }
      if (from) break;
    }
    if (!from) return undefined;
    const out: ServiceEntry[] = [];
    for (const vip of from.clusterIPs) {
      for (const sp of from.ports) {
        const e = this.table.get(serviceKey(vip, sp.port, sp.protocol));
        if (e !== undefined && e.service === svc.key && BuiltEntry.from(e) === from && !out.includes(e)) out.push(e);
      }
    }
    return out;
  }
}

function checkOptions(opts: ServiceTableOptions): void {
  if (typeof opts?.nodeName !== 'string' || opts.nodeName === '') throw new KernwayError('KW_INVALID_ARGUMENT', 'service table: nodeName must be a non-empty string');
}

/** The entries of `svc` now, reusing those of `prev` that did not change (the same object: nothing to write). */
function entriesOf(svc: Service, slices: readonly EndpointSlice[], nodeName: string, prev: readonly ServiceEntry[]): readonly ServiceEntry[] {
  const entries = serviceEntries(svc, slices, nodeName);
  for (let i = 0; i < entries.length; i++) {
    const old = prev.find((p) => p.key === entries[i]!.key);
    if (old && sameEntry(old, entries[i]!)) entries[i] = old;
  }
  // Kept for long: a copy of exactly its length (an array grown by push keeps room for 16 more).
  return entries.length === prev.length && entries.every((e, i) => e === prev[i]) ? prev : entries.slice();
}

function sameEntry(a: ServiceEntry, b: ServiceEntry): boolean {
  if (a.key !== b.key || a.algorithm !== b.algorithm || a.service !== b.service || a.portName !== b.portName || a.terminatingFallback !== b.terminatingFallback) return false;
  if ((a.affinity?.timeoutSeconds ?? -1) !== (b.affinity?.timeoutSeconds ?? -1)) return false;
  return a.backends.equals(b.backends);
}

/** The entries of one Service (exported for tests and for callers that track Services themselves). */
export function serviceEntries(svc: Service, slices: readonly EndpointSlice[], nodeName: string): ServiceEntry[] {
  if (svc.headless || svc.type === 'ExternalName' || svc.clusterIPs.length === 0) return [];
  const entries: ServiceEntry[] = [];
  for (const vip of svc.clusterIPs) {
    const family = familyOf(vip);
    for (const sp of svc.ports) {
      const { backends, terminatingFallback } = selectBackends(svc, sp, family, slices, nodeName);
      entries.push(new BuiltEntry(svc, vip, family, sp, backends, terminatingFallback));
    }
  }
  return entries;
}

function selectBackends(svc: Service, sp: ServicePort, family: IPFamily, slices: readonly EndpointSlice[], nodeName: string): { backends: PackedBackends; terminatingFallback: boolean } {
  const local = svc.internalTrafficPolicy === 'Local';
  const ready: Backend[] = [];
  const terminating: Backend[] = [];
  let seen: Set<string> | undefined; // only when two slices could hold the same endpoint
  let matched = 0;
  // The one slice matched, while every endpoint of it is taken as ready (the backends can then be a view of it).
  let whole: { slice: EndpointSlice; port: number } | undefined;
  for (const slice of slices) {
    if (slice.addressType !== family) continue;
    // kube-proxy matches slice ports to Service ports by name and protocol; the slice's number
    // is the target port resolved for its endpoints (which is how a named targetPort resolves).
    let port: number | undefined;
    for (const p of slice.ports) if (p.name === sp.name && p.protocol === sp.protocol && p.port !== undefined) { port = p.port; break; }
    if (port === undefined) continue;
    if (++matched === 2) seen = new Set([...ready, ...terminating].map((b) => `${b.ip}|${b.port}`));
    const eps = slice.endpoints;
    for (let i = 0; i < eps.length; i++) {
      const epNode = eps.nodeName(i);
      if (local && epNode !== nodeName) continue;
      const epReady = eps.ready(i);
      const usable = epReady || (eps.serving(i) && eps.terminating(i) && ready.length === 0);
      if (!usable) continue;
      const address = eps.address(i);
      if (seen) {
        const id = `${address}|${port}`;
        if (seen.has(id)) continue;
        seen.add(id);
      } else if (eps.length > 1 && (epReady ? ready : terminating).some((b) => b.ip === address)) {
        continue; // the same address twice in one slice
      }
      const b: Backend = epNode === undefined ? { ip: address, port } : { ip: address, port, nodeName: epNode };
      (epReady ? ready : terminating).push(b);
    }
    whole = matched === 1 && terminating.length === 0 && ready.length === eps.length ? { slice, port } : undefined;
  }
  const eps = whole?.slice.endpoints;
  if (whole !== undefined && eps instanceof PackedEndpoints && eps.isIP && ready.length > 0 && ready.length < 256 && eps.length === ready.length) {
    // ready[i] is endpoint i: the same order as the sort below, as endpoint rows.
    const order = ready.map((_, i) => i);
    if (order.length > 1) order.sort((a, b) => (ready[a]!.ip < ready[b]!.ip ? -1 : ready[a]!.ip > ready[b]!.ip ? 1 : 0));
    return { backends: eps.backends(whole.port, order), terminatingFallback: false };
  }
  const terminatingFallback = ready.length === 0 && terminating.length > 0;
  const grown = ready.length > 0 ? ready : terminating;
  if (grown.length > 1) grown.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.port - b.port));
  return { backends: new PackedBackends(family, grown), terminatingFallback };
}
