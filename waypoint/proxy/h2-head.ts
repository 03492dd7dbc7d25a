/**
 * What both HTTP/2 servers (nghttp2's, h2-server.ts, and the waypoint's own, h2-conn.ts)
 * share about response heads: the checks a head's fields get, the lower-casing of the
 * names backends send most, and the holding of heads until their first body chunk or their
 * end in the same turn of the event loop (one setImmediate per turn for all held heads,
 * not a timer object per response; cleared when none is held any more, so no JS callback
 * is made for the turn).
 */

/** Field values Node's HTTP/1 layer refuses to send; HTTP/2 refuses the same (RFC 9113 §8.2.1). */
export const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
export const TOKEN = /^[\^_`a-zA-Z\-0-9!#$%&'*+.|~]+$/;
/** Connection-specific header fields, never sent over HTTP/2 (RFC 9113 §8.2.2). */
export const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);

/** Lower-case names of the header names backends send most, as they send them (no new string per response). */
const LOWER = new Map<string, string>();
for (const n of ['Server', 'Date', 'Content-Type', 'Content-Length', 'Connection', 'Keep-Alive', 'Transfer-Encoding', 'Cache-Control', 'ETag',
  'Last-Modified', 'Vary', 'Location', 'Set-Cookie', 'Content-Encoding', 'Accept-Ranges', 'Expires', 'Trailer', 'X-Request-Id', 'Grpc-Status', 'Grpc-Message']) {
  LOWER.set(n, n.toLowerCase());
  LOWER.set(n.toLowerCase(), n.toLowerCase());
}
export function lower(name: string): string {
  return LOWER.get(name) ?? name.toLowerCase();
}

/** What checkHead() found in a head. */
export const HEAD_LENGTH = 1, HEAD_TRAILER = 2, HEAD_GRPC = 4, HEAD_DATE = 8;

/**
 * A response head as the handler hands it over (the list is taken over, not copied): names
 * lower-cased and connection-specific fields (and `te` other than `trailers`) dropped in
 * place; a name or value HTTP cannot carry throws, as Node's writeHead does. Returns which
 * of Content-Length, Trailer, a gRPC Content-Type and Date it has (HEAD_* bits). `checked`:
 * the names and values are known to be valid (from the strict HTTP/1.1 parser, or modifier
 * values checked when the route table was built) and are not tested again.
 */
export function checkHead(head: string[], checked = false): number {
  let n = 0;
  let found = 0;
  for (let i = 0; i < head.length; i += 2) {
    const name = lower(head[i]!);
    const value = head[i + 1]!;
    if (!checked && !TOKEN.test(name)) throw Object.assign(new Error(`invalid header name ${JSON.stringify(name)}`), { code: 'ERR_INVALID_HTTP_TOKEN' });
    if (!checked && INVALID_VALUE.test(value)) throw Object.assign(new Error(`invalid value for header ${name}`), { code: 'ERR_INVALID_CHAR' });
    if (CONNECTION_SPECIFIC.has(name) || (name === 'te' && value.toLowerCase() !== 'trailers')) continue;
    if (name === 'content-length') found |= HEAD_LENGTH;
    else if (name === 'trailer') found |= HEAD_TRAILER;
    else if (name === 'content-type' && value.startsWith('application/grpc')) found |= HEAD_GRPC;
    else if (name === 'date') found |= HEAD_DATE;
    head[n++] = name;
    head[n++] = value;
  }
  head.length = n;
  return found;
}

/** A response whose head may be held until the end of the turn. */
export interface HeldHead {
  /** In the held list, its head not sent yet. */
  held: boolean;
  /** The turn ended without the response's end: the head goes out (with what is queued). */
  flushHead(): void;
}

let heldHeads: HeldHead[] = [];
/** How many of heldHeads still hold their head; when none does, the immediate is cleared. */
let stillHeld = 0;
let flushImmediate: NodeJS.Immediate | undefined;
function flushHeldHeads(): void {
  const list = heldHeads;
  heldHeads = [];
  stillHeld = 0;
  flushImmediate = undefined;
  for (let i = 0; i < list.length; i++) list[i]!.held = false;
  for (let i = 0; i < list.length; i++) list[i]!.flushHead();
}
export function holdHead(r: HeldHead): void {
  r.held = true;
  stillHeld++;
  if (heldHeads.push(r) === 1) flushImmediate = setImmediate(flushHeldHeads);
}
/** A held head went out (or its stream closed) before the end of the turn. */
export function releaseHead(r: HeldHead): void {
  r.held = false;
  if (--stillHeld === 0 && flushImmediate !== undefined) {
    clearImmediate(flushImmediate);
    flushImmediate = undefined;
    heldHeads.length = 0;
  }
}
