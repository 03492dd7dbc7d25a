/**
 * The manifest directory as a Source: every file's objects checked by the kind registry
 * (a file with a bad object keeps its last good content, see manifest-dir.ts), kept as
 * stubs, and delivered as batches of what changed.
 */
import type { Logger } from '../common/log.js';
import { isKnownKind, slimSourced, validateObject } from '../k8s/kinds.js';
import type { SourcedObject } from '../k8s/types.js';
import { ManifestDirectory, SNAPSHOT, type ManifestSnapshot, type ObjectValidator } from './manifest-dir.js';
import type { Source, SourceBatch } from './source.js';

export interface ManifestSourceOptions {
  log?: Logger | undefined;
  /** Debounce of file system events, from the first event of a burst (default 20 ms). */
  debounceMs?: number;
  /** More checks than the registry's: their problems reject the file like the registry's own. */
  validate?: ObjectValidator;
}

export class ManifestSource implements Source {
  readonly description: string;
  private readonly dir: ManifestDirectory;
  private closed = false;

  constructor(readonly path: string, opts: ManifestSourceOptions = {}) {
    this.description = `manifest directory ${path}`;
    const extra = opts.validate;
    const validate: ObjectValidator = extra
      ? (o) => { const p = validateObject(o); const q = extra(o); return p.length === 0 ? q : q.length === 0 ? p : [...p, ...q]; }
      : validateObject;
    this.dir = new ManifestDirectory(path, { validate, slim: slimSourced, debounceMs: opts.debounceMs ?? 20, ...(opts.log ? { log: opts.log } : {}) });
  }

  async start(onBatch: (batch: SourceBatch) => void): Promise<void> {
    const first = await this.dir.load();
    if (this.closed) return;
    onBatch({ upserted: known(first.objects), deleted: [], problems: first.problems, synced: true });
    this.dir.on(SNAPSHOT, (s: ManifestSnapshot) => {
      if (this.closed) return;
      onBatch(s.changes
        ? { upserted: known(s.changes.added), deleted: known(s.changes.removed), problems: s.problems, synced: true }
        : { upserted: known(s.objects), deleted: [], problems: s.problems, synced: true });
    });
    this.dir.watch();
    // Resolved after the watch's first rescan (a stat per file, in case something changed
    // since the load): its garbage is then made before the agent compacts its heap.
    await this.dir.idle();
  }

  close(): void {
    this.closed = true;
    this.dir.close();
  }
}

function known(objects: readonly SourcedObject[]): SourcedObject[] {
  return objects.filter((o) => isKnownKind(o.object));
}

