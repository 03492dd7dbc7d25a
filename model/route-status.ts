/**
 * The status of the Gateway API kinds, computed from the model once for both readers: the
 * waypoint builds its routing table on it (which listeners are served, which routes attach
 * where, with which host names) and the elected agent writes it to the cluster
 * (clusterStatusOf). Pure: no sockets, no clocks.
 *
 * - Gateways of the namespace whose GatewayClass names the controller: Accepted and
 *   Programmed; each listener Accepted, Programmed, ResolvedRefs (or UnsupportedProtocol,
 *   HostnameConflict, InvalidRouteKinds).
 * - Every HTTPRoute parent this namespace's waypoint answers for: Gateways of ours (listener
 *   by sectionName and port, allowedRoutes, host name intersection) and Services of the
 *   namespace (GAMMA), Accepted with the spec's reasons; ResolvedRefs from the backendRefs
 *   and mirrors (kind, ReferenceGrants, Service port, appProtocol); PartiallyInvalid when
 *   rules were dropped.
 */
import { selectorMatches } from '../k8s/selector.js';
import type { Service, ServicePort } from '../k8s/types.js';
import {
  CONTROLLER_NAME, GATEWAY_GROUP, type Gateway, type HTTPRoute, type Listener, type ObjectRef, type ParentRef,
} from '../k8s/gateway-api-types.js';
import { GATEWAY_CONTROLLER, KERNWAY_CONTROLLERS, MESH_CONTROLLER, type ClusterStatus, type RouteStatusOut } from '../k8s/gateway-status.js';
import type { Model } from './types.js';
import { USE_WAYPOINT_LABEL, WAYPOINT_CLASS, waypointBindings, type WaypointBindings } from './waypoint-binding.js';
import { waypointConfigOf, type WaypointConfig } from './waypoint-config.js';

// ------------------------------------------------------------------ types

export interface Condition { type: string; status: 'True' | 'False'; reason: string; message: string; observedGeneration: number }

export interface RouteParentStatus { parentRef: ParentRef; controllerName: string; conditions: Condition[] }
export interface RouteStatus { namespace: string; name: string; file: string; parents: RouteParentStatus[] }

export interface ListenerStatus { name: string; port: number; attachedRoutes: number; conditions: Condition[] }
export interface GatewayStatus { namespace: string; name: string; file: string; addresses: string[]; conditions: Condition[]; listeners: ListenerStatus[] }

/** Why a backendRef (or mirror) cannot be used: the reasons Gateway API names. */
export type RefFailure = { reason: 'InvalidKind' | 'RefNotPermitted' | 'BackendNotFound' | 'UnsupportedProtocol'; message: string };

/** How the waypoint speaks to a backend. */
export type BackendProtocol = 'http1' | 'h2c';

/** A listener of one of our Gateways that is served, and the addresses it binds. */
export interface ServedListener { gw: Gateway; listener: Listener; addresses: readonly string[] }

/** A route accepted on a served listener, with the host names it serves there. */
export interface GatewayAttachment { route: HTTPRoute; listener: ServedListener; hosts: (string | undefined)[] }

/** A Service of the namespace that routes may attach to, and its ports that are mesh parents. */
export interface MeshParent { service: Service; ports: readonly ServicePort[] }

/** A route accepted on Service ports (a consumer route when it is in another namespace). */
export interface MeshAttachment { route: HTTPRoute; service: string; ports: readonly number[]; consumer: boolean }

export interface RouteStatusOptions {
  namespace: string;
  /** Where Gateway listeners bind unless the Gateway lists spec.addresses. */
  listenAddress: string;
  controllerName?: string;
  /**
   * A Service parent is accepted only when the Service is bound to a valid waypoint (the
   * cluster's status: without one, no waypoint applies the route). Default false: a
   * waypoint computing its own status serves every Service of its namespace it is given.
   */
  requireWaypoint?: boolean;
}

/** What one namespace's waypoint answers for, and the status of it. */
export interface NamespaceRouteStatus {
  gateways: GatewayStatus[];
  /** Sorted by 'ns/name'. */
  routes: RouteStatus[];
  /** In Gateway then listener order. */
  listeners: ServedListener[];
  /** In route then parentRef order. */
  gatewayAttachments: GatewayAttachment[];
  /** By 'ns/name' of the Service, in model order. */
  meshParents: Map<string, MeshParent>;
  meshAttachments: MeshAttachment[];
  /** Some Service of the namespace is bound to a waypoint of it: only bound HTTP ports are mesh parents. */
  strictMesh: boolean;
}

// ------------------------------------------------------------------ backend references

const HTTP_APP_PROTOCOLS: Record<string, BackendProtocol> = {
  'http': 'http1', 'HTTP': 'http1', 'kubernetes.io/ws': 'http1', 'ws': 'http1',
  'kubernetes.io/h2c': 'h2c', 'h2c': 'h2c', 'grpc': 'h2c', 'GRPC': 'h2c', 'http2': 'h2c', 'HTTP2': 'h2c',
};

/** The protocol for a Service port's appProtocol (undefined: plain HTTP/1.1), or undefined when not HTTP. */
export function protocolOf(appProtocol: string | undefined): BackendProtocol | undefined {
  if (appProtocol === undefined || appProtocol === '') return 'http1';
  return HTTP_APP_PROTOCOLS[appProtocol];
}

/**
 * Whether a route in `fromNamespace` may name `ref` at all: a Service, in its namespace, or
 * a parent Service of the route (GAMMA consumer routes), or granted by a ReferenceGrant.
 */
export function refNotAllowed(cfg: WaypointConfig, ref: ObjectRef, fromNamespace: string, parentServices: ReadonlySet<string>): RefFailure | undefined {
  if (ref.group !== '' || ref.kind !== 'Service') {
    return { reason: 'InvalidKind', message: `${ref.group || 'core'}/${ref.kind} ${ref.name} is not a Service; kernway routes to Services only` };
  }
  const key = `${ref.namespace}/${ref.name}`;
  if (ref.namespace !== fromNamespace && !parentServices.has(key) && !granted(cfg, fromNamespace, ref)) {
    return { reason: 'RefNotPermitted', message: `Service ${key} is in another namespace and no ReferenceGrant in ${ref.namespace} allows HTTPRoutes from ${fromNamespace} to refer to it` };
  }
  return undefined;
}

/** The Service port a reference resolves to (no permission check), or why it does not. */
export function servicePortOf(cfg: WaypointConfig, key: string, port: number | undefined):
  { service: Service; port: ServicePort; protocol: BackendProtocol; failure?: undefined } | { failure: RefFailure } {
  const svc = cfg.model.services.get(key);
  if (!svc) return { failure: { reason: 'BackendNotFound', message: `Service ${key} not found` } };
  const sp = svc.ports.find((p) => p.port === port && p.protocol === 'TCP');
  if (!sp) return { failure: { reason: 'BackendNotFound', message: `Service ${key} has no TCP port ${port ?? '(none given)'}` } };
  const appProtocol = cfg.appProtocols.get(key)?.get(sp.port);
  const protocol = protocolOf(appProtocol);
  if (!protocol) return { failure: { reason: 'UnsupportedProtocol', message: `Service ${key} port ${sp.port} has appProtocol ${JSON.stringify(appProtocol)}, which the waypoint does not speak (it speaks HTTP/1.1, h2c, gRPC and WebSocket)` } };
  return { service: svc, port: sp, protocol };
}

function granted(cfg: WaypointConfig, fromNamespace: string, ref: ObjectRef): boolean {
  return cfg.grants.some((g) => g.meta.namespace === ref.namespace &&
    g.from.some((f) => f.group === GATEWAY_GROUP && f.kind === 'HTTPRoute' && f.namespace === fromNamespace) &&
    g.to.some((t) => t.group === '' && t.kind === 'Service' && (t.name === undefined || t.name === ref.name)));
}

/** The failures of a route's references, in rule order (each rule: its mirrors, then each backendRef and its mirrors). */
export function routeRefFailures(cfg: WaypointConfig, r: HTTPRoute): RefFailure[] {
  const parentServices = new Set(r.parentRefs.filter(isServiceRef).map((p) => `${p.namespace}/${p.name}`));
  const failures: RefFailure[] = [];
  const check = (ref: ObjectRef): void => {
    const f = refNotAllowed(cfg, ref, r.meta.namespace, parentServices) ?? servicePortOf(cfg, `${ref.namespace}/${ref.name}`, ref.port).failure;
    if (f) failures.push(f);
  };
  for (const rule of r.rules) {
    for (const f of rule.filters) if (f.type === 'RequestMirror') check(f.backend);
    for (const b of rule.backendRefs) {
      check(b);
      for (const f of b.filters) if (f.type === 'RequestMirror') check(f.backend);
    }
  }
  return failures;
}

// ------------------------------------------------------------------ status of one namespace

/**
 * What each namespace's status reads of the whole model, computed once per configuration:
 * clusterStatusOf asks for every namespace with Gateway API objects, and the bindings are a
 * pass over every Service and waypoint pod (10,000 Services: that pass per namespace made a
 * status round of the elected agent cost tens of ms per namespace on every model change).
 */
interface Shared { bindings: WaypointBindings; servicesByNamespace: Map<string, Service[]> }
const shared = new WeakMap<WaypointConfig, Shared>();

function sharedOf(cfg: WaypointConfig): Shared {
  let s = shared.get(cfg);
  if (!s) {
    const servicesByNamespace = new Map<string, Service[]>();
    for (const svc of cfg.model.services.values()) {
      let l = servicesByNamespace.get(svc.namespace);
      if (!l) servicesByNamespace.set(svc.namespace, (l = []));
      l.push(svc);
    }
    s = { bindings: waypointBindings(cfg.model), servicesByNamespace };
    shared.set(cfg, s);
  }
  return s;
}

export function routeStatusOf(cfg: WaypointConfig, opts: RouteStatusOptions): NamespaceRouteStatus {
  const controller = opts.controllerName ?? CONTROLLER_NAME;
  const ns = opts.namespace;
  const routeStatus = new Map<string, RouteStatus>();
  const statusOf = (r: HTTPRoute): RouteStatus => {
    let s = routeStatus.get(r.meta.key);
    if (!s) routeStatus.set(r.meta.key, (s = { namespace: r.meta.namespace, name: r.meta.name, file: r.meta.file, parents: [] }));
    return s;
  };

  // ---- Gateways
  const namespaces = cfg.model.namespaces;
  const nsLabels = (name: string): Readonly<Record<string, string>> => ({ ...(namespaces.get(name)?.labels ?? {}), 'kubernetes.io/metadata.name': name });
  const ours = cfg.gateways.filter((g) => g.meta.namespace === ns && cfg.gatewayClasses.get(g.className)?.controllerName === controller);
  const gatewayStatus: GatewayStatus[] = [];
  const attached = new Map<string, number>();
  const served: ServedListener[] = [];
  for (const gw of ours) {
    const addresses = gw.addresses.length > 0 ? [...gw.addresses] : [opts.listenAddress];
    const listeners: ListenerStatus[] = [];
    const seenPortHost = new Set<string>();
    for (const l of gw.listeners) {
      const conds: Condition[] = [];
      const gen = gw.meta.generation;
      if (l.protocol !== 'HTTP') {
        conds.push(cond('Accepted', false, 'UnsupportedProtocol', `protocol ${l.protocol} is not supported by the kernway waypoint (HTTP only)`, gen));
        conds.push(cond('Programmed', false, 'Invalid', 'the listener is not served', gen));
        listeners.push({ name: l.name, port: l.port, attachedRoutes: 0, conditions: conds });
        continue;
      }
      const badKind = l.allowedRoutes.kinds.find((k) => !(k.group === GATEWAY_GROUP && k.kind === 'HTTPRoute'));
      const conflictKey = `${l.port}/${l.hostname ?? '*'}`;
      if (seenPortHost.has(conflictKey)) {
        conds.push(cond('Conflicted', true, 'HostnameConflict', `another listener of this Gateway serves port ${l.port} for the same host name`, gen));
        conds.push(cond('Accepted', false, 'HostnameConflict', 'conflicted', gen));
        conds.push(cond('Programmed', false, 'Invalid', 'the listener is not served', gen));
        listeners.push({ name: l.name, port: l.port, attachedRoutes: 0, conditions: conds });
        continue;
      }
      seenPortHost.add(conflictKey);
      conds.push(cond('Accepted', true, 'Accepted', 'served by the kernway waypoint', gen));
      conds.push(cond('Programmed', true, 'Programmed', `listening on ${addresses.map((a) => `${a}:${l.port}`).join(', ')}`, gen));
      conds.push(badKind
        ? cond('ResolvedRefs', false, 'InvalidRouteKinds', `route kind ${badKind.group}/${badKind.kind} is not supported (HTTPRoute only)`, gen)
        : cond('ResolvedRefs', true, 'ResolvedRefs', 'all references resolved', gen));
      listeners.push({ name: l.name, port: l.port, attachedRoutes: 0, conditions: conds });
      served.push({ gw, listener: l, addresses });
    }
    gatewayStatus.push({
      namespace: gw.meta.namespace, name: gw.meta.name, file: gw.meta.file, addresses,
      conditions: [cond('Accepted', true, 'Accepted', `GatewayClass ${gw.className} is served by ${controller}`, gw.meta.generation),
        cond('Programmed', true, 'Programmed', 'listeners are served by the namespace waypoint', gw.meta.generation)],
      listeners,
    });
  }

  // ---- Services (mesh parents) of the namespace
  const meshParents = new Map<string, MeshParent>();
  const { bindings, servicesByNamespace } = sharedOf(cfg);
  const boundHere = (key: string): ReturnType<typeof bindings.services.get> => {
    const b = bindings.services.get(key);
    return b && b.waypoint.startsWith(`${ns}/`) ? b : undefined;
  };
  const strictMesh = [...bindings.services.keys()].some((k) => boundHere(k) !== undefined);
  for (const svc of servicesByNamespace.get(ns) ?? []) {
    if (svc.clusterIPs.length === 0) continue;
    const bound = strictMesh ? boundHere(svc.key) : undefined;
    const ports = svc.ports.filter((sp) => sp.protocol === 'TCP' && (!strictMesh || bound?.httpPorts.has(sp.port) === true));
    meshParents.set(svc.key, { service: svc, ports });
  }

  // ---- Attach routes to parents
  const gatewayAttachments: GatewayAttachment[] = [];
  const meshAttachments: MeshAttachment[] = [];
  for (const r of cfg.routes) {
    const gen = r.meta.generation;
    let failures: RefFailure[] | undefined;
    const finish = (pr: ParentRef, conds: Condition[]): void => {
      finishParent(statusOf(r), pr, controller, conds, r, (failures ??= routeRefFailures(cfg, r)), gen);
    };
    for (const pr of r.parentRefs) {
      if (isServiceRef(pr)) {
        if (pr.namespace !== ns) continue; // another namespace's waypoint answers for it
        const svcKey = `${pr.namespace}/${pr.name}`;
        const parent = meshParents.get(svcKey);
        const conds: Condition[] = [];
        const binding = bindings.services.get(svcKey);
        if (!parent) {
          conds.push(cond('Accepted', false, 'NoMatchingParent', `Service ${svcKey} not found (or it has no cluster IP)`, gen));
        } else if (opts.requireWaypoint && !(binding && bindings.waypoints.get(binding.waypoint)?.valid)) {
          conds.push(cond('Accepted', false, 'NoMatchingParent', binding
            ? `Service ${svcKey} is bound to waypoint ${binding.waypoint}, which is not a Gateway of class ${WAYPOINT_CLASS}: no waypoint applies the route`
            : `Service ${svcKey} is not bound to a waypoint (label it or namespace ${ns} ${USE_WAYPOINT_LABEL}: NAME, a Gateway of class ${WAYPOINT_CLASS}): no waypoint applies the route`, gen));
        } else {
          const targets = pr.port === undefined ? parent.ports : parent.ports.filter((p) => p.port === pr.port);
          if (targets.length === 0) conds.push(cond('Accepted', false, 'NoMatchingParent', `Service ${svcKey} has no port ${pr.port}`, gen));
          else if (r.rules.length === 0) conds.push(cond('Accepted', false, 'UnsupportedValue', droppedMessage(r), gen));
          else {
            conds.push(cond('Accepted', true, 'Accepted', 'attached to the Service', gen));
            meshAttachments.push({ route: r, service: svcKey, ports: targets.map((p) => p.port), consumer: r.meta.namespace !== pr.namespace });
          }
        }
        finish(pr, conds);
        continue;
      }
      if (pr.group !== GATEWAY_GROUP || pr.kind !== 'Gateway') continue;
      const gw = ours.find((g) => g.meta.namespace === pr.namespace && g.meta.name === pr.name);
      if (!gw) {
        if (pr.namespace === ns && !cfg.gateways.some((g) => g.meta.namespace === pr.namespace && g.meta.name === pr.name)) {
          finish(pr, [cond('Accepted', false, 'NoMatchingParent', `Gateway ${pr.namespace}/${pr.name} not found`, gen)]);
        }
        continue;
      }
      const candidates = served.filter((x) => x.gw === gw && (pr.sectionName === undefined || x.listener.name === pr.sectionName) && (pr.port === undefined || x.listener.port === pr.port));
      const conds: Condition[] = [];
      if (candidates.length === 0) {
        conds.push(cond('Accepted', false, 'NoMatchingParent', pr.sectionName !== undefined || pr.port !== undefined
          ? `Gateway ${gw.meta.key} has no served HTTP listener${pr.sectionName !== undefined ? ` named ${pr.sectionName}` : ''}${pr.port !== undefined ? ` on port ${pr.port}` : ''}`
          : `Gateway ${gw.meta.key} has no served HTTP listener`, gen));
      } else {
        const allowed = candidates.filter((x) => routeAllowed(x.gw, x.listener, r.meta.namespace, nsLabels(r.meta.namespace)));
        const withHosts = allowed.map((x) => ({ x, hosts: intersectHostnames(x.listener.hostname, r.hostnames) })).filter((a) => a.hosts.length > 0);
        if (allowed.length === 0) conds.push(cond('Accepted', false, 'NotAllowedByListeners', `the listeners of Gateway ${gw.meta.key} do not allow HTTPRoutes from namespace ${r.meta.namespace}`, gen));
        else if (withHosts.length === 0) conds.push(cond('Accepted', false, 'NoMatchingListenerHostname', 'no listener host name intersects the route\'s host names', gen));
        else if (r.rules.length === 0) conds.push(cond('Accepted', false, 'UnsupportedValue', droppedMessage(r), gen));
        else {
          conds.push(cond('Accepted', true, 'Accepted', `attached to ${withHosts.map((a) => a.x.listener.name).filter(unique).join(', ')}`, gen));
          for (const { x, hosts } of withHosts) {
            const lkey = `${gw.meta.key}/${x.listener.name}`;
            attached.set(lkey, (attached.get(lkey) ?? 0) + 1);
            gatewayAttachments.push({ route: r, listener: x, hosts });
          }
        }
      }
      finish(pr, conds);
    }
  }

  for (const gs of gatewayStatus) {
    for (const ls of gs.listeners) ls.attachedRoutes = attached.get(`${gs.namespace}/${gs.name}/${ls.name}`) ?? 0;
  }

  return {
    gateways: gatewayStatus,
    routes: [...routeStatus.values()].sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1)),
    listeners: served,
    gatewayAttachments,
    meshParents,
    meshAttachments,
    strictMesh,
  };
}

// ------------------------------------------------------------------ the cluster's status

/**
 * The status kernway writes to the cluster's Gateway API objects: per namespace, the
 * Gateways of class controller kernway.io/gateway-controller and their listeners, and every
 * HTTPRoute's kernway parents (Gateways of ours, and Services, whose entries carry
 * kernway.io/mesh-controller). GatewayClasses of either controller are Accepted. Every
 * HTTPRoute of the model is listed, with no parents when none is kernway's, so that
 * kernway's stale entries are removed. Gateways of class kernway-waypoint get their status
 * from the waypoint controller (agent/cluster/waypoints.ts). BackendTrafficPolicies get
 * their status.ancestors (model/traffic-policy.ts).
 */
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
    const st = routeStatusOf(cfg, { namespace: ns, listenAddress: '0.0.0.0', controllerName: GATEWAY_CONTROLLER, requireWaypoint: true });
    for (const g of st.gateways) {
      const gw = cfg.gateways.find((x) => x.meta.namespace === g.namespace && x.meta.name === g.name);
      out.gateways.push({
        namespace: g.namespace, name: g.name, conditions: g.conditions, listeners: g.listeners.map((l) => ({ name: l.name, attachedRoutes: l.attachedRoutes, conditions: l.conditions })),
        ...(gw && gw.addresses.length > 0 ? { addresses: gw.addresses.map((a) => ({ type: 'IPAddress', value: a })) } : {}),
      });
    }
    for (const rs of st.routes) {
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

// ------------------------------------------------------------------ host names

/** Whether `pattern` (exact or '*.suffix') matches the concrete host `host`. */
export function hostMatches(pattern: string, host: string): boolean {
  if (!pattern.startsWith('*.')) return pattern === host;
  const suffix = pattern.slice(1); // '.suffix'
  return host.length > suffix.length && host.endsWith(suffix);
}

/**
 * The host names a route serves on a listener: the intersection of the listener's host
 * name (undefined: any) and the route's (empty: any). Returns [] when they do not
 * intersect, [undefined] when both allow any host.
 */
export function intersectHostnames(listener: string | undefined, route: readonly string[]): (string | undefined)[] {
  if (route.length === 0) return [listener];
  if (listener === undefined) return [...route];
  const out = new Set<string>();
  for (const r of route) {
    if (r === listener) out.add(r);
    else if (!r.startsWith('*.') && hostMatches(listener, r)) out.add(r);
    else if (r.startsWith('*.') && !listener.startsWith('*.') && hostMatches(r, listener)) out.add(listener);
    else if (r.startsWith('*.') && listener.startsWith('*.')) {
      // Two wildcards intersect when one's suffix contains the other's: keep the narrower.
      if (r.endsWith(listener.slice(1))) out.add(r);
      else if (listener.endsWith(r.slice(1))) out.add(listener);
    }
  }
  return [...out];
}

// ------------------------------------------------------------------ helpers

export function isServiceRef(p: ParentRef): boolean {
  return p.group === '' && p.kind === 'Service';
}

function cond(type: string, ok: boolean, reason: string, message: string, observedGeneration: number): Condition {
  return { type, status: ok ? 'True' : 'False', reason, message, observedGeneration };
}

function unique<T>(v: T, i: number, a: T[]): boolean {
  return a.indexOf(v) === i;
}

function droppedMessage(r: HTTPRoute): string {
  return `no rule can be served: ${r.droppedRules.map((d) => `rule ${d.index}: ${d.reason}`).join('; ')}`;
}

function finishParent(st: RouteStatus, pr: ParentRef, controller: string, conds: Condition[], r: HTTPRoute, failures: RefFailure[], gen: number): void {
  const first = failures[0];
  conds.push(first
    ? cond('ResolvedRefs', false, first.reason, failures.map((f) => f.message).filter(unique).join('; '), gen)
    : cond('ResolvedRefs', true, 'ResolvedRefs', 'all references resolved', gen));
  if (r.droppedRules.length > 0 && r.rules.length > 0) {
    conds.push(cond('PartiallyInvalid', true, 'UnsupportedValue', `dropped: ${r.droppedRules.map((d) => `rule ${d.index}: ${d.reason}`).join('; ')}`, gen));
  }
  st.parents.push({ parentRef: pr, controllerName: controller, conditions: conds });
}

function routeAllowed(gw: Gateway, l: Listener, routeNs: string, labels: Readonly<Record<string, string>>): boolean {
  if (l.allowedRoutes.kinds.length > 0 && !l.allowedRoutes.kinds.some((k) => k.group === GATEWAY_GROUP && k.kind === 'HTTPRoute')) return false;
  switch (l.allowedRoutes.from) {
    case 'Same': return routeNs === gw.meta.namespace;
    case 'All': return true;
    case 'Selector': return l.allowedRoutes.selector !== undefined && selectorMatches(l.allowedRoutes.selector, labels);
  }
}
