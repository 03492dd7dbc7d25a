/** The desired state built from the Kubernetes objects: what the datapath and the waypoint read. */
import type { Gateway, GatewayClass, HTTPRoute, ReferenceGrant } from '../k8s/gateway-api-types.js';
import type { AuthorizationPolicy } from '../k8s/policy-types.js';
import type { BackendTrafficPolicy } from '../k8s/traffic-policy-types.js';
import { KeyedTable } from '../k8s/keyed-table.js';
import type { EndpointSlice, Namespace, Pod, Problem, Service } from '../k8s/types.js';

/**
 * Everything the datapath and the waypoint are built from. The objects (Service,
 * EndpointSlice...) are the vocabulary's slim forms, immutable and shared between
 * snapshots; the maps of a Model made by a ModelBuilder are live: they reflect the
 * builder's latest update. Of an object defined twice, the first by origin is in force.
 */
export interface Model {
  /**
   * By 'ns/name': the Services in use (a Service that lost its cluster IP to another is not).
   * A ModelBuilder's is a KeyedTable (each Service under its own `key`; no insertion order).
   */
  services: ReadonlyMap<string, Service>;
  /** By the 'ns/name' of the Service named in the slices' label; each list sorted by slice name. The
   *  Service may be missing (or unused): such slices are reported in `problems` and balance nothing. */
  slicesByService: ReadonlyMap<string, readonly EndpointSlice[]>;
  /** By 'ns/name'. */
  pods: ReadonlyMap<string, Pod>;
  /** By name. */
  namespaces: ReadonlyMap<string, Namespace>;
  /** kernway.io AuthorizationPolicies, by 'ns/name'. */
  policies: ReadonlyMap<string, AuthorizationPolicy>;
  /** kernway.io BackendTrafficPolicies, by 'ns/name' (the waypoint's: see model/traffic-policy.ts for attachment). */
  trafficPolicies: ReadonlyMap<string, BackendTrafficPolicy>;
  /** Gateway API: GatewayClasses by name; Gateways, HTTPRoutes and ReferenceGrants by 'ns/name'. */
  gatewayClasses: ReadonlyMap<string, GatewayClass>;
  gateways: ReadonlyMap<string, Gateway>;
  routes: ReadonlyMap<string, HTTPRoute>;
  grants: ReadonlyMap<string, ReferenceGrant>;
  /** Every problem of the objects handed to the builder: invalid objects, duplicates, cross-object problems. */
  problems: Problem[];
}

/** The keyed kinds of a Model, besides Services and EndpointSlices (which are tracked per Service). */
export type KeyedKind = 'pods' | 'namespaces' | 'policies' | 'trafficPolicies' | 'gatewayClasses' | 'gateways' | 'routes' | 'grants';

/**
 * What one update changed, by kind: the keys whose object in force was added, replaced or
 * removed. Consumers work in proportion to it (the service table recomputes `services`
 * alone; the policy engine recompiles when `policies`, `pods` or `namespaces` is not empty).
 */
export interface ModelChange extends Readonly<Record<KeyedKind, ReadonlySet<string>>> {
  /** The builder's model (live: the same Model object after every update). */
  model: Model;
  /** 'ns/name' of every Service whose Service object (or its use) or EndpointSlices changed, including removed ones. */
  services: ReadonlySet<string>;
}

type Stored = EndpointSlice | readonly EndpointSlice[];
const listOf = (v: Stored): readonly EndpointSlice[] => (Array.isArray(v) ? v as readonly EndpointSlice[] : [v as EndpointSlice]);
const serviceKeyOf = (v: Stored): string => (Array.isArray(v) ? (v as readonly EndpointSlice[])[0]! : v as EndpointSlice).serviceKey;

/**
 * `Model.slicesByService`: a Map whose lists of one (nearly every Service has one slice) are
 * kept as the slice itself, and handed out as a new list of one on each read. 10,000 lists
 * of one were 0.53 MiB. Every read (get, iteration, forEach) gives lists, as a plain Map would.
 * The lists are kept in a KeyedTable by their slices' `serviceKey` (k8s/keyed-table.ts: one
 * word per slot, no key kept: 128 KiB at 10,000 Services where a Map takes 448); a list set
 * must not be empty, and its slices' serviceKey is its key. Iterated in no particular order.
 */
export class SliceLists implements Map<string, readonly EndpointSlice[]> {
  readonly #table = new KeyedTable<Stored>(serviceKeyOf);
  get size(): number { return this.#table.size; }
  get [Symbol.toStringTag](): string { return 'SliceLists'; }
  get(key: string): readonly EndpointSlice[] | undefined {
    const v = this.#table.get(key);
    return v === undefined ? undefined : listOf(v);
  }
  has(key: string): boolean { return this.#table.has(key); }
  set(key: string, list: readonly EndpointSlice[]): this {
    if (list.length === 0) throw new Error(`SliceLists: an empty list set under ${JSON.stringify(key)} (delete the key instead)`);
    this.#table.set(key, list.length === 1 ? list[0]! : list);
    return this;
  }
  delete(key: string): boolean { return this.#table.delete(key); }
  clear(): void { this.#table.clear(); }
  *entries(): MapIterator<[string, readonly EndpointSlice[]]> {
    for (const v of this.#table.values()) yield [serviceKeyOf(v), listOf(v)];
  }
  *keys(): MapIterator<string> {
    for (const v of this.#table.values()) yield serviceKeyOf(v);
  }
  *values(): MapIterator<readonly EndpointSlice[]> {
    for (const v of this.#table.values()) yield listOf(v);
  }
  [Symbol.iterator](): MapIterator<[string, readonly EndpointSlice[]]> {
    return this.entries();
  }
  /** The slice of key `sliceKey` among `serviceKey`'s (no list made). */
  find(serviceKey: string, sliceKey: string): EndpointSlice | undefined {
    const v = this.#table.get(serviceKey);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) return (v as EndpointSlice).key === sliceKey ? v as EndpointSlice : undefined;
    return (v as readonly EndpointSlice[]).find((s) => s.key === sliceKey);
  }
  forEach(cb: (value: readonly EndpointSlice[], key: string, map: Map<string, readonly EndpointSlice[]>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) cb.call(thisArg, v, k, this);
  }
}

/** An empty Model (nothing read yet). */
export function emptyModel(): Model {
  return {
    services: new KeyedTable<Service>((s) => s.key), slicesByService: new SliceLists(), pods: new Map(), namespaces: new Map(), policies: new Map(), trafficPolicies: new Map(),
    gatewayClasses: new Map(), gateways: new Map(), routes: new Map(), grants: new Map(), problems: [],
  };
}

/** Stable problem codes of the model (cross-object: valid objects that cannot be used). */
export const SERVICE_NOT_FOUND = 'KW_SERVICE_NOT_FOUND';
export const SERVICE_NO_CLUSTER_IP = 'KW_SERVICE_NO_CLUSTER_IP';
export const CLUSTER_IP_CONFLICT = 'KW_CLUSTER_IP_CONFLICT';
export const DUPLICATE_OBJECT = 'KW_DUPLICATE_OBJECT';
