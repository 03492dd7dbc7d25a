/**
 * Gateway API objects (GatewayClass, Gateway, HTTPRoute, ReferenceGrant) checked and
 * normalised. The checks are those of the standard-channel CRDs, including their CEL
 * rules (a local API server may not enforce them): an object that breaks one is a
 * problem of its file, which then keeps its last good content. What the API accepts but
 * the waypoint cannot serve (a regular expression it cannot compile, an ExtensionRef
 * filter) is not a file problem: the rule is dropped and the route's status says why.
 */
import { re2 } from './re2.js';
import { Checker, checkMeta, isDnsSubdomain, isRecord } from './check.js';
import { parseLabelSelector } from './selector.js';
import type { ParseResult, SourcedObject } from './types.js';
import { MAX_TIMER_MS, parseDuration } from './duration.js';
import {
  GATEWAY_GROUP, type BackendRef, type Cors, type Filter, type Gateway, type GatewayClass, type HTTPRoute, type HeaderMatch,
  type HeaderModifier, type HeaderValue, type Listener, type ObjectMeta, type ObjectRef, type ParentRef,
  type PathMatch, type PathModifier, type QueryParamMatch, type Redirect, type ReferenceGrant, type Retry, type Rewrite,
  type RouteGroupKind, type RouteMatch, type Rule,
} from './gateway-api-types.js';

const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$/;
const CONTROLLER = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$/;
const ORIGIN = /^(([^:/?#]+):)(\/\/([^/?#]*))([^?#]*)(\?([^#]*))?(#(.*))?$|^\*$/;
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;
const REDIRECT_CODES = [301, 302, 303, 307, 308] as const;
/** The versions read of GatewayClass, Gateway and HTTPRoute; of ReferenceGrant. */
export const GATEWAY_VERSIONS = ['v1', 'v1beta1'] as const;
export const GRANT_VERSIONS = ['v1', 'v1beta1', 'v1alpha2'] as const;
const MAX_WEIGHT = 1_000_000;

/** A normalised Gateway API object. */
export type GatewayApiObject =
  | { kind: 'GatewayClass'; value: GatewayClass }
  | { kind: 'Gateway'; value: Gateway }
  | { kind: 'HTTPRoute'; value: HTTPRoute }
  | { kind: 'ReferenceGrant'; value: ReferenceGrant };

type Parsed = ParseResult<GatewayApiObject>;

// ------------------------------------------------------------------ shared helpers

/** Object metadata; namespaced kinds default to 'default'. */
export function objectMeta(c: Checker, src: SourcedObject, namespaced: boolean): ObjectMeta {
  const md = src.object.metadata;
  const { namespace, name, labels } = checkMeta(c, namespaced);
  let created = Number.POSITIVE_INFINITY;
  if (md.creationTimestamp !== undefined && md.creationTimestamp !== null) {
    const t = typeof md.creationTimestamp === 'string' ? Date.parse(md.creationTimestamp) : Number.NaN;
    if (Number.isNaN(t)) c.fail('metadata.creationTimestamp', `must be an RFC 3339 time, got ${JSON.stringify(md.creationTimestamp)}`);
    else created = t;
  }
  const generation = c.int(md.generation, 'metadata.generation', 0, Number.MAX_SAFE_INTEGER, 1) ?? 1;
  return { namespace, name, key: namespaced ? `${namespace}/${name}` : name, created, generation, labels, file: src.file, index: src.index };
}

function requiredString(c: Checker, v: unknown, field: string, maxLength = 253): string | undefined {
  if (v === undefined || v === null || v === '') { c.fail(field, 'is required'); return undefined; }
  const s = c.string(v, field);
  if (s !== undefined && s.length > maxLength) { c.fail(field, `must be at most ${maxLength} characters, got ${s.length}`); return undefined; }
  return s;
}

function hostname(c: Checker, v: unknown, field: string, precise: boolean): string | undefined {
  const s = c.string(v, field);
  if (s === undefined) return undefined;
  if (precise ? !isDnsSubdomain(s) : s.length > 253 || !HOSTNAME.test(s)) {
    c.fail(field, `must be a ${precise ? 'host name' : 'host name, optionally starting with "*."'} in lower case (RFC 1123), got ${JSON.stringify(s)}`);
    return undefined;
  }
  return s;
}

// ------------------------------------------------------------------ GatewayClass

export function parseGatewayClass(src: SourcedObject): Parsed {
  const c = new Checker(src, '');
  const meta = objectMeta(c, src, false);
  const spec = c.record(src.object.spec, 'spec') ?? {};
  const controllerName = requiredString(c, spec.controllerName, 'spec.controllerName') ?? '';
  if (controllerName && !CONTROLLER.test(controllerName)) c.fail('spec.controllerName', `must be a domain-prefixed path (example.com/controller), got ${JSON.stringify(controllerName)}`);
  if (!c.ok) return { object: undefined, problems: c.problems };
  return { object: { kind: 'GatewayClass', value: Object.freeze({ name: meta.name, controllerName, file: src.file, index: src.index }) }, problems: [] };
}

// ------------------------------------------------------------------ Gateway

export function parseGateway(src: SourcedObject): Parsed {
  const c = new Checker(src);
  const meta = objectMeta(c, src, true);
  if (src.object.spec === undefined || src.object.spec === null) c.fail('spec', 'is missing');
  const spec = c.record(src.object.spec, 'spec') ?? {};
  const className = requiredString(c, spec.gatewayClassName, 'spec.gatewayClassName') ?? '';
  const rawListeners = c.list(spec.listeners, 'spec.listeners') ?? [];
  if (rawListeners.length === 0) c.fail('spec.listeners', 'must hold at least one listener');
  if (rawListeners.length > 64) c.fail('spec.listeners', `must hold at most 64 listeners, got ${rawListeners.length}`);
  const listeners: Listener[] = [];
  const names = new Set<string>();
  rawListeners.forEach((rl, i) => {
    const f = `spec.listeners[${i}]`;
    const l = c.record(rl, f);
    if (!l) return;
    const name = requiredString(c, l.name, `${f}.name`);
    if (name !== undefined && !isDnsSubdomain(name)) c.fail(`${f}.name`, `must be a DNS subdomain in lower case, got ${JSON.stringify(name)}`);
    if (name !== undefined && names.has(name)) c.fail(`${f}.name`, `duplicate listener name ${JSON.stringify(name)} (listener names must be unique)`);
    if (name !== undefined) names.add(name);
    const port = c.port(l.port, `${f}.port`);
    const protocol = requiredString(c, l.protocol, `${f}.protocol`, 255) ?? '';
    const host = l.hostname === undefined || l.hostname === null ? undefined : hostname(c, l.hostname, `${f}.hostname`, false);
    const ar = c.record(l.allowedRoutes, `${f}.allowedRoutes`) ?? {};
    const ns = c.record(ar.namespaces, `${f}.allowedRoutes.namespaces`) ?? {};
    const from = c.oneOf(ns.from, `${f}.allowedRoutes.namespaces.from`, ['Same', 'All', 'Selector'] as const, 'Same');
    const selector = ns.selector === undefined || ns.selector === null ? undefined : parseLabelSelector(c, ns.selector, `${f}.allowedRoutes.namespaces.selector`);
    if (from === 'Selector' && selector === undefined) c.fail(`${f}.allowedRoutes.namespaces.selector`, 'is required when from is Selector');
    const kinds: RouteGroupKind[] = [];
    (c.list(ar.kinds, `${f}.allowedRoutes.kinds`) ?? []).forEach((rk, j) => {
      const k = c.record(rk, `${f}.allowedRoutes.kinds[${j}]`);
      if (!k) return;
      const kind = requiredString(c, k.kind, `${f}.allowedRoutes.kinds[${j}].kind`, 63);
      const group = c.string(k.group, `${f}.allowedRoutes.kinds[${j}].group`, GATEWAY_GROUP) ?? GATEWAY_GROUP;
      if (kind !== undefined) kinds.push({ group, kind });
    });
    if (name !== undefined && port !== undefined) {
      listeners.push({ name, port, protocol, hostname: host, allowedRoutes: { from, selector, kinds } });
    }
  });
  const addresses: string[] = [];
  (c.list(spec.addresses, 'spec.addresses') ?? []).forEach((ra, i) => {
    const a = c.record(ra, `spec.addresses[${i}]`);
    if (!a) return;
    const type = c.string(a.type, `spec.addresses[${i}].type`, 'IPAddress');
    const value = requiredString(c, a.value, `spec.addresses[${i}].value`);
    if (type === 'IPAddress' && value !== undefined) addresses.push(value);
  });
  if (!c.ok) return { object: undefined, problems: c.problems };
  return { object: { kind: 'Gateway', value: Object.freeze({ meta, className, listeners, addresses }) }, problems: [] };
}

// ------------------------------------------------------------------ ReferenceGrant

export function parseReferenceGrant(src: SourcedObject): Parsed {
  const c = new Checker(src);
  const meta = objectMeta(c, src, true);
  const spec = c.record(src.object.spec, 'spec') ?? {};
  const from: ReferenceGrant['from'][number][] = [];
  const rawFrom = c.list(spec.from, 'spec.from') ?? [];
  if (rawFrom.length === 0) c.fail('spec.from', 'must hold at least one entry');
  rawFrom.forEach((rf, i) => {
    const f = c.record(rf, `spec.from[${i}]`);
    if (!f) return;
    const group = c.string(f.group, `spec.from[${i}].group`, '') ?? '';
    const kind = requiredString(c, f.kind, `spec.from[${i}].kind`, 63);
    const namespace = requiredString(c, f.namespace, `spec.from[${i}].namespace`, 63);
    if (kind !== undefined && namespace !== undefined) from.push({ group, kind, namespace });
  });
  const to: ReferenceGrant['to'][number][] = [];
  const rawTo = c.list(spec.to, 'spec.to') ?? [];
  if (rawTo.length === 0) c.fail('spec.to', 'must hold at least one entry');
  rawTo.forEach((rt, i) => {
    const t = c.record(rt, `spec.to[${i}]`);
    if (!t) return;
    const group = c.string(t.group, `spec.to[${i}].group`, '') ?? '';
    const kind = requiredString(c, t.kind, `spec.to[${i}].kind`, 63);
    const name = t.name === undefined || t.name === null || t.name === '' ? undefined : c.string(t.name, `spec.to[${i}].name`);
    if (kind !== undefined) to.push({ group, kind, name });
  });
  if (!c.ok) return { object: undefined, problems: c.problems };
  return { object: { kind: 'ReferenceGrant', value: Object.freeze({ meta, from, to }) }, problems: [] };
}

// ------------------------------------------------------------------ HTTPRoute

/** Collects the reasons a rule cannot be served (status, not file problems). */
interface RuleNotes { unsupported: string[] }

export function parseHTTPRoute(src: SourcedObject): Parsed {
  const c = new Checker(src);
  const meta = objectMeta(c, src, true);
  if (src.object.spec === undefined || src.object.spec === null) c.fail('spec', 'is missing');
  const spec = c.record(src.object.spec, 'spec') ?? {};

  const parentRefs: ParentRef[] = [];
  const rawParents = c.list(spec.parentRefs, 'spec.parentRefs') ?? [];
  if (rawParents.length > 32) c.fail('spec.parentRefs', `must hold at most 32 references, got ${rawParents.length}`);
  rawParents.forEach((rp, i) => {
    const f = `spec.parentRefs[${i}]`;
    const p = c.record(rp, f);
    if (!p) return;
    const group = c.string(p.group, `${f}.group`, GATEWAY_GROUP) ?? GATEWAY_GROUP;
    const kind = c.string(p.kind, `${f}.kind`, 'Gateway') || 'Gateway';
    const name = requiredString(c, p.name, `${f}.name`);
    const namespace = c.string(p.namespace, `${f}.namespace`, meta.namespace) || meta.namespace;
    const sectionName = p.sectionName === undefined || p.sectionName === null ? undefined : c.string(p.sectionName, `${f}.sectionName`);
    if (sectionName !== undefined && !isDnsSubdomain(sectionName)) c.fail(`${f}.sectionName`, `must be a DNS subdomain in lower case, got ${JSON.stringify(sectionName)}`);
    const port = p.port === undefined || p.port === null ? undefined : c.port(p.port, `${f}.port`);
    if (name !== undefined) parentRefs.push({ group, kind, namespace, name, sectionName, port });
  });
  // CEL: the same parent twice needs distinct sectionNames (or ports).
  for (let i = 0; i < parentRefs.length; i++) {
    for (let j = i + 1; j < parentRefs.length; j++) {
      const a = parentRefs[i]!, b = parentRefs[j]!;
      if (a.group === b.group && a.kind === b.kind && a.namespace === b.namespace && a.name === b.name &&
          a.sectionName === b.sectionName && a.port === b.port) {
        c.fail(`spec.parentRefs[${j}]`, `repeats spec.parentRefs[${i}]: the same parent must be referenced with distinct sectionName or port`);
      }
    }
  }

  const hostnames: string[] = [];
  const rawHosts = c.list(spec.hostnames, 'spec.hostnames') ?? [];
  if (rawHosts.length > 16) c.fail('spec.hostnames', `must hold at most 16 host names, got ${rawHosts.length}`);
  rawHosts.forEach((h, i) => {
    const v = hostname(c, h, `spec.hostnames[${i}]`, false);
    if (v !== undefined) hostnames.push(v);
  });

  const rules: Rule[] = [];
  const droppedRules: { index: number; reason: string }[] = [];
  let rawRules = c.list(spec.rules, 'spec.rules');
  if (rawRules !== undefined && (spec.rules === undefined || spec.rules === null)) rawRules = [{}]; // API default: one rule
  rawRules ??= [];
  if (rawRules.length === 0) c.fail('spec.rules', 'must hold at least one rule');
  if (rawRules.length > 16) c.fail('spec.rules', `must hold at most 16 rules, got ${rawRules.length}`);
  let totalMatches = 0;
  const ruleNames = new Set<string>();
  rawRules.forEach((rr, i) => {
    const notes: RuleNotes = { unsupported: [] };
    const rule = parseRule(c, rr, `spec.rules[${i}]`, i, meta.namespace, notes);
    if (!rule) return;
    totalMatches += isRecord(rr) && Array.isArray(rr.matches) ? rr.matches.length : 0;
    if (rule.name !== undefined) {
      if (ruleNames.has(rule.name)) c.fail(`spec.rules[${i}].name`, `duplicate rule name ${JSON.stringify(rule.name)} (rule names must be unique in a route)`);
      ruleNames.add(rule.name);
    }
    if (notes.unsupported.length > 0) droppedRules.push({ index: i, reason: notes.unsupported.join('; ') });
    else rules.push(rule);
  });
  if (totalMatches > 128) c.fail('spec.rules', `must hold at most 128 matches over all rules, got ${totalMatches}`);

  if (!c.ok) return { object: undefined, problems: c.problems };
  return { object: { kind: 'HTTPRoute', value: Object.freeze({ meta, parentRefs, hostnames, rules, droppedRules }) }, problems: [] };
}

function parseRule(c: Checker, rr: unknown, f: string, index: number, routeNs: string, notes: RuleNotes): Rule | undefined {
  const r = c.record(rr, f);
  if (!r) return undefined;
  let name: string | undefined;
  if (r.name !== undefined && r.name !== null) {
    name = c.string(r.name, `${f}.name`);
    if (name !== undefined && !isDnsSubdomain(name)) c.fail(`${f}.name`, `must be a DNS subdomain in lower case, got ${JSON.stringify(name)}`);
  }

  const matches: RouteMatch[] = [];
  const rawMatches = c.list(r.matches, `${f}.matches`);
  const matchList = rawMatches === undefined ? [] : (r.matches === undefined || r.matches === null ? [{}] : rawMatches);
  if (matchList.length > 64) c.fail(`${f}.matches`, `must hold at most 64 matches, got ${matchList.length}`);
  matchList.forEach((rm, j) => {
    const m = parseMatch(c, rm, `${f}.matches[${j}]`, notes);
    if (m) matches.push(m);
  });
  if (matches.length === 0 && matchList.length === 0) matches.push({ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [], method: undefined });

  const filters = parseFilters(c, r.filters, `${f}.filters`, routeNs, notes);

  const backendRefs: BackendRef[] = [];
  (c.list(r.backendRefs, `${f}.backendRefs`) ?? []).forEach((rb, j) => {
    const bf = `${f}.backendRefs[${j}]`;
    const b = c.record(rb, bf);
    if (!b) return;
    const ref = objectRef(c, b, bf, routeNs);
    const weight = c.int(b.weight, `${bf}.weight`, 0, MAX_WEIGHT, 1) ?? 1;
    const bfilters = parseFilters(c, b.filters, `${bf}.filters`, routeNs, notes);
    if (ref) backendRefs.push({ ...ref, weight, filters: bfilters });
  });
  if (backendRefs.length > 16) c.fail(`${f}.backendRefs`, `must hold at most 16 references, got ${backendRefs.length}`);

  // CEL rules that tie filters to matches and backends.
  if (backendRefs.length > 0 && filters.some((x) => x.type === 'RequestRedirect')) {
    c.fail(`${f}.filters`, 'a RequestRedirect filter must not be used together with backendRefs');
  }
  const usesPrefixReplace = (fs: readonly Filter[]): boolean => fs.some((x) =>
    (x.type === 'RequestRedirect' && x.redirect.path?.type === 'ReplacePrefixMatch') ||
    (x.type === 'URLRewrite' && x.rewrite.path?.type === 'ReplacePrefixMatch'));
  if (usesPrefixReplace(filters) || backendRefs.some((b) => usesPrefixReplace(b.filters))) {
    if (matches.length !== 1 || matches[0]!.path.type !== 'PathPrefix' || matchList.length > 1) {
      c.fail(`${f}.matches`, 'with a ReplacePrefixMatch path modifier, exactly one match of path type PathPrefix must be specified');
    }
  }

  let requestTimeoutMs: number | undefined;
  let backendRequestTimeoutMs: number | undefined;
  if (r.timeouts !== undefined && r.timeouts !== null) {
    const t = c.record(r.timeouts, `${f}.timeouts`) ?? {};
    requestTimeoutMs = durationField(c, t.request, `${f}.timeouts.request`);
    backendRequestTimeoutMs = durationField(c, t.backendRequest, `${f}.timeouts.backendRequest`);
    if (requestTimeoutMs !== undefined && requestTimeoutMs !== 0 && backendRequestTimeoutMs !== undefined && backendRequestTimeoutMs > requestTimeoutMs) {
      c.fail(`${f}.timeouts.backendRequest`, 'must not be longer than timeouts.request');
    }
  }

  let retry: Retry | undefined;
  if (r.retry !== undefined && r.retry !== null) {
    const rt = c.record(r.retry, `${f}.retry`) ?? {};
    const attempts = c.int(rt.attempts, `${f}.retry.attempts`, 0, 1000, 1) ?? 1;
    const codes: number[] = [];
    (c.list(rt.codes, `${f}.retry.codes`) ?? []).forEach((x, j) => {
      const code = c.int(x, `${f}.retry.codes[${j}]`, 400, 599);
      if (code !== undefined) codes.push(code);
    });
    const backoffMs = durationField(c, rt.backoff, `${f}.retry.backoff`) ?? 0;
    retry = { attempts, codes, backoffMs };
  }

  return { index, name, matches, filters, backendRefs, requestTimeoutMs, backendRequestTimeoutMs, retry };
}

function durationField(c: Checker, v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  const s = c.string(v, field);
  if (s === undefined) return undefined;
  const ms = parseDuration(s);
  if (ms === undefined) c.fail(field, `must be a Gateway API duration such as 500ms, 10s or 1h30m, got ${JSON.stringify(s)}`);
  // Longer than a timer holds (24.8 days): as good as no timeout, and clamped so that it is not one of 1 ms.
  return ms === undefined ? undefined : Math.min(ms, MAX_TIMER_MS);
}

function objectRef(c: Checker, b: Record<string, unknown>, f: string, routeNs: string): ObjectRef | undefined {
  const group = c.string(b.group, `${f}.group`, '') ?? '';
  const kind = c.string(b.kind, `${f}.kind`, 'Service') || 'Service';
  const name = requiredString(c, b.name, `${f}.name`);
  const namespace = c.string(b.namespace, `${f}.namespace`, routeNs) || routeNs;
  const port = b.port === undefined || b.port === null ? undefined : c.port(b.port, `${f}.port`);
  if (group === '' && kind === 'Service' && port === undefined && (b.port === undefined || b.port === null)) {
    c.fail(`${f}.port`, 'is required for a Service reference');
  }
  if (name === undefined) return undefined;
  return { group, kind, namespace, name, port };
}

function parseMatch(c: Checker, rm: unknown, f: string, notes: RuleNotes): RouteMatch | undefined {
  const m = c.record(rm, f);
  if (!m) return undefined;
  let path: PathMatch = { type: 'PathPrefix', value: '/' };
  if (m.path !== undefined && m.path !== null) {
    const p = c.record(m.path, `${f}.path`) ?? {};
    const type = c.oneOf(p.type, `${f}.path.type`, ['Exact', 'PathPrefix', 'RegularExpression'] as const, 'PathPrefix');
    const value = c.string(p.value, `${f}.path.value`, '/') ?? '/';
    if (value.length > 1024) c.fail(`${f}.path.value`, `must be at most 1024 characters, got ${value.length}`);
    if (type !== 'RegularExpression') checkPathValue(c, value, `${f}.path.value`);
    else checkRegex(value, `${f}.path.value`, notes);
    path = { type, value };
  }
  const headers: HeaderMatch[] = [];
  const seenHeaders = new Set<string>();
  const rawHeaders = c.list(m.headers, `${f}.headers`) ?? [];
  if (rawHeaders.length > 16) c.fail(`${f}.headers`, `must hold at most 16 matches, got ${rawHeaders.length}`);
  rawHeaders.forEach((rh, j) => {
    const hf = `${f}.headers[${j}]`;
    const h = c.record(rh, hf);
    if (!h) return;
    const type = c.oneOf(h.type, `${hf}.type`, ['Exact', 'RegularExpression'] as const, 'Exact');
    const name = requiredString(c, h.name, `${hf}.name`, 256);
    if (name !== undefined && !HEADER_NAME.test(name)) c.fail(`${hf}.name`, `must be an HTTP header name, got ${JSON.stringify(name)}`);
    const value = c.string(h.value, `${hf}.value`);
    if (value === undefined) c.fail(`${hf}.value`, 'is required');
    else if (value.length > 4096) c.fail(`${hf}.value`, `must be at most 4096 characters, got ${value.length}`);
    if (type === 'RegularExpression' && value !== undefined) checkRegex(value, `${hf}.value`, notes);
    if (name === undefined || value === undefined) return;
    const lower = name.toLowerCase();
    // Only the first entry with an equivalent name is considered (spec).
    if (seenHeaders.has(lower)) return;
    seenHeaders.add(lower);
    headers.push({ type, name: lower, value });
  });
  const queryParams: QueryParamMatch[] = [];
  const seenQuery = new Set<string>();
  const rawQuery = c.list(m.queryParams, `${f}.queryParams`) ?? [];
  if (rawQuery.length > 16) c.fail(`${f}.queryParams`, `must hold at most 16 matches, got ${rawQuery.length}`);
  rawQuery.forEach((rq, j) => {
    const qf = `${f}.queryParams[${j}]`;
    const q = c.record(rq, qf);
    if (!q) return;
    const type = c.oneOf(q.type, `${qf}.type`, ['Exact', 'RegularExpression'] as const, 'Exact');
    const name = requiredString(c, q.name, `${qf}.name`, 256);
    if (name !== undefined && !HEADER_NAME.test(name)) c.fail(`${qf}.name`, `must be a query parameter name (letters, digits and !#$%&'*+-.^_\`|~), got ${JSON.stringify(name)}`);
    const value = requiredString(c, q.value, `${qf}.value`, 1024);
    if (type === 'RegularExpression' && value !== undefined) checkRegex(value, `${qf}.value`, notes);
    if (name === undefined || value === undefined || seenQuery.has(name)) return;
    seenQuery.add(name);
    queryParams.push({ type, name, value });
  });
  let method: string | undefined;
  if (m.method !== undefined && m.method !== null) {
    method = c.oneOf(m.method, `${f}.method`, HTTP_METHODS, 'GET');
  }
  return { path, headers, queryParams, method };
}

function checkPathValue(c: Checker, v: string, field: string): void {
  if (!v.startsWith('/')) c.fail(field, `must be an absolute path starting with '/', got ${JSON.stringify(v)}`);
  else if (v.includes('//')) c.fail(field, "must not contain '//'");
  else if (v.includes('/./') || v.endsWith('/.')) c.fail(field, "must not contain '/./' or end with '/.'");
  else if (v.includes('/../') || v.endsWith('/..')) c.fail(field, "must not contain '/../' or end with '/..'");
  else if (/%2f/i.test(v)) c.fail(field, "must not contain an encoded '/' (%2F)");
  else if (v.includes('#')) c.fail(field, "must not contain '#'");
  else if (!PATH_CHARS.test(v)) c.fail(field, `must only contain URI path characters (letters, digits, -._~!$&'()*+,;=:@/ and %XX), got ${JSON.stringify(v)}`);
}

/**
 * Regular expressions are implementation-specific in Gateway API; kernway uses RE2's
 * syntax and semantics (re2js, as Envoy and Istio use RE2): no backreferences or
 * lookaround, matched in linear time, so a pattern means the same here as in other
 * meshes and no pattern can make matching slow (ReDoS).
 */
function checkRegex(v: string, field: string, notes: RuleNotes): void {
  const why = regexProblem(v);
  if (why) notes.unsupported.push(`${field}: ${why}`);
}

export function regexProblem(v: string): string | undefined {
  if (/\\[1-9]|\\k<|\(\?<?[=!]/.test(v)) return `regular expression ${JSON.stringify(v)} uses a backreference or lookaround, which kernway (like RE2) does not support`;
  try {
    re2().compile(v);
  } catch (e) {
    return `invalid regular expression ${JSON.stringify(v)} (RE2 syntax): ${(e as Error).message}`;
  }
  return undefined;
}

function parseFilters(c: Checker, v: unknown, f: string, routeNs: string, notes: RuleNotes): Filter[] {
  const out: Filter[] = [];
  const raw = c.list(v, f) ?? [];
  if (raw.length > 16) c.fail(f, `must hold at most 16 filters, got ${raw.length}`);
  const counts = new Map<string, number>();
  raw.forEach((rf, i) => {
    const ff = `${f}[${i}]`;
    const x = c.record(rf, ff);
    if (!x) return;
    const type = requiredString(c, x.type, `${ff}.type`);
    if (type === undefined) return;
    counts.set(type, (counts.get(type) ?? 0) + 1);
    const fields: Record<string, string> = {
      RequestHeaderModifier: 'requestHeaderModifier', ResponseHeaderModifier: 'responseHeaderModifier',
      RequestRedirect: 'requestRedirect', URLRewrite: 'urlRewrite', RequestMirror: 'requestMirror', CORS: 'cors', ExtensionRef: 'extensionRef',
    };
    const own = fields[type];
    if (own === undefined) { c.fail(`${ff}.type`, `must be one of ${Object.keys(fields).join(', ')}, got ${JSON.stringify(type)}`); return; }
    for (const [t, field] of Object.entries(fields)) {
      if (t !== type && x[field] !== undefined && x[field] !== null) c.fail(`${ff}.${field}`, `must not be set when type is ${type}`);
    }
    if (x[own] === undefined || x[own] === null) { c.fail(`${ff}.${own}`, `is required when type is ${type}`); return; }
    const body = c.record(x[own], `${ff}.${own}`);
    if (!body) return;
    switch (type) {
      case 'RequestHeaderModifier':
      case 'ResponseHeaderModifier':
        out.push({ type, modifier: headerModifier(c, body, `${ff}.${own}`) });
        break;
      case 'RequestRedirect':
        out.push({ type, redirect: redirect(c, body, `${ff}.${own}`) });
        break;
      case 'URLRewrite':
        out.push({ type, rewrite: rewrite(c, body, `${ff}.${own}`) });
        break;
      case 'RequestMirror': {
        const br = c.record(body.backendRef, `${ff}.${own}.backendRef`);
        if (body.backendRef === undefined || body.backendRef === null) c.fail(`${ff}.${own}.backendRef`, 'is required');
        const ref = br ? objectRef(c, br, `${ff}.${own}.backendRef`, routeNs) : undefined;
        let percent = 100;
        if (body.percent !== undefined && body.percent !== null) {
          if (body.fraction !== undefined && body.fraction !== null) c.fail(`${ff}.${own}`, 'only one of percent or fraction may be specified');
          percent = c.int(body.percent, `${ff}.${own}.percent`, 0, 100, 100) ?? 100;
        } else if (body.fraction !== undefined && body.fraction !== null) {
          const fr = c.record(body.fraction, `${ff}.${own}.fraction`) ?? {};
          const numerator = c.int(fr.numerator, `${ff}.${own}.fraction.numerator`, 0, Number.MAX_SAFE_INTEGER);
          if (fr.numerator === undefined) c.fail(`${ff}.${own}.fraction.numerator`, 'is required');
          const denominator = c.int(fr.denominator, `${ff}.${own}.fraction.denominator`, 1, Number.MAX_SAFE_INTEGER, 100) ?? 100;
          if (numerator !== undefined && numerator > denominator) c.fail(`${ff}.${own}.fraction`, 'numerator must be less than or equal to denominator');
          percent = numerator === undefined ? 0 : (100 * numerator) / denominator;
        }
        if (ref) out.push({ type, backend: ref, percent });
        break;
      }
      case 'CORS':
        out.push({ type, cors: cors(c, body, `${ff}.${own}`) });
        break;
      case 'ExtensionRef': {
        const group = c.string(body.group, `${ff}.${own}.group`, '') ?? '';
        const kind = requiredString(c, body.kind, `${ff}.${own}.kind`) ?? '';
        const name = requiredString(c, body.name, `${ff}.${own}.name`) ?? '';
        notes.unsupported.push(`${ff}: ExtensionRef filters (${group || 'core'}/${kind} ${name}) are not supported by kernway`);
        out.push({ type, group, kind, name });
        break;
      }
    }
  });
  for (const t of ['CORS', 'RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite']) {
    if ((counts.get(t) ?? 0) > 1) c.fail(f, `a ${t} filter cannot be repeated`);
  }
  if ((counts.get('RequestRedirect') ?? 0) > 0 && (counts.get('URLRewrite') ?? 0) > 0) {
    c.fail(f, 'may specify either a RequestRedirect or a URLRewrite filter, not both');
  }
  return out;
}

function headerValues(c: Checker, v: unknown, f: string): HeaderValue[] {
  const out: HeaderValue[] = [];
  const seen = new Set<string>();
  const raw = c.list(v, f) ?? [];
  if (raw.length > 16) c.fail(f, `must hold at most 16 headers, got ${raw.length}`);
  raw.forEach((rh, i) => {
    const h = c.record(rh, `${f}[${i}]`);
    if (!h) return;
    const name = requiredString(c, h.name, `${f}[${i}].name`, 256);
    if (name !== undefined && !HEADER_NAME.test(name)) c.fail(`${f}[${i}].name`, `must be an HTTP header name, got ${JSON.stringify(name)}`);
    const value = c.string(h.value, `${f}[${i}].value`);
    if (value === undefined) c.fail(`${f}[${i}].value`, 'is required');
    else if (value.length > 4096) c.fail(`${f}[${i}].value`, `must be at most 4096 characters, got ${value.length}`);
    else if (/[\r\n\0]/.test(value)) c.fail(`${f}[${i}].value`, 'must not contain CR, LF or NUL');
    if (name === undefined || value === undefined) return;
    if (seen.has(name.toLowerCase())) { c.fail(`${f}[${i}].name`, `duplicate header ${JSON.stringify(name)}`); return; }
    seen.add(name.toLowerCase());
    out.push({ name, value });
  });
  return out;
}

function headerModifier(c: Checker, b: Record<string, unknown>, f: string): HeaderModifier {
  const set = headerValues(c, b.set, `${f}.set`);
  const add = headerValues(c, b.add, `${f}.add`);
  const remove: string[] = [];
  const raw = c.list(b.remove, `${f}.remove`) ?? [];
  if (raw.length > 16) c.fail(`${f}.remove`, `must hold at most 16 names, got ${raw.length}`);
  raw.forEach((r, i) => {
    const name = c.string(r, `${f}.remove[${i}]`);
    if (name !== undefined && !HEADER_NAME.test(name)) c.fail(`${f}.remove[${i}]`, `must be an HTTP header name, got ${JSON.stringify(name)}`);
    if (name !== undefined) remove.push(name.toLowerCase());
  });
  return { set, add, remove };
}

function pathModifier(c: Checker, v: unknown, f: string): PathModifier | undefined {
  if (v === undefined || v === null) return undefined;
  const p = c.record(v, f);
  if (!p) return undefined;
  const type = c.oneOf(p.type, `${f}.type`, ['ReplaceFullPath', 'ReplacePrefixMatch'] as const, 'ReplaceFullPath');
  if (p.type === undefined) c.fail(`${f}.type`, 'is required (ReplaceFullPath or ReplacePrefixMatch)');
  const full = p.replaceFullPath, prefix = p.replacePrefixMatch;
  if (type === 'ReplaceFullPath') {
    if (prefix !== undefined && prefix !== null) c.fail(`${f}.replacePrefixMatch`, "must not be set when type is 'ReplaceFullPath'");
    if (full === undefined || full === null) { c.fail(`${f}.replaceFullPath`, "must be specified when type is 'ReplaceFullPath'"); return undefined; }
    const value = c.string(full, `${f}.replaceFullPath`) ?? '/';
    if (value.length > 1024) c.fail(`${f}.replaceFullPath`, 'must be at most 1024 characters');
    if (!value.startsWith('/')) c.fail(`${f}.replaceFullPath`, `must start with '/', got ${JSON.stringify(value)}`);
    return { type, value };
  }
  if (full !== undefined && full !== null) c.fail(`${f}.replaceFullPath`, "must not be set when type is 'ReplacePrefixMatch'");
  if (prefix === undefined || prefix === null) { c.fail(`${f}.replacePrefixMatch`, "must be specified when type is 'ReplacePrefixMatch'"); return undefined; }
  const value = c.string(prefix, `${f}.replacePrefixMatch`) ?? '';
  if (value.length > 1024) c.fail(`${f}.replacePrefixMatch`, 'must be at most 1024 characters');
  if (value !== '' && !value.startsWith('/')) c.fail(`${f}.replacePrefixMatch`, `must be empty or start with '/', got ${JSON.stringify(value)}`);
  return { type, value };
}

function redirect(c: Checker, b: Record<string, unknown>, f: string): Redirect {
  const scheme = b.scheme === undefined || b.scheme === null ? undefined : c.oneOf(b.scheme, `${f}.scheme`, ['http', 'https'] as const, 'http');
  const host = b.hostname === undefined || b.hostname === null ? undefined : hostname(c, b.hostname, `${f}.hostname`, true);
  const path = pathModifier(c, b.path, `${f}.path`);
  const port = b.port === undefined || b.port === null ? undefined : c.port(b.port, `${f}.port`);
  let statusCode: Redirect['statusCode'] = 302;
  if (b.statusCode !== undefined && b.statusCode !== null) {
    if (typeof b.statusCode === 'number' && (REDIRECT_CODES as readonly number[]).includes(b.statusCode)) statusCode = b.statusCode as Redirect['statusCode'];
    else c.fail(`${f}.statusCode`, `must be one of ${REDIRECT_CODES.join(', ')}, got ${JSON.stringify(b.statusCode)}`);
  }
  return { scheme, hostname: host, path, port, statusCode };
}

function rewrite(c: Checker, b: Record<string, unknown>, f: string): Rewrite {
  const host = b.hostname === undefined || b.hostname === null ? undefined : hostname(c, b.hostname, `${f}.hostname`, true);
  return { hostname: host, path: pathModifier(c, b.path, `${f}.path`) };
}

function stringList(c: Checker, v: unknown, f: string, max: number): string[] {
  const raw = c.list(v, f) ?? [];
  if (raw.length > max) c.fail(f, `must hold at most ${max} entries, got ${raw.length}`);
  const out: string[] = [];
  raw.forEach((x, i) => {
    const s = c.string(x, `${f}[${i}]`);
    if (s !== undefined) out.push(s);
  });
  return out;
}

function cors(c: Checker, b: Record<string, unknown>, f: string): Cors {
  const allowOrigins = stringList(c, b.allowOrigins, `${f}.allowOrigins`, 64);
  allowOrigins.forEach((o, i) => {
    if (o.length > 253 || !ORIGIN.test(o)) c.fail(`${f}.allowOrigins[${i}]`, `must be an origin (scheme://host[:port], the host may start with '*.') or '*', got ${JSON.stringify(o)}`);
  });
  const allowMethods = stringList(c, b.allowMethods, `${f}.allowMethods`, 9);
  allowMethods.forEach((m, i) => {
    if (m !== '*' && !(HTTP_METHODS as readonly string[]).includes(m)) c.fail(`${f}.allowMethods[${i}]`, `must be an HTTP method or '*', got ${JSON.stringify(m)}`);
  });
  const allowHeaders = stringList(c, b.allowHeaders, `${f}.allowHeaders`, 64).map((h) => h.toLowerCase());
  const exposeHeaders = stringList(c, b.exposeHeaders, `${f}.exposeHeaders`, 64);
  for (const [name, list] of [['allowOrigins', allowOrigins], ['allowMethods', allowMethods], ['allowHeaders', allowHeaders], ['exposeHeaders', exposeHeaders]] as const) {
    if (list.includes('*') && list.length > 1) c.fail(`${f}.${name}`, "cannot contain '*' alongside other values");
  }
  const allowCredentials = c.bool(b.allowCredentials, `${f}.allowCredentials`, false);
  const maxAgeSeconds = c.int(b.maxAge, `${f}.maxAge`, 1, 2_147_483_647, 5) ?? 5;
  return { allowOrigins, allowMethods, allowHeaders, exposeHeaders, allowCredentials, maxAgeSeconds };
}
