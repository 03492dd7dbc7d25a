/**
 * Node's own HTTP/1.x parser, llhttp, as `_http_common` exposes it (`HTTPParser`): the
 * strict parser (no lenient flag) the waypoint runs on raw sockets, in REQUEST mode for
 * callers (h1-server.ts) and RESPONSE mode for backends (h1-client.ts). One parser per
 * connection, its callbacks installed once; llhttp resets itself between the messages of
 * a keep-alive connection. Errors are returned by execute()/finish() with llhttp's code
 * (HPE_…) and reason.
 */
import { createRequire } from 'node:module';

export interface ParseError extends Error { code: string; bytesParsed: number; reason?: string }

export interface ParserInstance {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  /** Bytes parsed, or the error that stopped the parser. */
  execute(data: Buffer): number | ParseError;
  /** The end of the input (a body delimited by the connection's end completes here). */
  finish(): ParseError | undefined;
  /** Frees the native parser (once, when its connection closes). */
  close(): void;
  /**
   * Read a socket's bytes in native code, straight into the parser (no Buffer, no 'data'
   * event per read): each read's outcome goes to the kOnExecute callback.
   */
  consume(handle: object): void;
  unconsume(): void;
  /** While consuming: a copy of the bytes of the read being parsed. */
  getCurrentBuffer(): Buffer;
  [key: number]: unknown;
}

interface ParserClass {
  new (): ParserInstance;
  REQUEST: number;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
  kLenientNone: number;
}

const require = createRequire(import.meta.url);
const common = require('_http_common') as { HTTPParser: ParserClass; methods: string[] };
export const HTTPParser = common.HTTPParser;
/** Method names by llhttp's method number. */
export const METHODS: readonly string[] = common.methods;

/** The native stream under a net.Socket, as the parser consumes it. */
export interface StreamHandle {
  isStreamBase?: boolean;
  reading?: boolean;
  _consumed?: boolean;
  readStart(): number;
  readStop(): number;
}

/**
 * Let `p` read `socket` itself (as node:http's server does): true when it does. The socket
 * then emits no 'data'; 'end', 'error' and 'close' come as before. Bytes the socket has
 * buffered already are returned in `pending`, to be given to execute() first.
 */
export function consumeSocket(p: ParserInstance, socket: { _handle?: unknown; read(): unknown }, pending: Buffer[]): StreamHandle | undefined {
  const h = socket._handle as StreamHandle | null | undefined;
  if (!h?.isStreamBase || h._consumed) return undefined;
  let b: unknown;
  while ((b = socket.read()) !== null) pending.push(b as Buffer);
  h._consumed = true;
  p.consume(h);
  if (!h.reading) { h.reading = true; h.readStart(); }
  return h;
}

/** Stop consuming (the socket is handed over, or has closed); the parser is freed on the next turn, outside its own callbacks. */
export function releaseParser(p: ParserInstance, h: StreamHandle | undefined): void {
  if (h) { h._consumed = false; p.unconsume(); }
  setImmediate(() => p.close());
}

/** A strict parser of the given kind (HTTPParser.REQUEST or RESPONSE). */
export function strictParser(kind: number, maxHeaderBytes: number): ParserInstance {
  const p = new HTTPParser();
  p.initialize(kind, {}, maxHeaderBytes, HTTPParser.kLenientNone);
  return p;
}
