/**
 * Accepting connections: Gateway listener sockets and the mesh port. A mesh connection
 * must start with a PROXY protocol v2 header (its original destination); then, on both,
 * the first bytes tell HTTP/2 with prior knowledge (h2c, gRPC) from HTTP/1.x, and the
 * socket is handed to the matching HTTP server. What is known about the connection is
 * attached to the socket (`connOf`).
 */
import type { Socket } from 'node:net';
import { parseProxyV2 } from './proxy-protocol.js';

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const CONN = Symbol('kernway.conn');

export interface ConnInfo {
  id: number;
  kind: 'gateway' | 'mesh';
  /** 'address:port' of the listening socket. */
  bind: string;
  localAddress: string;
  localPort: number;
  /** The TCP peer: the caller's identity comes from it. */
  peerAddress: string;
  peerPort: number;
  /** Mesh: the original destination from the PROXY header. */
  destination: { address: string; port: number } | undefined;
  http2: boolean;
}

/** The connection a request arrived on (works through HTTP/2's socket proxy too). */
export function connOf(socket: unknown): ConnInfo | undefined {
  return (socket as { [CONN]?: ConnInfo } | null)?.[CONN];
}

export interface AcceptHandlers {
  http1(socket: Socket): void;
  http2(socket: Socket): void;
  /** A connection refused before HTTP (bad PROXY header, timeout): the kind, for metrics. */
  refused(kind: string, info: ConnInfo, detail: string): void;
  /** Time allowed for the PROXY header and the first bytes (ms). */
  firstBytesTimeoutMs: number;
}

let nextId = 1;

/** Unmap IPv4-mapped IPv6 addresses (::ffff:10.0.0.1), as sockets on '::' report them. */
export function plainAddress(a: string | undefined): string {
  if (a === undefined) return '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

export function accept(socket: Socket, kind: 'gateway' | 'mesh', bind: string, h: AcceptHandlers): void {
  const info: ConnInfo = {
    id: nextId++, kind, bind,
    localAddress: plainAddress(socket.localAddress), localPort: socket.localPort ?? 0,
    peerAddress: plainAddress(socket.remoteAddress), peerPort: socket.remotePort ?? 0,
    destination: undefined, http2: false,
  };
  (socket as unknown as { [CONN]: ConnInfo })[CONN] = info;
  socket.on('error', () => { /* reported by the HTTP layer, or the connection just ends */ });
  let buf: Buffer = Buffer.alloc(0);
  let proxyDone = kind === 'gateway';
  const timer = setTimeout(() => {
    cleanup();
    h.refused(proxyDone ? 'first_bytes_timeout' : 'proxy_protocol_timeout', info, 'no request in time');
    socket.destroy();
  }, h.firstBytesTimeoutMs);
  timer.unref();

  const cleanup = (): void => {
    clearTimeout(timer);
    socket.removeListener('readable', onReadable);
    socket.removeListener('end', onEnd);
  };
  const onEnd = (): void => { cleanup(); socket.destroy(); };
  const onReadable = (): void => {
    let chunk: Buffer | null;
    while ((chunk = socket.read() as Buffer | null) !== null) buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    if (!proxyDone) {
      const r = parseProxyV2(buf);
      if (r.kind === 'more') return;
      if (r.kind === 'error') {
        cleanup();
        h.refused('proxy_protocol', info, r.reason);
        socket.destroy();
        return;
      }
      if (r.header.command === 'PROXY' && r.header.destination) info.destination = r.header.destination;
      else {
        cleanup();
        h.refused('proxy_protocol', info, 'PROXY header without a TCP destination (LOCAL or UNIX)');
        socket.destroy();
        return;
      }
      buf = buf.subarray(r.header.length);
      proxyDone = true;
    }
    // HTTP/2 prior knowledge or HTTP/1.x: decided as soon as the bytes differ from the preface.
    const n = Math.min(buf.length, H2_PREFACE.length);
    if (n === 0) return;
    const samePrefix = buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (samePrefix && n < H2_PREFACE.length) return;
    cleanup();
    if (buf.length > 0) socket.unshift(buf);
    if (samePrefix) { info.http2 = true; h.http2(socket); } else h.http1(socket);
  };
  socket.on('readable', onReadable);
  socket.on('end', onEnd);
}
