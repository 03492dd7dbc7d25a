/**
 * A lean HTTP/1.1 client for backends: pooled keep-alive sockets per endpoint, the
 * request head written in one piece, responses parsed here (status line, headers, then
 * RFC 9112 §6.3 framing: no body, Content-Length, chunked, or until close).
 *
 * Why not http.request: on the proxy's hot path Node's ClientRequest/IncomingMessage/
 * Agent machinery costs about twice the CPU of the rest of the proxy (measured in
 * bench/waypoint). Callers' requests are still parsed by Node's own HTTP server (llhttp).
 * The parser is strict: anything it does not understand ends the exchange with a
 * protocol error (502) and the connection is not reused.
 */
import net, { type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { LiteBody, type ResponseBody } from './body.js';
import type { HeaderList } from './headers.js';
import type { ConnOptions } from '../resilience/compile.js';
import { UpstreamError as H1Error } from './upstream-error.js';

/** Failures are UpstreamErrors (kind connect, reset or protocol), as the proxy expects them. */
export { UpstreamError as H1Error } from './upstream-error.js';

export interface H1Response {
  status: number;
  headers: HeaderList;
  body: ResponseBody;
  trailers(): HeaderList;
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

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ETIMEDOUT']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CRLF2 = Buffer.from('\r\n\r\n');

/**
 * One connection to a backend, with its listeners installed once: they hand events to
 * the exchange in progress, or, while the connection is idle in the pool, drop it.
 */
class Conn {
  exchange: Exchange | undefined;
  timer: NodeJS.Timeout | undefined;
  idle = false;
  reused = false;
  /** Requests sent on it, and when it opened (for maxRequestsPerConnection and maxConnectionDuration). */
  requests = 0;
  readonly born = Date.now();

  constructor(readonly socket: Socket, readonly key: string, private readonly pool: H1Pool, readonly opts: ConnOptions | undefined) {
    socket.on('data', (d: Buffer) => { if (this.exchange) this.exchange.onData(d); else this.drop(); });
    socket.on('error', (e: NodeJS.ErrnoException) => { if (this.exchange) this.exchange.onClose(e); else this.drop(); });
    socket.on('end', () => { if (this.exchange) this.exchange.onEnd(); else this.drop(); });
    socket.on('close', () => { pool.closedConn(this); if (this.exchange) this.exchange.onClose(undefined); });
  }

  /** Leave the pool (idle timeout, or the backend closed or spoke). */
  drop(): void {
    this.pool.unpool(this);
    this.socket.destroy();
  }
}

export class H1Pool {
  private readonly idle = new Map<string, Conn[]>();
  private open = 0;
  private closed = false;
  private readonly maxHeaderBytes: number;

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
  }

  request(r: H1Request): { response: Promise<H1Response>; abort: () => void } {
    let exchange: Exchange | undefined;
    let fail: ((e: H1Error) => void) | undefined;
    const response = new Promise<H1Response>((resolve, reject) => {
      const key = `${r.address}:${r.port}`;
      const pooled = this.take(key);
      if (pooled) {
        pooled.requests++;
        exchange = new Exchange(this, pooled, true, r, resolve, reject, this.maxHeaderBytes);
        exchange.start();
        return;
      }
      const socket = net.connect({ host: r.address, port: r.port, noDelay: true });
      this.open++;
      const timer = setTimeout(() => socket.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), r.conn?.connectTimeoutMs ?? this.opts.connectTimeoutMs);
      timer.unref();
      const onConnectError = (e: NodeJS.ErrnoException): void => {
        clearTimeout(timer);
        reject(new H1Error('connect', e.message, e.code, true));
      };
      const onEarlyClose = (): void => { this.open--; };
      fail = (e) => { clearTimeout(timer); socket.destroy(); reject(e); };
      socket.once('error', onConnectError);
      socket.once('close', onEarlyClose);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', onConnectError);
        socket.removeListener('close', onEarlyClose);
        fail = undefined;
        const conn = new Conn(socket, key, this, r.conn);
        conn.requests++;
        if (r.conn?.keepAlive) socket.setKeepAlive(true, r.conn.keepAlive.idleTimeMs ?? 0);
        exchange = new Exchange(this, conn, false, r, resolve, reject, this.maxHeaderBytes);
        exchange.start();
      });
    });
    return {
      response,
      abort: () => {
        if (exchange) exchange.abort();
        else fail?.(new H1Error('reset', 'aborted', undefined, false));
      },
    };
  }

  /** An idle connection to the endpoint, if any is still usable. */
  private take(key: string): Conn | undefined {
    const list = this.idle.get(key);
    while (list && list.length > 0) {
      const c = list.pop()!;
      c.idle = false;
      if (c.timer) { clearTimeout(c.timer); c.timer = undefined; }
      const maxMs = c.opts?.maxDurationMs;
      if (!c.socket.destroyed && c.socket.writable && c.socket.readable && (maxMs === undefined || Date.now() - c.born < maxMs)) return c;
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
    c.timer = setTimeout(() => c.drop(), o?.idleTimeoutMs ?? this.opts.idleTimeoutMs);
    c.timer.unref();
    if (c.socket.isPaused()) c.socket.resume();
    list.push(c);
  }

  unpool(c: Conn): void {
    if (c.timer) { clearTimeout(c.timer); c.timer = undefined; }
    if (!c.idle) return;
    c.idle = false;
    const list = this.idle.get(c.key);
    const i = list ? list.indexOf(c) : -1;
    if (i >= 0) list!.splice(i, 1);
  }

  closedConn(c: Conn): void {
    this.open--;
    this.unpool(c);
  }
}

const enum State { Head, Body, Chunked, UntilClose, Done }
const enum Chunk { Size, Data, DataEnd, Trailers }

/** One request/response on one socket. */
class Exchange {
  private state: State = State.Head;
  private buf: Buffer | undefined;
  private response: H1Response | undefined;
  private body: LiteBody | undefined;
  private remaining = 0;
  private chunk: Chunk = Chunk.Size;
  private chunkLine = '';
  private trailers: HeaderList = [];
  private keepAlive = true;
  private gotBytes = false;
  private finished = false;
  private readonly head: boolean;

  private readonly socket: Socket;

  constructor(
    private readonly pool: H1Pool, private readonly conn: Conn, private readonly reused: boolean,
    private readonly req: H1Request, private readonly resolve: (r: H1Response) => void, private readonly reject: (e: H1Error) => void,
    private readonly maxHeaderBytes: number,
  ) {
    this.head = req.method === 'HEAD';
    this.socket = conn.socket;
  }

  start(): void {
    this.conn.exchange = this;
    if (this.socket.isPaused()) this.socket.resume();
    this.write();
  }

  abort(): void {
    if (this.finished) return;
    this.finished = true;
    this.socket.destroy();
    if (!this.response) this.reject(new H1Error('reset', 'aborted', undefined, false));
    else this.body?.destroy();
  }

  private write(): void {
    const r = this.req;
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

  private fail(e: H1Error): void {
    if (this.finished) return;
    this.finished = true;
    this.socket.destroy();
    if (!this.response) this.reject(e);
    else this.body!.destroy(e);
  }

  onClose(e: NodeJS.ErrnoException | undefined): void {
    if (this.finished) return;
    if (this.state === State.UntilClose && !e) { this.complete(false); return; }
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

  onEnd(): void {
    if (this.state === State.UntilClose) this.complete(false);
    else if (!this.finished) this.onClose(undefined);
  }

  onData(d: Buffer): void {
    if (this.finished) return;
    this.gotBytes = true;
    if (this.state === State.Head) {
      this.buf = this.buf ? Buffer.concat([this.buf, d]) : d;
      for (;;) {
        const end = this.buf.indexOf(CRLF2);
        if (end < 0) {
          if (this.buf.length > this.maxHeaderBytes) this.fail(new H1Error('protocol', 'response head too large', 'HPE_HEADER_OVERFLOW', false));
          return;
        }
        const headText = this.buf.toString('latin1', 0, end);
        const rest = this.buf.subarray(end + 4);
        this.buf = undefined;
        const informational = this.parseHead(headText);
        if (informational === undefined) return; // failed
        if (informational) { // 1xx: skip, the real response follows
          if (rest.length === 0) return;
          this.buf = rest;
          continue;
        }
        if (rest.length > 0) this.onBody(rest);
        return;
      }
    }
    this.onBody(d);
  }

  /** Parse a response head; true for 1xx, false for the response, undefined on error. */
  private parseHead(text: string): boolean | undefined {
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.([01]) ([1-9][0-9][0-9])(?: .*)?$/.exec(lines[0]!);
    if (!m) { this.fail(new H1Error('protocol', `invalid status line ${JSON.stringify(lines[0]!.slice(0, 60))}`, 'HPE_INVALID_CONSTANT', false)); return undefined; }
    const status = Number(m[2]);
    const http10 = m[1] === '0';
    const headers: HeaderList = [];
    let contentLength: number | undefined;
    let chunked = false;
    let otherEncoding = false;
    let connection = '';
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const c = line.indexOf(':');
      const name = c > 0 ? line.slice(0, c) : '';
      if (!TOKEN.test(name)) { this.fail(new H1Error('protocol', `invalid header line ${JSON.stringify(line.slice(0, 60))}`, 'HPE_INVALID_HEADER_TOKEN', false)); return undefined; }
      const value = line.slice(c + 1).trim();
      if (/[\0\r\n]/.test(value)) { this.fail(new H1Error('protocol', 'invalid header value', 'HPE_INVALID_HEADER_TOKEN', false)); return undefined; }
      const lower = name.toLowerCase();
      if (lower === 'content-length') {
        if (!/^[0-9]{1,15}$/.test(value) || (contentLength !== undefined && contentLength !== Number(value))) {
          this.fail(new H1Error('protocol', `invalid Content-Length ${JSON.stringify(value)}`, 'HPE_INVALID_CONTENT_LENGTH', false));
          return undefined;
        }
        contentLength = Number(value);
      } else if (lower === 'transfer-encoding') {
        const codings = value.toLowerCase().split(',').map((x) => x.trim()).filter((x) => x !== '');
        chunked = codings[codings.length - 1] === 'chunked';
        otherEncoding = !chunked;
      } else if (lower === 'connection') {
        connection += `,${value.toLowerCase()}`;
      }
      headers.push(name, value);
    }
    if (status < 200) {
      if (status === 101) { this.fail(new H1Error('protocol', 'unexpected 101 Switching Protocols', 'HPE_UNEXPECTED', false)); return undefined; }
      return true;
    }
    const conn = connection.split(',').map((x) => x.trim());
    this.keepAlive = http10 ? conn.includes('keep-alive') : !conn.includes('close');
    const body = new LiteBody(() => { if (this.socket.isPaused() && !this.finished) this.socket.resume(); });
    this.body = body;
    this.response = {
      status, headers, body,
      trailers: () => this.trailers,
      abort: () => this.abort(),
    };
    if (this.head || status === 204 || status === 304) this.state = State.Done;
    else if (chunked || otherEncoding) {
      // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3); such a message is not reused.
      if (contentLength !== undefined) this.keepAlive = false;
      if (otherEncoding) { this.state = State.UntilClose; this.keepAlive = false; } else this.state = State.Chunked;
    } else if (contentLength !== undefined) {
      this.state = State.Body;
      this.remaining = contentLength;
      if (contentLength === 0) this.state = State.Done;
    } else {
      this.state = State.UntilClose;
      this.keepAlive = false;
    }
    this.resolve(this.response);
    if (this.state === State.Done) this.complete(this.keepAlive);
    return false;
  }

  private push(b: Buffer): void {
    if (b.length === 0) return;
    if (!this.body!.push(b)) this.socket.pause();
  }

  private onBody(d: Buffer): void {
    switch (this.state) {
      case State.Body: {
        if (d.length <= this.remaining) {
          this.remaining -= d.length;
          this.push(d);
          if (this.remaining === 0) this.complete(this.keepAlive);
        } else {
          this.push(d.subarray(0, this.remaining));
          this.remaining = 0;
          // More bytes than announced: the connection cannot be trusted any more.
          this.complete(false);
        }
        return;
      }
      case State.UntilClose: this.push(d); return;
      case State.Chunked: this.onChunked(d); return;
      case State.Done:
        // Bytes after a complete response: not reusable.
        this.keepAlive = false;
        return;
      default:
    }
  }

  private onChunked(d: Buffer): void {
    let i = 0;
    while (i < d.length && this.state === State.Chunked) {
      switch (this.chunk) {
        case Chunk.Size: {
          const nl = d.indexOf(10, i);
          const part = d.toString('latin1', i, nl < 0 ? d.length : nl + 1);
          this.chunkLine += part;
          if (this.chunkLine.length > 1024) { this.fail(new H1Error('protocol', 'chunk size line too long', 'HPE_INVALID_CHUNK_SIZE', false)); return; }
          if (nl < 0) return;
          i = nl + 1;
          const m = /^([0-9A-Fa-f]{1,12})(?:;[^\r\n]*)?\r\n$/.exec(this.chunkLine);
          this.chunkLine = '';
          if (!m) { this.fail(new H1Error('protocol', 'invalid chunk size', 'HPE_INVALID_CHUNK_SIZE', false)); return; }
          this.remaining = parseInt(m[1]!, 16);
          this.chunk = this.remaining === 0 ? Chunk.Trailers : Chunk.Data;
          break;
        }
        case Chunk.Data: {
          const n = Math.min(this.remaining, d.length - i);
          this.push(d.subarray(i, i + n));
          i += n;
          this.remaining -= n;
          if (this.remaining === 0) { this.chunk = Chunk.DataEnd; this.chunkLine = ''; }
          break;
        }
        case Chunk.DataEnd: {
          // The CRLF after a chunk's data (it may arrive split across reads).
          const take = Math.min(2 - this.chunkLine.length, d.length - i);
          this.chunkLine += d.toString('latin1', i, i + take);
          i += take;
          if (this.chunkLine.length < 2) return;
          if (this.chunkLine !== '\r\n') { this.fail(new H1Error('protocol', 'missing CRLF after chunk data', 'HPE_INVALID_CHUNK_SIZE', false)); return; }
          this.chunkLine = '';
          this.chunk = Chunk.Size;
          break;
        }
        case Chunk.Trailers: {
          const nl = d.indexOf(10, i);
          this.chunkLine += d.toString('latin1', i, nl < 0 ? d.length : nl + 1);
          if (this.chunkLine.length > this.maxHeaderBytes) { this.fail(new H1Error('protocol', 'trailers too large', 'HPE_HEADER_OVERFLOW', false)); return; }
          if (nl < 0) return;
          i = nl + 1;
          if (this.chunkLine.endsWith('\r\n\r\n') || this.chunkLine === '\r\n') {
            for (const line of this.chunkLine.split('\r\n')) {
              if (line === '') continue;
              const c = line.indexOf(':');
              const name = c > 0 ? line.slice(0, c) : '';
              if (!TOKEN.test(name)) { this.fail(new H1Error('protocol', 'invalid trailer', 'HPE_INVALID_HEADER_TOKEN', false)); return; }
              this.trailers.push(name, line.slice(c + 1).trim());
            }
            this.chunkLine = '';
            this.complete(this.keepAlive && i === d.length);
            return;
          }
          break;
        }
      }
    }
  }

  private complete(reuse: boolean): void {
    if (this.finished) return;
    this.finished = true;
    this.state = State.Done;
    this.body!.push(null);
    const s = this.socket;
    if (reuse && this.keepAlive && !s.destroyed) {
      // Hand the socket back once the request body (if streamed) is fully written.
      if (this.req.body === undefined || Buffer.isBuffer(this.req.body) || this.req.body.readableEnded) this.pool.release(this.conn);
      else s.destroy();
    } else s.destroy();
  }
}
