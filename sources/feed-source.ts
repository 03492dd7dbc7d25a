/**
 * The agent's feed as a Source (docs/feed.md): one long-lived gRPC stream to the node's
 * agent (`unix:///PATH` or `HOST:PORT`), a full snapshot of the namespace's slice on
 * connect, then deltas. Each version is answered: ACK once the consumer applied it, NACK
 * with the reason when an object cannot be decoded or the consumer refused it; the last
 * good state stays with the consumer.
 *
 * Two states are kept: what the agent says now (`agent`) and what was handed to the
 * consumer (`delivered`). A batch is their difference, so after a refused version, or
 * after a reconnect to a restarted agent (a fresh snapshot), the consumer receives only
 * what really changed. When the stream breaks the source reconnects with exponential
 * backoff and full jitter; the consumer keeps serving what it has.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { SourcedObject } from '../k8s/types.js';
import { feedService } from './feed/service.js';
import { decodeResource, grpcTarget, type FeedAddress, type FeedRequest, type FeedUpdate } from './feed/protocol.js';
import type { Source, SourceBatch } from './source.js';

export interface FeedSourceOptions {
  address: FeedAddress;
  namespace: string;
  /** Who asks (pod or host name), for the agent's logs and status. */
  name: string;
  /** Over TCP: the projected ServiceAccount token (audience kernway), read at each connect. */
  tokenFile?: string;
  log?: Logger;
  /** Reconnect backoff: the first retry waits up to initialMs, doubling up to maxMs (full jitter). */
  backoff?: { initialMs: number; maxMs: number };
  /** gRPC keepalive ping interval (default 10 s); a ping unanswered for half of it breaks the stream. */
  keepaliveMs?: number;
}

export class FeedSource implements Source {
  readonly description: string;
  private readonly agent = new Map<string, SourcedObject>();
  private readonly broken = new Map<string, string>();
  private readonly delivered = new Map<string, SourcedObject>();
  private readonly dirty = new Set<string>();
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<FeedRequest, FeedUpdate> | undefined;
  private closed = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private synced = false;
  private lostAt: number | undefined = Date.now();
  private onBatch: ((b: SourceBatch) => void) | undefined;
  private resolveSynced: (() => void) | undefined;
  /** Counters, for tests and metrics. */
  readonly stats = { connects: 0, updates: 0, acks: 0, nacks: 0, lastVersion: 0 };

  constructor(private readonly opts: FeedSourceOptions) {
    this.description = `agent feed ${opts.address.text} (namespace ${opts.namespace})`;
  }

  start(onBatch: (batch: SourceBatch) => void): Promise<void> {
    this.onBatch = onBatch;
    const synced = new Promise<void>((resolve) => { this.resolveSynced = resolve; });
    this.connect();
    return synced;
  }

  staleSince(): number | undefined {
    return this.lostAt;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.call?.cancel();
    this.client?.close();
    this.onBatch = undefined;
  }

  private connect(): void {
    if (this.closed) return;
    const o = this.opts;
    const { Client } = feedService();
    const keepalive = o.keepaliveMs ?? 10_000;
    this.client?.close();
    this.client = new Client(grpcTarget(o.address), grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': keepalive,
      'grpc.keepalive_timeout_ms': Math.max(1000, Math.floor(keepalive / 2)),
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
      // Our own backoff, with jitter, decides when to come back.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    });
    const md = new grpc.Metadata();
    if (o.address.kind === 'tcp' && o.tokenFile) {
      try {
        md.set('authorization', `Bearer ${readFileSync(o.tokenFile, 'utf8').trim()}`);
      } catch (e) {
        o.log?.error({ file: o.tokenFile, err: errorMessage(e) }, 'feed: cannot read the ServiceAccount token; asking without it');
      }
    }
    const call = (this.client as unknown as { Stream(md: grpc.Metadata): grpc.ClientDuplexStream<FeedRequest, FeedUpdate> }).Stream(md);
    this.call = call;
    let ended = false;
    const end = (why: string, status?: grpc.StatusObject): void => {
      if (ended) return;
      ended = true;
      if (this.call === call) this.call = undefined;
      if (this.closed) return;
      if (this.lostAt === undefined) this.lostAt = Date.now();
      const delay = this.backoffMs();
      const level = status?.code === grpc.status.PERMISSION_DENIED || status?.code === grpc.status.UNAUTHENTICATED ? 'error' : 'warn';
      o.log?.[level]({ agent: o.address.text, why, code: status ? grpc.status[status.code] : undefined, retryInMs: delay }, 'feed: stream to the agent ended; the last configuration stays; reconnecting');
      this.timer = setTimeout(() => { this.timer = undefined; this.connect(); }, delay);
    };
    call.on('data', (u: FeedUpdate) => this.update(call, u));
    call.on('error', (e: grpc.ServiceError) => end(e.details || e.message, { code: e.code, details: e.details, metadata: e.metadata }));
    call.on('status', (s: grpc.StatusObject) => { if (s.code !== grpc.status.OK) end(s.details, s); });
    call.on('end', () => end('the agent closed the stream'));
    call.write({ hello: { namespace: o.namespace, name: o.name } });
    this.stats.connects++;
  }

  /** Exponential backoff with full jitter: uniform in [0, min(max, initial·2^attempt)], at least 10 ms. */
  private backoffMs(): number {
    const b = this.opts.backoff ?? { initialMs: 200, maxMs: 10_000 };
    const cap = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(this.attempt++, 20));
    return Math.max(10, Math.floor(Math.random() * cap));
  }

  private update(call: grpc.ClientDuplexStream<FeedRequest, FeedUpdate>, u: FeedUpdate): void {
    if (this.closed || call !== this.call) return;
    const version = Number(u.version);
    this.stats.updates++;
    this.stats.lastVersion = version;
    if (u.snapshot) {
      // Everything not in the snapshot is gone.
      const now = new Set(u.upserted.map((r) => r.key));
      for (const k of this.agent.keys()) if (!now.has(k)) { this.agent.delete(k); this.dirty.add(k); }
      for (const k of this.broken.keys()) if (!now.has(k)) this.broken.delete(k);
      this.attempt = 0;
      this.lostAt = undefined;
    }
    for (const k of u.removed) { this.agent.delete(k); this.broken.delete(k); this.dirty.add(k); }
    for (const r of u.upserted) {
      this.dirty.add(r.key);
      try {
        this.agent.set(r.key, decodeResource(r));
        this.broken.delete(r.key);
      } catch (e) {
        this.agent.delete(r.key);
        this.broken.set(r.key, errorMessage(e));
      }
    }
    if (this.broken.size > 0) {
      const reasons = [...this.broken.values()];
      this.nack(version, `${reasons.length} object(s) could not be decoded [KW_FEED_DECODE]: ${reasons.slice(0, 3).join('; ')}${reasons.length > 3 ? '; ...' : ''}`);
      return;
    }
    const upserted: SourcedObject[] = [];
    const deleted: SourcedObject[] = [];
    for (const k of this.dirty) {
      const was = this.delivered.get(k), now = this.agent.get(k);
      if (was === now) continue;
      if (was) deleted.push(was);
      if (now) { upserted.push(now); this.delivered.set(k, now); } else this.delivered.delete(k);
    }
    this.dirty.clear();
    const first = !this.synced;
    if (upserted.length === 0 && deleted.length === 0 && !first) { this.ack(version); return; }
    this.synced = true;
    let settled = false;
    const batch: SourceBatch = {
      upserted, deleted, problems: [], synced: true,
      settle: (refusal) => {
        if (settled) return;
        settled = true;
        if (refusal === undefined) this.ack(version); else this.nack(version, refusal);
      },
    };
    this.onBatch?.(batch);
    if (first) this.resolveSynced?.();
  }

  private ack(version: number): void {
    this.stats.acks++;
    this.call?.write({ ack: { version } });
  }

  private nack(version: number, reason: string): void {
    this.stats.nacks++;
    this.opts.log?.error({ version, reason }, 'feed: configuration refused (NACK); the last good one stays');
    this.call?.write({ nack: { version, reason } });
  }
}
