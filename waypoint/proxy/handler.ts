/**
 * One HTTP request through the waypoint: parent (Gateway listener or mesh destination),
 * caller identity, authorization, route rule, filters, backend choice, the exchange with
 * the backend (timeouts, retries, mirrors), the response (header filters, CORS), then
 * metrics and the access log. Works for HTTP/1.x and HTTP/2 callers alike (the waypoint's
 * own servers' request/response pairs, node:http's behind --http1-server node), and for
 * WebSocket upgrades.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { Logger } from '../../common/log.js';
import type { AccessEntry, AccessLog } from '../observe/access-log.js';
import type { WaypointMetrics } from '../observe/metrics.js';
import { continueTrace, lastIdAt, lastIdBytes, requestId, type TraceContext } from '../observe/trace.js';
import type { RequestTracer } from '../observe/otlp.js';
import type { Endpoint, ServiceTarget } from '../routing/backends.js';
import { requestHost } from '../routing/hostnames.js';
import type { MatchRequest } from '../routing/match.js';
import { parseTarget } from '../routing/path.js';
import { directRule, meshLookup, selectListener, type CompiledBackend, type CompiledMirror, type CompiledRule, type RoutingTable } from '../routing/table.js';
import type { AuthzRequest, Caller, Decision, Destination } from '../authz/evaluate.js';
import { connOf, type ConnInfo } from './accept.js';
import { FastRequest, FastResponse } from './h1-server.js';
import type { H2Request, H2Response } from './h2-server.js';
import { KwH2Response } from './h2-conn.js';
import type { Balancer } from './balancer.js';
import { endpointKey } from './balancer.js';
import { corsResponseHeaders, isPreflight, modifyPath, originAllowed, preflightHeaders, redirectLocation } from './filters.js';
import { applyModifier, forwardable, forwardableRequest, getHeader, hasHeader, modifierSendable, removeHeader, sameName, setHeader, toObject, type HeaderList } from './headers.js';
import { LiteBody, type BodySink } from './body.js';
import { UpstreamError, type UpstreamCall, type UpstreamPool, type UpstreamResponse, type UpstreamSink } from './upstream.js';
import { retryPlan, type CompiledTraffic, type RetryPlan } from '../resilience/compile.js';
import type { CircuitState, OutlierState, OverflowLimit, Resilience, TryOutcome, Waiter } from '../resilience/state.js';
import { Deadlines, type Timed } from '../resilience/deadlines.js';
// node:http as its CommonJS module: an ESM import of it reads its lazy `WebSocket` getters, which load undici (~2 MiB of RSS).
const http = process.getBuiltinModule('node:http');

type DownReq = IncomingMessage | FastRequest | H2Request;
/** FastResponse and H2Response have the members of ServerResponse the handler uses; they are handled as one. */
type DownRes = ServerResponse;

/** The request body as a stream: the request itself for node:http, its body for the waypoint's own HTTP/1.1 server, the stream for HTTP/2. */
function bodyOf(req: DownReq): Readable {
  return req instanceof FastRequest ? req.body : req.httpVersionMajor === 2 ? (req as H2Request).stream : req as IncomingMessage;
}

const KEEP_TE = new Set(['te']);
const KEEP_UPGRADE = new Set(['upgrade']);
/** Request bodies up to this size are buffered when a retry policy or a mirror needs to send them again. */
const REPLAY_LIMIT = 64 * 1024;
const MIRROR_LIMIT = 1024 * 1024;
const MAX_BACKOFF_MS = 10_000;

export interface HandlerDeps {
  table(): RoutingTable;
  balancer: Balancer;
  resilience: Resilience;
  upstream: UpstreamPool;
  metrics: WaypointMetrics;
  accessLog: AccessLog;
  log: Logger;
  /** Spans over OTLP (--otlp-endpoint); undefined: tracing off. */
  tracer?: RequestTracer | undefined;
}

/**
 * What is known about a request as it goes, for the access log (which reads its line from
 * it: AccessEntry's fields) and metrics.
 */
interface Exchange extends AccessEntry {
  start: number;
  conn: ConnInfo;
  trace: TraceContext | undefined;
  done: boolean;
  /** Told when the caller's response closes (one 'close' listener per request). */
  onClose: Closer | undefined;
  /** The circuit breaker whose request count this request holds until it ends. */
  circuit: CircuitState | undefined;
  /** The backend picked (its metric cell is found by it). */
  backend: CompiledBackend | undefined;
}

/** A routed request on its way to a backend: what the steps after routing need of it. */
interface Prepared {
  ex: Exchange;
  req: DownReq;
  res: DownRes;
  conn: ConnInfo;
  table: RoutingTable;
  path: string;
  query: string;
  authority: string | undefined;
  host: string | undefined;
  header: (name: string) => string | undefined;
  h2: boolean;
  rule: CompiledRule;
  backend: CompiledBackend;
  svc: ServiceTarget;
  corsHeaders: HeaderList | undefined;
  authz: AuthzRequest;
}

/** What goes on with a request when its caller's response closes (aborting the backend exchange when it was not finished). */
interface Closer {
  closed(): void;
}

/** The request as the backend gets it. */
interface Outgoing {
  method: string;
  url: string;
  headers: HeaderList;
  body: Readable | Buffer | undefined;
  protocol: ServiceTarget['protocol'];
}

interface Routed {
  rule: CompiledRule;
  /** Port for redirects without one: the listener's or the Service's. */
  port: number;
  parent: string;
}

export class RequestHandler {
  private readonly plans = new WeakMap<CompiledBackend, RetryPlan | null>();
  /** Timeouts of tries and responses under a policy: timestamps in lists, one timer per list. */
  readonly deadlines = new Deadlines();
  constructor(private readonly d: HandlerDeps) {}

  /** For the request's helpers in this module (Direct). */
  get deps(): HandlerDeps {
    return this.d;
  }

  /**
   * Entry point for both HTTP servers' 'request' events. A request that needs no waiting
   * of its own (no BackendTrafficPolicy, retry plan, timeout or buffered body) goes
   * through without a promise; the others continue in async functions.
   */
  readonly onRequest = (req: DownReq, response: DownRes | FastResponse | H2Response): void => {
    const res = response as DownRes;
    try {
      const pending = this.handle(req, res);
      if (pending) pending.catch((e: unknown) => this.failed(res, e));
    } catch (e) {
      this.failed(res, e);
    }
  };

  failed(res: DownRes, e: unknown): void {
    this.d.log.error({ err: (e as Error).message, stack: (e as Error).stack }, 'waypoint: request handler failed');
    try {
      if (!res.headersSent) { (res as ServerResponse).writeHead(500, { 'content-type': 'text/plain' }); res.end('internal error\n'); }
      else res.destroy();
    } catch { /* the connection is gone */ }
  }

  private handle(req: DownReq, res: DownRes): Promise<void> | void {
    const conn = connOf(req.socket);
    const h2 = req.httpVersionMajor === 2;
    const ex: Exchange = {
      start: performance.now(), conn: conn!, method: req.method ?? 'GET', path: '', protocol: h2 ? 'HTTP/2' : `HTTP/${req.httpVersion}`,
      route: 'none', rule: '', destination: 'unknown', upstream: undefined, source: 'unknown', parent: '', bytesIn: 0, bytesOut: 0,
      trace: undefined, requestId: '', requestIdHex: undefined, requestIdAt: -1, userAgent: undefined, reason: undefined, attempts: 0, done: false, onClose: undefined,
      flags: undefined, circuit: undefined, backend: undefined,
    };
    this.d.metrics.active++;
    res.once('close', () => { ex.onClose?.closed(); this.finish(ex, req, res); });
    if (!conn) return this.local(ex, res, 500, 'no_connection_info', 'internal error');
    const table = this.d.table();

    const target = parseTarget(req.url ?? '');
    if (!target) return this.local(ex, res, 400, 'bad_request', 'malformed request target');
    ex.path = target.path;
    const raw = req.rawHeaders;
    const header = headerOf(req);
    let authority: string | undefined;
    if (h2) authority = (req.headers[':authority'] as string | undefined) ?? (req.headers.host as string | undefined);
    else {
      let hosts = 0;
      for (let i = 0; i < raw.length; i += 2) if (raw[i] === 'Host' || sameName(raw[i]!, 'host')) hosts++;
      if (hosts > 1) return this.local(ex, res, 400, 'bad_request', 'more than one Host header');
      authority = target.authority ?? header('host');
      if (authority === undefined && req.httpVersion === '1.1') return this.local(ex, res, 400, 'bad_request', 'missing Host header');
    }
    const host = requestHost(authority);
    if (authority !== undefined && authority !== '' && host === undefined) return this.local(ex, res, 400, 'bad_request', 'malformed Host header');
    const mreq: MatchRequest = { path: target.path, query: target.query, method: ex.method, header };
    ex.trace = continueTrace(header('traceparent'), this.d.tracer?.sampleNew);
    const rid = header('x-request-id');
    if (rid !== undefined) ex.requestId = rid;
    else { ex.requestId = requestId(); ex.requestIdHex = lastIdBytes(); ex.requestIdAt = lastIdAt(); }
    ex.userAgent = header('user-agent');

    const id = table.pods.get(conn.peerAddress)?.identity;
    if (id) ex.source = id.workload;
    const caller: Caller = { address: conn.peerAddress, namespace: id?.namespace, serviceAccount: id?.serviceAccount };

    const routed = this.route(table, conn, host, mreq, ex);
    if (typeof routed === 'number') return this.local(ex, res, routed, routed === 404 ? 'no_route' : 'no_destination', routed === 404 ? 'no route matched' : 'unknown destination');
    const { rule } = routed;
    ex.route = rule.route;
    ex.rule = rule.rule;
    ex.parent = routed.parent;

    // CORS: preflights are answered here; allowed origins get headers on the response.
    let corsHeaders: HeaderList | undefined;
    if (rule.cors) {
      const origin = header('origin');
      if (origin !== undefined) {
        const allowed = originAllowed(rule.cors, origin);
        const acrm = header('access-control-request-method');
        if (isPreflight(ex.method, origin, acrm)) {
          return this.local(ex, res, 204, 'cors_preflight', '', allowed ? preflightHeaders(rule.cors, origin, acrm!, header('access-control-request-headers')) : []);
        }
        if (allowed) corsHeaders = corsResponseHeaders(rule.cors, origin);
      }
    }

    if (rule.redirect) {
      const location = redirectLocation(rule.redirect, {
        scheme: 'http', host, port: routed.port, path: target.path, query: target.query, prefix: rule.prefix, fallbackHost: conn.localAddress,
      });
      const h: HeaderList = ['location', location];
      applyModifier(h, rule.responseHeaders);
      return this.local(ex, res, rule.redirect.statusCode, 'redirect', '', h);
    }

    const backend = this.d.balancer.pickBackend(rule);
    if (!backend) return this.local(ex, res, 500, 'no_backend', 'the matched rule has no backend');
    if (backend.redirect) {
      const location = redirectLocation(backend.redirect, {
        scheme: 'http', host, port: routed.port, path: target.path, query: target.query, prefix: rule.prefix, fallbackHost: conn.localAddress,
      });
      const h: HeaderList = ['location', location];
      applyModifier(h, rule.responseHeaders);
      applyModifier(h, backend.responseHeaders);
      return this.local(ex, res, backend.redirect.statusCode, 'redirect', '', h);
    }
    if (!backend.target) return this.local(ex, res, 500, 'invalid_backend', `backend unavailable: ${backend.failure?.message ?? 'unresolved'}`);
    const svc = backend.target;
    ex.destination = svc.label;
    ex.backend = backend;
    const authz: AuthzRequest = { caller, method: ex.method, path: target.path, host, header };
    const pr: Prepared = { ex, req, res, conn, table, path: target.path, query: target.query, authority, host, header, h2, rule, backend, svc, corsHeaders, authz };
    if (backend.traffic !== undefined) return this.admitted(pr, backend.traffic);
    return this.proceed(pr);
  }

  /** A BackendTrafficPolicy's faults and rate limits first (a promise only when a fault delay applies). */
  private admitted(pr: Prepared, traffic: CompiledTraffic): Promise<void> | void {
    const a = this.admit(pr.ex, pr.res, traffic, pr.header, pr.conn.peerAddress);
    if (a === true) return;
    if (a === false) return this.proceed(pr);
    return a.then((answered) => (answered ? undefined : this.proceed(pr)));
  }

  /** The request as the backend gets it, its body (streamed, or buffered when it has to be sent more than once), then the exchange. */
  private proceed(pr: Prepared): Promise<void> | void {
    const { ex, req, conn, header, h2, rule, backend, svc } = pr;
    let path = pr.path;
    let outHost = pr.authority ?? pr.host ?? conn.localAddress;
    // The rule's rewrite, then the backend's (no array per request).
    const rw1 = rule.rewrite, rw2 = backend.rewrite;
    if (rw1) { path = modifyPath(path, rw1.path, rule.prefix); if (rw1.hostname) outHost = rw1.hostname; }
    if (rw2) { path = modifyPath(path, rw2.path, rule.prefix); if (rw2.hostname) outHost = rw2.hostname; }
    const grpc = (header('content-type') ?? '').startsWith('application/grpc');
    const headers: HeaderList = ['Host', outHost];
    const fwd = forwardableRequest(req.rawHeaders, h2 || grpc ? KEEP_TE : undefined, headers);
    if (rule.requestHeaders || backend.requestHeaders) {
      applyModifier(headers, rule.requestHeaders);
      applyModifier(headers, backend.requestHeaders);
      const set = getHeader(headers, 'x-forwarded-for');
      if (set !== undefined) { removeHeader(headers, 'x-forwarded-for'); fwd.xff = set; }
    }
    headers.push('x-forwarded-for', fwd.xff !== undefined ? `${fwd.xff}, ${conn.peerAddress}` : conn.peerAddress, 'x-forwarded-proto', 'http');
    if (fwd.requestId === undefined) headers.push('x-request-id', ex.requestId);
    headers.push('traceparent', ex.trace!.header);
    const url = pr.query !== '' ? `${path}?${pr.query}` : path;
    const out: Outgoing = { method: ex.method, url, headers, body: undefined, protocol: grpc ? 'h2c' : svc.protocol };

    const contentLength = h2 ? undefined : header('content-length');
    const hasBody = h2 ? !(req as H2Request).endAfterHeaders : (contentLength !== undefined && contentLength !== '0') || header('transfer-encoding') !== undefined;
    const allMirrors = backend.mirrors.length === 0 ? rule.mirrors : [...rule.mirrors, ...backend.mirrors];
    const mirrors = allMirrors.length === 0 ? allMirrors : allMirrors.filter((m) => m.target !== undefined && (m.percent >= 100 || Math.random() * 100 < m.percent));
    if (hasBody) {
      const stream = bodyOf(req);
      stream.on('data', (c: Buffer) => { ex.bytesIn += c.length; });
      const declared = Number(h2 ? header('content-length') ?? Number.NaN : contentLength ?? Number.NaN);
      const wantReplay = (rule.retry !== undefined && declared <= REPLAY_LIMIT) || (mirrors.length > 0 && declared <= MIRROR_LIMIT);
      // The counter above would set the stream flowing at once, and chunks emitted before the
      // upstream attaches its own reader (after connecting a fresh backend connection) would be
      // lost; paused, the stream waits for whoever sends it (h1-client resumes, pipe() resumes).
      if (wantReplay) return this.buffered(pr, out, stream, mirrors);
      stream.pause();
      out.body = stream;
    }
    return this.forward(pr, out, mirrors);
  }

  private async buffered(pr: Prepared, out: Outgoing, stream: Readable, mirrors: readonly CompiledMirror[]): Promise<void> {
    out.body = await readAll(stream);
    return this.forward(pr, out, mirrors);
  }

  /** Mirrors get a copy of the request (a buffered body only). */
  sendMirrors(ex: Exchange, mirrors: readonly CompiledMirror[], out: Outgoing): void {
    for (const m of mirrors) {
      if (out.body !== undefined && !Buffer.isBuffer(out.body)) { this.d.metrics.mirrored.inc({ destination_service: `${m.target!.namespace}/${m.target!.name}`, result: 'dropped' }); continue; }
      this.mirror(m.target!, ex.method, out.url, out.headers, out.body);
    }
  }

  /** To the backend: directly (no policy, retry plan or timeout: no promise), or through the resilience loop. */
  private forward(pr: Prepared, out: Outgoing, mirrors: readonly CompiledMirror[]): Promise<void> | void {
    const { rule, backend } = pr;
    const plan = this.planOf(rule, backend);
    if (backend.traffic === undefined && plan === undefined && !rule.requestTimeoutMs && !rule.backendRequestTimeoutMs) {
      new Direct(this, pr, out, mirrors).send();
      return;
    }
    new Guarded(this, pr, out, mirrors, plan).start();
  }

  /** The parent and rule of a request, or a status when there is none. */
  private route(table: RoutingTable, conn: ConnInfo, host: string | undefined, mreq: MatchRequest, ex: Exchange): Routed | number {
    if (conn.kind === 'gateway') {
      const bp = table.ports.get(conn.bind);
      const entry = bp && selectListener(bp, host);
      if (!entry) return 404;
      ex.parent = entry.listeners[0]!;
      const m = entry.table.lookup(host, mreq);
      if (!m) return 404;
      return { rule: m.target, port: entry.port, parent: entry.listeners[0]! };
    }
    const dst = conn.destination!;
    const mp = table.mesh.get(`${dst.address}:${dst.port}`);
    if (mp) {
      ex.parent = `${mp.namespace}/${mp.service}:${mp.port}`;
      const callerNs = table.pods.get(conn.peerAddress)?.identity.namespace;
      const { rule } = meshLookup(mp, callerNs, mreq);
      if (!rule) return 404;
      return { rule, port: mp.port, parent: ex.parent };
    }
    // A namespace using the kernel hand-off: only its bound Services are destinations.
    if (table.strictMesh) return 403;
    const direct = directRule(table, dst.address, dst.port);
    if (!direct) return 503;
    return { rule: direct.rule, port: dst.port, parent: direct.parent };
  }

  /** The retry plan of a backend of a rule (memoised: it depends on them alone). */
  private planOf(rule: CompiledRule, backend: CompiledBackend): RetryPlan | undefined {
    if (rule.retry === undefined && backend.traffic?.retry === undefined) return undefined;
    let p = this.plans.get(backend);
    if (p === undefined) this.plans.set(backend, (p = retryPlan(rule.retry, backend.traffic?.retry, MAX_BACKOFF_MS) ?? null));
    return p ?? undefined;
  }

  /** Outlier detection: a try's outcome for its endpoint; counts an ejection. */
  eject(od: OutlierState | undefined, traffic: CompiledTraffic | undefined, svc: ServiceTarget, ex: Exchange, o: TryOutcome): void {
    if (od === undefined || ex.upstream === undefined) return;
    if (od.report(ex.upstream, o, traffic!.outlier!, svc.endpoints.length, performance.now())) {
      this.d.metrics.outlierEjections.inc({ destination_service: ex.destination });
      this.d.log.info({ destination: ex.destination, endpoint: ex.upstream }, 'waypoint: endpoint ejected by outlier detection');
    }
  }

  /** 503 at once: a circuit breaker limit is reached (response flag UO). */
  overflow(ex: Exchange, res: DownRes, limit: OverflowLimit): void {
    ex.flags = 'UO';
    this.d.metrics.overflow.inc({ destination_service: ex.destination, limit });
    this.local(ex, res, 503, 'overflow', `upstream overflow: circuit breaker ${limit} reached`, ['x-envoy-overloaded', 'true', 'x-kernway-overflow', limit]);
  }

  /**
   * A BackendTrafficPolicy's work before forwarding: fault injection (delay, then abort)
   * and local rate limits. True when the request has been answered here.
   */
  private admit(ex: Exchange, res: DownRes, traffic: CompiledTraffic, header: (name: string) => string | undefined, address: string): Promise<boolean> | boolean {
    const fault = traffic.fault;
    if (fault?.delay !== undefined && hit(fault.delay.percentage)) {
      ex.flags = 'DI';
      this.d.metrics.faults.inc({ destination_service: ex.destination, kind: 'delay' });
      return new Promise<void>((r) => setTimeout(r, fault.delay!.fixedDelayMs).unref()).then(() => ex.done || this.admitAfterDelay(ex, res, traffic, header, address));
    }
    return this.admitAfterDelay(ex, res, traffic, header, address);
  }

  /** admit() after the fault delay (if any): fault abort, then local rate limits. */
  private admitAfterDelay(ex: Exchange, res: DownRes, traffic: CompiledTraffic, header: (name: string) => string | undefined, address: string): boolean {
    const fault = traffic.fault;
    if (fault !== undefined) {
      if (fault.abort !== undefined && hit(fault.abort.percentage)) {
        ex.flags = ex.flags === undefined ? 'FI' : `${ex.flags},FI`;
        this.d.metrics.faults.inc({ destination_service: ex.destination, kind: 'abort' });
        const a = fault.abort;
        if (a.httpStatus !== undefined) this.local(ex, res, a.httpStatus, 'fault_abort', 'fault filter abort');
        else this.local(ex, res, 200, 'fault_abort', '', ['content-type', 'application/grpc', 'grpc-status', String(a.grpcStatus), 'grpc-message', 'fault filter abort']);
        return true;
      }
    }
    const rl = traffic.rateLimit;
    if (rl !== undefined) {
      const wait = this.d.resilience.limiter.check(rl, header, address, performance.now());
      if (wait > 0) {
        ex.flags = ex.flags === undefined ? 'RL' : `${ex.flags},RL`;
        this.d.metrics.rateLimited.inc({ destination_service: ex.destination, policy: rl.policy });
        this.local(ex, res, 429, 'rate_limited', 'local rate limit exceeded', ['retry-after', String(wait), 'x-envoy-ratelimited', 'true']);
        return true;
      }
    }
    return false;
  }

  /** Authorization for the workload behind an endpoint (its Pod's labels, or its Service's namespace alone). */
  authorize(table: RoutingTable, svc: ServiceTarget, ep: Endpoint, req: AuthzRequest): Decision {
    const pod = table.pods.get(ep.address)?.pod;
    const dest: Destination = pod ? { namespace: pod.namespace, labels: pod.labels, port: ep.port } : { namespace: svc.namespace, labels: {}, port: ep.port };
    const d = table.authz.evaluate(dest, req);
    if (!d.allowed) this.d.metrics.denied.inc({ policy: d.policy ?? '', destination_service: svc.label });
    return d;
  }

  /** Send the backend's response on: status, filtered headers, body, trailers. */
  respond(
    ex: Exchange, res: DownRes, rule: CompiledRule, backend: CompiledBackend, up: UpstreamResponse,
    corsHeaders: HeaderList | undefined, h2: boolean, done: () => void,
  ): Relay {
    const headers = forwardable(up.headers);
    applyModifier(headers, rule.responseHeaders);
    applyModifier(headers, backend.responseHeaders);
    if (corsHeaders) for (let i = 0; i < corsHeaders.length; i += 2) setHeader(headers, corsHeaders[i]!, corsHeaders[i + 1]!);
    ex.reason = undefined;
    // Names and values from the strict parser and from modifiers checked once need no check when written.
    const checked = up.checked === true && corsHeaders === undefined && modifierSendable(rule.responseHeaders) && modifierSendable(backend.responseHeaders);
    const r = new Relay(this, ex, res, up, headers, done, checked);
    // gRPC "trailers-only" answers (grpc-status in the response head, no body) must reach an
    // HTTP/2 caller as one HEADERS frame that ends the stream: the head is sent with end().
    const trailersOnly = h2 && hasHeader(headers, 'grpc-status');
    if (!trailersOnly && !r.sendHead()) return r;
    const body = up.body;
    ex.onClose = r;
    if (body instanceof LiteBody) { body.attach(r); return r; }
    body.on('data', (chunk: Buffer) => r.bodyData(chunk));
    body.once('end', () => r.bodyEnd());
    body.once('error', () => r.bodyError());
    body.once('close', () => r.bodyClose());
    return r;
  }

  /** A response head from the backend that cannot be sent on: 502 when nothing is sent yet. */
  badHead(ex: Exchange, res: DownRes, up: UpstreamResponse, e: unknown): void {
    ex.reason = 'bad_upstream_headers';
    up.abort();
    this.d.log.warn({ err: (e as Error).message, upstream: ex.upstream }, 'waypoint: backend response headers cannot be sent on');
    if (!res.headersSent) this.local(ex, res, 502, 'bad_upstream_headers', 'invalid response from backend');
  }

  private mirror(t: ServiceTarget, method: string, url: string, headers: HeaderList, body: Buffer | undefined): void {
    const ep = this.d.balancer.pickEndpoint(t);
    const label = `${t.namespace}/${t.name}`;
    if (!ep) { this.d.metrics.mirrored.inc({ destination_service: label, result: 'dropped' }); return; }
    const h = [...headers];
    const exch = this.d.upstream.request({ endpoint: ep, protocol: t.protocol, method, path: url, headers: h, body });
    exch.response.then(
      (r) => { r.body.resume(); this.d.metrics.mirrored.inc({ destination_service: label, result: 'sent' }); },
      () => { this.d.metrics.mirrored.inc({ destination_service: label, result: 'failed' }); },
    );
  }

  /** A response from the waypoint itself. */
  local(ex: Exchange, res: DownRes, status: number, reason: string, message: string, extra?: HeaderList): void {
    ex.reason = reason;
    if (res.headersSent) { res.destroy(); return; }
    const body = message === '' || status === 204 || status === 304 ? '' : `${message}\n`;
    const h: HeaderList = extra ? [...extra] : [];
    if (body !== '') h.push('content-type', 'text/plain; charset=utf-8');
    if (status !== 204 && status !== 304) h.push('content-length', String(Buffer.byteLength(body)));
    try {
      res.writeHead(status, h as unknown as OutgoingHttpHeaders);
      res.end(body);
    } catch {
      res.destroy();
    }
    ex.bytesOut += Buffer.byteLength(body);
  }

  private finish(ex: Exchange, _req: DownReq, res: DownRes): void {
    if (ex.done) return;
    ex.done = true;
    if (ex.circuit !== undefined) ex.circuit.requests--;
    this.d.metrics.active--;
    const status = res.writableFinished ? res.statusCode : ex.reason === 'client_closed' || !res.headersSent ? 499 : res.statusCode;
    const seconds = (performance.now() - ex.start) / 1000;
    if (this.d.tracer && ex.trace) {
      this.d.tracer.finish({ trace: ex.trace, method: ex.method, path: ex.path, route: ex.route, status, protocol: ex.protocol, destination: ex.destination,
        upstream: ex.upstream, source: ex.source, start: ex.start, durationMs: seconds * 1000, userAgent: ex.userAgent });
    }
    this.d.metrics.observe({ route: ex.route, destination: ex.destination, code: status, source: ex.source, upstream: ex.upstream, flags: ex.flags, via: ex.backend }, seconds, ex.bytesIn, ex.bytesOut);
    if (this.d.accessLog.enabled) this.d.accessLog.request(ex, status, Math.round(seconds * 1e6) / 1000);
  }

  // ---------------------------------------------------------------- WebSocket (HTTP/1.1 Upgrade)

  /** The HTTP/1.1 server's 'upgrade' event: WebSocket is proxied; other upgrades (h2c) are ignored. */
  readonly onUpgrade = (req: IncomingMessage | FastRequest, socket: Socket, head: Buffer): void => {
    const upgrade = (headerOf(req)('upgrade') ?? '').toLowerCase();
    if (upgrade !== 'websocket' && !(req instanceof FastRequest)) {
      // RFC 9110 §7.8: a server may ignore Upgrade; answer the request over HTTP/1.1.
      if (head.length > 0) socket.unshift(head);
      const res = new http.ServerResponse(req);
      res.shouldKeepAlive = false;
      res.assignSocket(socket);
      res.once('finish', () => socket.end());
      this.onRequest(req, res);
      return;
    }
    this.upgrade(req, socket, head).catch((e: unknown) => {
      this.d.log.error({ err: (e as Error).message }, 'waypoint: upgrade failed');
      socket.destroy();
    });
  };

  private async upgrade(req: IncomingMessage | FastRequest, socket: Socket, head: Buffer): Promise<void> {
    const conn = connOf(socket);
    const table = this.d.table();
    socket.on('error', () => socket.destroy());
    const refuse = (status: number, msg: string): void => {
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: text/plain\r\ncontent-length: ${msg.length + 1}\r\nconnection: close\r\n\r\n${msg}\n`);
    };
    const target = parseTarget(req.url ?? '');
    if (!conn || !target) return refuse(400, 'malformed request');
    const header = headerOf(req);
    const authority = target.authority ?? header('host');
    const host = requestHost(authority);
    const mreq: MatchRequest = { path: target.path, query: target.query, method: req.method ?? 'GET', header };
    const ex = { parent: '' } as Exchange;
    const routed = this.route(table, conn, host, mreq, ex);
    if (typeof routed === 'number') return refuse(routed, 'no route');
    const id = table.pods.get(conn.peerAddress)?.identity;
    const rule = routed.rule;
    if (rule.redirect) {
      const loc = redirectLocation(rule.redirect, { scheme: 'http', host, port: routed.port, path: target.path, query: target.query, prefix: rule.prefix, fallbackHost: conn.localAddress });
      socket.end(`HTTP/1.1 ${rule.redirect.statusCode} ${http.STATUS_CODES[rule.redirect.statusCode]}\r\nlocation: ${loc}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
      return;
    }
    const backend = this.d.balancer.pickBackend(rule);
    if (!backend?.target) return refuse(500, 'no usable backend');
    const svc = backend.target;
    const ep = this.d.balancer.pickEndpoint(svc);
    if (!ep) return refuse(503, 'no endpoint');
    if (!table.authz.empty) {
      const caller: Caller = { address: conn.peerAddress, namespace: id?.namespace, serviceAccount: id?.serviceAccount };
      const d = this.authorize(table, svc, ep, { caller, method: mreq.method, path: target.path, host, header });
      if (!d.allowed) return refuse(403, 'access denied by AuthorizationPolicy');
    }
    let path = target.path;
    let outHost = authority ?? host ?? conn.localAddress;
    for (const rw of [rule.rewrite, backend.rewrite]) {
      if (!rw) continue;
      path = modifyPath(path, rw.path, rule.prefix);
      if (rw.hostname) outHost = rw.hostname;
    }
    const headers = forwardable(req.rawHeaders, KEEP_UPGRADE);
    removeHeader(headers, 'host');
    headers.unshift('Host', outHost);
    applyModifier(headers, rule.requestHeaders);
    applyModifier(headers, backend.requestHeaders);
    headers.push('Connection', 'Upgrade');
    setHeader(headers, 'traceparent', continueTrace(header('traceparent')).header);
    const done = this.d.balancer.begin(svc, ep);
    const start = performance.now();
    const source = id?.workload ?? 'unknown';
    const destination = `${svc.namespace}/${svc.name}`;
    const up = http.request({ host: ep.address, port: ep.port, method: req.method, path: target.query ? `${path}?${target.query}` : path, headers: headers as unknown as OutgoingHttpHeaders, agent: false, setHost: false });
    const record = (code: number): void => {
      done();
      this.d.metrics.observe({ route: rule.route, destination, code, source, upstream: endpointKey(ep) }, (performance.now() - start) / 1000, 0, 0);
    };
    up.once('upgrade', (ures, usock, uhead) => {
      const rh = forwardable(ures.rawHeaders, KEEP_UPGRADE);
      applyModifier(rh, rule.responseHeaders);
      applyModifier(rh, backend.responseHeaders);
      let head101 = `HTTP/1.1 101 Switching Protocols\r\n`;
      for (let i = 0; i < rh.length; i += 2) head101 += `${rh[i]}: ${rh[i + 1]}\r\n`;
      head101 += 'Connection: Upgrade\r\n\r\n';
      socket.write(head101);
      if (uhead.length > 0) socket.write(uhead);
      if (head.length > 0) usock.write(head);
      socket.setTimeout(0);
      usock.on('error', () => socket.destroy());
      usock.pipe(socket);
      socket.pipe(usock);
      socket.once('close', () => usock.destroy());
      usock.once('close', () => socket.destroy());
      record(101);
    });
    up.once('response', (ures) => {
      // The backend declined the upgrade: pass its answer on and close.
      let s = `HTTP/1.1 ${ures.statusCode} ${ures.statusMessage}\r\n`;
      const rh = forwardable(ures.rawHeaders);
      for (let i = 0; i < rh.length; i += 2) s += `${rh[i]}: ${rh[i + 1]}\r\n`;
      socket.write(`${s}connection: close\r\n\r\n`);
      ures.pipe(socket);
      record(ures.statusCode ?? 502);
    });
    up.once('error', (e: NodeJS.ErrnoException) => {
      refuse(e.code === 'ECONNREFUSED' ? 503 : 502, 'upstream connect error');
      record(e.code === 'ECONNREFUSED' ? 503 : 502);
    });
    up.end();
  }
}

/**
 * A backend's response on its way to the caller: head (when the first byte or the end
 * comes), body chunks, trailers, the end. One object per response, its methods the body's
 * listeners (a LiteBody calls them directly; other bodies through small listeners).
 */
class Relay implements BodySink, Closer {
  headSent = false;

  constructor(
    private readonly h: RequestHandler, private readonly ex: Exchange, private readonly res: DownRes,
    private readonly up: UpstreamResponse, private readonly headers: HeaderList, private readonly done: () => void,
    private readonly checked: boolean,
  ) {}

  /** The head, to the caller's response: known-valid headers are not checked again by the waypoint's own HTTP/1.1 and HTTP/2 servers. */
  private writeHead(): void {
    const res = this.res as unknown as FastResponse | KwH2Response | DownRes;
    if (res instanceof FastResponse) res.writeHead(this.up.status, this.headers, this.checked);
    else if (res instanceof KwH2Response) res.writeHead(this.up.status, this.headers, this.checked);
    else res.writeHead(this.up.status, this.headers as unknown as OutgoingHttpHeaders);
  }

  end(): void {
    this.done();
  }

  /** The backend request timeout (which covers the whole response) ran out before the response ended: it is reset. */
  timeout(): void {
    // (Aborting ends the body with an error at once, which would log upstream_reset: the reason is set after.)
    this.up.abort();
    this.res.destroy();
    this.ex.reason = 'backend_timeout';
    this.end();
  }

  closed(): void {
    if (!this.res.writableFinished) { this.up.abort(); this.end(); }
  }

  sendHead(): boolean {
    if (this.headSent) return true;
    this.headSent = true;
    try {
      this.writeHead();
      return true;
    } catch (e) {
      this.h.badHead(this.ex, this.res, this.up, e);
      this.end();
      return false;
    }
  }

  bodyData(chunk: Buffer): void {
    if (!this.headSent && !this.sendHead()) return;
    this.ex.bytesOut += chunk.length;
    const res = this.res as ServerResponse;
    if (!res.write(chunk)) {
      const body = this.up.body;
      body.pause();
      res.once('drain', () => body.resume());
    }
  }

  bodyEnd(): void {
    const { res, up } = this;
    const t = up.trailers();
    if (!this.headSent && t.length === 0) {
      // HTTP/2 with no body and no trailers: the head ends the stream (one HEADERS frame).
      this.writeHead();
      res.end();
      this.end();
      return;
    }
    if (!this.sendHead()) return;
    if (t.length > 0) {
      try { res.addTrailers(toObject(forwardable(t)) as unknown as OutgoingHttpHeaders); } catch { /* not representable downstream */ }
    }
    res.end();
    this.end();
  }

  bodyError(): void {
    this.ex.reason = 'upstream_reset';
    this.res.destroy();
    this.end();
  }

  bodyClose(): void {
    if (this.up.body.readableEnded) return;
    this.ex.reason ??= 'upstream_reset';
    this.res.destroy();
    this.end();
  }
}

/**
 * A request forwarded without a BackendTrafficPolicy, retry plan or timeout (the common
 * case): one object per request is the sink of its tries, no promise. Failures are handled
 * as the resilience loop handles them without a plan: one free retry when a pooled
 * connection turned out closed, another endpoint after a connect error, else 503/502.
 */
class Direct implements UpstreamSink, Closer {
  private attempt = 0;
  private freeRetries = 1;
  private tried: Set<string> | undefined;
  private call: UpstreamCall | undefined;
  private done: (() => void) | undefined;
  private gone = false;

  constructor(private readonly h: RequestHandler, private readonly pr: Prepared, private readonly out: Outgoing, private readonly mirrors: readonly CompiledMirror[]) {}

  send(): void {
    const { h, pr, out } = this;
    const { ex, res, svc, table } = pr;
    const d = h.deps;
    if (this.attempt === 0) ex.onClose = this;
    const ep = d.balancer.pickEndpoint(svc, this.tried);
    if (!ep) { ex.flags = 'UH'; h.local(ex, res, 503, 'no_endpoints', `no endpoint for ${svc.key}`); return; }
    const key = endpointKey(ep);
    ex.upstream = key;
    if (!table.authz.empty && !h.authorize(table, svc, ep, pr.authz).allowed) { h.local(ex, res, 403, 'denied', 'access denied by AuthorizationPolicy'); return; }
    if (this.attempt === 0 && this.mirrors.length > 0) h.sendMirrors(ex, this.mirrors, out);
    this.attempt++;
    ex.attempts++;
    if (this.attempt > 1) (this.tried ??= new Set()).add(key);
    this.done = d.balancer.begin(svc, ep);
    this.call = d.upstream.send({ endpoint: ep, protocol: out.protocol, method: out.method, path: out.url, headers: out.headers, body: out.body }, this);
  }

  onResponse(up: UpstreamResponse): void {
    const { ex, res, rule, backend, corsHeaders, h2 } = this.pr;
    if (this.gone) { this.done!(); up.abort(); ex.reason = 'client_closed'; return; }
    this.h.respond(ex, res, rule, backend, up, corsHeaders, h2, this.done!);
  }

  closed(): void {
    if (!this.pr.res.writableFinished) { this.gone = true; this.call?.abort(); }
  }

  onError(err: unknown): void {
    const { h, pr, out } = this;
    const { ex, res, svc } = pr;
    this.done!();
    if (this.gone) { ex.reason = 'client_closed'; return; }
    const e = err instanceof UpstreamError ? err : new UpstreamError('reset', String(err), undefined, false);
    h.deps.metrics.upstreamErrors.inc({ destination_service: ex.destination, kind: e.kind });
    const replayable = out.body === undefined || Buffer.isBuffer(out.body);
    (this.tried ??= new Set()).add(ex.upstream!);
    if (replayable && e.retryable && e.kind === 'reset' && this.freeRetries > 0) { this.freeRetries--; this.attempt--; this.send(); return; }
    if (replayable && e.kind === 'connect' && this.attempt === 1 && this.tried.size < svc.endpoints.length) {
      h.deps.metrics.retries.inc({ destination_service: ex.destination });
      this.send();
      return;
    }
    h.local(ex, res, e.kind === 'connect' ? 503 : 502, `upstream_${e.kind}`, `upstream ${e.kind === 'connect' ? 'connect error' : 'error'}: ${e.message}`);
  }
}

/**
 * A request forwarded under a BackendTrafficPolicy, a retry plan or timeouts: the tries,
 * each one's outcome (its sink), retries with backoff, the circuit breaker, outlier
 * detection, the try's timeout. A state machine with no promise: when the first try
 * answers in time (the common case) nothing waits but the upstream, and timeouts are
 * deadlines in the handler's lists (the object itself is the entry), not a timer per try.
 * Waiting (a pending queue, a backoff) is the uncommon case and uses a timer or the queue.
 */
class Guarded implements UpstreamSink, Timed, Closer, Waiter {
  dlAt = 0;
  dlPrev: Timed | undefined = undefined;
  dlNext: Timed | undefined = undefined;
  dlList: Timed['dlList'] = undefined;

  private readonly replayable: boolean;
  private readonly traffic: CompiledTraffic | undefined;
  private readonly maxAttempts: number;
  private readonly requestTimeoutMs: number | undefined;
  private readonly deadline: number | undefined;
  private readonly tryTimeoutMs: number | undefined;
  private readonly cs: CircuitState | undefined;
  private readonly od: OutlierState | undefined;
  /** The current try's number (1-based; a free retry keeps it). */
  private attempt = 0;
  private freeRetries = 1;
  /** Endpoints of the tries so far (made at the first failure). */
  private tried: Set<string> | undefined;
  private call: UpstreamCall | undefined;
  /** Bumped per try: a callback of an earlier try changes nothing. */
  private gen = 0;
  /** No try in flight (its outcome is known, or none was sent). */
  private settled = true;
  /** In the circuit breaker's pending queue. */
  private waiting = false;
  private gone = false;
  /** The current try holds a circuit breaker connection, counts as a retry, holds the balancer's count (until tryDone). */
  private slot = false;
  private isRetry = false;
  private lbDone: (() => void) | undefined;
  /** The current try's end (ms, performance.now()) and the duration it came from; undefined: no timeout. */
  private tryEnd: number | undefined;
  private tryDuration = 0;
  /** The response on its way to the caller; the try's deadline (still in its list) then covers it. */
  private relay: Relay | undefined;

  constructor(
    private readonly h: RequestHandler, private readonly pr: Prepared, private readonly out: Outgoing,
    private readonly mirrors: readonly CompiledMirror[], private readonly plan: RetryPlan | undefined,
  ) {
    const { rule, backend, ex, svc } = pr;
    this.replayable = out.body === undefined || Buffer.isBuffer(out.body);
    this.traffic = backend.traffic;
    this.maxAttempts = 1 + (plan && this.replayable ? plan.retries : 0);
    this.requestTimeoutMs = rule.requestTimeoutMs ?? this.traffic?.requestTimeoutMs;
    this.deadline = this.requestTimeoutMs ? ex.start + this.requestTimeoutMs : undefined;
    this.tryTimeoutMs = rule.backendRequestTimeoutMs ?? plan?.perTryTimeoutMs;
    // The circuit breaker's counters are kept whenever a policy applies (the retry budget needs them too).
    const d = h.deps;
    this.cs = this.traffic !== undefined ? d.resilience.circuit(svc.key) : undefined;
    this.od = this.traffic?.outlier !== undefined ? d.resilience.outlier(svc.key) : undefined;
  }

  start(): void {
    const { ex, res } = this.pr;
    ex.onClose = this;
    const cs = this.cs;
    if (cs !== undefined) {
      const limits = this.traffic!.circuit;
      if (limits !== undefined && cs.requests >= limits.maxParallelRequests) { this.h.overflow(ex, res, 'maxParallelRequests'); return; }
      cs.requests++;
      ex.circuit = cs;
    }
    this.next();
  }

  /** The next try: a connection from the circuit breaker (at once, after a wait in the pending queue, or 503 overflow), then send. */
  private next(): void {
    this.attempt++;
    this.slot = false;
    const limits = this.traffic?.circuit;
    if (this.cs !== undefined && limits !== undefined) {
      const a = this.cs.acquire(limits, this);
      if (a === 'overflow') { this.h.overflow(this.pr.ex, this.pr.res, 'maxPendingRequests'); return; }
      if (a === 'queued') {
        this.waiting = true;
        if (this.deadline !== undefined) this.h.deadlines.add(this, this.deadline, this.requestTimeoutMs!);
        return;
      }
      this.slot = true;
    }
    this.send();
  }

  /** The circuit breaker gave this waiter a connection (from another request's release: continued on the next tick). */
  granted(): void {
    this.waiting = false;
    this.h.deadlines.remove(this);
    process.nextTick(continueGranted, this);
  }

  /** @internal */
  afterGrant(): void {
    this.slot = true;
    if (this.gone) { this.cs!.release(); this.slot = false; this.pr.ex.reason = 'client_closed'; return; }
    this.guard(this.send);
  }

  private send(): void {
    const { h, pr, out } = this;
    const { ex, res, svc, table } = pr;
    const d = h.deps;
    const now = performance.now();
    const ejected = this.od?.ejected(now);
    const ep = d.balancer.pickEndpoint(svc, this.tried, ejected);
    if (!ep) {
      if (this.slot) { this.cs!.release(); this.slot = false; }
      ex.flags = 'UH';
      h.local(ex, res, 503, 'no_endpoints', ejected !== undefined ? `no healthy upstream for ${svc.key}` : `no endpoint for ${svc.key}`);
      return;
    }
    ex.upstream = endpointKey(ep);
    if (!table.authz.empty && !h.authorize(table, svc, ep, pr.authz).allowed) {
      if (this.slot) { this.cs!.release(); this.slot = false; }
      h.local(ex, res, 403, 'denied', 'access denied by AuthorizationPolicy');
      return;
    }
    if (this.attempt === 1 && this.mirrors.length > 0) h.sendMirrors(ex, this.mirrors, out);
    ex.attempts++;
    this.isRetry = this.attempt > 1 && this.cs !== undefined;
    if (this.isRetry) this.cs!.retries++;
    this.lbDone = d.balancer.begin(svc, ep);
    // The try's timeout: the per-try one, or what is left of the request's, whichever ends first.
    const tryMs = this.tryTimeoutMs ? this.tryTimeoutMs : undefined;
    if (tryMs !== undefined && (this.deadline === undefined || now + tryMs < this.deadline)) { this.tryEnd = now + tryMs; this.tryDuration = tryMs; }
    else if (this.deadline !== undefined) { this.tryEnd = this.deadline; this.tryDuration = this.requestTimeoutMs!; }
    else this.tryEnd = undefined;
    this.settled = false;
    const gen = ++this.gen;
    const call = d.upstream.send({ endpoint: ep, protocol: out.protocol, method: out.method, path: out.url, headers: out.headers, body: out.body, conn: this.traffic?.conn }, this);
    // (The outcome may have come already, and another try may have started from it.)
    if (gen !== this.gen) return;
    this.call = call;
    if (!this.settled && this.tryEnd !== undefined) this.h.deadlines.add(this, this.tryEnd, this.tryDuration);
  }

  /** The current try is over: what it holds of the balancer and the circuit breaker goes back. */
  private readonly tryDone = (): void => {
    if (this.dlList !== undefined) this.h.deadlines.remove(this);
    const f = this.lbDone;
    if (f === undefined) return;
    this.lbDone = undefined;
    f();
    if (this.slot) { this.slot = false; this.cs!.release(); }
    if (this.isRetry) { this.isRetry = false; this.cs!.retries--; }
  };

  /** Whether another try may go: the plan's, the circuit breaker's maxParallelRetries and the retry budget. */
  private mayRetry(): boolean {
    if (this.attempt >= this.maxAttempts || (this.deadline !== undefined && performance.now() >= this.deadline)) return false;
    const cs = this.cs;
    if (cs === undefined) return true;
    const maxRetries = this.traffic!.circuit?.maxParallelRetries ?? 1024;
    const budget = this.plan?.budget;
    const limit: OverflowLimit | undefined = cs.retries >= maxRetries ? 'maxParallelRetries'
      : budget !== undefined && cs.retries >= Math.max(budget.minRetryConcurrency, (budget.percent / 100) * cs.requests) ? 'retryBudget' : undefined;
    if (limit === undefined) return true;
    this.h.deps.metrics.overflow.inc({ destination_service: this.pr.ex.destination, limit });
    return false;
  }

  /** Another try, after the plan's backoff (none: at once). */
  private retry(): void {
    const plan = this.plan;
    if (plan === undefined || plan.baseBackoffMs <= 0) { this.next(); return; }
    let ms = Math.min(plan.maxBackoffMs, plan.baseBackoffMs * 2 ** (this.attempt - 1));
    ms = ms / 2 + Math.random() * (ms / 2);
    if (this.deadline !== undefined) ms = Math.max(0, Math.min(ms, this.deadline - performance.now()));
    setTimeout(continueBackoff, ms, this).unref();
  }

  /** @internal */
  afterBackoff(): void {
    if (this.gone) { this.pr.ex.reason = 'client_closed'; return; }
    this.guard(this.next);
  }

  private triedNow(): Set<string> {
    const t = (this.tried ??= new Set());
    t.add(this.pr.ex.upstream!);
    return t;
  }

  onResponse(up: UpstreamResponse): void {
    if (this.settled) { up.abort(); return; }
    this.settled = true;
    // The deadline stays: it covers the response until it ends (tryDone, from the relay).
    this.guard(this.responded, up);
  }

  private responded(up: UpstreamResponse): void {
    const { h, pr, plan } = this;
    const { ex, res } = pr;
    if (this.od !== undefined) h.eject(this.od, this.traffic, pr.svc, ex, { status: up.status });
    if (plan && this.replayable && plan.codes.has(up.status)) {
      if (this.mayRetry()) {
        up.abort();
        this.tryDone();
        this.triedNow();
        h.deps.metrics.retries.inc({ destination_service: ex.destination });
        this.retry();
        return;
      }
      if (plan.retries > 0) ex.flags = 'URX';
    }
    this.relay = h.respond(ex, res, pr.rule, pr.backend, up, pr.corsHeaders, pr.h2, this.tryDone);
  }

  onError(err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    if (this.dlList !== undefined) this.h.deadlines.remove(this);
    this.guard(this.failed, err);
  }

  private failed(err: unknown): void {
    const { h, pr, plan, replayable } = this;
    const { ex, res, svc } = pr;
    this.tryDone();
    const e = err instanceof UpstreamError ? err : new UpstreamError('reset', String(err), undefined, false);
    h.deps.metrics.upstreamErrors.inc({ destination_service: ex.destination, kind: e.kind });
    const tried = this.triedNow();
    if (replayable && e.retryable && e.kind === 'reset' && this.freeRetries > 0) { this.freeRetries--; this.attempt--; this.next(); return; }
    h.eject(this.od, this.traffic, svc, ex, e.kind === 'protocol' ? { status: 502 } : { local: e.kind === 'connect' ? 'connect' : 'reset' });
    const retriable = replayable && ((e.kind === 'connect' && (plan?.connectFailure ?? false)) || (e.kind === 'reset' && (plan?.reset ?? false)));
    const anotherEndpoint = replayable && e.kind === 'connect' && this.attempt === 1 && !plan && tried.size < svc.endpoints.length
      && (this.deadline === undefined || performance.now() < this.deadline);
    if (anotherEndpoint || (retriable && this.mayRetry())) {
      h.deps.metrics.retries.inc({ destination_service: ex.destination });
      this.retry();
      return;
    }
    if (retriable && plan!.retries > 0) ex.flags = 'URX';
    const status = e.kind === 'connect' ? 503 : 502;
    h.local(ex, res, status, `upstream_${e.kind}`, `upstream ${e.kind === 'connect' ? 'connect error' : 'error'}: ${e.message}`);
  }

  /** A deadline ran out: the wait for a connection, the try, or the response it is relaying. */
  expire(): void {
    const { h, pr } = this;
    const { ex, res } = pr;
    if (this.relay !== undefined) { this.relay.timeout(); return; }
    if (this.waiting) {
      this.waiting = false;
      this.cs!.cancel(this);
      h.local(ex, res, 504, 'request_timeout', 'upstream request timeout (waiting for a connection)');
      return;
    }
    if (this.settled) return;
    this.settled = true;
    this.call?.abort();
    this.guard(this.timedOut);
  }

  private timedOut(): void {
    const { h, pr, plan } = this;
    const { ex, res, svc } = pr;
    this.tryDone();
    h.eject(this.od, this.traffic, svc, ex, { local: 'timeout' });
    h.deps.metrics.upstreamErrors.inc({ destination_service: ex.destination, kind: 'timeout' });
    const requestExpired = this.deadline !== undefined && performance.now() >= this.deadline;
    if (!requestExpired && plan?.timeout) {
      if (this.mayRetry()) { this.triedNow(); this.retry(); return; }
      ex.flags = 'URX';
    }
    h.local(ex, res, 504, requestExpired ? 'request_timeout' : 'backend_timeout', 'upstream request timeout');
  }

  /** The caller's response closed before it finished: the wait or the try in flight ends here. */
  closed(): void {
    const { ex, res } = this.pr;
    if (res.writableFinished) return;
    this.gone = true;
    if (this.waiting) {
      this.waiting = false;
      this.h.deadlines.remove(this);
      this.cs!.cancel(this);
      ex.reason = 'client_closed';
      return;
    }
    if (this.settled) return;
    this.settled = true;
    this.h.deadlines.remove(this);
    this.call?.abort();
    this.tryDone();
    ex.reason = 'client_closed';
  }

  /** Runs a step; a throw answers 500 (what the async loop's rejection did). */
  private guard<A>(step: (a: A) => void, a?: A): void {
    try {
      step.call(this, a as A);
    } catch (e) {
      this.h.failed(this.pr.res, e);
    }
  }
}

function continueGranted(g: Guarded): void {
  g.afterGrant();
}

function continueBackoff(g: Guarded): void {
  g.afterBackoff();
}

/** A header's value by lower-case name: the first one for the waypoint's own server (as its Host, Content-Length checks ensure), Node's joined value otherwise. */
function headerOf(req: DownReq): (name: string) => string | undefined {
  if (req instanceof FastRequest) return (name) => req.header(name);
  return (name) => {
    const v = req.headers[name];
    return Array.isArray(v) ? v.join(',') : v;
  };
}

function readAll(s: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

/** True for `percent`% of calls. */
function hit(percent: number): boolean {
  return percent >= 100 || (percent > 0 && Math.random() * 100 < percent);
}
