/**
 * The waypoint: one L7 proxy shared by a namespace. It owns the sockets (Gateway
 * listeners, the mesh port, the admin port), the HTTP/1.1 and HTTP/2 servers the sockets
 * are handed to, and the routing table in force. A configuration change builds a new
 * table and swaps it in: requests in flight keep the table they started with, listeners
 * that remain keep their sockets. A configuration that cannot be built is reported and
 * the last good one stays.
 *
 * Lifecycle: start() → (config changes) → stop(): stop accepting, let requests in flight
 * finish (up to the drain timeout), close what is left.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, Server } from 'node:http';
import net, { type Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import type { Problem } from '../k8s/types.js';
import { AccessLog, type AccessLogDestination } from './observe/access-log.js';
import { WaypointMetrics, type MetricsNames } from './observe/metrics.js';
// OpenTelemetry (≈ 10 MiB of RSS) is imported only when --otlp-endpoint asks for traces.
import type { RequestTracer, TracingOptions } from './observe/otlp.js';
import type { ConfigSource, ConfigUpdate } from './config/source.js';
import { emptyWaypointConfig } from '../model/waypoint-config.js';
import { compactHeap } from '../common/heap.js';
import { IdleCompactor, type IdleCompactionOptions } from './idle-memory.js';
import { buildRoutingTable, type RoutingTable } from './routing/table.js';
import { accept, connOf, type AcceptHandlers, type ConnInfo } from './proxy/accept.js';
import { Balancer } from './proxy/balancer.js';
import { Resilience } from './resilience/state.js';
import { RequestHandler } from './proxy/handler.js';
import { classifyClientError, H1Server, refusalBytes } from './proxy/h1-server.js';
import { H2Server } from './proxy/h2-server.js';
import { KwH2Server, type KwH2ServerOptions } from './proxy/h2-conn.js';
import { UpstreamPool } from './proxy/upstream.js';
import { AdminServer } from './admin.js';
import { statusReport, type StatusReport } from './status.js';
const http = process.getBuiltinModule('node:http'); // not an ESM import: see proxy/handler.ts

export interface WaypointLimits {
  /** Largest request head (request line and headers), bytes: larger gets 431. */
  maxHeaderBytes: number;
  /** Time to receive a request's head (slowloris): 408 after it. */
  headersTimeoutMs: number;
  /** Time to receive a whole request, body included. */
  requestTimeoutMs: number;
  /** Idle keep-alive connections from callers are closed after this. */
  idleTimeoutMs: number;
  /** Time for the PROXY header and the first bytes of a new connection. */
  firstBytesTimeoutMs: number;
}

export interface WaypointOptions {
  namespace: string;
  /** Where Gateway listeners bind (unless a Gateway lists spec.addresses). */
  listenAddress: string;
  /** Where the mesh port binds (default: listenAddress). */
  meshAddress?: string;
  /** Mesh port; 0 picks a free port (tests). */
  meshPort: number;
  /** Admin server (/metrics, /healthz, /readyz, /debug/routes); undefined: none. */
  metricsAddress: { host: string; port: number } | undefined;
  accessLog: AccessLogDestination;
  controllerName?: string;
  limits: WaypointLimits;
  upstream: { connectTimeoutMs: number; idleTimeoutMs: number; maxIdlePerEndpoint: number };
  /** How long stop() waits for requests in flight. */
  drainTimeoutMs: number;
  log: Logger;
  /** Process metrics (CPU, memory, event loop) in /metrics (default true). */
  processMetrics?: boolean;
  /**
   * Which server parses HTTP/1.x callers: 'kernway' (default, the waypoint's own server on
   * raw sockets, waypoint/proxy/h1-server.ts) or 'node' (node:http; kept for one release).
   */
  http1Server?: 'kernway' | 'node';
  /**
   * Which server reads HTTP/2 callers: 'kernway' (default, the waypoint's own on raw
   * sockets, waypoint/proxy/h2-conn.ts) or 'node' (Node's http2 on nghttp2,
   * waypoint/proxy/h2-server.ts; kept for one release).
   */
  http2Server?: 'kernway' | 'node';
  /** Names of the request metrics: kernway's own (default) or Istio's standard ones (--metrics-names). */
  metricsNames?: MetricsNames;
  /** A span per request over OTLP (--otlp-endpoint, --trace-sampling); undefined: off. */
  tracing?: TracingOptions;
  /**
   * This process is data-path worker N of a primary (--workers, waypoint/workers.ts): its
   * listeners bind with SO_REUSEPORT beside the other workers', and its access log shares
   * the destination with theirs. Undefined: the waypoint is one process.
   */
  worker?: number;
  /** Give the young generation back when idle after load (waypoint/idle-memory.ts); false: never (default: on). */
  idleCompaction?: Partial<IdleCompactionOptions> | false;
}

export const DEFAULT_LIMITS: WaypointLimits = {
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  idleTimeoutMs: 60_000,
  firstBytesTimeoutMs: 10_000,
};

/** Event emitted after a configuration is applied: `(generation: number)`. */
export const CONFIG_APPLIED = 'config';
/** Problem codes of the waypoint itself. */
export const LISTEN_FAILED = 'KW_WAYPOINT_LISTEN';
export const CONFIG_FAILED = 'KW_WAYPOINT_CONFIG';

interface Listening { server: net.Server; address: string; port: number; error: string | undefined }

export class Waypoint extends EventEmitter {
  readonly metrics: WaypointMetrics;
  private tableInForce: RoutingTable;
  private generation = 0;
  private problems: Problem[] = [];
  private readonly balancer = new Balancer();
  private readonly resilience = new Resilience();
  private readonly upstream: UpstreamPool;
  private readonly accessLog: AccessLog;
  private readonly handler: RequestHandler;
  private readonly h1: Server;
  private readonly fast: H1Server | undefined;
  private readonly h2: H2Server | KwH2Server;
  private readonly acceptHandlers: AcceptHandlers;
  private readonly gatewaySockets = new Map<string, Listening>();
  private mesh: Listening | undefined;
  private admin: AdminServer | undefined;
  /** Spans over OTLP, when --otlp-endpoint is set. */
  readonly tracer: RequestTracer | undefined;
  private readonly sockets = new Set<Socket>();
  private stopping = false;
  private applying: Promise<void> = Promise.resolve();
  private appliedAt: number | undefined;
  private readonly startedAt = Date.now();
  private readonly idle: IdleCompactor | undefined;

  private constructor(private readonly opts: WaypointOptions, private readonly source: ConfigSource, otlp?: typeof import('./observe/otlp.js')) {
    super();
    const log = opts.log;
    this.upstream = new UpstreamPool(opts.upstream);
    this.metrics = new WaypointMetrics({
      defaultMetrics: opts.processMetrics !== false, upstreamConnections: () => this.upstream.connectionCount(),
      names: opts.metricsNames ?? 'kernway', workloadAt: (ip) => this.tableInForce.pods.get(ip)?.identity.workload,
    });
    this.metrics.ejectedEndpoints = () => this.resilience.ejectedCounts(performance.now());
    this.metrics.pendingRequests = () => this.resilience.pendingCounts();
    this.accessLog = new AccessLog(opts.accessLog, { sharedDestination: opts.worker !== undefined });
    this.metrics.onConfigAge(() => this.configAgeSeconds());
    this.tableInForce = buildRoutingTable(emptyWaypointConfig(), { namespace: opts.namespace, listenAddress: opts.listenAddress });
    this.tracer = opts.tracing && otlp ? new otlp.RequestTracer({ resource: { 'k8s.namespace.name': opts.namespace }, ...opts.tracing }) : undefined;
    this.handler = new RequestHandler({
      table: () => this.tableInForce, balancer: this.balancer, resilience: this.resilience, upstream: this.upstream, metrics: this.metrics, accessLog: this.accessLog, log,
      tracer: this.tracer,
    });
    const l = opts.limits;
    this.h1 = http.createServer({
      maxHeaderSize: l.maxHeaderBytes, headersTimeout: l.headersTimeoutMs, requestTimeout: l.requestTimeoutMs,
      keepAliveTimeout: l.idleTimeoutMs, connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(l.headersTimeoutMs / 4))),
      requireHostHeader: true, joinDuplicateHeaders: false,
    }, this.handler.onRequest);
    // The HTTP server is handed sockets instead of listening; 'listening' starts its
    // tracking of connections, which enforces headersTimeout and requestTimeout.
    this.h1.emit('listening');
    this.h1.on('upgrade', this.handler.onUpgrade);
    this.h1.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.clientError(err, socket));
    this.h1.on('connect', (_req: IncomingMessage, socket: Socket) => {
      socket.end('HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    });
    // The waypoint's own HTTP/2 server hands the handler a pair with the members of H2Request/H2Response it uses.
    this.h2 = opts.http2Server !== 'node'
      ? new KwH2Server({ maxHeaderBytes: l.maxHeaderBytes, idleTimeoutMs: l.idleTimeoutMs, onRequest: this.handler.onRequest as unknown as KwH2ServerOptions['onRequest'],
        onRefused: (kind, socket) => this.clientErrorSeen('H2_HEADER_LIST_TOO_LARGE', kind, socket, 'request head above --max-header-bytes'),
      })
      : new H2Server({ maxHeaderBytes: l.maxHeaderBytes, idleTimeoutMs: l.idleTimeoutMs, onRequest: this.handler.onRequest });
    if (opts.http1Server !== 'node') {
      this.fast = new H1Server({
        maxHeaderBytes: l.maxHeaderBytes, headersTimeoutMs: l.headersTimeoutMs, requestTimeoutMs: l.requestTimeoutMs, idleTimeoutMs: l.idleTimeoutMs,
        onRequest: this.handler.onRequest, onUpgrade: this.handler.onUpgrade,
        onClientError: (code, kind, socket, detail) => this.clientErrorSeen(code, kind, socket, detail),
      });
    }
    const fast = this.fast;
    this.acceptHandlers = {
      http1: fast ? (s) => fast.connection(s) : (s) => this.h1.emit('connection', s),
      http2: (s) => this.h2.connection(s),
      refused: (kind, info, detail) => {
        this.metrics.downstreamErrors.inc({ kind });
        log.debug({ kind, peer: `${info.peerAddress}:${info.peerPort}`, detail }, 'waypoint: connection refused');
      },
      firstBytesTimeoutMs: l.firstBytesTimeoutMs,
    };
    if (opts.idleCompaction !== false) {
      const m = this.metrics;
      this.idle = new IdleCompactor({ answered: () => m.requestsServed(), inProgress: () => m.active }, {
        ...opts.idleCompaction,
        onCompacted: (c) => {
          this.metrics.idleCompacted(c.ms);
          log.debug({ ms: +c.ms.toFixed(1), youngBeforeMiB: +(c.youngBefore / 2 ** 20).toFixed(1), youngAfterMiB: +(c.youngAfter / 2 ** 20).toFixed(1) }, 'waypoint: idle after load, heap compacted');
        },
      });
    }
  }

  /** Start: read the configuration, bind the mesh port and the Gateway listeners. */
  static async start(opts: WaypointOptions, source: ConfigSource): Promise<Waypoint> {
    const w = new Waypoint(opts, source, opts.tracing ? await import('./observe/otlp.js') : undefined);
    try {
      if (opts.metricsAddress) w.admin = await AdminServer.start(opts.metricsAddress, w);
      w.mesh = await w.listen(opts.meshAddress ?? opts.listenAddress, opts.meshPort, 'mesh', 'mesh');
      if (w.mesh.error) throw Object.assign(new Error(`mesh port ${opts.meshAddress ?? opts.listenAddress}:${opts.meshPort}: ${w.mesh.error}`), { code: LISTEN_FAILED });
      await source.start((u) => { w.applying = w.applying.then(() => w.apply(u)); });
      await w.applying;
      w.idle?.start();
    } catch (e) {
      await w.stop(0);
      throw e;
    }
    return w;
  }

  get table(): RoutingTable {
    return this.tableInForce;
  }

  get configGeneration(): number {
    return this.generation;
  }

  /** The mesh port actually bound (when started with port 0). */
  get meshPort(): number {
    return this.mesh?.port ?? 0;
  }

  get adminPort(): number | undefined {
    return this.admin?.port;
  }

  /**
   * How old the configuration in force may be, in seconds: 0 while its source says it is
   * current (a watched directory, a connected agent feed); since the link to the agent was
   * lost otherwise; since start while there is none.
   */
  configAgeSeconds(): number {
    if (this.appliedAt === undefined) return (Date.now() - this.startedAt) / 1000;
    const stale = this.source.staleSince?.();
    return stale === undefined ? 0 : (Date.now() - stale) / 1000;
  }

  /** Ready: a configuration is in force and every listener is bound. */
  readiness(): { ready: boolean; reason: string } {
    if (this.stopping) return { ready: false, reason: 'stopping' };
    if (this.generation === 0) return { ready: false, reason: 'no configuration yet' };
    const failed = [...this.gatewaySockets.values()].filter((l) => l.error);
    if (failed.length > 0) return { ready: false, reason: failed.map((f) => `${f.address}:${f.port}: ${f.error}`).join('; ') };
    return { ready: true, reason: 'ok' };
  }

  /** What `kernway routes` shows: route and Gateway status, listeners, problems. */
  status(): StatusReport {
    return statusReport(this.tableInForce, this.generation, this.problems, [...this.gatewaySockets.values()].map((l) => ({ address: l.address, port: l.port, error: l.error })), this.mesh ? { address: this.mesh.address, port: this.mesh.port } : undefined);
  }

  /** Resolves once a configuration of at least `generation` is in force. */
  waitForGeneration(generation: number): Promise<void> {
    if (this.generation >= generation) return Promise.resolve();
    return new Promise((resolve) => {
      const on = (g: number): void => { if (g >= generation) { this.off(CONFIG_APPLIED, on); resolve(); } };
      this.on(CONFIG_APPLIED, on);
    });
  }

  private async apply(u: ConfigUpdate): Promise<void> {
    if (this.stopping) return;
    const log = this.opts.log;
    let table: RoutingTable;
    try {
      table = buildRoutingTable(u.config, { namespace: this.opts.namespace, listenAddress: this.opts.listenAddress, ...(this.opts.controllerName ? { controllerName: this.opts.controllerName } : {}) });
    } catch (e) {
      this.metrics.configReloads.inc({ result: 'failed' });
      const p: Problem = { code: CONFIG_FAILED, file: '', message: `the configuration could not be applied (the previous one stays): ${(e as Error).message}` };
      this.problems = [...this.problems.filter((x) => x.code !== CONFIG_FAILED), p];
      log.error({ err: (e as Error).message, stack: (e as Error).stack }, 'waypoint: configuration not applied; the last good one stays');
      u.settle?.(`${CONFIG_FAILED}: ${(e as Error).message}`);
      return;
    }
    this.appliedAt = Date.now();
    this.tableInForce = table;
    this.generation++;
    this.problems = [...u.sourceProblems, ...u.config.problems];
    this.metrics.configGeneration.set(this.generation);
    this.metrics.configApplied.set(Date.now() / 1000);
    this.metrics.configProblems.set(this.problems.length);
    this.metrics.configReloads.inc({ result: 'applied' });
    this.metrics.reset();
    await this.reconcileListeners(table);
    for (const p of u.sourceProblems) log.warn({ code: p.code, file: p.file, object: p.object, field: p.field }, p.message);
    log.info({ generation: this.generation, ...table.stats, problems: this.problems.length }, 'waypoint: configuration applied');
    u.settle?.();
    this.emit(CONFIG_APPLIED, this.generation);
    // The first configuration's burst (file text, parse trees, the source's first state) is garbage now: give its
    // pages back, once ready (a last-resort GC holds the process for 0.1-2 s; readiness does not wait for it).
    if (this.generation === 1) setImmediate(() => { if (!this.stopping) compactHeap(); });
  }

  /** Open the Gateway listener sockets the table needs, close those it no longer has. */
  private async reconcileListeners(table: RoutingTable): Promise<void> {
    for (const [key, l] of this.gatewaySockets) {
      if (table.ports.has(key)) continue;
      this.gatewaySockets.delete(key);
      l.server.close();
    }
    const opening: Promise<void>[] = [];
    for (const [key, bp] of table.ports) {
      const have = this.gatewaySockets.get(key);
      if (have && !have.error) continue;
      opening.push(this.listen(bp.address, bp.port, 'gateway', key).then((l) => {
        if (l.error) this.opts.log.error({ address: bp.address, port: bp.port, err: l.error }, 'waypoint: cannot listen for a Gateway listener');
        this.gatewaySockets.set(key, l);
      }));
    }
    await Promise.all(opening);
  }

  private listen(address: string, port: number, kind: ConnInfo['kind'], key: string): Promise<Listening> {
    return new Promise((resolve) => {
      const server = net.createServer({ noDelay: true, pauseOnConnect: false }, (socket) => {
        if (this.stopping) { socket.destroy(); return; }
        this.sockets.add(socket);
        this.metrics.connections.inc({ kind });
        socket.once('close', () => { this.sockets.delete(socket); this.metrics.connections.dec({ kind }); });
        accept(socket, kind, key, this.acceptHandlers);
      });
      server.once('error', (e: NodeJS.ErrnoException) => resolve({ server, address, port, error: `${e.code ?? 'error'}: ${e.message}` }));
      // exclusive: a worker of node:cluster binds its own socket (never the primary's);
      // reusePort: beside the other workers' (--workers), the kernel spreads connections.
      server.listen({ host: address, port, exclusive: true, ...(this.opts.worker !== undefined ? { reusePort: true } : {}) }, () => {
        server.removeAllListeners('error');
        server.on('error', (e) => this.opts.log.error({ err: e.message, address, port }, 'waypoint: listener error'));
        resolve({ server, address, port: (server.address() as net.AddressInfo).port, error: undefined });
      });
    });
  }

  /** node:http's 'clientError' (the --http1-server node path). */
  private clientError(err: NodeJS.ErrnoException, socket: Socket): void {
    const code = err.code ?? '';
    const [status, kind] = classifyClientError(code);
    this.clientErrorSeen(code, kind, socket, err.message);
    const busy = (socket as unknown as { _httpMessage?: unknown })._httpMessage !== undefined && (socket as unknown as { _httpMessage?: unknown })._httpMessage !== null;
    if (status === 0 || !socket.writable || busy) { socket.destroy(); return; }
    socket.end(refusalBytes(status));
  }

  private clientErrorSeen(code: string, kind: string, socket: Socket, detail: string): void {
    this.metrics.downstreamErrors.inc({ kind });
    const info = connOf(socket);
    this.opts.log.debug({ code, kind, peer: info ? `${info.peerAddress}:${info.peerPort}` : undefined, err: detail }, 'waypoint: malformed request refused');
  }

  /** Stop accepting, wait for requests in flight (up to `drainMs`), then close everything. */
  async stop(drainMs = this.opts.drainTimeoutMs): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.idle?.stop();
    this.source.close();
    for (const l of this.gatewaySockets.values()) l.server.close();
    this.mesh?.server.close();
    this.h1.closeIdleConnections();
    this.fast?.closeIdleConnections();
    this.h2.closeSessions();
    const deadline = Date.now() + drainMs;
    while (this.sockets.size > 0 && Date.now() < deadline) {
      this.h1.closeIdleConnections();
      this.fast?.closeIdleConnections();
      await new Promise((r) => setTimeout(r, 25));
    }
    for (const s of this.sockets) s.destroy();
    this.h1.close();
    this.fast?.close();
    this.h2.close();
    this.upstream.close();
    await this.admin?.close();
    await this.accessLog.close();
    await this.tracer?.shutdown().catch(() => undefined);
  }
}

