/**
 * The agent's /metrics written in chunks (common/metrics-text.ts): the per-Service families
 * read at scrape time are written as the reader gives its samples (one object may be
 * given again and again), byte for byte as prom-client renders the same values; a reader
 * that fails half-way leaves none of its lines; over HTTP the text comes chunked and
 * several scrapes in a row give the same text.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Counter, Gauge, Registry } from 'prom-client';
import { CHUNK_BYTES } from '../../../common/metrics-text.js';
import { AgentMetrics } from '../../../agent/metrics/registry.js';
import { MetricsServer } from '../../../agent/metrics/server.js';

const SERVICES = Array.from({ length: 10_000 }, (_, i) => (i % 997 === 0 ? `ns-${i}/we"ird\\na\nme` : i % 501 === 0 ? `ns-${i}/ünï` : `ns-${i % 50}/svc-${i}`));
const balanced = (i: number): number => (i % 7 === 0 ? 0 : i * 1_000_003);
const entries = (i: number): number => (i % 3 === 0 ? 0.5 * i : i % 11 === 0 ? -i : i);

function* reused(which: (i: number) => number): Iterable<{ labels: { service: string }; value: number }> {
  const s = { labels: { service: '' }, value: 0 };
  for (let i = 0; i < SERVICES.length; i++) { s.labels.service = SERVICES[i]!; s.value = which(i); yield s; }
}

function agent(): AgentMetrics {
  const m = new AgentMetrics({ defaultMetrics: false });
  m.counterAtScrape({ name: 'kw_test_balanced_total', help: 'per Service \\ with "quotes"', labelNames: ['service'], read: () => reused(balanced) });
  m.gaugeAtScrape({ name: 'kw_test_entries', help: 'h', labelNames: ['service'], read: async () => reused(entries) });
  m.gaugeAtScrape({ name: 'kw_test_plain', help: 'h', read: () => [{ value: 7 }] });
  m.manifestProblems.set(2);
  m.reconcileDuration.observe({ trigger: 'start' }, 0.3);
  return m;
}

/** What prom-client renders for the same values: its own Counter and Gauges, then the agent's registry. */
async function reference(m: AgentMetrics): Promise<string> {
  const ref = new Registry();
  const c = new Counter({ name: 'kw_test_balanced_total', help: 'per Service \\ with "quotes"', labelNames: ['service'], registers: [ref] });
  const g = new Gauge({ name: 'kw_test_entries', help: 'h', labelNames: ['service'], registers: [ref] });
  const p = new Gauge({ name: 'kw_test_plain', help: 'h', registers: [ref] });
  SERVICES.forEach((s, i) => { c.inc({ service: s }, balanced(i)); g.set({ service: s }, entries(i)); });
  p.set(7);
  return `${await ref.metrics()}\n${await m.registry.metrics()}`;
}

const servers: MetricsServer[] = [];
afterEach(async () => { for (const s of servers.splice(0)) await s.close(); });

describe('the agent\'s /metrics text', () => {
  it('equals prom-client\'s rendering of the same values (10,000 Services, escapes, zeros, fractions, negatives)', async () => {
    const m = agent();
    const ours = await m.text();
    expect(ours.length).toBeGreaterThan(4 * CHUNK_BYTES);
    expect(ours).toBe(await reference(m));
  });

  it('a reader that fails half-way leaves none of its lines, and is counted in the same scrape', async () => {
    const m = new AgentMetrics({ defaultMetrics: false });
    m.gaugeAtScrape({ name: 'kw_test_half', help: 'h', labelNames: ['service'], read: function* () {
      let n = 0;
      for (const s of reused(entries)) { if (++n > 5000) throw new Error('map gone'); yield s; }
    } });
    m.gaugeAtScrape({ name: 'kw_test_fine', help: 'h', read: () => [{ value: 1 }] });
    const text = await m.text();
    expect(text).not.toMatch(/^(# [A-Z]+ )?kw_test_half/m);
    expect(text).toMatch(/^kw_test_fine 1$/m);
    expect(text).toMatch(/^kernway_metrics_collect_errors_total\{metric="kw_test_half"\} 1$/m);
  });

  it('a small family that fails after a few samples is taken back within the chunk; the families around it stay whole', async () => {
    const m = new AgentMetrics({ defaultMetrics: false });
    m.gaugeAtScrape({ name: 'kw_test_before', help: 'h', read: () => [{ value: 1 }] });
    m.gaugeAtScrape({ name: 'kw_test_short', help: 'h', labelNames: ['service'], read: function* () {
      yield { labels: { service: 'a' }, value: 1 };
      yield { labels: { service: 'b' }, value: 2 };
      throw new Error('gone');
    } });
    m.gaugeAtScrape({ name: 'kw_test_after', help: 'h', read: () => [{ value: 3 }] });
    const text = await m.text();
    expect(text.startsWith('# HELP kw_test_before h\n# TYPE kw_test_before gauge\nkw_test_before 1\n\n# HELP kw_test_after h\n# TYPE kw_test_after gauge\nkw_test_after 3\n\n')).toBe(true);
    expect(text).not.toMatch(/^(# [A-Z]+ )?kw_test_short/m);
  });

  it('is served chunked over HTTP; scrapes in a row give the same text; HEAD has no body', async () => {
    const m = agent();
    const s = new MetricsServer({ host: '127.0.0.1', port: 0, metrics: m });
    servers.push(s);
    const { port } = await s.listen();
    const ref = await reference(m);
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(r.status).toBe(200);
      expect(r.headers.get('transfer-encoding')).toBe('chunked');
      expect(r.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(await r.text()).toBe(ref);
    }
    const h = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'HEAD' });
    expect(h.status).toBe(200);
    expect(await h.text()).toBe('');
  });
});
