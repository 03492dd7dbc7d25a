/**
 * Header lists in the flat form Node uses for raw headers ([name, value, name, value...]):
 * the order, the case and repeated headers are kept, which is what a proxy should pass on.
 * Gateway API header modifiers work on them: `set` replaces every value, `add` appends a
 * value (a repeated header: the backend sees "old,new"), `remove` drops every value.
 */
import type { HeaderModifier } from '../../k8s/gateway-api-types.js';

export type HeaderList = string[];

/** Hop-by-hop headers (RFC 9110 §7.6.1) and others a proxy must not forward as is. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-authorization']);

/** Whether a (lower-case) header name is hop-by-hop. */
export function isHopByHop(lower: string): boolean {
  return HOP_BY_HOP.has(lower);
}

/**
 * Copy raw headers without hop-by-hop ones and those named in Connection. `keep` lists
 * hop-by-hop names to keep anyway (upgrade for WebSocket, te: trailers for gRPC).
 */
export function forwardable(raw: readonly string[], keep?: ReadonlySet<string>): HeaderList {
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') {
      for (const t of raw[i + 1]!.split(',')) {
        const n = t.trim().toLowerCase();
        if (n !== '' && n !== 'close' && n !== 'keep-alive' && !(keep?.has(n))) (named ??= new Set()).add(n);
      }
    }
  }
  const out: HeaderList = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* ':' */) continue; // HTTP/2 pseudo-headers
    if (named !== undefined || HOP_LENGTH[name.length] === 1) {
      const lower = name.toLowerCase();
      if ((HOP_BY_HOP.has(lower) && !(keep?.has(lower))) || named?.has(lower)) continue;
    }
    out.push(name, raw[i + 1]!);
  }
  return out;
}

/** 1 at the lengths of hop-by-hop names: other names need no toLowerCase to be kept. */
const HOP_LENGTH = new Uint8Array(32);
for (const n of HOP_BY_HOP) HOP_LENGTH[n.length] = 1;
/** The same, with the names forwardableRequest takes out or reads. */
const REQUEST_LENGTH = new Uint8Array(32);
for (const n of [...HOP_BY_HOP, 'host', 'x-forwarded-proto', 'traceparent', 'x-forwarded-for', 'x-request-id']) REQUEST_LENGTH[n.length] = 1;

/**
 * forwardable() for a request on its way to a backend, in one pass: also takes out what
 * the proxy sets itself (Host, X-Forwarded-For, X-Forwarded-Proto, traceparent) and
 * returns the caller's X-Forwarded-For (joined) and X-Request-Id.
 */
export function forwardableRequest(raw: readonly string[], keep: ReadonlySet<string> | undefined, into: HeaderList): { xff: string | undefined; requestId: string | undefined } {
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') {
      for (const t of raw[i + 1]!.split(',')) {
        const n = t.trim().toLowerCase();
        if (n !== '' && n !== 'close' && n !== 'keep-alive' && !(keep?.has(n))) (named ??= new Set()).add(n);
      }
    }
  }
  let xff: string | undefined;
  let requestId: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (named === undefined && REQUEST_LENGTH[name.length] !== 1 && name.charCodeAt(0) !== 58) { into.push(name, raw[i + 1]!); continue; }
    const lower = name.toLowerCase();
    switch (lower) {
      case 'host': case 'x-forwarded-proto': case 'traceparent': continue;
      case 'x-forwarded-for': xff = xff === undefined ? raw[i + 1] : `${xff}, ${raw[i + 1]}`; continue;
      case 'x-request-id': requestId ??= raw[i + 1]; break;
      default:
    }
    if (lower.charCodeAt(0) === 58 /* ':' */) continue;
    if ((HOP_BY_HOP.has(lower) && !(keep?.has(lower))) || named?.has(lower)) continue;
    into.push(name, raw[i + 1]!);
  }
  return { xff, requestId };
}

export function getHeader(h: HeaderList, lower: string): string | undefined {
  let v: string | undefined;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i]!.toLowerCase() === lower) v = v === undefined ? h[i + 1] : `${v},${h[i + 1]}`;
  }
  return v;
}

export function hasHeader(h: HeaderList, lower: string): boolean {
  // Only names of the same length can match: no lower-case copy of the others.
  for (let i = 0; i < h.length; i += 2) if (h[i]!.length === lower.length && h[i]!.toLowerCase() === lower) return true;
  return false;
}

export function removeHeader(h: HeaderList, lower: string): void {
  let w = 0;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i]!.toLowerCase() === lower) continue;
    if (w !== i) { h[w] = h[i]!; h[w + 1] = h[i + 1]!; }
    w += 2;
  }
  h.length = w;
}

export function setHeader(h: HeaderList, name: string, value: string): void {
  removeHeader(h, name.toLowerCase());
  h.push(name, value);
}

export function applyModifier(h: HeaderList, m: HeaderModifier | undefined): void {
  if (!m) return;
  for (const { name, value } of m.set) setHeader(h, name, value);
  for (const { name, value } of m.add) h.push(name, value);
  for (const name of m.remove) removeHeader(h, name);
}

/** The object form HTTP/2 wants: lower-case names, repeated headers as arrays. */
export function toObject(h: HeaderList): Record<string, string | string[]> {
  const o: Record<string, string | string[]> = {};
  for (let i = 0; i < h.length; i += 2) {
    const k = h[i]!.toLowerCase();
    const prev = o[k];
    if (prev === undefined) o[k] = h[i + 1]!;
    else if (Array.isArray(prev)) prev.push(h[i + 1]!);
    else o[k] = [prev, h[i + 1]!];
  }
  return o;
}

/** Raw headers from an HTTP/2 header object (names are lower case already). */
export function fromObject(o: Record<string, string | string[] | number | undefined>): HeaderList {
  const out: HeaderList = [];
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push(k, x);
    else out.push(k, String(v));
  }
  return out;
}

/**
 * A latin1 string (a header, a request or status line; as Node writes header strings)
 * into `b` at `o`, byte by byte: no string is built to write it. The offset after it.
 */
export function putLatin1(b: Buffer, o: number, s: string): number {
  for (let i = 0; i < s.length; i++) b[o + i] = s.charCodeAt(i);
  return o + s.length;
}
