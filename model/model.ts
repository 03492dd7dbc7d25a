/**
 * Building the model from sourced objects: per-object parsing (memoised), then the rules
 * that need more than one object:
 *
 * - the same object twice (same kind, namespace, name): the first by origin (file name,
 *   then document index) is used, the others are reported;
 * - a cluster IP claimed by two Services: the first by origin owns it; a Service that does
 *   not own all its cluster IPs is reported and not used;
 * - an EndpointSlice whose Service is missing (or not used): reported, balances nothing;
 * - a Service without a cluster IP (nothing allocates one in standalone mode): reported.
 *
 * These problems never reject a file; the object concerned is left out.
 *
 * ModelBuilder applies changes incrementally (objects added and removed): the work is
 * proportional to the change, and `ModelChange.services` names the Services whose Service
 * object or slices changed, so the service table can be updated for those alone.
 */
import { Candidates, FoldedCandidates } from '../k8s/candidates.js';
import { parseObject, type KnownObject } from '../k8s/kinds.js';
import { SERVICE_NAME_LABEL, type EndpointSlice, type Origin, type Problem, type Service, type SourcedObject } from '../k8s/types.js';
import {
  CLUSTER_IP_CONFLICT, DUPLICATE_OBJECT, SERVICE_NOT_FOUND, SERVICE_NO_CLUSTER_IP, emptyModel, type SliceLists,
  type KeyedKind, type Model, type ModelChange,
} from './types.js';

export interface ModelDelta {
  added: readonly SourcedObject[];
  removed: readonly SourcedObject[];
}

export type { ModelChange } from './types.js';

/** Build a model from scratch (the full, non-incremental path). */
export function buildModel(objects: readonly SourcedObject[]): Model {
  return new ModelBuilder().reset(objects).model;
}

type Named = { origin: Origin };

function byOrigin(a: Named, b: Named): number {
  const fa = a.origin.file, fb = b.origin.file;
  return fa < fb ? -1 : fa > fb ? 1 : a.origin.index - b.origin.index;
}

/** An object of a keyed kind with its key and origin (Gateway API objects carry them in `meta`). */
interface Keyed { key: string; origin: Origin; value: unknown }

/** Which Model map each kind goes to, and the name problems give it. */
const KEYED: Partial<Record<KnownObject['kind'], KeyedKind>> = {
  Pod: 'pods', Namespace: 'namespaces', AuthorizationPolicy: 'policies', BackendTrafficPolicy: 'trafficPolicies',
  GatewayClass: 'gatewayClasses', Gateway: 'gateways', HTTPRoute: 'routes', ReferenceGrant: 'grants',
};
const KEYED_KINDS: readonly KeyedKind[] = ['pods', 'namespaces', 'policies', 'trafficPolicies', 'gatewayClasses', 'gateways', 'routes', 'grants'];

/** One Keyed per slim object (so that removing it finds the same candidate). */
const keyedOf = new WeakMap<object, Keyed>();
function keyed(o: KnownObject): Keyed {
  let k = keyedOf.get(o.value);
  if (k) return k;
  switch (o.kind) {
    case 'Pod': case 'AuthorizationPolicy': k = { key: o.value.key, origin: o.value.origin, value: o.value }; break;
    case 'Namespace': k = { key: o.value.name, origin: o.value.origin, value: o.value }; break;
    case 'GatewayClass': k = { key: o.value.name, origin: { file: o.value.file, index: o.value.index }, value: o.value }; break;
    case 'Gateway': case 'HTTPRoute': case 'ReferenceGrant': case 'BackendTrafficPolicy':
      k = { key: o.value.meta.key, origin: { file: o.value.meta.file, index: o.value.meta.index }, value: o.value }; break;
    default: throw new Error(`not a keyed kind: ${o.kind}`);
  }
  keyedOf.set(o.value, k);
  return k;
}

export class ModelBuilder {
  // Candidates per identity, in origin order; the first is the one used.
  /** A Service's sole candidate in use is `services`' own entry (FoldedCandidates: no second map of every key). */
  private readonly svcCands: FoldedCandidates<Service>;
  /** An EndpointSlice's sole candidate in force, when its Service is found by the slice's name, is `slicesByService`' own (below). */
  private readonly sliceCands: FoldedCandidates<EndpointSlice>;
  private readonly keyedCands = new Map<KeyedKind, Candidates<Keyed>>(KEYED_KINDS.map((k) => [k, new Candidates<Keyed>(byOrigin)]));
  /** Kind name in problems ('Pod', 'HTTPRoute'...) by Model map. */
  private readonly kindName = new Map<KeyedKind, string>(Object.entries(KEYED).map(([k, m]) => [m!, k]));
  /** Cluster IP -> the winning Services (by key) claiming it, in origin order; the first owns it. A sole claimant of its first IP is kept under it (no key kept). */
  private readonly vipClaims = new Candidates<Service>(byOrigin, (s) => s.clusterIPs[0]!);

  // The model (live maps).
  private readonly services: Map<string, Service>;
  private readonly slicesByService: Map<string, readonly EndpointSlice[]>;

  // Problems by subject.
  private readonly parseProblems = new Map<object, Problem[]>();
  private readonly dupProblems = new Map<string, Map<string, Problem[]>>(); // kind -> key -> problems
  private readonly svcProblems = new Map<string, Problem[]>(); // service key
  private readonly sliceProblems = new Map<string, Problem>(); // slice key

  readonly model: Model;

  constructor() {
    this.model = emptyModel();
    this.services = this.model.services as Map<string, Service>;
    this.slicesByService = this.model.slicesByService as Map<string, readonly EndpointSlice[]>;
    this.svcCands = new FoldedCandidates<Service>(byOrigin, this.services);
    this.sliceCands = new FoldedCandidates<EndpointSlice>(byOrigin, { get: (key) => this.sliceInForce(key) });
  }

  private map(kind: KeyedKind): Map<string, unknown> {
    return this.model[kind] as Map<string, unknown>;
  }

  /** Forget everything and build from `objects`. */
  reset(objects: readonly SourcedObject[]): ModelChange {
    const before = new Set(this.services.keys());
    const beforeKeyed = new Map(KEYED_KINDS.map((k) => [k, [...this.map(k).keys()]]));
    for (const c of [this.svcCands, this.sliceCands, this.vipClaims, ...this.keyedCands.values()]) (c as Candidates<unknown>).clear();
    for (const m of [this.services, this.slicesByService, this.parseProblems, this.dupProblems, this.svcProblems, this.sliceProblems, ...KEYED_KINDS.map((k) => this.map(k))]) {
      (m as Map<unknown, unknown>).clear();
    }
    const change = this.apply({ added: objects, removed: [] });
    for (const k of before) (change.services as Set<string>).add(k);
    for (const [kind, keys] of beforeKeyed) for (const k of keys) (change[kind] as Set<string>).add(k);
    return change;
  }

  /** Apply objects added and removed (a changed object is one removed and one added). */
  apply(delta: ModelDelta): ModelChange {
    // Key -> the winner before this change (recorded before the first touch of the key).
    const prevSvc = new Map<string, Service | undefined>();
    const prevSlice = new Map<string, EndpointSlice | undefined>();
    const dirty = new Map<KeyedKind, Set<string>>(KEYED_KINDS.map((k) => [k, new Set<string>()]));
    const changed = new Set<string>();

    const visit = (src: SourcedObject, add: boolean): void => {
      const parsed = parseObject(src);
      if (parsed.problems.length > 0) {
        if (add) this.parseProblems.set(src.object, parsed.problems);
        else this.parseProblems.delete(src.object);
      }
      const m: KnownObject | undefined = parsed.object;
      if (!m) return;
      switch (m.kind) {
        case 'Service': {
          const key = m.value.key;
          if (!prevSvc.has(key)) prevSvc.set(key, this.svcCands.first(key)); // add() and remove() open the key
          if (add) this.svcCands.add(key, m.value);
          else this.svcCands.remove(key, m.value);
          break;
        }
        case 'EndpointSlice': {
          const key = m.value.key;
          if (!prevSlice.has(key)) prevSlice.set(key, this.sliceCands.first(key));
          if (add) this.sliceCands.add(key, m.value);
          else this.sliceCands.remove(key, m.value);
          break;
        }
        default: {
          const kind = KEYED[m.kind]!;
          const k = keyed(m);
          const cands = this.keyedCands.get(kind)!;
          if (add) cands.add(k.key, k);
          else cands.remove(k.key, k);
          dirty.get(kind)!.add(k.key);
          break;
        }
      }
    };
    for (const src of delta.removed) visit(src, false);
    for (const src of delta.added) visit(src, true);

    // Services: key winners, then cluster IP ownership, then which are used.
    const recheck = new Set<string>();
    for (const [key, prev] of prevSvc) {
      this.setDupProblems('Service', key, this.svcCands);
      const next = this.svcCands.first(key);
      recheck.add(key);
      if (prev === next) continue;
      if (prev) for (const ip of prev.clusterIPs) { this.vipClaims.remove(ip, prev); for (const s of this.vipClaims.all(ip)) recheck.add(s.key); }
      if (next) for (const ip of next.clusterIPs) { this.vipClaims.add(ip, next); for (const s of this.vipClaims.all(ip)) recheck.add(s.key); }
    }
    const usageChanged: string[] = [];
    for (const key of recheck) {
      this.svcCands.open(key); // its candidate is held apart while `services` changes under it
      const w = this.svcCands.first(key);
      const problems: Problem[] = [];
      let used = w;
      if (w) {
        w.clusterIPs.forEach((ip, i) => {
          const owner = this.vipClaims.first(ip)!;
          if (owner === w) return;
          used = undefined;
          const field = w.clusterIPs.length > 1 ? `spec.clusterIPs[${i}]` : 'spec.clusterIP';
          problems.push({ code: CLUSTER_IP_CONFLICT, file: w.origin.file, object: `Service ${key}`, field,
            message: `${field}: ${ip} is already the cluster IP of Service ${owner.key} (${owner.origin.file}); this Service is ignored` });
        });
        if (used && w.clusterIPs.length === 0 && !w.headless && w.type !== 'ExternalName') {
          problems.push({ code: SERVICE_NO_CLUSTER_IP, file: w.origin.file, object: `Service ${key}`, field: 'spec.clusterIP',
            message: 'spec.clusterIP: not set, so the Service has no address to balance; without an API server to allocate one, set spec.clusterIP (or "None" for a headless Service)' });
        }
      }
      if (problems.length > 0) this.svcProblems.set(key, problems);
      else this.svcProblems.delete(key);
      if (this.services.get(key) === used) continue;
      if (used) this.services.set(key, used);
      else this.services.delete(key);
      changed.add(key);
      usageChanged.push(key);
    }
    this.svcCands.settle(); // `services` is up to date for every key touched

    // EndpointSlices: winners, grouped by their Service (copy-on-write lists, sorted by name).
    for (const [key, prev] of prevSlice) {
      this.setDupProblems('EndpointSlice', key, this.sliceCands);
      const next = this.sliceCands.first(key);
      if (prev === next) continue;
      if (prev) {
        const list = (this.slicesByService.get(prev.serviceKey) ?? []).filter((s) => s !== prev);
        if (list.length > 0) this.slicesByService.set(prev.serviceKey, list);
        else this.slicesByService.delete(prev.serviceKey);
        changed.add(prev.serviceKey);
        this.sliceProblems.delete(key);
      }
      if (next) {
        // concat: a list of exactly its length (a spread or push reserves room for 16 more; 10,000 lists of one)
        const list = (this.slicesByService.get(next.serviceKey) ?? []).concat([next]);
        if (list.length > 1) list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        this.slicesByService.set(next.serviceKey, list);
        changed.add(next.serviceKey);
        this.checkSlice(next);
      }
    }
    this.sliceCands.settle(); // `slicesByService` is up to date for every key touched
    // Slices of Services that came into or went out of use.
    for (const svcKey of usageChanged) for (const s of this.slicesByService.get(svcKey) ?? []) this.checkSlice(s);

    const keyedChanges = {} as Record<KeyedKind, Set<string>>;
    for (const [kind, keys] of dirty) {
      const cands = this.keyedCands.get(kind)!;
      const map = this.map(kind);
      const out = new Set<string>();
      for (const key of keys) {
        this.setDupProblems(this.kindName.get(kind)!, key, cands);
        const w = cands.first(key)?.value;
        if (map.get(key) === w) continue;
        if (w !== undefined) map.set(key, w);
        else map.delete(key);
        out.add(key);
      }
      keyedChanges[kind] = out;
    }

    this.model.problems = this.collectProblems();
    return { model: this.model, services: changed, ...keyedChanges };
  }

  /**
   * The EndpointSlice of `key` in force, when its Service is the one its name says, as the
   * EndpointSlice controller names them (`<service>-<suffix>`) or the Service's own name; else
   * undefined (its candidate is then held by `sliceCands` itself).
   */
  private sliceInForce(key: string): EndpointSlice | undefined {
    const slices = this.slicesByService as SliceLists;
    const dash = key.lastIndexOf('-');
    const byPrefix = dash > key.indexOf('/') ? slices.find(key.slice(0, dash), key) : undefined;
    return byPrefix ?? slices.find(key, key);
  }

  private checkSlice(s: EndpointSlice): void {
    if (this.services.has(s.serviceKey)) { this.sliceProblems.delete(s.key); return; }
    const field = `metadata.labels[${JSON.stringify(SERVICE_NAME_LABEL)}]`;
    const why = this.svcCands.first(s.serviceKey) ? 'is not in use (see its own problem)' : 'is not defined (in any manifest)';
    this.sliceProblems.set(s.key, { code: SERVICE_NOT_FOUND, file: s.origin.file, object: `EndpointSlice ${s.key}`, field,
      message: `${field}: Service ${s.serviceKey} ${why}; the endpoints of this EndpointSlice are not used` });
  }

  private setDupProblems<T extends Named>(kind: string, key: string, cands: Candidates<T>): void {
    let byKey = this.dupProblems.get(kind);
    if (!cands.contested(key)) { byKey?.delete(key); return; }
    if (!byKey) this.dupProblems.set(kind, (byKey = new Map()));
    const [winner, ...others] = cands.all(key);
    const first = winner!.origin;
    byKey.set(key, others.map((c) => ({
      code: DUPLICATE_OBJECT, file: c.origin.file, object: `${kind} ${key}`, field: 'metadata.name',
      message: `metadata.name: ${kind} ${key} is also defined in ${first.file} (document ${first.index}); that one is used`,
    })));
  }

  private collectProblems(): Problem[] {
    const out: Problem[] = [];
    for (const ps of this.parseProblems.values()) for (const p of ps) out.push(p);
    for (const byKey of this.dupProblems.values()) for (const ps of byKey.values()) for (const p of ps) out.push(p);
    for (const ps of this.svcProblems.values()) for (const p of ps) out.push(p);
    for (const p of this.sliceProblems.values()) out.push(p);
    return out;
  }
}
