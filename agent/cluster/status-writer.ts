/**
 * Writes kernway's status to the Gateway API objects (the elected agent only): GatewayClass
 * and Gateway conditions, listener status, and kernway's own entries of an HTTPRoute's
 * status.parents (other controllers' entries are kept as they are). Each write is a read,
 * a merge and an update of the status subresource with the resourceVersion read; a 409
 * Conflict (someone wrote meanwhile) is retried with a fresh read. Nothing is written when
 * the merged status equals the one on the object, and an object whose desired status did
 * not change since the last successful write is not even read.
 */
import type { Logger } from '../../common/log.js';
import { errorMessage } from '../../common/errors.js';
import {
  KERNWAY_CONTROLLERS, type ClusterStatus, type GatewayClassStatusOut, type GatewayStatusOut, type PolicyStatusOut, type RouteStatusOut, type StatusCondition,
} from '../../k8s/gateway-status.js';
import type { ParentRef } from '../../k8s/gateway-api-types.js';
import { httpStatusOf, type KubeRequests, type ObjectMeta } from './api.js';

const GW = '/apis/gateway.networking.k8s.io/v1';
const KW = '/apis/kernway.io/v1alpha1';
const MAX_CONFLICT_RETRIES = 5;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
interface Obj { metadata: ObjectMeta; status?: Json }
interface K8sCondition extends StatusCondition { lastTransitionTime: string }

/** Desired conditions with lastTransitionTime: kept from the current condition of that type while its status is the same. */
export function withTransitionTimes(desired: readonly StatusCondition[], current: readonly Json[] | undefined, now: string): K8sCondition[] {
  return desired.map((c) => {
    const was = current?.find((x) => x.type === c.type);
    return { ...c, lastTransitionTime: was && was.status === c.status && typeof was.lastTransitionTime === 'string' ? was.lastTransitionTime : now };
  });
}

/** A parentRef as the API shows it (group, kind and namespace spelled out, optional fields only when set). */
function apiParentRef(p: ParentRef): Json {
  return {
    group: p.group, kind: p.kind, namespace: p.namespace, name: p.name,
    ...(p.sectionName !== undefined ? { sectionName: p.sectionName } : {}),
    ...(p.port !== undefined ? { port: p.port } : {}),
  };
}

/** An HTTPRoute's status.parents with kernway's entries replaced by `ours`; others' entries untouched and first. */
export function mergeRouteParents(current: readonly Json[] | undefined, ours: RouteStatusOut['parents'], now: string): Json[] {
  const others = (current ?? []).filter((p) => !KERNWAY_CONTROLLERS.includes(p.controllerName));
  const mine = ours.map((p) => {
    const ref = apiParentRef(p.parentRef);
    const was = (current ?? []).find((x) => x.controllerName === p.controllerName && sameRef(x.parentRef, ref));
    return { parentRef: ref, controllerName: p.controllerName, conditions: withTransitionTimes(p.conditions, was?.conditions, now) };
  });
  return [...others, ...mine];
}

/** A BackendTrafficPolicy's status.ancestors with kernway's entries replaced by `ours`; others' entries untouched and first. */
export function mergePolicyAncestors(current: readonly Json[] | undefined, ours: PolicyStatusOut['ancestors'], now: string): Json[] {
  const others = (current ?? []).filter((a) => !KERNWAY_CONTROLLERS.includes(a.controllerName));
  const mine = ours.map((a) => {
    const was = (current ?? []).find((x) => x.controllerName === a.controllerName && x.ancestorRef?.kind === a.ancestorRef.kind && x.ancestorRef?.name === a.ancestorRef.name
      && (x.ancestorRef?.group ?? '') === a.ancestorRef.group && (x.ancestorRef?.namespace ?? a.ancestorRef.namespace) === a.ancestorRef.namespace);
    return { ancestorRef: a.ancestorRef, controllerName: a.controllerName, conditions: withTransitionTimes(a.conditions, was?.conditions, now) };
  });
  return [...others, ...mine];
}

function sameRef(a: Json | undefined, b: Json): boolean {
  if (!a) return false;
  return (a.group ?? 'gateway.networking.k8s.io') === b.group && (a.kind ?? 'Gateway') === b.kind && (a.namespace ?? b.namespace) === b.namespace
    && a.name === b.name && a.sectionName === b.sectionName && a.port === b.port;
}

/** JSON equality ignoring key order. */
function same(a: unknown, b: unknown): boolean {
  return canon(a) === canon(b);
}
function canon(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().filter((k) => (v as Json)[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canon((v as Json)[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

/** The kinds whose status the writer owns entries of, and their API paths. */
const STATUS_LISTS = {
  GatewayClass: `${GW}/gatewayclasses`, Gateway: `${GW}/gateways`, HTTPRoute: `${GW}/httproutes`, BackendTrafficPolicy: `${KW}/backendtrafficpolicies`,
} as const;

/** The API path of an object whose status the writer writes, or undefined for another kind. */
export function statusPathOf(o: { kind: string; metadata: { name: string; namespace?: string | undefined } }): string | undefined {
  const list = (STATUS_LISTS as Readonly<Record<string, string | undefined>>)[o.kind];
  if (list === undefined) return undefined;
  const m = o.metadata; // a stub's metadata is made on each read (k8s/kinds.ts)
  return objectPath(list, m.namespace, m.name);
}

function objectPath(list: string, namespace: string | undefined, name: string): string {
  if (namespace === undefined) return `${list}/${name}`;
  const i = list.lastIndexOf('/');
  return `${list.slice(0, i)}/namespaces/${namespace}${list.slice(i)}/${name}`;
}

export interface WriteReport { written: number; unchanged: number; skipped: number; gone: number; failed: number; conflicts: number }

export class StatusWriter {
  /** The desired status last written per object path (canonical JSON): unchanged desires are not re-read. */
  private readonly lastWritten = new Map<string, string>();
  /** Counters since start (for logs, status and tests). */
  readonly totals: WriteReport = { written: 0, unchanged: 0, skipped: 0, gone: 0, failed: 0, conflicts: 0 };

  constructor(private readonly api: KubeRequests, private readonly log?: Logger, private readonly clock: () => number = Date.now) {}

  /** Forget what was written (a new term as leader: everything is checked again). */
  reset(): void {
    this.lastWritten.clear();
  }

  /**
   * Forget what was written to these objects (statusPathOf): they changed on the server since,
   * maybe their status by another writer, so the next round reads them again and puts back
   * kernway's entries if they were removed. Our own writes come back here too; re-reading
   * them costs one GET and finds them unchanged.
   */
  forget(paths: Iterable<string>): void {
    for (const p of paths) this.lastWritten.delete(p);
  }

  async write(desired: ClusterStatus): Promise<WriteReport> {
    const report: WriteReport = { written: 0, unchanged: 0, skipped: 0, gone: 0, failed: 0, conflicts: 0 };
    const jobs: Array<[string, unknown, (o: Obj, now: string) => Json]> = [
      ...desired.gatewayClasses.map((c): [string, unknown, (o: Obj, now: string) => Json] => [objectPath(STATUS_LISTS.GatewayClass, undefined, c.name), c, (o, now) => this.classStatus(o, c, now)]),
      ...desired.gateways.map((g): [string, unknown, (o: Obj, now: string) => Json] => [objectPath(STATUS_LISTS.Gateway, g.namespace, g.name), g, (o, now) => this.gatewayStatus(o, g, now)]),
      ...desired.routes.map((r): [string, unknown, (o: Obj, now: string) => Json] => [objectPath(STATUS_LISTS.HTTPRoute, r.namespace, r.name), r, (o, now) => ({ ...(o.status ?? {}), parents: mergeRouteParents(o.status?.parents, r.parents, now) })]),
      ...(desired.trafficPolicies ?? []).map((p): [string, unknown, (o: Obj, now: string) => Json] => [objectPath(STATUS_LISTS.BackendTrafficPolicy, p.namespace, p.name), p, (o, now) => ({ ...(o.status ?? {}), ancestors: mergePolicyAncestors(o.status?.ancestors, p.ancestors, now) })]),
    ];
    for (const [path, want, merge] of jobs) {
      const key = canon(want);
      if (this.lastWritten.get(path) === key) { report.skipped++; continue; }
      try {
        const outcome = await this.writeOne(path, merge, report);
        report[outcome]++;
        if (outcome !== 'gone') this.lastWritten.set(path, key);
      } catch (e) {
        report.failed++;
        this.log?.warn({ err: errorMessage(e), object: path }, 'status: write failed (retried on the next change or term)');
      }
    }
    for (const k of Object.keys(report) as Array<keyof WriteReport>) this.totals[k] += report[k];
    if (report.written > 0 || report.failed > 0) this.log?.info(report, 'status: written');
    return report;
  }

  private async writeOne(path: string, merge: (o: Obj, now: string) => Json, report: WriteReport): Promise<'written' | 'unchanged' | 'gone'> {
    for (let attempt = 0; ; attempt++) {
      let obj: Obj;
      try {
        obj = await this.api.request<Obj>('GET', path);
      } catch (e) {
        if (httpStatusOf(e) === 404) return 'gone';
        throw e;
      }
      const now = new Date(this.clock()).toISOString().replace(/\.\d{3}Z$/, 'Z');
      const status = merge(obj, now);
      if (same(status, obj.status ?? {})) return 'unchanged';
      try {
        await this.api.request('PUT', `${path}/status`, { ...obj, status });
        return 'written';
      } catch (e) {
        const code = httpStatusOf(e);
        if (code === 404) return 'gone';
        if (code !== 409 || attempt >= MAX_CONFLICT_RETRIES) throw e;
        report.conflicts++;
      }
    }
  }

  private classStatus(o: Obj, c: GatewayClassStatusOut, now: string): Json {
    return { ...(o.status ?? {}), conditions: withTransitionTimes(c.conditions, o.status?.conditions, now) };
  }

  private gatewayStatus(o: Obj, g: GatewayStatusOut, now: string): Json {
    const listeners = g.listeners.map((l) => {
      const was = (o.status?.listeners as Json[] | undefined)?.find((x) => x.name === l.name);
      return { name: l.name, attachedRoutes: l.attachedRoutes, supportedKinds: l.supportedKinds ?? [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' }], conditions: withTransitionTimes(l.conditions, was?.conditions, now) };
    });
    const out: Json = { ...(o.status ?? {}), conditions: withTransitionTimes(g.conditions, o.status?.conditions, now), listeners };
    if (g.addresses) out.addresses = g.addresses;
    return out;
  }
}
