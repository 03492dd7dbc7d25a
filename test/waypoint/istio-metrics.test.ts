/**
 * --metrics-names istio: the waypoint's request metrics under Istio's standard names and
 * labels (istio_requests_total, istio_request_duration_milliseconds, istio_request_bytes,
 * istio_response_bytes; reporter "waypoint"), so Istio dashboards and Kiali's graph read
 * them unchanged. kernway's names stay the default.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWaypointArgs } from '../../waypoint/options.js';
import { cartRoutesManifests, meshRequest, startRig, type Reply, type Rig } from './fixtures/rig.js';

const OCTET = 97;
let rig: Rig;
beforeAll(async () => {
  rig = await startRig({ octet: OCTET, namespace: 'shop', backends: { cart: 1 }, manifests: (a) => cartRoutesManifests(a), extraArgs: ['--metrics-names', 'istio'] });
}, 30_000);
afterAll(async () => { await rig?.close(); });

const mesh = (from: string, path: string): Promise<Reply> => meshRequest(rig, from, path);

function sample(text: string, name: string, match: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const labels = Object.fromEntries([...line.slice(name.length + 1, line.lastIndexOf('}')).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(match).every(([k, v]) => labels[k] === v)) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('--metrics-names istio', () => {
  it("counts requests as istio_requests_total with Istio's labels, durations in ms and body sizes as histograms", async () => {
    for (let i = 0; i < 3; i++) expect((await mesh(rig.a.caller(0), '/items/1')).status).toBe(200);
    const text = await rig.waypoint.metrics.registry.metrics();
    const labels = {
      reporter: 'waypoint', source_workload: 'web', source_workload_namespace: 'web', source_canonical_service: 'web',
      destination_service: 'cart.shop.svc.cluster.local', destination_service_name: 'cart', destination_service_namespace: 'shop',
      destination_workload: 'cart', destination_workload_namespace: 'shop', destination_canonical_service: 'cart',
      request_protocol: 'http', response_code: '200', response_flags: '-', connection_security_policy: 'none',
    };
    expect(sample(text, 'istio_requests_total', labels)).toBe(3);
    expect(sample(text, 'istio_request_duration_milliseconds_count', labels)).toBe(3);
    const ms = sample(text, 'istio_request_duration_milliseconds_sum', labels)!;
    const bytes = sample(text, 'istio_response_bytes_sum', labels)!;
    expect(sample(text, 'istio_response_bytes_bucket', { ...labels, le: '+Inf' })).toBe(3);
    expect(bytes).toBeGreaterThan(0);
    expect(ms).toBeGreaterThan(0);
    expect(ms / 3).toBeLessThan(10_000);
    expect(sample(text, 'istio_request_bytes_count', labels)).toBe(3);
    // GETs without a body: every request in the first bucket (le 1).
    expect(sample(text, 'istio_request_bytes_sum', labels)).toBe(0);
    expect(sample(text, 'istio_request_bytes_bucket', { ...labels, le: '1' })).toBe(3);
    expect(sample(text, 'istio_response_bytes_count', labels)).toBe(3);
    expect(sample(text, 'istio_response_bytes_sum', labels)).toBeGreaterThan(0);
    // The one set of names asked for: kernway's request metrics are not there too.
    expect(text).not.toMatch(/^kernway_waypoint_requests_total/m);
    // The rest of kernway's own metrics (no Istio equivalent) stay.
    expect(text).toMatch(/^kernway_waypoint_config_generation /m);
  });

  it('an unknown caller and a missing route are labelled as Istio does', async () => {
    expect((await mesh(rig.a.outside, '/nope')).status).toBe(404);
    const text = await rig.waypoint.metrics.registry.metrics();
    expect(sample(text, 'istio_requests_total', { source_workload: 'unknown', source_workload_namespace: 'unknown', response_code: '404' })).toBe(1);
  });

  it("kernway's names are the default; another value is refused, naming the option", () => {
    const base = ['--namespace', 'ns', '--manifests', '/tmp'];
    expect(parseWaypointArgs(base).waypoint.metricsNames).toBe('kernway');
    expect(parseWaypointArgs([...base, '--metrics-names', 'istio']).waypoint.metricsNames).toBe('istio');
    expect(() => parseWaypointArgs([...base, '--metrics-names', 'envoy'])).toThrow(/--metrics-names: expected kernway or istio/);
  });
});
