/**
 * The resilience engine's state, kept across configuration changes (keyed by backend
 * Service target and by rate-limit scope, like the balancer's): circuit breaker counters
 * and the queue of requests waiting for a connection, outlier detection per endpoint,
 * and local rate-limit token buckets. Envoy's semantics, documented in docs/traffic-policy.md.
 */
import { addrBytes, cidrHas } from '../../k8s/cidr.js';
import type { CircuitLimits, CompiledRateLimit, OutlierSettings } from './compile.js';

/** Which circuit breaker limit refused a request (the x-kernway-overflow header and the metric's label). */
export type OverflowLimit = 'maxConnections' | 'maxPendingRequests' | 'maxParallelRequests' | 'maxParallelRetries' | 'retryBudget';

/** A request waiting in a circuit breaker's pending queue: granted a connection (called from release()). */
export interface Waiter { granted(): void }

/** Per backend Service target: requests and retries in flight, connections in use, requests waiting for one. */
export class CircuitState {
  requests = 0;
  retries = 0;
  busy = 0;
  private readonly queue: Waiter[] = [];

  get pending(): number {
    return this.queue.length;
  }

  /**
   * A connection for one try: 'granted' at once while fewer than maxConnections are in
   * use; otherwise 'queued' in the pending queue (`w.granted()` is called when it gets
   * one), or 'overflow' when maxPendingRequests are already waiting.
   */
  acquire(l: CircuitLimits, w: Waiter): 'granted' | 'queued' | 'overflow' {
    if (this.busy < l.maxConnections) { this.busy++; return 'granted'; }
    if (this.queue.length >= l.maxPendingRequests) return 'overflow';
    this.queue.push(w);
    return 'queued';
  }

  /** A waiter leaves the queue without a connection (gone, or timed out); false when it is not in it. */
  cancel(w: Waiter): boolean {
    const i = this.queue.indexOf(w);
    if (i < 0) return false;
    this.queue.splice(i, 1);
    return true;
  }

  /** A try's connection is free again: the oldest waiter gets it. */
  release(): void {
    const next = this.queue.shift();
    if (next) next.granted();
    else this.busy--;
  }
}

interface EndpointHealth {
  c5xx: number;
  cgw: number;
  clocal: number;
  /** Ejected until this time (ms, performance.now()); 0 when in service. */
  until: number;
  /** Ejections so far (the multiplier of baseEjectionTime), decreased by one per interval spent healthy. */
  ejections: number;
  /** When it last came back (or was first seen). */
  since: number;
}

/** The outcome of one try, for outlier detection. */
export type TryOutcome = { status: number } | { local: 'connect' | 'reset' | 'timeout' };

const MAX_EJECTION_MS = 300_000;

/** Outlier detection (Envoy's consecutive_5xx, consecutive_gateway_failure, consecutive_local_origin_failure) for one backend Service target. */
export class OutlierState {
  private readonly eps = new Map<string, EndpointHealth>();
  private ejectedCount = 0;
  private readonly ejectedSet = new Set<string>();

  /** Endpoints currently ejected (those whose time is up come back first). */
  ejected(now: number): ReadonlySet<string> | undefined {
    if (this.ejectedCount === 0) return undefined;
    for (const k of this.ejectedSet) {
      const h = this.eps.get(k)!;
      if (now >= h.until) { h.until = 0; h.since = now; this.ejectedSet.delete(k); this.ejectedCount--; }
    }
    return this.ejectedCount === 0 ? undefined : this.ejectedSet;
  }

  get size(): number {
    return this.ejectedCount;
  }

  /** Record a try's outcome; true when it ejected the endpoint. */
  report(key: string, o: TryOutcome, s: OutlierSettings, endpoints: number, now: number): boolean {
    let h = this.eps.get(key);
    if (!h) {
      if (this.eps.size > 10_000) this.prune();
      this.eps.set(key, (h = { c5xx: 0, cgw: 0, clocal: 0, until: 0, ejections: 0, since: now }));
    }
    let trip: boolean;
    if ('status' in o) {
      h.clocal = 0; // a response means the connection worked
      if (o.status >= 500) {
        h.c5xx++;
        if (o.status >= 502 && o.status <= 504) h.cgw++; else h.cgw = 0;
      } else { h.c5xx = 0; h.cgw = 0; }
      trip = (s.consecutive5XxErrors > 0 && h.c5xx >= s.consecutive5XxErrors) || (s.consecutiveGatewayErrors > 0 && h.cgw >= s.consecutiveGatewayErrors);
    } else if (s.split) {
      h.clocal++;
      trip = s.consecutiveLocalOriginFailures > 0 && h.clocal >= s.consecutiveLocalOriginFailures;
    } else {
      // Not split: a local failure counts as the gateway error it answers (503 connect/reset, 504 timeout).
      h.c5xx++; h.cgw++;
      trip = (s.consecutive5XxErrors > 0 && h.c5xx >= s.consecutive5XxErrors) || (s.consecutiveGatewayErrors > 0 && h.cgw >= s.consecutiveGatewayErrors);
    }
    if (!trip || h.until !== 0) return false;
    // Never more than maxEjectionPercent of the endpoints out (as Envoy: checked before this one goes).
    if (endpoints <= 0 || (this.ejectedCount * 100) / endpoints >= s.maxEjectionPercent) return false;
    const healthyIntervals = Math.floor((now - h.since) / s.intervalMs);
    h.ejections = Math.max(0, h.ejections - healthyIntervals) + 1;
    h.until = now + Math.min(Math.max(MAX_EJECTION_MS, s.baseEjectionTimeMs), s.baseEjectionTimeMs * h.ejections);
    h.c5xx = 0; h.cgw = 0; h.clocal = 0;
    this.ejectedSet.add(key);
    this.ejectedCount++;
    return true;
  }

  private prune(): void {
    for (const [k, h] of this.eps) if (h.until === 0 && h.ejections === 0) this.eps.delete(k);
  }
}

interface Bucket { tokens: number; at: number }

const MAX_BUCKETS_PER_RULE = 100_000;

/**
 * Local rate limits: one token bucket per rule (per distinct client value for
 * Distinct selectors), holding `requests` tokens and refilled continuously at
 * requests/unit. A request takes a token from every rule that applies to it; when one
 * is empty it is refused (429) and takes nothing.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Map<string, Bucket>>();
  private readonly byRule = new WeakMap<object, Map<string, Bucket>>();

  /** 0 when allowed; otherwise the seconds until a token (retry-after). */
  check(rl: CompiledRateLimit, header: (name: string) => string | undefined, address: string, now: number): number {
    // The buckets taken from if the request is allowed: the first one alone, the others in a list (no array per request for one rule).
    let hit: Bucket | undefined;
    let hits: Bucket[] | undefined;
    let wait = 0;
    for (const rule of rl.rules) {
      const key = clientKey(rule, header, address);
      if (key === undefined) continue;
      // The rule's buckets, found by its scope (kept across route table rebuilds), memoised per compiled rule.
      let m = this.byRule.get(rule);
      if (m === undefined) {
        const scope = `${rl.scope} ${rule.index}`;
        m = this.buckets.get(scope);
        if (!m) this.buckets.set(scope, (m = new Map()));
        this.byRule.set(rule, m);
      }
      let b = m.get(key);
      const rate = rule.requests / rule.unitMs;
      if (!b) {
        if (m.size >= MAX_BUCKETS_PER_RULE) m.delete(m.keys().next().value!);
        m.set(key, (b = { tokens: rule.requests, at: now }));
      } else {
        b.tokens = Math.min(rule.requests, b.tokens + (now - b.at) * rate);
        b.at = now;
      }
      if (b.tokens < 1) wait = Math.max(wait, rate > 0 ? (1 - b.tokens) / rate : Number.POSITIVE_INFINITY);
      else if (hit === undefined) hit = b;
      else (hits ??= []).push(b);
    }
    if (wait > 0) return Number.isFinite(wait) ? Math.max(1, Math.ceil(wait / 1000)) : 3600;
    if (hit !== undefined) hit.tokens -= 1;
    if (hits) for (const b of hits) b.tokens -= 1;
    return 0;
  }
}

/** The bucket a request falls in for a rule ('' for the shared one), or undefined when the rule does not apply to it. */
function clientKey(rule: CompiledRateLimit['rules'][number], header: (name: string) => string | undefined, address: string): string | undefined {
  if (rule.selectors.length === 0) return '';
  let key = '';
  for (const sel of rule.selectors) {
    for (const h of sel.headers) {
      const v = header(h.name);
      if (h.type === 'Distinct') {
        if (v === undefined) return undefined;
        key += `\u0000h:${v}`;
        continue;
      }
      const match = v !== undefined && (h.type === 'Exact' ? v === h.value : h.re!.matches(v));
      if (match === h.invert) return undefined;
    }
    if (sel.cidr) {
      const a = addrBytes(address);
      if (!a || !cidrHas(sel.cidr.cidr, a)) return undefined;
      if (sel.cidr.type === 'Distinct') key += `\u0000a:${address}`;
    }
  }
  return key;
}

/** Everything the engine keeps, by backend Service target ('ns/name:port') and rate-limit scope. */
export class Resilience {
  private readonly circuits = new Map<string, CircuitState>();
  private readonly outliers = new Map<string, OutlierState>();
  readonly limiter = new RateLimiter();

  circuit(key: string): CircuitState {
    let c = this.circuits.get(key);
    if (!c) this.circuits.set(key, (c = new CircuitState()));
    return c;
  }

  outlier(key: string): OutlierState {
    let o = this.outliers.get(key);
    if (!o) this.outliers.set(key, (o = new OutlierState()));
    return o;
  }

  /** Requests waiting for a connection by destination Service ('ns/name'), for the gauge. */
  pendingCounts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [key, c] of this.circuits) {
      const svc = key.slice(0, key.lastIndexOf(':'));
      out.set(svc, (out.get(svc) ?? 0) + c.pending);
    }
    return out;
  }

  /** Ejected endpoints by destination Service ('ns/name'), for the gauge. */
  ejectedCounts(now: number): Map<string, number> {
    const out = new Map<string, number>();
    for (const [key, o] of this.outliers) {
      o.ejected(now);
      const svc = key.slice(0, key.lastIndexOf(':'));
      out.set(svc, (out.get(svc) ?? 0) + o.size);
    }
    return out;
  }
}
