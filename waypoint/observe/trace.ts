/**
 * W3C Trace Context (traceparent): kept and continued when a request carries a valid one
 * (same trace, new span id for the hop to the backend), started when it does not.
 */
import { randomBytes } from 'node:crypto';

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

export interface TraceContext {
  traceId: string;
  /** The span the waypoint creates: the backend's parent. */
  spanId: string;
  /** The caller's span, when the request had a traceparent. */
  parentId: string | undefined;
  flags: string;
  /** The traceparent sent to the backend. */
  header: string;
  /**
   * The ids' text as bytes, for the access log to copy without reading the strings
   * (`hexBytes()`): the pool they were cut from, and where each starts in it (-1: the
   * caller's trace id, not from the pool).
   */
  hex: Uint8Array;
  traceAt: number;
  spanAt: number;
}

// Random ids come from a pool refilled in bulk: one crypto call per 512 ids.
// The pool is kept as hex text: an id is a slice of it (no native call per id); and as
// that text's bytes (latin1), which the access log copies (a sliced string is read
// character by character at ~45 instructions each; a byte array at a few).
let pool = '';
let poolBytes: Uint8Array = new Uint8Array(0);
let offset = 0;
/** Where the last id handed out starts in `poolBytes`. */
let lastAt = 0;
function hex(bytes: number): string {
  const n = 2 * bytes;
  if (offset + n > pool.length) refill();
  const s = pool.slice(offset, offset + n);
  lastAt = offset;
  offset += n;
  return s;
}

function refill(): void {
  const b = randomBytes(4096);
  pool = b.toString('hex');
  poolBytes = new Uint8Array(Buffer.from(pool, 'latin1'));
  offset = 0;
}

/**
 * `sampleNew` (tracing on: observe/otlp.ts) decides a trace the waypoint starts, and the
 * traceparent says so (flags 01 or 00); without it a new trace is sampled (01).
 */
export function continueTrace(incoming: string | undefined, sampleNew?: (traceId: string) => boolean): TraceContext {
  // Both ids of a new trace from one pool.
  if (offset + 48 > pool.length) refill();
  const hexBytes = poolBytes;
  const spanId = hex(8);
  const spanAt = lastAt;
  if (incoming !== undefined) {
    const m = TRACEPARENT.exec(incoming.trim());
    // Version ff is invalid; ids of all zeros are invalid; version 00 has no extra fields.
    if (m && m[1] !== 'ff' && m[2] !== ZERO_TRACE && m[3] !== ZERO_SPAN && !(m[1] === '00' && m[5] !== undefined)) {
      const flags = m[4]!;
      return { traceId: m[2]!, spanId, parentId: m[3], flags, header: `00-${m[2]}-${spanId}-${flags}`, hex: hexBytes, traceAt: -1, spanAt };
    }
  }
  const traceId = hex(16);
  const traceAt = lastAt;
  const flags = sampleNew === undefined || sampleNew(traceId) ? '01' : '00';
  return { traceId, spanId, parentId: undefined, flags, header: `00-${traceId}-${spanId}-${flags}`, hex: hexBytes, traceAt, spanAt };
}

/** A request id for x-request-id when the request has none; its bytes are at `lastIdAt()` in `lastIdBytes()` until the next id. */
export function requestId(): string {
  return hex(16);
}

/** The pool the last id came from, as bytes. */
export function lastIdBytes(): Uint8Array {
  return poolBytes;
}

/** Where the last id starts in lastIdBytes(). */
export function lastIdAt(): number {
  return lastAt;
}
