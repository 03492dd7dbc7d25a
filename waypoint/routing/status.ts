/**
 * The status kernway writes to the cluster's Gateway API objects, computed from the model
 * with the same routing table every waypoint builds (so what the status says is what the
 * waypoints do): per namespace, the Gateways of class controller kernway.io/gateway-controller
 * and their listeners, and every HTTPRoute's kernway parents (Gateways of ours, and
 * Services, whose entries carry kernway.io/mesh-controller). GatewayClasses of either
 * controller are Accepted. Every HTTPRoute of the model is listed, with no parents when none
 * is kernway's, so that kernway's stale entries are removed. Gateways of class
 * kernway-waypoint get their status from the waypoint controller (agent/cluster/waypoints.ts).
 */
import type { Model } from '../../model/types.js';
import { waypointConfigOf } from '../../model/waypoint-config.js';
import { GATEWAY_CONTROLLER, KERNWAY_CONTROLLERS, MESH_CONTROLLER, type ClusterStatus, type RouteStatusOut } from '../../k8s/gateway-status.js';
import { buildRoutingTable } from './table.js';

export function clusterStatusOf(model: Model): ClusterStatus {
  const cfg = waypointConfigOf(model);
  const out: ClusterStatus = { gatewayClasses: [], gateways: [], routes: [] };
  for (const c of cfg.gatewayClasses.values()) {
    if (!KERNWAY_CONTROLLERS.includes(c.controllerName)) continue;
    out.gatewayClasses.push({ name: c.name, conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: `handled by ${c.controllerName}`, observedGeneration: 1 }] });
  }
  const routes = new Map<string, RouteStatusOut>();
  for (const r of cfg.routes) routes.set(r.meta.key, { namespace: r.meta.namespace, name: r.meta.name, parents: [] });
  const namespaces = new Set<string>();
  for (const g of cfg.gateways) namespaces.add(g.meta.namespace);
  for (const r of cfg.routes) for (const p of r.parentRefs) namespaces.add(p.namespace);
  for (const ns of [...namespaces].sort()) {
    const table = buildRoutingTable(cfg, { namespace: ns, listenAddress: '0.0.0.0', controllerName: GATEWAY_CONTROLLER });
    for (const g of table.gateways) {
      const gw = cfg.gateways.find((x) => x.meta.namespace === g.namespace && x.meta.name === g.name);
      out.gateways.push({
        namespace: g.namespace, name: g.name, conditions: g.conditions, listeners: g.listeners.map((l) => ({ name: l.name, attachedRoutes: l.attachedRoutes, conditions: l.conditions })),
        ...(gw && gw.addresses.length > 0 ? { addresses: gw.addresses.map((a) => ({ type: 'IPAddress', value: a })) } : {}),
      });
    }
    for (const rs of table.routes) {
      const target = routes.get(`${rs.namespace}/${rs.name}`);
      if (!target) continue;
      for (const p of rs.parents) {
        const mesh = p.parentRef.group === '' && p.parentRef.kind === 'Service';
        target.parents.push({ parentRef: p.parentRef, controllerName: mesh ? MESH_CONTROLLER : p.controllerName, conditions: p.conditions });
      }
    }
  }
  out.routes = [...routes.values()];
  const generation = new Map(cfg.trafficPolicies.map((p) => [p.meta.key, p.meta.generation]));
  out.trafficPolicies = cfg.trafficAttachments.status.map((p) => ({
    namespace: p.namespace, name: p.name,
    ancestors: p.ancestors.map((a) => ({ ...a, conditions: a.conditions.map((c) => ({ ...c, observedGeneration: generation.get(`${p.namespace}/${p.name}`) ?? 1 })) })),
  }));
  return out;
}
