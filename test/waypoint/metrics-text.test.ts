/**
 * The waypoint's /metrics text written in chunks (common/metrics-text.ts; the request
 * families write their own lines, no object per series) is byte for byte what prom-client
 * renders for the same values (registry.metrics(), which reads the same cells as objects):
 * kernway and Istio names, label values that need escaping, fractional sums, counts past
 * 2^32. With --workers the primary adds the workers' cells up: the text of the sum is the
 * text of one process that saw every request. Served over HTTP in chunks, HEAD without body.
 */
import { describe, expect, it } from 'vitest';
import { CHUNK_BYTES, TextChunks, metricsTextOf, registryText, valueText } from '../../common/metrics-text.js';
import { AdminServer } from '../../waypoint/admin.js';
import { RequestCells, WaypointMetrics, type MetricsNames, type RequestLabels } from '../../waypoint/observe/metrics.js';

const ODD = ['ns/plain', 'ns/quote"d', 'ns/back\\slash', 'ns/new\nline', 'ns/ünïcødé', ''];

/** A deterministic spread of requests over routes, destinations, codes and callers. */
function requests(n: number, seed = 1): Array<[RequestLabels, number, number, number]> {
  let x = seed;
  // xorshift32: every label value and bucket comes up.
  const rnd = (k: number): number => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) % k; };
  const out: Array<[RequestLabels, number, number, number]> = [];
  // Every odd label value at least once, as route and as caller.
  for (const v of ODD) out.push([{ route: v, destination: 'ns/svc1', code: 200, source: v, upstream: '10.0.0.1:80' }, 0.01, 1, 2]);
  for (let i = 0; i < n; i++) {
    const l: RequestLabels = {
      route: rnd(5) === 0 ? ODD[rnd(ODD.length)]! : `ns/r${rnd(40)}`,
      destination: rnd(7) === 0 ? 'unknown' : `ns/svc${rnd(10)}`,
      code: [200, 200, 200, 404, 503, 429][rnd(6)]!,
      source: rnd(3) === 0 ? ODD[rnd(ODD.length)]! : `ns/caller${rnd(4)}`,
      upstream: `10.0.0.${rnd(5)}:80`,
      flags: rnd(4) === 0 ? 'UO' : undefined,
    };
    // Durations in 1/1024 s: sums are exact whatever order they are added in (the --workers test adds them in another order).
    out.push([l, rnd(40_000) / 1024, rnd(3) === 0 ? 0 : rnd(2_000_000), rnd(5_000_000)]);
  }
  return out;
}

function filled(names: MetricsNames, reqs: Array<[RequestLabels, number, number, number]>): WaypointMetrics {
  const m = new WaypointMetrics({ defaultMetrics: false, names, workloadAt: (ip) => (ip.endsWith('.1') ? 'ns/wl"1' : ip.endsWith('.2') ? 'ns/wl2' : undefined) });
  for (const [l, s, a, b] of reqs) m.observe(l, s, a, b);
  m.denied.inc({ policy: 'ns/deny"x', destination_service: 'ns/svc1' });
  m.connections.inc({ kind: 'mesh' });
  m.configGeneration.set(3);
  m.active = 2;
  return m;
}

describe('the /metrics text written in chunks equals prom-client\'s', () => {
  for (const names of ['kernway', 'istio'] as const) {
    it(`${names} names: every family, escapes and values as registry.metrics() renders them`, async () => {
      const m = filled(names, requests(3000));
      const ours = await m.text();
      const ref = await m.registry.metrics();
      expect(ours.length).toBeGreaterThan(CHUNK_BYTES); // more than one chunk
      expect(ours).toBe(ref);
      expect(ours).toContain('\\"');
      expect(ours).toContain('\\\\');
      expect(ours).toContain('\\n');
    });
  }

  it('counts past 2^32 and fractional sums', async () => {
    const m = new WaypointMetrics({ defaultMetrics: false });
    const l = { route: 'ns/r', destination: 'ns/d', code: 200, source: 'ns/c' };
    m.observe(l, 0.1 + 0.2, 2 ** 40 + 7, 123456789012);
    m.observe(l, 1e-9, 0, 0);
    const ours = await m.text();
    expect(ours).toBe(await m.registry.metrics());
    expect(ours).toContain('kernway_waypoint_request_body_bytes_total{route="ns/r",destination_service="ns/d"} 1099511627783');
  });

  it('TextChunks writes numbers as prom-client does', async () => {
    const values = [0, 1, 9, 10, 99, 100, 12345, 2 ** 32, 2 ** 53, 1e15 - 1, 1e15, 1e21, 1e22, 0.5, 1e-7, -3, -0, NaN, Infinity, -Infinity, 0.1 + 0.2];
    const text = await metricsTextOf(function* (w) { for (const v of values) { w.value(v); w.text('\n'); } yield; });
    expect(text).toBe(values.map((v) => `${valueText(v)}\n`).join(''));
  });

  it('chunks are at most CHUNK_BYTES and join to the same text (multi-byte labels across chunk ends)', async () => {
    const chunks: Buffer[] = [];
    const w = new TextChunks((c) => chunks.push(c));
    const m = filled('kernway', requests(5000, 7));
    for await (const _ of registryText(m.registry, w)) { /* next */ }
    w.flush();
    expect(chunks.length).toBeGreaterThan(3);
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(CHUNK_BYTES);
    expect(Buffer.concat(chunks).toString('utf8')).toBe(await m.registry.metrics());
  });
});

describe('--workers: the primary adds the workers\' cells up', () => {
  for (const names of ['kernway', 'istio'] as const) {
    it(`${names} names: the sum of two workers' cells is the text of one process that saw every request`, async () => {
      const all = requests(2000, 3);
      const one = filled(names, all);
      const w0 = filled(names, all.filter((_, i) => i % 3 === 0));
      const w1 = filled(names, all.filter((_, i) => i % 3 !== 0));
      // Through the IPC's JSON, as the primary gets them.
      const sum = new RequestCells();
      for (const w of [w0, w1]) sum.add(JSON.parse(JSON.stringify((await w.forPrimary()).cells)));
      const render = async (cells: RequestCells): Promise<string> => metricsTextOf(function* (t) { for (const f of cells.families(names)) yield* f.writeText(t); });
      // The same series with the same values; the order of the series is the order the cells were first seen.
      const lines = (t: string): string[] => t.split('\n').sort();
      const summed = await render(sum);
      expect(summed.length).toBeGreaterThan(CHUNK_BYTES);
      expect(lines(summed)).toEqual(lines(await render(one.requestCells)));
      // And the ordinary metrics leave the cells out of the JSON (no object per series over IPC).
      const json = (await w0.forPrimary()).json.map((x) => x.name);
      expect(json).toContain('kernway_waypoint_authz_denied_total');
      expect(json.some((n) => n.startsWith('istio_') || n.startsWith('kernway_waypoint_request'))).toBe(false);
      // Adding the same worker twice doubles every count (a dead worker's cells kept beside its successor's).
      const twice = new RequestCells();
      const e = (await w0.forPrimary()).cells;
      twice.add(e); twice.add(e);
      const n = (t: string, name: string): number => t.split('\n').filter((x) => x.startsWith(`${name}{`)).reduce((a, x) => a + Number(x.slice(x.lastIndexOf(' ') + 1)), 0);
      const total = names === 'istio' ? 'istio_requests_total' : 'kernway_waypoint_requests_total';
      expect(n(await render(twice), total)).toBe(2 * n(await render(w0.requestCells), total));
    });
  }
});

describe('served over HTTP', () => {
  it('GET streams the text chunked; HEAD has none; several scrapes give the same text', async () => {
    const m = filled('kernway', requests(3000, 5));
    const admin = await AdminServer.start({ host: '127.0.0.1', port: 0 }, { metrics: m, readiness: () => ({ ready: true, reason: 'ok' }), status: () => ({}) as never });
    try {
      const url = `http://127.0.0.1:${admin.port}/metrics`;
      const ref = await m.registry.metrics();
      for (let i = 0; i < 3; i++) {
        const r = await fetch(url);
        expect(r.status).toBe(200);
        expect(r.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
        expect(r.headers.get('transfer-encoding')).toBe('chunked');
        expect(await r.text()).toBe(ref);
      }
      const h = await fetch(url, { method: 'HEAD' });
      expect(h.status).toBe(200);
      expect(await h.text()).toBe('');
    } finally {
      await admin.close();
    }
  });
});
