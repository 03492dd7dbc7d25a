/**
 * Observability and L7 authorization through the mesh port, on real sockets: request
 * metrics with bounded labels (route, destination Service, code, calling workload),
 * durations and bytes, access logs (pino JSON), W3C traceparent continued or started,
 * /healthz and /readyz; AuthorizationPolicy with the caller taken from the TCP peer
 * (never from the PROXY header), DENY before ALLOW, 403 counted.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WEB_CALLER, cartRoutesManifests, meshRequest, request, startRig, type Reply, type Rig, type RigAddresses, type RigCaller } from './fixtures/rig.js';

const OCTET = 91;
let rig: Rig;
/** Callers: Pod 'web-...' in namespace web (caller(0)), Pod 'batch-...' in namespace jobs (caller(1)). */
const CALLERS: RigCaller[] = [WEB_CALLER, { pod: 'batch-7c9b6d8f5-q2w3e', namespace: 'jobs', app: 'batch', serviceAccount: 'batch' }];
const manifests = (a: RigAddresses, policies = ''): string => cartRoutesManifests(a, { callers: CALLERS, extra: policies });

const ALLOW_WEB_GET = `---
apiVersion: kernway.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-reads, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  action: ALLOW
  rules:
  - from: [{source: {namespaces: [web]}}]
    to: [{operation: {methods: [GET, DELETE], paths: [/items/*]}}]
---
apiVersion: kernway.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-delete, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: [DELETE]}}]
`;

beforeAll(async () => {
  rig = await startRig({ octet: OCTET, namespace: 'shop', backends: { cart: 2 }, manifests: (a) => manifests(a) });
}, 30_000);
afterAll(async () => { await rig?.close(); });

const mesh = (from: string, path: string, extra: Parameters<typeof meshRequest>[3] = {}): Promise<Reply> => meshRequest(rig, from, path, extra);

async function metric(name: string): Promise<string> {
  return rig.waypoint.metrics.registry.getSingleMetricAsString(name);
}

describe('metrics', () => {
  it('counts requests by route, destination Service, code and calling workload', async () => {
    for (let i = 0; i < 3; i++) expect((await mesh(rig.a.caller(0), '/items/1')).status).toBe(200);
    expect((await mesh(rig.a.caller(0), '/nope')).status).toBe(404);
    expect((await mesh(rig.a.outside, '/items/2')).status).toBe(200);
    const m = await metric('kernway_waypoint_requests_total');
    expect(m).toContain('kernway_waypoint_requests_total{route="shop/cart-routes",destination_service="shop/cart",response_code="200",source_workload="web/web"} 3');
    expect(m).toContain('route="none",destination_service="unknown",response_code="404",source_workload="web/web"} 1');
    expect(m).toContain('source_workload="unknown"} 1');
    const d = await metric('kernway_waypoint_request_duration_seconds');
    expect(d).toMatch(/kernway_waypoint_request_duration_seconds_count\{route="shop\/cart-routes",destination_service="shop\/cart"\} 4/);
    const b = await metric('kernway_waypoint_response_body_bytes_total');
    expect(Number(/route="shop\/cart-routes",destination_service="shop\/cart"\} (\d+)/.exec(b)![1])).toBeGreaterThan(400);
  });
  it('serves /metrics, /healthz and /readyz on the admin address', async () => {
    const port = rig.waypoint.adminPort!;
    const m = await request({ address: rig.a.gateway, port, path: '/metrics' });
    expect(m.status).toBe(200);
    expect(m.body).toContain('kernway_waypoint_requests_total');
    expect(m.body).toContain('kernway_waypoint_process_resident_memory_bytes');
    expect((await request({ address: rig.a.gateway, port, path: '/healthz' })).status).toBe(200);
    expect((await request({ address: rig.a.gateway, port, path: '/readyz' })).status).toBe(200);
    const routes = await request({ address: rig.a.gateway, port, path: '/debug/routes' });
    expect(JSON.parse(routes.body)).toMatchObject({ namespace: 'shop', routes: [{ name: 'cart-routes' }] });
  });
});

describe('tracing and access logs', () => {
  it('continues a W3C trace: same trace id, a new parent span for the backend', async () => {
    const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const r = await mesh(rig.a.caller(0), '/items/t', { headers: { traceparent: incoming, tracestate: 'a=b' } });
    const h = (r.json as { headers: Record<string, string[]> }).headers;
    const tp = h.traceparent![0]!;
    expect(tp).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    expect(tp.split('-')[2]).not.toBe('00f067aa0ba902b7');
    expect(h.tracestate).toEqual(['a=b']);
  });
  it('starts a trace when there is none (or it is invalid)', async () => {
    for (const headers of [{}, { traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' }] as Record<string, string>[]) {
      const r = await mesh(rig.a.caller(0), '/items/t2', { headers });
      const tp = (r.json as { headers: Record<string, string[]> }).headers.traceparent![0]!;
      expect(tp).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      expect(tp).not.toContain('00000000000000000000000000000000');
    }
  });
  it('writes one JSON access log line per request', async () => {
    const r = await mesh(rig.a.caller(0), '/items/logged', { headers: { traceparent: '00-11111111111111111111111111111111-2222222222222222-01' } });
    expect(r.status).toBe(200);
    const rec = await vi.waitFor(() => {
      rig.waypoint['accessLog'].flush();
      const lines = readFileSync(rig.accessLogFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const found = lines.find((l) => l.path === '/items/logged');
      if (!found) throw new Error('no access log line for /items/logged yet');
      return found;
    }, { timeout: 10_000, interval: 20 });
    expect(rec).toMatchObject({ msg: 'request', method: 'GET', status: 200, route: 'shop/cart-routes', destination: 'shop/cart', source: 'web/web', traceId: '11111111111111111111111111111111', protocol: 'HTTP/1.1' });
    expect(typeof rec!.durationMs).toBe('number');
    expect(String(rec!.upstream)).toMatch(/:8080$/);
  });
});

describe('authorization', () => {
  beforeAll(async () => { await rig.update(manifests(rig.a, ALLOW_WEB_GET)); });
  afterAll(async () => { await rig.update(manifests(rig.a)); });

  it('allows what an ALLOW rule matches', async () => {
    expect((await mesh(rig.a.caller(0), '/items/1')).status).toBe(200);
  });
  it('refuses other sources, methods and paths with 403, and counts it', async () => {
    expect((await mesh(rig.a.caller(1), '/items/1')).status).toBe(403);
    expect((await mesh(rig.a.caller(0), '/items/1', { method: 'POST' })).status).toBe(403);
    expect((await mesh(rig.a.outside, '/items/1')).status).toBe(403);
    const m = await metric('kernway_waypoint_authz_denied_total');
    expect(m).toMatch(/policy="shop\/web-reads",destination_service="shop\/cart"} 3/);
  });
  it('evaluates DENY before ALLOW', async () => {
    const r = await mesh(rig.a.caller(0), '/items/1', { method: 'DELETE' });
    expect(r.status).toBe(403);
    expect(await metric('kernway_waypoint_authz_denied_total')).toMatch(/policy="shop\/no-delete"/);
  });
  it('takes the caller from the TCP peer, never from the PROXY header', async () => {
    // A jobs Pod claiming (in the PROXY header) to be the web Pod is still the jobs Pod.
    const r = await mesh(rig.a.caller(1), '/items/1', { proxySource: { address: rig.a.caller(0), port: 5555 } });
    expect(r.status).toBe(403);
    const ok = await mesh(rig.a.caller(0), '/items/1', { proxySource: { address: rig.a.caller(1), port: 5555 } });
    expect(ok.status).toBe(200);
  });
});
