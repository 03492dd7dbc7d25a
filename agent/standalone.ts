/**
 * The standalone source: a directory of Kubernetes manifests (ManifestDirectory, checked
 * with the model's validator) turned into a stream of model snapshots. Problems are logged
 * once when they appear (file, object, field, reason) and once when they are resolved.
 *
 * Usage (the agent):
 *   const src = new StandaloneSource(dir, { log });
 *   const first = await src.start();          // throws KW_MANIFEST_DIR when dir is unusable
 *   const table = new ServiceTableBuilder({ nodeName });
 *   table.update(first.model);
 *   src.on(MODEL, (s: StandaloneSnapshot) => { table.update(s.model, s.changedServices); reconcile(table.table); });
 *   ...
 *   src.close();
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../common/log.js';
import { ModelBuilder } from '../model/model.js';
import { slimObject, validateObject } from '../k8s/core.js';
import type { Model } from '../model/types.js';
import { ManifestDirectory, SNAPSHOT, type Located, type ManifestProblem, type ManifestSnapshot, type ObjectValidator } from '../sources/manifest-dir.js';

export interface StandaloneSnapshot {
  /** Counts up from 1 with each snapshot. */
  generation: number;
  /** The model (live: the same object, updated in place, in every snapshot of this source). */
  model: Model;
  /** 'ns/name' of the Services whose Service or EndpointSlices changed since the previous snapshot (the first: all). */
  changedServices: ReadonlySet<string>;
  /** Every problem in force: files rejected (their last good content kept) and cross-object problems. */
  problems: ManifestProblem[];
  /**
   * The directory's snapshot this model was built from: objects of the model's kinds as
   * stubs (apiVersion, kind, metadata name/namespace), every other kind whole, and the
   * `changes` since the previous snapshot. For other readers of the same directory
   * (policies), so that each file is read and parsed once.
   */
  manifests: ManifestSnapshot;
}

/** Event emitted with each new StandaloneSnapshot after the first. */
export const MODEL = 'model';
export type MODEL = typeof MODEL;

export interface StandaloneOptions {
  log?: Logger;
  /** Debounce of file system events, from the first event of a burst (default 20 ms). */
  debounceMs?: number;
  /**
   * More checks (e.g. AuthorizationPolicy parsing): their problems reject the file like the
   * model's own. Runs on every object of every file read.
   */
  validate?: ObjectValidator;
}

export class StandaloneSource extends EventEmitter {
  private readonly manifests: ManifestDirectory;
  private readonly builder = new ModelBuilder();
  private readonly log: Logger | undefined;
  private reported = new Map<string, ManifestProblem>();
  private generation = 0;
  private last: StandaloneSnapshot | undefined;

  constructor(readonly dir: string, opts: StandaloneOptions = {}) {
    super();
    this.log = opts.log;
    // The model digests Services, EndpointSlices, Pods and Namespaces while validating: only a
    // stub of those is kept by the directory (slimObject), the model objects hold the rest.
    const extra = opts.validate;
    const validate: ObjectValidator = extra ? (o: Located) => { const p = validateObject(o); const q = extra(o); return p.length === 0 ? q : q.length === 0 ? p : [...p, ...q]; } : validateObject;
    this.manifests = new ManifestDirectory(dir, { validate, slim: slimObject, debounceMs: opts.debounceMs ?? 20, log: opts.log });
    this.manifests.on(SNAPSHOT, (s: ManifestSnapshot) => {
      try {
        this.emit(MODEL, this.accept(s));
      } catch (e) {
        this.log?.error({ err: (e as Error).message, stack: (e as Error).stack }, 'standalone: failed to build the model; previous one kept');
      }
    });
  }

  /** Load the directory, report its problems, start watching. Returns the first snapshot. */
  async start(): Promise<StandaloneSnapshot> {
    const snap = this.accept(await this.manifests.load());
    this.manifests.watch();
    return snap;
  }

  /** The latest snapshot (undefined before start()). */
  current(): StandaloneSnapshot | undefined {
    return this.last;
  }

  close(): void {
    this.manifests.close();
    this.removeAllListeners(MODEL);
  }

  private accept(s: ManifestSnapshot): StandaloneSnapshot {
    const t0 = performance.now();
    const change = s.changes && this.generation > 0 ? this.builder.apply(s.changes) : this.builder.reset(s.objects);
    const model = change.model;
    const problems = s.problems.concat(model.problems);
    this.report(problems);
    const snap: StandaloneSnapshot = { generation: ++this.generation, model, changedServices: change.services, problems, manifests: s };
    this.last = snap;
    this.log?.debug({ generation: snap.generation, services: model.services.size, problems: problems.length, ms: +(performance.now() - t0).toFixed(2) }, 'standalone: model built');
    return snap;
  }

  /** Log problems that appeared, and those that went away. */
  private report(problems: ManifestProblem[]): void {
    const now = new Map<string, ManifestProblem>();
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
