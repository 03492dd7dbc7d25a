/**
 * The waypoint's own HTTP/2 server (`--http2-server kernway`): it owns the caller's h2c
 * connection as the HTTP/1.1 server does (h1-server.ts). Frames are read from the raw
 * socket (9-byte headers, strict lengths), header blocks decoded by h2-hpack.ts, and
 * what reaches the request handler is the same kind of pair the nghttp2 path gives it
 * (H2Request/H2Response in h2-server.ts): KwH2Request, KwH2Response. No Http2Session,
 * Http2Stream, header object or native call per request.
 *
 * What it does (RFC 9113): the connection preface and SETTINGS (with ACK both ways);
 * HEADERS + CONTINUATION, DATA, trailers; RST_STREAM; PING answered; PRIORITY ignored;
 * WINDOW_UPDATE and flow control both ways: DATA is sent within the peer's stream and
 * connection windows, the rest queued (the response's write() says false until it is out,
 * then 'drain'); the caller's windows are given back as the handler consumes a request
 * body. GOAWAY at shutdown and on idle connections (as h2-server.ts: a sweep, not a timer).
 *
 * Limits, as nghttp2 and Node have them: 100 concurrent streams (REFUSED_STREAM beyond);
 * an HPACK dynamic table of at most 4096 bytes; a header block of at most 8 CONTINUATION
 * frames; rapid resets (CVE-2023-44487), PING/SETTINGS floods and empty DATA floods end
 * the connection with GOAWAY ENHANCE_YOUR_CALM; stream ids must be odd (a HEADERS on a
 * lower id than one seen is ignored, as nghttp2 does); a window past 2^31-1, or DATA past
 * one, is a FLOW_CONTROL_ERROR. A connection error is a GOAWAY with its code, then the
 * close. Requests that break RFC 9113 §8.2 (upper-case names, connection-specific fields,
 * pseudo-header rules, Content-Length against the DATA) are reset with PROTOCOL_ERROR
 * without reaching the handler, as nghttp2 does. Two checks are stricter than nghttp2 as
 * Node runs it: a head above maxHeaderBytes (the SETTINGS_MAX_HEADER_LIST_SIZE both
 * advertise) is answered 431, as on HTTP/1.1, where Node lets it through; and field values
 * with NUL, CR or LF, leading or trailing white space, or names that are not tokens, are
 * reset (RFC 9113 §8.2.1 MUSTs) where Node lets them through to the handler.
 *
 * Writes: the response head is held until its first body chunk or its end in the same
 * turn of the event loop (one immediate per turn for all held heads, as h2-server.ts), so
 * a small answer is HEADERS and DATA with END_STREAM in one socket write. Frames made
 * while a read is being handled (SETTINGS ACK, WINDOW_UPDATE, answers given at once) go
 * out together at the end of that read.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { fromObject, type HeaderList } from './headers.js';
import { DECODED_TOO_LARGE, encodedBound, encodeHead, HpackDecoder, HpackError } from './h2-hpack.js';
import { SocketWriter } from './h1-write.js';
import { dateHeader } from './h1-server.js';
import { checkHead, CONNECTION_SPECIFIC, HEAD_DATE, HEAD_GRPC, HEAD_LENGTH, HEAD_TRAILER, holdHead, INVALID_VALUE, releaseHead } from './h2-head.js';

// Frame types and flags.
const DATA = 0, HEADERS = 1, PRIORITY = 2, RST_STREAM = 3, SETTINGS = 4, PUSH_PROMISE = 5, PING = 6, GOAWAY = 7, WINDOW_UPDATE = 8, CONTINUATION = 9;
const END_STREAM = 1, ACK = 1, END_HEADERS = 4, PADDED = 8, PRIORITY_FLAG = 0x20;
// Error codes.
export const H2_NO_ERROR = 0, H2_PROTOCOL_ERROR = 1, H2_INTERNAL_ERROR = 2, H2_FLOW_CONTROL_ERROR = 3, H2_STREAM_CLOSED = 5,
  H2_FRAME_SIZE_ERROR = 6, H2_REFUSED_STREAM = 7, H2_CANCEL = 8, H2_COMPRESSION_ERROR = 9, H2_ENHANCE_YOUR_CALM = 11;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** Our SETTINGS_MAX_FRAME_SIZE (the default, never changed). */
const MAX_FRAME = 16384;
const DEFAULT_WINDOW = 65535;
const MAX_WINDOW = 0x7fffffff;
export const MAX_CONCURRENT_STREAMS = 100;
/** CONTINUATION frames allowed after a HEADERS frame (nghttp2's limit, CVE-2024-27316). */
const MAX_CONTINUATIONS = 8;
/** Window credit given back once this much of a window was consumed. */
const WINDOW_RETURN = 32768;
/** Queued response bytes above which write() says false. */
const SEND_HIGH_WATER = 65536;
/** Token buckets: burst and refill per second. Resets (nghttp2: 1000, 33/s), PING/SETTINGS, empty DATA and invalid frames. */
const RESET_BURST = 1000, RESET_RATE = 33;
const CONTROL_BURST = 1000, CONTROL_RATE = 100;
const EMPTY_BURST = 1000, EMPTY_RATE = 100;

/** A field name as RFC 9113 allows it in a request: tchar without upper-case letters. */
const LOWER_TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") LOWER_TCHAR[c.charCodeAt(0)] = 1;
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;
const REQUEST_CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);
/** Header names Node's http2 header object keeps one value of (its kSingleValueHeaders). */
const SINGLE = new Set([':status', ':method', ':authority', ':scheme', ':path', ':protocol', 'access-control-allow-credentials', 'access-control-max-age',
  'access-control-request-method', 'age', 'authorization', 'content-encoding', 'content-language', 'content-length', 'content-location', 'content-md5',
  'content-range', 'content-type', 'date', 'dnt', 'etag', 'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match', 'if-range',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'range', 'referer', 'retry-after', 'tk',
  'upgrade-insecure-requests', 'user-agent', 'x-content-type-options']);

function lowerToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (LOWER_TCHAR[s.charCodeAt(i)] !== 1) return false;
  return true;
}
function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) { const c = s.charCodeAt(i); if (c > 255 || TCHAR[c] !== 1) return false; }
  return true;
}
/** A request field value nghttp2 accepts (RFC 9113 §8.2.1): no NUL, CR or LF, no leading or trailing space or tab. */
function validRequestValue(v: string): boolean {
  const n = v.length;
  if (n === 0) return true;
  let c = v.charCodeAt(0);
  if (c === 32 || c === 9) return false;
  c = v.charCodeAt(n - 1);
  if (c === 32 || c === 9) return false;
  for (let i = 0; i < n; i++) { c = v.charCodeAt(i); if (c === 0 || c === 10 || c === 13) return false; }
  return true;
}

function frameHeader(b: Buffer, o: number, length: number, type: number, flags: number, stream: number): void {
  b[o] = length >>> 16;
  b[o + 1] = (length >>> 8) & 255;
  b[o + 2] = length & 255;
  b[o + 3] = type;
  b[o + 4] = flags;
  b.writeUInt32BE(stream, o + 5);
}

function frame(type: number, flags: number, stream: number, payload?: Buffer): Buffer {
  const n = payload?.length ?? 0;
  const b = Buffer.allocUnsafe(9 + n);
  frameHeader(b, 0, n, type, flags, stream);
  if (payload !== undefined) payload.copy(b, 9);
  return b;
}

function u32(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

function ignore(): void { /* the body's consumer hears of a reset through its own listeners, if it has any */ }

/** A token bucket: take() false when empty. */
class Bucket {
  private tokens: number;
  private at = performance.now();
  constructor(private readonly burst: number, private readonly rate: number) { this.tokens = burst; }
  take(): boolean {
    if (this.tokens >= 1) { this.tokens--; return true; }
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

export interface KwH2ServerOptions {
  /** SETTINGS_MAX_HEADER_LIST_SIZE: larger request heads are refused (RST_STREAM ENHANCE_YOUR_CALM). */
  maxHeaderBytes: number;
  /** Connections without an open stream get a GOAWAY and are closed after this long; 0: never. */
  idleTimeoutMs: number;
  onRequest(req: KwH2Request, res: KwH2Response): void;
  /** A request refused before the handler (its head too large): for metrics. */
  onRefused?(kind: string, socket: Socket): void;
}

/** A request as the handler sees it (the members of H2Request it uses). */
export class KwH2Request {
  get httpVersion(): string { return '2.0'; }
  get httpVersionMajor(): number { return 2; }
  get httpVersionMinor(): number { return 0; }
  readonly method: string;
  readonly url: string;
  readonly socket: Socket;
  private parsed: Record<string, string | string[]> | undefined;
  /** The body as a stream, made when the handler asks for it. */
  private body: Readable | undefined;
  /** Body chunks received before that. */
  chunks: Buffer[] | undefined;
  /** Bytes delivered to the body's consumer or held for it, and not yet given back to the caller's window. */
  bodyEnded = false;
  bodyFailed = false;

  constructor(
    readonly res: KwH2Response,
    /** The header list as received (lower-case names, pseudo-headers first), as Node's rawHeaders. */
    readonly rawHeaders: string[],
    method: string, path: string,
    /** True when the HEADERS frame ended the stream: no body follows. */
    readonly endAfterHeaders: boolean,
  ) {
    this.method = method;
    this.url = path;
    this.socket = res.conn.socket;
    if (endAfterHeaders) this.bodyEnded = true;
  }

  /** Header object with the rules of Node's http2 (cookie crumbs joined by '; ', set-cookie an array, repeats of others an array). */
  get headers(): Record<string, string | string[]> {
    if (this.parsed) return this.parsed;
    const o: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i]!;
      const v = raw[i + 1]!;
      const prev = o[k];
      if (prev === undefined) { o[k] = k === 'set-cookie' ? [v] : v; continue; }
      if (SINGLE.has(k)) continue;
      if (k === 'cookie') o[k] = `${prev as string}; ${v}`;
      else if (typeof prev === 'string') o[k] = [prev, v];
      else prev.push(v);
    }
    this.parsed = o;
    return o;
  }

  /** The request body (the name the handler reads on the nghttp2 path's request). */
  get stream(): Readable {
    if (this.body) return this.body;
    const res = this.res;
    const s = new Readable({ read: () => res.conn.bodyRead(res) });
    // A reset stream destroys the body with an error: its consumer may not listen for one (yet, or any more).
    s.on('error', ignore);
    this.body = s;
    const c = this.chunks;
    this.chunks = undefined;
    if (c !== undefined) for (const x of c) s.push(x);
    if (this.bodyFailed) s.destroy(new Error('stream reset'));
    else if (this.bodyEnded) s.push(null);
    return s;
  }

  /** A body chunk from a DATA frame; false: the consumer is behind (the window is not given back yet). */
  pushBody(b: Buffer): boolean {
    if (this.body !== undefined) return this.body.push(b);
    (this.chunks ??= []).push(b);
    return false;
  }

  endBody(): void {
    this.bodyEnded = true;
    this.body?.push(null);
  }

  failBody(): void {
    if (this.bodyEnded || this.bodyFailed) return;
    this.bodyFailed = true;
    this.chunks = undefined;
    this.body?.destroy(new Error('stream reset'));
  }
}

/** A response as the handler writes it, and the state of its stream. */
export class KwH2Response {
  statusCode = 200;
  headersSent = false;
  writableEnded = false;
  writableFinished = false;
  req: KwH2Request | undefined;
  /** The peer's window for this stream. */
  sendWindow: number;
  /** Request body bytes received and not yet given back to the caller's stream window. */
  credit = 0;
  /** Request body bytes received (for Content-Length) and the length declared (-1: none). */
  received = 0;
  declared = -1;
  /** The caller ended its side (END_STREAM received). */
  remoteClosed = false;
  /** The stream closed (ended both ways, or reset). */
  closed = false;
  /** In the connection's list of streams waiting for window. */
  waiting = false;
  /** DATA not sent yet (window or held), and whether END_STREAM (then trailers) follows it. */
  private queue: Buffer[] = [];
  queued = 0;
  private endQueued = false;
  private head: HeaderList | undefined;
  private noBody: boolean;
  private mayHaveTrailers = true;
  private trailers: HeaderList | undefined;
  private onClose: (() => void) | undefined;
  private onDrain: (() => void) | undefined;
  private wantDrain = false;
  held = false;
  private headScheduled = false;
  private bytesSent = false;

  constructor(readonly conn: KwH2Conn, readonly id: number, method: string) {
    this.sendWindow = conn.peerInitialWindow;
    this.noBody = method === 'HEAD';
  }

  once(event: 'close' | 'drain', fn: () => void): this {
    if (event === 'close') this.onClose = fn;
    else this.onDrain = fn;
    return this;
  }

  /** `checked`: the head's names and values are known to be valid (see checkHead). */
  writeHead(status: number, headers?: HeaderList | Record<string, string | string[] | number>, checked = false): this {
    if (this.headersSent) throw Object.assign(new Error('headers already sent'), { code: 'ERR_HTTP_HEADERS_SENT' });
    if (!Number.isInteger(status) || status < 200 || status > 599) throw Object.assign(new Error(`invalid status ${status} for HTTP/2`), { code: 'ERR_HTTP2_STATUS_INVALID' });
    const head: HeaderList = headers === undefined ? [] : Array.isArray(headers) ? headers : fromObject(headers);
    const found = checkHead(head, checked);
    // Node's respond() adds a Date to every answer that has none: the same here.
    if ((found & HEAD_DATE) === 0) head.push('date', dateHeader());
    this.statusCode = status;
    if (status === 204 || status === 205 || status === 304) this.noBody = true;
    this.mayHaveTrailers = (found & HEAD_LENGTH) === 0 || (found & (HEAD_TRAILER | HEAD_GRPC)) !== 0;
    this.head = head;
    this.headersSent = true;
    if (!this.headScheduled) { this.headScheduled = true; holdHead(this); }
    return this;
  }

  /** A head not followed by its end in the same turn goes out with what is queued. */
  flushHead(): void {
    if (this.closed) return;
    this.conn.sendQueued(this);
  }

  write(chunk: Buffer | string): boolean {
    if (this.writableEnded || this.closed) return false;
    if (!this.headersSent) this.writeHead(this.statusCode);
    if (this.noBody) return true;
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (b.length === 0) return true;
    this.queue.push(b);
    this.queued += b.length;
    // Held with the head until the end of the turn (end() may follow).
    if (this.held) return true;
    this.conn.sendQueued(this);
    if (this.queued < SEND_HIGH_WATER && !this.conn.blocked) return true;
    this.wantDrain = true;
    return false;
  }

  addTrailers(t: Record<string, string | string[]>): void {
    const list: HeaderList = [];
    for (const k of Object.keys(t)) {
      const name = k.toLowerCase();
      const v = t[k]!;
      for (const x of Array.isArray(v) ? v : [v]) {
        if (!isToken(name) || INVALID_VALUE.test(x)) throw Object.assign(new Error(`invalid trailer ${k}`), { code: 'ERR_INVALID_CHAR' });
        if (CONNECTION_SPECIFIC.has(name) || name === 'te') continue;
        list.push(name, x);
      }
    }
    if (list.length === 0) return;
    // Trailers after a head sent without room for them (a Content-Length response) are dropped, as on the nghttp2 path.
    if (this.head === undefined && !this.mayHaveTrailers) return;
    this.trailers = list;
  }

  end(chunk?: Buffer | string): void {
    if (this.writableEnded || this.closed) return;
    this.writableEnded = true;
    if (!this.headersSent) {
      const n = chunk === undefined ? 0 : typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      this.writeHead(this.statusCode, this.statusCode === 204 || this.statusCode === 304 ? [] : ['content-length', String(n)]);
    }
    if (chunk !== undefined && !this.noBody && chunk.length > 0) {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      this.queue.push(b);
      this.queued += b.length;
    }
    this.endQueued = true;
    this.conn.sendQueued(this);
  }

  destroy(): void {
    if (this.closed) return;
    this.conn.resetStream(this, H2_INTERNAL_ERROR);
  }

  // ---- used by the connection

  /** Frames of this stream the windows allow now, into `out`; true when the stream is done sending. */
  takeFrames(out: Buffer[], connWindow: number, maxFrame: number): number {
    let used = 0;
    if (this.held) releaseHead(this);
    const head = this.head;
    if (head !== undefined) {
      this.head = undefined;
      const endNow = this.endQueued && (this.queued === 0 || this.noBody) && this.trailers === undefined;
      // A gRPC "trailers-only" answer, an empty answer: one HEADERS frame that ends the stream.
      const block = this.conn.encodeBlock(String(this.statusCode), head);
      // Head and first DATA in one buffer.
      let first = 0;
      if (!this.noBody && this.queue.length > 0) first = Math.min(this.queue[0]!.length, this.sendWindow, connWindow, maxFrame);
      const dataEnds = first > 0 && this.endQueued && this.trailers === undefined && this.queue.length === 1 && first === this.queued;
      const hlen = headerFramesLength(block.length, maxFrame);
      const b = Buffer.allocUnsafe(hlen + (first > 0 ? 9 + first : 0));
      const o = writeHeaderFrames(b, 0, block, this.id, endNow || (this.noBody && this.endQueued && this.trailers === undefined) ? END_STREAM : 0, maxFrame);
      if (first > 0) {
        const c = this.queue[0]!;
        frameHeader(b, o, first, DATA, dataEnds ? END_STREAM : 0, this.id);
        c.copy(b, o + 9, 0, first);
        if (first === c.length) this.queue.shift(); else this.queue[0] = c.subarray(first);
        this.queued -= first;
        this.sendWindow -= first;
        used += first;
      }
      out.push(b);
      this.bytesSent = true;
      if (endNow || dataEnds || (this.noBody && this.endQueued && this.trailers === undefined)) { this.queue.length = 0; this.queued = 0; this.endQueued = false; return used + DONE; }
    }
    if (this.noBody) { this.queue.length = 0; this.queued = 0; }
    while (this.queue.length > 0) {
      const c = this.queue[0]!;
      const n = Math.min(c.length, this.sendWindow, connWindow - used, maxFrame);
      if (n <= 0) return used;
      const last = this.queue.length === 1 && n === c.length && this.endQueued && this.trailers === undefined;
      const h = Buffer.allocUnsafe(9);
      frameHeader(h, 0, n, DATA, last ? END_STREAM : 0, this.id);
      out.push(h, n === c.length ? c : c.subarray(0, n));
      if (n === c.length) this.queue.shift(); else this.queue[0] = c.subarray(n);
      this.queued -= n;
      this.sendWindow -= n;
      used += n;
      if (last) { this.endQueued = false; return used + DONE; }
    }
    if (this.endQueued) {
      this.endQueued = false;
      const t = this.trailers;
      if (t !== undefined) {
        const block = this.conn.encodeBlock('', t);
        const b = Buffer.allocUnsafe(headerFramesLength(block.length, maxFrame));
        writeHeaderFrames(b, 0, block, this.id, END_STREAM, maxFrame);
        out.push(b);
      } else out.push(frame(DATA, END_STREAM, this.id));
      return used + DONE;
    }
    return used;
  }

  /** Everything was sent and the end too: the response is finished. */
  finished(): void {
    this.writableFinished = true;
  }

  /** The queue is below its mark again and the socket takes more: 'drain'. */
  maybeDrain(): void {
    if (!this.wantDrain || this.conn.blocked || this.queued >= SEND_HIGH_WATER || this.closed) return;
    this.wantDrain = false;
    const f = this.onDrain;
    this.onDrain = undefined;
    f?.();
  }

  closedNow(): void {
    if (this.held) releaseHead(this);
    this.queue.length = 0;
    this.queued = 0;
    const f = this.onClose;
    this.onClose = undefined;
    f?.();
  }

  get sentAnything(): boolean { return this.bytesSent; }
}

/** takeFrames' flag (above the byte counts, which are < 2^31): the stream sent its end. */
const DONE = 2 ** 31;

function headerFramesLength(blockLength: number, maxFrame: number): number {
  const frames = Math.max(1, Math.ceil(blockLength / maxFrame));
  return blockLength + 9 * frames;
}

/** HEADERS then CONTINUATION frames for `block`; returns the end offset. */
function writeHeaderFrames(b: Buffer, o: number, block: Buffer, id: number, flags: number, maxFrame: number): number {
  let at = 0;
  let type = HEADERS;
  do {
    const n = Math.min(maxFrame, block.length - at);
    const last = at + n >= block.length;
    frameHeader(b, o, n, type, (type === HEADERS ? flags : 0) | (last ? END_HEADERS : 0), id);
    block.copy(b, o + 9, at, at + n);
    o += 9 + n;
    at += n;
    type = CONTINUATION;
  } while (at < block.length);
  return o;
}

let encodeScratch = Buffer.allocUnsafe(16384);

/** One caller connection. */
export class KwH2Conn {
  readonly streams = new Map<number, KwH2Response>();
  private buf: Buffer | undefined;
  private prefaceLeft = PREFACE.length;
  private gotSettings = false;
  private readonly decoder = new HpackDecoder(4096);
  private lastStreamId = 0;
  /** The header block being received: its stream, flags, fragments, CONTINUATION count. */
  private hbStream = 0;
  private hbFlags = 0;
  private hbParts: Buffer[] = [];
  private hbLength = 0;
  private hbContinuations = 0;
  /** The block belongs to a stream that is closed: decoded (HPACK state) and dropped. */
  private hbIgnore = false;
  peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = MAX_FRAME;
  /** The peer's connection window, and the credit of ours not given back yet. */
  private sendWindow = DEFAULT_WINDOW;
  private connCredit = 0;
  /** Streams with DATA waiting for window. */
  private waitingStreams: KwH2Response[] = [];
  /** Frames made while a read is handled, written at its end. */
  private out: Buffer[] = [];
  private reading = false;
  /** The socket holds back writes ('drain' owed). */
  blocked = false;
  private readonly writer: SocketWriter;
  open = 0;
  idleSince = performance.now();
  private goingAway = false;
  private dead = false;
  private readonly resets = new Bucket(RESET_BURST, RESET_RATE);
  private readonly controls = new Bucket(CONTROL_BURST, CONTROL_RATE);
  private readonly empties = new Bucket(EMPTY_BURST, EMPTY_RATE);

  constructor(readonly socket: Socket, private readonly server: KwH2Server) {
    this.writer = new SocketWriter(socket, () => this.drained());
    socket.on('drain', () => this.drained());
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('close', () => this.onClose());
    // A reset or a failed write (the connection just ends: 'close' follows); accept() listens too, a test's plain server may not.
    socket.on('error', () => { this.dead = true; });
    socket.on('end', () => { if (!this.dead) this.terminate(); });
    // Our SETTINGS: no push, at most 100 streams, the header list limit. Window and frame size stay the defaults.
    const s = Buffer.allocUnsafe(18);
    s.writeUInt16BE(2, 0); s.writeUInt32BE(0, 2);
    s.writeUInt16BE(3, 6); s.writeUInt32BE(MAX_CONCURRENT_STREAMS, 8);
    s.writeUInt16BE(6, 12); s.writeUInt32BE(server.opts.maxHeaderBytes, 14);
    this.write(frame(SETTINGS, 0, 0, s));
  }

  // ------------------------------------------------------------ output

  private write(b: Buffer): void {
    if (this.dead) return;
    if (this.reading) { this.out.push(b); return; }
    if (!this.writer.write(b)) this.blocked = true;
  }

  private writeMany(list: Buffer[]): void {
    if (this.dead || list.length === 0) return;
    if (this.reading) { for (const b of list) this.out.push(b); return; }
    if (list.length === 1) { if (!this.writer.write(list[0]!)) this.blocked = true; return; }
    const s = this.socket;
    s.cork();
    let ok = true;
    for (const b of list) ok = s.write(b);
    s.uncork();
    if (!ok) this.blocked = true;
  }

  private flushOut(): void {
    const list = this.out;
    if (list.length === 0) return;
    this.out = [];
    this.writeMany(list.length === 1 ? list : [Buffer.concat(list)]);
  }

  private drained(): void {
    if (this.socket.writableNeedDrain || this.writer.queued > 0) return;
    this.blocked = false;
    for (const r of this.streams.values()) r.maybeDrain();
  }

  encodeBlock(status: string, list: HeaderList): Buffer {
    const bound = encodedBound(list) + 8;
    if (encodeScratch.length < bound) encodeScratch = Buffer.allocUnsafe(Math.max(bound, encodeScratch.length * 2));
    const n = encodeHead(encodeScratch, 0, status, list);
    return encodeScratch.subarray(0, n);
  }

  /** Sends what the windows allow of a stream's queue (its head first). */
  sendQueued(r: KwH2Response): void {
    if (r.closed || this.dead) return;
    const out: Buffer[] = [];
    const got = r.takeFrames(out, this.sendWindow, this.peerMaxFrame);
    const done = got >= DONE;
    this.sendWindow -= done ? got - DONE : got;
    this.writeMany(out);
    if (done) {
      r.finished();
      this.streamSent(r);
    } else if (r.queued > 0 && !r.waiting) {
      r.waiting = true;
      this.waitingStreams.push(r);
    }
  }

  /** A window opened: streams waiting send in turn. */
  private sendWaiting(): void {
    if (this.waitingStreams.length === 0) return;
    const list = this.waitingStreams;
    this.waitingStreams = [];
    for (const r of list) {
      r.waiting = false;
      if (this.sendWindow <= 0 && r.queued > 0) { r.waiting = true; this.waitingStreams.push(r); continue; }
      this.sendQueued(r);
      r.maybeDrain();
    }
  }

  /** The response's end went out: the stream closes once the caller's side is done too. */
  private streamSent(r: KwH2Response): void {
    if (r.remoteClosed) this.closeStream(r);
    else {
      // The answer is complete before the request body: the rest of it is not wanted (RFC 9113 §8.1).
      this.write(frame(RST_STREAM, 0, r.id, u32(H2_NO_ERROR)));
      r.remoteClosed = true;
      r.req?.failBody();
      this.closeStream(r);
    }
  }

  private closeStream(r: KwH2Response): void {
    if (r.closed) return;
    r.closed = true;
    this.streams.delete(r.id);
    if (--this.open === 0) {
      this.idleSince = performance.now();
      if (this.goingAway) this.endSoon();
    }
    r.closedNow();
  }

  /** The handler gives up a stream (or its response failed): RST_STREAM. */
  resetStream(r: KwH2Response, code: number): void {
    if (r.closed) return;
    this.write(frame(RST_STREAM, 0, r.id, u32(code)));
    r.req?.failBody();
    this.closeStream(r);
  }

  /** A request body's consumer wants more: the window it consumed goes back to the caller. */
  bodyRead(r: KwH2Response): void {
    if (r.closed || r.remoteClosed || r.credit === 0) return;
    const c = r.credit;
    r.credit = 0;
    this.write(frame(WINDOW_UPDATE, 0, r.id, u32(c)));
  }

  // ------------------------------------------------------------ input

  private onData(d: Buffer): void {
    if (this.dead) return;
    let b = d;
    if (this.buf !== undefined) { b = Buffer.concat([this.buf, d]); this.buf = undefined; }
    this.reading = true;
    try {
      this.parse(b);
    } catch (e) {
      if (e instanceof HpackError) this.connError(H2_COMPRESSION_ERROR, e.message);
      else this.connError(H2_INTERNAL_ERROR, (e as Error).message);
    } finally {
      this.reading = false;
    }
    this.flushOut();
  }

  private parse(b: Buffer): void {
    let p = 0;
    const end = b.length;
    if (this.prefaceLeft > 0) {
      const at = PREFACE.length - this.prefaceLeft;
      const n = Math.min(this.prefaceLeft, end);
      if (!b.subarray(0, n).equals(PREFACE.subarray(at, at + n))) { this.connError(H2_PROTOCOL_ERROR, 'bad connection preface'); return; }
      this.prefaceLeft -= n;
      p = n;
    }
    while (end - p >= 9) {
      const length = (b[p]! << 16) | (b[p + 1]! << 8) | b[p + 2]!;
      const type = b[p + 3]!;
      if (length > MAX_FRAME) { this.connError(H2_FRAME_SIZE_ERROR, `frame of ${length} bytes`); return; }
      if (end - p - 9 < length) break;
      const flags = b[p + 4]!;
      const id = b.readUInt32BE(p + 5) & 0x7fffffff;
      const start = p + 9;
      p = start + length;
      this.frame(type, flags, id, b, start, p);
      if (this.dead) return;
    }
    if (p < end) this.buf = b.subarray(p);
  }

  private frame(type: number, flags: number, id: number, b: Buffer, start: number, end: number): void {
    if (!this.gotSettings) {
      if (type !== SETTINGS || (flags & ACK) !== 0) { this.connError(H2_PROTOCOL_ERROR, 'the first frame is not SETTINGS'); return; }
    }
    if (this.hbStream !== 0 && (type !== CONTINUATION || id !== this.hbStream)) { this.connError(H2_PROTOCOL_ERROR, 'header block interrupted'); return; }
    switch (type) {
      case DATA: this.onDataFrame(flags, id, b, start, end); return;
      case HEADERS: this.onHeaders(flags, id, b, start, end); return;
      case PRIORITY:
        if (id === 0) this.connError(H2_PROTOCOL_ERROR, 'PRIORITY on stream 0');
        else if (end - start !== 5) this.streamError(id, H2_FRAME_SIZE_ERROR);
        return;
      case RST_STREAM: this.onReset(id, b, start, end); return;
      case SETTINGS: this.onSettings(flags, id, b, start, end); return;
      case PUSH_PROMISE: this.connError(H2_PROTOCOL_ERROR, 'PUSH_PROMISE from a client'); return;
      case PING:
        if (id !== 0) { this.connError(H2_PROTOCOL_ERROR, 'PING on a stream'); return; }
        if (end - start !== 8) { this.connError(H2_FRAME_SIZE_ERROR, 'PING length'); return; }
        if ((flags & ACK) !== 0) return;
        if (!this.controls.take()) { this.connError(H2_ENHANCE_YOUR_CALM, 'PING flood'); return; }
        this.write(frame(PING, ACK, 0, b.subarray(start, end)));
        return;
      case GOAWAY:
        if (id !== 0) { this.connError(H2_PROTOCOL_ERROR, 'GOAWAY on a stream'); return; }
        if (end - start < 8) { this.connError(H2_FRAME_SIZE_ERROR, 'GOAWAY length'); return; }
        this.goingAway = true;
        if (this.open === 0) this.endSoon();
        return;
      case WINDOW_UPDATE: this.onWindowUpdate(id, b, start, end); return;
      case CONTINUATION: this.onContinuation(flags, id, b, start, end); return;
      default: // unknown frame types are ignored (RFC 9113 §4.1)
    }
  }

  private onSettings(flags: number, id: number, b: Buffer, start: number, end: number): void {
    if (id !== 0) { this.connError(H2_PROTOCOL_ERROR, 'SETTINGS on a stream'); return; }
    const length = end - start;
    if ((flags & ACK) !== 0) {
      if (length !== 0) this.connError(H2_FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (length % 6 !== 0) { this.connError(H2_FRAME_SIZE_ERROR, 'SETTINGS length'); return; }
    if (this.gotSettings && !this.controls.take()) { this.connError(H2_ENHANCE_YOUR_CALM, 'SETTINGS flood'); return; }
    this.gotSettings = true;
    for (let p = start; p < end; p += 6) {
      const key = b.readUInt16BE(p);
      const v = b.readUInt32BE(p + 2);
      switch (key) {
        case 2: if (v > 1) { this.connError(H2_PROTOCOL_ERROR, 'SETTINGS_ENABLE_PUSH'); return; } break;
        case 4: {
          if (v > MAX_WINDOW) { this.connError(H2_FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE'); return; }
          const delta = v - this.peerInitialWindow;
          this.peerInitialWindow = v;
          for (const r of this.streams.values()) {
            r.sendWindow += delta;
            if (r.sendWindow > MAX_WINDOW) { this.connError(H2_FLOW_CONTROL_ERROR, 'stream window past 2^31-1'); return; }
          }
          break;
        }
        case 5: if (v < MAX_FRAME || v > 16777215) { this.connError(H2_PROTOCOL_ERROR, 'SETTINGS_MAX_FRAME_SIZE'); return; } this.peerMaxFrame = v; break;
        default: // header table size (our encoder does not index), concurrency (no push), list size, unknown
      }
    }
    this.write(frame(SETTINGS, ACK, 0));
    this.sendWaiting();
  }

  private onWindowUpdate(id: number, b: Buffer, start: number, end: number): void {
    if (end - start !== 4) { this.connError(H2_FRAME_SIZE_ERROR, 'WINDOW_UPDATE length'); return; }
    const inc = b.readUInt32BE(start) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) { this.connError(H2_PROTOCOL_ERROR, 'WINDOW_UPDATE of 0'); return; }
      this.sendWindow += inc;
      if (this.sendWindow > MAX_WINDOW) { this.connError(H2_FLOW_CONTROL_ERROR, 'connection window past 2^31-1'); return; }
      this.sendWaiting();
      return;
    }
    if (id > this.lastStreamId) { this.connError(H2_PROTOCOL_ERROR, 'WINDOW_UPDATE on an idle stream'); return; }
    const r = this.streams.get(id);
    if (r === undefined) return; // closed
    if (inc === 0) { this.streamError(id, H2_PROTOCOL_ERROR); return; }
    r.sendWindow += inc;
    if (r.sendWindow > MAX_WINDOW) { this.streamError(id, H2_FLOW_CONTROL_ERROR); return; }
    if (r.queued > 0 || r.waiting) {
      this.sendQueued(r);
      r.maybeDrain();
    }
  }

  private onReset(id: number, _b: Buffer, start: number, end: number): void {
    if (end - start !== 4) { this.connError(H2_FRAME_SIZE_ERROR, 'RST_STREAM length'); return; }
    if (id === 0) { this.connError(H2_PROTOCOL_ERROR, 'RST_STREAM on stream 0'); return; }
    if (id > this.lastStreamId) { this.connError(H2_PROTOCOL_ERROR, 'RST_STREAM on an idle stream'); return; }
    const r = this.streams.get(id);
    if (r === undefined) return;
    // Rapid reset (CVE-2023-44487): streams opened and reset faster than the bucket refills.
    if (!this.resets.take()) { this.connError(H2_ENHANCE_YOUR_CALM, 'too many streams reset'); return; }
    r.remoteClosed = true;
    r.req?.failBody();
    this.closeStream(r);
  }

  private onDataFrame(flags: number, id: number, b: Buffer, start: number, end: number): void {
    if (id === 0) { this.connError(H2_PROTOCOL_ERROR, 'DATA on stream 0'); return; }
    const length = end - start;
    // The connection window counts the whole frame, padding included; it is given back at once.
    this.connCredit += length;
    if (this.connCredit > DEFAULT_WINDOW) { this.connError(H2_FLOW_CONTROL_ERROR, 'DATA past the connection window'); return; }
    if (this.connCredit >= WINDOW_RETURN) { this.write(frame(WINDOW_UPDATE, 0, 0, u32(this.connCredit))); this.connCredit = 0; }
    let s = start, e = end;
    if ((flags & PADDED) !== 0) {
      if (length < 1) { this.connError(H2_FRAME_SIZE_ERROR, 'DATA padding'); return; }
      const pad = b[start]!;
      s++;
      if (pad > e - s) { this.connError(H2_PROTOCOL_ERROR, 'DATA padding longer than the frame'); return; }
      e -= pad;
    }
    if (id > this.lastStreamId) { this.connError(H2_PROTOCOL_ERROR, 'DATA on an idle stream'); return; }
    const r = this.streams.get(id);
    if (r === undefined || r.remoteClosed) {
      if (r !== undefined) this.streamError(id, H2_STREAM_CLOSED);
      return; // closed: counted in the connection window only
    }
    const endStream = (flags & END_STREAM) !== 0;
    if (e === s && !endStream && !this.empties.take()) { this.connError(H2_ENHANCE_YOUR_CALM, 'empty DATA flood'); return; }
    r.credit += length;
    // Past the stream's window: a connection error, as nghttp2 makes it.
    if (r.credit > DEFAULT_WINDOW) { this.connError(H2_FLOW_CONTROL_ERROR, 'DATA past the stream window'); return; }
    r.received += e - s;
    // DATA against Content-Length (RFC 9113 §8.1.1): the stream is reset, as nghttp2 does.
    if (r.declared >= 0 && (r.received > r.declared || (endStream && r.received !== r.declared))) { this.streamError(id, H2_PROTOCOL_ERROR); return; }
    const req = r.req!;
    if (e > s) {
      // A copy: the read's buffer holds other frames, and the consumer may keep the chunk.
      const chunk = Buffer.allocUnsafe(e - s);
      b.copy(chunk, 0, s, e);
      if (req.pushBody(chunk) && !endStream && r.credit >= WINDOW_RETURN) this.bodyRead(r);
    } else if (length > 0 && !endStream && r.credit >= WINDOW_RETURN) this.bodyRead(r);
    if (endStream) {
      r.remoteClosed = true;
      r.credit = 0;
      req.endBody();
      if (r.writableFinished) this.closeStream(r);
    }
  }

  private onHeaders(flags: number, id: number, b: Buffer, start: number, end: number): void {
    if (id === 0) { this.connError(H2_PROTOCOL_ERROR, 'HEADERS on stream 0'); return; }
    let s = start, e = end;
    if ((flags & PADDED) !== 0) {
      if (e - s < 1) { this.connError(H2_FRAME_SIZE_ERROR, 'HEADERS padding'); return; }
      const pad = b[s]!;
      s++;
      if (pad > e - s) { this.connError(H2_PROTOCOL_ERROR, 'HEADERS padding longer than the frame'); return; }
      e -= pad;
    }
    if ((flags & PRIORITY_FLAG) !== 0) {
      if (e - s < 5) { this.connError(H2_FRAME_SIZE_ERROR, 'HEADERS priority'); return; }
      s += 5;
    }
    if (id <= this.lastStreamId) {
      const r = this.streams.get(id);
      // Trailers on an open stream. A stream this side closed or refused: its frames are ignored (RFC 9113 §5.1), the block decoded.
      if (r !== undefined && r.remoteClosed) { this.connError(H2_STREAM_CLOSED, 'HEADERS after END_STREAM'); return; }
      if (r !== undefined && (flags & END_STREAM) === 0) { this.connError(H2_PROTOCOL_ERROR, 'trailers without END_STREAM'); return; }
      this.hbIgnore = r === undefined;
    } else {
      if ((id & 1) === 0) { this.connError(H2_PROTOCOL_ERROR, 'even stream id from a client'); return; }
      this.lastStreamId = id;
      this.hbIgnore = false;
    }
    this.hbStream = id;
    this.hbFlags = flags;
    this.hbContinuations = 0;
    this.hbLength = e - s;
    if ((flags & END_HEADERS) !== 0) { this.hbStream = 0; this.headerBlock(id, flags, b, s, e); return; }
    this.hbParts.push(b.subarray(s, e));
    this.checkBlockSize();
  }

  private onContinuation(flags: number, id: number, b: Buffer, start: number, end: number): void {
    if (this.hbStream === 0 || id !== this.hbStream) { this.connError(H2_PROTOCOL_ERROR, 'CONTINUATION without HEADERS'); return; }
    if (++this.hbContinuations > MAX_CONTINUATIONS) { this.connError(H2_ENHANCE_YOUR_CALM, 'too many CONTINUATION frames'); return; }
    this.hbParts.push(b.subarray(start, end));
    this.hbLength += end - start;
    if (!this.checkBlockSize()) return;
    if ((flags & END_HEADERS) === 0) return;
    const parts = this.hbParts;
    this.hbParts = [];
    this.hbStream = 0;
    const block = Buffer.concat(parts);
    this.headerBlock(id, this.hbFlags, block, 0, block.length);
  }

  private checkBlockSize(): boolean {
    if (this.hbLength <= Math.max(65536, 2 * this.server.opts.maxHeaderBytes)) return true;
    this.connError(H2_ENHANCE_YOUR_CALM, 'header block too large');
    return false;
  }

  /** A whole header block: a new request, or a request's trailers. */
  private headerBlock(id: number, flags: number, b: Buffer, start: number, end: number): void {
    const list: string[] = [];
    const result = this.decoder.decode(b, start, end, list, this.server.opts.maxHeaderBytes);
    if (this.hbIgnore) return;
    const existing = this.streams.get(id);
    if (existing !== undefined) {
      // Trailers: no pseudo-header; the handler does not forward request trailers.
      for (let i = 0; i < list.length; i += 2) if (list[i]!.charCodeAt(0) === 58) { this.streamError(id, H2_PROTOCOL_ERROR); return; }
      if (existing.declared >= 0 && existing.received !== existing.declared) { this.streamError(id, H2_PROTOCOL_ERROR); return; }
      existing.remoteClosed = true;
      existing.credit = 0;
      existing.req!.endBody();
      if (existing.writableFinished) this.closeStream(existing);
      return;
    }
    if (this.goingAway) return; // after our GOAWAY: not processed
    if (result === DECODED_TOO_LARGE) { this.refuseTooLarge(id, (flags & END_STREAM) !== 0); return; }
    if (this.open >= MAX_CONCURRENT_STREAMS) {
      if (!this.resets.take()) { this.connError(H2_ENHANCE_YOUR_CALM, 'too many refused streams'); return; }
      this.write(frame(RST_STREAM, 0, id, u32(H2_REFUSED_STREAM)));
      return;
    }
    // RFC 9113 §8.2 and §8.3.1: checked as nghttp2 checks them.
    let method: string | undefined, path: string | undefined, scheme: string | undefined, authority: string | undefined;
    let regular = false;
    let declared = -1;
    let expectContinue = false;
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i]!;
      const value = list[i + 1]!;
      if (name.charCodeAt(0) === 58) {
        if (regular) { this.streamError(id, H2_PROTOCOL_ERROR); return; }
        switch (name) {
          case ':method': if (method !== undefined || !isToken(value)) { this.streamError(id, H2_PROTOCOL_ERROR); return; } method = value; break;
          case ':path': if (path !== undefined || value === '') { this.streamError(id, H2_PROTOCOL_ERROR); return; } path = value; break;
          case ':scheme': if (scheme !== undefined || value === '') { this.streamError(id, H2_PROTOCOL_ERROR); return; } scheme = value; break;
          case ':authority': if (authority !== undefined) { this.streamError(id, H2_PROTOCOL_ERROR); return; } authority = value; break;
          default: this.streamError(id, H2_PROTOCOL_ERROR); return;
        }
        if (!validRequestValue(value)) { this.streamError(id, H2_PROTOCOL_ERROR); return; }
        continue;
      }
      regular = true;
      if (!lowerToken(name) || !validRequestValue(value) || REQUEST_CONNECTION_SPECIFIC.has(name) || (name === 'te' && value !== 'trailers')) {
        this.streamError(id, H2_PROTOCOL_ERROR);
        return;
      }
      if (name === 'content-length') {
        if (!/^[0-9]{1,15}$/.test(value) || (declared >= 0 && Number(value) !== declared)) { this.streamError(id, H2_PROTOCOL_ERROR); return; }
        declared = Number(value);
      } else if (name === 'expect' && value.toLowerCase() === '100-continue') expectContinue = true;
    }
    if (method === undefined || (method === 'CONNECT' ? path !== undefined || scheme !== undefined || authority === undefined : path === undefined || scheme === undefined)) {
      this.streamError(id, H2_PROTOCOL_ERROR);
      return;
    }
    if (path !== undefined && path.charCodeAt(0) !== 47 && !(path === '*' && method === 'OPTIONS') && !/^[a-z][a-z0-9+.-]*:/i.test(path)) {
      this.streamError(id, H2_PROTOCOL_ERROR);
      return;
    }
    const endStream = (flags & END_STREAM) !== 0;
    if (endStream && declared > 0) { this.streamError(id, H2_PROTOCOL_ERROR); return; }
    const res = new KwH2Response(this, id, method);
    res.declared = declared;
    const req = new KwH2Request(res, list, method, path ?? '', endStream);
    res.req = req;
    res.remoteClosed = endStream;
    this.streams.set(id, res);
    this.open++;
    this.idleSince = 0;
    if (expectContinue && !endStream) {
      const block = this.encodeBlock('100', []);
      const h = Buffer.allocUnsafe(9 + block.length);
      frameHeader(h, 0, block.length, HEADERS, END_HEADERS, id);
      block.copy(h, 9);
      this.write(h);
    }
    this.server.opts.onRequest(req, res);
  }

  // ------------------------------------------------------------ errors and the end

  /**
   * A request head above --max-header-bytes: answered 431 with no body, as the HTTP/1.1
   * server answers it (nghttp2 in Node does not hold callers to the size it advertises).
   * The stream never reaches the handler; what the caller still sends on it is ignored.
   */
  private refuseTooLarge(id: number, endStream: boolean): void {
    const block = this.encodeBlock('431', ['content-length', '0']);
    const h = Buffer.allocUnsafe(9 + block.length);
    frameHeader(h, 0, block.length, HEADERS, END_HEADERS | END_STREAM, id);
    block.copy(h, 9);
    this.write(h);
    if (!endStream) this.write(frame(RST_STREAM, 0, id, u32(H2_NO_ERROR)));
    this.server.opts.onRefused?.('header_too_large', this.socket);
  }

  private streamError(id: number, code: number): void {
    this.write(frame(RST_STREAM, 0, id, u32(code)));
    const r = this.streams.get(id);
    if (r !== undefined) {
      r.remoteClosed = true;
      r.req?.failBody();
      this.closeStream(r);
    }
  }

  /** A connection error (RFC 9113 §5.4.1): GOAWAY with the code, then the close. */
  connError(code: number, _why: string): void {
    if (this.dead) return;
    const p = Buffer.allocUnsafe(8);
    p.writeUInt32BE(this.lastStreamId, 0);
    p.writeUInt32BE(code, 4);
    this.write(frame(GOAWAY, 0, 0, p));
    this.flushOutNow();
    this.terminate();
  }

  private flushOutNow(): void {
    const was = this.reading;
    this.reading = false;
    this.flushOut();
    this.reading = was;
  }

  /** Shutdown or idle: GOAWAY (NO_ERROR); streams in flight finish, then the connection ends. */
  goAway(): void {
    if (this.dead || this.goingAway) return;
    this.goingAway = true;
    const p = Buffer.allocUnsafe(8);
    p.writeUInt32BE(this.lastStreamId, 0);
    p.writeUInt32BE(H2_NO_ERROR, 4);
    this.write(frame(GOAWAY, 0, 0, p));
    if (this.open === 0) this.endSoon();
  }

  private endSoon(): void {
    if (this.dead) return;
    this.flushOutNow();
    this.dead = true;
    this.socket.end();
    const s = this.socket;
    setTimeout(() => s.destroy(), 1000).unref();
  }

  /** The connection is over: every stream still open closes (reset). */
  private terminate(): void {
    if (!this.dead) {
      this.dead = true;
      this.socket.end();
      const s = this.socket;
      setTimeout(() => s.destroy(), 1000).unref();
    }
    this.failStreams();
  }

  private failStreams(): void {
    for (const r of [...this.streams.values()]) {
      r.remoteClosed = true;
      r.req?.failBody();
      this.closeStream(r);
    }
  }

  private onClose(): void {
    this.dead = true;
    this.failStreams();
    this.server.forget(this);
  }
}

/** The HTTP/2 server callers' connections are handed to when `--http2-server kernway`. */
export class KwH2Server {
  private readonly conns = new Set<KwH2Conn>();
  private readonly sweep: NodeJS.Timeout | undefined;

  constructor(readonly opts: KwH2ServerOptions) {
    if (opts.idleTimeoutMs > 0) {
      this.sweep = setInterval(() => this.closeIdle(), Math.max(10, Math.min(1000, Math.floor(opts.idleTimeoutMs / 4))));
      this.sweep.unref();
    }
  }

  /** A caller's connection whose first bytes are the HTTP/2 preface (accept() put them back). */
  connection(socket: Socket): void {
    const c = new KwH2Conn(socket, this);
    this.conns.add(c);
    // Bytes accept() read and unshifted are delivered by the 'data' listener; make sure the socket flows.
    socket.resume();
  }

  forget(c: KwH2Conn): void {
    this.conns.delete(c);
  }

  private closeIdle(): void {
    const now = performance.now();
    for (const c of this.conns) if (c.open === 0 && c.idleSince > 0 && now - c.idleSince >= this.opts.idleTimeoutMs) c.goAway();
  }

  /** At shutdown: a GOAWAY to every connection; streams in flight finish. */
  closeSessions(): void {
    for (const c of this.conns) c.goAway();
  }

  close(): void {
    clearInterval(this.sweep);
  }

  /** Open connections (for tests). */
  get connections(): number { return this.conns.size; }
}
