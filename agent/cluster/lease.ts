/**
 * Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection does:
 * the holder renews every retry period; another candidate takes the Lease over only when it
 * has seen the same record unchanged for a whole lease duration (its own clock, so clock
 * skew between nodes does not matter); every write is an update with the resourceVersion
 * read, so of two candidates racing exactly one wins (the other gets 409 Conflict). A
 * leader that cannot renew within the renew deadline stops leading before its lease can
 * expire for the others. On stop, a leader releases the Lease (holder cleared) so the next
 * one takes over at once.
 */
import type { Logger } from '../../common/log.js';
import { errorMessage } from '../../common/errors.js';
import { httpStatusOf, type KubeRequests } from './api.js';

export interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}
interface LeaseObject { apiVersion?: string; kind?: string; metadata: { name: string; namespace: string; resourceVersion?: string }; spec: LeaseSpec }

export interface ElectorOptions {
  namespace: string;
  /** The Lease's name (deploy/rbac.yaml lets the agent write kernway-system/kernway-agent only). */
  name: string;
  /** Unique per candidate: the agent uses its node name. */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading?: () => void;
  onStoppedLeading?: () => void;
  log?: Logger;
}

/** What a candidate knows of the Lease (`kernway status`). */
export interface LeaseStatus {
  /** 'namespace/name' of the Lease. */
  lease: string;
  /** This candidate's identity. */
  identity: string;
  leading: boolean;
  /** The holder as last read (absent: none yet, or released). */
  holder?: string;
  /** The holder's acquireTime as last read (when it took the Lease), or when this candidate did. */
  holderSince?: string;
  /** The last Lease request's error, while requests fail. */
  lastError?: string;
}

export const LEASE_DEFAULTS = Object.freeze({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 });

/** A Lease MicroTime: RFC 3339 with microseconds. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  private readonly o: Required<Omit<ElectorOptions, 'log' | 'onStartedLeading' | 'onStoppedLeading'>> & Pick<ElectorOptions, 'log' | 'onStartedLeading' | 'onStoppedLeading'>;
  private leading = false;
  private stopped = true;
  private timer: NodeJS.Timeout | undefined;
  /** The record last seen (holder and renew time) and when, by our clock. */
  private observed: { key: string; at: number } | undefined;
  private lastRenew = 0;
  private lastError: string | undefined;
  private running: Promise<void> | undefined;
  /** How many times this candidate became leader. */
  transitions = 0;
  /** The Lease as this candidate last wrote it (the server's answer: its resourceVersion), while leading. */
  private mine: LeaseObject | undefined;
  /** The Lease's holder and acquireTime as last read or written. */
  private seen: { holder: string; since?: string } | undefined;
  /** Lease requests sent (tests; a leader's renewal is one PUT, a candidate's round one GET). */
  requests = 0;
  /** Rounds that ended holding the Lease. */
  renewals = 0;

  constructor(private readonly api: KubeRequests, opts: ElectorOptions) {
    this.o = { ...LEASE_DEFAULTS, ...opts };
  }

  get isLeader(): boolean {
    return this.leading;
  }

  get identity(): string {
    return this.o.identity;
  }

  status(): LeaseStatus {
    const st: LeaseStatus = { lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity, leading: this.leading };
    if (this.seen?.holder) {
      st.holder = this.seen.holder;
      if (this.seen.since) st.holderSince = this.seen.since;
    }
    if (this.lastError) st.lastError = this.lastError;
    return st;
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases`;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    // client-go's jitter on the retry period of candidates (not of the leader's renewals).
    const jitter = this.leading ? 0 : Math.random() * 0.2 * ms;
    this.timer = setTimeout(() => { this.running = this.tick().finally(() => { this.running = undefined; this.schedule(this.o.retryPeriodMs); }); }, ms + jitter);
  }

  private async tick(): Promise<void> {
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew();
      this.lastError = undefined;
    } catch (e) {
      // Once per distinct error (a missing kernway-system namespace would repeat every retry period).
      const err = errorMessage(e);
      if (err !== this.lastError) this.o.log?.warn({ err, lease: `${this.o.namespace}/${this.o.name}` }, 'leader election: lease request failed (retrying)');
      this.lastError = err;
    }
    if (this.stopped) return;
    if (ok) {
      this.renewals++;
      this.lastRenew = Date.now();
      if (!this.leading) {
        this.leading = true;
        this.transitions++;
        this.o.log?.info({ identity: this.o.identity, lease: `${this.o.namespace}/${this.o.name}` }, 'leader election: leading');
        this.o.onStartedLeading?.();
      }
    } else if (this.leading && Date.now() - this.lastRenew >= this.o.renewDeadlineMs) {
      this.lose('the lease could not be renewed within the renew deadline');
    } else if (this.leading && !ok && this.observed && !this.observed.key.startsWith(`${this.o.identity}|`)) {
      this.lose('another candidate holds the lease');
    }
  }

  private lose(why: string): void {
    this.leading = false;
    this.o.log?.warn({ identity: this.o.identity, why }, 'leader election: stopped leading');
    this.o.onStoppedLeading?.();
  }

  /** One round; true when this candidate holds the Lease after it. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = Date.now();
    const durationS = Math.max(1, Math.round(this.o.leaseDurationMs / 1000));
    // The leader's fast path (client-go's since 1.26): while its lease is valid, renew with one
    // PUT of the Lease as it last wrote it; the resourceVersion makes it fail (409) if anyone
    // wrote since. Any failure falls back to reading the Lease, in the same round.
    const mine = this.mine;
    this.mine = undefined;
    if (this.leading && mine && this.observed && now < this.observed.at + this.o.leaseDurationMs) {
      const next: LeaseObject = { ...mine, spec: { ...mine.spec, holderIdentity: this.o.identity, leaseDurationSeconds: durationS, renewTime: microTime(now) } };
      try {
        this.requests++;
        this.mine = await this.api.request<LeaseObject>('PUT', `${this.path}/${this.o.name}`, next);
        this.observed = { key: `${this.o.identity}|${next.spec.renewTime}`, at: now };
        return true;
      } catch (e) {
        this.o.log?.debug({ err: errorMessage(e) }, 'leader election: renewing the lease as last written failed; reading it');
      }
    }
    let lease: LeaseObject;
    try {
      this.requests++;
      lease = await this.api.request<LeaseObject>('GET', `${this.path}/${this.o.name}`);
    } catch (e) {
      if (httpStatusOf(e) !== 404) throw e;
      const body: LeaseObject = {
        apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.o.name, namespace: this.o.namespace },
        spec: { holderIdentity: this.o.identity, leaseDurationSeconds: durationS, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 },
      };
      try {
        this.requests++;
        this.mine = await this.api.request<LeaseObject>('POST', this.path, body);
      } catch (e2) {
        if (httpStatusOf(e2) === 409) return false; // another candidate created it first
        throw e2;
      }
      this.observed = { key: `${this.o.identity}|${body.spec.renewTime}`, at: now };
      this.seen = { holder: this.o.identity, since: body.spec.acquireTime ?? undefined };
      return true;
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const key = `${holder}|${spec.renewTime ?? ''}`;
    if (this.observed?.key !== key) this.observed = { key, at: now };
    this.seen = { holder, since: spec.acquireTime ?? undefined };
    const theirDurationMs = (spec.leaseDurationSeconds ?? durationS) * 1000;
    if (holder !== '' && holder !== this.o.identity && now < this.observed.at + theirDurationMs) return false;
    const next: LeaseObject = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: this.o.identity,
        leaseDurationSeconds: durationS,
        renewTime: microTime(now),
        acquireTime: holder === this.o.identity ? spec.acquireTime ?? microTime(now) : microTime(now),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (holder === this.o.identity ? 0 : 1),
      },
    };
    try {
      this.requests++;
      this.mine = await this.api.request<LeaseObject>('PUT', `${this.path}/${this.o.name}`, next);
    } catch (e) {
      if (httpStatusOf(e) === 409) return false; // someone else wrote it since we read it
      throw e;
    }
    this.observed = { key: `${this.o.identity}|${next.spec.renewTime}`, at: now };
    this.seen = { holder: this.o.identity, since: next.spec.acquireTime ?? undefined };
    return true;
  }

  /** Stops; a leader releases the Lease (holder cleared) so another candidate takes over at once. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.api.request<LeaseObject>('GET', `${this.path}/${this.o.name}`);
      if (lease.spec?.holderIdentity === this.o.identity) {
        await this.api.request('PUT', `${this.path}/${this.o.name}`, { ...lease, spec: { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(Date.now()) } });
      }
    } catch (e) {
      this.o.log?.warn({ err: errorMessage(e) }, 'leader election: release failed; the lease expires by itself');
    }
    this.o.onStoppedLeading?.();
  }
}
