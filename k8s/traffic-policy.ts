/**
 * BackendTrafficPolicy (kernway.io/v1alpha1) checked and normalised: Envoy Gateway's
 * field names and meanings (docs/traffic-policy.md; the CRD is
 * deploy/crds/backendtrafficpolicy.yaml, kept equal to TRAFFIC_POLICY_FIELDS by a test).
 * Every problem names the file, the object and the field; an unknown field is an error,
 * with a hint for Envoy Gateway's fields kernway does not have.
 */
import { re2 } from './re2.js';
import { describe } from '../common/errors.js';
import { Checker, isRecord } from './check.js';
import { parseCidr } from './cidr.js';
import { parseDuration, MAX_TIMER_MS } from './duration.js';
import { objectMeta } from './gateway-api.js';
import { GATEWAY_GROUP } from './gateway-api-types.js';
import type {
  BackendTrafficPolicy, CircuitBreaker, FaultInjection, PassiveHealthCheck, RateLimit, RateLimitRule, RateLimitSelector,
  RetrySettings, RetryTrigger, TcpKeepalive, Timeouts, TrafficSettings, TrafficTargetRef,
} from './traffic-policy-types.js';
import type { ParseResult, SourcedObject } from './types.js';

type Parsed = ParseResult<{ kind: 'BackendTrafficPolicy'; value: BackendTrafficPolicy }>;

/** The fields kernway reads, by object (the CRD's schema lists the same; a test keeps them equal). */
export const TRAFFIC_POLICY_FIELDS = {
  spec: ['targetRefs', 'circuitBreaker', 'healthCheck', 'faultInjection', 'rateLimit', 'timeout', 'retry', 'tcpKeepalive'],
  targetRef: ['group', 'kind', 'name'],
  circuitBreaker: ['maxConnections', 'maxPendingRequests', 'maxParallelRequests', 'maxParallelRetries', 'maxRequestsPerConnection'],
  healthCheck: ['passive'],
  passive: ['splitExternalLocalOriginErrors', 'interval', 'consecutiveLocalOriginFailures', 'consecutiveGatewayErrors', 'consecutive5XxErrors', 'baseEjectionTime', 'maxEjectionPercent'],
  faultInjection: ['delay', 'abort'],
  delay: ['fixedDelay', 'percentage'],
  abort: ['httpStatus', 'grpcStatus', 'percentage'],
  rateLimit: ['type', 'local'],
  local: ['rules'],
  rule: ['clientSelectors', 'limit'],
  clientSelector: ['headers', 'sourceCIDR'],
  header: ['name', 'value', 'type', 'invert'],
  sourceCIDR: ['type', 'value'],
  limit: ['requests', 'unit'],
  timeout: ['tcp', 'http'],
  tcp: ['connectTimeout'],
  http: ['connectionIdleTimeout', 'maxConnectionDuration', 'requestTimeout'],
  retry: ['numRetries', 'retryOn', 'perRetry', 'budget'],
  retryOn: ['triggers', 'httpStatusCodes'],
  perRetry: ['timeout', 'backOff'],
  backOff: ['baseInterval', 'maxInterval'],
  budget: ['percent', 'minRetryConcurrency'],
  tcpKeepalive: ['probes', 'idleTime', 'interval'],
} as const;

export const RETRY_TRIGGERS: readonly RetryTrigger[] = ['5xx', 'gateway-error', 'reset', 'connect-failure', 'retriable-4xx', 'refused-stream', 'retriable-status-codes'];

/** Envoy Gateway's fields kernway does not have, with what to do instead. */
const UNSUPPORTED: Record<string, string> = {
  targetRef: 'use targetRefs (a list)',
  targetSelectors: 'name the Services or HTTPRoutes in targetRefs',
  sectionName: 'a policy applies to a whole Service or HTTPRoute',
  active: 'only passive health checks (outlier detection) are supported',
  loadBalancer: 'choose the balancing with the Service annotation kernway.io/waypoint-lb',
  proxyProtocol: 'not supported',
  tcp: 'only http timeouts and timeout.tcp.connectTimeout are supported',
  global: 'only local rate limits are supported (type: Local)',
  perEndpoint: 'circuit breaker limits are per backend Service',
  compression: 'not supported',
  responseOverride: 'not supported',
  dns: 'not supported',
  http2: 'not supported',
  connection: 'not supported',
  useClientProtocol: 'not supported',
  mergeType: 'a route-level policy always overrides a Service-level one field by field',
};

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const MAX_LIMIT = 2 ** 31 - 1;

class TrafficChecker extends Checker {
  only(o: Record<string, unknown>, field: string, known: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (known.includes(k)) continue;
      const hint = UNSUPPORTED[k];
      this.fail(`${field}.${k}`, hint ? `is not supported by kernway (${hint})` : `unknown field (known here: ${known.join(', ')})`);
    }
  }

  /** A mapping when present; undefined when absent (or invalid). */
  section(v: unknown, field: string, known: readonly string[]): Record<string, unknown> | undefined {
    if (v === undefined || v === null) return undefined;
    if (!isRecord(v)) { this.fail(field, `must be a mapping, got ${describe(v)}`); return undefined; }
    this.only(v, field, known);
    return v;
  }

  /** A Gateway API duration (1h30m, 500ms), in ms, clamped to a timer's range. */
  duration(v: unknown, field: string, min = 0): number | undefined {
    if (v === undefined || v === null) return undefined;
    const ms = typeof v === 'string' ? parseDuration(v) : undefined;
    if (ms === undefined) { this.fail(field, `must be a duration like 100ms, 5s, 1m or 1h30m, got ${describe(v)}`); return undefined; }
    if (ms < min) { this.fail(field, `must be at least ${min}ms, got ${describe(v)}`); return undefined; }
    return Math.min(ms, MAX_TIMER_MS);
  }

  /** A percentage from 0 to 100 (fractions allowed). */
  percent(v: unknown, field: string, def: number): number {
    if (v === undefined || v === null) return def;
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 100) return v;
    this.fail(field, `must be a number from 0 to 100, got ${describe(v)}`);
    return def;
  }
}

export function parseBackendTrafficPolicy(src: SourcedObject): Parsed {
  const o = src.object;
  const c = new TrafficChecker(src, typeof o.metadata.namespace === 'string' && o.metadata.namespace !== '' ? o.metadata.namespace : 'default');
  const meta = objectMeta(c, src, true);
  const spec = c.section(o.spec, 'spec', TRAFFIC_POLICY_FIELDS.spec) ?? {};
  if (o.spec === undefined || o.spec === null) c.fail('spec', 'is required (with spec.targetRefs)');

  const targetRefs: TrafficTargetRef[] = [];
  const refs = c.list(spec.targetRefs, 'spec.targetRefs');
  if (refs && refs.length === 0 && o.spec !== undefined && o.spec !== null) c.fail('spec.targetRefs', 'is required: name at least one Service or HTTPRoute');
  if (refs && refs.length > 16) c.fail('spec.targetRefs', `must have at most 16 items, got ${refs.length}`);
  refs?.forEach((r, i) => {
    const f = `spec.targetRefs[${i}]`;
    const ref = c.section(r, f, TRAFFIC_POLICY_FIELDS.targetRef);
    if (!ref) { if (r === null || r === undefined) c.fail(f, 'must be a mapping'); return; }
    const group = ref.group === undefined || ref.group === null ? undefined : c.string(ref.group, `${f}.group`);
    const kind = c.string(ref.kind, `${f}.kind`);
    const name = c.string(ref.name, `${f}.name`);
    if (name === undefined || name === '') { c.fail(`${f}.name`, 'is required'); return; }
    c.dnsSubdomain(name, `${f}.name`);
    if (kind === 'Service') {
      if (group !== undefined && group !== '') c.fail(`${f}.group`, `must be "" (the core group) for kind Service, got ${describe(group)}`);
      else targetRefs.push({ group: '', kind, name });
    } else if (kind === 'HTTPRoute') {
      if (group !== GATEWAY_GROUP) c.fail(`${f}.group`, `must be ${GATEWAY_GROUP} for kind HTTPRoute, got ${describe(group)}`);
      else targetRefs.push({ group, kind, name });
    } else if (kind === undefined) c.fail(`${f}.kind`, 'is required (Service or HTTPRoute)');
    else c.fail(`${f}.kind`, `must be Service (group "") or HTTPRoute (group ${GATEWAY_GROUP}), got ${describe(kind)}` +
      (kind === 'Gateway' || kind === 'GRPCRoute' ? '; kernway attaches BackendTrafficPolicies to Services and HTTPRoutes only' : ''));
  });
  const seen = new Set<string>();
  for (const t of targetRefs) {
    const k = `${t.kind}/${t.name}`;
    if (seen.has(k)) c.fail('spec.targetRefs', `names ${t.kind} ${t.name} twice`);
    seen.add(k);
  }

  const settings: TrafficSettings = {};
  const cb = circuitBreaker(c, spec.circuitBreaker);
  if (cb) settings.circuitBreaker = cb;
  const hc = c.section(spec.healthCheck, 'spec.healthCheck', TRAFFIC_POLICY_FIELDS.healthCheck);
  if (hc) {
    const p = passive(c, hc.passive);
    settings.healthCheck = p ? { passive: p } : {};
  }
  const fi = faultInjection(c, spec.faultInjection);
  if (fi) settings.faultInjection = fi;
  const rl = rateLimit(c, spec.rateLimit);
  if (rl) settings.rateLimit = rl;
  const to = timeouts(c, spec.timeout);
  if (to) settings.timeout = to;
  const rt = retry(c, spec.retry);
  if (rt) settings.retry = rt;
  const ka = keepalive(c, spec.tcpKeepalive);
  if (ka) settings.tcpKeepalive = ka;

  if (!c.ok) return { object: undefined, problems: c.problems };
  return { object: { kind: 'BackendTrafficPolicy', value: Object.freeze({ meta, targetRefs, settings: deepFreeze(settings) }) }, problems: [] };
}

function circuitBreaker(c: TrafficChecker, v: unknown): CircuitBreaker | undefined {
  const f = 'spec.circuitBreaker';
  const r = c.section(v, f, TRAFFIC_POLICY_FIELDS.circuitBreaker);
  if (!r) return undefined;
  const out: CircuitBreaker = {};
  for (const k of TRAFFIC_POLICY_FIELDS.circuitBreaker) {
    const n = c.int(r[k], `${f}.${k}`, k === 'maxRequestsPerConnection' ? 1 : 0, MAX_LIMIT);
    if (n !== undefined) out[k] = n;
  }
  return out;
}

function passive(c: TrafficChecker, v: unknown): PassiveHealthCheck | undefined {
  const f = 'spec.healthCheck.passive';
  const r = c.section(v, f, TRAFFIC_POLICY_FIELDS.passive);
  if (!r) return undefined;
  const out: PassiveHealthCheck = {};
  if (r.splitExternalLocalOriginErrors !== undefined && r.splitExternalLocalOriginErrors !== null) out.splitExternalLocalOriginErrors = c.bool(r.splitExternalLocalOriginErrors, `${f}.splitExternalLocalOriginErrors`, false);
  const interval = c.duration(r.interval, `${f}.interval`, 1);
  if (interval !== undefined) out.intervalMs = interval;
  const base = c.duration(r.baseEjectionTime, `${f}.baseEjectionTime`, 1);
  if (base !== undefined) out.baseEjectionTimeMs = base;
  for (const k of ['consecutiveLocalOriginFailures', 'consecutiveGatewayErrors', 'consecutive5XxErrors'] as const) {
    const n = c.int(r[k], `${f}.${k}`, 0, MAX_LIMIT);
    if (n !== undefined) out[k] = n;
  }
  const mep = c.int(r.maxEjectionPercent, `${f}.maxEjectionPercent`, 0, 100);
  if (mep !== undefined) out.maxEjectionPercent = mep;
  return out;
}

function faultInjection(c: TrafficChecker, v: unknown): FaultInjection | undefined {
  const f = 'spec.faultInjection';
  const r = c.section(v, f, TRAFFIC_POLICY_FIELDS.faultInjection);
  if (!r) return undefined;
  const out: FaultInjection = {};
  const d = c.section(r.delay, `${f}.delay`, TRAFFIC_POLICY_FIELDS.delay);
  if (d) {
    const ms = c.duration(d.fixedDelay, `${f}.delay.fixedDelay`);
    if (d.fixedDelay === undefined || d.fixedDelay === null) c.fail(`${f}.delay.fixedDelay`, 'is required');
    const percentage = c.percent(d.percentage, `${f}.delay.percentage`, 100);
    if (ms !== undefined) out.delay = { fixedDelayMs: ms, percentage };
  }
  const a = c.section(r.abort, `${f}.abort`, TRAFFIC_POLICY_FIELDS.abort);
  if (a) {
    const percentage = c.percent(a.percentage, `${f}.abort.percentage`, 100);
    const hasHttp = a.httpStatus !== undefined && a.httpStatus !== null;
    const hasGrpc = a.grpcStatus !== undefined && a.grpcStatus !== null;
    if (hasHttp === hasGrpc) c.fail(`${f}.abort`, 'must set exactly one of httpStatus and grpcStatus');
    else if (hasHttp) {
      const s = c.int(a.httpStatus, `${f}.abort.httpStatus`, 200, 600);
      if (s !== undefined) out.abort = { httpStatus: s, percentage };
    } else {
      const s = c.int(a.grpcStatus, `${f}.abort.grpcStatus`, 0, 16);
      if (s !== undefined) out.abort = { grpcStatus: s, percentage };
    }
  }
  if (!d && !a) c.fail(f, 'must set delay, abort or both');
  return out;
}

function rateLimit(c: TrafficChecker, v: unknown): RateLimit | undefined {
  const f = 'spec.rateLimit';
  const r = c.section(v, f, TRAFFIC_POLICY_FIELDS.rateLimit);
  if (!r) return undefined;
  if (r.type === 'Global') { c.fail(`${f}.type`, 'Global is not supported by kernway (use Local: token buckets in each waypoint)'); return undefined; }
  if (r.type !== 'Local') { c.fail(`${f}.type`, `must be "Local", got ${describe(r.type)}`); return undefined; }
  const local = c.section(r.local, `${f}.local`, TRAFFIC_POLICY_FIELDS.local);
  if (!local) { c.fail(`${f}.local`, 'is required with type Local'); return undefined; }
  const rules: RateLimitRule[] = [];
  const list = c.list(local.rules, `${f}.local.rules`);
  if (list && list.length === 0) c.fail(`${f}.local.rules`, 'must have at least one rule');
  if (list && list.length > 128) c.fail(`${f}.local.rules`, `must have at most 128 rules, got ${list.length}`);
  list?.forEach((rr, i) => {
    const rf = `${f}.local.rules[${i}]`;
    const rule = c.section(rr, rf, TRAFFIC_POLICY_FIELDS.rule);
    if (!rule) { if (rr === null || rr === undefined) c.fail(rf, 'must be a mapping'); return; }
    const selectors: RateLimitSelector[] = [];
    (c.list(rule.clientSelectors, `${rf}.clientSelectors`) ?? []).forEach((sv, j) => {
      const sf = `${rf}.clientSelectors[${j}]`;
      const s = c.section(sv, sf, TRAFFIC_POLICY_FIELDS.clientSelector);
      if (!s) { if (sv === null || sv === undefined) c.fail(sf, 'must be a mapping'); return; }
      const headers: RateLimitSelector['headers'][number][] = [];
      (c.list(s.headers, `${sf}.headers`) ?? []).forEach((hv, k) => {
        const hf = `${sf}.headers[${k}]`;
        const h = c.section(hv, hf, TRAFFIC_POLICY_FIELDS.header);
        if (!h) { if (hv === null || hv === undefined) c.fail(hf, 'must be a mapping'); return; }
        const name = c.string(h.name, `${hf}.name`);
        if (name === undefined || !HEADER_NAME.test(name)) { c.fail(`${hf}.name`, `must be a header name, got ${describe(h.name)}`); return; }
        const type = c.oneOf(h.type, `${hf}.type`, ['Exact', 'RegularExpression', 'Distinct'] as const, 'Exact');
        const value = c.string(h.value, `${hf}.value`);
        const invert = c.bool(h.invert, `${hf}.invert`, false);
        if (type === 'Distinct') {
          if (value !== undefined) c.fail(`${hf}.value`, 'must not be set with type Distinct (each distinct value gets its own bucket)');
          if (invert) c.fail(`${hf}.invert`, 'cannot be true with type Distinct');
        } else if (value === undefined) c.fail(`${hf}.value`, `is required with type ${type}`);
        else if (type === 'RegularExpression') {
          try { re2().compile(value); } catch (e) { c.fail(`${hf}.value`, `is not a regular expression kernway can run (RE2 syntax): ${(e as Error).message}`); }
        }
        headers.push({ name: name.toLowerCase(), type, value, invert });
      });
      let sourceCIDR: RateLimitSelector['sourceCIDR'];
      const sc = c.section(s.sourceCIDR, `${sf}.sourceCIDR`, TRAFFIC_POLICY_FIELDS.sourceCIDR);
      if (sc) {
        const type = c.oneOf(sc.type, `${sf}.sourceCIDR.type`, ['Exact', 'Distinct'] as const, 'Exact');
        const cidr = typeof sc.value === 'string' ? parseCidr(sc.value) : { error: `must be a CIDR (10.0.0.0/8, fd00::/16), got ${describe(sc.value)}` };
        if ('error' in cidr) c.fail(`${sf}.sourceCIDR.value`, cidr.error);
        else sourceCIDR = { type, cidr: cidr.cidr };
      }
      if (headers.length === 0 && sourceCIDR === undefined) c.fail(sf, 'must set headers or sourceCIDR (omit clientSelectors to limit all traffic)');
      selectors.push(sourceCIDR ? { headers, sourceCIDR } : { headers });
    });
    const lim = c.section(rule.limit, `${rf}.limit`, TRAFFIC_POLICY_FIELDS.limit);
    if (!lim) { c.fail(`${rf}.limit`, 'is required ({requests, unit})'); return; }
    const requests = c.int(lim.requests, `${rf}.limit.requests`, 0, MAX_LIMIT);
    if (lim.requests === undefined || lim.requests === null) c.fail(`${rf}.limit.requests`, 'is required');
    const unit = c.oneOf(lim.unit, `${rf}.limit.unit`, ['Second', 'Minute', 'Hour', 'Day'] as const, 'Second');
    if (lim.unit === undefined || lim.unit === null) c.fail(`${rf}.limit.unit`, 'is required (Second, Minute, Hour or Day)');
    if (requests !== undefined) rules.push({ clientSelectors: selectors, limit: { requests, unit } });
  });
  return { type: 'Local', rules };
}

function timeouts(c: TrafficChecker, v: unknown): Timeouts | undefined {
  const f = 'spec.timeout';
  const r = c.section(v, f, TRAFFIC_POLICY_FIELDS.timeout);
  if (!r) return undefined;
  const out: Timeouts = {};
  const tcp = c.section(r.tcp, `${f}.tcp`, TRAFFIC_POLICY_FIELDS.tcp);
  if (tcp) {
    const ms = c.duration(tcp.connectTimeout, `${f}.tcp.connectTimeout`, 1);
    out.tcp = ms !== undefined ? { connectTimeoutMs: ms } : {};
  }
  const http = c.section(r.http, `${f}.http`, TRAFFIC_POLICY_FIELDS.http);
  if (http) {
    out.http = {};
    const idle = c.duration(http.connectionIdleTimeout, `${f}.http.connectionIdleTimeout`, 1);
    if (idle !== undefined) out.http.connectionIdleTimeoutMs = idle;
    const max = c.duration(http.maxConnectionDuration, `${f}.http.maxConnectionDuration`, 1);
    if (max !== undefined) out.http.maxConnectionDurationMs = max;
    const req = c.duration(http.requestTimeout, `${f}.http.requestTimeout`);
    if (req !== undefined) out.http.requestTimeoutMs = req;
  }
  return out;
}

function retry(c: TrafficChecker, v: unknown): RetrySettings | undefined {
  const f = 'spec.retry';
  const r = c.section(v, f, TRAFFIC_POLICY_FIELDS.retry);
  if (!r) return undefined;
  const out: RetrySettings = {};
  const n = c.int(r.numRetries, `${f}.numRetries`, 0, 100);
  if (n !== undefined) out.numRetries = n;
  const on = c.section(r.retryOn, `${f}.retryOn`, TRAFFIC_POLICY_FIELDS.retryOn);
  if (on) {
    out.retryOn = {};
    const triggers = c.list(on.triggers, `${f}.retryOn.triggers`);
    if (triggers && triggers.length > 0) {
      const list: RetryTrigger[] = [];
      triggers.forEach((t, i) => {
        if (typeof t === 'string' && (RETRY_TRIGGERS as readonly string[]).includes(t)) list.push(t as RetryTrigger);
        else c.fail(`${f}.retryOn.triggers[${i}]`, `must be one of ${RETRY_TRIGGERS.join(', ')}, got ${describe(t)}`);
      });
      out.retryOn.triggers = list;
    }
    const codes = c.list(on.httpStatusCodes, `${f}.retryOn.httpStatusCodes`);
    if (codes && codes.length > 0) out.retryOn.httpStatusCodes = codes.map((x, i) => c.int(x, `${f}.retryOn.httpStatusCodes[${i}]`, 100, 599) ?? 0);
  }
  const per = c.section(r.perRetry, `${f}.perRetry`, TRAFFIC_POLICY_FIELDS.perRetry);
  if (per) {
    out.perRetry = {};
    const t = c.duration(per.timeout, `${f}.perRetry.timeout`, 1);
    if (t !== undefined) out.perRetry.timeoutMs = t;
    const bo = c.section(per.backOff, `${f}.perRetry.backOff`, TRAFFIC_POLICY_FIELDS.backOff);
    if (bo) {
      const base = c.duration(bo.baseInterval, `${f}.perRetry.backOff.baseInterval`, 1);
      const max = c.duration(bo.maxInterval, `${f}.perRetry.backOff.maxInterval`, 1);
      if (base !== undefined && max !== undefined && max < base) c.fail(`${f}.perRetry.backOff.maxInterval`, 'must not be shorter than baseInterval');
      out.perRetry.backOff = { ...(base !== undefined ? { baseIntervalMs: base } : {}), ...(max !== undefined ? { maxIntervalMs: max } : {}) };
    }
  }
  const b = c.section(r.budget, `${f}.budget`, TRAFFIC_POLICY_FIELDS.budget);
  if (b) {
    out.budget = {};
    if (b.percent !== undefined && b.percent !== null) out.budget.percent = c.percent(b.percent, `${f}.budget.percent`, 20);
    const m = c.int(b.minRetryConcurrency, `${f}.budget.minRetryConcurrency`, 0, MAX_LIMIT);
    if (m !== undefined) out.budget.minRetryConcurrency = m;
  }
  return out;
}

function keepalive(c: TrafficChecker, v: unknown): TcpKeepalive | undefined {
  const f = 'spec.tcpKeepalive';
  const r = c.section(v, f, TRAFFIC_POLICY_FIELDS.tcpKeepalive);
  if (!r) return undefined;
  const out: TcpKeepalive = {};
  const probes = c.int(r.probes, `${f}.probes`, 1, 127);
  if (probes !== undefined) out.probes = probes;
  const idle = c.duration(r.idleTime, `${f}.idleTime`, 1000);
  if (idle !== undefined) out.idleTimeMs = idle;
  const interval = c.duration(r.interval, `${f}.interval`, 1000);
  if (interval !== undefined) out.intervalMs = interval;
  return out;
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !ArrayBuffer.isView(o) && !Object.isFrozen(o)) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
