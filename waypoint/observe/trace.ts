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
}

// Random ids come from a pool refilled in bulk: one crypto call per 512 ids.
// The pool is kept as hex text: an id is a slice of it (no native call per id).
let pool = '';
let offset = 0;
function hex(bytes: number): string {
  const n = 2 * bytes;
  if (offset + n > pool.length) { pool = randomBytes(4096).toString('hex'); offset = 0; }
  const s = pool.slice(offset, offset + n);
  offset += n;
  return s;
}

/**
 * `sampleNew` (tracing on: observe/otlp.ts) decides a trace the waypoint starts, and the
 * traceparent says so (flags 01 or 00); without it a new trace is sampled (01).
 */
export function continueTrace(incoming: string | undefined, sampleNew?: (traceId: string) => boolean): TraceContext {
  const spanId = hex(8);
  if (incoming !== undefined) {
    const m = TRACEPARENT.exec(incoming.trim());
    // Version ff is invalid; ids of all zeros are invalid; version 00 has no extra fields.
    if (m && m[1] !== 'ff' && m[2] !== ZERO_TRACE && m[3] !== ZERO_SPAN && !(m[1] === '00' && m[5] !== undefined)) {
      const flags = m[4]!;
      return { traceId: m[2]!, spanId, parentId: m[3], flags, header: `00-${m[2]}-${spanId}-${flags}` };
    }
  }
  const traceId = hex(16);
  const flags = sampleNew === undefined || sampleNew(traceId) ? '01' : '00';
  return { traceId, spanId, parentId: undefined, flags, header: `00-${traceId}-${spanId}-${flags}` };
}

/** A request id for x-request-id when the request has none. */
export function requestId(): string {
  return hex(16);
}
