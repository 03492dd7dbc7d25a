/**
 * A BackendTrafficPolicy's settings as the request path uses them: defaults applied
 * (Envoy's and Envoy Gateway's), regexes compiled, retry triggers as sets. One compiled
 * object per backend of a rule (the Service-level and HTTPRoute-level policies merged
 * field by field); `undefined` when no policy applies, which is the whole cost of the
 * feature for requests without one.
 */
import { RE2JS } from 're2js';
import type { BackendTrafficPolicy, FaultInjection, RateLimitUnit, RetrySettings } from '../../k8s/traffic-policy-types.js';
import type { Cidr } from '../../k8s/policy-types.js';
import { mergeTrafficSettings } from '../../model/traffic-policy.js';
import type { Retry } from '../../k8s/gateway-api-types.js';

export interface CircuitLimits {
  maxConnections: number;
  maxPendingRequests: number;
  maxParallelRequests: number;
  maxParallelRetries: number;
  /** 0: unlimited. */
  maxRequestsPerConnection: number;
}

export interface OutlierSettings {
  split: boolean;
  intervalMs: number;
  consecutiveLocalOriginFailures: number;
  consecutiveGatewayErrors: number;
  consecutive5XxErrors: number;
  baseEjectionTimeMs: number;
  maxEjectionPercent: number;
}

export interface CompiledHeaderSelector { name: string; type: 'Exact' | 'RegularExpression' | 'Distinct'; value: string | undefined; re: RE2JS | undefined; invert: boolean }
export interface CompiledRateRule {
  index: number;
  selectors: readonly { headers: readonly CompiledHeaderSelector[]; cidr: { type: 'Exact' | 'Distinct'; cidr: Cidr } | undefined }[];
  requests: number;
  unitMs: number;
}
export interface CompiledRateLimit {
  /** Whose buckets: 'Service ns/name' or 'HTTPRoute ns/name', with the policy's key. */
  scope: string;
  /** The policy that set the rules ('ns/name'), for metrics. */
  policy: string;
  rules: readonly CompiledRateRule[];
}

/** When to send a request again, and how often at most. */
export interface RetryPlan {
  /** Tries after the first. */
  retries: number;
  codes: ReadonlySet<number>;
  connectFailure: boolean;
  reset: boolean;
  /** A try that timed out (504) is retried. */
  timeout: boolean;
  baseBackoffMs: number;
  maxBackoffMs: number;
  perTryTimeoutMs: number | undefined;
  /** Retry budget (Envoy's retry_budget): a percentage of the requests in flight, with a floor. */
  budget: { percent: number; minRetryConcurrency: number } | undefined;
  /** Where it came from: the HTTPRoute rule's retry, or the policy's. */
  from: 'route' | 'policy';
}

/** Options for connections to the backends (HTTP/1.1 pool). */
export interface ConnOptions {
  connectTimeoutMs: number | undefined;
  idleTimeoutMs: number | undefined;
  maxDurationMs: number | undefined;
  /** 0: unlimited. */
  maxRequests: number;
  keepAlive: { idleTimeMs: number | undefined; probes: number | undefined; intervalMs: number | undefined } | undefined;
}

export interface CompiledTraffic {
  /** The policies in force, 'ns/name' (the Service's, then the route's). */
  policies: string;
  circuit: CircuitLimits | undefined;
  outlier: OutlierSettings | undefined;
  fault: FaultInjection | undefined;
  rateLimit: CompiledRateLimit | undefined;
  requestTimeoutMs: number | undefined;
  retry: RetrySettings | undefined;
  conn: ConnOptions | undefined;
}

const UNIT_MS: Record<RateLimitUnit, number> = { Second: 1000, Minute: 60_000, Hour: 3_600_000, Day: 86_400_000 };
const CB_DEFAULT = 1024;

/** The settings for requests to `serviceKey` ('ns/name') through `routeKey` ('' for passthrough). */
export function compileTraffic(svc: BackendTrafficPolicy | undefined, route: BackendTrafficPolicy | undefined, serviceKey: string, routeKey: string): CompiledTraffic | undefined {
  const s = mergeTrafficSettings(svc?.settings, route?.settings);
  if (s === undefined) return undefined;
  const cb = s.circuitBreaker;
  const hc = s.healthCheck?.passive;
  const t = s.timeout;
  const ka = s.tcpKeepalive;
  const rlFromRoute = route?.settings.rateLimit !== undefined;
  const rlPolicy = rlFromRoute ? route! : svc;
  const conn: ConnOptions | undefined = t?.tcp?.connectTimeoutMs !== undefined || t?.http?.connectionIdleTimeoutMs !== undefined || t?.http?.maxConnectionDurationMs !== undefined || cb?.maxRequestsPerConnection !== undefined || ka !== undefined
    ? {
      connectTimeoutMs: t?.tcp?.connectTimeoutMs, idleTimeoutMs: t?.http?.connectionIdleTimeoutMs, maxDurationMs: t?.http?.maxConnectionDurationMs,
      maxRequests: cb?.maxRequestsPerConnection ?? 0,
      // Envoy Gateway's defaults when tcpKeepalive is present: the kernel's (7200s, 9 probes, 75s).
      keepAlive: ka ? { idleTimeMs: ka.idleTimeMs, probes: ka.probes, intervalMs: ka.intervalMs } : undefined,
    }
    : undefined;
  return {
    policies: [svc?.meta.key, route?.meta.key].filter((x) => x !== undefined).join(','),
    circuit: cb === undefined ? undefined : {
      maxConnections: cb.maxConnections ?? CB_DEFAULT, maxPendingRequests: cb.maxPendingRequests ?? CB_DEFAULT,
      maxParallelRequests: cb.maxParallelRequests ?? CB_DEFAULT, maxParallelRetries: cb.maxParallelRetries ?? CB_DEFAULT,
      maxRequestsPerConnection: cb.maxRequestsPerConnection ?? 0,
    },
    outlier: hc === undefined ? undefined : {
      split: hc.splitExternalLocalOriginErrors ?? false, intervalMs: hc.intervalMs ?? 3000,
      consecutiveLocalOriginFailures: hc.consecutiveLocalOriginFailures ?? 5, consecutiveGatewayErrors: hc.consecutiveGatewayErrors ?? 0,
      consecutive5XxErrors: hc.consecutive5XxErrors ?? 5, baseEjectionTimeMs: hc.baseEjectionTimeMs ?? 30_000, maxEjectionPercent: hc.maxEjectionPercent ?? 10,
    },
    fault: s.faultInjection,
    rateLimit: s.rateLimit === undefined || rlPolicy === undefined ? undefined : {
      scope: rlFromRoute ? `HTTPRoute ${routeKey} ${rlPolicy.meta.key}` : `Service ${serviceKey} ${rlPolicy.meta.key}`,
      policy: rlPolicy.meta.key,
      rules: s.rateLimit.rules.map((r, index) => ({
        index, requests: r.limit.requests, unitMs: UNIT_MS[r.limit.unit],
        selectors: r.clientSelectors.map((sel) => ({
          headers: sel.headers.map((h) => ({ ...h, value: h.value, re: h.type === 'RegularExpression' && h.value !== undefined ? RE2JS.compile(h.value) : undefined })),
          cidr: sel.sourceCIDR,
        })),
      })),
    },
    requestTimeoutMs: t?.http?.requestTimeoutMs,
    retry: s.retry,
    conn,
  };
}

const DEFAULT_POLICY_TRIGGERS = ['connect-failure', 'refused-stream', 'retriable-status-codes'] as const;

/**
 * The retry plan of a request: the HTTPRoute rule's retry when it has one (Gateway API's
 * retry takes precedence, as in Envoy Gateway), else the policy's (Envoy Gateway's
 * defaults: 2 retries on connect-failure, refused-stream and 503; back-off 25 ms doubling
 * up to 250 ms). The budget is the policy's in both cases.
 */
export function retryPlan(route: Retry | undefined, policy: RetrySettings | undefined, defaultMaxBackoffMs: number): RetryPlan | undefined {
  const budget = policy?.budget !== undefined ? { percent: policy.budget.percent ?? 20, minRetryConcurrency: policy.budget.minRetryConcurrency ?? 3 } : undefined;
  if (route !== undefined) {
    return {
      retries: route.attempts, codes: new Set(route.codes), connectFailure: true, reset: false, timeout: route.codes.includes(504),
      baseBackoffMs: route.backoffMs, maxBackoffMs: defaultMaxBackoffMs, perTryTimeoutMs: undefined, budget, from: 'route',
    };
  }
  if (policy === undefined) return undefined;
  const triggers = new Set<string>(policy.retryOn?.triggers ?? DEFAULT_POLICY_TRIGGERS);
  const codes = new Set<number>();
  if (triggers.has('5xx')) for (let c = 500; c < 600; c++) codes.add(c);
  if (triggers.has('gateway-error')) { codes.add(502); codes.add(503); codes.add(504); }
  if (triggers.has('retriable-4xx')) codes.add(409);
  if (triggers.has('retriable-status-codes')) for (const c of policy.retryOn?.httpStatusCodes ?? (policy.retryOn === undefined ? [503] : [])) codes.add(c);
  const base = policy.perRetry?.backOff?.baseIntervalMs ?? 25;
  return {
    retries: policy.numRetries ?? 2, codes,
    connectFailure: triggers.has('connect-failure') || triggers.has('5xx') || triggers.has('refused-stream'),
    reset: triggers.has('reset') || triggers.has('5xx'),
    timeout: triggers.has('5xx') || triggers.has('gateway-error'),
    baseBackoffMs: base, maxBackoffMs: policy.perRetry?.backOff?.maxIntervalMs ?? base * 10,
    perTryTimeoutMs: policy.perRetry?.timeoutMs, budget, from: 'policy',
  };
}
