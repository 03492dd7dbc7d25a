/**
 * The waypoint's report of what it serves: each route's status towards each parent
 * (Accepted, ResolvedRefs, PartiallyInvalid, with Gateway API's reasons), each Gateway's
 * listeners, the sockets, and the problems found in the manifests. Served as JSON on
 * /debug/routes and printed by `kernway routes`; the next step writes the route status
 * to the API server.
 */
import type { Problem } from '../k8s/types.js';
import type { TrafficPolicyStatus } from '../model/traffic-policy.js';
import type { Condition, GatewayStatus, RouteStatus, RoutingTable } from './routing/table.js';

export interface StatusReport {
  namespace: string;
  generation: number;
  routes: RouteStatus[];
  gateways: GatewayStatus[];
  /** BackendTrafficPolicies with their status.ancestors (Accepted, Conflicted). */
  trafficPolicies: readonly TrafficPolicyStatus[];
  /** Mesh parents: 'clusterIP:port' → Service port, with the routes attached. */
  services: { address: string; service: string; port: number; producerRoutes: number; consumerNamespaces: string[] }[];
  listeners: { address: string; port: number; error: string | undefined }[];
  mesh: { address: string; port: number } | undefined;
  problems: Problem[];
}

export function statusReport(
  table: RoutingTable, generation: number, problems: readonly Problem[],
  listeners: StatusReport['listeners'], mesh: StatusReport['mesh'],
): StatusReport {
  const services: StatusReport['services'] = [];
  for (const [address, mp] of table.mesh) {
    const routes = new Set((mp.producer ?? []).map((m) => m.routeKey));
    services.push({ address, service: `${mp.namespace}/${mp.service}`, port: mp.port, producerRoutes: routes.size, consumerNamespaces: [...mp.consumers.keys()].sort() });
  }
  services.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return { namespace: table.namespace, generation, routes: table.routes, gateways: withSockets(table.gateways, listeners), trafficPolicies: table.trafficPolicies, services, listeners, mesh, problems: [...problems] };
}

/**
 * The listeners' conditions as the sockets are, not as the configuration wants them: a
 * listener whose socket could not bind (EADDRINUSE...) is Accepted=False PortUnavailable
 * and Programmed=False, never "listening on". The routing table's objects stay untouched.
 */
function withSockets(gateways: GatewayStatus[], listeners: StatusReport['listeners']): GatewayStatus[] {
  const failed = new Map<string, string>();
  for (const l of listeners) if (l.error !== undefined) failed.set(`${l.address}:${l.port}`, l.error);
  if (failed.size === 0) return gateways;
  return gateways.map((g) => {
    let changed = false;
    const ls = g.listeners.map((l) => {
      const errors = g.addresses.map((a) => failed.get(`${a}:${l.port}`)).filter((e): e is string => e !== undefined);
      if (errors.length === 0 || !l.conditions.some((c) => c.type === 'Programmed' && c.status === 'True')) return l;
      changed = true;
      const conditions: Condition[] = l.conditions.map((c) => {
        if (c.type === 'Programmed') return { ...c, status: 'False', reason: 'Invalid', message: `the listener's socket is not open: ${errors.join('; ')}` };
        if (c.type === 'Accepted') return { ...c, status: 'False', reason: 'PortUnavailable', message: `port ${l.port} cannot be bound: ${errors.join('; ')}` };
        return c;
      });
      return { ...l, conditions };
    });
    return changed ? { ...g, listeners: ls } : g;
  });
}

/** Human-readable lines for `kernway routes`. */
export function formatReport(r: StatusReport): string {
  const out: string[] = [];
  out.push(`namespace ${r.namespace}, configuration generation ${r.generation}`);
  if (r.gateways.length > 0) {
    out.push('', 'GATEWAYS');
    for (const g of r.gateways) {
      out.push(`  ${g.namespace}/${g.name} on ${g.addresses.join(', ')}`);
      for (const l of g.listeners) {
        const bad = l.conditions.filter((c) => (c.type === 'Conflicted' ? c.status === 'True' : c.status === 'False'));
        out.push(`    ${l.name} :${l.port}  routes=${l.attachedRoutes}${bad.length > 0 ? `  ${bad.map((c) => `${c.type}=${c.status} (${c.reason}: ${c.message})`).join('; ')}` : ''}`);
      }
    }
  }
  out.push('', 'ROUTES');
  if (r.routes.length === 0) out.push('  (none attached to this waypoint\'s Gateways or Services)');
  for (const route of r.routes) {
    out.push(`  HTTPRoute ${route.namespace}/${route.name}  (${route.file})`);
    for (const p of route.parents) {
      const ref = p.parentRef;
      const what = `${ref.kind} ${ref.namespace}/${ref.name}${ref.sectionName ? `/${ref.sectionName}` : ''}${ref.port ? `:${ref.port}` : ''}`;
      out.push(`    parent ${what}`);
      for (const c of p.conditions) out.push(`      ${c.type}=${c.status}  ${c.reason}: ${c.message}`);
    }
  }
  if ((r.trafficPolicies ?? []).length > 0) {
    out.push('', 'BACKEND TRAFFIC POLICIES');
    for (const p of r.trafficPolicies) {
      out.push(`  BackendTrafficPolicy ${p.namespace}/${p.name}  (${p.file})`);
      for (const a of p.ancestors) {
        out.push(`    target ${a.ancestorRef.kind} ${a.ancestorRef.namespace}/${a.ancestorRef.name}`);
        for (const c of a.conditions) out.push(`      ${c.type}=${c.status}  ${c.reason}${c.message ? `: ${c.message}` : ''}`);
      }
    }
  }
  if (r.services.length > 0) {
    out.push('', 'MESH SERVICES');
    for (const s of r.services) {
      const routed = s.producerRoutes > 0 || s.consumerNamespaces.length > 0;
      out.push(`  ${s.address}  ${s.service}:${s.port}  ${routed ? `producer routes=${s.producerRoutes}${s.consumerNamespaces.length ? ` consumer routes from ${s.consumerNamespaces.join(', ')}` : ''}` : 'passthrough'}`);
    }
  }
  if (r.problems.length > 0) {
    out.push('', 'PROBLEMS');
    for (const p of r.problems) out.push(`  [${p.code}] ${p.file}${p.object ? ` ${p.object}` : ''}: ${p.message}`);
  }
  return out.join('\n');
}
