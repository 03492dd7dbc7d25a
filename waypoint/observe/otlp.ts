/**
 * Traces: one span per request, exported over OTLP HTTP/protobuf (--otlp-endpoint) with
 * @opentelemetry/exporter-trace-otlp-proto through the SDK's BatchSpanProcessor (batches,
 * a bounded queue that drops when full, never blocks a request).
 *
 * The span is the waypoint's hop: its trace and span ids are the ones the waypoint
 * already puts in the traceparent it sends to the backend (observe/trace.ts), so the
 * backend's spans are its children. Sampling is parent-based: a traceparent that says
 * sampled (flag 01) is exported, one that says not sampled is not, and a new trace is
 * sampled with the --trace-sampling ratio (by its trace id, as TraceIdRatioBased does),
 * the decision sent on in the traceparent's flags.
 *
 * Off (no --otlp-endpoint): nothing is created; the request path pays one undefined check.
 */
import { SpanKind, SpanStatusCode, TraceFlags, type Attributes, type HrTime, type SpanContext } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import type { TraceContext } from './trace.js';

export interface TracingOptions {
  /** OTLP/HTTP traces URL (http://collector:4318/v1/traces); a bare host:port URL gets /v1/traces. */
  endpoint: string;
  /** Share of new traces sampled, 0 to 1. */
  sampleRatio: number;
  /** resource service.name (default 'kernway-waypoint'). */
  serviceName?: string;
  /** resource attributes added (k8s.namespace.name...). */
  resource?: Record<string, string>;
  /** Spans waiting for export at most (default 2048: more are dropped). */
  maxQueueSize?: number;
  /** Spans per OTLP request at most (default 512). */
  maxBatchSize?: number;
  /** Time between exports (default 1000 ms). */
  delayMs?: number;
}

export interface FinishedRequest {
  trace: TraceContext;
  method: string;
  path: string;
  /** 'ns/name' of the route, '' or 'none'. */
  route: string;
  status: number;
  protocol: string;
  destination: string;
  upstream: string | undefined;
  source: string;
  /** performance.now() at arrival, and the duration in ms. */
  start: number;
  durationMs: number;
  userAgent: string | undefined;
}

/** A new trace's sampling decision from its trace id: the lower 8 bytes below ratio x 2^64 (TraceIdRatioBased's rule). */
export function ratioSampler(ratio: number): (traceId: string) => boolean {
  if (ratio >= 1) return () => true;
  if (ratio <= 0) return () => false;
  const bound = BigInt(Math.floor(ratio * 2 ** 53)) << 11n;
  return (traceId) => BigInt(`0x${traceId.slice(16)}`) < bound;
}

export function tracesUrl(endpoint: string): string {
  const u = new URL(endpoint);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/traces';
  return u.toString();
}

function hrTime(ms: number): HrTime {
  const s = Math.floor(ms / 1000);
  return [s, Math.round((ms - s * 1000) * 1e6)];
}

const SCOPE = { name: 'kernway-waypoint' };

export class RequestTracer {
  /** For continueTrace: the decision for a trace the waypoint starts. */
  readonly sampleNew: (traceId: string) => boolean;
  /** Spans handed to the processor. */
  ended = 0;
  private readonly processor: BatchSpanProcessor;
  private readonly resource;

  constructor(opts: TracingOptions) {
    this.sampleNew = ratioSampler(opts.sampleRatio);
    const exporter = new OTLPTraceExporter({ url: tracesUrl(opts.endpoint) });
    this.processor = new BatchSpanProcessor({
      exporter,
      maxQueueSize: opts.maxQueueSize ?? 2048, maxExportBatchSize: opts.maxBatchSize ?? 512, scheduledDelayMillis: opts.delayMs ?? 1000,
    });
    this.resource = resourceFromAttributes({ 'service.name': opts.serviceName ?? 'kernway-waypoint', ...(opts.resource ?? {}) });
  }

  /** One finished request: a span when its trace is sampled. */
  finish(r: FinishedRequest): void {
    const t = r.trace;
    if ((parseInt(t.flags, 16) & 1) === 0) return;
    const startMs = performance.timeOrigin + r.start;
    const ctx: SpanContext = { traceId: t.traceId, spanId: t.spanId, traceFlags: TraceFlags.SAMPLED, isRemote: false };
    const attributes: Attributes = {
      'http.request.method': r.method, 'url.path': r.path, 'http.response.status_code': r.status, 'network.protocol.version': r.protocol.replace(/^HTTP\//, ''),
      'kernway.route': r.route, 'kernway.destination_service': r.destination, 'kernway.source_workload': r.source,
    };
    if (r.upstream !== undefined) attributes['server.address'] = r.upstream;
    if (r.userAgent !== undefined) attributes['user_agent.original'] = r.userAgent;
    if (r.route !== '' && r.route !== 'none') attributes['http.route'] = r.route;
    const span: ReadableSpan = {
      name: r.route !== '' && r.route !== 'none' ? `${r.method} ${r.route}` : r.method,
      kind: SpanKind.SERVER,
      spanContext: () => ctx,
      ...(t.parentId !== undefined ? { parentSpanContext: { traceId: t.traceId, spanId: t.parentId, traceFlags: TraceFlags.SAMPLED, isRemote: true } } : {}),
      startTime: hrTime(startMs),
      endTime: hrTime(startMs + r.durationMs),
      duration: hrTime(r.durationMs),
      status: r.status >= 500 ? { code: SpanStatusCode.ERROR } : { code: SpanStatusCode.UNSET },
      attributes, links: [], events: [], ended: true,
      resource: this.resource, instrumentationScope: SCOPE,
      droppedAttributesCount: 0, droppedEventsCount: 0, droppedLinksCount: 0,
    };
    this.ended++;
    this.processor.onEnd(span);
  }

  /** Exports what is queued now. */
  flush(): Promise<void> {
    return this.processor.forceFlush();
  }

  /** Exports what is queued, then stops. */
  shutdown(): Promise<void> {
    return this.processor.shutdown();
  }
}
