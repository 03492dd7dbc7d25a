/**
 * The waypoint's Prometheus metrics (prom-client, one registry per waypoint). Labels are
 * bounded by the configuration: routes, Services and workloads known to it (anything
 * else is 'unknown'), status codes.
 *
 * With --workers (waypoint/workers.ts) each worker has its registry and the primary adds
 * them up with prom-client's AggregatorRegistry.aggregate: each metric's `aggregator`
 * says how (default sum: counters, histograms, connections, requests in progress,
 * process CPU and memory; 'max' for the configuration gauges: the newest generation, the
 * oldest configuration).
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

interface CellValue { metricName?: string; labels: Record<string, string | number>; value: number }

export interface RequestLabels {
  /** 'ns/name' of the route, '' when no route applied (passthrough), 'none' when none matched. */
  route: string;
  /** 'ns/name' of the destination Service ('unknown' when there is none). */
  destination: string;
  code: number;
  /** 'ns/workload' of the calling Pod, or 'unknown'. */
  source: string;
  /** The backend endpoint last tried ('address:port', '[v6]:port'), for Istio's destination_workload. */
  upstream?: string | undefined;
  /** Envoy response flags (UO, UH, DI, FI, RL, URX), for Istio's response_flags. */
  flags?: string | undefined;
  /**
   * The compiled backend the request went to (route and destination are its rule's and
   * target's): its cell is found by this object, made with the route table, instead of by
   * the label strings.
   */
  via?: object | undefined;
}

/**
 * Which names the request metrics have (--metrics-names): kernway's own (default), or
 * Istio's standard ones (istio_requests_total, istio_request_duration_milliseconds,
 * istio_request_bytes, istio_response_bytes with Istio's labels, reporter "waypoint"),
 * so that Istio dashboards and Kiali's graph read them unchanged.
 */
export type MetricsNames = 'kernway' | 'istio';

/** Istio's default buckets (proxy's stats config): duration in ms, sizes in bytes. */
export const ISTIO_DURATION_MS_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
export const ISTIO_BYTES_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000];

/** One Istio label set: plain numbers, rendered at scrape time. */
class IstioCell {
  n = 0;
  readonly duration = new Float64Array(ISTIO_DURATION_MS_BUCKETS.length);
  durationSum = 0;
  readonly reqBytes = new Float64Array(ISTIO_BYTES_BUCKETS.length);
  reqBytesSum = 0;
  readonly resBytes = new Float64Array(ISTIO_BYTES_BUCKETS.length);
  resBytesSum = 0;
  constructor(readonly labels: Record<string, string>) {}
}

function bucketOf(bounds: readonly number[], v: number): number {
  let i = 0;
  while (i < bounds.length && v > bounds[i]!) i++;
  return i;
}

function histogramValues(name: string, labels: Record<string, string>, bounds: readonly number[], counts: Float64Array, sum: number, count: number): CellValue[] {
  const out: CellValue[] = [];
  let acc = 0;
  bounds.forEach((b, i) => { acc += counts[i]!; out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: b }, value: acc }); });
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: count });
  out.push({ metricName: `${name}_sum`, labels, value: sum });
  out.push({ metricName: `${name}_count`, labels, value: count });
  return out;
}

function splitWorkload(w: string): { namespace: string; name: string } {
  const i = w.indexOf('/');
  return i < 0 ? { namespace: 'unknown', name: w } : { namespace: w.slice(0, i), name: w.slice(i + 1) };
}

/** The address of an endpoint key ('10.0.0.1:80', '[fd00::1]:80'). */
function addressOf(endpoint: string): string {
  const i = endpoint.lastIndexOf(':');
  const a = i < 0 ? endpoint : endpoint.slice(0, i);
  return a.startsWith('[') ? a.slice(1, -1) : a;
}

const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

interface RequestCount { code: string; source: string; n: number }

/** Plain numbers for one route and destination: what a request adds to, rendered at scrape time. */
class RouteCell {
  readonly buckets = new Float64Array(DURATION_BUCKETS.length + 1);
  sum = 0;
  count = 0;
  requestBytes = 0;
  responseBytes = 0;
  /** Requests by status code, then calling workload (no key string is built per request). */
  readonly requests = new Map<number, Map<string, RequestCount>>();
  constructor(readonly route: string, readonly destination: string) {}

  *counts(): Iterable<RequestCount> {
    for (const bySource of this.requests.values()) yield* bySource.values();
  }
}

/**
 * A metric for prom-client's registry whose values are the cells' numbers, read when
 * /metrics is scraped (the request path only adds to plain numbers; no label hashing,
 * no prom-client call per request). Same names, labels and text as prom-client's own.
 */
class CellMetric {
  readonly aggregator = 'sum' as const;
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'histogram', private readonly values: () => CellValue[]) {}
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: CellValue[] }> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() });
  }
  reset(): void { /* cells are kept: counters never go back */ }
}

export class WaypointMetrics {
  readonly registry = new Registry();
  readonly denied: Counter<'policy' | 'destination_service'>;
  readonly upstreamErrors: Counter<'destination_service' | 'kind'>;
  readonly downstreamErrors: Counter<'kind'>;
  readonly retries: Counter<'destination_service'>;
  readonly mirrored: Counter<'destination_service' | 'result'>;
  readonly configReloads: Counter<'result'>;
  readonly configGeneration: Gauge;
  /** When the configuration in force was applied (Unix seconds): its age is time() minus this. */
  readonly configApplied: Gauge;
  readonly configProblems: Gauge;
  readonly connections: Gauge<'kind'>;
  /** BackendTrafficPolicy: circuit breaker overflows (503 UO), by limit; outlier ejections; faults injected; local rate limits (429 RL). */
  readonly overflow: Counter<'destination_service' | 'limit'>;
  readonly outlierEjections: Counter<'destination_service'>;
  readonly faults: Counter<'destination_service' | 'kind'>;
  readonly rateLimited: Counter<'destination_service' | 'policy'>;
  /** Heap compactions run because the waypoint went idle after load (waypoint/idle-memory.ts), and their pauses. */
  private readonly idleCompactions: Counter;
  private readonly idleCompactionSeconds: Counter;
  /** Endpoints ejected now, by destination Service (set by the resilience engine, read at scrape time). */
  ejectedEndpoints: () => Map<string, number> = () => new Map();
  /** Requests waiting for a backend connection (circuit breaker maxConnections), by destination Service. */
  pendingRequests: () => Map<string, number> = () => new Map();
  /** Requests in progress (a plain number, read at scrape time). */
  active = 0;
  private readonly cells = new Map<string, RouteCell>();
  /** Cells by compiled backend (RequestLabels.via): one lookup by object per request. */
  private cellByBackend = new WeakMap<object, RouteCell>();

  readonly names: MetricsNames;
  private readonly istio = new Map<string, IstioCell>();
  private readonly workloadAt: ((ip: string) => string | undefined) | undefined;

  constructor(opts: {
    defaultMetrics?: boolean; upstreamConnections?: () => number;
    /** --metrics-names (default 'kernway'). */
    names?: MetricsNames;
    /** 'ns/workload' of a pod address (Istio's destination_workload), from the configuration. */
    workloadAt?: (ip: string) => string | undefined;
  } = {}) {
    const r = this.registry;
    this.names = opts.names ?? 'kernway';
    this.workloadAt = opts.workloadAt;
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: r, prefix: 'kernway_waypoint_' });
    const cells = (): RouteCell[] => [...this.cells.values()];
    if (this.names === 'istio') this.registerIstio();
    else this.registerKernway(cells);
    this.denied = new Counter({ name: 'kernway_waypoint_authz_denied_total', help: 'Requests refused (403) by an AuthorizationPolicy', labelNames: ['policy', 'destination_service'], registers: [r] });
    this.upstreamErrors = new Counter({ name: 'kernway_waypoint_upstream_errors_total', help: 'Failed exchanges with backends, by kind (connect, reset, protocol, timeout)', labelNames: ['destination_service', 'kind'], registers: [r] });
    this.downstreamErrors = new Counter({ name: 'kernway_waypoint_downstream_errors_total', help: 'Connections or requests refused before routing (bad_request, header_too_large, header_timeout, proxy_protocol...)', labelNames: ['kind'], registers: [r] });
    this.retries = new Counter({ name: 'kernway_waypoint_retries_total', help: 'Requests sent again to a backend', labelNames: ['destination_service'], registers: [r] });
    this.mirrored = new Counter({ name: 'kernway_waypoint_mirrored_requests_total', help: 'Mirrored requests, by result (sent, failed, dropped)', labelNames: ['destination_service', 'result'], registers: [r] });
    this.configReloads = new Counter({ name: 'kernway_waypoint_config_reloads_total', help: 'Configuration changes applied', labelNames: ['result'], registers: [r] });
    this.configGeneration = new Gauge({ name: 'kernway_waypoint_config_generation', help: 'Generation of the configuration in force', registers: [r], aggregator: 'max' });
    this.configApplied = new Gauge({ name: 'kernway_waypoint_config_applied_timestamp_seconds', help: 'When the configuration in force was applied (Unix time, seconds)', registers: [r], aggregator: 'max' });
    this.configProblems = new Gauge({ name: 'kernway_waypoint_config_problems', help: 'Problems found in the manifests (see kernway routes)', registers: [r], aggregator: 'max' });
    this.connections = new Gauge({ name: 'kernway_waypoint_downstream_connections', help: 'Open connections from callers, by kind (gateway, mesh)', labelNames: ['kind'], registers: [r] });
    this.overflow = new Counter({ name: 'kernway_waypoint_overflow_total', help: 'Requests answered 503 at once by a circuit breaker (response flag UO), or retries not sent, by the limit reached', labelNames: ['destination_service', 'limit'], registers: [r] });
    this.outlierEjections = new Counter({ name: 'kernway_waypoint_outlier_ejections_total', help: 'Endpoints ejected by passive health checks (outlier detection)', labelNames: ['destination_service'], registers: [r] });
    this.faults = new Counter({ name: 'kernway_waypoint_faults_injected_total', help: 'Faults injected by a BackendTrafficPolicy, by kind (delay, abort)', labelNames: ['destination_service', 'kind'], registers: [r] });
    this.rateLimited = new Counter({ name: 'kernway_waypoint_rate_limited_total', help: 'Requests refused (429, response flag RL) by a local rate limit', labelNames: ['destination_service', 'policy'], registers: [r] });
    this.idleCompactions = new Counter({ name: 'kernway_waypoint_idle_compactions_total', help: 'Heap compactions run when the waypoint went idle after load (the young generation given back)', registers: [r] });
    this.idleCompactionSeconds = new Counter({ name: 'kernway_waypoint_idle_compaction_seconds_total', help: 'Time the process was paused by those compactions', registers: [r] });
    const self = this;
    new Gauge({
      name: 'kernway_waypoint_outlier_ejected_endpoints', help: 'Endpoints ejected now by outlier detection', labelNames: ['destination_service'], registers: [r],
      collect() { this.reset(); for (const [k, v] of self.ejectedEndpoints()) this.set({ destination_service: k }, v); },
    });
    new Gauge({
      name: 'kernway_waypoint_pending_requests', help: 'Requests waiting for a backend connection (circuit breaker maxConnections reached)', labelNames: ['destination_service'], registers: [r],
      collect() { this.reset(); for (const [k, v] of self.pendingRequests()) this.set({ destination_service: k }, v); },
    });
    new Gauge({ name: 'kernway_waypoint_active_requests', help: 'Requests in progress', registers: [r], collect() { this.set(self.active); } });
    const upstream = opts.upstreamConnections;
    if (upstream) {
      new Gauge({ name: 'kernway_waypoint_upstream_connections', help: 'Open connections to backends (pooled HTTP/1.1 and h2c sessions)', registers: [r], collect() { this.set(upstream()); } });
    }
  }

  /** An idle compaction ran for `ms`. */
  idleCompacted(ms: number): void {
    this.idleCompactions.inc();
    this.idleCompactionSeconds.inc(ms / 1000);
  }

  private registerKernway(cells: () => RouteCell[]): void {
    const r = this.registry;
    r.registerMetric(new CellMetric('kernway_waypoint_requests_total', 'HTTP requests handled, by route, destination Service, response code and calling workload', 'counter',
      () => cells().flatMap((c) => [...c.counts()].map((q) => ({ labels: { route: c.route, destination_service: c.destination, response_code: q.code, source_workload: q.source }, value: q.n })))) as never);
    r.registerMetric(new CellMetric('kernway_waypoint_request_duration_seconds', 'Time from the request\'s arrival to the end of the response', 'histogram', () => cells().flatMap((c) => {
      const labels = { route: c.route, destination_service: c.destination };
      const out: CellValue[] = [];
      let acc = 0;
      for (let i = 0; i < DURATION_BUCKETS.length; i++) {
        acc += c.buckets[i]!;
        out.push({ metricName: 'kernway_waypoint_request_duration_seconds_bucket', labels: { ...labels, le: DURATION_BUCKETS[i]! }, value: acc });
      }
      out.push({ metricName: 'kernway_waypoint_request_duration_seconds_bucket', labels: { ...labels, le: '+Inf' }, value: c.count });
      out.push({ metricName: 'kernway_waypoint_request_duration_seconds_sum', labels, value: c.sum });
      out.push({ metricName: 'kernway_waypoint_request_duration_seconds_count', labels, value: c.count });
      return out;
    })) as never);
    r.registerMetric(new CellMetric('kernway_waypoint_request_body_bytes_total', 'Request body bytes received from callers', 'counter',
      () => cells().filter((c) => c.requestBytes > 0).map((c) => ({ labels: { route: c.route, destination_service: c.destination }, value: c.requestBytes }))) as never);
    r.registerMetric(new CellMetric('kernway_waypoint_response_body_bytes_total', 'Response body bytes sent to callers', 'counter',
      () => cells().filter((c) => c.responseBytes > 0).map((c) => ({ labels: { route: c.route, destination_service: c.destination }, value: c.responseBytes }))) as never);
  }

  private registerIstio(): void {
    const r = this.registry;
    const all = (): IstioCell[] => [...this.istio.values()];
    r.registerMetric(new CellMetric('istio_requests_total', 'Requests handled (Istio standard metric, reported by the kernway waypoint)', 'counter',
      () => all().map((c) => ({ labels: c.labels, value: c.n }))) as never);
    r.registerMetric(new CellMetric('istio_request_duration_milliseconds', 'Request duration in milliseconds (Istio standard metric)', 'histogram',
      () => all().flatMap((c) => histogramValues('istio_request_duration_milliseconds', c.labels, ISTIO_DURATION_MS_BUCKETS, c.duration, c.durationSum, c.n))) as never);
    r.registerMetric(new CellMetric('istio_request_bytes', 'Request body sizes in bytes (Istio standard metric)', 'histogram',
      () => all().flatMap((c) => histogramValues('istio_request_bytes', c.labels, ISTIO_BYTES_BUCKETS, c.reqBytes, c.reqBytesSum, c.n))) as never);
    r.registerMetric(new CellMetric('istio_response_bytes', 'Response body sizes in bytes (Istio standard metric)', 'histogram',
      () => all().flatMap((c) => histogramValues('istio_response_bytes', c.labels, ISTIO_BYTES_BUCKETS, c.resBytes, c.resBytesSum, c.n))) as never);
  }

  /** Istio's labels of a request (reporter "waypoint", as Istio's ambient waypoints report). */
  istioLabels(l: RequestLabels): Record<string, string> {
    const src = splitWorkload(l.source);
    const dstWl = l.upstream !== undefined ? this.workloadAt?.(addressOf(l.upstream)) : undefined;
    const dst = dstWl ? splitWorkload(dstWl) : { namespace: 'unknown', name: 'unknown' };
    const svc = l.destination === 'unknown' ? undefined : splitWorkload(l.destination);
    return {
      reporter: 'waypoint',
      source_workload: src.name, source_workload_namespace: src.namespace,
      source_principal: 'unknown', source_app: src.name, source_version: 'unknown',
      source_canonical_service: src.name, source_canonical_revision: 'latest', source_cluster: 'Kubernetes',
      destination_workload: dst.name, destination_workload_namespace: dst.namespace,
      destination_principal: 'unknown', destination_app: dst.name, destination_version: 'unknown',
      destination_canonical_service: dst.name, destination_canonical_revision: 'latest', destination_cluster: 'Kubernetes',
      destination_service: svc ? `${svc.name}.${svc.namespace}.svc.cluster.local` : 'unknown',
      destination_service_name: svc?.name ?? 'unknown', destination_service_namespace: svc?.namespace ?? 'unknown',
      request_protocol: 'http', response_code: String(l.code), grpc_response_status: '', response_flags: l.flags ?? '-',
      connection_security_policy: 'none',
    };
  }

  /** kernway_waypoint_config_age_seconds, read from `age` at scrape time. */
  onConfigAge(age: () => number): void {
    new Gauge({
      name: 'kernway_waypoint_config_age_seconds', registers: [this.registry], aggregator: 'max', collect() { this.set(age()); },
      help: 'How old the configuration in force may be: 0 while its source says it is current (watched directory, connected agent feed), seconds since the agent was lost otherwise, seconds since start while there is no configuration',
    });
  }

  /** Requests recorded so far (the sum of the request counter's series; --workers shows it per worker). */
  requestsServed(): number {
    let n = 0;
    if (this.names === 'istio') for (const c of this.istio.values()) n += c.n;
    else for (const c of this.cells.values()) n += c.count;
    return n;
  }

  /** Record one finished request. */
  observe(l: RequestLabels, seconds: number, requestBodyBytes: number, responseBodyBytes: number): void {
    if (this.names === 'istio') return this.observeIstio(l, seconds, requestBodyBytes, responseBodyBytes);
    let c = l.via !== undefined ? this.cellByBackend.get(l.via) : undefined;
    if (c === undefined || c.route !== l.route || c.destination !== l.destination) {
      const key = `${l.route}\u0000${l.destination}`;
      c = this.cells.get(key);
      if (!c) {
        if (this.cells.size > 50_000) { this.cells.clear(); this.cellByBackend = new WeakMap(); }
        c = new RouteCell(l.route, l.destination);
        this.cells.set(key, c);
      }
      if (l.via !== undefined) this.cellByBackend.set(l.via, c);
    }
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
    c.buckets[i]!++;
    c.sum += seconds;
    c.count++;
    c.requestBytes += requestBodyBytes;
    c.responseBytes += responseBodyBytes;
    let bySource = c.requests.get(l.code);
    if (bySource === undefined) c.requests.set(l.code, (bySource = new Map()));
    const q = bySource.get(l.source);
    if (q) q.n++;
    else bySource.set(l.source, { code: String(l.code), source: l.source, n: 1 });
  }

  private observeIstio(l: RequestLabels, seconds: number, reqBytes: number, resBytes: number): void {
    const dst = l.upstream !== undefined ? this.workloadAt?.(addressOf(l.upstream)) ?? '' : '';
    const key = `${l.source}\u0000${l.destination}\u0000${dst}\u0000${l.code}${l.flags === undefined ? '' : `\u0000${l.flags}`}`;
    let c = this.istio.get(key);
    if (!c) {
      if (this.istio.size > 50_000) this.istio.clear();
      c = new IstioCell(this.istioLabels(l));
      this.istio.set(key, c);
    }
    const ms = seconds * 1000;
    c.n++;
    const d = bucketOf(ISTIO_DURATION_MS_BUCKETS, ms);
    if (d < c.duration.length) c.duration[d]!++;
    c.durationSum += ms;
    const q = bucketOf(ISTIO_BYTES_BUCKETS, reqBytes);
    if (q < c.reqBytes.length) c.reqBytes[q]!++;
    c.reqBytesSum += reqBytes;
    const p = bucketOf(ISTIO_BYTES_BUCKETS, resBytes);
    if (p < c.resBytes.length) c.resBytes[p]!++;
    c.resBytesSum += resBytes;
  }

  /** After a configuration change. Series stay (counters never go back); the cells are bounded by the configuration's labels. */
  reset(): void {
    /* nothing to forget: see above */
  }
}
