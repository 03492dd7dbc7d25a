/**
 * The agent's objects as the feed serves them: every object of the model's kinds, keyed
 * (sources/feed/protocol.ts `resourceKey`), with its wire form encoded once, and the
 * namespace slices cut from them (docs/feed.md, "What a waypoint receives"):
 *
 * - every object of the waypoint's namespace;
 * - cluster-scoped objects (Namespaces, GatewayClasses);
 * - Pods of every namespace (address → workload and identity, for source metrics and L7
 *   authorization), without their annotations outside the waypoint's namespace;
 * - HTTPRoutes of other namespaces attached to a parent (Gateway or Service) in it, and the
 *   Services (with their EndpointSlices) those routes send to in their own namespace;
 * - a Service of a third namespace that a route of the slice sends to, when a
 *   ReferenceGrant there allows it, with that ReferenceGrant (the waypoint checks it again).
 *
 * Namespaced policies (AuthorizationPolicy, BackendTrafficPolicy: their targetRefs are
 * local) travel with their namespace. The extension point for a new kind: its entry in
 * k8s/kinds.ts and in the protocol's SHAPES (sources/feed/protocol.ts); a place here only
 * when it must reach other namespaces' waypoints (a rule like the routes').
 */
import { parseObject, type KnownKind, type KnownObject } from '../../k8s/kinds.js';
import type { HTTPRoute, ObjectRef, ReferenceGrant } from '../../k8s/gateway-api-types.js';
import { GATEWAY_GROUP } from '../../k8s/gateway-api-types.js';
import type { Pod, SourcedObject } from '../../k8s/types.js';
import { encodeObject, objectName, resourceKey, type WireResource } from '../../sources/feed/protocol.js';

export interface Entry {
  key: string;
  kind: KnownKind;
  namespace: string | undefined;
  obj: KnownObject;
  file: string;
  index: number;
  /** 'ns/name' of the Service a Service or EndpointSlice belongs to. */
  service?: string;
  wire?: Buffer;
  /** A Pod's wire form for other namespaces' waypoints (no annotations). */
  foreignWire?: Buffer;
}

/** What a namespace's slice holds beyond its own objects and the global ones. */
export interface Extras {
  /** Routes and ReferenceGrants of other namespaces. */
  keys: ReadonlySet<string>;
  /** 'ns/name' of Services of other namespaces (their Service and EndpointSlice objects). */
  services: ReadonlySet<string>;
}

export interface IndexChange {
  version: number;
  /** Keys added, replaced or removed. */
  changed: ReadonlySet<string>;
  /** Routes or ReferenceGrants changed: slices' extras must be computed again. */
  routing: boolean;
}

const GLOBAL_KINDS = new Set<KnownKind>(['Namespace', 'GatewayClass', 'Pod']);

export class FeedIndex {
  version = 0;
  readonly entries = new Map<string, Entry>();
  private readonly byNamespace = new Map<string, Set<string>>();
  private readonly global = new Set<string>();
  private readonly byService = new Map<string, Set<string>>();
  private readonly routes = new Map<string, Entry>();
  private readonly grants = new Map<string, Entry>();
  private extrasCache = new Map<string, Extras>();

  /** Apply one batch of the agent's source (removed first). */
  apply(added: readonly SourcedObject[], removed: readonly SourcedObject[]): IndexChange {
    const changed = new Set<string>();
    let routing = false;
    for (const src of removed) {
      const e = this.entryOf(src);
      if (!e || !this.entries.has(e.key)) continue;
      this.remove(this.entries.get(e.key)!);
      changed.add(e.key);
      if (e.kind === 'HTTPRoute' || e.kind === 'ReferenceGrant') routing = true;
    }
    for (const src of added) {
      const e = this.entryOf(src);
      if (!e) continue;
      const had = this.entries.get(e.key);
      if (had) this.remove(had);
      this.add(e);
      changed.add(e.key);
      if (e.kind === 'HTTPRoute' || e.kind === 'ReferenceGrant') routing = true;
    }
    if (routing) this.extrasCache = new Map();
    if (changed.size > 0) this.version++;
    return { version: this.version, changed, routing };
  }

  private entryOf(src: SourcedObject): Entry | undefined {
    const obj = parseObject(src).object;
    if (!obj) return undefined;
    const id = objectName(obj);
    const e: Entry = { key: resourceKey(id.kind, id.namespace, id.name, src.file, src.index), kind: id.kind, namespace: id.namespace, obj, file: src.file, index: src.index };
    if (obj.kind === 'Service') e.service = obj.value.key;
    else if (obj.kind === 'EndpointSlice') e.service = obj.value.serviceKey;
    return e;
  }

  private add(e: Entry): void {
    this.entries.set(e.key, e);
    if (GLOBAL_KINDS.has(e.kind)) this.global.add(e.key);
    if (e.namespace !== undefined) setOf(this.byNamespace, e.namespace).add(e.key);
    if (e.service) setOf(this.byService, e.service).add(e.key);
    if (e.kind === 'HTTPRoute') this.routes.set(e.key, e);
    if (e.kind === 'ReferenceGrant') this.grants.set(e.key, e);
  }

  private remove(e: Entry): void {
    this.entries.delete(e.key);
    this.global.delete(e.key);
    if (e.namespace !== undefined) dropFrom(this.byNamespace, e.namespace, e.key);
    if (e.service) dropFrom(this.byService, e.service, e.key);
    this.routes.delete(e.key);
    this.grants.delete(e.key);
  }

  /** Routes and grants of other namespaces that a namespace's slice holds, and their Services. */
  extras(ns: string): Extras {
    let x = this.extrasCache.get(ns);
    if (x) return x;
    const keys = new Set<string>();
    const services = new Set<string>();
    for (const r of this.routes.values()) {
      const route = (r.obj.value as HTTPRoute);
      const rns = route.meta.namespace;
      if (rns !== ns && !route.parentRefs.some((p) => p.namespace === ns)) continue;
      if (rns !== ns) keys.add(r.key);
      for (const rule of route.rules) {
        const mirrors = [...rule.filters, ...rule.backendRefs.flatMap((b) => b.filters)].flatMap((f) => (f.type === 'RequestMirror' ? [f.backend] : []));
        const refs: readonly ObjectRef[] = [...rule.backendRefs, ...mirrors];
        for (const ref of refs) {
          if (ref.group !== '' || ref.kind !== 'Service' || ref.namespace === ns) continue;
          if (ref.namespace === rns) { services.add(`${ref.namespace}/${ref.name}`); continue; }
          let allowed = false;
          for (const g of this.grants.values()) {
            const grant = g.obj.value as ReferenceGrant;
            if (grant.meta.namespace !== ref.namespace) continue;
            if (!grant.from.some((f) => f.group === GATEWAY_GROUP && f.kind === 'HTTPRoute' && f.namespace === rns)) continue;
            if (!grant.to.some((t) => t.group === '' && t.kind === 'Service' && (t.name === undefined || t.name === ref.name))) continue;
            keys.add(g.key);
            allowed = true;
          }
          if (allowed) services.add(`${ref.namespace}/${ref.name}`);
        }
      }
    }
    x = { keys, services };
    this.extrasCache.set(ns, x);
    return x;
  }

  /** Whether the object under `key` is in namespace `ns`'s slice. */
  member(ns: string, e: Entry, x: Extras = this.extras(ns)): boolean {
    if (e.namespace === ns || this.global.has(e.key)) return true;
    if (x.keys.has(e.key)) return true;
    return e.service !== undefined && x.services.has(e.service);
  }

  /** Every key of namespace `ns`'s slice. */
  *slice(ns: string): Iterable<string> {
    const x = this.extras(ns);
    yield* this.byNamespace.get(ns) ?? [];
    for (const k of this.global) if (this.entries.get(k)!.namespace !== ns) yield k;
    for (const k of x.keys) yield k;
    for (const s of x.services) yield* this.byService.get(s) ?? [];
  }

  /** Keys whose membership may differ between two extras (a routing change). */
  *extrasKeys(x: Extras): Iterable<string> {
    yield* x.keys;
    for (const s of x.services) yield* this.byService.get(s) ?? [];
  }

  /** The wire form of an object for namespace `ns`'s waypoint (encoded once, shared by all waypoints). */
  resource(e: Entry, ns: string): WireResource {
    if (e.kind === 'Pod' && e.namespace !== ns) {
      if (!e.foreignWire) {
        const p = e.obj.value as Pod;
        e.foreignWire = encodeObject({ kind: 'Pod', value: { ...p, annotations: {} } });
      }
      return { key: e.key, object: e.foreignWire, file: e.file, index: e.index };
    }
    e.wire ??= encodeObject(e.obj);
    return { key: e.key, object: e.wire, file: e.file, index: e.index };
  }

  /** The Pod with this uid, if the model has it. */
  podByUid(uid: string): Pod | undefined {
    for (const k of this.global) {
      const e = this.entries.get(k)!;
      if (e.kind === 'Pod' && (e.obj.value as Pod).uid === uid) return e.obj.value as Pod;
    }
    return undefined;
  }

  /** A Pod by namespace and name. */
  pod(namespace: string, name: string): Pod | undefined {
    for (const k of this.byNamespace.get(namespace) ?? []) {
      const e = this.entries.get(k)!;
      if (e.kind === 'Pod' && (e.obj.value as Pod).name === name) return e.obj.value as Pod;
    }
    return undefined;
  }
}

function setOf(m: Map<string, Set<string>>, k: string): Set<string> {
  let s = m.get(k);
  if (!s) m.set(k, (s = new Set()));
  return s;
}

function dropFrom(m: Map<string, Set<string>>, k: string, v: string): void {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}
