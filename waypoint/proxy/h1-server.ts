/**
 * The waypoint's own HTTP/1.1 server: it owns the caller's connection. Requests are
 * parsed by Node's llhttp (`HTTPParser` from `_http_common`, strict: no lenient flag)
 * on the raw socket, by one parser and one state object per connection; no
 * IncomingMessage, ServerResponse or http.Server is made. Requests are served one at a
 * time per connection (pipelined ones wait, parsed, in order); the response head is
 * written with the first body chunk in one write; time limits are checked from
 * timestamps by one sweep per server, not a timer per request.
 *
 * What reaches the request handler is a small request/response pair with the members
 * the handler uses of Node's objects (FastRequest, FastResponse). The node:http server
 * stays available behind `--http1-server node` for one release.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { invalidValue, isToken, sameName, type HeaderList } from './headers.js';
import { consumeSocket, HTTPParser, METHODS, releaseParser, strictParser, type ParseError, type ParserInstance, type StreamHandle } from './llhttp.js';
import { HeadMemo } from './h1-head.js';
import { SocketWriter } from './h1-write.js';
const { STATUS_CODES } = process.getBuiltinModule('node:http'); // not an ESM import: see handler.ts


/** What a malformed request or a time limit gets: status (0: close without answer) and metric kind. */
export function classifyClientError(code: string): [number, string] {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW': return [431, 'header_too_large'];
    case 'ERR_HTTP_REQUEST_TIMEOUT': return [408, 'request_timeout'];
    case 'HPE_UNEXPECTED_CONTENT_LENGTH': case 'HPE_INVALID_TRANSFER_ENCODING': case 'HPE_INVALID_CONTENT_LENGTH': return [400, 'request_smuggling'];
    case 'ECONNRESET': return [0, 'reset'];
    default: return [400, 'bad_request'];
  }
}

/** The answer to a refused request: the connection is closed after it. */
export function refusalBytes(status: number): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`;
}

export interface H1ServerOptions {
  maxHeaderBytes: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  onRequest(req: FastRequest, res: FastResponse): void;
  /** A WebSocket upgrade: the socket leaves this server with the bytes after the head. */
  onUpgrade(req: FastRequest, socket: Socket, head: Buffer): void;
  /** A request refused before the handler (malformed, too large, too slow): for metrics and logs. */
  onClientError(code: string, kind: string, socket: Socket, detail: string): void;
}

/** A request as the handler sees it (the members of IncomingMessage it uses). */
export class FastRequest {
  readonly httpVersion: string;
  readonly socket: Socket;
  /** Set when the request body is complete. */
  complete = false;
  private stream: Readable | undefined;
  /** Body chunks received before the handler asked for the body. */
  private chunks: Buffer[] | undefined;
  private buffered = 0;
  private parsed: Record<string, string | string[]> | undefined;
  discard = false;
  readonly res: FastResponse;

  constructor(
    readonly conn: H1Conn, readonly method: string, readonly url: string, readonly rawHeaders: string[],
    readonly httpVersionMajor: number, readonly httpVersionMinor: number, readonly keepAlive: boolean, readonly upgrade: boolean,
  ) {
    this.httpVersion = httpVersionMinor === 1 && httpVersionMajor === 1 ? '1.1' : `${httpVersionMajor}.${httpVersionMinor}`;
    this.socket = conn.socket;
    this.res = new FastResponse(conn, this);
  }

  /** Header object with Node's rules for repeated headers (first kept for single-valued ones, set-cookie an array, others joined). */
  get headers(): Record<string, string | string[]> {
    if (this.parsed) return this.parsed;
    const o: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i]!.toLowerCase();
      const v = raw[i + 1]!;
      const prev = o[k];
      if (prev === undefined) { o[k] = k === 'set-cookie' ? [v] : v; continue; }
      if (k === 'set-cookie') (prev as string[]).push(v);
      else if (k === 'cookie') o[k] = `${prev as string}; ${v}`;
      else if (!SINGLE.has(k)) o[k] = `${prev as string}, ${v}`;
    }
    this.parsed = o;
    return o;
  }

  /** A header's value (lower-case name) from the raw list, as `headers[name]` would give it (arrays joined with ','). */
  header(lower: string): string | undefined {
    const raw = this.rawHeaders;
    const n = lower.length;
    let v: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i]!;
      if (k.length !== n || (k !== lower && k.toLowerCase() !== lower)) continue;
      if (v === undefined) v = raw[i + 1];
      else if (SINGLE.has(lower)) return v;
      else v = `${v}${lower === 'cookie' ? '; ' : lower === 'set-cookie' ? ',' : ', '}${raw[i + 1]}`;
    }
    return v;
  }

  /** The request body as a stream (made on first use). */
  get body(): Readable {
    if (this.stream) return this.stream;
    const s = new Readable({ read: () => this.conn.bodyRead() });
    this.stream = s;
    if (this.chunks) { for (const c of this.chunks) s.push(c); this.chunks = undefined; this.buffered = 0; }
    if (this.complete) s.push(null);
    return s;
  }

  /** Parser: a body chunk. Returns false when the socket should pause. */
  pushBody(b: Buffer): boolean {
    if (this.discard) return true;
    if (this.stream) return this.stream.push(b);
    (this.chunks ??= []).push(b);
    this.buffered += b.length;
    return this.buffered < 64 * 1024;
  }

  endBody(): void {
    this.complete = true;
    if (this.stream && !this.discard) this.stream.push(null);
  }

  /** The response is over: what is still coming of the body is dropped. */
  dropBody(): void {
    this.discard = true;
    this.chunks = undefined;
    if (this.stream && !this.complete) this.stream.destroy();
  }
}

const NO_HEADERS: HeaderList = [];
const SINGLE = new Set(['content-type', 'content-length', 'user-agent', 'referer', 'host', 'authorization', 'proxy-authorization',
  'if-modified-since', 'if-unmodified-since', 'from', 'location', 'max-forwards', 'retry-after', 'etag', 'last-modified', 'server', 'age', 'expires']);
const statusLines: string[] = [];
function statusLine(status: number): string {
  return (statusLines[status] ??= `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n`);
}

let dateSecond = 0;
let dateValue = '';
export function dateHeader(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) { dateSecond = s; dateValue = new Date(now).toUTCString(); }
  return dateValue;
}

/** A response as the handler writes it (the members of ServerResponse it uses). */
export class FastResponse {
  statusCode = 200;
  headersSent = false;
  writableEnded = false;
  writableFinished = false;
  /**
   * The head to write, until it is (headPending): the status line, the handler's headers
   * (read when the head is written: not copied), then `headExtra` (Date, Connection,
   * Transfer-Encoding); made into bytes by the server's HeadMemo (h1-head.ts), latin1 as
   * Node writes header strings, with the first body chunk behind it.
   */
  private headPending = false;
  private headLine = '';
  private headList: HeaderList = NO_HEADERS;
  private headExtra = '';
  private chunked = false;
  private noBody = false;
  private trailer = '';
  keepAlive: boolean;
  private onClose: (() => void) | undefined;
  private onDrain: (() => void) | undefined;
  private closed = false;

  constructor(private readonly conn: H1Conn, private readonly req: FastRequest) {
    this.keepAlive = req.keepAlive && !req.upgrade;
  }

  once(event: 'close' | 'drain', fn: () => void): this {
    if (event === 'close') this.onClose = fn;
    else this.onDrain = fn;
    return this;
  }

  /** 100 Continue, for requests that expect it. */
  writeContinue(): void {
    this.conn.socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
  }

  /**
   * `checked`: every name and value in `headers` is known to be one Node would send (they
   * come from the strict parser, or were checked when the configuration was loaded):
   * they are not checked again.
   */
  writeHead(status: number, headers?: HeaderList | Record<string, string | string[] | number>, checked = false): this {
    if (this.headersSent) throw Object.assign(new Error('headers already sent'), { code: 'ERR_HTTP_HEADERS_SENT' });
    const list: HeaderList = headers === undefined ? [] : Array.isArray(headers) ? headers : objectToList(headers);
    let hasLength = false, hasDate = false;
    /** The list without Connection and Transfer-Encoding (made when one is there). */
    let kept: HeaderList | undefined;
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i]!;
      const value = list[i + 1]!;
      if (!checked) {
        if (!isToken(name)) throw Object.assign(new Error(`invalid header name ${JSON.stringify(name)}`), { code: 'ERR_INVALID_HTTP_TOKEN' });
        if (invalidValue(value)) throw Object.assign(new Error(`invalid value for header ${name}`), { code: 'ERR_INVALID_CHAR' });
      }
      switch (name.length) {
        case 14: if (name === 'Content-Length' || sameName(name, 'content-length')) hasLength = true; break;
        case 4: if (name === 'Date' || sameName(name, 'date')) hasDate = true; break;
        // Headers the server sets itself: a handler's are not written.
        case 10: if (name === 'Connection' || sameName(name, 'connection')) { kept ??= list.slice(0, i); continue; } break;
        case 17: if (name === 'Transfer-Encoding' || sameName(name, 'transfer-encoding')) { kept ??= list.slice(0, i); continue; } break;
        default:
      }
      if (kept !== undefined) kept.push(name, value);
    }
    this.statusCode = status;
    this.noBody = this.req.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    let extra = hasDate ? '' : `Date: ${dateHeader()}\r\n`;
    if (!this.noBody && !hasLength) {
      if (this.req.httpVersion === '1.1') this.chunked = true;
      else this.keepAlive = false;
    }
    if (this.conn.lastResponse) this.keepAlive = false;
    extra += this.keepAlive ? this.conn.keepAliveHeader : 'Connection: close\r\n';
    if (this.chunked) extra += 'Transfer-Encoding: chunked\r\n';
    this.headLine = statusLine(status);
    this.headList = kept ?? list;
    this.headExtra = extra;
    this.headPending = true;
    this.headersSent = true;
    return this;
  }

  /**
   * The head not written yet, with `after` behind it (a chunk-size line, the last chunk)
   * and `room` bytes for the caller to fill; undefined when written already.
   */
  private takeHead(after: string, room: number): Buffer | undefined {
    if (!this.headPending) return undefined;
    this.headPending = false;
    const b = this.conn.heads.head(this.headLine, '', this.headList, this.headExtra, after, room);
    this.headList = NO_HEADERS;
    return b;
  }

  write(chunk: Buffer | string): boolean {
    if (this.writableEnded || this.closed) return false;
    if (!this.headersSent) this.writeHead(this.statusCode);
    const s = this.conn.socket;
    const len = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    if (this.noBody || len === 0) {
      const hd = this.takeHead('', 0);
      return hd !== undefined ? this.conn.out.write(hd) : true;
    }
    if (!this.headPending && !this.chunked && typeof chunk !== 'string') return this.conn.out.write(chunk);
    if (this.headPending && len <= ONE_WRITE_LIMIT) {
      // Head and first chunk in one buffer, one write.
      const tail = this.chunked ? 2 : 0;
      const out = this.takeHead(this.chunked ? `${len.toString(16)}\r\n` : '', len + tail)!;
      const o = out.length - len - tail;
      if (typeof chunk === 'string') out.write(chunk, o); else out.set(chunk, o);
      if (tail) { out[o + len] = 13; out[o + len + 1] = 10; }
      return this.conn.out.write(out);
    }
    s.cork();
    const size = this.chunked ? `${len.toString(16)}\r\n` : '';
    const hd = this.takeHead(size, 0);
    if (hd !== undefined) s.write(hd);
    else if (this.chunked) s.write(size, 'latin1');
    let ok = s.write(chunk);
    if (this.chunked) ok = s.write('\r\n', 'latin1');
    s.uncork();
    return ok;
  }

  addTrailers(t: Record<string, string | string[]>): void {
    for (const [k, v] of Object.entries(t)) {
      for (const x of Array.isArray(v) ? v : [v]) {
        if (!isToken(k) || invalidValue(x)) throw Object.assign(new Error(`invalid trailer ${k}`), { code: 'ERR_INVALID_CHAR' });
        this.trailer += `${k}: ${x}\r\n`;
      }
    }
  }

  end(chunk?: Buffer | string): void {
    if (this.writableEnded || this.closed) return;
    if (!this.headersSent) {
      // Nothing written yet: a body given here is the whole body; frame it by its length.
      const n = chunk === undefined ? 0 : typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      const st = this.statusCode;
      this.writeHead(st, st === 204 || st === 304 || st < 200 ? [] : ['content-length', String(n)]);
    }
    const s = this.conn.socket;
    const tail = this.chunked ? `0\r\n${this.trailer}\r\n` : '';
    const hasChunk = chunk !== undefined && !this.noBody && (typeof chunk === 'string' ? chunk.length > 0 : chunk.length > 0);
    if (hasChunk) {
      s.cork();
      this.write(chunk);
      if (tail !== '') s.write(tail, 'latin1');
      s.uncork();
    } else {
      const hd = this.takeHead(tail, 0);
      if (hd !== undefined) this.conn.out.write(hd);
      else if (tail !== '') this.conn.out.writeLatin1(tail);
    }
    this.writableEnded = true;
    this.writableFinished = true;
    this.conn.responseDone(this.req, this.keepAlive);
    this.emitClose();
  }

  destroy(): void {
    this.conn.destroy();
  }

  /** The caller's socket can take more. */
  drained(): void {
    const f = this.onDrain;
    this.onDrain = undefined;
    f?.();
  }

  emitClose(): void {
    if (this.closed) return;
    this.closed = true;
    const f = this.onClose;
    this.onClose = undefined;
    f?.();
  }
}

function objectToList(o: Record<string, string | string[] | number>): HeaderList {
  const out: HeaderList = [];
  for (const k of Object.keys(o)) {
    const v = o[k]!;
    if (Array.isArray(v)) for (const x of v) out.push(k, x);
    else out.push(k, String(v));
  }
  return out;
}

/**
 * Whether a request head announces a body as llhttp frames requests (RFC 9112 §6.3): any
 * Transfer-Encoding, or a Content-Length other than 0 (llhttp refused a malformed or
 * repeated one before the head completed).
 */
function hasBody(raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const n = name.length;
    if (n === 17 && (name === 'Transfer-Encoding' || sameName(name, 'transfer-encoding'))) return true;
    if (n === 14 && (name === 'Content-Length' || sameName(name, 'content-length')) && !/^\s*0*\s*$/.test(raw[i + 1]!)) return true;
  }
  return false;
}

const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i;
/** A first body chunk up to this size is copied behind the head: one buffer, one write. */
const ONE_WRITE_LIMIT = 16 * 1024;

/** One caller connection: its parser, the request being parsed, the one being served, those waiting. */
export class H1Conn {
  private readonly parser: ParserInstance;
  private rawHeaders: string[] = [];
  private url = '';
  private parsing: FastRequest | undefined;
  private upgrading: FastRequest | undefined;
  active: FastRequest | undefined;
  private readonly pending: FastRequest[] = [];
  /** When the head being received began (0: none). */
  headStart = 0;
  /** When the request being served arrived. */
  requestStart = 0;
  /** Since when nothing is in progress (0: busy). */
  idleSince: number;
  private paused = false;
  private done = false;
  /** A message ended (head without body, or body) in the read being parsed. */
  private boundary = false;
  private readonly onBegin: () => void;
  /** The socket's native stream, while the parser reads it (undefined: 'data' events). */
  private handle: StreamHandle | undefined;
  stopping = false;
  /** The caller half-closed: no more requests will come. */
  private peerEnded = false;
  readonly keepAliveHeader: string;
  /** Response heads as bytes, from the last one's where the same (the server's). */
  readonly heads: HeadMemo;
  /** Whole-buffer writes past Node's Writable (h1-write.ts). */
  readonly out: SocketWriter;

  constructor(readonly socket: Socket, private readonly server: H1Server) {
    this.keepAliveHeader = server.keepAliveHeader;
    this.heads = server.heads;
    const drained = (): void => this.active?.res.drained();
    this.out = new SocketWriter(socket, drained, { batch: true });
    this.idleSince = performance.now();
    const p = strictParser(HTTPParser.REQUEST, server.opts.maxHeaderBytes);
    // When a head began (for the head timeout) without a call from native code per request:
    // a read that carries only head bytes marks it (executed()); llhttp's message begin is
    // listened to only from a message boundary to the end of that read, for a next head
    // that begins in the same read (pipelining).
    this.onBegin = (): void => { this.headStart = performance.now(); this.idleSince = 0; };
    p[HTTPParser.kOnHeaders] = (headers: string[], url: string): void => {
      for (const h of headers) this.rawHeaders.push(h);
      this.url += url;
    };
    p[HTTPParser.kOnHeadersComplete] = (vMajor: number, vMinor: number, headers: string[] | undefined, method: number, url: string | undefined, _status: unknown, _msg: unknown, upgrade: boolean, keepAlive: boolean): number => {
      this.headStart = 0;
      this.boundary = true;
      p[HTTPParser.kOnMessageBegin] = this.onBegin;
      if (!headers) { headers = this.rawHeaders; this.rawHeaders = []; }
      if (!url) { url = this.url; this.url = ''; }
      const req = new FastRequest(this, METHODS[method] ?? 'GET', url, headers, vMajor, vMinor, keepAlive, upgrade);
      if (upgrade) { this.parsing = req; p[HTTPParser.kOnMessageComplete] = onComplete; this.upgrading = req; return 0; } // handled after execute(): the bytes that follow are not HTTP
      if (hasBody(headers)) {
        this.parsing = req;
        p[HTTPParser.kOnMessageComplete] = onComplete;
      } else {
        // No Content-Length (or 0) and no Transfer-Encoding: llhttp ends the message right
        // after its head. It is complete now, and message complete is not called into JS.
        req.complete = true;
        p[HTTPParser.kOnMessageComplete] = undefined;
      }
      if (this.active || this.pending.length > 0) this.pending.push(req);
      else this.dispatch(req);
      return 0;
    };
    p[HTTPParser.kOnBody] = (b: Buffer): void => {
      const req = this.parsing;
      if (req && !req.pushBody(b)) this.pause();
    };
    const onComplete = (): void => {
      const req = this.parsing;
      this.parsing = undefined;
      this.boundary = true;
      p[HTTPParser.kOnMessageBegin] = this.onBegin;
      if (req) req.endBody();
    };
    p[HTTPParser.kOnMessageComplete] = onComplete;
    this.parser = p;
    socket.on('drain', drained);
    socket.on('end', () => this.onEnd());
    socket.on('error', () => { /* 'close' follows */ });
    socket.on('close', () => this.onClose());
    // The parser reads the socket itself (no Buffer, no 'data' event per read); what the
    // socket had buffered already (the first bytes, read to tell HTTP/1 from HTTP/2) first.
    const pending: Buffer[] = [];
    this.handle = consumeSocket(p, socket, pending);
    if (this.handle) {
      p[HTTPParser.kOnExecute] = (ret: number | ParseError): void => this.executed(ret, undefined);
      for (const d of pending) this.onData(d);
    } else socket.on('data', (d: Buffer) => this.onData(d));
  }

  private onData(d: Buffer): void {
    if (this.done) return;
    this.executed(this.parser.execute(d), d);
  }

  /** After the parser went through a read's bytes (`d`: undefined when it read them itself). */
  private executed(ret: number | ParseError, d: Buffer | undefined): void {
    if (this.done) return;
    if (typeof ret !== 'number') { this.clientError(ret.code, ret.reason ?? ret.message); return; }
    if (this.boundary) {
      // A message ended in this read: a next head begun after it was marked by onBegin.
      this.boundary = false;
      this.parser[HTTPParser.kOnMessageBegin] = undefined;
    } else if (this.headStart === 0 && this.parsing === undefined && ret > 0) {
      // No message ended and none is in its body: these bytes began a head.
      this.headStart = performance.now();
      this.idleSince = 0;
    }
    const req = this.upgrading;
    if (req) { this.upgrading = undefined; this.onUpgradeHead(req, (d ?? this.parser.getCurrentBuffer()).subarray(ret)); }
  }

  private onUpgradeHead(req: FastRequest, rest: Buffer): void {
    this.parsing = undefined;
    if (req.method === 'CONNECT') { this.refuse(405); return; }
    if ((req.header('upgrade') ?? '').toLowerCase() === 'websocket' && !this.active && this.pending.length === 0) {
      this.detach();
      this.server.opts.onUpgrade(req, this.socket, rest);
      return;
    }
    // Other upgrades (h2c) are ignored (RFC 9110 §7.8): answered over HTTP/1.1, then the connection ends.
    this.done = true;
    req.complete = true;
    if (this.active || this.pending.length > 0) this.pending.push(req);
    else this.dispatch(req);
  }

  private onEnd(): void {
    // The caller is done sending (a half-close, as `shutdown(SHUT_WR)` or `curl`'s upload
    // end): answer every complete request already received, in order, then close, as nginx
    // and plain TCP to the backend would. The socket is half-open (allowHalfOpen), so the
    // answers can still be written.
    this.peerEnded = true;
    if (!this.active && this.pending.length === 0) { this.done = true; this.socket.end(); }
  }

  /** Whether the response being written is the last this connection will carry. */
  get lastResponse(): boolean {
    return this.stopping || (this.peerEnded && this.pending.length === 0);
  }

  private onClose(): void {
    this.done = true;
    this.server.conns.delete(this);
    const a = this.active;
    this.active = undefined;
    this.pending.length = 0;
    if (a) { a.dropBody(); a.res.emitClose(); }
    this.releaseParser();
  }

  private releaseParser(): void {
    const h = this.handle;
    this.handle = undefined;
    releaseParser(this.parser, h);
  }

  private dispatch(req: FastRequest): void {
    this.active = req;
    this.requestStart = performance.now();
    this.idleSince = 0;
    const res = req.res;
    if (req.httpVersionMajor === 1 && req.httpVersionMinor === 1) {
      if (req.header('host') === undefined) {
        // What node:http answers (requireHostHeader), byte for byte.
        this.active = undefined;
        this.done = true;
        this.socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nDate: ${dateHeader()}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 'latin1');
        return;
      }
      const expect = req.header('expect');
      if (expect !== undefined) {
        if (CONTINUE.test(expect)) res.writeContinue();
        else { res.writeHead(417); res.end(); return; } // as node:http answers
      }
    }
    this.server.opts.onRequest(req, res);
  }

  /** The response to `req` has been written. */
  responseDone(req: FastRequest, keepAlive: boolean): void {
    if (this.active !== req) return;
    this.active = undefined;
    if (!req.complete) req.dropBody();
    if (!keepAlive || this.stopping) {
      this.done = true;
      this.pending.length = 0;
      this.socket.end();
      return;
    }
    const next = this.pending.shift();
    if (next) { process.nextTick(() => { if (!this.done || next.upgrade) this.dispatch(next); }); return; }
    if (this.peerEnded) { this.done = true; this.socket.end(); return; }
    this.idleSince = performance.now();
    if (this.paused) this.resume();
  }

  /** The handler reads the body: the socket may flow again. */
  bodyRead(): void {
    if (this.paused) this.resume();
  }

  private pause(): void {
    this.paused = true;
    const h = this.handle;
    if (!h) { this.socket.pause(); return; }
    if (h.reading) { h.reading = false; h.readStop(); }
  }

  private resume(): void {
    this.paused = false;
    const h = this.handle;
    if (!h) { this.socket.resume(); return; }
    if (!h.reading && !this.socket.destroyed) { h.reading = true; h.readStart(); }
  }

  /** The socket leaves this server (a WebSocket upgrade): its bytes flow as a stream again. */
  private detach(): void {
    this.done = true;
    this.server.conns.delete(this);
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('drain');
    this.socket.removeAllListeners('end');
    this.socket.removeAllListeners('close');
    this.socket.removeAllListeners('error');
    const consumed = this.handle !== undefined;
    this.releaseParser();
    if (consumed) {
      // As node:http hands an upgraded socket over: neither flowing nor paused, read by whoever pipes it.
      (this.socket as unknown as { readableFlowing: boolean | null }).readableFlowing = null;
    }
  }

  /** A malformed request, or one too large or too slow: answered (when nothing is in progress) and closed. */
  clientError(code: string, detail: string): void {
    const [status, kind] = classifyClientError(code);
    this.server.opts.onClientError(code, kind, this.socket, detail);
    this.refuse(status);
  }

  private refuse(status: number): void {
    this.done = true;
    this.pending.length = 0;
    const busy = this.active !== undefined && this.active.res.headersSent;
    if (status === 0 || busy || !this.socket.writable) { this.socket.destroy(); return; }
    if (this.active) { this.active.dropBody(); this.active.res.emitClose(); this.active = undefined; }
    this.socket.end(refusalBytes(status), 'latin1');
  }

  /** Idle (nothing in progress nor being received): closed at once when the server stops. */
  get idle(): boolean {
    return this.active === undefined && this.pending.length === 0 && this.headStart === 0 && this.parsing === undefined;
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** The sweep: time limits from timestamps. */
  check(now: number): void {
    const o = this.server.opts;
    if (this.headStart !== 0 && now - this.headStart > o.headersTimeoutMs) { this.clientError('ERR_HTTP_REQUEST_TIMEOUT', 'request head not received in time'); return; }
    if (this.active && !this.active.complete && now - this.requestStart > o.requestTimeoutMs) { this.clientError('ERR_HTTP_REQUEST_TIMEOUT', 'request not received in time'); return; }
    if (this.idleSince !== 0 && this.idle && now - this.idleSince > o.idleTimeoutMs) this.socket.destroy();
  }
}

export class H1Server {
  readonly conns = new Set<H1Conn>();
  /** The response heads of all its connections (h1-head.ts): one, kept for the last head written. */
  readonly heads = new HeadMemo(false);
  readonly keepAliveHeader: string;
  private readonly sweep: NodeJS.Timeout;
  private stopping = false;

  constructor(readonly opts: H1ServerOptions) {
    this.keepAliveHeader = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(opts.idleTimeoutMs / 1000)}\r\n`;
    const every = Math.min(1000, Math.max(50, Math.floor(opts.headersTimeoutMs / 4)));
    this.sweep = setInterval(() => {
      const now = performance.now();
      for (const c of this.conns) c.check(now);
    }, every);
    this.sweep.unref();
  }

  /** A new caller connection (after the PROXY header and the HTTP/2 preface check). */
  connection(socket: Socket): void {
    if (this.stopping) { socket.destroy(); return; }
    // Half-open: a caller's FIN after its request must not end our side before the answer.
    socket.allowHalfOpen = true;
    const c = new H1Conn(socket, this);
    this.conns.add(c);
  }

  /** Close connections with nothing in progress; the others close after their response. */
  closeIdleConnections(): void {
    this.stopping = true;
    for (const c of this.conns) {
      c.stopping = true;
      if (c.idle) c.destroy();
    }
  }

  close(): void {
    this.stopping = true;
    clearInterval(this.sweep);
    for (const c of this.conns) c.destroy();
  }
}
