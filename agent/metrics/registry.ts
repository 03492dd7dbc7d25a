/**
 * The agent's metrics: one prom-client Registry per agent (never the global one), the
 * metrics the agent itself updates, and helpers to register metrics whose values are read
 * at scrape time (BPF counters, map usage), prom-client's collect() style.
 *
 *   const m = new AgentMetrics();
 *   m.reconcileDuration.observe(seconds);
 *   m.manifestProblems.set(snapshot.problems.length);
 *   m.gaugeAtScrape({ name: 'kernway_bpf_map_entries', help: '...', labelNames: ['map'],
 *     read: () => usage.map((u) => ({ labels: { map: u.name }, value: u.entries })) });
 *   m.counterAtScrape({ name: 'kernway_lb_connections_total', help: '...', labelNames: ['service'],
 *     read: async () => (await readServiceCounters()).map((c) => ({ labels: { service: c.service }, value: c.balanced })) });
 *
 * A reader that throws never fails the scrape: its metric is left out of that scrape and
 * kernway_metrics_collect_errors_total{metric} counts it (visible from the next scrape).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';
import { KernwayError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';

export interface Sample<L extends string = string> { labels?: LabelValues<L>; value: number }

export interface ScrapeMetric<L extends string = string> {
  /** With its unit (_seconds, _bytes, _total...). */
  name: string;
  help: string;
  /** Bounded label sets only (a map, a service, a reason: never an address or a connection). */
  labelNames?: readonly L[];
  /** Called at each scrape. */
  read: () => Iterable<Sample<L>> | Promise<Iterable<Sample<L>>>;
}

export interface AgentMetricsOptions {
  /** Node.js process metrics (process_*, nodejs_*): default true. */
  defaultMetrics?: boolean;
  log?: Logger;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

export class AgentMetrics {
  readonly registry = new Registry();
  /** Time to bring the maps in line with a new desired state, by trigger. */
  readonly reconcileDuration: Histogram<'trigger'>;
  /** Reconciles that failed (or installed only part of the state: a full map), by trigger. */
  readonly reconcileFailures: Counter<'trigger'>;
  /** Problems in force in the manifests (files rejected, cross-object problems). */
  readonly manifestProblems: Gauge;
  /** Readers that failed at scrape time, by metric. */
  readonly collectErrors: Counter<'metric'>;
  private readonly log: Logger | undefined;

  constructor(opts: AgentMetricsOptions = {}) {
    this.log = opts.log;
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.reconcileDuration = new Histogram({
      name: 'kernway_reconcile_duration_seconds',
      help: 'Time to bring the BPF maps in line with a new desired state (diff and map writes), by trigger (start, change).',
      labelNames: ['trigger'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    });
    this.reconcileFailures = new Counter({
      name: 'kernway_reconcile_failures_total',
      help: 'Reconciles that failed or installed only part of the desired state (the maps keep the last good state), by trigger (start, change).',
      labelNames: ['trigger'],
      registers: [this.registry],
    });
    this.manifestProblems = new Gauge({
      name: 'kernway_manifest_problems',
      help: 'Problems in force in the manifests: files rejected (their previous content kept) and objects left out.',
      registers: [this.registry],
    });
    this.collectErrors = new Counter({
      name: 'kernway_metrics_collect_errors_total',
      help: 'Scrape-time reads that failed (the metric was left out of that scrape), by metric.',
      labelNames: ['metric'],
      registers: [this.registry],
    });
  }

  /** A gauge whose samples are read at each scrape (replacing the previous ones). */
  gaugeAtScrape<L extends string>(m: ScrapeMetric<L>): Gauge<L> {
    check(m);
    const self = this;
    return new Gauge<L>({
      name: m.name, help: m.help, labelNames: (m.labelNames ?? []) as L[], registers: [this.registry],
      async collect() {
        const samples = await self.read(m);
        this.reset();
        if (samples) for (const s of samples) setSample(this, s);
      },
    });
  }

  /**
   * A counter whose totals are read at each scrape (from a kernel counter that only goes
   * up; a restart of the counter source shows as a reset, as Prometheus expects).
   */
  counterAtScrape<L extends string>(m: ScrapeMetric<L>): Counter<L> {
    check(m);
    if (!m.name.endsWith('_total')) throw new KernwayError('KW_INVALID_ARGUMENT', `counter ${m.name}: a counter's name ends in _total`);
    const self = this;
    return new Counter<L>({
      name: m.name, help: m.help, labelNames: (m.labelNames ?? []) as L[], registers: [this.registry],
      async collect() {
        const samples = await self.read(m);
        this.reset();
        // A known label set with nothing counted yet still shows 0 (rate() needs the series from the start).
        if (samples) for (const s of samples) if (s.value >= 0) (s.labels ? this.inc(s.labels, s.value) : this.inc(s.value));
      },
    });
  }

  /** The exposition text (what /metrics serves). */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  private async read<L extends string>(m: ScrapeMetric<L>): Promise<Iterable<Sample<L>> | undefined> {
    try {
      return await m.read();
    } catch (e) {
      this.collectErrors.inc({ metric: m.name });
      this.log?.warn({ metric: m.name, err: errorMessage(e) }, 'metrics: reading a metric at scrape time failed; left out of this scrape');
      return undefined;
    }
  }
}

function setSample<L extends string>(g: Gauge<L>, s: Sample<L>): void {
  if (s.labels) g.set(s.labels, s.value);
  else g.set(s.value);
}

function check(m: ScrapeMetric<string>): void {
  if (!METRIC_NAME.test(m.name)) throw new KernwayError('KW_INVALID_ARGUMENT', `metric name ${JSON.stringify(m.name)}: letters, digits, _ and : only`);
  if (typeof m.read !== 'function') throw new KernwayError('KW_INVALID_ARGUMENT', `metric ${m.name}: read must be a function`);
}
