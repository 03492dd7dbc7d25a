/**
 * Requests to backends: HTTP/1.1 over keep-alive connection pools (one Agent, pooled
 * per endpoint), and h2c (one HTTP/2 session per endpoint, streams multiplexed). A
 * request is sent once; retries, timeouts and balancing are the caller's.
 */
import { AsyncResource } from 'node:async_hooks';
import http2 from 'node:http2';
import type { Readable } from 'node:stream';
import type { Endpoint, BackendProtocol } from '../routing/backends.js';
import { H1Pool, type H1Request } from './h1-client.js';
import { UpstreamError } from './upstream-error.js';
import { fromObject, type HeaderList } from './headers.js';
import { LiteBody, type ResponseBody } from './body.js';
import type { ConnOptions } from '../resilience/compile.js';

export interface UpstreamRequest {
  endpoint: Endpoint;
  protocol: BackendProtocol;
  method: string;
  /** Path and query. */
  path: string;
  /** Request headers without hop-by-hop ones; includes Host (used as :authority for h2c). */
  headers: HeaderList;
  /** Body: a stream to pipe (not replayable), a buffer (replayable), or none. */
  body: Readable | Buffer | undefined;
  /** A BackendTrafficPolicy's connection settings (HTTP/1.1 backends). */
  conn?: ConnOptions | undefined;
}

export interface UpstreamResponse {
  status: number;
  headers: HeaderList;
  /** True when every header name and value is one an HTTP/1.1 response may carry (parsed by the strict HTTP/1.1 parser): not checked again when sent on. */
  readonly checked?: boolean;
  body: ResponseBody;
  /** Trailers, once the body has ended. */
  trailers(): HeaderList;
  /** Stop the exchange (the connection is not reused). */
  abort(): void;
}

export { UpstreamError, type FailureKind } from './upstream-error.js';

/** Who gets an exchange's outcome: the response head (its body follows), or the failure before it (an UpstreamError). */
export interface UpstreamSink {
  onResponse(r: UpstreamResponse): void;
  onError(e: unknown): void;
}

/** An exchange in progress. */
export interface UpstreamCall {
  abort(): void;
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOTFOUND']);

export interface UpstreamOptions {
  /** Idle keep-alive connections kept per endpoint. */
  maxIdlePerEndpoint: number;
  /** Idle connection lifetime (ms). */
  idleTimeoutMs: number;
  connectTimeoutMs: number;
}

export class UpstreamPool {
  private readonly h1pool: H1Pool;
  private readonly sessions = new Map<string, http2.ClientHttp2Session>();
  private closed = false;

  constructor(private readonly opts: UpstreamOptions) {
    leanAsyncResourceBind();
    this.h1pool = new H1Pool({ maxIdlePerEndpoint: opts.maxIdlePerEndpoint, idleTimeoutMs: opts.idleTimeoutMs, connectTimeoutMs: opts.connectTimeoutMs });
  }

  /** Send one request; resolves with the response head, rejects with UpstreamError. */
  request(r: UpstreamRequest): { response: Promise<UpstreamResponse>; abort: () => void } {
    return r.protocol === 'h2c' ? this.h2(r) : this.h1(r);
  }

  /** The same as request(), the outcome told to `sink`: no promise, no closure per request. */
  send(r: UpstreamRequest, sink: UpstreamSink): UpstreamCall {
    if (r.protocol !== 'h2c') return this.h1pool.send(h1Request(r), sink);
    return this.h2send(r, sink);
  }

  /** Connections currently open to backends (idle and busy), for metrics. */
  connectionCount(): number {
    return this.sessions.size + this.h1pool.connections;
  }

  close(): void {
    this.closed = true;
    this.h1pool.close();
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
  }

  private h1(r: UpstreamRequest): { response: Promise<UpstreamResponse>; abort: () => void } {
    return this.h1pool.request(h1Request(r));
  }

  private session(e: Endpoint): http2.ClientHttp2Session {
    const key = `${e.address}:${e.port}`;
    let s = this.sessions.get(key);
    if (s && !s.closed && !s.destroyed) return s;
    const host = e.address.includes(':') ? `[${e.address}]` : e.address;
    s = http2.connect(`http://${host}:${e.port}`);
    const created = s;
    this.sessions.set(key, created);
    const drop = (): void => { if (this.sessions.get(key) === created) this.sessions.delete(key); };
    created.on('close', drop);
    created.on('goaway', drop);
    created.on('error', drop);
    created.setTimeout(this.opts.idleTimeoutMs, () => { if (!this.closed) created.close(); });
    created.unref();
    return created;
  }

  private h2(r: UpstreamRequest): { response: Promise<UpstreamResponse>; abort: () => void } {
    let call!: UpstreamCall;
    const response = new Promise<UpstreamResponse>((resolve, reject) => { call = this.h2send(r, { onResponse: resolve, onError: reject }); });
    return { response, abort: () => call.abort() };
  }

  private h2send(r: UpstreamRequest, sink: UpstreamSink): UpstreamCall {
    const session = this.session(r.endpoint);
    const x = new H2Exchange(sink, session);
    let st: http2.ClientHttp2Stream;
    try {
      st = session.request(h2Headers(r), r.body === undefined ? END_STREAM : OPEN_STREAM);
    } catch (e) {
      // (Told on the next tick, as every other outcome: the caller has its call first.)
      process.nextTick(failNow, x, new UpstreamError('connect', (e as Error).message, (e as NodeJS.ErrnoException).code, true));
      return x;
    }
    x.stream = st;
    (st as StreamWithExchange)[EXCHANGE] = x;
    // on(), not once(): each of these comes once per stream, and once() wraps the listener in a closure per request.
    st.on('trailers', onStreamTrailers);
    st.on('response', onStreamResponse);
    st.on('error', onStreamError);
    st.on('close', onStreamClose);
    if (Buffer.isBuffer(r.body)) st.end(r.body);
    else if (r.body !== undefined) r.body.pipe(st);
    return x;
  }
}

/** request()'s options (Node copies them): no object per request. */
const END_STREAM: http2.ClientSessionRequestOptions = Object.freeze({ endStream: true });
const OPEN_STREAM: http2.ClientSessionRequestOptions = Object.freeze({ endStream: false });

/**
 * The request head of an h2c backend request (Host as :authority, the last one if several;
 * TE only as 'trailers'), as a flat list: Node takes raw lists as they are, where a header
 * object is copied into another one first. Repeated fields stay separate fields.
 */
function h2Headers(r: UpstreamRequest): string[] {
  const out: string[] = [':method', r.method, ':path', r.path, ':scheme', 'http'];
  let authority: string | undefined;
  for (let i = 0; i < r.headers.length; i += 2) {
    const name = r.headers[i]!.toLowerCase();
    const value = r.headers[i + 1]!;
    if (name === 'host') { authority = value; continue; }
    if (name === 'te' && value.toLowerCase() !== 'trailers') continue;
    out.push(name, value);
  }
  if (authority !== undefined) out.push(':authority', authority);
  return out;
}

/**
 * One request to an h2c backend: the call, its outcome told to the sink once, and the
 * response itself. The stream's listeners are shared functions that find it through the
 * stream (no closure or promise per request), and the stream lets go of it when it closes.
 * The response body is a LiteBody the exchange feeds from the stream, not the stream itself:
 * the consumer's listeners (the handler's relay, and through it the caller's response, the
 * request's record and headers) then hang on the LiteBody, never on Node's stream. Closed
 * streams outlive scavenges (Node's, whatever is hung on them: see docs/waypoint-bench.md),
 * and with the consumer's closures on them every request's whole graph went with them.
 */
class H2Exchange implements UpstreamCall, UpstreamResponse {
  stream: http2.ClientHttp2Stream | undefined;
  status = 0;
  headers: HeaderList = [];
  body!: LiteBody;
  private trailerList: HeaderList = [];
  private settled = false;
  private aborted = false;
  /** The stream's readable side ended (every DATA frame is in the body). */
  private ended = false;

  constructor(private readonly sink: UpstreamSink, private readonly session: http2.ClientHttp2Session) {}

  trailers(): HeaderList {
    return this.trailerList;
  }

  /** Stop the exchange: before the response (the call) or during its body (the response). */
  abort(): void {
    if (!this.settled) this.aborted = true;
    this.stream?.close(http2.constants.NGHTTP2_CANCEL);
  }

  gotTrailers(t: http2.IncomingHttpHeaders): void {
    this.trailerList = fromObject(t as Record<string, string | string[]>);
  }

  gotResponse(h: http2.IncomingHttpHeaders): void {
    if (this.settled) return;
    this.settled = true;
    this.status = Number(h[':status'] ?? 502);
    this.headers = responseHeaders(h);
    this.body = new LiteBody(this);
    const st = this.stream!;
    st.on('data', onStreamData);
    st.on('end', onStreamEnd);
    this.sink.onResponse(this);
  }

  /** A body chunk from the stream; the stream waits while the body's consumer does. */
  gotData(c: Buffer): void {
    if (!this.body.push(c)) this.stream?.pause();
  }

  gotEnd(): void {
    this.ended = true;
    this.body.push(null);
  }

  /** The body's consumer wants more (after push() said false). */
  resumeBody(): void {
    this.stream?.resume();
  }

  failed(e: unknown): void {
    if (this.settled) {
      // After the response: the body fails (its consumer hears the error, then the close).
      if (this.body !== undefined && !this.ended) this.body.destroy(e as Error);
      return;
    }
    this.settled = true;
    if (e instanceof UpstreamError) { this.sink.onError(e); return; }
    // Before the session connected (its pending streams are cancelled with the connect error as
    // their cause) it is a connect failure: nothing reached the backend, another endpoint may be
    // tried. (session.remoteSettings is no sign: it is an empty object before the SETTINGS came.)
    const err = e as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    const cause = err.cause?.code;
    const beforeConnect = this.session.connecting || (cause !== undefined && CONNECT_ERRORS.has(cause));
    this.sink.onError(classify(err, beforeConnect, false, this.aborted));
  }

  /** The stream closed: before its response (RST_STREAM, GOAWAY) nothing was answered; during its body, the body is cut short. */
  closed(): void {
    const st = this.stream!;
    if (this.settled) {
      if (this.body !== undefined && !this.ended) this.body.destroy();
      return;
    }
    this.failed(new UpstreamError(st.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM ? 'connect' : 'reset',
      `stream closed before a response (code ${st.rstCode})`, 'ERR_HTTP2_STREAM_CLOSED', st.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM));
  }
}

const EXCHANGE = Symbol('kernway.h2.exchange');
type StreamWithExchange = http2.ClientHttp2Stream & { [EXCHANGE]: H2Exchange | undefined };
function onStreamTrailers(this: StreamWithExchange, t: http2.IncomingHttpHeaders): void { this[EXCHANGE]?.gotTrailers(t); }
function onStreamResponse(this: StreamWithExchange, h: http2.IncomingHttpHeaders): void { this[EXCHANGE]?.gotResponse(h); }
function onStreamData(this: StreamWithExchange, c: Buffer): void { this[EXCHANGE]?.gotData(c); }
function onStreamEnd(this: StreamWithExchange): void { this[EXCHANGE]?.gotEnd(); }
function onStreamError(this: StreamWithExchange, e: NodeJS.ErrnoException): void { this[EXCHANGE]?.failed(e); }
function onStreamClose(this: StreamWithExchange): void {
  const x = this[EXCHANGE];
  this[EXCHANGE] = undefined;
  x?.closed();
}
/** A response head's fields without the pseudo-headers, as a list. */
function responseHeaders(h: http2.IncomingHttpHeaders): HeaderList {
  const out: HeaderList = [];
  for (const k in h) {
    if (k.charCodeAt(0) === 58 /* ':' */) continue;
    const v = h[k];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (let i = 0; i < v.length; i++) out.push(k, v[i]!);
    else out.push(k, String(v));
  }
  return out;
}
function failNow(x: H2Exchange, e: UpstreamError): void { x.failed(e); }

/**
 * Node's `ClientHttp2Session.request()` binds its connect step to a new AsyncResource per
 * request (`AsyncResource.prototype.bind`), and that bind defines the deprecated
 * `asyncResource` accessor (DEP0172) on every bound function: two `deprecate()` wrappers and
 * a new accessor pair each time, ~2.5 KB per request, and young objects that a scavenge kept
 * (a forced minor GC after 3,000 sequential requests on one session kept 8.5 MB with it,
 * 4.8 MB without; docs/waypoint-bench.md). The waypoint's process replaces that bind with
 * the same one without the accessor (nothing in Node or the dependencies reads
 * `bound.asyncResource`). Once per process; the async context is carried as before
 * (runInAsyncScope with the bound function's `this` and arguments).
 */
let leanBindInstalled = false;
export function leanAsyncResourceBind(): void {
  if (leanBindInstalled) return;
  leanBindInstalled = true;
  const proto = AsyncResource.prototype as unknown as { bind: (fn: (...a: unknown[]) => unknown, thisArg?: unknown) => (...a: unknown[]) => unknown };
  proto.bind = function bind(this: AsyncResource, fn: (...a: unknown[]) => unknown, thisArg?: unknown): (...a: unknown[]) => unknown {
    if (typeof fn !== 'function') throw Object.assign(new TypeError('The "fn" argument must be of type function'), { code: 'ERR_INVALID_ARG_TYPE' });
    const bound = thisArg === undefined ? boundToCaller(this, fn) : this.runInAsyncScope.bind(this, fn, thisArg) as (...a: unknown[]) => unknown;
    Object.defineProperty(bound, 'length', { configurable: true, enumerable: false, value: fn.length, writable: false });
    return bound;
  };
}

/** `fn` run in `resource`'s async scope with the caller's `this` (Node's bind without thisArg). */
function boundToCaller(resource: AsyncResource, fn: (...a: unknown[]) => unknown): (...a: unknown[]) => unknown {
  return function (this: unknown, ...args: unknown[]): unknown { return resource.runInAsyncScope(fn, this, ...args); };
}

function h1Request(r: UpstreamRequest): H1Request {
  return { address: r.endpoint.address, port: r.endpoint.port, key: r.endpoint.key, method: r.method, path: r.path, headers: r.headers, body: r.body, conn: r.conn };
}

function classify(e: NodeJS.ErrnoException, beforeConnect: boolean, reused: boolean, aborted: boolean): UpstreamError {
  const code = e.code;
  if (aborted) return new UpstreamError('reset', 'aborted', code, false);
  if (beforeConnect || (code !== undefined && CONNECT_ERRORS.has(code))) return new UpstreamError('connect', e.message, code, true);
  if (code !== undefined && code.startsWith('HPE_')) return new UpstreamError('protocol', `invalid response from backend: ${e.message}`, code, false);
  // A pooled connection the backend had closed: nothing reached it, safe to send again.
  return new UpstreamError('reset', e.message, code, reused && (code === 'ECONNRESET' || e.message === 'socket hang up'));
}
