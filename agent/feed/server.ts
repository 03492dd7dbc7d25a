/**
 * The agent's feed to its waypoints (docs/feed.md): a gRPC server (proto/feed.proto) on a
 * Unix socket (`unix:///PATH`, mode 0600, each peer checked with SO_PEERCRED) and/or TCP
 * (`HOST:PORT`, each waypoint shows a projected ServiceAccount token, checked with the
 * TokenReview API).
 *
 * Each connected waypoint gets a full snapshot of its namespace's slice, then deltas. Flow
 * control: at most one update is in flight per waypoint; what changes meanwhile is kept as
 * a set of keys (never a queue of updates), and the next update carries the latest state of
 * each, so a slow waypoint costs at most one key per object of its slice. ACKs and NACKs
 * are recorded per waypoint; NACKs are logged, counted and shown in `kernway status`.
 */
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { KernwayError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { SourcedObject } from '../../k8s/types.js';
import { feedService } from '../../sources/feed/service.js';
import { WAYPOINT_POD_LABEL, type FeedAddress, type FeedRequest, type FeedUpdate, type WireResource } from '../../sources/feed/protocol.js';
import { peerCredOf, podUidOfPid, type PeerCred } from '../datapath/peer-cred.js';
import { FeedIndex, type Extras } from './slices.js';

/** The result of a TokenReview: who the token's bearer is. */
export interface TokenIdentity { namespace: string; serviceAccount: string; podName?: string }
export interface TokenReviewer { review(token: string): Promise<TokenIdentity> }

export interface FeedServerOptions {
  addresses: readonly FeedAddress[];
  log: Logger;
  /** Names the agent process in updates (node name and start time). */
  agentId: string;
  /** Checks TCP callers' tokens; without it, TCP callers are refused. */
  tokenReviewer?: TokenReviewer;
  /** Server keepalive ping interval (default 10 s). */
  keepaliveMs?: number;
}

export interface FeedWaypointStatus {
  namespace: string;
  name: string;
  peer: string;
  connectedAt: string;
  /** Objects in its slice sent and in force on its side (as far as the agent knows). */
  objects: number;
  sentVersion: number;
  ackedVersion: number;
  /** Updates waiting because the previous one has not been taken yet (coalesced keys). */
  pendingKeys: number;
  lastNack?: { version: number; reason: string; at: string };
}

export interface FeedStatus {
  addresses: string[];
  version: number;
  waypoints: FeedWaypointStatus[];
  nacks: number;
  /** The last NACKs (any waypoint), newest last, at most 10. */
  recentNacks: Array<{ namespace: string; name: string; version: number; reason: string; at: string }>;
  denied: number;
}

type Call = grpc.ServerDuplexStream<FeedRequest, FeedUpdate>;

class Conn {
  readonly sent = new Set<string>();
  pending = new Set<string>();
  writing = false;
  sentVersion = 0;
  ackedVersion = 0;
  lastNack: FeedWaypointStatus['lastNack'];
  extras: Extras;
  readonly connectedAt = new Date().toISOString();
  closed = false;
  constructor(readonly call: Call, readonly namespace: string, readonly name: string, readonly peer: string, index: FeedIndex) {
    this.extras = index.extras(namespace);
  }
}

export class FeedServer {
  readonly index = new FeedIndex();
  private readonly server: grpc.Server;
  private readonly conns = new Set<Conn>();
  private readonly unixServers: net.Server[] = [];
  private readonly peers = new Map<string, PeerCred & { podUid: string | undefined }>();
  private nextPeer = 1;
  private injector: ReturnType<grpc.Server['createConnectionInjector']> | undefined;
  private readonly nacksByNamespace = new Map<string, number>();
  private readonly recentNacks: FeedStatus['recentNacks'] = [];
  private denied = 0;
  private closed = false;
  private readonly tcpPorts: number[] = [];

  constructor(private readonly opts: FeedServerOptions) {
    const keepalive = opts.keepaliveMs ?? 10_000;
    this.server = new grpc.Server({
      'grpc.keepalive_time_ms': keepalive,
      'grpc.keepalive_timeout_ms': Math.max(1000, Math.floor(keepalive / 2)),
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 1000,
      'grpc.max_receive_message_length': 1024 * 1024,
    });
    this.server.addService(feedService().service, { Stream: (call: Call) => this.stream(call) });
  }

  /** Listen on every address; throws KW_FEED_LISTEN naming the one that failed. */
  async start(): Promise<void> {
    for (const a of this.opts.addresses) {
      if (a.kind === 'unix') await this.listenUnix(a.path);
      else {
        await new Promise<void>((resolve, reject) => {
          this.server.bindAsync(`${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
            if (err) reject(new KernwayError('KW_FEED_LISTEN', `--feed-address ${a.text}: ${err.message}`, { address: a.text }));
            else { this.tcpPorts.push(port); resolve(); }
          });
        });
      }
    }
  }

  /** The TCP ports bound (the real one when 0 was asked), in the order of the addresses. */
  get boundPorts(): readonly number[] {
    return this.tcpPorts;
  }

  private async listenUnix(path: string): Promise<void> {
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new KernwayError('KW_FEED_LISTEN', `--feed-address unix://${path}: exists and is not a socket`, { path });
      // A live agent answers; a socket file left by a dead one is removed.
      const live = await new Promise<boolean>((resolve) => {
        const s = net.connect(path, () => { s.destroy(); resolve(true); });
        s.once('error', () => resolve(false));
      });
      if (live) throw new KernwayError('KW_FEED_LISTEN', `--feed-address unix://${path}: another process listens on it`, { path });
      unlinkSync(path);
    }
    this.injector ??= this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const injector = this.injector;
    const server = net.createServer((socket) => this.acceptUnix(socket, injector));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new KernwayError('KW_FEED_LISTEN', `--feed-address unix://${path}: ${errorMessage(e)}`, { path })));
      // Created 0600: umask for the bind alone.
      const old = process.umask(0o177);
      try {
        server.listen(path, () => { server.removeAllListeners('error'); resolve(); });
      } finally {
        process.umask(old);
      }
    });
    chmodSync(path, 0o600);
    this.unixServers.push(server);
  }

  /** A Unix connection: who is it (SO_PEERCRED, then its pod from its cgroup)? Then gRPC. */
  private acceptUnix(socket: net.Socket, injector: NonNullable<FeedServer['injector']>): void {
    let cred: PeerCred | undefined;
    try {
      cred = peerCredOf(socket);
    } catch (e) {
      this.opts.log.error({ err: errorMessage(e) }, 'feed: cannot read the peer credentials of a connection; refused');
    }
    const me = process.getuid?.() ?? 0;
    if (!cred || (cred.uid !== 0 && cred.uid !== me)) {
      this.denied++;
      this.opts.log.warn({ uid: cred?.uid, pid: cred?.pid }, 'feed: connection from another user refused');
      socket.destroy();
      return;
    }
    const id = `unix-peer:${this.nextPeer++}`;
    this.peers.set(id, { ...cred, podUid: podUidOfPid(cred.pid) });
    socket.once('close', () => this.peers.delete(id));
    // The gRPC call sees this as its peer address: the key to the credentials above.
    Object.defineProperty(socket, 'remoteAddress', { value: id });
    injector.injectConnection(socket);
  }

  /** One waypoint's stream: Hello (who, which namespace), then ACKs and NACKs. */
  private stream(call: Call): void {
    let conn: Conn | undefined;
    let helloSeen = false;
    call.on('data', (m: FeedRequest) => {
      if (!helloSeen) {
        helloSeen = true;
        if (!m.hello || !m.hello.namespace) { this.refuse(call, grpc.status.INVALID_ARGUMENT, 'the first message must be a Hello naming the namespace'); return; }
        const hello = m.hello;
        this.authorize(call, hello.namespace).then((peer) => {
          if (this.closed || call.cancelled) return;
          conn = new Conn(call, hello.namespace, hello.name || '?', peer, this.index);
          this.conns.add(conn);
          this.opts.log.info({ namespace: conn.namespace, waypoint: conn.name, peer }, 'feed: waypoint connected');
          for (const k of this.index.slice(conn.namespace)) conn.pending.add(k);
          this.flush(conn, true);
        }, (e: unknown) => {
          this.denied++;
          this.opts.log.warn({ namespace: hello.namespace, waypoint: hello.name, peer: call.getPeer(), err: errorMessage(e) }, 'feed: waypoint refused [KW_FEED_DENIED]');
          this.refuse(call, grpc.status.PERMISSION_DENIED, `${errorMessage(e)} [KW_FEED_DENIED]`);
        });
        return;
      }
      if (!conn) return;
      if (m.ack) conn.ackedVersion = Math.max(conn.ackedVersion, Number(m.ack.version));
      else if (m.nack) this.nacked(conn, Number(m.nack.version), m.nack.reason);
    });
    const gone = (): void => {
      if (!conn || conn.closed) return;
      conn.closed = true;
      this.conns.delete(conn);
      this.opts.log.info({ namespace: conn.namespace, waypoint: conn.name }, 'feed: waypoint disconnected');
    };
    call.on('cancelled', gone);
    call.on('error', gone);
    call.on('end', () => { gone(); call.end(); });
    call.on('close', gone);
  }

  private refuse(call: Call, code: grpc.status, details: string): void {
    call.emit('error', { code, details, name: 'FeedError', message: details });
  }

  /**
   * May this caller read namespace `ns`? Unix: the peer is a host process of the agent's
   * user (or root), or a pod of that namespace labelled as its waypoint. TCP: its token
   * passes TokenReview as a ServiceAccount of that namespace (and, when the token names its
   * pod and the model has it, that pod is a waypoint). Resolves with a name for the peer.
   */
  private async authorize(call: Call, ns: string): Promise<string> {
    const peerId = call.getPeer();
    const unix = this.peers.get(peerId);
    if (unix) {
      const who = `pid ${unix.pid} uid ${unix.uid}`;
      if (unix.podUid === undefined) return `${who} (host process)`;
      const pod = this.index.podByUid(unix.podUid);
      if (!pod) throw new Error(`${who} runs in pod ${unix.podUid}, which the agent does not know: refused`);
      if (pod.namespace !== ns) throw new Error(`${who} is pod ${pod.namespace}/${pod.name}; it may not read namespace ${ns}`);
      if (pod.labels[WAYPOINT_POD_LABEL] === undefined) throw new Error(`${who} is pod ${pod.namespace}/${pod.name}, which is not a waypoint (no label ${WAYPOINT_POD_LABEL})`);
      return `${who} pod ${pod.namespace}/${pod.name}`;
    }
    const auth = call.metadata.get('authorization')[0];
    const token = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice('Bearer '.length).trim() : '';
    if (!token) throw new Error(`${peerId}: no ServiceAccount token (authorization: Bearer) over TCP`);
    if (!this.opts.tokenReviewer) throw new Error(`${peerId}: this agent has no Kubernetes API access to review tokens; use the Unix socket`);
    const id = await this.opts.tokenReviewer.review(token);
    const who = `${peerId} serviceaccount ${id.namespace}/${id.serviceAccount}`;
    if (id.namespace !== ns) throw new Error(`${who} may not read namespace ${ns}`);
    if (id.podName !== undefined) {
      const pod = this.index.pod(id.namespace, id.podName);
      if (pod && pod.labels[WAYPOINT_POD_LABEL] === undefined) throw new Error(`${who} is pod ${id.namespace}/${id.podName}, which is not a waypoint (no label ${WAYPOINT_POD_LABEL})`);
    }
    return who;
  }

  private nacked(conn: Conn, version: number, reason: string): void {
    const at = new Date().toISOString();
    conn.lastNack = { version, reason, at };
    this.nacksByNamespace.set(conn.namespace, (this.nacksByNamespace.get(conn.namespace) ?? 0) + 1);
    this.recentNacks.push({ namespace: conn.namespace, name: conn.name, version, reason, at });
    if (this.recentNacks.length > 10) this.recentNacks.shift();
    this.opts.log.error({ namespace: conn.namespace, waypoint: conn.name, version, reason }, 'feed: the waypoint refused a configuration (NACK); it keeps its last good one');
  }

  /** A batch of the agent's source: index it, then tell each waypoint what changed in its slice. */
  update(added: readonly SourcedObject[], removed: readonly SourcedObject[]): void {
    const change = this.index.apply(added, removed);
    if (change.changed.size === 0) return;
    for (const c of this.conns) {
      if (change.routing) {
        const old = c.extras;
        c.extras = this.index.extras(c.namespace);
        for (const k of this.index.extrasKeys(old)) c.pending.add(k);
        for (const k of this.index.extrasKeys(c.extras)) c.pending.add(k);
      }
      for (const k of change.changed) {
        const e = this.index.entries.get(k);
        if (c.sent.has(k) || (e && this.index.member(c.namespace, e, c.extras))) c.pending.add(k);
      }
      this.flush(c, false);
    }
  }

  /** Send what is pending as one update, unless one is still being written (then: when it is). */
  private flush(c: Conn, snapshot: boolean): void {
    if (c.closed || c.writing || (!snapshot && c.pending.size === 0)) return;
    const upserted: WireResource[] = [];
    const removed: string[] = [];
    for (const k of c.pending) {
      const e = this.index.entries.get(k);
      if (e && this.index.member(c.namespace, e, c.extras)) {
        upserted.push(this.index.resource(e, c.namespace));
        c.sent.add(k);
      } else if (c.sent.delete(k)) removed.push(k);
    }
    c.pending = new Set();
    c.writing = true;
    c.sentVersion = this.index.version;
    const u = { version: this.index.version, snapshot, upserted, removed, agent: this.opts.agentId };
    try {
      c.call.write(u, () => {
        c.writing = false;
        this.flush(c, false);
      });
    } catch (e) {
      this.opts.log.warn({ namespace: c.namespace, err: errorMessage(e) }, 'feed: write failed');
    }
  }

  status(): FeedStatus {
    return {
      addresses: this.opts.addresses.map((a) => a.text),
      version: this.index.version,
      waypoints: [...this.conns].map((c) => ({
        namespace: c.namespace, name: c.name, peer: c.peer, connectedAt: c.connectedAt, objects: c.sent.size,
        sentVersion: c.sentVersion, ackedVersion: c.ackedVersion, pendingKeys: c.pending.size, ...(c.lastNack ? { lastNack: c.lastNack } : {}),
      })),
      nacks: [...this.nacksByNamespace.values()].reduce((a, b) => a + b, 0),
      recentNacks: [...this.recentNacks],
      denied: this.denied,
    };
  }

  nacksPerNamespace(): ReadonlyMap<string, number> {
    return this.nacksByNamespace;
  }

  get connected(): number {
    return this.conns.size;
  }

  /** Stop: streams end (waypoints keep their configuration and reconnect), sockets close. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.unixServers) s.close();
    this.injector?.destroy();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { this.server.forceShutdown(); resolve(); }, 1000);
      this.server.tryShutdown(() => { clearTimeout(t); resolve(); });
    });
    this.server.forceShutdown();
    for (const a of this.opts.addresses) if (a.kind === 'unix') try { unlinkSync(a.path); } catch { /* gone already */ }
  }
}
