/**
 * The waypoint's Prometheus metrics (prom-client, one registry per waypoint). Labels are
 * bounded by the configuration: routes, Services and workloads known to it (anything
 * else is 'unknown'), status codes.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface RequestLabels {
  /** 'ns/name' of the route, '' when no route applied (passthrough), 'none' when none matched. */
  route: string;
  /** 'ns/name' of the destination Service ('unknown' when there is none). */
  destination: string;
  code: number;
  /** 'ns/workload' of the calling Pod, or 'unknown'. */
  source: string;
}

interface Children {
  requests: Counter.Internal;
  duration: Histogram.Internal<string>;
  reqBytes: Counter.Internal;
  resBytes: Counter.Internal;
}

export class WaypointMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'route' | 'destination_service' | 'response_code' | 'source_workload'>;
  private readonly duration: Histogram<'route' | 'destination_service'>;
  private readonly requestBytes: Counter<'route' | 'destination_service'>;
  private readonly responseBytes: Counter<'route' | 'destination_service'>;
  readonly denied: Counter<'policy' | 'destination_service'>;
  readonly upstreamErrors: Counter<'destination_service' | 'kind'>;
  readonly downstreamErrors: Counter<'kind'>;
  readonly retries: Counter<'destination_service'>;
  readonly mirrored: Counter<'destination_service' | 'result'>;
  readonly configReloads: Counter<'result'>;
  readonly configGeneration: Gauge;
  readonly configProblems: Gauge;
  readonly connections: Gauge<'kind'>;
  readonly activeRequests: Gauge;
  private readonly cache = new Map<string, Children>();

  constructor(opts: { defaultMetrics?: boolean; upstreamConnections?: () => number } = {}) {
    const r = this.registry;
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: r, prefix: 'kernway_waypoint_' });
    this.requests = new Counter({ name: 'kernway_waypoint_requests_total', help: 'HTTP requests handled, by route, destination Service, response code and calling workload', labelNames: ['route', 'destination_service', 'response_code', 'source_workload'], registers: [r] });
    this.duration = new Histogram({ name: 'kernway_waypoint_request_duration_seconds', help: 'Time from the request\'s arrival to the end of the response', labelNames: ['route', 'destination_service'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [r] });
    this.requestBytes = new Counter({ name: 'kernway_waypoint_request_body_bytes_total', help: 'Request body bytes received from callers', labelNames: ['route', 'destination_service'], registers: [r] });
    this.responseBytes = new Counter({ name: 'kernway_waypoint_response_body_bytes_total', help: 'Response body bytes sent to callers', labelNames: ['route', 'destination_service'], registers: [r] });
    this.denied = new Counter({ name: 'kernway_waypoint_authz_denied_total', help: 'Requests refused (403) by an AuthorizationPolicy', labelNames: ['policy', 'destination_service'], registers: [r] });
    this.upstreamErrors = new Counter({ name: 'kernway_waypoint_upstream_errors_total', help: 'Failed exchanges with backends, by kind (connect, reset, protocol, timeout)', labelNames: ['destination_service', 'kind'], registers: [r] });
    this.downstreamErrors = new Counter({ name: 'kernway_waypoint_downstream_errors_total', help: 'Connections or requests refused before routing (bad_request, header_too_large, header_timeout, proxy_protocol...)', labelNames: ['kind'], registers: [r] });
    this.retries = new Counter({ name: 'kernway_waypoint_retries_total', help: 'Requests sent again to a backend', labelNames: ['destination_service'], registers: [r] });
    this.mirrored = new Counter({ name: 'kernway_waypoint_mirrored_requests_total', help: 'Mirrored requests, by result (sent, failed, dropped)', labelNames: ['destination_service', 'result'], registers: [r] });
    this.configReloads = new Counter({ name: 'kernway_waypoint_config_reloads_total', help: 'Configuration changes applied', labelNames: ['result'], registers: [r] });
    this.configGeneration = new Gauge({ name: 'kernway_waypoint_config_generation', help: 'Generation of the configuration in force', registers: [r] });
    this.configProblems = new Gauge({ name: 'kernway_waypoint_config_problems', help: 'Problems found in the manifests (see kernway routes)', registers: [r] });
    this.connections = new Gauge({ name: 'kernway_waypoint_downstream_connections', help: 'Open connections from callers, by kind (gateway, mesh)', labelNames: ['kind'], registers: [r] });
    this.activeRequests = new Gauge({ name: 'kernway_waypoint_active_requests', help: 'Requests in progress', registers: [r] });
    const upstream = opts.upstreamConnections;
    if (upstream) {
      new Gauge({ name: 'kernway_waypoint_upstream_connections', help: 'Open connections to backends (pooled HTTP/1.1 and h2c sessions)', registers: [r], collect() { this.set(upstream()); } });
    }
  }

  /** Record one finished request. */
  observe(l: RequestLabels, seconds: number, requestBodyBytes: number, responseBodyBytes: number): void {
    const key = `${l.route}\u0000${l.destination}\u0000${l.code}\u0000${l.source}`;
    let c = this.cache.get(key);
    if (!c) {
      if (this.cache.size > 50_000) this.cache.clear();
      c = {
        requests: this.requests.labels(l.route, l.destination, String(l.code), l.source),
        duration: this.duration.labels(l.route, l.destination),
        reqBytes: this.requestBytes.labels(l.route, l.destination),
        resBytes: this.responseBytes.labels(l.route, l.destination),
      };
      this.cache.set(key, c);
    }
    c.requests.inc();
    c.duration.observe(seconds);
    if (requestBodyBytes > 0) c.reqBytes.inc(requestBodyBytes);
    if (responseBodyBytes > 0) c.resBytes.inc(responseBodyBytes);
  }

  /** Forget series of routes and Services that no longer exist (after a configuration change). */
  reset(): void {
    this.cache.clear();
  }
}
