/** The agent's metrics registry and its HTTP server, over real TCP on loopback. */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentMetrics } from '../../../agent/metrics/registry.js';
import { MetricsServer } from '../../../agent/metrics/server.js';

const servers: MetricsServer[] = [];
afterEach(async () => { for (const s of servers.splice(0)) await s.close(); });

async function serve(metrics: AgentMetrics, health?: () => true | string): Promise<{ s: MetricsServer; base: string }> {
  const s = new MetricsServer({ host: '127.0.0.1', port: 0, metrics, health });
  servers.push(s);
  const { port } = await s.listen();
  return { s, base: `http://127.0.0.1:${port}` };
}

async function get(url: string, method = 'GET'): Promise<{ status: number; body: string; type: string | null }> {
  const r = await fetch(url, { method });
  return { status: r.status, body: await r.text(), type: r.headers.get('content-type') };
}

describe('AgentMetrics', () => {
  it('has its own registry with the agent metrics (not the global registry)', async () => {
    const a = new AgentMetrics({ defaultMetrics: false });
    const b = new AgentMetrics({ defaultMetrics: false });
    a.manifestProblems.set(3);
    a.reconcileDuration.observe({ trigger: 'change' }, 0.004);
    const text = await a.text();
    expect(text).toMatch(/^kernway_manifest_problems 3$/m);
    expect(text).toMatch(/^kernway_reconcile_duration_seconds_bucket\{le="0.005",trigger="change"\} 1$/m);
    expect(text).toMatch(/^kernway_reconcile_duration_seconds_count\{trigger="change"\} 1$/m);
    expect(await b.text()).toMatch(/^kernway_manifest_problems 0$/m);
    const { register } = await import('prom-client');
    expect(register.getSingleMetric('kernway_manifest_problems')).toBeUndefined();
  });

  it('reads gauges and counters at scrape time', async () => {
    const m = new AgentMetrics({ defaultMetrics: false });
    let entries = 5;
    let reads = 0;
    m.gaugeAtScrape({ name: 'kernway_bpf_map_entries', help: 'entries in use', labelNames: ['map'], read: () => { reads++; return [{ labels: { map: 'kw_svc' }, value: entries }, { labels: { map: 'kw_backend' }, value: 50 }]; } });
    m.counterAtScrape({ name: 'kernway_lb_connections_total', help: 'balanced', labelNames: ['service'], read: async () => [{ labels: { service: 'default/web' }, value: 1234 }] });
    m.gaugeAtScrape({ name: 'kernway_thing_ratio', help: 'no labels', read: () => [{ value: 0.5 }] });
    expect(reads).toBe(0);
    let text = await m.text();
    expect(reads).toBe(1);
    expect(text).toMatch(/^kernway_bpf_map_entries\{map="kw_svc"\} 5$/m);
    expect(text).toMatch(/^kernway_bpf_map_entries\{map="kw_backend"\} 50$/m);
    expect(text).toMatch(/^kernway_lb_connections_total\{service="default\/web"\} 1234$/m);
    expect(text).toMatch(/^kernway_thing_ratio 0.5$/m);
    entries = 7;
    text = await m.text();
    expect(text).toMatch(/^kernway_bpf_map_entries\{map="kw_svc"\} 7$/m);
  });

  it('a failing reader leaves its metric out of the scrape and counts the failure; the rest is served', async () => {
    const m = new AgentMetrics({ defaultMetrics: false });
    m.gaugeAtScrape({ name: 'kernway_broken_entries', help: 'x', labelNames: ['map'], read: () => { throw new Error('map gone'); } });
    m.gaugeAtScrape({ name: 'kernway_fine_entries', help: 'x', read: () => [{ value: 1 }] });
    const text = await m.text();
    expect(text).not.toMatch(/^kernway_broken_entries\{/m);
    expect(text).toMatch(/^kernway_fine_entries 1$/m);
    // The failure is counted as it happens, so it shows from the next scrape on.
    expect(await m.text()).toMatch(/^kernway_metrics_collect_errors_total\{metric="kernway_broken_entries"\} 2$/m);
  });

  it('a reader giving a label its metric does not declare fails that metric alone (as prom-client would refuse it)', async () => {
    const m = new AgentMetrics({ defaultMetrics: false });
    m.counterAtScrape({ name: 'kw_test_odd_total', help: 'h', labelNames: ['service'], read: () => [{ labels: { service: 'a', pod: 'b' } as never, value: 1 }] });
    m.gaugeAtScrape({ name: 'kw_test_fine', help: 'h', labelNames: ['map'], read: async () => [{ labels: { map: 'kw_svc' }, value: 2 }] });
    const text = await m.text();
    expect(text).not.toMatch(/^kw_test_odd_total\{/m);
    expect(text).toMatch(/^kw_test_fine\{map="kw_svc"\} 2$/m);
    expect(await m.text()).toMatch(/^kernway_metrics_collect_errors_total\{metric="kw_test_odd_total"\} 2$/m);
  });

  it('renders read-at-scrape metrics exactly as prom-client does (escapes, special values)', async () => {
    const { Gauge, Registry } = await import('prom-client');
    const odd = ['a"b', 'c\\d', 'e\nf', 'plain'];
    const values = [1.5, Infinity, -Infinity, NaN];
    const m = new AgentMetrics({ defaultMetrics: false });
    m.gaugeAtScrape({ name: 'kw_test_odd', help: 'help with \\ and \n inside', labelNames: ['v', 'w'], read: () => odd.map((v, i) => ({ labels: { v, w: i }, value: values[i]! })) });
    const ref = new Registry();
    const g = new Gauge({ name: 'kw_test_odd', help: 'help with \\ and \n inside', labelNames: ['v', 'w'], registers: [ref] });
    odd.forEach((v, i) => g.set({ v, w: i }, values[i]!));
    const ours = (await m.text()).split('\n\n').find((b) => b.includes('kw_test_odd'));
    expect(ours?.trim()).toBe((await ref.metrics()).trim());
  });

  it('shows a known label set at 0 before anything is counted', async () => {
    const m = new AgentMetrics({ defaultMetrics: false });
    m.counterAtScrape({ name: 'kw_test_refused_total', help: 'h', labelNames: ['service'],
      read: () => [{ labels: { service: 'demo/echo' }, value: 0 }, { labels: { service: 'demo/web' }, value: 3 }] });
    const text = await m.text();
    expect(text).toContain('kw_test_refused_total{service="demo/echo"} 0');
    expect(text).toContain('kw_test_refused_total{service="demo/web"} 3');
  });

  it('refuses bad names', () => {
    const m = new AgentMetrics({ defaultMetrics: false });
    expect(() => m.gaugeAtScrape({ name: 'bad-name', help: 'x', read: () => [] })).toThrow(/metric name/);
    expect(() => m.counterAtScrape({ name: 'kernway_conns', help: 'x', read: () => [] })).toThrow(/_total/);
  });

  it('includes the Node.js process metrics by default', async () => {
    expect(await new AgentMetrics().text()).toMatch(/^process_resident_memory_bytes \d+/m);
  });
});

describe('MetricsServer', () => {
  it('serves /metrics, /healthz and /readyz', async () => {
    const m = new AgentMetrics({ defaultMetrics: false });
    m.manifestProblems.set(2);
    let healthy: true | string = true;
    const { s, base } = await serve(m, () => healthy);
    const metrics = await get(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.type).toMatch(/^text\/plain; version=0.0.4/);
    expect(metrics.body).toMatch(/^kernway_manifest_problems 2$/m);

    expect(await get(`${base}/healthz`)).toMatchObject({ status: 200, body: 'ok\n' });
    healthy = 'event loop stuck';
    expect(await get(`${base}/healthz`)).toMatchObject({ status: 503, body: 'unhealthy: event loop stuck\n' });

    expect(await get(`${base}/readyz`)).toMatchObject({ status: 503, body: 'not ready: starting\n' });
    s.setReady(true);
    expect(await get(`${base}/readyz`)).toMatchObject({ status: 200, body: 'ready\n' });
    s.setReady(false, 'reconcile failed: map full');
    expect(await get(`${base}/readyz`)).toMatchObject({ status: 503, body: 'not ready: reconcile failed: map full\n' });

    expect((await get(`${base}/nope`)).status).toBe(404);
    expect((await get(`${base}/metrics`, 'POST')).status).toBe(405);
    expect((await get(`${base}/readyz?verbose=1`)).status).toBe(503);
  });

  it('binds the address given, nothing else', async () => {
    const { s } = await serve(new AgentMetrics({ defaultMetrics: false }));
    expect(s.address().host).toBe('127.0.0.1');
  });

  it('an address in use is a clear error naming the option', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const s = new MetricsServer({ host: '127.0.0.1', port, metrics: new AgentMetrics({ defaultMetrics: false }) });
      await expect(s.listen()).rejects.toMatchObject({ code: 'KW_METRICS_LISTEN', message: `cannot serve metrics on 127.0.0.1:${port} (--metrics-address): the address is in use` });
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });

  it('calls afterScrape once the /metrics responses under way are done, not for probes', async () => {
    const m = new AgentMetrics({ defaultMetrics: false });
    let calls = 0;
    let inFlight = -1;
    const s = new MetricsServer({ host: '127.0.0.1', port: 0, metrics: m, afterScrape: () => { calls++; inFlight = (s as unknown as { scrapes: number }).scrapes; } });
    servers.push(s);
    const base = `http://127.0.0.1:${(await s.listen()).port}`;
    const waitFor = async (n: number): Promise<void> => {
      for (let i = 0; i < 500 && calls < n; i++) await new Promise((r) => setImmediate(r));
      expect(calls).toBeGreaterThanOrEqual(n);
    };
    expect((await get(`${base}/metrics`)).status).toBe(200);
    await waitFor(1);
    expect(inFlight).toBe(0);
    await get(`${base}/healthz`);
    await get(`${base}/readyz`);
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    expect(calls).toBe(1);
    // Two at once: called when no response is under way (once, or twice if the first ended before the second began).
    const both = await Promise.all([get(`${base}/metrics`), get(`${base}/metrics`)]);
    expect(both.map((r) => r.status)).toEqual([200, 200]);
    await waitFor(2);
    expect(calls).toBeLessThanOrEqual(3);
    expect(inFlight).toBe(0);
    const before = calls;
    // A hook that throws is logged, not a failed scrape.
    const bad = new MetricsServer({ host: '127.0.0.1', port: 0, metrics: m, afterScrape: () => { calls++; throw new Error('boom'); } });
    servers.push(bad);
    const badBase = `http://127.0.0.1:${(await bad.listen()).port}`;
    expect((await get(`${badBase}/metrics`)).status).toBe(200);
    await waitFor(before + 1);
    expect((await get(`${badBase}/metrics`)).status).toBe(200);
  });

  it('a family read from a table kept for the scrape (inParts) is written in parts, other work running between them; the same text; given up, its samples are let go', async () => {
    const N = 20_000;
    // The samples are read slowly (each 500th waits 1 ms), so the family takes >= 40 ms whatever the machine.
    let turns = 0;
    let running = true;
    const tick = (): void => { turns++; if (running) setImmediate(tick); };
    const seen: number[] = [];
    let returned = 0;
    const samples = (): Iterable<{ labels: { service: string }; value: number }> => ({
      [Symbol.iterator]: () => {
        let i = 0;
        return {
          next: () => {
            if (i >= N) return { done: true, value: undefined };
            if (i % 500 === 0) { seen.push(turns); const t = performance.now(); while (performance.now() - t < 1) { /* a slow read */ } }
            const v = { labels: { service: `ns/svc-${i}` }, value: i };
            i++;
            return { done: false, value: v };
          },
          return: () => { returned++; return { done: true, value: undefined }; },
        };
      },
    });
    const parts = new AgentMetrics({ defaultMetrics: false });
    parts.counterAtScrape({ name: 'kw_test_parts_total', help: 'h', labelNames: ['service'], inParts: true, read: samples });
    const whole = new AgentMetrics({ defaultMetrics: false });
    whole.counterAtScrape({ name: 'kw_test_parts_total', help: 'h', labelNames: ['service'], read: samples });
    const { base } = await serve(parts);
    setImmediate(tick);
    const body = (await get(`${base}/metrics`)).body;
    running = false;
    // The event loop took turns while the family was being written (a watch event would have run), not only after it.
    expect(seen[seen.length - 1]! - seen[0]!).toBeGreaterThan(3);
    expect(body).toBe(await whole.text());
    expect(body.match(/^kw_test_parts_total\{/gm)).toHaveLength(N);
    // A client gone half-way: the render stops and its samples are returned (a held table released).
    const before = returned;
    const { s: _s, base: base2 } = await serve(parts);
    const ctl = new AbortController();
    const gone = fetch(`${base2}/metrics`, { signal: ctl.signal }).then((r) => r.text()).catch(() => 'aborted');
    for (let i = 0; seen.length < 50 + 40 && i < 2000; i++) await new Promise((r) => setTimeout(r, 1));
    ctl.abort();
    expect(await gone).toBe('aborted');
    for (let i = 0; returned === before && i < 2000; i++) await new Promise((r) => setTimeout(r, 2));
    expect(returned).toBe(before + 1);
  });

  it('refuses a bad port at the door', () => {
    expect(() => new MetricsServer({ host: '127.0.0.1', port: 70000, metrics: new AgentMetrics({ defaultMetrics: false }) })).toThrow(/--metrics-address/);
  });
});
