/**
 * A lean HTTP/1.1 client for backends: pooled keep-alive sockets per endpoint, the
 * request head written in one piece, responses parsed by llhttp in RESPONSE mode (one
 * strict parser per connection, its callbacks installed once: status line, headers, then
 * RFC 9112 §6.3 framing: no body, Content-Length, chunked with trailers, or until close).
 *
 * Why not http.request: on the proxy's hot path Node's ClientRequest/IncomingMessage/
 * Agent machinery costs about twice the CPU of the rest of the proxy (measured in
 * bench/waypoint). The parser is strict: anything it does not understand (Content-Length
 * with Transfer-Encoding included) ends the exchange with a protocol error (502), and a
 * connection is reused only after a response whose framing ended exactly where the bytes
 * did. Idle connections are timed out by one sweep per pool, not a timer each.
 */
import net, { type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { LiteBody, type ResponseBody } from './body.js';
import type { HeaderList } from './headers.js';
import { HeadMemo } from './h1-head.js';
import { SocketWriter } from './h1-write.js';
import { consumeSocket, HTTPParser, releaseParser, strictParser, type ParseError, type ParserInstance, type StreamHandle } from './llhttp.js';
import type { ConnOptions } from '../resilience/compile.js';
import { UpstreamError as H1Error } from './upstream-error.js';

/** Failures are UpstreamErrors (kind connect, reset or protocol), as the proxy expects them. */
export { UpstreamError as H1Error } from './upstream-error.js';

export interface H1Response {
  status: number;
  headers: HeaderList;
  /** Names and values passed llhttp's strict parser: each is one Node would send (true). */
  readonly checked: boolean;
  body: ResponseBody;
  trailers(): HeaderList;
  abort(): void;
}

/** Who gets an exchange's outcome: the response head (its body follows), or the failure before it. */
export interface H1Sink {
  onResponse(r: H1Response): void;
  onError(e: H1Error): void;
}

/** An exchange in progress. */
export interface H1Call {
  abort(): void;
}

export interface H1Request {
  address: string;
  port: number;
  method: string;
  path: string;
  /** Without hop-by-hop headers; includes Host. Content-Length is used as is when the body is a stream. */
  headers: HeaderList;
  body: Readable | Buffer | undefined;
  /** 'address:port', when the caller has it made already (the pool's key). */
  key?: string | undefined;
  /** A BackendTrafficPolicy's connection settings (connect and idle timeouts, duration, requests per connection, keep-alive). */
  conn?: ConnOptions | undefined;
}

export interface H1PoolOptions {
  maxIdlePerEndpoint: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  /** Largest response head accepted. */
  maxHeaderBytes?: number;
}

function noop(): void { /* nothing waits */ }

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ETIMEDOUT']);

/**
 * One connection to a backend, with its listeners installed once: they hand events to
 * the exchange in progress, or, while the connection is idle in the pool, drop it.
 */
class Conn {
  exchange: Exchange | undefined;
  idle = false;
  /** When it went idle in the pool (performance.now()). */
  idleSince = 0;
  reused = false;
  /** Requests sent on it, and when it opened (for maxRequestsPerConnection and maxConnectionDuration). */
  requests = 0;
  readonly born = Date.now();
  readonly parser: ParserInstance;
  /** The socket's native stream, while the parser reads it (undefined: 'data' events). */
  private handle: StreamHandle | undefined;
  paused = false;
  /** Request heads are written past Node's Writable (h1-write.ts); nothing waits for their drain. */
  readonly out: SocketWriter;

  constructor(readonly socket: Socket, readonly key: string, private readonly pool: H1Pool, readonly opts: ConnOptions | undefined, maxHeaderBytes: number) {
    this.out = new SocketWriter(socket, noop, { batch: true });
    const p = strictParser(HTTPParser.RESPONSE, maxHeaderBytes);
    // Message begin matters only after a response has ended (bytes of another message
    // follow it: the connection is not reused), so it is installed then and taken away
    // when the next exchange starts: one call from native code less per response.
    const onBegin = (): void => { this.exchange?.onMessageBegin(); };
    p[HTTPParser.kOnHeaders] = (h: string[]): void => { this.exchange?.onHeaders(h); };
    p[HTTPParser.kOnHeadersComplete] = (major: number, minor: number, h: string[] | undefined, _m: unknown, _u: unknown, status: number, _msg: unknown, upgrade: boolean, keepAlive: boolean): number =>
      this.exchange ? this.exchange.onHead(major, minor, h, status, upgrade, keepAlive) : 0;
    p[HTTPParser.kOnBody] = (b: Buffer): void => { this.exchange?.onBody(b); };
    p[HTTPParser.kOnMessageComplete] = (): void => { p[HTTPParser.kOnMessageBegin] = onBegin; this.exchange?.onMessageComplete(); };
    this.parser = p;
    socket.on('error', (e: NodeJS.ErrnoException) => { if (this.exchange) this.exchange.onClose(e); else this.drop(); });
    socket.on('end', () => { if (this.exchange) this.exchange.onEnd(); else this.drop(); });
    socket.on('close', () => {
      pool.closedConn(this);
      if (this.exchange) this.exchange.onClose(undefined);
      const h = this.handle;
      this.handle = undefined;
      releaseParser(p, h);
    });
    // The parser reads the socket itself: no Buffer and no 'data' event per read.
    this.handle = consumeSocket(p, socket, []);
    if (this.handle) p[HTTPParser.kOnExecute] = (ret: number | ParseError): void => { if (this.exchange) this.exchange.executed(ret, undefined); else this.drop(); };
    else socket.on('data', (d: Buffer) => { if (this.exchange) this.exchange.onData(d); else this.drop(); });
  }

  /** Reading stops (the response body's reader is behind) or goes on. */
  pause(): void {
    this.paused = true;
    const h = this.handle;
    if (!h) { this.socket.pause(); return; }
    if (h.reading) { h.reading = false; h.readStop(); }
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const h = this.handle;
    if (!h) { this.socket.resume(); return; }
    if (!h.reading && !this.socket.destroyed) { h.reading = true; h.readStart(); }
  }

  /** Leave the pool (idle timeout, or the backend closed or spoke). */
  drop(): void {
    this.pool.unpool(this);
    this.socket.destroy();
  }
}

export class H1Pool {
  /** Request heads without a body, as bytes from the last one's where they are the same (h1-head.ts). */
  readonly heads = new HeadMemo(true);
  private readonly idle = new Map<string, Conn[]>();
  private open = 0;
  private closed = false;
  private readonly maxHeaderBytes: number;
  /** Closes idle connections past their idle timeout (running while any is idle). */
  private sweep: NodeJS.Timeout | undefined;
  private sweepEvery = 0;
  private idleCount = 0;

  constructor(private readonly opts: H1PoolOptions) {
    this.maxHeaderBytes = opts.maxHeaderBytes ?? 64 * 1024;
  }

  /** Sockets open to backends (busy and idle). */
  get connections(): number {
    return this.open;
  }

  close(): void {
    this.closed = true;
    for (const list of this.idle.values()) for (const c of [...list]) c.drop();
    this.idle.clear();
    if (this.sweep) { clearInterval(this.sweep); this.sweep = undefined; }
  }

  /** The exchange as a promise of the response head (for callers that want one). */
  request(r: H1Request): { response: Promise<H1Response>; abort: () => void } {
    let call: H1Call | undefined;
    const response = new Promise<H1Response>((resolve, reject) => { call = this.send(r, { onResponse: resolve, onError: reject }); });
    return { response, abort: () => call!.abort() };
  }

  /**
   * Send a request; `sink` gets the response head (its body follows) or the failure
   * before it. No promise and no closure per request on a pooled connection.
   */
  send(r: H1Request, sink: H1Sink): H1Call {
    const key = r.key ?? `${r.address}:${r.port}`;
    const pooled = this.take(key);
    const x = new Exchange(this, r, sink, pooled !== undefined);
    if (pooled) {
      pooled.requests++;
      x.start(pooled);
      return x;
    }
    const socket = net.connect({ host: r.address, port: r.port, noDelay: true });
    x.connecting = socket;
    this.open++;
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), r.conn?.connectTimeoutMs ?? this.opts.connectTimeoutMs);
    timer.unref();
    const onConnectError = (e: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      x.fail(new H1Error('connect', e.message, e.code, true));
    };
    const onEarlyClose = (): void => { clearTimeout(timer); this.open--; };
    socket.once('error', onConnectError);
    socket.once('close', onEarlyClose);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onConnectError);
      socket.removeListener('close', onEarlyClose);
      x.connecting = undefined;
      const conn = new Conn(socket, key, this, r.conn, this.maxHeaderBytes);
      conn.requests++;
      if (r.conn?.keepAlive) socket.setKeepAlive(true, r.conn.keepAlive.idleTimeMs ?? 0);
      if (x.aborted) { socket.destroy(); return; }
      x.start(conn);
    });
    return x;
  }

  /** An idle connection to the endpoint, if any is still usable. */
  private take(key: string): Conn | undefined {
    const list = this.idle.get(key);
    while (list && list.length > 0) {
      const c = list.pop()!;
      c.idle = false;
      this.idleCount--;
      const maxMs = c.opts?.maxDurationMs;
      const expired = performance.now() - c.idleSince >= (c.opts?.idleTimeoutMs ?? this.opts.idleTimeoutMs);
      if (!expired && !c.socket.destroyed && c.socket.writable && c.socket.readable && (maxMs === undefined || Date.now() - c.born < maxMs)) return c;
      c.socket.destroy();
    }
    return undefined;
  }

  /** Give a connection back after a complete exchange that allows reuse. */
  release(c: Conn): void {
    c.exchange = undefined;
    if (this.closed) { c.socket.destroy(); return; }
    let list = this.idle.get(c.key);
    if (!list) this.idle.set(c.key, (list = []));
    if (list.length >= this.opts.maxIdlePerEndpoint) { c.socket.destroy(); return; }
    const o = c.opts;
    if (o !== undefined && ((o.maxRequests > 0 && c.requests >= o.maxRequests) || (o.maxDurationMs !== undefined && Date.now() - c.born >= o.maxDurationMs))) { c.socket.destroy(); return; }
    c.idle = true;
    c.idleSince = performance.now();
    this.idleCount++;
    const every = Math.max(10, Math.min(1000, Math.floor((o?.idleTimeoutMs ?? this.opts.idleTimeoutMs) / 4)));
    if (this.sweep === undefined || every < this.sweepEvery) {
      if (this.sweep) clearInterval(this.sweep);
      this.sweepEvery = every;
      this.sweep = setInterval(() => this.closeExpired(), every);
      this.sweep.unref();
    }
    c.resume();
    list.push(c);
  }

  /** The sweep: idle connections past their idle timeout are closed; it stops when none is idle. */
  private closeExpired(): void {
    const now = performance.now();
    for (const list of this.idle.values()) {
      for (let i = list.length - 1; i >= 0; i--) {
        const c = list[i]!;
        if (now - c.idleSince >= (c.opts?.idleTimeoutMs ?? this.opts.idleTimeoutMs)) c.drop();
      }
    }
    if (this.idleCount === 0 && this.sweep) { clearInterval(this.sweep); this.sweep = undefined; }
  }

  unpool(c: Conn): void {
    if (!c.idle) return;
    c.idle = false;
    this.idleCount--;
    const list = this.idle.get(c.key);
    const i = list ? list.indexOf(c) : -1;
    if (i >= 0) list!.splice(i, 1);
  }

  closedConn(c: Conn): void {
    this.open--;
    this.unpool(c);
  }
}

/** One request/response on one pooled connection; the connection's parser calls it. */
class Exchange implements H1Response, H1Call {
  status = 0;
  headers: HeaderList = [];
  body!: LiteBody;
  /** The socket being connected, before the connection exists. */
  connecting: Socket | undefined;
  private conn!: Conn;
  private socket!: Socket;
  private response: H1Response | undefined;
  /** Headers handed over before the head completed (long lists), and trailers after it. */
  private early: string[] = [];
  private trailerList: HeaderList = [];
  private keepAlive = false;
  private gotBytes = false;
  private finished = false;
  /** The response ended (llhttp's message complete); the connection is settled after execute(). */
  private complete = false;
  /** Bytes of another message followed the response: the connection is not reused. */
  private extra = false;
  private readonly head: boolean;
  aborted = false;

  constructor(private readonly pool: H1Pool, private readonly req: H1Request, private readonly sink: H1Sink, private readonly reused: boolean) {
    this.head = req.method === 'HEAD';
  }

  trailers(): HeaderList {
    return this.trailerList;
  }

  /** The strict parser refused any name that is not a token and any value with a control character (CR, LF, NUL, DEL...). */
  get checked(): boolean {
    return true;
  }

  start(conn: Conn): void {
    this.conn = conn;
    this.socket = conn.socket;
    conn.exchange = this;
    conn.parser[HTTPParser.kOnMessageBegin] = undefined;
    conn.resume();
    this.write();
  }

  abort(): void {
    if (this.finished) return;
    this.aborted = true;
    this.fail(new H1Error('reset', 'aborted', undefined, false));
  }

  /** The body wants more after the socket was paused for it. */
  resumeBody(): void {
    if (!this.finished) this.conn.resume();
  }

  private write(): void {
    const r = this.req;
    if (r.body === undefined) { this.conn.out.write(this.pool.heads.head(r.method, r.path, r.headers)); return; }
    let head = `${r.method} ${r.path} HTTP/1.1\r\n`;
    let hasLength = false;
    const h = r.headers;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i]!;
      if (name.length === 14 && name.toLowerCase() === 'content-length') {
        if (Buffer.isBuffer(r.body)) continue; // replaced below by the buffer's length
        hasLength = true;
      }
      head += `${name}: ${h[i + 1]}\r\n`;
    }
    const s = this.socket;
    if (r.body === undefined) {
      s.write(`${head}\r\n`, 'latin1');
    } else if (Buffer.isBuffer(r.body)) {
      s.cork();
      s.write(`${head}content-length: ${r.body.length}\r\n\r\n`, 'latin1');
      if (r.body.length > 0) s.write(r.body);
      s.uncork();
    } else {
      const chunked = !hasLength;
      s.write(`${head}${chunked ? 'transfer-encoding: chunked\r\n' : ''}\r\n`, 'latin1');
      const src = r.body;
      src.on('data', (c: Buffer) => {
        if (this.finished || s.destroyed) return;
        let ok: boolean;
        if (chunked) {
          if (c.length === 0) return;
          s.cork();
          s.write(`${c.length.toString(16)}\r\n`, 'latin1');
          s.write(c);
          ok = s.write('\r\n', 'latin1');
          s.uncork();
        } else ok = s.write(c);
        if (!ok) { src.pause(); s.once('drain', () => src.resume()); }
      });
      src.once('end', () => { if (chunked && !s.destroyed) s.write('0\r\n\r\n', 'latin1'); });
      src.once('error', () => this.abort());
      src.resume(); // the proxy hands the body over paused, so that nothing flows before this reader is attached
    }
  }

  fail(e: H1Error): void {
    if (this.finished) return;
    this.finished = true;
    (this.socket ?? this.connecting)?.destroy();
    if (!this.response) this.sink.onError(e);
    else this.body.destroy(e);
  }

  onData(d: Buffer): void {
    if (this.finished) return;
    this.executed(this.conn.parser.execute(d), d);
  }

  /**
   * After the parser went through a read's bytes (`d`: undefined when it read them itself;
   * llhttp then parsed them all or stopped at an error).
   */
  executed(ret: number | ParseError, d: Buffer | undefined): void {
    if (this.finished) return;
    this.gotBytes = true;
    if (this.complete) { this.settle(typeof ret === 'number' && (d === undefined || ret === d.length) && !this.extra); return; }
    if (typeof ret !== 'number') this.parseError(ret);
  }

  private parseError(e: ParseError): void {
    this.fail(new H1Error('protocol', `invalid response from backend: ${e.reason ?? e.message}`, e.code, false));
  }

  /** The backend ended its side: a body delimited by the end completes; anything else is cut short. */
  onEnd(): void {
    if (this.finished) return;
    if (this.response && !this.complete) this.conn.parser.finish();
    if (this.complete) this.settle(false);
    else this.onClose(undefined);
  }

  onClose(e: NodeJS.ErrnoException | undefined): void {
    if (this.finished) return;
    if (!e && this.response && !this.complete) this.conn.parser.finish();
    if (this.complete) { this.settle(false); return; }
    const code = e?.code;
    const message = e?.message ?? 'connection closed by the backend before the response ended';
    if (!this.response) {
      // Nothing came back on a pooled connection: the backend had closed it; safe to send again.
      const retryable = this.reused && !this.gotBytes;
      this.fail(new H1Error(code !== undefined && CONNECT_ERRORS.has(code) ? 'connect' : 'reset', message, code ?? 'ECONNRESET', retryable));
    } else {
      this.fail(new H1Error('reset', message, code ?? 'ECONNRESET', false));
    }
  }

  // llhttp's callbacks, through the connection.

  onMessageBegin(): void {
    if (this.complete) this.extra = true;
  }

  onHeaders(h: string[]): void {
    if (this.complete || this.finished) return;
    if (this.response) { for (const x of h) this.trailerList.push(x); return; }
    for (const x of h) this.early.push(x);
  }

  /** The head: 1 tells llhttp the response has no body (HEAD). */
  onHead(major: number, minor: number, h: string[] | undefined, status: number, upgrade: boolean, keepAlive: boolean): number {
    if (this.complete || this.finished) { this.extra = true; return 0; }
    const headers = h ?? this.early;
    this.early = [];
    if (major !== 1 || upgrade || status === 101) {
      this.fail(new H1Error('protocol', major !== 1 ? `invalid response version ${major}.${minor}` : 'unexpected 101 Switching Protocols', 'HPE_UNEXPECTED', false));
      return 0;
    }
    if (status < 200) return 0; // 1xx: skipped, the real response follows
    this.keepAlive = keepAlive;
    this.status = status;
    this.headers = headers;
    this.body = new LiteBody(this);
    this.response = this;
    this.sink.onResponse(this);
    return this.head ? 1 : 0;
  }

  onBody(b: Buffer): void {
    if (this.finished || this.complete || !this.response) return;
    if (!this.body.push(b)) this.conn.pause();
  }

  onMessageComplete(): void {
    if (this.finished || this.complete || !this.response) return; // 1xx, or bytes after the response
    this.complete = true;
    this.body.push(null);
  }

  /** After the response: the connection goes back to the pool when its framing allows it. */
  private settle(reuse: boolean): void {
    if (this.finished) return;
    this.finished = true;
    const s = this.socket;
    if (reuse && this.keepAlive && !s.destroyed) {
      // Hand the socket back once the request body (if streamed) is fully written.
      if (this.req.body === undefined || Buffer.isBuffer(this.req.body) || this.req.body.readableEnded) this.pool.release(this.conn);
      else s.destroy();
    } else s.destroy();
  }
}
