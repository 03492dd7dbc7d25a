/**
 * Where objects come from, behind one interface. The manifest directory implements it
 * (manifest-source.ts); the Kubernetes API (reflectors) and the agent's feed to its
 * waypoints implement it next. A consumer hands each batch to a model builder
 * (ModelBuilder.apply: `upserted` are its `added`, `deleted` its `removed`), so it never
 * cares which source it reads.
 *
 * The contract:
 * - Objects are raw or slim (k8s/kinds.ts `slimObject`): a stub that the registry's
 *   `parseObject` maps to the slim object, so a source keeps nothing else of them.
 * - Only kinds of the registry (k8s/kinds.ts `KINDS`) are delivered.
 * - A changed object is delivered as its old version in `deleted` and its new one in
 *   `upserted`; `deleted` holds the objects exactly as delivered before.
 * - Batches are applied whole and in order; the first batch carries the whole initial
 *   state and `synced: true` comes with the batch that completes it (a consumer that must
 *   not act on a partial view, such as one removing kernel state, waits for it).
 * - `problems` are the source's own problems in force after the batch (files that do not
 *   parse or validate, a watch that failed), replacing the previous batch's; problems of
 *   objects across kinds are the model's.
 */
import type { Problem, SourcedObject } from '../k8s/types.js';

export interface SourceBatch {
  upserted: readonly SourcedObject[];
  deleted: readonly SourcedObject[];
  problems: readonly Problem[];
  /** The source has delivered its whole initial state (with this batch or before). */
  synced: boolean;
  /**
   * Sources that take acknowledgements (the agent's feed: sources/feed-source.ts) carry
   * this: the consumer calls it once, after the batch was applied (no argument) or refused
   * (the reason). A consumer that never calls it leaves the batch unacknowledged.
   */
  settle?: (refusal?: string) => void;
}

export interface Source {
  /** For logs: what objects are read from ('manifest directory /etc/kernway'). */
  readonly description: string;
  /**
   * Start delivering batches to `onBatch` (synchronously, in order). The promise resolves
   * once the source is synced, after the batch that made it so was delivered.
   */
  start(onBatch: (batch: SourceBatch) => void): Promise<void>;
  /** Stop: no batch is delivered after close() returns. */
  close(): void;
  /**
   * When the state delivered was last known to be current (ms since the epoch): undefined
   * while it is (a watched directory, a connected feed), the moment the link to the origin
   * was lost otherwise. Sources that cannot tell leave it out.
   */
  staleSince?(): number | undefined;
}
