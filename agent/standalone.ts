/**
 * The agent's desired state from one Source (today the manifest directory, `--standalone
 * DIR`): each batch of objects goes into one ModelBuilder, and each model change is
 * emitted as a snapshot with its typed change set. Problems that appear or go away are
 * logged once.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../common/log.js';
import type { Problem, SourcedObject } from '../k8s/types.js';
import { ModelBuilder } from '../model/model.js';
import type { Model, ModelChange } from '../model/types.js';
import type { ObjectValidator } from '../sources/manifest-dir.js';
import type { Source, SourceBatch } from '../sources/source.js';

export interface StandaloneSnapshot {
  /** Counts up from 1 with each snapshot. */
  generation: number;
  /** The model (live: the same object, updated in place, in every snapshot of this source). */
  model: Model;
  /** What changed since the previous snapshot, by kind (the first: everything). */
  change: ModelChange;
  /** 'ns/name' of the Services whose Service or EndpointSlices changed since the previous snapshot (the first: all). */
  changedServices: ReadonlySet<string>;
  /** Every problem in force: the source's (files rejected, their last good content kept) and the model's. */
  problems: Problem[];
  /** How many objects (of the registry's kinds) the source holds. */
  objects: number;
  /** The source's batch this snapshot was built from (the first: everything), for the feed to the waypoints. */
  upserted: readonly SourcedObject[];
  deleted: readonly SourcedObject[];
}

/** Event emitted with every snapshot, the first included (the feed to the waypoints follows the source's batches). */
export const BATCH = 'batch';

/** Event emitted with each new StandaloneSnapshot after the first. */
export const MODEL = 'model';
export type MODEL = typeof MODEL;

export interface StandaloneOptions {
  log?: Logger;
  /** Debounce of file system events, from the first event of a burst (default 20 ms). */
  debounceMs?: number;
  /** More checks than the kind registry's: their problems reject the file like the registry's own. */
  validate?: ObjectValidator;
}

export class StandaloneSource extends EventEmitter {
  private source: Source | undefined;
  /** A manifest directory to read: its source is made by start() (imported only then). */
  private readonly dir: { path: string; opts: StandaloneOptions } | undefined;
  private readonly builder = new ModelBuilder();
  private readonly log: Logger | undefined;
  private reported = new Map<string, Problem>();
  private generation = 0;
  private objects = 0;
  private last: StandaloneSnapshot | undefined;

  /** `from`: a manifest directory's path, or any Source. */
  constructor(from: string | Source, opts: StandaloneOptions = {}) {
    super();
    this.log = opts.log;
    if (typeof from === 'string') this.dir = { path: from, opts };
    else this.source = from;
  }

  /** Load everything the source has, report its problems, follow its changes. Returns the first snapshot. */
  async start(): Promise<StandaloneSnapshot> {
    if (this.dir && !this.source) {
      // The manifest directory's source (with the YAML parser and the file watcher) is imported only
      // when a directory is read: on the Kubernetes API the agent never loads it (~1 MiB of RSS,
      // docs/agent-model.md).
      const { ManifestSource } = await import('../sources/manifest-source.js');
      const { opts } = this.dir;
      this.source = new ManifestSource(this.dir.path, { log: opts.log, debounceMs: opts.debounceMs ?? 20, ...(opts.validate ? { validate: opts.validate } : {}) });
    }
    await this.source!.start((b) => {
      if (this.generation === 0) { this.accept(b); return; }
      try {
        this.emit(MODEL, this.accept(b));
      } catch (e) {
        this.log?.error({ err: (e as Error).message, stack: (e as Error).stack }, 'standalone: failed to build the model; previous one kept');
      }
    });
    return this.last!;
  }

  /** The latest snapshot (undefined before start()). */
  current(): StandaloneSnapshot | undefined {
    return this.last;
  }

  /**
   * The consumer has applied the latest snapshot: its batch and change sets are not kept
   * (the first sync's are every object and every Service: ≈ 0.6 MiB at 10,000 Services,
   * held until the next change otherwise). `current()` still gives the model and the
   * problems; its change sets are empty from now on.
   */
  applied(): void {
    const s = this.last;
    if (!s || (s.upserted.length === 0 && s.deleted.length === 0 && s.changedServices.size === 0)) return;
    const change = Object.fromEntries(Object.entries(s.change).map(([k, v]) => [k, v instanceof Set ? new Set() : v])) as unknown as ModelChange;
    this.last = { ...s, change, changedServices: change.services, upserted: [], deleted: [] };
  }

  close(): void {
    this.source?.close();
    this.removeAllListeners(MODEL);
    this.removeAllListeners(BATCH);
  }

  private accept(b: SourceBatch): StandaloneSnapshot {
    const t0 = performance.now();
    const change = this.builder.apply({ added: b.upserted, removed: b.deleted });
    this.objects += b.upserted.length - b.deleted.length;
    const model = change.model;
    const problems = b.problems.concat(model.problems);
    this.report(problems);
    const snap: StandaloneSnapshot = { generation: ++this.generation, model, change, changedServices: change.services, problems, objects: this.objects, upserted: b.upserted, deleted: b.deleted };
    this.last = snap;
    this.emit(BATCH, snap);
    this.log?.debug({ generation: snap.generation, services: model.services.size, problems: problems.length, ms: +(performance.now() - t0).toFixed(2) }, 'standalone: model built');
    return snap;
  }

  /** Log problems that appeared, and those that went away. */
  private report(problems: Problem[]): void {
    const now = new Map<string, Problem>();
    for (const p of problems) now.set(`${p.code}\0${p.file}\0${p.object ?? ''}\0${p.field ?? ''}\0${p.message}`, p);
    for (const [k, p] of now) {
      if (!this.reported.has(k)) this.log?.warn({ code: p.code, file: p.file, object: p.object, field: p.field }, p.message);
    }
    for (const [k, p] of this.reported) {
      if (!now.has(k)) this.log?.info({ code: p.code, file: p.file, object: p.object, field: p.field }, `resolved: ${p.message}`);
    }
    this.reported = now;
  }
}
