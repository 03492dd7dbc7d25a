/**
 * kernway's BackendTrafficPolicy (kernway.io/v1alpha1): how the waypoint treats the
 * backends of a Service or of an HTTPRoute (circuit breaking, passive health checks,
 * fault injection, local rate limits, timeouts, retries, TCP keep-alive). The field
 * names and meanings are Envoy Gateway's BackendTrafficPolicy's; see docs/traffic-policy.md.
 * Durations are in milliseconds here; every field is optional (absent: inherited from a
 * Service-level policy, then the documented default).
 */
import type { Cidr } from './policy-types.js';
import type { ObjectMeta } from './gateway-api-types.js';

export const TRAFFIC_POLICY_KIND = 'BackendTrafficPolicy';

export interface TrafficTargetRef {
  /** '' (a Service) or gateway.networking.k8s.io (an HTTPRoute). */
  group: string;
  kind: 'Service' | 'HTTPRoute';
  name: string;
}

export interface CircuitBreaker {
  maxConnections?: number;
  maxPendingRequests?: number;
  maxParallelRequests?: number;
  maxParallelRetries?: number;
  maxRequestsPerConnection?: number;
}

export interface PassiveHealthCheck {
  splitExternalLocalOriginErrors?: boolean;
  intervalMs?: number;
  consecutiveLocalOriginFailures?: number;
  consecutiveGatewayErrors?: number;
  consecutive5XxErrors?: number;
  baseEjectionTimeMs?: number;
  maxEjectionPercent?: number;
}

export interface FaultDelay { fixedDelayMs: number; percentage: number }
export type FaultAbort = { httpStatus: number; grpcStatus?: undefined; percentage: number } | { grpcStatus: number; httpStatus?: undefined; percentage: number };
export interface FaultInjection { delay?: FaultDelay; abort?: FaultAbort }

export type HeaderMatchType = 'Exact' | 'RegularExpression' | 'Distinct';
export interface RateLimitHeaderSelector { name: string; type: HeaderMatchType; value?: string; invert: boolean }
export interface RateLimitCidrSelector { type: 'Exact' | 'Distinct'; cidr: Cidr }
export interface RateLimitSelector { headers: readonly RateLimitHeaderSelector[]; sourceCIDR?: RateLimitCidrSelector }
export type RateLimitUnit = 'Second' | 'Minute' | 'Hour' | 'Day';
export interface RateLimitRule {
  clientSelectors: readonly RateLimitSelector[];
  limit: { requests: number; unit: RateLimitUnit };
}
export interface RateLimit { type: 'Local'; rules: readonly RateLimitRule[] }

export interface Timeouts {
  tcp?: { connectTimeoutMs?: number };
  http?: { connectionIdleTimeoutMs?: number; maxConnectionDurationMs?: number; requestTimeoutMs?: number };
}

export type RetryTrigger = '5xx' | 'gateway-error' | 'reset' | 'connect-failure' | 'retriable-4xx' | 'refused-stream' | 'retriable-status-codes';
export interface RetrySettings {
  numRetries?: number;
  retryOn?: { triggers?: readonly RetryTrigger[]; httpStatusCodes?: readonly number[] };
  perRetry?: { timeoutMs?: number; backOff?: { baseIntervalMs?: number; maxIntervalMs?: number } };
  /** Envoy's retry budget: retries in flight at most `percent` of the requests in flight (but always `minRetryConcurrency`). */
  budget?: { percent?: number; minRetryConcurrency?: number };
}

export interface TcpKeepalive { probes?: number; idleTimeMs?: number; intervalMs?: number }

/** The settings of a policy (each section optional: absent is inherited, then defaulted). */
export interface TrafficSettings {
  circuitBreaker?: CircuitBreaker;
  healthCheck?: { passive?: PassiveHealthCheck };
  faultInjection?: FaultInjection;
  rateLimit?: RateLimit;
  timeout?: Timeouts;
  retry?: RetrySettings;
  tcpKeepalive?: TcpKeepalive;
}

export interface BackendTrafficPolicy {
  meta: ObjectMeta;
  targetRefs: readonly TrafficTargetRef[];
  settings: TrafficSettings;
}
