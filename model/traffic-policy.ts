/**
 * BackendTrafficPolicy attachment (Gateway API policy attachment, GEP-713): each policy
 * names Services and HTTPRoutes of its own namespace in spec.targetRefs. One policy per
 * target is in force: of two naming the same target, the older (creationTimestamp, then
 * namespace/name in alphabetical order) wins and the other is Conflicted for it. A
 * route-level policy overrides the Service-level one field by field (`mergeTrafficSettings`).
 * The status of every policy, per target (status.ancestors), is computed here.
 */
import type { BackendTrafficPolicy, TrafficSettings } from '../k8s/traffic-policy-types.js';
import type { Model } from './types.js';

export const TRAFFIC_POLICY_CONTROLLER = 'kernway.io/gateway-controller';

export interface PolicyCondition { type: 'Accepted' | 'Conflicted'; status: 'True' | 'False'; reason: string; message: string }

export interface PolicyAncestorStatus {
  ancestorRef: { group: string; kind: string; namespace: string; name: string };
  controllerName: string;
  conditions: PolicyCondition[];
}

export interface TrafficPolicyStatus {
  namespace: string;
  name: string;
  file: string;
  ancestors: PolicyAncestorStatus[];
}

export interface TrafficAttachments {
  /** The policy in force per Service ('ns/name'). */
  byService: ReadonlyMap<string, BackendTrafficPolicy>;
  /** The policy in force per HTTPRoute ('ns/name'). */
  byRoute: ReadonlyMap<string, BackendTrafficPolicy>;
  /** Per policy (sorted by namespace/name), its status.ancestors. */
  status: readonly TrafficPolicyStatus[];
}

const EMPTY: TrafficAttachments = Object.freeze({ byService: new Map(), byRoute: new Map(), status: [] });

function older(a: BackendTrafficPolicy, b: BackendTrafficPolicy): number {
  if (a.meta.created !== b.meta.created) return a.meta.created < b.meta.created ? -1 : 1;
  return a.meta.key < b.meta.key ? -1 : a.meta.key > b.meta.key ? 1 : 0;
}

/** Which policy is in force for each target, and every policy's status. */
export function attachTrafficPolicies(model: Model): TrafficAttachments {
  if (model.trafficPolicies.size === 0) return EMPTY;
  const policies = [...model.trafficPolicies.values()].sort(older);
  const byService = new Map<string, BackendTrafficPolicy>();
  const byRoute = new Map<string, BackendTrafficPolicy>();
  const status: TrafficPolicyStatus[] = [];
  for (const p of policies) {
    const ancestors: PolicyAncestorStatus[] = [];
    for (const t of p.targetRefs) {
      const key = `${p.meta.namespace}/${t.name}`;
      const ancestorRef = { group: t.group, kind: t.kind, namespace: p.meta.namespace, name: t.name };
      const conditions: PolicyCondition[] = [];
      const exists = t.kind === 'Service' ? model.services.has(key) : model.routes.has(key);
      const slots = t.kind === 'Service' ? byService : byRoute;
      const winner = slots.get(key);
      if (!exists) {
        conditions.push({ type: 'Accepted', status: 'False', reason: 'TargetNotFound', message: `${t.kind} ${key} is not defined (or not in use)` });
        conditions.push({ type: 'Conflicted', status: 'False', reason: 'NoConflicts', message: '' });
      } else if (winner !== undefined && winner !== p) {
        const why = `BackendTrafficPolicy ${winner.meta.key} (older, or first by name) already applies to ${t.kind} ${key}`;
        conditions.push({ type: 'Accepted', status: 'False', reason: 'Conflicted', message: `${why}; this policy is not applied to it` });
        conditions.push({ type: 'Conflicted', status: 'True', reason: 'Conflicted', message: why });
      } else {
        slots.set(key, p);
        const level = t.kind === 'Service' ? 'to every request to this Service (an HTTPRoute-level policy overrides it field by field)' : 'to every request of this HTTPRoute, over any Service-level policy, field by field';
        conditions.push({ type: 'Accepted', status: 'True', reason: 'Accepted', message: `applied ${level}` });
        conditions.push({ type: 'Conflicted', status: 'False', reason: 'NoConflicts', message: '' });
      }
      ancestors.push({ ancestorRef, controllerName: TRAFFIC_POLICY_CONTROLLER, conditions });
    }
    status.push({ namespace: p.meta.namespace, name: p.meta.name, file: p.meta.file, ancestors });
  }
  status.sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
  return { byService, byRoute, status };
}

type Section = Record<string, unknown>;

/** Field-by-field merge of two sections (nested mappings merged, lists and values replaced). */
function merge(base: Section | undefined, over: Section | undefined): Section | undefined {
  if (base === undefined) return over;
  if (over === undefined) return base;
  const out: Section = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isSection(v) && isSection(b) ? merge(b, v) : v;
  }
  return out;
}

function isSection(v: unknown): v is Section {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

/**
 * The settings in force for a request: the HTTPRoute-level policy's fields over the
 * Service-level policy's, field by field (a route's circuitBreaker.maxConnections
 * replaces the Service's, its other circuitBreaker fields stay). Lists (rate limit
 * rules, retry triggers) are replaced whole; fault injection's delay and abort each
 * replaced whole.
 */
export function mergeTrafficSettings(service: TrafficSettings | undefined, route: TrafficSettings | undefined): TrafficSettings | undefined {
  if (service === undefined) return route;
  if (route === undefined) return service;
  const out = merge(service as Section, route as Section) as TrafficSettings;
  if (route.faultInjection !== undefined) {
    out.faultInjection = {
      ...(route.faultInjection.delay ?? service.faultInjection?.delay ? { delay: route.faultInjection.delay ?? service.faultInjection!.delay } : {}),
      ...(route.faultInjection.abort ?? service.faultInjection?.abort ? { abort: route.faultInjection.abort ?? service.faultInjection!.abort } : {}),
    };
  }
  if (route.rateLimit !== undefined) out.rateLimit = route.rateLimit;
  return out;
}
