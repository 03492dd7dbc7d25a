/**
 * Where the waypoint's configuration comes from: any Source (today the manifest directory,
 * `--manifests DIR`, watched; next the agent's feed) whose batches go into one
 * ModelBuilder; each change gives a new WaypointConfig (the model's waypoint view).
 */
import type { Logger } from '../../common/log.js';
import type { Problem, SourcedObject } from '../../k8s/types.js';
import { ModelBuilder } from '../../model/model.js';
import { buildWaypointConfig, waypointConfigOf, type WaypointConfig } from '../../model/waypoint-config.js';
import { ManifestSource } from '../../sources/manifest-source.js';
import type { Source, SourceBatch } from '../../sources/source.js';
import type { FeedSource, FeedSourceOptions } from '../../sources/feed-source.js';

export interface ConfigUpdate {
  config: WaypointConfig;
  /** Problems of the source itself (files that do not parse or validate: their last good content is in force). */
  sourceProblems: readonly Problem[];
  /** Sources that take acknowledgements (the agent's feed): called once, after the update was applied or refused. */
  settle?: (refusal?: string) => void;
}

export interface ConfigSource {
  /** For logs: what the configuration is read from. */
  readonly description: string;
  /** Deliver the current configuration (before the promise resolves), then each change. */
  start(onUpdate: (u: ConfigUpdate) => void): Promise<void>;
  close(): void;
  /** Since when (ms since the epoch) the configuration may be out of date (undefined: it is current). */
  staleSince?(): number | undefined;
}

/** A Source's objects through a model builder: work per change is proportional to the change. */
export class ModelConfigSource implements ConfigSource {
  readonly description: string;
  private readonly builder = new ModelBuilder();

  constructor(private readonly source: Source) {
    this.description = source.description;
  }

  async start(onUpdate: (u: ConfigUpdate) => void): Promise<void> {
    await this.source.start((b) => {
      const change = this.builder.apply({ added: b.upserted, removed: b.deleted });
      onUpdate({ config: waypointConfigOf(change.model), sourceProblems: b.problems, ...(b.settle ? { settle: b.settle } : {}) });
    });
  }

  close(): void {
    this.source.close();
  }

  staleSince(): number | undefined {
    return this.source.staleSince?.();
  }
}

/** The node agent's feed (`--agent ADDRESS`): the namespace's slice of the agent's model, over gRPC. */
export class AgentFeedSource extends ModelConfigSource {
  constructor(opts: FeedSourceOptions) {
    super(feedObjects(opts));
  }
}

/** The agent's feed as a Source of objects (the --workers primary relays them: waypoint/workers.ts). */
export function feedObjects(opts: FeedSourceOptions): Source {
  return new LazyFeedSource(opts);
}

/** A directory of manifests, watched, as a Source of objects. */
export function manifestObjects(path: string, opts: { log?: Logger; debounceMs?: number } = {}): Source {
  return new ManifestSource(path, { debounceMs: opts.debounceMs ?? 50, log: opts.log });
}

/**
 * The feed source, imported when started: a waypoint reading --manifests never loads
 * grpc-js and proto-loader (≈ 15 MiB of RSS, docs/agent-model.md).
 */
class LazyFeedSource implements Source {
  readonly description: string;
  private inner: FeedSource | undefined;
  private closed = false;
  private readonly since = Date.now();

  constructor(private readonly opts: FeedSourceOptions) {
    this.description = `agent feed ${opts.address.text} (namespace ${opts.namespace})`;
  }

  async start(onBatch: (batch: SourceBatch) => void): Promise<void> {
    const { FeedSource } = await import('../../sources/feed-source.js');
    if (this.closed) return;
    this.inner = new FeedSource(this.opts);
    return this.inner.start(onBatch);
  }

  close(): void {
    this.closed = true;
    this.inner?.close();
  }

  staleSince(): number | undefined {
    return this.inner ? this.inner.staleSince() : this.since;
  }
}

/** A directory of manifests, watched. A file that does not parse or validate keeps its last good content. */
export class ManifestDirSource extends ModelConfigSource {
  constructor(path: string, opts: { log?: Logger; debounceMs?: number } = {}) {
    super(manifestObjects(path, opts));
  }
}

/** A fixed set of objects (tests, and tools that compute status from manifests once). */
export class StaticSource implements ConfigSource {
  readonly description = 'static objects';
  constructor(private readonly objects: readonly SourcedObject[], private readonly problems: readonly Problem[] = []) {}
  async start(onUpdate: (u: ConfigUpdate) => void): Promise<void> {
    onUpdate({ config: buildWaypointConfig(this.objects), sourceProblems: this.problems });
  }
  close(): void { /* nothing to release */ }
}
