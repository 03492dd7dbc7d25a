/**
 * One consistent view of everything the waypoint reads, built from a set of sourced
 * objects: Services, EndpointSlices, Pods and Namespaces through k8s/core.ts; the Gateway
 * API kinds through k8s/gateway-api.ts, AuthorizationPolicy through k8s/policy.ts.
 */
import { buildModel } from './model.js';
import { isModelKind, slimObject, validateObject } from '../k8s/core.js';
import type { Problem, SourcedObject } from '../k8s/types.js';
import type { Model } from './types.js';
import { isPolicyKind, parsePolicy } from '../k8s/policy.js';
import type { AuthorizationPolicy } from '../k8s/policy-types.js';
import { isGatewayApiKind, parseGatewayApiObject, slimGatewayApiObject } from '../k8s/gateway-api.js';
import type { Gateway, GatewayClass, HTTPRoute, ReferenceGrant } from '../k8s/gateway-api-types.js';

export const DUPLICATE_OBJECT = 'KW_DUPLICATE_OBJECT';

export interface WaypointConfig {
  model: Model;
  /** appProtocol of Service ports, by 'ns/name' then port number (the core Service form does not keep it). */
  appProtocols: ReadonlyMap<string, ReadonlyMap<number, string>>;
  gatewayClasses: ReadonlyMap<string, GatewayClass>;
  gateways: readonly Gateway[];
  routes: readonly HTTPRoute[];
  grants: readonly ReferenceGrant[];
  policies: readonly AuthorizationPolicy[];
  /** Problems of the objects in force (files that failed validation are reported by the source). */
  problems: readonly Problem[];
}

/** Whether the waypoint reads this kind at all. */
export function isWaypointKind(o: { apiVersion: string; kind: string }): boolean {
  return isModelKind(o) || isGatewayApiKind(o) || isPolicyKind(o);
}

/**
 * The ObjectValidator handed to the manifest source: an object of a kind the waypoint
 * reads that breaks its schema makes its file keep its last good content.
 */
export function validateWaypointObject(src: SourcedObject): Problem[] {
  if (isModelKind(src.object)) return validateObject(src);
  if (isGatewayApiKind(src.object)) return parseGatewayApiObject(src).problems;
  if (isPolicyKind(src.object)) return parsePolicy(src).problems;
  return [];
}

/**
 * What the manifest source keeps of an accepted object: a stub for the kinds parsed into
 * the model or the Gateway API model (their parsed form is memoised on the stub), so the
 * raw objects do not stay in memory twice. A Service's stub keeps its ports'
 * appProtocol, which the core Service form does not record.
 */
export function slimWaypointObject(src: SourcedObject): SourcedObject['object'] {
  const o = src.object;
  if (isModelKind(o)) {
    const stub = slimObject(src);
    if (o.kind === 'Service' && stub !== o) {
      const ports = (o.spec as { ports?: unknown } | undefined)?.ports;
      const kept = Array.isArray(ports)
        ? (ports as { port?: unknown; appProtocol?: unknown }[]).filter((p) => p && typeof p.appProtocol === 'string').map((p) => ({ port: p.port, appProtocol: p.appProtocol }))
        : [];
      if (kept.length > 0) (stub as Record<string, unknown>).spec = { ports: kept };
    }
    return stub;
  }
  if (isGatewayApiKind(o)) return slimGatewayApiObject(src);
  return o;
}

export function buildWaypointConfig(objects: readonly SourcedObject[]): WaypointConfig {
  const model = buildModel(objects.filter((o) => isModelKind(o.object)));
  const problems: Problem[] = [...model.problems];
  const appProtocols = new Map<string, Map<number, string>>();
  const gatewayClasses = new Map<string, GatewayClass>();
  const gateways = new Map<string, Gateway>();
  const routes = new Map<string, HTTPRoute>();
  const grants = new Map<string, ReferenceGrant>();
  const policies = new Map<string, AuthorizationPolicy>();

  const dup = <T>(map: Map<string, T>, key: string, v: T, src: SourcedObject, kind: string): void => {
    if (map.has(key)) {
      problems.push({ code: DUPLICATE_OBJECT, file: src.file, object: `${kind} ${key}`, field: 'metadata.name',
        message: `metadata.name: ${kind} ${key} is defined twice; the first one read is used` });
      return;
    }
    map.set(key, v);
  };

  for (const src of objects) {
    const o = src.object;
    if (o.kind === 'Service' && o.apiVersion === 'v1') {
      const key = `${o.metadata.namespace || 'default'}/${o.metadata.name}`;
      const spec = o.spec as { ports?: unknown } | undefined;
      if (model.services.has(key) && spec && Array.isArray(spec.ports)) {
        const m = new Map<number, string>();
        for (const p of spec.ports as { port?: unknown; appProtocol?: unknown }[]) {
          if (p && typeof p.port === 'number' && typeof p.appProtocol === 'string') m.set(p.port, p.appProtocol);
        }
        if (m.size > 0 && !appProtocols.has(key)) appProtocols.set(key, m);
      }
      continue;
    }
    if (isGatewayApiKind(o)) {
      const r = parseGatewayApiObject(src);
      problems.push(...r.problems);
      const v = r.value;
      if (!v) continue;
      switch (v.kind) {
        case 'GatewayClass': dup(gatewayClasses, v.value.name, v.value, src, 'GatewayClass'); break;
        case 'Gateway': dup(gateways, v.value.meta.key, v.value, src, 'Gateway'); break;
        case 'HTTPRoute': dup(routes, v.value.meta.key, v.value, src, 'HTTPRoute'); break;
        case 'ReferenceGrant': dup(grants, v.value.meta.key, v.value, src, 'ReferenceGrant'); break;
      }
      continue;
    }
    if (isPolicyKind(o)) {
      const r = parsePolicy(src);
      problems.push(...r.problems);
      if (r.policy) dup(policies, r.policy.key, r.policy, src, 'AuthorizationPolicy');
    }
  }
  return {
    model, appProtocols, gatewayClasses,
    gateways: [...gateways.values()], routes: [...routes.values()], grants: [...grants.values()], policies: [...policies.values()],
    problems,
  };
}
