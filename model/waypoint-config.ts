/**
 * The waypoint's view of the model: Services, EndpointSlices, Pods and Namespaces, the
 * Gateway API kinds, the AuthorizationPolicies and the BackendTrafficPolicies (with their
 * attachment resolved), as the routing table reads them.
 */
import type { Gateway, GatewayClass, HTTPRoute, ReferenceGrant } from '../k8s/gateway-api-types.js';
import type { AuthorizationPolicy } from '../k8s/policy-types.js';
import type { BackendTrafficPolicy } from '../k8s/traffic-policy-types.js';
import type { Origin, Problem, SourcedObject } from '../k8s/types.js';
import { buildModel } from './model.js';
import { attachTrafficPolicies, type TrafficAttachments } from './traffic-policy.js';
import { emptyModel, type Model } from './types.js';

export interface WaypointConfig {
  model: Model;
  /** appProtocol of Service ports, by 'ns/name' then port number. */
  appProtocols: ReadonlyMap<string, ReadonlyMap<number, string>>;
  gatewayClasses: ReadonlyMap<string, GatewayClass>;
  /** In origin order (file, then document). */
  gateways: readonly Gateway[];
  routes: readonly HTTPRoute[];
  grants: readonly ReferenceGrant[];
  policies: readonly AuthorizationPolicy[];
  /** BackendTrafficPolicies in origin order, and which is in force per Service and HTTPRoute (with their status). */
  trafficPolicies: readonly BackendTrafficPolicy[];
  trafficAttachments: TrafficAttachments;
  /** Problems of the objects in force (files that failed validation are reported by the source). */
  problems: readonly Problem[];
}

function byOrigin<T>(values: Iterable<T>, origin: (v: T) => Origin): T[] {
  return [...values].sort((a, b) => {
    const x = origin(a), y = origin(b);
    return x.file < y.file ? -1 : x.file > y.file ? 1 : x.index - y.index;
  });
}
const metaOrigin = (v: { meta: Origin }): Origin => v.meta;

/** The waypoint's configuration from a model (a snapshot: later updates of a live model are not seen). */
export function waypointConfigOf(model: Model): WaypointConfig {
  const appProtocols = new Map<string, Map<number, string>>();
  // forEach and indexed loops, not iterators: without TurboFan (the agent) each iterator step is
  // an object, and the elected agent's status round (every 30 s, agent/cluster/controller.ts) runs
  // this over every Service: 1.73 -> 0.6 MiB allocated per round at 10,000 Services.
  model.services.forEach((svc) => {
    const ports = svc.ports;
    for (let i = 0; i < ports.length; i++) {
      const p = ports[i]!;
      if (p.appProtocol === undefined) continue;
      let m = appProtocols.get(svc.key);
      if (!m) appProtocols.set(svc.key, (m = new Map()));
      if (!m.has(p.port)) m.set(p.port, p.appProtocol);
    }
  });
  return {
    model, appProtocols, gatewayClasses: new Map(model.gatewayClasses),
    gateways: byOrigin(model.gateways.values(), metaOrigin),
    routes: byOrigin(model.routes.values(), metaOrigin),
    grants: byOrigin(model.grants.values(), metaOrigin),
    policies: byOrigin(model.policies.values(), (p) => p.origin),
    trafficPolicies: byOrigin(model.trafficPolicies.values(), metaOrigin),
    trafficAttachments: attachTrafficPolicies(model),
    problems: model.problems,
  };
}

/** From scratch, from sourced objects (tools and tests). */
export function buildWaypointConfig(objects: readonly SourcedObject[]): WaypointConfig {
  return waypointConfigOf(buildModel(objects));
}

/** The configuration of a waypoint that has read nothing yet. */
export function emptyWaypointConfig(): WaypointConfig {
  return waypointConfigOf(emptyModel());
}
