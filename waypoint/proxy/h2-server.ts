/**
 * HTTP/2 callers (h2c with prior knowledge, gRPC) on nghttp2's core API, behind
 * `--http2-server node` (kept for one release; the default is the waypoint's own server,
 * h2-conn.ts): the server's
 * 'stream' event hands each request over as a stream, its header object and its raw
 * header list; the answer goes out through `respond()`, the stream's writes and
 * `sendTrailers()`. No Http2ServerRequest/Http2ServerResponse (Node's compatibility
 * layer) is made: what reaches the request handler is a small pair with the members it
 * uses (H2Request, H2Response), as the HTTP/1.1 server's FastRequest/FastResponse.
 *
 * The response head is held until the first body chunk or the end, so that an answer
 * without a body is one HEADERS frame that ends the stream (gRPC "trailers-only"), and
 * the stream waits for trailers only when the response may have some (no Content-Length,
 * a Trailer header, or gRPC); otherwise the last DATA frame ends the stream. A head not
 * followed by a body chunk in the same turn of the event loop is sent on its own
 * (streaming responses get their head at once).
 *
 * The first body chunk is held with the head, until the end or the same flush: a response
 * whose body arrives with its end (the common small answer) then goes out as HEADERS and
 * one DATA frame carrying END_STREAM, in one write. Written at once, the chunk's DATA
 * frame left before the end was known: the backend parser's callbacks each drain the
 * nextTick queue, so Node's end-of-stream check after a write ran before end(), and the
 * END_STREAM followed in an empty DATA frame of its own, one loop turn and one write later.
 * When every head held in a turn has gone out with its end, the end-of-turn immediate is
 * cleared: no JS callback is made for it.
 *
 * Idle sessions: a session without an open stream for idleTimeoutMs gets a GOAWAY and is
 * closed; a sweep finds them. Node's own session timer (`server.setTimeout`) is not used:
 * it is refreshed, a native clock read and a move in the timer list, at several points of
 * every stream, and it closed a session whose one long stream was silent for that long.
 */
import http2, { constants } from 'node:http2';
import type { Socket } from 'node:net';
import { fromObject, type HeaderList } from './headers.js';
import { checkHead, CONNECTION_SPECIFIC, HEAD_GRPC, HEAD_LENGTH, HEAD_TRAILER, holdHead, INVALID_VALUE, releaseHead, TOKEN } from './h2-head.js';

const { NGHTTP2_NO_ERROR } = constants;


/** What the server keeps of a session: the caller's socket, its open streams and since when it has none. */
interface SessionState { socket: Socket | undefined; open: number; idleSince: number }
const SESSION_STATE = Symbol('kernway.h2.session');
/** The response of a stream: the stream's listeners are shared functions that find it here (no closure per request). */
const RESPONSE = Symbol('kernway.h2.response');
type StreamWithResponse = http2.ServerHttp2Stream & { [RESPONSE]: H2Response | undefined };

function ignore(): void { /* a stream error is reported by 'close' (its rstCode) */ }
/**
 * The stream lets go of its response when it closes: Node's closed streams outlive
 * scavenges, and what hangs on them (the response, the handler's close callback and through
 * it the request's whole record) would go with them (docs/waypoint-bench.md).
 */
function onStreamClose(this: StreamWithResponse): void {
  const r = this[RESPONSE];
  this[RESPONSE] = undefined;
  r?.closedNow();
}
function onStreamDrain(this: StreamWithResponse): void { this[RESPONSE]?.drained(); }
function onWantTrailers(this: StreamWithResponse): void { this[RESPONSE]?.sendTrailers(); }

/** respond()'s options, by endStream (1) and waitForTrailers (2): Node only reads them, so no object per response. */
const RESPOND_OPTIONS: readonly http2.ServerStreamResponseOptions[] = [
  { endStream: false, waitForTrailers: false }, { endStream: true, waitForTrailers: false },
  { endStream: false, waitForTrailers: true }, { endStream: true, waitForTrailers: true },
].map((o) => Object.freeze(o));

export interface H2ServerOptions {
  /** SETTINGS_MAX_HEADER_LIST_SIZE: larger request heads are refused by nghttp2. */
  maxHeaderBytes: number;
  /** Sessions without an open stream are closed (GOAWAY) after this long; 0: never. */
  idleTimeoutMs: number;
  onRequest(req: H2Request, res: H2Response): void;
}

/** A request as the handler sees it (the members of IncomingMessage it uses). */
export class H2Request {
  // On the prototype: three fields fewer per request.
  get httpVersion(): string { return '2.0'; }
  get httpVersionMajor(): number { return 2; }
  get httpVersionMinor(): number { return 0; }
  readonly method: string;
  readonly url: string;
  /** True when the HEADERS frame ended the stream: no body follows. */
  readonly endAfterHeaders: boolean;

  constructor(
    /** The stream: also the request body (its readable side). */
    readonly stream: http2.ServerHttp2Stream,
    /** nghttp2's header object (lower-case names, repeated values joined as Node does). */
    readonly headers: http2.IncomingHttpHeaders,
    readonly rawHeaders: string[],
    /** The caller's TCP socket (what accept() knows of the connection is attached to it). */
    readonly socket: Socket,
  ) {
    this.method = headers[':method'] ?? 'GET';
    this.url = headers[':path'] ?? '';
    this.endAfterHeaders = stream.endAfterHeaders;
  }
}

/** A response as the handler writes it (the members of ServerResponse it uses). */
export class H2Response {
  statusCode = 200;
  headersSent = false;
  writableEnded = false;
  writableFinished = false;
  /** The head, built and checked by writeHead(), until it is sent. */
  private head: HeaderList | undefined;
  private noBody: boolean;
  private mayHaveTrailers = true;
  private responded = false;
  private waitingForTrailers = false;
  private trailers: Record<string, string | string[]> | undefined;
  private onClose: (() => void) | undefined;
  private onDrain: (() => void) | undefined;
  private closed = false;
  private flushScheduled = false;
  /** The first body chunk, held with the head (see the file's comment). */
  private heldChunk: Buffer | string | undefined;
  /** In heldHeads, its head not sent yet. */
  held = false;

  constructor(private readonly stream: http2.ServerHttp2Stream, method: string, private readonly session?: SessionState) {
    this.noBody = method === 'HEAD';
    (stream as StreamWithResponse)[RESPONSE] = this;
  }

  /**
   * The stream's 'error' and 'close' listeners, added once the request has been dispatched
   * (after the backend write): each on() emits Node's 'newListener' on the stream, work the
   * request need not wait for. Both events come on a later tick, never during the dispatch.
   */
  listen(): void {
    this.stream.on('error', ignore);
    this.stream.on('close', onStreamClose);
  }

  /** The stream closed (ended, or reset by either side). */
  closedNow(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.held) releaseHead(this);
    const s = this.session;
    if (s !== undefined && --s.open === 0) s.idleSince = performance.now();
    this.writableFinished = this.writableEnded && this.stream.rstCode === NGHTTP2_NO_ERROR;
    const f = this.onClose;
    this.onClose = undefined;
    f?.();
  }

  once(event: 'close' | 'drain', fn: () => void): this {
    if (event === 'close') this.onClose = fn;
    else {
      // A listener only for responses that meet back-pressure.
      if (this.onDrain === undefined) this.stream.once('drain', onStreamDrain);
      this.onDrain = fn;
    }
    return this;
  }

  drained(): void {
    const f = this.onDrain;
    this.onDrain = undefined;
    f?.();
  }

  /**
   * Checks the head now (a bad backend header throws here, as Node's writeHead does); sends it
   * with the first chunk or the end. A list is taken over, not copied (the handler hands over
   * one of its own and does not read it after): names are lower-cased and connection-specific
   * fields dropped in place, and `:status` goes last (nghttp2 sends pseudo-headers first).
   */
  writeHead(status: number, headers?: HeaderList | Record<string, string | string[] | number>): this {
    if (this.headersSent) throw Object.assign(new Error('headers already sent'), { code: 'ERR_HTTP_HEADERS_SENT' });
    if (!Number.isInteger(status) || status < 200 || status > 599) throw Object.assign(new Error(`invalid status ${status} for HTTP/2`), { code: 'ERR_HTTP2_STATUS_INVALID' });
    const head: HeaderList = headers === undefined ? [] : Array.isArray(headers) ? headers : fromObject(headers);
    const found = checkHead(head);
    head.push(':status', String(status));
    this.statusCode = status;
    if (status === 204 || status === 205 || status === 304) this.noBody = true;
    this.mayHaveTrailers = (found & HEAD_LENGTH) === 0 || (found & (HEAD_TRAILER | HEAD_GRPC)) !== 0;
    this.head = head;
    this.headersSent = true;
    if (!this.flushScheduled) { this.flushScheduled = true; holdHead(this); }
    return this;
  }

  /** A head not followed by a chunk in the same turn goes out alone. */
  flushHead(): void {
    if (this.head === undefined || this.closed) return;
    this.respond(false);
    const c = this.heldChunk;
    if (c !== undefined) {
      this.heldChunk = undefined;
      if (!this.stream.destroyed && !this.stream.write(c)) this.stream.once('drain', onStreamDrain);
    }
  }

  private respond(end: boolean): void {
    const head = this.head!;
    this.head = undefined;
    this.responded = true;
    if (this.held) releaseHead(this);
    const endStream = end && this.trailers === undefined;
    this.waitingForTrailers = !endStream && !this.noBody && (this.mayHaveTrailers || this.trailers !== undefined);
    try {
      this.stream.respond(head as unknown as http2.OutgoingHttpHeaders, RESPOND_OPTIONS[(endStream || this.noBody ? 1 : 0) | (this.waitingForTrailers ? 2 : 0)]);
    } catch {
      this.stream.destroy();
      return;
    }
    // 'wantTrailers' comes once: a plain listener (once() would wrap it in a closure).
    if (this.waitingForTrailers) this.stream.on('wantTrailers', onWantTrailers);
  }

  sendTrailers(): void {
    try { this.stream.sendTrailers(this.trailers ?? {}); } catch { this.stream.close(constants.NGHTTP2_INTERNAL_ERROR); }
  }

  write(chunk: Buffer | string): boolean {
    if (this.writableEnded || this.closed) return false;
    if (!this.headersSent) this.writeHead(this.statusCode);
    if (this.noBody) { if (this.head !== undefined) this.respond(false); return true; }
    if (this.head !== undefined) {
      // The first chunk waits with the head: end() may follow in this turn.
      if (this.heldChunk === undefined) { this.heldChunk = chunk; return true; }
      this.respond(false);
      const c = this.heldChunk;
      this.heldChunk = undefined;
      this.stream.write(c);
    }
    return this.stream.write(chunk);
  }

  addTrailers(t: Record<string, string | string[]>): void {
    const o: Record<string, string | string[]> = {};
    for (const k of Object.keys(t)) {
      const name = k.toLowerCase();
      const v = t[k]!;
      for (const x of Array.isArray(v) ? v : [v]) {
        if (!TOKEN.test(name) || INVALID_VALUE.test(x)) throw Object.assign(new Error(`invalid trailer ${k}`), { code: 'ERR_INVALID_CHAR' });
      }
      if (CONNECTION_SPECIFIC.has(name) || name === 'te') continue;
      o[name] = v;
    }
    if (Object.keys(o).length === 0) return;
    // Trailers after a head sent without waiting for them (a Content-Length response) cannot be sent: dropped, as HTTP/1.1 does.
    if (this.responded && !this.waitingForTrailers) return;
    this.trailers = o;
  }

  end(chunk?: Buffer | string): void {
    if (this.writableEnded || this.closed) return;
    this.writableEnded = true;
    if (!this.headersSent) {
      const n = chunk === undefined ? 0 : typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      this.writeHead(this.statusCode, this.statusCode === 204 || this.statusCode === 304 ? [] : ['content-length', String(n)]);
    }
    let last = chunk !== undefined && !this.noBody && chunk.length > 0 ? chunk : undefined;
    const held = this.heldChunk;
    this.heldChunk = undefined;
    if (held !== undefined && !this.noBody) {
      if (last === undefined) last = held;
      else if (this.head === undefined) this.stream.write(held);
      else last = Buffer.concat([typeof held === 'string' ? Buffer.from(held) : held, typeof last === 'string' ? Buffer.from(last) : last]);
    }
    if (this.head !== undefined) this.respond(last === undefined);
    if (this.stream.destroyed) return;
    if (this.noBody) { if (!this.stream.writableEnded) this.stream.end(); return; }
    // end(chunk): Node's check after this write sees the stream ending, so the chunk's DATA frame carries END_STREAM.
    if (last !== undefined) this.stream.end(last);
    else if (!this.stream.writableEnded) this.stream.end();
  }

  destroy(): void {
    if (!this.stream.destroyed) this.stream.destroy();
  }
}

/** The HTTP/2 server callers' connections are handed to (after accept()'s preface check). */
export class H2Server {
  private readonly server: http2.Http2Server;
  private readonly sessions = new Map<http2.ServerHttp2Session, SessionState>();
  /** The idle sweep (none when idleTimeoutMs is 0: sessions are never closed for idleness, as with Node's setTimeout(0)). */
  private readonly sweep: NodeJS.Timeout | undefined;
  /** The socket being handed to nghttp2, for the 'session' event that follows at once. */
  private handing: Socket | undefined;

  constructor(private readonly opts: H2ServerOptions) {
    // No 'request' listener: Node's compatibility layer is never set up.
    this.server = http2.createServer({
      maxSessionMemory: 32,
      settings: { maxConcurrentStreams: 1000, maxHeaderListSize: opts.maxHeaderBytes, enablePush: false },
    });
    // Idle sessions are found by a sweep, not by Node's session timer: that one is refreshed
    // (a native clock read and a timer-list move) at several points of every stream.
    if (opts.idleTimeoutMs > 0) {
      this.sweep = setInterval(() => this.closeIdle(), Math.max(10, Math.min(1000, Math.floor(opts.idleTimeoutMs / 4))));
      this.sweep.unref();
    }
    this.server.on('session', (s: http2.ServerHttp2Session) => {
      const state: SessionState = { socket: this.handing, open: 0, idleSince: performance.now() };
      (s as unknown as Record<symbol, SessionState>)[SESSION_STATE] = state;
      this.sessions.set(s, state);
      s.once('close', () => this.sessions.delete(s));
      s.on('error', () => { /* the session ends; streams report their own errors */ });
    });
    this.server.on('stream', this.onStream);
  }

  /** A caller's connection whose first bytes are the HTTP/2 preface. */
  connection(socket: Socket): void {
    this.handing = socket;
    try { this.server.emit('connection', socket); } finally { this.handing = undefined; }
  }

  private readonly onStream = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]): void => {
    const state = (stream.session as unknown as Record<symbol, SessionState | undefined>)[SESSION_STATE];
    const socket = state?.socket;
    if (socket === undefined) { stream.close(constants.NGHTTP2_INTERNAL_ERROR); return; }
    state!.open++;
    const req = new H2Request(stream, headers, rawHeaders, socket);
    const res = new H2Response(stream, req.method, state);
    // Expect: 100-continue (RFC 9110 §10.1.1): the body is read anyway, so say so at once.
    if (headers.expect === '100-continue' && !stream.endAfterHeaders) {
      try { stream.additionalHeaders({ ':status': 100 }); } catch { /* the stream is gone */ }
    }
    try {
      this.opts.onRequest(req, res);
    } finally {
      res.listen();
    }
  };

  /** Sessions without an open stream for idleTimeoutMs get a GOAWAY and are closed. */
  private closeIdle(): void {
    const now = performance.now();
    for (const [s, state] of this.sessions) {
      if (state.open === 0 && now - state.idleSince >= this.opts.idleTimeoutMs && !s.closed) s.close();
    }
  }

  /** At shutdown: a GOAWAY to every session; streams in flight finish. */
  closeSessions(): void {
    for (const s of this.sessions.keys()) s.close();
  }

  close(): void {
    clearInterval(this.sweep);
    this.server.close();
  }
}
