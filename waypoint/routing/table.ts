/**
 * The routing table: what the waypoint serves, built from one WaypointConfig.
 *
 * - Gateway parents: the listeners of the namespace's Gateways whose GatewayClass names
 *   kernway's controller, grouped by bind address and port; a request picks the most
 *   specific listener host name, then the route rules attached to it.
 * - Service parents (GAMMA): each cluster IP and port of the namespace's Services; the
 *   routes are the producer routes (the Service's namespace) and, per caller namespace,
 *   consumer routes, which win for their namespace. A Service port without routes passes
 *   traffic through to its endpoints.
 * - The status of every route towards the parents this waypoint answers for.
 *
 * Pure: no sockets, no clocks. The proxy keeps per-endpoint state elsewhere.
 */
import { selectorMatches } from '../../k8s/selector.js';
import type { Pod } from '../../k8s/types.js';
import { AuthzTable } from '../authz/evaluate.js';
import type { WaypointConfig } from '../../model/waypoint-config.js';
import type { TrafficAttachments, TrafficPolicyStatus } from '../../model/traffic-policy.js';
import { compileTraffic, type CompiledTraffic } from '../resilience/compile.js';
import {
  CONTROLLER_NAME, GATEWAY_GROUP, type Cors, type Gateway, type HTTPRoute, type HeaderModifier,
  type Listener, type ParentRef, type Redirect, type Retry, type Rewrite, type Rule,
} from '../../k8s/gateway-api-types.js';
import { BackendResolver, type RefFailure, type ServiceTarget } from './backends.js';
import { hostMatches, hostSpecificity, intersectHostnames } from './hostnames.js';
import { comparePrecedence as compareMatchPrecedence, compileMatch, firstMatch, type CompiledMatch, type MatchRequest } from './match.js';
import { prefixKey } from './path.js';
import { workloadOf as workloadName } from '../../model/workload.js';
import { waypointBindings } from '../../model/waypoint-binding.js';

// ------------------------------------------------------------------ compiled rules

export interface CompiledBackend {
  weight: number;
  target: ServiceTarget | undefined;
  /** Why the backend cannot be used (its share of requests gets 500). */
  failure: RefFailure | undefined;
  requestHeaders: HeaderModifier | undefined;
  responseHeaders: HeaderModifier | undefined;
  rewrite: Rewrite | undefined;
  /** A RequestRedirect filter on the backendRef: requests given this backend are redirected. */
  redirect: Redirect | undefined;
  /** RequestMirror filters on the backendRef: mirrors of requests given this backend. */
  mirrors: readonly CompiledMirror[];
  /** The BackendTrafficPolicy settings for requests given this backend (Service-level and route-level merged); undefined without a policy. */
  traffic: CompiledTraffic | undefined;
}

export interface CompiledMirror { target: ServiceTarget | undefined; percent: number }

export interface CompiledRule {
  /** 'ns/name' of the route, or '' for passthrough. */
  route: string;
  /** The rule's name, or its index. */
  rule: string;
  requestHeaders: HeaderModifier | undefined;
  responseHeaders: HeaderModifier | undefined;
  redirect: Redirect | undefined;
  rewrite: Rewrite | undefined;
  cors: Cors | undefined;
  mirrors: readonly CompiledMirror[];
  backends: readonly CompiledBackend[];
  totalWeight: number;
  /** The matched PathPrefix (prefix key) for ReplacePrefixMatch; CEL makes it unique per rule. */
  prefix: string | undefined;
  requestTimeoutMs: number | undefined;
  backendRequestTimeoutMs: number | undefined;
  retry: Retry | undefined;
}

export type RuleMatch = CompiledMatch<CompiledRule>;

/** Route rules of one host pattern, in precedence order. */
interface HostBucket { pattern: string | undefined; matches: RuleMatch[] }

/** The rules reachable through one listener host name (possibly merged from several Gateways). */
export class HostTable {
  private readonly exact = new Map<string, HostBucket>();
  private wildcards: HostBucket[] = [];
  private any: HostBucket | undefined;

  add(pattern: string | undefined, m: RuleMatch): void {
    let b: HostBucket | undefined;
    if (pattern === undefined) b = this.any ??= { pattern, matches: [] };
    else if (!pattern.startsWith('*.')) {
      b = this.exact.get(pattern);
      if (!b) this.exact.set(pattern, (b = { pattern, matches: [] }));
    } else {
      b = this.wildcards.find((w) => w.pattern === pattern);
      if (!b) this.wildcards.push((b = { pattern, matches: [] }));
    }
    b.matches.push(m);
  }

  seal(): void {
    for (const b of this.exact.values()) b.matches.sort(compareMatchPrecedence);
    for (const b of this.wildcards) b.matches.sort(compareMatchPrecedence);
    this.wildcards.sort((a, b) => hostSpecificity(b.pattern) - hostSpecificity(a.pattern));
    this.any?.matches.sort(compareMatchPrecedence);
  }

  get size(): number {
    let n = this.any?.matches.length ?? 0;
    for (const b of this.exact.values()) n += b.matches.length;
    for (const b of this.wildcards) n += b.matches.length;
    return n;
  }

  /**
   * The rule for a request: host names of routes in order of specificity (exact, longer
   * wildcards, then routes without host names), and in each the first match by precedence.
   */
  lookup(host: string | undefined, req: MatchRequest): RuleMatch | undefined {
    if (host !== undefined) {
      const e = this.exact.get(host);
      if (e) { const m = firstMatch(e.matches, req); if (m) return m; }
      for (const w of this.wildcards) {
        if (!hostMatches(w.pattern!, host)) continue;
        const m = firstMatch(w.matches, req);
        if (m) return m;
      }
    }
    return this.any ? firstMatch(this.any.matches, req) : undefined;
  }
}

export interface ListenerEntry {
  /** Listener host name (undefined: any). */
  hostname: string | undefined;
  /** 'gwns/gw/listener' of every listener merged here. */
  listeners: string[];
  /** Gateways of the merged listeners (for authorization targets and metrics). */
  gateway: string;
  port: number;
  table: HostTable;
}

/** One socket to listen on for Gateway traffic. */
export interface BoundPort {
  address: string;
  port: number;
  /** Most specific host name first. */
  entries: ListenerEntry[];
}

export interface MeshPort {
  namespace: string;
  service: string;
  port: number;
  /** Producer routes (in the Service's namespace), or undefined when none. */
  producer: RuleMatch[] | undefined;
  /** Consumer routes by the caller namespace they apply to. */
  consumers: Map<string, RuleMatch[]>;
  /** What unrouted traffic gets: the Service port itself. */
  passthrough: CompiledRule;
}

export interface Condition { type: string; status: 'True' | 'False'; reason: string; message: string; observedGeneration: number }

export interface RouteParentStatus { parentRef: ParentRef; controllerName: string; conditions: Condition[] }
export interface RouteStatus { namespace: string; name: string; file: string; parents: RouteParentStatus[] }

export interface ListenerStatus { name: string; port: number; attachedRoutes: number; conditions: Condition[] }
export interface GatewayStatus { namespace: string; name: string; file: string; addresses: string[]; conditions: Condition[]; listeners: ListenerStatus[] }

export interface PodIdentity { namespace: string; name: string; serviceAccount: string; workload: string }
export interface PodEntry { pod: Pod; identity: PodIdentity }

export interface RoutingTable {
  namespace: string;
  /** Gateway sockets by 'address:port'. */
  ports: Map<string, BoundPort>;
  /** Mesh parents by 'clusterIP:port'. */
  mesh: Map<string, MeshPort>;
  /** Every Pod by IP: callers' identities, destination workloads (authorization), direct destinations. */
  pods: Map<string, PodEntry>;
  authz: AuthzTable;
  routes: RouteStatus[];
  gateways: GatewayStatus[];
  /** BackendTrafficPolicies and their status.ancestors. */
  trafficPolicies: readonly TrafficPolicyStatus[];
  /** Counts, for logs and readiness. */
  stats: { routes: number; rules: number; listeners: number; meshPorts: number };
  /**
   * Some Service of the namespace is bound to a waypoint of it (kernway.io/use-waypoint,
   * docs/waypoint-handoff.md): the mesh port then accepts only those Services' HTTP ports
   * as destinations, never a pod or another Service (a forged PROXY header names nothing else).
   */
  strictMesh: boolean;
}

export interface TableOptions {
  namespace: string;
  /** Where Gateway listeners bind unless the Gateway lists spec.addresses. */
  listenAddress: string;
  controllerName?: string;
}

// ------------------------------------------------------------------ build

export function buildRoutingTable(cfg: WaypointConfig, opts: TableOptions): RoutingTable {
  const controller = opts.controllerName ?? CONTROLLER_NAME;
  const ns = opts.namespace;
  const resolver = new BackendResolver(cfg);
  const routeStatus = new Map<string, RouteStatus>();
  const statusOf = (r: HTTPRoute): RouteStatus => {
    let s = routeStatus.get(r.meta.key);
    if (!s) routeStatus.set(r.meta.key, (s = { namespace: r.meta.namespace, name: r.meta.name, file: r.meta.file, parents: [] }));
    return s;
  };

  // Compile each route's rules once (they do not depend on the parent).
  const compiled = new Map<string, { rules: { rule: Rule; compiled: CompiledRule }[]; failures: RefFailure[] }>();
  for (const r of cfg.routes) {
    const parentServices = new Set(r.parentRefs.filter(isServiceRef).map((p) => `${p.namespace}/${p.name}`));
    const failures: RefFailure[] = [];
    const rules = r.rules.map((rule) => ({ rule, compiled: compileRule(r, rule, resolver, parentServices, failures, cfg.trafficAttachments) }));
    compiled.set(r.meta.key, { rules, failures });
  }

  // ---- Gateways
  const namespaces = cfg.model.namespaces;
  const nsLabels = (name: string): Readonly<Record<string, string>> => ({ ...(namespaces.get(name)?.labels ?? {}), 'kubernetes.io/metadata.name': name });
  const ours = cfg.gateways.filter((g) => g.meta.namespace === ns && cfg.gatewayClasses.get(g.className)?.controllerName === controller);
  const gatewayStatus: GatewayStatus[] = [];
  const ports = new Map<string, BoundPort>();
  const attached = new Map<string, number>();
  interface LiveListener { gw: Gateway; l: Listener; entry: ListenerEntry }
  const live: LiveListener[] = [];
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
      for (const address of addresses) {
        const pk = `${address}:${l.port}`;
        let bp = ports.get(pk);
        if (!bp) ports.set(pk, (bp = { address, port: l.port, entries: [] }));
        let entry = bp.entries.find((e) => e.hostname === l.hostname);
        if (!entry) bp.entries.push((entry = { hostname: l.hostname, listeners: [], gateway: gw.meta.key, port: l.port, table: new HostTable() }));
        entry.listeners.push(`${gw.meta.key}/${l.name}`);
        if (!entry.gateway.split(',').includes(gw.meta.key)) entry.gateway += `,${gw.meta.key}`;
        live.push({ gw, l, entry });
      }
    }
    gatewayStatus.push({
      namespace: gw.meta.namespace, name: gw.meta.name, file: gw.meta.file, addresses,
      conditions: [cond('Accepted', true, 'Accepted', `GatewayClass ${gw.className} is served by ${controller}`, gw.meta.generation),
        cond('Programmed', true, 'Programmed', 'listeners are served by the namespace waypoint', gw.meta.generation)],
      listeners,
    });
  }
  for (const bp of ports.values()) bp.entries.sort((a, b) => hostSpecificity(b.hostname) - hostSpecificity(a.hostname));

  // ---- Services (mesh parents) of the namespace
  const mesh = new Map<string, MeshPort>();
  const meshByService = new Map<string, MeshPort[]>();
  const bindings = waypointBindings(cfg.model);
  const boundHere = (key: string): ReturnType<typeof bindings.services.get> => {
    const b = bindings.services.get(key);
    return b && b.waypoint.startsWith(`${ns}/`) ? b : undefined;
  };
  const strictMesh = [...bindings.services.keys()].some((k) => boundHere(k) !== undefined);
  for (const svc of cfg.model.services.values()) {
    if (svc.namespace !== ns || svc.clusterIPs.length === 0) continue;
    const bound = strictMesh ? boundHere(svc.key) : undefined;
    const list: MeshPort[] = [];
    for (const sp of svc.ports) {
      if (sp.protocol !== 'TCP') continue;
      if (strictMesh && !bound?.httpPorts.has(sp.port)) continue;
      const res = resolver.serviceTarget(svc.key, sp.port);
      const svcPolicy = cfg.trafficAttachments.byService.get(svc.key);
      const passthrough = passthroughRule(res.target, undefined, svcPolicy && compileTraffic(svcPolicy, undefined, svc.key, ''));
      const mp: MeshPort = { namespace: svc.namespace, service: svc.name, port: sp.port, producer: undefined, consumers: new Map(), passthrough };
      list.push(mp);
      for (const ip of svc.clusterIPs) mesh.set(`${ip}:${sp.port}`, mp);
    }
    meshByService.set(svc.key, list);
  }

  // ---- Attach routes to parents
  let ruleCount = 0;
  for (const r of cfg.routes) {
    const c = compiled.get(r.meta.key)!;
    const gen = r.meta.generation;
    for (const pr of r.parentRefs) {
      if (isServiceRef(pr)) {
        if (pr.namespace !== ns) continue; // another namespace's waypoint answers for it
        const svcKey = `${pr.namespace}/${pr.name}`;
        const svcPorts = meshByService.get(svcKey);
        const conds: Condition[] = [];
        if (!svcPorts) {
          conds.push(cond('Accepted', false, 'NoMatchingParent', `Service ${svcKey} not found (or it has no cluster IP)`, gen));
        } else {
          const targets = pr.port === undefined ? svcPorts : svcPorts.filter((p) => p.port === pr.port);
          if (targets.length === 0) conds.push(cond('Accepted', false, 'NoMatchingParent', `Service ${svcKey} has no port ${pr.port}`, gen));
          else if (c.rules.length === 0) conds.push(cond('Accepted', false, 'UnsupportedValue', droppedMessage(r), gen));
          else {
            conds.push(cond('Accepted', true, 'Accepted', 'attached to the Service', gen));
            for (const mp of targets) {
              const consumer = r.meta.namespace !== pr.namespace;
              let list: RuleMatch[];
              if (consumer) {
                list = mp.consumers.get(r.meta.namespace) ?? [];
                mp.consumers.set(r.meta.namespace, list);
              } else list = mp.producer ??= [];
              for (const m of matchesOf(r, c.rules)) list.push(m);
            }
          }
        }
        finishParent(statusOf(r), pr, controller, conds, r, c.failures, gen);
        continue;
      }
      if (pr.group !== GATEWAY_GROUP || pr.kind !== 'Gateway') continue;
      const gw = ours.find((g) => g.meta.namespace === pr.namespace && g.meta.name === pr.name);
      if (!gw) {
        if (pr.namespace === ns && !cfg.gateways.some((g) => g.meta.namespace === pr.namespace && g.meta.name === pr.name)) {
          finishParent(statusOf(r), pr, controller, [cond('Accepted', false, 'NoMatchingParent', `Gateway ${pr.namespace}/${pr.name} not found`, gen)], r, c.failures, gen);
        }
        continue;
      }
      const candidates = live.filter((x) => x.gw === gw && (pr.sectionName === undefined || x.l.name === pr.sectionName) && (pr.port === undefined || x.l.port === pr.port));
      const conds: Condition[] = [];
      if (candidates.length === 0) {
        conds.push(cond('Accepted', false, 'NoMatchingParent', pr.sectionName !== undefined || pr.port !== undefined
          ? `Gateway ${gw.meta.key} has no served HTTP listener${pr.sectionName !== undefined ? ` named ${pr.sectionName}` : ''}${pr.port !== undefined ? ` on port ${pr.port}` : ''}`
          : `Gateway ${gw.meta.key} has no served HTTP listener`, gen));
      } else {
        const allowed = candidates.filter((x) => routeAllowed(x.gw, x.l, r.meta.namespace, nsLabels(r.meta.namespace)));
        const withHosts = allowed.map((x) => ({ x, hosts: intersectHostnames(x.l.hostname, r.hostnames) })).filter((a) => a.hosts.length > 0);
        if (allowed.length === 0) conds.push(cond('Accepted', false, 'NotAllowedByListeners', `the listeners of Gateway ${gw.meta.key} do not allow HTTPRoutes from namespace ${r.meta.namespace}`, gen));
        else if (withHosts.length === 0) conds.push(cond('Accepted', false, 'NoMatchingListenerHostname', 'no listener host name intersects the route\'s host names', gen));
        else if (c.rules.length === 0) conds.push(cond('Accepted', false, 'UnsupportedValue', droppedMessage(r), gen));
        else {
          conds.push(cond('Accepted', true, 'Accepted', `attached to ${withHosts.map((a) => a.x.l.name).filter(unique).join(', ')}`, gen));
          const counted = new Set<string>();
          for (const { x, hosts } of withHosts) {
            const lkey = `${gw.meta.key}/${x.l.name}`;
            if (!counted.has(lkey)) { attached.set(lkey, (attached.get(lkey) ?? 0) + 1); counted.add(lkey); }
            for (const h of hosts) for (const m of matchesOf(r, c.rules)) x.entry.table.add(h, m);
          }
        }
      }
      finishParent(statusOf(r), pr, controller, conds, r, c.failures, gen);
    }
    ruleCount += c.rules.length;
  }

  for (const bp of ports.values()) for (const e of bp.entries) e.table.seal();
  for (const mp of new Set(mesh.values())) {
    mp.producer?.sort(compareMatchPrecedence);
    for (const l of mp.consumers.values()) l.sort(compareMatchPrecedence);
  }
  for (const gs of gatewayStatus) {
    for (const ls of gs.listeners) ls.attachedRoutes = attached.get(`${gs.namespace}/${gs.name}/${ls.name}`) ?? 0;
  }

  const pods = new Map<string, PodEntry>();
  for (const pod of cfg.model.pods.values()) {
    if (pod.hostNetwork) continue;
    const entry: PodEntry = { pod, identity: { namespace: pod.namespace, name: pod.name, serviceAccount: `${pod.namespace}/${pod.serviceAccountName}`, workload: workloadOf(pod) } };
    for (const ip of pod.podIPs) pods.set(ip, entry);
  }

  return {
    namespace: ns,
    ports,
    mesh,
    pods,
    authz: new AuthzTable(cfg.policies),
    routes: [...routeStatus.values()].sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1)),
    gateways: gatewayStatus,
    trafficPolicies: cfg.trafficAttachments.status,
    stats: { routes: routeStatus.size, rules: ruleCount, listeners: live.length, meshPorts: new Set(mesh.values()).size },
    strictMesh,
  };
}

// ------------------------------------------------------------------ lookups used by the proxy

/** The listener entry of a bound port for a request host. */
export function selectListener(bp: BoundPort, host: string | undefined): ListenerEntry | undefined {
  for (const e of bp.entries) {
    if (e.hostname === undefined) return e;
    if (host !== undefined && hostMatches(e.hostname, host)) return e;
  }
  return undefined;
}

/** The rule for a mesh request: the caller namespace's consumer routes win over producer routes. */
export function meshLookup(mp: MeshPort, callerNamespace: string | undefined, req: MatchRequest): { rule: CompiledRule | undefined; routed: boolean } {
  const consumer = callerNamespace !== undefined ? mp.consumers.get(callerNamespace) : undefined;
  const list = consumer ?? mp.producer;
  if (!list) return { rule: mp.passthrough, routed: false };
  return { rule: firstMatch(list, req)?.target, routed: true };
}

/** A rule sending everything to one target unchanged (unrouted Service ports, pod destinations). */
export function passthroughRule(target: ServiceTarget | undefined, failure?: RefFailure, traffic?: CompiledTraffic): CompiledRule {
  return {
    route: '', rule: 'passthrough', requestHeaders: undefined, responseHeaders: undefined, redirect: undefined, rewrite: undefined,
    cors: undefined, mirrors: [], prefix: undefined, requestTimeoutMs: undefined, backendRequestTimeoutMs: undefined, retry: undefined,
    backends: [{ weight: 1, target, failure: target ? undefined : failure ?? { reason: 'BackendNotFound', message: 'no target' }, requestHeaders: undefined, responseHeaders: undefined, rewrite: undefined, redirect: undefined, mirrors: [], traffic }],
    totalWeight: 1,
  };
}

/** A direct destination: a Pod of the namespace on one of its ports (protocol from the Services that select it). */
export function podTarget(table: RoutingTable, ip: string, port: number): ServiceTarget | undefined {
  const pod = table.pods.get(ip)?.pod;
  if (!pod || pod.namespace !== table.namespace) return undefined;
  return {
    key: `pod ${pod.namespace}/${pod.name}:${port}`, namespace: pod.namespace, name: pod.name, port,
    protocol: 'http1', lbPolicy: 'round-robin', endpoints: [{ address: ip, port, pod: pod.name }],
  };
}

// ------------------------------------------------------------------ helpers

function isServiceRef(p: ParentRef): boolean {
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

function matchesOf(r: HTTPRoute, rules: { rule: Rule; compiled: CompiledRule }[]): RuleMatch[] {
  const out: RuleMatch[] = [];
  for (const { rule, compiled } of rules) {
    rule.matches.forEach((m, i) => out.push(compileMatch(m, { routeCreated: r.meta.created, routeKey: r.meta.key, ruleIndex: rule.index, matchIndex: i }, compiled)));
  }
  return out;
}

function compileRule(r: HTTPRoute, rule: Rule, resolver: BackendResolver, parentServices: ReadonlySet<string>, failures: RefFailure[], att: TrafficAttachments): CompiledRule {
  const routePolicy = att.byRoute.get(r.meta.key);
  let requestHeaders: HeaderModifier | undefined, responseHeaders: HeaderModifier | undefined;
  let redirect: Redirect | undefined, rewrite: Rewrite | undefined, cors: Cors | undefined;
  const mirrors: CompiledMirror[] = [];
  for (const f of rule.filters) {
    switch (f.type) {
      case 'RequestHeaderModifier': requestHeaders = f.modifier; break;
      case 'ResponseHeaderModifier': responseHeaders = f.modifier; break;
      case 'RequestRedirect': redirect = f.redirect; break;
      case 'URLRewrite': rewrite = f.rewrite; break;
      case 'CORS': cors = f.cors; break;
      case 'RequestMirror': {
        const res = resolver.resolve(f.backend, r.meta.namespace, parentServices);
        if (res.failure) failures.push(res.failure);
        mirrors.push({ target: res.target, percent: f.percent });
        break;
      }
      case 'ExtensionRef': break; // such rules are dropped at parse time
    }
  }
  const backends: CompiledBackend[] = rule.backendRefs.map((b) => {
    const res = resolver.resolve(b, r.meta.namespace, parentServices);
    if (res.failure) failures.push(res.failure);
    let bReq: HeaderModifier | undefined, bResp: HeaderModifier | undefined, bRewrite: Rewrite | undefined, bRedirect: Redirect | undefined;
    const bMirrors: CompiledMirror[] = [];
    for (const f of b.filters) {
      if (f.type === 'RequestHeaderModifier') bReq = f.modifier;
      else if (f.type === 'ResponseHeaderModifier') bResp = f.modifier;
      else if (f.type === 'URLRewrite') bRewrite = f.rewrite;
      else if (f.type === 'RequestRedirect') bRedirect = f.redirect;
      else if (f.type === 'RequestMirror') {
        const mres = resolver.resolve(f.backend, r.meta.namespace, parentServices);
        if (mres.failure) failures.push(mres.failure);
        bMirrors.push({ target: mres.target, percent: f.percent });
      }
    }
    const svcKey = `${b.namespace}/${b.name}`;
    const svcPolicy = res.target ? att.byService.get(svcKey) : undefined;
    const traffic = svcPolicy || routePolicy ? compileTraffic(svcPolicy, routePolicy, svcKey, r.meta.key) : undefined;
    return { weight: b.weight, target: res.target, failure: res.failure, requestHeaders: bReq, responseHeaders: bResp, rewrite: bRewrite, redirect: bRedirect, mirrors: bMirrors, traffic };
  });
  const first = rule.matches[0];
  return {
    route: r.meta.key,
    rule: rule.name ?? String(rule.index),
    requestHeaders, responseHeaders, redirect, rewrite, cors, mirrors, backends,
    totalWeight: backends.reduce((s, b) => s + b.weight, 0),
    prefix: first && first.path.type === 'PathPrefix' ? prefixKey(first.path.value) : undefined,
    requestTimeoutMs: rule.requestTimeoutMs,
    backendRequestTimeoutMs: rule.backendRequestTimeoutMs,
    retry: rule.retry,
  };
}

function workloadOf(pod: Pod): string {
  const w = workloadName(pod);
  return `${w.namespace}/${w.name}`;
}
