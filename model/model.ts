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
import { Candidates } from '../k8s/candidates.js';
import { parseObject, type ModelObject } from '../k8s/core.js';
import {
  SERVICE_NAME_LABEL,
  type EndpointSlice, type Namespace, type Origin, type Pod, type Problem, type Service, type SourcedObject,
} from '../k8s/types.js';
import { CLUSTER_IP_CONFLICT, DUPLICATE_OBJECT, SERVICE_NOT_FOUND, SERVICE_NO_CLUSTER_IP, type Model } from './types.js';

export interface ModelDelta {
  added: readonly SourcedObject[];
  removed: readonly SourcedObject[];
}

export interface ModelChange {
  /** The builder's model (live: the same Model object after every update). */
  model: Model;
  /** 'ns/name' of every Service whose Service object (or its use) or EndpointSlices changed, including removed ones. */
  services: ReadonlySet<string>;
}

/** Build a model from scratch (the full, non-incremental path). */
export function buildModel(objects: readonly SourcedObject[]): Model {
  return new ModelBuilder().reset(objects).model;
}

type Named = { origin: Origin };

function byOrigin(a: Named, b: Named): number {
  const fa = a.origin.file, fb = b.origin.file;
  return fa < fb ? -1 : fa > fb ? 1 : a.origin.index - b.origin.index;
}

export class ModelBuilder {
  // Candidates per identity, in origin order; the first is the one used.
  private readonly svcCands = new Candidates<Service>(byOrigin);
  private readonly sliceCands = new Candidates<EndpointSlice>(byOrigin);
  private readonly podCands = new Candidates<Pod>(byOrigin);
  private readonly nsCands = new Candidates<Namespace>(byOrigin);
  /** Cluster IP -> the winning Services (by key) claiming it, in origin order; the first owns it. */
  private readonly vipClaims = new Candidates<Service>(byOrigin);

  // The model (live maps).
  private readonly services = new Map<string, Service>();
  private readonly slicesByService = new Map<string, readonly EndpointSlice[]>();
  private readonly pods = new Map<string, Pod>();
  private readonly namespaces = new Map<string, Namespace>();

  // Problems by subject.
  private readonly parseProblems = new Map<object, Problem[]>();
  private readonly dupProblems = new Map<string, Map<string, Problem[]>>(); // kind -> key -> problems
  private readonly svcProblems = new Map<string, Problem[]>(); // service key
  private readonly sliceProblems = new Map<string, Problem>(); // slice key

  readonly model: Model;

  constructor() {
    this.model = { services: this.services, slicesByService: this.slicesByService, pods: this.pods, namespaces: this.namespaces, problems: [] };
  }

  /** Forget everything and build from `objects`. */
  reset(objects: readonly SourcedObject[]): ModelChange {
    const before = new Set(this.services.keys());
    for (const c of [this.svcCands, this.sliceCands, this.podCands, this.nsCands, this.vipClaims]) (c as Candidates<unknown>).clear();
    for (const m of [this.services, this.slicesByService, this.pods, this.namespaces, this.parseProblems, this.dupProblems, this.svcProblems, this.sliceProblems]) {
      (m as Map<unknown, unknown>).clear();
    }
    const change = this.apply({ added: objects, removed: [] });
    for (const k of before) (change.services as Set<string>).add(k);
    return change;
  }

  /** Apply objects added and removed (a changed object is one removed and one added). */
  apply(delta: ModelDelta): ModelChange {
    // Key -> the winner before this change (recorded before the first touch of the key).
    const prevSvc = new Map<string, Service | undefined>();
    const prevSlice = new Map<string, EndpointSlice | undefined>();
    const dirtyPod = new Set<string>();
    const dirtyNs = new Set<string>();
    const changed = new Set<string>();

    const visit = (src: SourcedObject, add: boolean): void => {
      const parsed = parseObject(src);
      if (parsed.problems.length > 0) {
        if (add) this.parseProblems.set(src.object, parsed.problems);
        else this.parseProblems.delete(src.object);
      }
      const m: ModelObject | undefined = parsed.model;
      if (!m) return;
      switch (m.kind) {
        case 'Service': {
          const key = m.value.key;
          if (!prevSvc.has(key)) prevSvc.set(key, this.svcCands.first(key));
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
        case 'Pod':
          if (add) this.podCands.add(m.value.key, m.value);
          else this.podCands.remove(m.value.key, m.value);
          dirtyPod.add(m.value.key);
          break;
        case 'Namespace':
          if (add) this.nsCands.add(m.value.name, m.value);
          else this.nsCands.remove(m.value.name, m.value);
          dirtyNs.add(m.value.name);
          break;
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
        const list = [...(this.slicesByService.get(next.serviceKey) ?? []), next];
        if (list.length > 1) list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        this.slicesByService.set(next.serviceKey, list);
        changed.add(next.serviceKey);
        this.checkSlice(next);
      }
    }
    // Slices of Services that came into or went out of use.
    for (const svcKey of usageChanged) for (const s of this.slicesByService.get(svcKey) ?? []) this.checkSlice(s);

    for (const key of dirtyPod) {
      this.setDupProblems('Pod', key, this.podCands);
      const w = this.podCands.first(key);
      if (w) this.pods.set(key, w);
      else this.pods.delete(key);
    }
    for (const key of dirtyNs) {
      this.setDupProblems('Namespace', key, this.nsCands);
      const w = this.nsCands.first(key);
      if (w) this.namespaces.set(key, w);
      else this.namespaces.delete(key);
    }

    this.model.problems = this.collectProblems();
    return { model: this.model, services: changed };
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
