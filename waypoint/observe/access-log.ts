/**
 * Access logs: one JSON line per request in pino's format (level, time, name, msg
 * "request", then the fields), written in batches so that logging does not slow the proxy
 * down: to a file by one synchronous write(2) per batch, as nginx writes its buffer (handing
 * each batch to the thread pool measured 2-3 % of the proxy's CPU, a thread woken per batch);
 * to stdout or stderr asynchronously through pino's destination (sonic-boom, in its buffer
 * mode), which a slow reader of the pipe cannot stall. Each line is copied at once into a
 * 64 KiB batch buffer (no string lives on until the batch is written; sonic-boom's string mode measured its whole accumulated string on
 * every write and converted each written batch to a Buffer again) and flushed at least once
 * a second (as nginx's `access_log ... buffer=64k flush=1s`); at shutdown the write in
 * flight is waited for and the rest written, so no line is lost on SIGTERM. The line is
 * assembled here rather than by pino's generic serializer: its fields are fixed, and this
 * is on every request's path. Destination: stdout (default), stderr, a file, or off.
 *
 * Several processes writing to one destination (`--workers`, waypoint/workers.ts): a file
 * is opened for appending, so each write lands whole at its end; on a pipe (stdout in a
 * container) only writes of at most PIPE_BUF (4096 bytes) are atomic, so a worker hands
 * its lines over in whole-line pieces of at most that (`sharedDestination`).
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';

export type AccessLogDestination = 'stdout' | 'stderr' | 'off' | { file: string };

export interface AccessRecord {
  method: string;
  path: string;
  protocol: string;
  status: number;
  durationMs: number;
  route: string;
  rule: string;
  destination: string;
  upstream: string | undefined;
  source: string;
  sourceAddress: string;
  parent: string;
  bytesIn: number;
  bytesOut: number;
  traceId: string;
  spanId: string;
  requestId: string;
  userAgent: string | undefined;
  /** Why the waypoint answered itself (no_route, denied, timeout...), when it did. */
  reason: string | undefined;
  attempts: number;
  /** Envoy's response flags, comma-separated (UO, UH, DI, FI, RL, URX), when any. */
  responseFlags?: string | undefined;
}

/**
 * What a line is written from: the handler's own record of a request (its Exchange), read
 * field by field: route, rule, destination, upstream, source and parent as the handler set
 * them, the caller's address from its connection, the ids from its trace context.
 */
export interface AccessEntry {
  method: string;
  path: string;
  protocol: string;
  route: string;
  rule: string;
  destination: string;
  upstream: string | undefined;
  source: string;
  parent: string;
  bytesIn: number;
  bytesOut: number;
  /** `hex`, `traceAt`, `spanAt`: the ids' text as bytes and where each starts (-1: not there): copied without reading the strings. */
  trace: { traceId: string; spanId: string; hex?: Uint8Array; traceAt?: number; spanAt?: number } | undefined;
  requestId: string;
  /** The request id's text as bytes, from `requestIdAt` (-1 or undefined: read the string). */
  requestIdHex?: Uint8Array | undefined;
  requestIdAt?: number;
  userAgent: string | undefined;
  reason: string | undefined;
  attempts: number;
  /** Envoy's response flags, comma-separated (UO, UH, DI, FI, RL, URX), when any. */
  flags: string | undefined;
  conn: { peerAddress: string } | undefined;
}

type Destination = ReturnType<typeof pino.destination>;

const BUFFER_BYTES = 64 * 1024;
/** Linux's PIPE_BUF: a write to a pipe of at most this many bytes is never interleaved with another process's. */
const PIPE_BUF = 4096;
const FLUSH_EVERY_MS = 1000;
/** At shutdown, how long a write in flight may take before the rest is written anyway. */
const CLOSE_WAIT_MS = 5000;

export class AccessLog {
  private readonly dest: Destination | undefined;
  /** A file destination, opened here for appending: batches are written to it synchronously, as nginx writes its buffer. */
  private fd: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failed = false;
  /** Lines not yet handed to the destination: the batch buffer and the bytes used in it. */
  private batch: Buffer | undefined;
  private buffered = 0;
  /** A batch buffer written already, kept for the next batch (undefined while in flight). */
  private spare: Buffer | undefined;
  /** Bytes handed to the destination and not yet written (its 'write' events count them down). */
  private inFlight = 0;
  private written: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  /** Every batch handed over is written: the last one's buffer may take the next lines. */
  private reusable = false;

  /** Other processes write to the same destination: hand lines over in whole-line writes of at most PIPE_BUF. */
  private readonly shared: boolean;
  /** The last values of the fields that repeat, and their bytes in the line. */
  private lastRoute: string | undefined;
  private lastRule: string | undefined;
  private lastDestination: string | undefined;
  private lastRouteBytes = EMPTY;
  private lastProtocol: string | undefined;
  private lastStatus = -1;
  private lastStatusBytes = EMPTY;
  private lastSource: string | undefined;
  private lastAddress: string | undefined;
  private lastParent: string | undefined;
  private lastSourceBytes = EMPTY;
  /**
   * The line's three segments between its per-request values (time, duration, ids), as the
   * bytes written for the fields after them; a field that differs from the kept one
   * (compared with ===: the same text) writes its segment anew. `status` starts at NaN
   * and `segA` undefined: nothing matches before a first line.
   */
  private segA: Uint8Array | undefined;
  private method: string | undefined;
  private path: string | undefined;
  private protocol: string | undefined;
  private status = Number.NaN;
  private segB: Uint8Array | undefined;
  private route: string | undefined;
  private rule: string | undefined;
  private destination: string | undefined;
  private upstream: string | undefined;
  private source: string | undefined;
  private address: string | undefined;
  private parent: string | undefined;
  private bytesIn = Number.NaN;
  private bytesOut = Number.NaN;
  private segC: Uint8Array | undefined;
  private ua: string | undefined;
  private reason: string | undefined;
  private flags: string | undefined;
  private attempts = Number.NaN;

  constructor(where: AccessLogDestination, opts: { sharedDestination?: boolean } = {}) {
    this.shared = opts.sharedDestination === true && typeof where !== 'object';
    if (where === 'off') return;
    if (typeof where === 'object') {
      // A batch to a file is one write(2) on this thread: handing it to the thread pool cost
      // more (a thread woken per batch) than the copy into the page cache. A file that
      // cannot be opened here goes through sonic-boom, which reports the failure as before.
      try {
        mkdirSync(dirname(where.file), { recursive: true });
        this.fd = openSync(where.file, 'a');
      } catch { this.fd = undefined; }
    }
    if (this.fd !== undefined) {
      this.timer = setInterval(() => this.handOver(), FLUSH_EVERY_MS);
      this.timer.unref();
      return;
    }
    // minLength 0: what is handed over is written at once (asynchronously); the batching is here.
    // maxWrite: sonic-boom joins handed-over strings into writes of at most this (a longer one alone).
    const dest = pino.destination({ dest: where === 'stdout' ? 1 : where === 'stderr' ? 2 : where.file, sync: false, minLength: 0, maxWrite: this.shared ? PIPE_BUF : 2 * BUFFER_BYTES, mkdir: true, contentMode: 'buffer' });
    // A write that fails later (disk full, file removed with its folder) is not worth a crash.
    dest.on('error', (e: Error) => { if (!this.failed) { this.failed = true; process.emitWarning(`access log: ${e.message}; lines are dropped`); } });
    dest.on('write', (n: number) => {
      this.inFlight -= n;
      if (this.inFlight <= 0) { this.inFlight = 0; this.reusable = true; this.written?.(); }
    });
    this.dest = dest;
    this.timer = setInterval(() => this.handOver(), FLUSH_EVERY_MS);
    this.timer.unref();
  }

  get enabled(): boolean {
    return this.dest !== undefined || this.fd !== undefined;
  }

  /** A line from a record (tests, and anything that has no Exchange): the same bytes as request(). */
  write(r: AccessRecord): void {
    if (!this.enabled) return;
    this.request({
      method: r.method, path: r.path, protocol: r.protocol, route: r.route, rule: r.rule, destination: r.destination, upstream: r.upstream,
      source: r.source, parent: r.parent, bytesIn: r.bytesIn, bytesOut: r.bytesOut, trace: { traceId: r.traceId, spanId: r.spanId },
      requestId: r.requestId, userAgent: r.userAgent, reason: r.reason, attempts: r.attempts, flags: r.responseFlags, conn: { peerAddress: r.sourceAddress },
    }, r.status, r.durationMs);
  }

  /**
   * The line of a finished request, read from the handler's own record of it (no record
   * object per request), written straight into the batch buffer: no string and no other
   * garbage per line (a line built as a string measured ~1.7 KB more garbage per request,
   * and young-generation collections cost more than the instructions it saved). The fields
   * that repeat from line to line (the text before the method, once per millisecond;
   * protocol and status; route, rule and destination; source, its address and the parent)
   * are kept as bytes for the last values seen and copied by one TypedArray set each; the
   * rest are copied character by character, escaped as JSON only when they need it.
   */
  request(e: AccessEntry, status: number, durationMs: number): void {
    if (!this.enabled) return;
    const t = e.trace;
    const traceId = t?.traceId ?? '';
    const spanId = t?.spanId ?? '';
    const ua = e.userAgent;
    const head = linePrefix();
    const address = e.conn?.peerAddress ?? '';
    // The three segments between the per-request values, as bytes when their fields are the previous line's.
    const sa = this.method === e.method && this.path === e.path && this.protocol === e.protocol && this.status === status ? this.segA : undefined;
    const sb = this.route === e.route && this.rule === e.rule && this.destination === e.destination && this.upstream === e.upstream && this.source === e.source
      && this.address === address && this.parent === e.parent && this.bytesIn === e.bytesIn && this.bytesOut === e.bytesOut ? this.segB : undefined;
    const sc = this.ua === ua && this.reason === e.reason && this.flags === e.flags && this.attempts === e.attempts ? this.segC : undefined;
    // At worst 6 bytes per character (\u00XX), the kept fragments, the keys and numbers.
    let chars = traceId.length + spanId.length + e.requestId.length;
    if (sa === undefined) chars += e.method.length + e.path.length + e.protocol.length;
    if (sb === undefined) chars += (e.upstream?.length ?? 0) + e.route.length + e.rule.length + e.destination.length + e.source.length + address.length + e.parent.length;
    if (sc === undefined) chars += (ua?.length ?? 0) + (e.reason?.length ?? 0) + (e.flags?.length ?? 0);
    const most = chars * 6 + head.length + (sa?.length ?? 0) + (sb?.length ?? 0) + (sc?.length ?? 0) + LINE_OVERHEAD;
    if (most > BUFFER_BYTES) { this.append(lineText(e, status, durationMs)); return; }
    const b = this.room(most);
    let o = this.buffered;
    b.set(head, o);
    o += head.length;
    if (sa !== undefined) { b.set(sa, o); o += sa.length; } else o = this.writeA(b, o, e, status);
    o = putMs(b, o, durationMs);
    if (sb !== undefined) { b.set(sb, o); o += sb.length; } else o = this.writeB(b, o, e, address);
    const hx = t?.hex;
    const traceAt = t?.traceAt ?? -1, spanAt = t?.spanAt ?? -1;
    o = hx !== undefined && traceAt >= 0 ? copyBytes(b, o, hx, traceAt, traceId.length) : raw(b, o, traceId);
    o = putBytes(b, o, K_SPAN_ID);
    o = hx !== undefined && spanAt >= 0 ? copyBytes(b, o, hx, spanAt, spanId.length) : raw(b, o, spanId);
    o = putBytes(b, o, K_REQUEST_ID);
    const rh = e.requestIdHex, ra = e.requestIdAt ?? -1;
    if (rh !== undefined && ra >= 0) {
      b[o++] = 34;
      o = copyBytes(b, o, rh, ra, e.requestId.length);
      b[o++] = 34;
    } else o = json(b, o, e.requestId);
    if (sc !== undefined) { b.set(sc, o); o += sc.length; } else o = this.writeC(b, o, e);
    this.buffered = o;
    if (o + LINE_OVERHEAD > b.length) this.handOver();
  }

  /** The line's first segment, `"GET","path":…,"protocol":…,"status":…,"durationMs":`, written and kept with its fields. */
  private writeA(b: Buffer, start: number, e: AccessEntry, status: number): number {
    let o = start;
    if (e.method === 'GET') { b.set(GET, o); o += GET.length; } else o = json(b, o, e.method);
    o = putBytes(b, o, K_PATH);
    o = json(b, o, e.path);
    const st = this.statusBytes(e.protocol, status);
    b.set(st, o);
    o += st.length;
    this.segA = kept(b, start, o);
    this.method = e.method;
    this.path = e.path;
    this.protocol = e.protocol;
    this.status = status;
    return o;
  }

  /** The second, `,"route":…` to `,"traceId":"` (route, upstream, caller, byte counts), written and kept with its fields. */
  private writeB(b: Buffer, start: number, e: AccessEntry, address: string): number {
    let o = start;
    const rt = this.routeBytes(e.route, e.rule, e.destination);
    b.set(rt, o);
    o += rt.length;
    if (e.upstream !== undefined) {
      o = putBytes(b, o, K_UPSTREAM);
      o = raw(b, o, e.upstream);
      b[o++] = 34;
    }
    const src = this.sourceBytes(e.source, address, e.parent);
    b.set(src, o);
    o = putUint(b, o + src.length, e.bytesIn);
    o = putBytes(b, o, K_BYTES_OUT);
    o = putUint(b, o, e.bytesOut);
    o = putBytes(b, o, K_TRACE_ID);
    this.segB = kept(b, start, o);
    this.route = e.route;
    this.rule = e.rule;
    this.destination = e.destination;
    this.upstream = e.upstream;
    this.source = e.source;
    this.address = address;
    this.parent = e.parent;
    this.bytesIn = e.bytesIn;
    this.bytesOut = e.bytesOut;
    return o;
  }

  /** The last, after the request id to the end of the line (user agent, reason, flags, attempts), written and kept with its fields. */
  private writeC(b: Buffer, start: number, e: AccessEntry): number {
    let o = start;
    const ua = e.userAgent;
    if (ua !== undefined) {
      o = putBytes(b, o, K_USER_AGENT);
      o = json(b, o, ua);
    }
    if (e.reason !== undefined) {
      o = putLatin1(b, o, ',"reason":"');
      o = raw(b, o, e.reason);
      b[o++] = 34;
    }
    if (e.flags !== undefined) {
      o = putLatin1(b, o, ',"responseFlags":"');
      o = raw(b, o, e.flags);
      b[o++] = 34;
    }
    o = putBytes(b, o, K_ATTEMPTS);
    o = putUint(b, o, e.attempts);
    b[o++] = 125; // }
    b[o++] = 10;
    this.segC = kept(b, start, o);
    this.ua = ua;
    this.reason = e.reason;
    this.flags = e.flags;
    this.attempts = e.attempts;
    return o;
  }

  /** `,"protocol":…,"status":…,"durationMs":` as bytes, kept for the last pair seen. */
  private statusBytes(protocol: string, status: number): Uint8Array {
    if (protocol !== this.lastProtocol || status !== this.lastStatus) {
      this.lastProtocol = protocol;
      this.lastStatus = status;
      this.lastStatusBytes = utf8(`,"protocol":"${protocol}","status":${status},"durationMs":`);
    }
    return this.lastStatusBytes;
  }

  /** `,"source":…,"sourceAddress":…,"parent":…,"bytesIn":` as bytes, kept for the last caller seen. */
  private sourceBytes(source: string, address: string, parent: string): Uint8Array {
    if (source !== this.lastSource || address !== this.lastAddress || parent !== this.lastParent) {
      this.lastSource = source;
      this.lastAddress = address;
      this.lastParent = parent;
      this.lastSourceBytes = utf8(`,"source":${jsonText(source)},"sourceAddress":"${address}","parent":${jsonText(parent)},"bytesIn":`);
    }
    return this.lastSourceBytes;
  }

  /** `,"route":…,"rule":…,"destination":…` as bytes, kept for the last route seen (they repeat from request to request). */
  private routeBytes(route: string, rule: string, destination: string): Uint8Array {
    if (route !== this.lastRoute || rule !== this.lastRule || destination !== this.lastDestination) {
      this.lastRoute = route;
      this.lastRule = rule;
      this.lastDestination = destination;
      this.lastRouteBytes = utf8(`,"route":${jsonText(route)},"rule":${jsonText(rule)},"destination":${jsonText(destination)}`);
    }
    return this.lastRouteBytes;
  }

  /** The batch buffer, with room for `most` more bytes (a full batch is handed over first). */
  private room(most: number): Buffer {
    if (this.batch !== undefined && this.buffered + most > this.batch.length) this.handOver();
    let b = this.batch;
    if (b === undefined) {
      b = this.reusable && this.spare !== undefined ? this.spare : Buffer.allocUnsafeSlow(BUFFER_BYTES);
      this.spare = undefined;
      this.batch = b;
    }
    return b;
  }

  /** A line into the batch (UTF-8: at most 3 bytes per UTF-16 unit); a full batch is handed over. */
  private append(line: string): void {
    const most = line.length * 3;
    if (most > BUFFER_BYTES) {
      this.handOver(); // the lines before it go first
      this.send(Buffer.from(line));
      return;
    }
    const b = this.room(most) as Buffer & { utf8Write(s: string, offset: number): number };
    this.buffered += b.utf8Write(line, this.buffered);
    if (this.buffered + LINE_OVERHEAD > b.length) this.handOver();
  }

  /** The batch to the destination (written asynchronously). */
  private handOver(): void {
    const b = this.batch;
    if (b === undefined || this.buffered === 0 || !this.enabled) return;
    const n = this.buffered;
    this.batch = undefined;
    this.buffered = 0;
    // The buffer is written from as it is: it is taken again only after every byte handed over is written.
    this.spare = b;
    if (this.shared) this.handOverPieces(b, n);
    else this.send(b.subarray(0, n));
  }

  private send(b: Buffer): void {
    if (this.fd !== undefined) { this.writeFile(this.fd, b); return; }
    this.reusable = false;
    this.inFlight += b.length;
    try { this.dest!.write(b as unknown as string); } catch { /* destroyed at shutdown: nothing more is written */ }
  }

  /** Bytes to the file, at once; a failure (disk full) drops them, with one warning. */
  private writeFile(fd: number, b: Buffer): void {
    try {
      while (b.length > 0) b = b.subarray(writeSync(fd, b));
      this.reusable = true;
    } catch (e) {
      if (!this.failed) { this.failed = true; process.emitWarning(`access log: ${(e as Error).message}; lines are dropped`); }
      this.reusable = true;
    }
  }

  /** The batch's first `n` bytes in whole-line pieces of at most PIPE_BUF bytes (a longer line alone). */
  private handOverPieces(b: Buffer, n: number): void {
    let start = 0;
    while (start < n) {
      let nl = b.indexOf(10, start);
      let end = nl < 0 || nl >= n ? n : nl + 1; // at least one line
      for (;;) {
        nl = b.indexOf(10, end);
        if (nl < 0 || nl >= n || nl + 1 - start > PIPE_BUF) break;
        end = nl + 1;
      }
      this.send(b.subarray(start, end));
      start = end;
    }
  }

  /**
   * At shutdown: stop the flush timer, hand the buffered lines over and wait until every
   * byte is written. Resolves when every line written before it is in the destination.
   */
  close(): Promise<void> {
    return (this.closing ??= this.drain());
  }

  private async drain(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.handOver();
    if (this.fd !== undefined) { const fd = this.fd; this.fd = undefined; try { closeSync(fd); } catch { /* closed */ } return; }
    const dest = this.dest;
    if (!dest || this.failed) return;
    if (this.inFlight === 0) return;
    // Every byte handed over is written asynchronously (also those waiting for the file to
    // open): wait for the last 'write'; past the guard, whatever is left is written at once.
    const all = await new Promise<boolean>((resolve) => {
      const guard = setTimeout(() => resolve(false), CLOSE_WAIT_MS);
      guard.unref();
      this.written = (): void => { clearTimeout(guard); resolve(true); };
      dest.once('error', () => { clearTimeout(guard); resolve(true); });
    });
    if (!all) try { dest.flushSync(); } catch { /* gone */ }
  }

  /** Write what is buffered now: synchronously when nothing is in flight and the destination is open. */
  flush(): void {
    if (this.fd !== undefined) { this.handOver(); return; }
    const dest = this.dest;
    if (!dest) return;
    const fd = (dest as unknown as { fd: number }).fd;
    if (this.inFlight === 0 && fd >= 0 && this.batch !== undefined && this.buffered > 0) {
      let batch = this.batch.subarray(0, this.buffered);
      this.batch = undefined;
      this.buffered = 0;
      try {
        while (batch.length > 0) batch = batch.subarray(writeSync(fd, batch));
      } catch {
        this.send(Buffer.from(batch));
      }
      return;
    }
    this.handOver();
    try { dest.flushSync(); } catch { /* not open yet: written when it is */ }
  }
}

const EMPTY: Uint8Array = new Uint8Array(0);
const PREFIX_HEAD = '{"level":30,"time":';
const PREFIX_TAIL = ',"name":"kernway-waypoint-access","msg":"request","method":';
let prefixMs = -1;
let prefixBytes: Uint8Array = EMPTY;
/**
 * The line up to the method's value, with Date.now() in it: its digits rewritten in place
 * once per millisecond (a number this large is a double, and String() of it is not cheap;
 * no array is made per millisecond). Lines hold copies of it.
 */
function linePrefix(): Uint8Array {
  const t = Date.now();
  if (t !== prefixMs) {
    const at = PREFIX_HEAD.length;
    const d = t - prefixMs;
    // Time moves on by a little: the difference is added to the digits in place.
    if (!(prefixMs > 0 && d > 0 && d < 1e6 && addDigits(prefixBytes, at, prefixBytes.length - PREFIX_TAIL.length - 1, d))) {
      const digits = String(t);
      if (prefixBytes.length !== at + digits.length + PREFIX_TAIL.length) prefixBytes = utf8(PREFIX_HEAD + digits + PREFIX_TAIL);
      else for (let i = 0; i < digits.length; i++) prefixBytes[at + i] = digits.charCodeAt(i);
    }
    prefixMs = t;
  }
  return prefixBytes;
}

/**
 * Adds `d` (a positive integer) to the decimal digits b[first..last]; false when the sum
 * needs more digits (the digits are then left part-written: the caller rewrites them).
 */
function addDigits(b: Uint8Array, first: number, last: number, d: number): boolean {
  let carry = d;
  for (let i = last; carry > 0; i--) {
    if (i < first) return false;
    const x = b[i]! - 48 + (carry % 10);
    carry = Math.floor(carry / 10);
    if (x >= 10) { b[i] = 38 + x; carry++; } else b[i] = 48 + x;
  }
  return true;
}

const GET = utf8('"GET"');

/** Text as UTF-8 bytes in a plain Uint8Array (a Buffer's `length` is a getter call; a plain array's set() copies natively). */
function utf8(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'utf8'));
}

const K_PATH = utf8(',"path":');
const K_UPSTREAM = utf8(',"upstream":"');
const K_BYTES_OUT = utf8(',"bytesOut":');
const K_TRACE_ID = utf8(',"traceId":"');
const K_SPAN_ID = utf8('","spanId":"');
const K_REQUEST_ID = utf8('","requestId":');
const K_USER_AGENT = utf8(',"userAgent":');
const K_ATTEMPTS = utf8(',"attempts":');

/** A copy of b[start, end) (a plain Uint8Array: a line's segment kept for the next lines). */
function kept(b: Uint8Array, start: number, end: number): Uint8Array {
  const k = new Uint8Array(end - start);
  k.set(b.subarray(start, end));
  return k;
}

/** Bytes of a key, one by one (a typed array's bytes are read at a few instructions each; short keys cost less so than a set() call). */
function putBytes(b: Uint8Array, o: number, k: Uint8Array): number {
  for (let i = 0; i < k.length; i++) b[o + i] = k[i]!;
  return o + k.length;
}

/** `n` bytes of `src` from `at` (ids as bytes: hex text, nothing to escape). */
function copyBytes(b: Uint8Array, o: number, src: Uint8Array, at: number, n: number): number {
  for (let i = 0; i < n; i++) b[o + i] = src[at + i]!;
  return o + n;
}

/** A count as String() writes it: digits without a string for integers up to 2^53; anything else through String(). */
function putUint(b: Uint8Array, o: number, n: number): number {
  if (!(n >= 0 && n <= Number.MAX_SAFE_INTEGER && Math.floor(n) === n)) return putLatin1(b, o, String(n));
  let digits = 1;
  for (let p = 10; p <= n; p *= 10) digits++;
  let v = n;
  for (let i = o + digits - 1; i >= o; i--) {
    const q = Math.floor(v / 10);
    b[i] = 48 + (v - q * 10);
    v = q;
  }
  return o + digits;
}

/** ASCII text, byte by byte (keys and numbers). */
function putLatin1(b: Uint8Array, o: number, s: string): number {
  for (let i = 0; i < s.length; i++) b[o + i] = s.charCodeAt(i);
  return o + s.length;
}

/**
 * A duration in milliseconds with at most 3 decimals (as the handler rounds it), written
 * as String() writes it ("12", "0.5", "1.234") from its integer microseconds: no
 * double-to-string conversion per line. Anything else (negative, huge, finer) goes
 * through String().
 */
function putMs(b: Uint8Array, o: number, ms: number): number {
  const us = Math.round(ms * 1000);
  if (!(us >= 0 && us < 1e12) || us / 1000 !== ms) return putLatin1(b, o, String(ms));
  const whole = Math.floor(us / 1000);
  let frac = us - whole * 1000;
  o = putLatin1(b, o, String(whole));
  if (frac === 0) return o;
  b[o++] = 46; // '.'
  let digits = 3;
  while (frac % 10 === 0) { frac /= 10; digits--; }
  for (let d = digits - 1, p = 10 ** d; d >= 0; d--, p /= 10) {
    const q = Math.floor(frac / p);
    b[o++] = 48 + q;
    frac -= q * p;
  }
  return o;
}

/** Bytes of a line besides its strings' characters (keys, punctuation, numbers), with room to spare. */
const LINE_OVERHEAD = 1024;

/** A value written as it is (addresses, ids, flags): byte by byte when ASCII, else as UTF-8. */
function raw(b: Buffer, o: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 127) return o + b.write(s, o);
    b[o + i] = c;
  }
  return o + s.length;
}

/** A JSON string: printable ASCII byte by byte; anything else through JSON.stringify, as UTF-8. */
function json(b: Buffer, o: number, s: string): number {
  b[o] = 34;
  let p = o + 1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 32 || c > 126 || c === 34 || c === 92) return o + b.write(JSON.stringify(s), o);
    b[p++] = c;
  }
  b[p] = 34;
  return p + 1;
}

/** A value as JSON text (for the kept fragments and a line too long for the batch buffer: written as UTF-8). */
function jsonText(s: string): string {
  return JSON.stringify(s);
}

/** The line as one string (for a line too long for the batch buffer). */
function lineText(e: AccessEntry, status: number, durationMs: number): string {
  const s = JSON.stringify;
  const t = e.trace;
  let line = `{"level":30,"time":${Date.now()},"name":"kernway-waypoint-access","msg":"request","method":${s(e.method)},"path":${s(e.path)},"protocol":"${e.protocol}","status":${status},"durationMs":${durationMs},"route":${s(e.route)},"rule":${s(e.rule)},"destination":${s(e.destination)}`;
  if (e.upstream !== undefined) line += `,"upstream":"${e.upstream}"`;
  line += `,"source":${s(e.source)},"sourceAddress":"${e.conn?.peerAddress ?? ''}","parent":${s(e.parent)},"bytesIn":${e.bytesIn},"bytesOut":${e.bytesOut},"traceId":"${t?.traceId ?? ''}","spanId":"${t?.spanId ?? ''}","requestId":${s(e.requestId)}`;
  if (e.userAgent !== undefined) line += `,"userAgent":${s(e.userAgent)}`;
  if (e.reason !== undefined) line += `,"reason":"${e.reason}"`;
  if (e.flags !== undefined) line += `,"responseFlags":"${e.flags}"`;
  return `${line},"attempts":${e.attempts}}\n`;
}
