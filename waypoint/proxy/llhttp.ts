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

/** A strict parser of the given kind (HTTPParser.REQUEST or RESPONSE). */
export function strictParser(kind: number, maxHeaderBytes: number): ParserInstance {
  const p = new HTTPParser();
  p.initialize(kind, {}, maxHeaderBytes, HTTPParser.kLenientNone);
  return p;
}
