/**
 * `kernway waypoint --workers N` (N > 1): the data path in N processes (node:cluster), as
 * Envoy's `--concurrency` runs N worker threads.
 *
 * - The **primary** keeps what there is one of per waypoint: the configuration source
 *   (the agent's feed or --manifests: one feed connection, one ACK/NACK per version, one
 *   directory watch), the admin port (/metrics, /healthz, /readyz, /debug/routes,
 *   /debug/workers), and the workers: it forks them, hands each the configuration,
 *   restarts one that dies, and drains them all on SIGTERM. It never proxies a byte.
 * - Each **worker** is a whole Waypoint (waypoint.ts) without an admin port: it binds the
 *   mesh port and every Gateway listener itself with SO_REUSEPORT (`reusePort`, Node
 *   22.12+), so the kernel spreads new connections over the workers' sockets, and a
 *   connection stays with the worker that accepted it.
 * - **Configuration**: the primary reads the source once and sends every object change to
 *   every worker, in order, numbered (`seq`), in the agent feed's wire form (the slim
 *   objects as JSON, sources/feed/protocol.ts); each worker builds its own model and
 *   routing table from them, as a waypoint fed by the agent does. A new or restarted
 *   worker gets the whole current state first. A version from the agent is ACKed once
 *   every worker applied it (NACKed with the first refusal). /readyz is ready when every
 *   worker is running, has applied a configuration and bound its listeners, and none is
 *   more than 5 s behind the newest change.
 * - **Metrics**: /metrics asks each worker for its registry (getMetricsAsJSON) and adds
 *   them up with the primary's own (process metrics, workers, restarts) through
 *   prom-client's AggregatorRegistry.aggregate, each metric by its `aggregator`
 *   (observe/metrics.ts). The counters and histograms of a worker that died are kept as
 *   they were at the last scrape, so the sums never go back.
 */
import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { KernwayError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { parseObject } from '../k8s/kinds.js';
import type { Problem, SourcedObject } from '../k8s/types.js';
import { decodeResource, encodeObject, resourceKey } from '../sources/feed/protocol.js';
import type { Source, SourceBatch } from '../sources/source.js';
import { AdminServer } from './admin.js';
import { RequestCells, type CellsExport } from './observe/metrics.js';
import { registryText, type TextChunks } from '../common/metrics-text.js';
import type { StatusReport } from './status.js';
// The primary never proxies: the data path (waypoint.ts and all it imports) is loaded by the workers only.
import type { Waypoint, WaypointOptions } from './waypoint.js';

/** Problem code of a worker that exited (logged by the primary, which restarts it). */
export const WORKER_EXIT = 'KW_WAYPOINT_WORKER_EXIT' as const;
/** A worker that could not start (its mesh port or listeners), or the workers could not be run. */
export const WORKERS_FAILED = 'KW_WAYPOINT_WORKERS' as const;
/** How long a change may take to reach every worker before /readyz says which one lags. */
const LAG_MS = 5000;
/** How long the primary waits for a worker's answer (metrics, status). */
const ASK_MS = 5000;

type WorkerOptions = Omit<WaypointOptions, 'log'>;
type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;
/** A worker's answer to 'metrics' (WaypointMetrics.forPrimary). */
interface WorkerMetrics { json: MetricsJson; cells: CellsExport }

/** One object on the way to the workers: the feed's wire form, the JSON as text. */
interface RelayedObject { key: string; json: string; file: string; index: number }

type ToWorker =
  | { t: 'init'; index: number; options: WorkerOptions }
  | { t: 'batch'; seq: number; snapshot: boolean; upserted: RelayedObject[]; deleted: string[]; problems: Problem[]; stale: number | null }
  | { t: 'ask'; id: number; what: 'metrics' | 'status' | 'state'; stale: number | null };

type FromWorker =
  | { t: 'hello' }
  | { t: 'started'; meshPort: number }
  | { t: 'failed'; code: string; message: string }
  | { t: 'settled'; seq: number; refusal: string | null; ready: boolean; reason: string; generation: number }
  | { t: 'answer'; id: number; value?: unknown; error?: string };

interface Slot {
  index: number;
  worker: Worker | undefined;
  pid: number | undefined;
  startedAt: number;
  /** The worker listens to the primary's messages. */
  hello: boolean;
  /** The worker bound its mesh port. */
  started: boolean;
  /** The worker got the whole state (later changes are sent to it). */
  fed: boolean;
  appliedSeq: number;
  ready: boolean;
  reason: string;
  generation: number;
  restarts: number;
  quickExits: number;
  lastMetrics: WorkerMetrics | undefined;
  timer: NodeJS.Timeout | undefined;
  exited: Promise<void>;
  onExit: () => void;
}

interface PendingSettle { settle: (refusal?: string) => void; waiting: Set<Slot>; refusal: string | undefined }

export interface PrimaryOptions {
  workers: number;
  waypoint: WorkerOptions;
  log: Logger;
  /** The configuration's source: objects, not a model (the workers build theirs). */
  source: Source;
}

/** The key of a sourced object, as the feed's (kind, namespace, name, origin). */
function keyOf(src: SourcedObject): string {
  const o = src.object;
  return resourceKey(o.kind, o.metadata.namespace, o.metadata.name, src.file, src.index);
}

/** A free port on `host`, for --mesh-port 0 (every worker must bind the same one). */
function freePortOn(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ host, port: 0, exclusive: true }, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Counters and histograms only: what a dead worker leaves to the sums. */
function countersOf(m: MetricsJson): MetricsJson {
  return m.filter((x) => String(x.type) === 'counter' || String(x.type) === 'histogram');
}

export class WaypointPrimary {
  private readonly slots: Slot[] = [];
  private readonly registry = new Registry();
  private readonly restartsTotal: Counter<'worker'>;
  private admin: AdminServer | undefined;
  private options: WorkerOptions;
  /** The current state: every object delivered and not deleted, by key. */
  private readonly objects = new Map<string, SourcedObject>();
  /** Problems of objects that do not parse (they are not sent; their problems are). */
  private readonly objectProblems = new Map<string, readonly Problem[]>();
  private sourceProblems: readonly Problem[] = [];
  private seq = 0;
  private readonly sentAt = new Map<number, number>();
  private readonly settles = new Map<number, PendingSettle>();
  private synced = false;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  /** The counters and histograms of workers that died (as of the last scrape before). */
  private retired: MetricsJson | undefined;
  /** Their request cells, added up. */
  private readonly retiredCells = new RequestCells();
  private retiring: Promise<void> = Promise.resolve();
  private asks = 0;
  private readonly answers = new Map<number, { slot: Slot; resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private startup: { resolve: () => void; reject: (e: Error) => void } | undefined;

  private constructor(private readonly opts: PrimaryOptions) {
    this.options = opts.waypoint;
    const r = this.registry;
    if (opts.waypoint.processMetrics !== false) collectDefaultMetrics({ register: r, prefix: 'kernway_waypoint_' });
    const slots = this.slots;
    new Gauge({ name: 'kernway_waypoint_workers', help: 'Data-path worker processes running (--workers)', registers: [r], collect() { this.set(slots.filter((s) => s.worker).length); } });
    this.restartsTotal = new Counter({ name: 'kernway_waypoint_worker_restarts_total', help: 'Data-path workers restarted after they exited', labelNames: ['worker'], registers: [r] });
  }

  /**
   * Start: fork the workers, read the configuration, hand it to them; resolves once every
   * worker has bound its ports and applied the configuration. Throws (KW_WAYPOINT_LISTEN,
   * KW_METRICS_LISTEN, KW_WAYPOINT_WORKERS...) when the waypoint cannot run; nothing is left.
   */
  static async start(opts: PrimaryOptions): Promise<WaypointPrimary> {
    const p = new WaypointPrimary(opts);
    try {
      const w = opts.waypoint;
      if (w.meshPort === 0) p.options = { ...w, meshPort: await freePortOn(w.meshAddress ?? w.listenAddress) };
      if (w.metricsAddress) p.admin = await AdminServer.start(w.metricsAddress, p);
      const started = new Promise<void>((resolve, reject) => { p.startup = { resolve, reject }; });
      started.catch(() => undefined);
      for (let i = 0; i < opts.workers; i++) p.fork(i);
      await opts.source.start((b) => p.onBatch(b));
      p.synced = true;
      for (const s of p.slots) if (s.worker && s.hello) p.feed(s);
      p.checkStarted();
      await started;
      p.startup = undefined;
    } catch (e) {
      p.startup = undefined;
      await p.stop(0);
      throw e;
    }
    return p;
  }

  get meshPort(): number {
    return this.options.meshPort;
  }

  get adminPort(): number | undefined {
    return this.admin?.port;
  }

  /** The workers' pids, by index (undefined while one is restarting). */
  get workerPids(): (number | undefined)[] {
    return this.slots.map((s) => (s.worker ? s.pid : undefined));
  }

  private fork(index: number): void {
    const worker = cluster.fork({ KERNWAY_WAYPOINT_WORKER: String(index) });
    let onExit: () => void = () => undefined;
    const exited = new Promise<void>((r) => { onExit = r; });
    const prev = this.slots[index];
    const slot: Slot = {
      index, worker, pid: worker.process.pid, startedAt: Date.now(), hello: false, started: false, fed: false, appliedSeq: -1, ready: false, reason: 'starting',
      generation: 0, restarts: prev?.restarts ?? 0, quickExits: prev?.quickExits ?? 0, lastMetrics: undefined, timer: undefined, exited, onExit,
    };
    this.slots[index] = slot;
    worker.on('message', (m: FromWorker) => this.onMessage(slot, m));
    worker.once('exit', (code: number | null, signal: string | null) => this.onExit(slot, code, signal));
    worker.on('error', (e: Error) => this.opts.log.warn({ worker: index, pid: slot.pid, err: e.message }, 'waypoint: worker channel error'));
  }

  private send(slot: Slot, m: ToWorker): void {
    const w = slot.worker;
    if (!w || !w.isConnected()) return;
    try { w.send(m); } catch (e) { this.opts.log.warn({ worker: slot.index, err: errorMessage(e) }, 'waypoint: cannot reach a worker'); }
  }

  private onMessage(slot: Slot, m: FromWorker): void {
    if (this.slots[slot.index] !== slot) return;
    switch (m.t) {
      case 'hello':
        slot.hello = true;
        this.send(slot, { t: 'init', index: slot.index, options: { ...this.options, metricsAddress: undefined, worker: slot.index } });
        if (this.synced) this.feed(slot);
        return;
      case 'started':
        slot.started = true;
        return;
      case 'failed': {
        const e = new KernwayError(m.code === 'KW_WAYPOINT_LISTEN' ? 'KW_WAYPOINT_LISTEN' : WORKERS_FAILED, `worker ${slot.index}: ${m.message}`);
        if (this.startup) this.startup.reject(e);
        else this.opts.log.error({ code: m.code, worker: slot.index, pid: slot.pid, err: m.message }, 'waypoint: worker could not start');
        return;
      }
      case 'settled': {
        slot.appliedSeq = m.seq;
        slot.ready = m.ready;
        slot.reason = m.reason;
        slot.generation = m.generation;
        for (const [seq, p] of this.settles) {
          if (seq > m.seq) break;
          if (p.waiting.delete(slot) && m.refusal !== null && p.refusal === undefined) p.refusal = `worker ${slot.index}: ${m.refusal}`;
        }
        this.settleDone();
        this.prune();
        this.checkStarted();
        return;
      }
      case 'answer': {
        const a = this.answers.get(m.id);
        if (!a) return;
        this.answers.delete(m.id);
        clearTimeout(a.timer);
        if (m.error !== undefined) a.reject(new Error(m.error));
        else a.resolve(m.value);
        return;
      }
    }
  }

  private onExit(slot: Slot, code: number | null, signal: string | null): void {
    slot.onExit();
    if (this.slots[slot.index] !== slot) return;
    slot.worker = undefined;
    for (const [id, a] of this.answers) {
      if (a.slot !== slot) continue;
      this.answers.delete(id);
      clearTimeout(a.timer);
      a.reject(new Error(`worker ${slot.index} exited`));
    }
    for (const p of this.settles.values()) p.waiting.delete(slot);
    this.settleDone();
    if (this.stopping) return;
    if (slot.lastMetrics) {
      const dead = countersOf(slot.lastMetrics.json);
      this.retiredCells.add(slot.lastMetrics.cells);
      slot.lastMetrics = undefined;
      this.retiring = this.retiring.then(async () => {
        this.retired = this.retired ? countersOf(await AggregatorRegistry.aggregate([this.retired, dead]).getMetricsAsJSON()) : dead;
      }).catch((e: unknown) => this.opts.log.warn({ err: errorMessage(e) }, 'waypoint: a dead worker\'s counters could not be kept'));
    }
    if (this.startup) {
      this.startup.reject(new KernwayError(WORKERS_FAILED, `worker ${slot.index} (pid ${slot.pid}) exited while starting (code ${code}, signal ${signal})`));
      return;
    }
    const lived = Date.now() - slot.startedAt;
    // A worker that keeps dying is restarted less and less often (up to every 10 s).
    slot.quickExits = lived < 10_000 ? slot.quickExits + 1 : 0;
    const delay = slot.quickExits === 0 ? 0 : Math.min(10_000, 100 * 2 ** (slot.quickExits - 1));
    slot.restarts++;
    this.restartsTotal.inc({ worker: String(slot.index) });
    this.opts.log.error({ code: WORKER_EXIT, worker: slot.index, pid: slot.pid, exitCode: code, signal, restartInMs: delay, restarts: slot.restarts },
      'waypoint: a worker exited; restarting it');
    slot.timer = setTimeout(() => { slot.timer = undefined; if (!this.stopping) this.fork(slot.index); }, delay);
  }

  /** The whole current state to a worker that has none yet. */
  private feed(slot: Slot): void {
    if (slot.fed || !slot.worker) return;
    slot.fed = true;
    const upserted: RelayedObject[] = [];
    for (const [key, src] of this.objects) {
      const r = this.relayed(key, src);
      if (r) upserted.push(r);
    }
    this.send(slot, { t: 'batch', seq: this.seq, snapshot: true, upserted, deleted: [], problems: this.problems(), stale: this.stale() });
  }

  private relayed(key: string, src: SourcedObject): RelayedObject | undefined {
    const parsed = parseObject(src);
    if (!parsed.object) return undefined;
    return { key, json: encodeObject(parsed.object).toString('utf8'), file: src.file, index: src.index };
  }

  private problems(): Problem[] {
    return [...this.sourceProblems, ...[...this.objectProblems.values()].flat()];
  }

  private stale(): number | null {
    return this.opts.source.staleSince?.() ?? null;
  }

  private onBatch(b: SourceBatch): void {
    const deleted: string[] = [];
    for (const src of b.deleted) {
      const key = keyOf(src);
      if (this.objects.get(key) !== src) continue;
      this.objects.delete(key);
      this.objectProblems.delete(key);
      deleted.push(key);
    }
    const upserted: RelayedObject[] = [];
    for (const src of b.upserted) {
      const key = keyOf(src);
      this.objects.set(key, src);
      const r = this.relayed(key, src);
      if (r) upserted.push(r);
      else {
        const problems = parseObject(src).problems;
        if (problems.length > 0) this.objectProblems.set(key, problems);
      }
    }
    this.sourceProblems = b.problems;
    const seq = ++this.seq;
    this.sentAt.set(seq, Date.now());
    const fed = this.slots.filter((s) => s.worker && s.fed);
    // Every running worker answers for it: those fed now by applying it, those not yet fed by applying the state that includes it.
    if (b.settle) this.settles.set(seq, { settle: b.settle, waiting: new Set(this.slots.filter((s) => s.worker)), refusal: undefined });
    const m: ToWorker = { t: 'batch', seq, snapshot: false, upserted, deleted, problems: this.problems(), stale: this.stale() };
    for (const s of fed) this.send(s, m);
    this.settleDone();
  }

  /** ACK (or NACK) the versions every worker has answered for. */
  private settleDone(): void {
    for (const [seq, p] of this.settles) {
      if (p.waiting.size > 0) continue;
      this.settles.delete(seq);
      p.settle(p.refusal);
    }
  }

  private prune(): void {
    const min = Math.min(...this.slots.filter((s) => s.worker).map((s) => s.appliedSeq));
    for (const seq of this.sentAt.keys()) { if (seq <= min) this.sentAt.delete(seq); else break; }
  }

  private checkStarted(): void {
    if (!this.startup || !this.synced) return;
    if (this.slots.length === this.opts.workers && this.slots.every((s) => s.worker && s.started && s.appliedSeq >= 0)) this.startup.resolve();
  }

  /** /readyz: every worker running, configured and bound, none lagging more than 5 s. */
  readiness(): { ready: boolean; reason: string } {
    if (this.stopping) return { ready: false, reason: 'stopping' };
    if (!this.synced) return { ready: false, reason: 'no configuration yet' };
    const now = Date.now();
    for (const s of this.slots) {
      if (!s.worker) return { ready: false, reason: `worker ${s.index} is not running (restarting)` };
      if (!s.started || s.appliedSeq < 0) return { ready: false, reason: `worker ${s.index} (pid ${s.pid}) is starting` };
      if (!s.ready) return { ready: false, reason: `worker ${s.index} (pid ${s.pid}): ${s.reason}` };
      const since = s.appliedSeq < this.seq ? this.sentAt.get(s.appliedSeq + 1) : undefined;
      if (since !== undefined && now - since > LAG_MS) {
        return { ready: false, reason: `worker ${s.index} (pid ${s.pid}) has not applied the configuration change sent ${((now - since) / 1000).toFixed(1)}s ago` };
      }
    }
    return { ready: true, reason: 'ok' };
  }

  private ask(slot: Slot, what: 'metrics' | 'status' | 'state'): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (!slot.worker || !slot.started) { reject(new Error(`worker ${slot.index} is not running`)); return; }
      const id = ++this.asks;
      const timer = setTimeout(() => { this.answers.delete(id); reject(new Error(`worker ${slot.index} (pid ${slot.pid}) did not answer within ${ASK_MS / 1000}s`)); }, ASK_MS);
      this.answers.set(id, { slot, resolve, reject, timer });
      this.send(slot, { t: 'ask', id, what, stale: this.stale() });
    });
  }

  private live(): Slot[] {
    return this.slots.filter((s) => s.worker && s.started);
  }

  /**
   * /metrics: the primary's registry and every worker's, added up (see the top of this
   * file): the ordinary metrics by prom-client's AggregatorRegistry, the request cells
   * cell by cell into one RequestCells, whose families write their own text.
   */
  readonly metrics = {
    registry: { contentType: this.registry.contentType },
    render: (w: TextChunks): AsyncIterable<unknown> => this.renderMetrics(w),
  };

  private async *renderMetrics(w: TextChunks): AsyncGenerator<unknown> {
    await this.retiring;
    const own = await this.registry.getMetricsAsJSON();
    const workers = await Promise.all(this.live().map((s) => this.ask(s, 'metrics').then(
      (v) => { s.lastMetrics = v as WorkerMetrics; return s.lastMetrics; },
      () => s.lastMetrics,
    )));
    const cells = new RequestCells();
    cells.add(this.retiredCells.export());
    for (const m of workers) if (m) cells.add(m.cells);
    const ordinary = AggregatorRegistry.aggregate([own, ...(this.retired ? [this.retired] : []), ...workers.map((m) => m?.json ?? [])]);
    yield* registryText(ordinary, w);
    for (const f of cells.families(this.options.metricsNames ?? 'kernway')) yield* f.writeText(w);
  }

  /** /debug/routes: a worker's report (they all build theirs from the same objects), with each worker's state. */
  async status(): Promise<StatusReport> {
    for (const s of this.live()) {
      try {
        const report = await this.ask(s, 'status') as StatusReport;
        return { ...report, workers: this.slots.map((x) => ({ index: x.index, pid: x.worker ? x.pid : undefined, generation: x.generation })) } as StatusReport;
      } catch { /* the next one */ }
    }
    throw new KernwayError(WORKERS_FAILED, 'no worker is running to report the routes');
  }

  /** /debug/workers: each worker's pid, state and requests served. */
  async workers(): Promise<unknown> {
    const states = await Promise.all(this.slots.map((s) => this.ask(s, 'state').catch(() => undefined)));
    return {
      primary: process.pid, configuration: this.seq,
      workers: this.slots.map((s, i) => ({
        index: s.index, pid: s.worker ? s.pid : undefined, running: s.worker !== undefined, ready: s.ready, reason: s.reason,
        appliedConfiguration: s.appliedSeq, generation: s.generation, restarts: s.restarts, startedAt: new Date(s.startedAt).toISOString(),
        ...(states[i] as object | undefined ?? {}),
      })),
    };
  }

  /** SIGTERM: every worker drains (stops accepting, lets requests in flight finish); then the admin port closes. */
  stop(drainMs = this.opts.waypoint.drainTimeoutMs): Promise<void> {
    return (this.stopped ??= this.drain(drainMs));
  }

  private async drain(drainMs: number): Promise<void> {
    this.stopping = true;
    this.opts.source.close();
    for (const s of this.slots) if (s.timer) clearTimeout(s.timer);
    const running = this.slots.filter((s) => s.worker);
    for (const s of running) s.worker!.process.kill(drainMs === 0 ? 'SIGKILL' : 'SIGTERM');
    const all = Promise.all(running.map((s) => s.exited));
    let guard: NodeJS.Timeout | undefined;
    const late = await Promise.race([all.then(() => false), new Promise<boolean>((r) => { guard = setTimeout(() => r(true), drainMs + 5000); })]);
    clearTimeout(guard);
    if (late) {
      for (const s of running) if (s.worker) { this.opts.log.warn({ worker: s.index, pid: s.pid }, 'waypoint: worker did not drain in time; killed'); s.worker.process.kill('SIGKILL'); }
      await all;
    }
    for (const p of this.settles.values()) p.settle('the waypoint is stopping');
    this.settles.clear();
    await this.admin?.close();
  }
}

/** A worker's configuration source: the objects the primary sends (see the top of this file). */
class RelaySource implements Source {
  readonly description = 'the primary process (--workers)';
  private readonly objects = new Map<string, SourcedObject>();
  private onBatch: ((b: SourceBatch) => void) | undefined;
  private readonly queued: Extract<ToWorker, { t: 'batch' }>[] = [];
  private started: (() => void) | undefined;
  stale: number | undefined;

  constructor(private readonly settled: (seq: number, refusal: string | undefined) => void) {}

  start(onBatch: (b: SourceBatch) => void): Promise<void> {
    this.onBatch = onBatch;
    return new Promise((resolve) => {
      this.started = resolve;
      for (const m of this.queued.splice(0)) this.deliver(m);
    });
  }

  deliver(m: Extract<ToWorker, { t: 'batch' }>): void {
    if (!this.onBatch) { this.queued.push(m); return; }
    const deleted: SourcedObject[] = [];
    if (m.snapshot) { deleted.push(...this.objects.values()); this.objects.clear(); }
    for (const key of m.deleted) {
      const o = this.objects.get(key);
      if (o) { deleted.push(o); this.objects.delete(key); }
    }
    const problems = [...m.problems];
    const upserted: SourcedObject[] = [];
    for (const r of m.upserted) {
      try {
        const src = decodeResource({ key: r.key, object: Buffer.from(r.json, 'utf8'), file: r.file, index: r.index });
        this.objects.set(r.key, src);
        upserted.push(src);
      } catch (e) {
        problems.push({ code: 'KW_FEED_DECODE', file: r.file, message: errorMessage(e) });
      }
    }
    this.stale = m.stale ?? undefined;
    this.onBatch({ upserted, deleted, problems, synced: true, settle: (refusal) => this.settled(m.seq, refusal) });
    this.started?.();
    this.started = undefined;
  }

  close(): void {
    this.onBatch = () => undefined;
  }

  staleSince(): number | undefined {
    return this.stale;
  }
}

/**
 * A worker's life (cluster.isWorker): say hello, take the options and the configuration
 * from the primary, serve, answer its questions; drain on SIGTERM or SIGINT, or when the
 * primary is gone. Resolves with the exit code.
 */
export function runWorker(log: Logger): Promise<number> {
  let waypoint: Waypoint | undefined;
  let lastSettled: { seq: number; refusal: string | undefined } | undefined;
  const send = (m: FromWorker): void => { if (process.connected) process.send!(m); };
  const report = (): void => {
    if (!waypoint || !lastSettled) return;
    const r = waypoint.readiness();
    send({ t: 'settled', seq: lastSettled.seq, refusal: lastSettled.refusal ?? null, ready: r.ready, reason: r.reason, generation: waypoint.configGeneration });
  };
  const relay = new RelaySource((seq, refusal) => { lastSettled = { seq, refusal }; report(); });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ why }, 'waypoint worker: draining');
      const w = waypoint;
      (w ? w.stop() : Promise.resolve()).then(() => resolve(0), (e: unknown) => { log.error({ err: errorMessage(e) }, 'waypoint worker: drain failed'); resolve(1); });
    };
    process.on('message', (m: ToWorker) => {
      switch (m.t) {
        case 'init': {
          const wlog = log.child({ worker: m.index });
          const start = async (): Promise<Waypoint> => {
            const [{ Waypoint: W }, { ModelConfigSource }] = await Promise.all([import('./waypoint.js'), import('./config/source.js')]);
            return W.start({ ...m.options, log: wlog }, new ModelConfigSource(relay));
          };
          start().then((w) => {
            waypoint = w;
            send({ t: 'started', meshPort: w.meshPort });
            report();
          }, (e: unknown) => {
            const code = e instanceof KernwayError ? e.code : (e as { code?: string }).code ?? 'KW_INTERNAL';
            send({ t: 'failed', code, message: errorMessage(e) });
            // Let the message leave before the exit.
            setTimeout(() => resolve(1), 50);
          });
          return;
        }
        case 'batch':
          relay.deliver(m);
          return;
        case 'ask': {
          relay.stale = m.stale ?? undefined;
          const w = waypoint;
          const answer = (value: unknown): void => send({ t: 'answer', id: m.id, value });
          const fail = (e: unknown): void => send({ t: 'answer', id: m.id, error: errorMessage(e) });
          if (!w) { fail(new Error('not started')); return; }
          if (m.what === 'metrics') w.metrics.forPrimary().then(answer, fail);
          else if (m.what === 'status') answer(w.status());
          else answer({ pid: process.pid, requests: w.metrics.requestsServed(), active: w.metrics.active });
          return;
        }
      }
    });
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('disconnect', () => stop('the primary is gone'));
    send({ t: 'hello' });
  });
}

/** True in a process forked by WaypointPrimary. */
export function isWaypointWorker(): boolean {
  return cluster.isWorker && process.env.KERNWAY_WAYPOINT_WORKER !== undefined;
}
