/**
 * Waypoint bindings (docs/waypoint-handoff.md): which Service ports the kernel hands to
 * which waypoint, read from the model so that the datapath (redirect at connect()) and
 * the waypoint (which destinations it accepts) agree.
 *
 * - A namespace, or a single Service (which wins over its namespace), carries the label
 *   `kernway.io/use-waypoint: NAME`; `none` on a Service opts it out.
 * - NAME is a Gateway in that namespace of a GatewayClass whose controllerName is
 *   `kernway.io/mesh-controller` (the class `kernway-waypoint`), with a listener
 *   `{name: mesh, port: 15019, protocol: kernway.io/mesh}`.
 * - The waypoint's pods carry `gateway.networking.k8s.io/gateway-name: NAME` in that
 *   namespace; those with an address and not Pending/Succeeded/Failed are its ready pods.
 * - Only ports that speak HTTP go to the waypoint: appProtocol `http`, `kubernetes.io/h2c`
 *   or `grpc`, or without appProtocol a port name `http`, `http-*`, `grpc`, `h2c`. Other
 *   ports stay L4 in the kernel.
 * - The waypoint's own Service (one selecting its pods: every endpoint is a waypoint pod)
 *   never has a waypoint.
 *
 * A label naming a Gateway that is missing or not a kernway waypoint still binds the
 * Service (the kernel then refuses its HTTP ports: L7 policy is never skipped by falling
 * back to L4) and is reported as a problem.
 */
import type { Gateway } from '../k8s/gateway-api-types.js';
import type { Pod, Problem, Service, ServicePort } from '../k8s/types.js';
import type { Model } from './types.js';

export const USE_WAYPOINT_LABEL = 'kernway.io/use-waypoint';
export const WAYPOINT_POD_LABEL = 'gateway.networking.k8s.io/gateway-name';
export const WAYPOINT_OPT_OUT = 'none';
export const WAYPOINT_CLASS = 'kernway-waypoint';
export const MESH_CONTROLLER = 'kernway.io/mesh-controller';
export const MESH_LISTENER = 'mesh';
export const MESH_PORT = 15019;
export const MESH_PROTOCOL = 'kernway.io/mesh';
/** A Service's label names a Gateway that is missing or not a kernway waypoint. */
export const WAYPOINT_NOT_FOUND = 'KW_WAYPOINT_NOT_FOUND';

const HTTP_APP_PROTOCOLS = new Set(['http', 'kubernetes.io/h2c', 'grpc']);

/** True when the port speaks HTTP (client speaks first) and so goes to the waypoint. */
export function isHttpPort(sp: Pick<ServicePort, 'name' | 'protocol' | 'appProtocol'>): boolean {
  if (sp.protocol !== 'TCP') return false;
  if (sp.appProtocol !== undefined) return HTTP_APP_PROTOCOLS.has(sp.appProtocol.toLowerCase());
  const n = sp.name.toLowerCase();
  return n === 'http' || n.startsWith('http-') || n === 'grpc' || n === 'h2c';
}

export interface Waypoint {
  namespace: string;
  name: string;
  /** 'ns/name' of the Gateway. */
  key: string;
  /** False when the Gateway is missing or not a kernway waypoint (bound Services are refused). */
  valid: boolean;
  /** The mesh listener's port (MESH_PORT). */
  meshPort: number;
  /** Addresses of its ready pods (every family), sorted. */
  podIPs: string[];
  /** 'ns/name' of its ready pods. */
  pods: string[];
}

export interface ServiceBinding {
  /** 'ns/name' of the Service. */
  service: string;
  /** 'ns/name' of the waypoint (Gateway). */
  waypoint: string;
  /** Service ports (numbers) handed to the waypoint; the others stay L4. */
  httpPorts: ReadonlySet<number>;
}

export interface WaypointBindings {
  /** By 'ns/name' of the Gateway: every waypoint some namespace or Service names. */
  waypoints: ReadonlyMap<string, Waypoint>;
  /** By 'ns/name' of the Service: bound Services (with at least one HTTP port or not). */
  services: ReadonlyMap<string, ServiceBinding>;
  /** Every ready waypoint pod address (the kernel's mesh-port guard, exemptions). */
  waypointPodIPs: ReadonlySet<string>;
  problems: Problem[];
}

/** The waypoint a Service is bound to by its labels and its namespace's, or undefined. */
export function waypointNameOf(svc: Pick<Service, 'labels' | 'namespace'>, model: Pick<Model, 'namespaces'>): string | undefined {
  const own = svc.labels[USE_WAYPOINT_LABEL];
  if (own !== undefined) return own === WAYPOINT_OPT_OUT || own === '' ? undefined : own;
  const ns = model.namespaces.get(svc.namespace)?.labels[USE_WAYPOINT_LABEL];
  return ns === undefined || ns === '' || ns === WAYPOINT_OPT_OUT ? undefined : ns;
}

function isWaypointGateway(gw: Gateway | undefined, model: Model): boolean {
  if (!gw) return false;
  const cls = model.gatewayClasses.get(gw.className);
  if (!cls || cls.controllerName !== MESH_CONTROLLER) return false;
  return gw.listeners.some((l) => l.port === MESH_PORT && l.protocol === MESH_PROTOCOL);
}

function podReady(p: Pod): boolean {
  if (p.hostNetwork || p.podIPs.length === 0) return false;
  return p.phase === undefined || p.phase === 'Running';
}

/** The waypoint pods of each Gateway named by a waypoint label, by 'ns/name'. */
function podsByWaypoint(pods: Iterable<Pod>): Map<string, Pod[]> {
  const out = new Map<string, Pod[]>();
  for (const p of pods) {
    const gw = p.labels[WAYPOINT_POD_LABEL];
    if (gw === undefined || !podReady(p)) continue;
    const key = `${p.namespace}/${gw}`;
    let l = out.get(key);
    if (!l) out.set(key, (l = []));
    l.push(p);
  }
  return out;
}

/**
 * Every binding of the model. Cost: one pass over Services and Pods; `waypointPods`, when
 * given, stands for the model's pods carrying WAYPOINT_POD_LABEL (the agent keeps that
 * subset from the change sets, so a burst of other pods costs nothing here).
 */
export function waypointBindings(model: Model, waypointPods?: Iterable<Pod>): WaypointBindings {
  const pods = podsByWaypoint(waypointPods ?? model.pods.values());
  const waypoints = new Map<string, Waypoint>();
  const services = new Map<string, ServiceBinding>();
  const waypointPodIPs = new Set<string>();
  const problems: Problem[] = [];
  const waypointOf = (ns: string, name: string): Waypoint => {
    const key = `${ns}/${name}`;
    let w = waypoints.get(key);
    if (w) return w;
    const gw = model.gateways.get(key);
    const ready = (pods.get(key) ?? []).slice().sort((a, b) => (a.key < b.key ? -1 : 1));
    const ips = ready.flatMap((p) => p.podIPs).sort();
    w = { namespace: ns, name, key, valid: isWaypointGateway(gw, model), meshPort: MESH_PORT, podIPs: ips, pods: ready.map((p) => p.key) };
    waypoints.set(key, w);
    return w;
  };
  for (const svc of model.services.values()) {
    const name = waypointNameOf(svc, model);
    if (name === undefined) continue;
    const w = waypointOf(svc.namespace, name);
    // The waypoint's own Service: its endpoints are the waypoint's pods. Never bound (no loop).
    if (isWaypointService(svc, model, w)) continue;
    const httpPorts = new Set(svc.ports.filter(isHttpPort).map((p) => p.port));
    services.set(svc.key, { service: svc.key, waypoint: w.key, httpPorts });
    if (!w.valid) {
      problems.push({
        code: WAYPOINT_NOT_FOUND, file: svc.origin.file, object: `Service ${svc.key}`,
        field: svc.labels[USE_WAYPOINT_LABEL] !== undefined ? `metadata.labels['${USE_WAYPOINT_LABEL}']` : undefined,
        message: `waypoint ${w.key} is not a Gateway of a class with controllerName ${MESH_CONTROLLER} and a listener {port: ${MESH_PORT}, protocol: ${MESH_PROTOCOL}}: ` +
          'its HTTP ports are refused at connect() until it exists',
      });
    }
  }
  for (const w of waypoints.values()) for (const ip of w.podIPs) waypointPodIPs.add(ip);
  // Pods of valid waypoints nobody names yet are waypoint pods too (the mesh-port guard).
  for (const [key, list] of pods) {
    if (waypoints.has(key) || !isWaypointGateway(model.gateways.get(key), model)) continue;
    for (const p of list) for (const ip of p.podIPs) waypointPodIPs.add(ip);
  }
  return { waypoints, services, waypointPodIPs, problems };
}

/** A Service whose every endpoint is a pod of the waypoint (it is the waypoint's own Service). */
function isWaypointService(svc: Service, model: Model, w: Waypoint): boolean {
  const slices = model.slicesByService.get(svc.key);
  if (!slices || slices.length === 0) return false;
  const ips = new Set(w.podIPs);
  let n = 0;
  for (const s of slices) for (const ep of s.endpoints) { if (!ips.has(ep.address)) return false; n++; }
  return n > 0;
}
