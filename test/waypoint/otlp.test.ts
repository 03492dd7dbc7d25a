/**
 * Traces over OTLP HTTP/protobuf: the waypoint exports one span per request to a receiver
 * started here, which decodes the protobuf (the OTLP trace schema, with protobufjs). The
 * span carries the ids the backend saw in its traceparent (so the backend's spans are its
 * children), the caller's span as parent, Istio-like attributes; a traceparent that says
 * "not sampled" exports nothing; spans arrive in batches.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWaypointArgs } from '../../waypoint/options.js';
import { ratioSampler, tracesUrl } from '../../waypoint/observe/otlp.js';
import { continueTrace } from '../../waypoint/observe/trace.js';
import { cartRoutesManifests, meshRequest, startRig, type Reply, type Rig } from './fixtures/rig.js';

const OCTET = 99;

/** The part of opentelemetry-proto's trace schema (v1) the test reads. */
const PROTO = `
syntax = "proto3";
package otlp;
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
message InstrumentationScope { string name = 1; string version = 2; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4; string name = 5; int32 kind = 6;
  fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8; repeated KeyValue attributes = 9; Status status = 15;
}
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue { oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; } }
`;
const Request = protobuf.parse(PROTO).root.lookupType('otlp.ExportTraceServiceRequest');

interface DecodedSpan { traceId: string; spanId: string; parentSpanId: string; name: string; kind: number; start: bigint; end: bigint; attributes: Record<string, unknown>; status: number; resource: Record<string, unknown> }

let rig: Rig;
let receiver: http.Server;
const posts: Array<{ contentType: string | undefined; path: string; spans: number }> = [];
const spans: DecodedSpan[] = [];

function attrs(list: Array<{ key: string; value: Record<string, unknown> }> | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, Object.values(kv.value)[0]]));
}

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const msg = Request.toObject(Request.decode(Buffer.concat(chunks)), { longs: String, bytes: Buffer, defaults: false }) as {
        resourceSpans?: Array<{ resource?: { attributes?: Array<{ key: string; value: Record<string, unknown> }> }; scopeSpans?: Array<{ spans?: Array<Record<string, unknown>> }> }>;
      };
      let n = 0;
      for (const rs of msg.resourceSpans ?? []) {
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            n++;
            spans.push({
              traceId: (s.traceId as Buffer).toString('hex'), spanId: (s.spanId as Buffer).toString('hex'),
              parentSpanId: s.parentSpanId ? (s.parentSpanId as Buffer).toString('hex') : '', name: s.name as string, kind: s.kind as number,
              start: BigInt(s.startTimeUnixNano as string), end: BigInt(s.endTimeUnixNano as string),
              attributes: attrs(s.attributes as never), status: (s.status as { code?: number } | undefined)?.code ?? 0, resource: attrs(rs.resource?.attributes),
            });
          }
        }
      }
      posts.push({ contentType: req.headers['content-type'], path: req.url ?? '', spans: n });
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as AddressInfo).port;
  rig = await startRig({
    octet: OCTET, namespace: 'shop', backends: { cart: 1 }, manifests: (a) => cartRoutesManifests(a),
    extraArgs: ['--otlp-endpoint', `http://127.0.0.1:${port}`, '--trace-sampling', '1'],
  });
}, 30_000);

afterAll(async () => {
  await rig?.close();
  await new Promise((r) => receiver?.close(r));
});

const mesh = (path: string, headers: Record<string, string> = {}): Promise<Reply> => meshRequest(rig, rig.a.caller(0), path, { headers });

function backendTraceparent(json: Record<string, unknown> | undefined): string {
  const h = (json?.headers ?? {}) as Record<string, string[] | string>;
  const k = Object.keys(h).find((x) => x.toLowerCase() === 'traceparent')!;
  const v = h[k]!;
  return Array.isArray(v) ? v[0]! : v;
}

async function waitSpans(n: number): Promise<void> {
  for (let i = 0; i < 100 && spans.length < n; i++) await rig.waypoint.tracer!.flush();
}

describe('OTLP traces from the waypoint', () => {
  it('exports a span per sampled request, with the ids the backend saw, its parent, and attributes; in batches', async () => {
    const trace = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const parent = '1122334455667788';
    const r1 = await mesh('/items/1', { traceparent: `00-${trace}-${parent}-01` });
    expect(r1.status).toBe(200);
    const seen = backendTraceparent(r1.json);
    expect(seen).toMatch(new RegExp(`^00-${trace}-[0-9a-f]{16}-01$`));
    // Not sampled by the caller: nothing exported, and the backend is told so.
    const r2 = await mesh('/items/2', { traceparent: `00-${'b'.repeat(32)}-${parent}-00` });
    expect(backendTraceparent(r2.json)).toMatch(/-00$/);
    // No traceparent: a new trace, sampled at ratio 1.
    const more = [];
    for (let i = 0; i < 20; i++) more.push(mesh(`/items/x${i}`));
    const replies = await Promise.all(more);
    await waitSpans(21);
    expect(spans).toHaveLength(21);
    expect(posts.every((p) => p.contentType === 'application/x-protobuf' && p.path === '/v1/traces')).toBe(true);
    expect(posts.length).toBeLessThan(21); // batched
    const s = spans.find((x) => x.traceId === trace)!;
    expect(s).toBeDefined();
    expect(s.spanId).toBe(seen.split('-')[2]);
    expect(s.parentSpanId).toBe(parent);
    expect(s.name).toBe('GET shop/cart-routes');
    expect(s.kind).toBe(2); // SERVER
    expect(s.end > s.start).toBe(true);
    expect(Number(s.end - s.start)).toBeLessThan(10e9);
    expect(s.attributes).toMatchObject({
      'http.request.method': 'GET', 'url.path': '/items/1', 'http.response.status_code': expect.anything(), 'http.route': 'shop/cart-routes',
      'kernway.destination_service': 'shop/cart', 'kernway.source_workload': 'web/web',
    });
    expect(Number(s.attributes['http.response.status_code'])).toBe(200);
    expect(s.resource).toMatchObject({ 'service.name': 'kernway-waypoint', 'k8s.namespace.name': 'shop' });
    expect(spans.some((x) => x.traceId === 'b'.repeat(32))).toBe(false);
    // The new traces' spans are roots with the ids their backends saw.
    for (const r of replies) {
      const [, t, id] = backendTraceparent(r.json).split('-');
      const x = spans.find((y) => y.traceId === t)!;
      expect(x.spanId).toBe(id);
      expect(x.parentSpanId).toBe('');
    }
  });

  it('a 404 without a route is a span too; a 5xx is an error span', async () => {
    const before = spans.length;
    expect((await mesh('/nope')).status).toBe(404);
    await waitSpans(before + 1);
    const s = spans.at(-1)!;
    expect(Number(s.attributes['http.response.status_code'])).toBe(404);
    expect(s.status).toBe(0);
  });
});

describe('sampling and options', () => {
  it('samples new traces by trace id at the ratio (TraceIdRatioBased), and says so in the traceparent', () => {
    const half = ratioSampler(0.25);
    let n = 0;
    for (let i = 0; i < 20_000; i++) if (half(continueTrace(undefined).traceId)) n++;
    expect(n / 20_000).toBeGreaterThan(0.23);
    expect(n / 20_000).toBeLessThan(0.27);
    expect(continueTrace(undefined, ratioSampler(0)).header).toMatch(/-00$/);
    expect(continueTrace(undefined, ratioSampler(1)).header).toMatch(/-01$/);
    // Parent-based: the caller's decision stands whatever the ratio.
    expect(continueTrace(`00-${'c'.repeat(32)}-${'d'.repeat(16)}-01`, ratioSampler(0)).flags).toBe('01');
    expect(continueTrace(`00-${'c'.repeat(32)}-${'d'.repeat(16)}-00`, ratioSampler(1)).flags).toBe('00');
  });

  it('off unless --otlp-endpoint; bad values are refused naming the option', () => {
    const base = ['--namespace', 'ns', '--manifests', '/tmp'];
    expect(parseWaypointArgs(base).waypoint.tracing).toBeUndefined();
    expect(parseWaypointArgs([...base, '--otlp-endpoint', 'http://c:4318']).waypoint.tracing).toEqual({ endpoint: 'http://c:4318', sampleRatio: 0.01 });
    expect(tracesUrl('http://c:4318')).toBe('http://c:4318/v1/traces');
    expect(tracesUrl('http://c:4318/custom/path')).toBe('http://c:4318/custom/path');
    expect(() => parseWaypointArgs([...base, '--otlp-endpoint', 'c:4318'])).toThrow(/--otlp-endpoint: expected an http:\/\/ or https:\/\/ URL/);
    expect(() => parseWaypointArgs([...base, '--otlp-endpoint', 'http://c:4318', '--trace-sampling', '1.5'])).toThrow(/--trace-sampling: expected a ratio from 0 to 1/);
    expect(() => parseWaypointArgs([...base, '--trace-sampling', '0.5'])).toThrow(/--trace-sampling: expected to come with --otlp-endpoint/);
  });
});
