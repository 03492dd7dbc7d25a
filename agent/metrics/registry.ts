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
import { Counter, Gauge, Histogram, Registry, collectProcessMetrics, type LabelValues } from './prom.js';
import { KernwayError, errorMessage } from '../../common/errors.js';
import { escapeHelp, metricsTextOf, registryText, type TextChunks } from '../../common/metrics-text.js';
import type { Logger } from '../../common/log.js';

export interface Sample<L extends string = string> { labels?: LabelValues<L>; value: number }

export interface ScrapeMetric<L extends string = string> {
  /** With its unit (_seconds, _bytes, _total...). */
  name: string;
  help: string;
  /** Bounded label sets only (a map, a service, a reason: never an address or a connection). */
  labelNames?: readonly L[];
  /**
   * Called at each scrape. The samples are written as they come (nothing of them is
   * kept): a reader may yield one object again and again with new labels and value.
   */
  read: (scrape: number) => Iterable<Sample<L>> | Promise<Iterable<Sample<L>>>;
  /**
   * The samples stay valid across event-loop turns (read from a table kept for the scrape,
   * not from live structures): the family is written in parts of INPARTS_SAMPLES samples and
   * other work (a watch event, a reconcile) runs between them, instead of waiting for a
   * family of 10,000 Services to be written whole.
   */
  inParts?: boolean;
}

/** Samples per part of a family written in parts (ScrapeMetric.inParts). */
export const INPARTS_SAMPLES = 1000;

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
    if (opts.defaultMetrics !== false) this.processMetrics();
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

  /**
   * prom-client's Node.js process metrics (collectDefaultMetrics' series) with
   * process_cpu_* read here from process.cpuUsage() (CPU since the process started): its
   * own collector loads @opentelemetry/api (agent/metrics/prom.ts).
   */
  private processMetrics(): void {
    collectProcessMetrics(this.registry);
    const cpu = (help: string, name: string, of: (u: NodeJS.CpuUsage) => number): void => {
      this.counterAtScrape({ name, help, read: () => [{ value: of(process.cpuUsage()) / 1e6 }] });
    };
    cpu('Total user CPU time spent in seconds.', 'process_cpu_user_seconds_total', (u) => u.user);
    cpu('Total system CPU time spent in seconds.', 'process_cpu_system_seconds_total', (u) => u.system);
    cpu('Total user and system CPU time spent in seconds.', 'process_cpu_seconds_total', (u) => u.user + u.system);
  }

  /** A gauge whose samples are read at each scrape (replacing the previous ones). */
  gaugeAtScrape<L extends string>(m: ScrapeMetric<L>): void {
    check(m);
    this.addScraped(new ScrapedMetric(m, 'gauge'));
  }

  /**
   * A counter whose totals are read at each scrape (from a kernel counter that only goes
   * up; a restart of the counter source shows as a reset, as Prometheus expects).
   */
  counterAtScrape<L extends string>(m: ScrapeMetric<L>): void {
    check(m);
    if (!m.name.endsWith('_total')) throw new KernwayError('KW_INVALID_ARGUMENT', `counter ${m.name}: a counter's name ends in _total`);
    this.addScraped(new ScrapedMetric(m, 'counter'));
  }

  /**
   * The exposition text (what /metrics serves), written into `w` in chunks
   * (common/metrics-text.ts: no string of the whole text, no object per sample): first the
   * metrics read at scrape time, each written aside and kept only if its reader completes
   * (a reader's failure is counted in this scrape's kernway_metrics_collect_errors_total),
   * then prom-client's registry.
   */
  async *render(w: TextChunks): AsyncGenerator<unknown> {
    if (this.registry.contentType !== Registry.PROMETHEUS_CONTENT_TYPE) throw new KernwayError('KW_INVALID_ARGUMENT', 'metrics: only the Prometheus text format is served');
    const scrape = ++this.scrapes;
    for (const m of this.scraped) {
      const samples = await this.read(m, scrape);
      if (samples) {
        w.tentative();
        try {
          for (const _ of m.write(w, samples)) yield;
          w.commit();
        } catch (e) {
          w.rollback();
          this.failed(m.name, e);
        }
      }
      yield;
    }
    yield* registryText(this.registry, w);
  }

  /** The text of render() as one string (tests, `kernway` commands; /metrics streams it). */
  text(): Promise<string> {
    return metricsTextOf((w) => this.render(w));
  }

  private readonly scraped: Array<ScrapedMetric<string>> = [];
  /** Renders started: each scrape's number, passed to the readers (one read of a shared table per scrape). */
  private scrapes = 0;

  private addScraped(m: ScrapedMetric<string>): void {
    if (this.registry.getSingleMetric(m.name) || this.scraped.some((x) => x.name === m.name)) {
      throw new KernwayError('KW_INVALID_ARGUMENT', `metric ${m.name}: already registered`);
    }
    this.scraped.push(m);
  }

  /** @internal A metric's samples, read now; undefined when its reader failed (counted and logged). */
  async read<T>(m: { name: string; read: (scrape: number) => T | Promise<T> }, scrape: number): Promise<T | undefined> {
    try {
      return await m.read(scrape);
    } catch (e) {
      this.failed(m.name, e);
      return undefined;
    }
  }

  private failed(metric: string, e: unknown): void {
    this.collectErrors.inc({ metric });
    this.log?.warn({ metric, err: errorMessage(e) }, 'metrics: reading a metric at scrape time failed; left out of this scrape');
  }
}

/**
 * A metric read at scrape time and written by AgentMetrics.render() itself, in prom-client's
 * text format, straight into chunks as the reader gives its samples. prom-client's own
 * Counter/Gauge would hash every label set into a map on each scrape and keep it between
 * scrapes, and its renderer allocates several objects per sample: with 10,000 Services
 * (20,000 samples of kernway_lb_connections_*), most of a scrape's CPU and garbage.
 */
class ScrapedMetric<L extends string> {
  readonly name: string;
  private readonly head: string;
  private readonly labelNames: readonly string[];
  constructor(private readonly m: ScrapeMetric<L>, readonly type: 'counter' | 'gauge') {
    this.name = m.name;
    this.head = `# HELP ${m.name} ${escapeHelp(m.help)}\n# TYPE ${m.name} ${type}\n`;
    this.labelNames = m.labelNames ?? [];
  }

  /** Called at each scrape (through AgentMetrics.read, which counts a failure). */
  read(scrape: number): Iterable<Sample<L>> | Promise<Iterable<Sample<L>>> {
    return this.m.read(scrape);
  }

  /**
   * The family, as the samples come (a failure half-way throws: the caller takes the family
   * back); in one step, or with `inParts` a step per INPARTS_SAMPLES samples (the caller
   * yields to the event loop between them). Given up half-way, the samples are let go.
   */
  *write(w: TextChunks, samples: Iterable<Sample<L>>): Generator<void> {
    w.startFamily();
    w.text(this.head);
    const part = this.m.inParts === true ? INPARTS_SAMPLES : Infinity;
    const it = samples[Symbol.iterator]();
    try {
      while (this.lines(w, it, part)) yield;
    } finally {
      it.return?.();
    }
  }

  /**
   * Up to `max` samples of `read` (true: more may follow). A label not in labelNames fails
   * the read (as prom-client's inc/set would refuse it).
   */
  private lines(w: TextChunks, read: Iterator<Sample<L>>, max: number): boolean {
    for (let n = 0; n < max; n++) {
      const r = read.next();
      if (r.done) return false;
      const s = r.value;
      // A counter's known label set with nothing counted yet still shows 0 (rate() needs the series from the start).
      if (this.type === 'counter' && !(s.value >= 0)) continue;
      w.text(this.name);
      if (s.labels) {
        let first = true;
        for (const k in s.labels) {
          const v = (s.labels as Record<string, string | number | undefined>)[k];
          if (!this.labelNames.includes(k)) throw new KernwayError('KW_INVALID_ARGUMENT', `metric ${this.name}: label ${k} is not one of its labelNames`);
          if (v === undefined) continue;
          w.text(first ? '{' : ',');
          w.text(k);
          w.text('="');
          if (typeof v === 'string') w.label(v);
          else w.text(`${v}`);
          w.text('"');
          first = false;
        }
        if (!first) w.text('}');
      }
      w.text(' ');
      w.value(s.value);
      w.text('\n');
    }
    return true;
  }
}

function check(m: ScrapeMetric<string>): void {
  if (!METRIC_NAME.test(m.name)) throw new KernwayError('KW_INVALID_ARGUMENT', `metric name ${JSON.stringify(m.name)}: letters, digits, _ and : only`);
  if (typeof m.read !== 'function') throw new KernwayError('KW_INVALID_ARGUMENT', `metric ${m.name}: read must be a function`);
  for (const l of m.labelNames ?? []) if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(l) || l.startsWith('__')) throw new KernwayError('KW_INVALID_ARGUMENT', `metric ${m.name}: label name ${JSON.stringify(l)} is not a Prometheus label name`);
}
