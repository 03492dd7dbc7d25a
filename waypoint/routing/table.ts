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
 * - The status of every route towards the parents this waypoint answers for: the model's
 *   (model/route-status.ts), which also says which routes attach where; the table compiles
 *   and places their rules.
 *
 * Pure: no sockets, no clocks. The proxy keeps per-endpoint state elsewhere.
 */
import type { Pod } from '../../k8s/types.js';
import { AuthzTable } from '../authz/evaluate.js';
import type { WaypointConfig } from '../../model/waypoint-config.js';
import type { TrafficAttachments, TrafficPolicyStatus } from '../../model/traffic-policy.js';
import { compileTraffic, type CompiledTraffic } from '../resilience/compile.js';
import type { Cors, HTTPRoute, HeaderModifier, Redirect, Retry, Rewrite, Rule } from '../../k8s/gateway-api-types.js';
import { BackendResolver, endpoint, type RefFailure, type ServiceTarget } from './backends.js';
import { hostMatches, hostSpecificity } from './hostnames.js';
import { comparePrecedence as compareMatchPrecedence, compileMatch, firstMatch, type CompiledMatch, type MatchRequest } from './match.js';
import { prefixKey } from './path.js';
import { workloadOf as workloadName } from '../../model/workload.js';
import {
  isServiceRef, routeStatusOf, type GatewayStatus, type RouteStatus, type RouteStatusOptions, type ServedListener,
} from '../../model/route-status.js';

export type { Condition, GatewayStatus, ListenerStatus, RouteParentStatus, RouteStatus } from '../../model/route-status.js';

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

export type TableOptions = RouteStatusOptions;

// ------------------------------------------------------------------ build

export function buildRoutingTable(cfg: WaypointConfig, opts: TableOptions): RoutingTable {
  const ns = opts.namespace;
  const resolver = new BackendResolver(cfg);
  const status = routeStatusOf(cfg, opts);

  // Compile each route's rules once (they do not depend on the parent).
  const compiled = new Map<string, { rule: Rule; compiled: CompiledRule }[]>();
  for (const r of cfg.routes) {
    const parentServices = new Set(r.parentRefs.filter(isServiceRef).map((p) => `${p.namespace}/${p.name}`));
    compiled.set(r.meta.key, r.rules.map((rule) => ({ rule, compiled: compileRule(r, rule, resolver, parentServices, cfg.trafficAttachments) })));
  }

  // ---- Gateways: the served listeners, grouped by bind address and port
  const ports = new Map<string, BoundPort>();
  const entriesOf = new Map<ServedListener, ListenerEntry[]>();
  let listenerCount = 0;
  for (const sl of status.listeners) {
    const { gw, listener: l } = sl;
    const entries: ListenerEntry[] = [];
    for (const address of sl.addresses) {
      const pk = `${address}:${l.port}`;
      let bp = ports.get(pk);
      if (!bp) ports.set(pk, (bp = { address, port: l.port, entries: [] }));
      let entry = bp.entries.find((e) => e.hostname === l.hostname);
      if (!entry) bp.entries.push((entry = { hostname: l.hostname, listeners: [], gateway: gw.meta.key, port: l.port, table: new HostTable() }));
      entry.listeners.push(`${gw.meta.key}/${l.name}`);
      if (!entry.gateway.split(',').includes(gw.meta.key)) entry.gateway += `,${gw.meta.key}`;
      entries.push(entry);
      listenerCount++;
    }
    entriesOf.set(sl, entries);
  }
  for (const bp of ports.values()) bp.entries.sort((a, b) => hostSpecificity(b.hostname) - hostSpecificity(a.hostname));

  // ---- Services (mesh parents) of the namespace
  const mesh = new Map<string, MeshPort>();
  const meshByService = new Map<string, MeshPort[]>();
  for (const [key, { service: svc, ports: svcPorts }] of status.meshParents) {
    const list: MeshPort[] = [];
    for (const sp of svcPorts) {
      const res = resolver.serviceTarget(svc.key, sp.port);
      const svcPolicy = cfg.trafficAttachments.byService.get(svc.key);
      const passthrough = passthroughRule(res.target, undefined, svcPolicy && compileTraffic(svcPolicy, undefined, svc.key, ''));
      const mp: MeshPort = { namespace: svc.namespace, service: svc.name, port: sp.port, producer: undefined, consumers: new Map(), passthrough };
      list.push(mp);
      for (const ip of svc.clusterIPs) mesh.set(`${ip}:${sp.port}`, mp);
    }
    meshByService.set(key, list);
  }

  // ---- Place the rules of the routes the model attached
  for (const a of status.meshAttachments) {
    const r = a.route;
    for (const mp of meshByService.get(a.service)!.filter((p) => a.ports.includes(p.port))) {
      let list: RuleMatch[];
      if (a.consumer) {
        list = mp.consumers.get(r.meta.namespace) ?? [];
        mp.consumers.set(r.meta.namespace, list);
      } else list = mp.producer ??= [];
      for (const m of matchesOf(r, compiled.get(r.meta.key)!)) list.push(m);
    }
  }
  for (const a of status.gatewayAttachments) {
    const r = a.route;
    for (const entry of entriesOf.get(a.listener)!) {
      for (const h of a.hosts) for (const m of matchesOf(r, compiled.get(r.meta.key)!)) entry.table.add(h, m);
    }
  }
  let ruleCount = 0;
  for (const r of cfg.routes) ruleCount += r.rules.length;

  for (const bp of ports.values()) for (const e of bp.entries) e.table.seal();
  for (const mp of new Set(mesh.values())) {
    mp.producer?.sort(compareMatchPrecedence);
    for (const l of mp.consumers.values()) l.sort(compareMatchPrecedence);
  }
  const routeStatus: RouteStatus[] = status.routes;
  const gatewayStatus: GatewayStatus[] = status.gateways;
  const strictMesh = status.strictMesh;

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
    routes: routeStatus,
    gateways: gatewayStatus,
    trafficPolicies: cfg.trafficAttachments.status,
    stats: { routes: routeStatus.length, rules: ruleCount, listeners: listenerCount, meshPorts: new Set(mesh.values()).size },
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
    key: `pod ${pod.namespace}/${pod.name}:${port}`, label: `${pod.namespace}/direct`, namespace: pod.namespace, name: pod.name, port,
    protocol: 'http1', lbPolicy: 'round-robin', endpoints: [endpoint(ip, port, pod.name)],
  };
}

/** Direct destinations' rules, made once per table and destination (bounded: callers choose the ports). */
const directRules = new WeakMap<RoutingTable, Map<string, { rule: CompiledRule; parent: string } | null>>();
const MAX_DIRECT_RULES = 10_000;

/** The passthrough rule of a direct destination (a Pod of the namespace), memoised per table; undefined when it is none. */
export function directRule(table: RoutingTable, ip: string, port: number): { rule: CompiledRule; parent: string } | undefined {
  let m = directRules.get(table);
  if (m === undefined) directRules.set(table, (m = new Map()));
  const key = `${ip}:${port}`;
  let r = m.get(key);
  if (r === undefined) {
    const pod = podTarget(table, ip, port);
    r = pod ? { rule: passthroughRule(pod), parent: `pod ${pod.namespace}/${pod.name}` } : null;
    if (m.size >= MAX_DIRECT_RULES) m.clear();
    m.set(key, r);
  }
  return r ?? undefined;
}

// ------------------------------------------------------------------ helpers

function matchesOf(r: HTTPRoute, rules: { rule: Rule; compiled: CompiledRule }[]): RuleMatch[] {
  const out: RuleMatch[] = [];
  for (const { rule, compiled } of rules) {
    rule.matches.forEach((m, i) => out.push(compileMatch(m, { routeCreated: r.meta.created, routeKey: r.meta.key, ruleIndex: rule.index, matchIndex: i }, compiled)));
  }
  return out;
}

function compileRule(r: HTTPRoute, rule: Rule, resolver: BackendResolver, parentServices: ReadonlySet<string>, att: TrafficAttachments): CompiledRule {
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
        mirrors.push({ target: res.target, percent: f.percent });
        break;
      }
      case 'ExtensionRef': break; // such rules are dropped at parse time
    }
  }
  const backends: CompiledBackend[] = rule.backendRefs.map((b) => {
    const res = resolver.resolve(b, r.meta.namespace, parentServices);
    let bReq: HeaderModifier | undefined, bResp: HeaderModifier | undefined, bRewrite: Rewrite | undefined, bRedirect: Redirect | undefined;
    const bMirrors: CompiledMirror[] = [];
    for (const f of b.filters) {
      if (f.type === 'RequestHeaderModifier') bReq = f.modifier;
      else if (f.type === 'ResponseHeaderModifier') bResp = f.modifier;
      else if (f.type === 'URLRewrite') bRewrite = f.rewrite;
      else if (f.type === 'RequestRedirect') bRedirect = f.redirect;
      else if (f.type === 'RequestMirror') {
        const mres = resolver.resolve(f.backend, r.meta.namespace, parentServices);
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
