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
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { escapeLabelValue, metricsTextOf, registryText, type TextChunks } from '../../common/metrics-text.js';

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
  /** The labels as exposition text (`reporter="waypoint",...`), made at the first scrape. */
  labelText: string | undefined;
  constructor(readonly key: string, readonly labels: Record<string, string>) {}
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

/** `,le="b"} ` for each bound, then `,le="+Inf"} `: the tail of a bucket line's labels. */
function leTexts(bounds: readonly number[]): string[] {
  return [...bounds.map((b) => `,le="${b}"} `), ',le="+Inf"} '];
}

/** A histogram's lines for one label set (`labels` already text), as prom-client writes them; counts beyond the last bound are only in +Inf (the count). */
function writeHistogram(w: TextChunks, name: string, labels: string, le: readonly string[], counts: Float64Array, sum: number, count: number): void {
  let acc = 0;
  const bounds = le.length - 1;
  for (let i = 0; i < bounds; i++) {
    acc += counts[i]!;
    w.text(name); w.text('_bucket{'); w.text(labels); w.text(le[i]!); w.value(acc); w.text('\n');
  }
  w.text(name); w.text('_bucket{'); w.text(labels); w.text(le[bounds]!); w.value(count); w.text('\n');
  w.text(name); w.text('_sum{'); w.text(labels); w.text('} '); w.value(sum); w.text('\n');
  w.text(name); w.text('_count{'); w.text(labels); w.text('} '); w.value(count); w.text('\n');
}

function labelsText(labels: Record<string, string>): string {
  let out = '';
  for (const k in labels) out += `${out === '' ? '' : ','}${k}="${escapeLabelValue(labels[k]!)}"`;
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
const DURATION_LE = leTexts(DURATION_BUCKETS);
const ISTIO_DURATION_LE = leTexts(ISTIO_DURATION_MS_BUCKETS);
const ISTIO_BYTES_LE = leTexts(ISTIO_BYTES_BUCKETS);

interface RequestCount {
  code: string; source: string; n: number;
  /** `,response_code="…",source_workload="…"} `, made at the first scrape. */
  labelText?: string;
}

/** Plain numbers for one route and destination: what a request adds to, rendered at scrape time. */
class RouteCell {
  readonly buckets = new Float64Array(DURATION_BUCKETS.length + 1);
  sum = 0;
  count = 0;
  requestBytes = 0;
  responseBytes = 0;
  /** Requests by status code, then calling workload (no key string is built per request). */
  readonly requests = new Map<number, Map<string, RequestCount>>();
  /** `route="…",destination_service="…"`, made at the first scrape. */
  labelText: string | undefined;
  constructor(readonly route: string, readonly destination: string) {}

  *counts(): Iterable<RequestCount> {
    for (const bySource of this.requests.values()) yield* bySource.values();
  }

  text(): string {
    return (this.labelText ??= `route="${escapeLabelValue(this.route)}",destination_service="${escapeLabelValue(this.destination)}"`);
  }
}

/**
 * A worker's cells as plain arrays (--workers: sent to the primary, which adds them up).
 * kernway: [route, destination, duration buckets, sum, count, request bytes, response bytes, [[code, source, n]...]];
 * istio: [key, labels, n, duration buckets, sum, request bytes buckets, sum, response bytes buckets, sum].
 */
export interface CellsExport {
  kernway: Array<[string, string, number[], number, number, number, number, Array<[number, string, number]>]>;
  istio: Array<[string, Record<string, string>, number, number[], number, number[], number, number[], number]>;
}

function addInto(to: Float64Array, from: readonly number[]): void {
  for (let i = 0; i < to.length && i < from.length; i++) to[i]! += from[i]!;
}

/**
 * The request metrics' numbers: one RouteCell per route and destination (kernway names)
 * or one IstioCell per Istio label set. The request path adds to them; /metrics writes
 * their text directly (RequestFamily); with --workers the primary adds the workers' up.
 */
export class RequestCells {
  readonly cells = new Map<string, RouteCell>();
  readonly istio = new Map<string, IstioCell>();

  routeCell(route: string, destination: string): RouteCell {
    const key = `${route}\u0000${destination}`;
    let c = this.cells.get(key);
    if (!c) {
      if (this.cells.size > 50_000) this.cells.clear();
      c = new RouteCell(route, destination);
      this.cells.set(key, c);
    }
    return c;
  }

  /** The cell of an Istio label set (`labels` is used when it is new). */
  istioCell(key: string, labels: Record<string, string>): IstioCell {
    let c = this.istio.get(key);
    if (!c) {
      if (this.istio.size > 50_000) this.istio.clear();
      c = new IstioCell(key, labels);
      this.istio.set(key, c);
    }
    return c;
  }

  export(): CellsExport {
    const kernway: CellsExport['kernway'] = [];
    for (const c of this.cells.values()) {
      const counts: Array<[number, string, number]> = [];
      for (const [code, bySource] of c.requests) for (const q of bySource.values()) counts.push([code, q.source, q.n]);
      kernway.push([c.route, c.destination, Array.from(c.buckets), c.sum, c.count, c.requestBytes, c.responseBytes, counts]);
    }
    const istio: CellsExport['istio'] = [];
    for (const c of this.istio.values()) {
      istio.push([c.key, c.labels, c.n, Array.from(c.duration), c.durationSum, Array.from(c.reqBytes), c.reqBytesSum, Array.from(c.resBytes), c.resBytesSum]);
    }
    return { kernway, istio };
  }

  /** Add another process's cells to these (same route and destination, or same Istio labels: one series). */
  add(e: CellsExport): void {
    for (const [route, destination, buckets, sum, count, reqBytes, resBytes, counts] of e.kernway) {
      const c = this.routeCell(route, destination);
      addInto(c.buckets, buckets);
      c.sum += sum;
      c.count += count;
      c.requestBytes += reqBytes;
      c.responseBytes += resBytes;
      for (const [code, source, n] of counts) {
        let bySource = c.requests.get(code);
        if (bySource === undefined) c.requests.set(code, (bySource = new Map()));
        const q = bySource.get(source);
        if (q) q.n += n;
        else bySource.set(source, { code: String(code), source, n });
      }
    }
    for (const [key, labels, n, duration, durationSum, reqBytes, reqBytesSum, resBytes, resBytesSum] of e.istio) {
      const c = this.istioCell(key, labels);
      c.n += n;
      addInto(c.duration, duration);
      c.durationSum += durationSum;
      addInto(c.reqBytes, reqBytes);
      c.reqBytesSum += reqBytesSum;
      addInto(c.resBytes, resBytes);
      c.resBytesSum += resBytesSum;
    }
  }

  /** The families these cells show, in the order they are registered (kernway's four, or Istio's four). */
  families(names: MetricsNames): RequestFamily[] {
    const routes = (): Iterable<RouteCell> => this.cells.values();
    const istio = (): Iterable<IstioCell> => this.istio.values();
    if (names === 'istio') {
      return [
        new RequestFamily('istio_requests_total', 'Requests handled (Istio standard metric, reported by the kernway waypoint)', 'counter',
          () => [...istio()].map((c) => ({ labels: c.labels, value: c.n })),
          function* (w) { for (const c of istio()) { w.text('istio_requests_total{'); w.text(istioText(c)); w.text('} '); w.value(c.n); w.text('\n'); yield; } }),
        istioHistogram('istio_request_duration_milliseconds', 'Request duration in milliseconds (Istio standard metric)', istio, ISTIO_DURATION_MS_BUCKETS, ISTIO_DURATION_LE,
          (c) => [c.duration, c.durationSum]),
        istioHistogram('istio_request_bytes', 'Request body sizes in bytes (Istio standard metric)', istio, ISTIO_BYTES_BUCKETS, ISTIO_BYTES_LE, (c) => [c.reqBytes, c.reqBytesSum]),
        istioHistogram('istio_response_bytes', 'Response body sizes in bytes (Istio standard metric)', istio, ISTIO_BYTES_BUCKETS, ISTIO_BYTES_LE, (c) => [c.resBytes, c.resBytesSum]),
      ];
    }
    const DUR = 'kernway_waypoint_request_duration_seconds';
    return [
      new RequestFamily('kernway_waypoint_requests_total', 'HTTP requests handled, by route, destination Service, response code and calling workload', 'counter',
        () => [...routes()].flatMap((c) => [...c.counts()].map((q) => ({ labels: { route: c.route, destination_service: c.destination, response_code: q.code, source_workload: q.source }, value: q.n }))),
        function* (w) {
          for (const c of routes()) {
            const labels = c.text();
            for (const q of c.counts()) {
              w.text('kernway_waypoint_requests_total{'); w.text(labels);
              w.text(q.labelText ??= `,response_code="${escapeLabelValue(q.code)}",source_workload="${escapeLabelValue(q.source)}"} `);
              w.value(q.n); w.text('\n');
            }
            yield;
          }
        }),
      new RequestFamily(DUR, 'Time from the request\'s arrival to the end of the response', 'histogram',
        () => [...routes()].flatMap((c) => {
          const labels = { route: c.route, destination_service: c.destination };
          const out: CellValue[] = [];
          let acc = 0;
          for (let i = 0; i < DURATION_BUCKETS.length; i++) {
            acc += c.buckets[i]!;
            out.push({ metricName: `${DUR}_bucket`, labels: { ...labels, le: DURATION_BUCKETS[i]! }, value: acc });
          }
          out.push({ metricName: `${DUR}_bucket`, labels: { ...labels, le: '+Inf' }, value: c.count });
          out.push({ metricName: `${DUR}_sum`, labels, value: c.sum });
          out.push({ metricName: `${DUR}_count`, labels, value: c.count });
          return out;
        }),
        function* (w) {
          for (const c of routes()) { writeHistogram(w, DUR, c.text(), DURATION_LE, c.buckets, c.sum, c.count); yield; }
        }),
      bytesFamily('kernway_waypoint_request_body_bytes_total', 'Request body bytes received from callers', routes, (c) => c.requestBytes),
      bytesFamily('kernway_waypoint_response_body_bytes_total', 'Response body bytes sent to callers', routes, (c) => c.responseBytes),
    ];
  }
}

function istioText(c: IstioCell): string {
  return (c.labelText ??= labelsText(c.labels));
}

function istioHistogram(name: string, help: string, cells: () => Iterable<IstioCell>, bounds: readonly number[], le: readonly string[],
  of: (c: IstioCell) => [Float64Array, number]): RequestFamily {
  return new RequestFamily(name, help, 'histogram',
    () => [...cells()].flatMap((c) => { const [counts, sum] = of(c); return histogramValues(name, c.labels, bounds, counts, sum, c.n); }),
    function* (w) { for (const c of cells()) { const [counts, sum] = of(c); writeHistogram(w, name, istioText(c), le, counts, sum, c.n); yield; } });
}

function bytesFamily(name: string, help: string, cells: () => Iterable<RouteCell>, of: (c: RouteCell) => number): RequestFamily {
  return new RequestFamily(name, help, 'counter',
    () => [...cells()].filter((c) => of(c) > 0).map((c) => ({ labels: { route: c.route, destination_service: c.destination }, value: of(c) })),
    function* (w) {
      for (const c of cells()) {
        const v = of(c);
        if (v > 0) { w.text(name); w.text('{'); w.text(c.text()); w.text('} '); w.value(v); w.text('\n'); }
        yield;
      }
    });
}

/**
 * One family of request metrics in prom-client's registry, its values the cells' numbers
 * read when /metrics is scraped (the request path only adds to plain numbers; no label
 * hashing, no prom-client call per request). /metrics has it write its own text
 * (writeText: straight into chunks, no object per series); get() gives prom-client the
 * same values as objects (registry.metrics(), getSingleMetricAsString), which is what the
 * text is checked against (test/waypoint/metrics-text.test.ts).
 */
export class RequestFamily {
  readonly aggregator = 'sum' as const;
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'histogram', private readonly values: () => CellValue[],
    private readonly lines: (w: TextChunks) => Iterable<unknown>) {}
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: CellValue[] }> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() });
  }
  *writeText(w: TextChunks): Iterable<unknown> {
    w.family(this.name, this.help, this.type);
    yield* this.lines(w);
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
  /** The request metrics' numbers (what the request path adds to). */
  readonly requestCells = new RequestCells();
  /** Cells by compiled backend (RequestLabels.via): one lookup by object per request. */
  private cellByBackend = new WeakMap<object, RouteCell>();

  readonly names: MetricsNames;
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
    for (const f of this.requestCells.families(this.names)) r.registerMetric(f as never);
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

  /**
   * The exposition text of /metrics, written into `w` (common/metrics-text.ts): the
   * registry's families in order, prom-client rendering the ordinary ones and the request
   * families writing their own lines. The same text as `registry.metrics()`.
   */
  render(w: TextChunks): AsyncIterable<unknown> {
    return registryText(this.registry, w);
  }

  /** The text of render() as one string (tests; /metrics streams it instead). */
  text(): Promise<string> {
    return metricsTextOf((w) => this.render(w));
  }

  /**
   * What a worker sends the primary (--workers): the ordinary metrics as prom-client's
   * JSON (added up with AggregatorRegistry), the request cells as plain arrays (added up
   * cell by cell; prom-client's JSON would be an object per series).
   */
  async forPrimary(): Promise<{ json: MetricObjectWithValues<MetricValue<string>>[]; cells: CellsExport }> {
    const ordinary = this.registry.getMetricsAsArray().filter((m) => !(m instanceof RequestFamily));
    return { json: await Promise.all(ordinary.map((m) => (m as unknown as Metric).get())), cells: this.requestCells.export() };
  }

  /** An idle compaction ran for `ms`. */
  idleCompacted(ms: number): void {
    this.idleCompactions.inc();
    this.idleCompactionSeconds.inc(ms / 1000);
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
    if (this.names === 'istio') for (const c of this.requestCells.istio.values()) n += c.n;
    else for (const c of this.requestCells.cells.values()) n += c.count;
    return n;
  }

  /** Record one finished request. */
  observe(l: RequestLabels, seconds: number, requestBodyBytes: number, responseBodyBytes: number): void {
    if (this.names === 'istio') return this.observeIstio(l, seconds, requestBodyBytes, responseBodyBytes);
    let c = l.via !== undefined ? this.cellByBackend.get(l.via) : undefined;
    if (c === undefined || c.route !== l.route || c.destination !== l.destination) {
      if (this.requestCells.cells.size > 50_000) this.cellByBackend = new WeakMap();
      c = this.requestCells.routeCell(l.route, l.destination);
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
    const c = this.requestCells.istio.get(key) ?? this.requestCells.istioCell(key, this.istioLabels(l));
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
