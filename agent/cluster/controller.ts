/**
 * The cluster-side duties of the elected agent: one agent of the cluster holds the Lease
 * kernway-system/kernway-agent and, while it does, writes the status of kernway's Gateway
 * API objects (and keeps the waypoints of kernway-waypoint Gateways, agent/cluster/waypoints.ts).
 * Every agent runs one; only the leader writes. The model comes from the agent's source on
 * every change; writes are serialised (one round at a time, the latest model wins).
 */
import type { Logger } from '../../common/log.js';
import { errorMessage } from '../../common/errors.js';
import type { ClusterStatus } from '../../k8s/gateway-status.js';
import { parseObject } from '../../k8s/kinds.js';
import type { SourcedObject } from '../../k8s/types.js';
import type { Model } from '../../model/types.js';
import type { KubeRequests } from './api.js';
import { LeaderElector, type ElectorOptions } from './lease.js';
import { StatusWriter, statusPathOf } from './status-writer.js';

export const LEASE_NAMESPACE = 'kernway-system';

/** The label the pods of a waypoint Gateway carry (agent/cluster/waypoint-manifests.ts). */
const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

/**
 * Whether a batch of the source can change what the leader writes. The status (model/
 * route-status.ts clusterStatusOf) reads Services, Namespaces, GatewayClasses, Gateways,
 * HTTPRoutes, ReferenceGrants and kernway's policies, never EndpointSlices nor Pods; the
 * waypoint controller reads Gateways and GatewayClasses, and the readiness of the waypoints'
 * Deployments, which their pods' changes announce. So a batch of EndpointSlices and of Pods
 * other than waypoints' cannot change anything written (the 30 s resync runs anyway).
 */
export function mayAffectStatus(batch: { upserted: readonly SourcedObject[]; deleted: readonly SourcedObject[] }): boolean {
  const affects = (s: SourcedObject): boolean => {
    const kind = s.object.kind;
    if (kind === 'EndpointSlice') return false;
    // The sources deliver stubs (k8s/kinds.ts slimObject): a Pod's labels are in its parsed form.
    if (kind === 'Pod') { const p = parseObject(s).object; return p?.kind !== 'Pod' || p.value.labels[GATEWAY_NAME_LABEL] !== undefined; }
    return true;
  };
  return batch.upserted.some(affects) || batch.deleted.some(affects);
}

/**
 * The objects of a batch whose status the leader writes (their API paths): they changed on
 * the server, maybe their status by another writer, so the next round reads them again.
 */
export function statusPathsOf(batch: { upserted: readonly SourcedObject[] }): string[] {
  const paths: string[] = [];
  for (const s of batch.upserted) {
    const p = statusPathOf(s.object);
    if (p !== undefined) paths.push(p);
  }
  return paths;
}
export const LEASE_NAME = 'kernway-agent';

export interface ClusterControllerOptions {
  /** Unique per agent (its node name). */
  identity: string;
  /** What to write, from the model (model/route-status.ts clusterStatusOf). */
  computeStatus: (model: Model) => ClusterStatus;
  /** Extra duties of the leader, after each status round (the waypoint controller). */
  duties?: Array<(model: Model) => Promise<void>>;
  log?: Logger;
  /** The leader runs a round this often even without a change (what the model does not watch: waypoint Deployments' readiness). Default 30 s. */
  resyncMs?: number;
  lease?: Partial<Pick<ElectorOptions, 'namespace' | 'name' | 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs'>>;
}

export class ClusterController {
  readonly elector: LeaderElector;
  readonly writer: StatusWriter;
  private model: Model | undefined;
  private round: Promise<void> | undefined;
  private again = false;
  private resync: NodeJS.Timeout | undefined;
  /** Status rounds run while leading (tests and `kernway status`). */
  rounds = 0;
  /** Model changes that asked for a round, and those that could not change any status (mayAffectStatus) and asked for none. */
  readonly changes = { rounds: 0, skipped: 0 };

  constructor(api: KubeRequests, private readonly opts: ClusterControllerOptions) {
    this.writer = new StatusWriter(api, opts.log);
    this.elector = new LeaderElector(api, {
      namespace: opts.lease?.namespace ?? LEASE_NAMESPACE, name: opts.lease?.name ?? LEASE_NAME, identity: opts.identity,
      ...(opts.lease?.leaseDurationMs ? { leaseDurationMs: opts.lease.leaseDurationMs } : {}),
      ...(opts.lease?.renewDeadlineMs ? { renewDeadlineMs: opts.lease.renewDeadlineMs } : {}),
      ...(opts.lease?.retryPeriodMs ? { retryPeriodMs: opts.lease.retryPeriodMs } : {}),
      ...(opts.log ? { log: opts.log } : {}),
      onStartedLeading: () => { this.writer.reset(); this.kick(); },
    });
  }

  get isLeader(): boolean {
    return this.elector.isLeader;
  }

  start(): void {
    this.elector.start();
    this.resync = setInterval(() => this.kick(), this.opts.resyncMs ?? 30_000);
    this.resync.unref();
  }

  /**
   * The model changed (or first synced): the leader writes what differs. With the source's
   * batch the change came from: the objects in it whose status kernway writes changed on the
   * server, maybe by another writer, so they are read again (statusPathsOf); and a batch that
   * cannot change any status (mayAffectStatus) runs no round. Without one, a round runs.
   */
  update(model: Model, batch?: { upserted: readonly SourcedObject[]; deleted: readonly SourcedObject[] }): void {
    this.model = model;
    if (batch) {
      const changed = statusPathsOf(batch);
      if (changed.length > 0) this.writer.forget(changed);
      if (!mayAffectStatus(batch)) { this.changes.skipped++; return; }
    }
    this.changes.rounds++;
    this.kick();
  }

  private kick(): void {
    if (!this.elector.isLeader || !this.model) return;
    if (this.round) { this.again = true; return; }
    this.round = this.runRound().finally(() => {
      this.round = undefined;
      if (this.again) { this.again = false; this.kick(); }
    });
  }

  private async runRound(): Promise<void> {
    const model = this.model!;
    try {
      await this.writer.write(this.opts.computeStatus(model));
      for (const duty of this.opts.duties ?? []) await duty(model);
      this.rounds++;
    } catch (e) {
      this.opts.log?.warn({ err: errorMessage(e) }, 'cluster controller: round failed');
    }
  }

  /** Waits for the round in flight (tests). */
  async settled(): Promise<void> {
    while (this.round) await this.round;
  }

  async stop(): Promise<void> {
    clearInterval(this.resync);
    await this.settled();
    await this.elector.stop();
  }
}
