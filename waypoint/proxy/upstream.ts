/**
 * Requests to backends: HTTP/1.1 over keep-alive connection pools (one Agent, pooled
 * per endpoint), and h2c (one HTTP/2 session per endpoint, streams multiplexed). A
 * request is sent once; retries, timeouts and balancing are the caller's.
 */
import http2 from 'node:http2';
import type { Readable } from 'node:stream';
import type { Endpoint, BackendProtocol } from '../routing/backends.js';
import { H1Pool, type H1Request } from './h1-client.js';
import { UpstreamError } from './upstream-error.js';
import { fromObject, type HeaderList } from './headers.js';
import type { ResponseBody } from './body.js';
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
    this.h1pool = new H1Pool({ maxIdlePerEndpoint: opts.maxIdlePerEndpoint, idleTimeoutMs: opts.idleTimeoutMs, connectTimeoutMs: opts.connectTimeoutMs });
  }

  /** Send one request; resolves with the response head, rejects with UpstreamError. */
  request(r: UpstreamRequest): { response: Promise<UpstreamResponse>; abort: () => void } {
    return r.protocol === 'h2c' ? this.h2(r) : this.h1(r);
  }

  /** The same as request(), the outcome told to `sink`: no promise for HTTP/1.1 backends. */
  send(r: UpstreamRequest, sink: UpstreamSink): UpstreamCall {
    if (r.protocol !== 'h2c') return this.h1pool.send(h1Request(r), sink);
    const x = this.h2(r);
    x.response.then((up) => sink.onResponse(up), (e: unknown) => sink.onError(e));
    return x;
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
    let stream: http2.ClientHttp2Stream | undefined;
    let aborted = false;
    const response = new Promise<UpstreamResponse>((resolve, reject) => {
      const session = this.session(r.endpoint);
      const connecting = session.connecting;
      const headers: http2.OutgoingHttpHeaders = { ':method': r.method, ':path': r.path, ':scheme': 'http' };
      for (let i = 0; i < r.headers.length; i += 2) {
        const name = r.headers[i]!.toLowerCase();
        const value = r.headers[i + 1]!;
        if (name === 'host') { headers[':authority'] = value; continue; }
        if (name === 'te' && value.toLowerCase() !== 'trailers') continue;
        const prev = headers[name];
        headers[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [String(prev), value];
      }
      const endStream = r.body === undefined;
      try {
        stream = session.request(headers, { endStream });
      } catch (e) {
        reject(new UpstreamError('connect', (e as Error).message, (e as NodeJS.ErrnoException).code, true));
        return;
      }
      const st = stream;
      let trailers: HeaderList = [];
      st.once('trailers', (t) => { trailers = fromObject(t as Record<string, string | string[]>); });
      st.once('response', (h) => {
        const status = Number(h[':status'] ?? 502);
        const hl = fromObject(h as Record<string, string | string[]>).filter((_, i, a) => !(i % 2 === 0 ? a[i]! : a[i - 1]!).startsWith(':'));
        resolve({ status, headers: hl, body: st, trailers: () => trailers, abort: () => st.close(http2.constants.NGHTTP2_CANCEL) });
      });
      st.on('error', (e: NodeJS.ErrnoException) => reject(classify(e, connecting && !session.remoteSettings, false, aborted)));
      st.once('close', () => {
        // A stream closed before its response (RST_STREAM, GOAWAY): nothing was answered.
        reject(new UpstreamError(st.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM ? 'connect' : 'reset',
          `stream closed before a response (code ${st.rstCode})`, 'ERR_HTTP2_STREAM_CLOSED', st.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM));
      });
      if (Buffer.isBuffer(r.body)) st.end(r.body);
      else if (r.body !== undefined) r.body.pipe(st);
    });
    return { response, abort: () => { aborted = true; stream?.close(http2.constants.NGHTTP2_CANCEL); } };
  }
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
