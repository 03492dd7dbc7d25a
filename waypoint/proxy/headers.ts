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

/** tchar (RFC 9110 §5.6.2): 1 for the characters of a header name. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

/** A header name Node would send (checkIsHttpToken); a loop over a table, cheaper than a regex on every header of every response. */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 127 || TCHAR[c] === 0) return false;
  }
  return true;
}

/** A field value Node would refuse to send (checkInvalidHeaderChar: not tab, 0x20-0x7e or 0x80-0xff). */
export function invalidValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 32 ? c !== 9 : c === 127 || c > 255) return true;
  }
  return false;
}

/** Whether every name and value a modifier sets or adds is one isToken/invalidValue let through (checked once per modifier). */
export function modifierSendable(m: HeaderModifier | undefined): boolean {
  if (m === undefined) return true;
  let ok = sendable.get(m);
  if (ok === undefined) {
    ok = true;
    for (const { name, value } of [...m.set, ...m.add]) if (!isToken(name) || invalidValue(value)) ok = false;
    sendable.set(m, ok);
  }
  return ok;
}
const sendable = new WeakMap<HeaderModifier, boolean>();

/**
 * Whether `name` is `lower` (a lower-case name) in any case, without making a lower-case
 * copy of it (only ASCII letters fold, as toLowerCase folds the names a parser accepts).
 */
export function sameName(name: string, lower: string): boolean {
  const n = lower.length;
  if (name.length !== n) return false;
  // Equal strings compare natively; the loop (charCodeAt on a string of unknown kind costs tens of instructions) only for other cases.
  if (name === lower) return true;
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    const l = lower.charCodeAt(i);
    // (c | 32) === l with l a lower-case letter: c is l or its upper case.
    if (c !== l && ((c | 32) !== l || l < 97 || l > 122)) return false;
  }
  return true;
}

/** The hop-by-hop names by length, lower case and capitalized (`Keep-Alive`, the usual spelling, compares natively): a name is looked up among those of its length only. */
const HOP_BY_LENGTH: (string[] | undefined)[] = [];
for (const n of HOP_BY_HOP) (HOP_BY_LENGTH[n.length] ??= []).push(n, capitalized(n));

/** `keep-alive` -> `Keep-Alive`, `te` -> `Te`. */
function capitalized(lower: string): string {
  return lower.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => `${dash}${c.toUpperCase()}`);
}

/** The lower-case hop-by-hop name `name` is, in any case; undefined when it is none. */
function hopName(name: string): string | undefined {
  const list = HOP_BY_LENGTH[name.length];
  if (list === undefined) return undefined;
  for (let i = 0; i < list.length; i += 2) if (name === list[i + 1] || sameName(name, list[i]!)) return list[i];
  return undefined;
}

/** Whether `name` is Connection, in any case. */
function isConnection(name: string): boolean {
  return name.length === 10 && (name === 'Connection' || sameName(name, 'connection'));
}

/**
 * Names a Connection header lists (RFC 9110 §7.6.1: those headers are hop-by-hop too),
 * lower case, added to `named` (made when the first comes); `close` and `keep-alive`
 * (which name no header) and the names in `keep` are left out. The value is split by
 * hand: the common values (`keep-alive`, `close`) make no string and no set.
 */
function connectionNames(value: string, keep: ReadonlySet<string> | undefined, named: Set<string> | undefined): Set<string> | undefined {
  if (value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Close') return named;
  const len = value.length;
  let i = 0;
  while (i < len) {
    let end = value.indexOf(',', i);
    if (end < 0) end = len;
    let s = i, e = end;
    while (s < e && isOws(value.charCodeAt(s))) s++;
    while (e > s && isOws(value.charCodeAt(e - 1))) e--;
    if (e > s && !tokenIs(value, s, e, 'close') && !tokenIs(value, s, e, 'keep-alive')) {
      const n = value.slice(s, e).toLowerCase();
      if (n !== 'close' && n !== 'keep-alive' && !(keep?.has(n))) (named ??= new Set()).add(n);
    }
    i = end + 1;
  }
  return named;
}

/** Optional whitespace around list elements (String.prototype.trim's, for the characters a header value can hold). */
function isOws(c: number): boolean {
  if (c <= 255) return c === 32 || (c >= 9 && c <= 13) || c === 160;
  return c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

/** Whether value[s, e) is `lower` in any case. */
function tokenIs(value: string, s: number, e: number, lower: string): boolean {
  if (e - s !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    const c = value.charCodeAt(s + i);
    const l = lower.charCodeAt(i);
    if (c !== l && ((c | 32) !== l || l < 97 || l > 122)) return false;
  }
  return true;
}

/**
 * Copy raw headers without hop-by-hop ones and those named in Connection. `keep` lists
 * hop-by-hop names to keep anyway (upgrade for WebSocket, te: trailers for gRPC).
 */
export function forwardable(raw: readonly string[], keep?: ReadonlySet<string>): HeaderList {
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (isConnection(raw[i]!)) named = connectionNames(raw[i + 1]!, keep, named);
  }
  const out: HeaderList = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* ':' */) continue; // HTTP/2 pseudo-headers
    const hop = hopName(name);
    if (hop !== undefined && !(keep?.has(hop))) continue;
    if (named !== undefined && named.has(hop ?? name.toLowerCase())) continue;
    out.push(name, raw[i + 1]!);
  }
  return out;
}

/** Names forwardableRequest takes out or reads, besides the hop-by-hop ones. */
const HOST = 1, XFP = 2, TRACEPARENT = 3, XFF = 4, REQUEST_ID = 5;
const PROXY_SET: ([string, number, string][] | undefined)[] = [];
for (const [n, k] of [['host', HOST], ['x-forwarded-proto', XFP], ['traceparent', TRACEPARENT], ['x-forwarded-for', XFF], ['x-request-id', REQUEST_ID]] as const) {
  (PROXY_SET[n.length] ??= []).push([n, k, capitalized(n)]);
}

/** Which of the names forwardableRequest handles itself `name` is (0: none). */
function proxySet(name: string): number {
  const list = PROXY_SET[name.length];
  if (list === undefined) return 0;
  for (let i = 0; i < list.length; i++) {
    const e = list[i]!;
    if (name === e[2] || sameName(name, e[0])) return e[1];
  }
  return 0;
}

/**
 * forwardable() for a request on its way to a backend, in one pass: also takes out what
 * the proxy sets itself (Host, X-Forwarded-For, X-Forwarded-Proto, traceparent) and
 * returns the caller's X-Forwarded-For (joined) and X-Request-Id.
 */
export function forwardableRequest(raw: readonly string[], keep: ReadonlySet<string> | undefined, into: HeaderList): { xff: string | undefined; requestId: string | undefined } {
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (isConnection(raw[i]!)) named = connectionNames(raw[i + 1]!, keep, named);
  }
  let xff: string | undefined;
  let requestId: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* ':' */) continue; // HTTP/2 pseudo-headers
    switch (proxySet(name)) {
      case HOST: case XFP: case TRACEPARENT: continue;
      case XFF: xff = xff === undefined ? raw[i + 1] : `${xff}, ${raw[i + 1]}`; continue;
      case REQUEST_ID: requestId ??= raw[i + 1]; break;
      default:
    }
    const hop = hopName(name);
    if (hop !== undefined && !(keep?.has(hop))) continue;
    if (named !== undefined && named.has(hop ?? name.toLowerCase())) continue;
    into.push(name, raw[i + 1]!);
  }
  return { xff, requestId };
}

export function getHeader(h: HeaderList, lower: string): string | undefined {
  let v: string | undefined;
  for (let i = 0; i < h.length; i += 2) {
    if (sameName(h[i]!, lower)) v = v === undefined ? h[i + 1] : `${v},${h[i + 1]}`;
  }
  return v;
}

export function hasHeader(h: HeaderList, lower: string): boolean {
  for (let i = 0; i < h.length; i += 2) if (sameName(h[i]!, lower)) return true;
  return false;
}

export function removeHeader(h: HeaderList, lower: string): void {
  let w = 0;
  for (let i = 0; i < h.length; i += 2) {
    if (sameName(h[i]!, lower)) continue;
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
