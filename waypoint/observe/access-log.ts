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
import { putLatin1 } from '../proxy/headers.js';

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

  write(r: AccessRecord): void {
    if (!this.enabled) return;
    const ua = r.userAgent;
    // Written straight into the batch buffer (no string per line): at worst 6 bytes per
    // character (\u00XX), and the keys and numbers.
    const chars = r.method.length + r.path.length + r.protocol.length + r.route.length + r.rule.length + r.destination.length + (r.upstream?.length ?? 0)
      + r.source.length + r.sourceAddress.length + r.parent.length + r.traceId.length + r.spanId.length + r.requestId.length + (ua?.length ?? 0)
      + (r.reason?.length ?? 0) + (r.responseFlags?.length ?? 0);
    const most = chars * 6 + LINE_OVERHEAD;
    if (most > BUFFER_BYTES) { this.append(lineOf(r)); return; }
    const b = this.room(most);
    let o = this.buffered;
    o = putLatin1(b, o, '{"level":30,"time":');
    o = putLatin1(b, o, nowText());
    o = putLatin1(b, o, ',"name":"kernway-waypoint-access","msg":"request","method":');
    o = json(b, o, r.method);
    o = putLatin1(b, o, ',"path":');
    o = json(b, o, r.path);
    o = putLatin1(b, o, ',"protocol":"');
    o = raw(b, o, r.protocol);
    o = putLatin1(b, o, '","status":');
    o = putLatin1(b, o, String(r.status));
    o = putLatin1(b, o, ',"durationMs":');
    o = putMs(b, o, r.durationMs);
    o = putLatin1(b, o, ',"route":');
    o = json(b, o, r.route);
    o = putLatin1(b, o, ',"rule":');
    o = json(b, o, r.rule);
    o = putLatin1(b, o, ',"destination":');
    o = json(b, o, r.destination);
    if (r.upstream !== undefined) {
      o = putLatin1(b, o, ',"upstream":"');
      o = raw(b, o, r.upstream);
      b[o++] = 34;
    }
    o = putLatin1(b, o, ',"source":');
    o = json(b, o, r.source);
    o = putLatin1(b, o, ',"sourceAddress":"');
    o = raw(b, o, r.sourceAddress);
    o = putLatin1(b, o, '","parent":');
    o = json(b, o, r.parent);
    o = putLatin1(b, o, ',"bytesIn":');
    o = putLatin1(b, o, String(r.bytesIn));
    o = putLatin1(b, o, ',"bytesOut":');
    o = putLatin1(b, o, String(r.bytesOut));
    o = putLatin1(b, o, ',"traceId":"');
    o = raw(b, o, r.traceId);
    o = putLatin1(b, o, '","spanId":"');
    o = raw(b, o, r.spanId);
    o = putLatin1(b, o, '","requestId":');
    o = json(b, o, r.requestId);
    if (ua !== undefined) {
      o = putLatin1(b, o, ',"userAgent":');
      o = json(b, o, ua);
    }
    if (r.reason !== undefined) {
      o = putLatin1(b, o, ',"reason":"');
      o = raw(b, o, r.reason);
      b[o++] = 34;
    }
    if (r.responseFlags !== undefined) {
      o = putLatin1(b, o, ',"responseFlags":"');
      o = raw(b, o, r.responseFlags);
      b[o++] = 34;
    }
    o = putLatin1(b, o, ',"attempts":');
    o = putLatin1(b, o, String(r.attempts));
    b[o++] = 125; // }
    b[o++] = 10;
    this.buffered = o;
    if (o + LINE_OVERHEAD > b.length) this.handOver();
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
    const b = this.room(most);
    this.buffered += b.write(line, this.buffered);
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

let nowMs = 0;
let nowString = '0';
/** Date.now() as text, converted once per millisecond (a number this large is a double: String() of it is not cheap). */
function nowText(): string {
  const t = Date.now();
  if (t !== nowMs) { nowMs = t; nowString = String(t); }
  return nowString;
}

/**
 * A duration in milliseconds with at most 3 decimals (as the handler rounds it), written
 * as String() writes it ("12", "0.5", "1.234") from its integer microseconds: no
 * double-to-string conversion per line. Anything else (negative, huge, finer) goes
 * through String().
 */
function putMs(b: Buffer, o: number, ms: number): number {
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

/** The line as one string (for a line too long for the batch buffer). */
function lineOf(r: AccessRecord): string {
  const s = JSON.stringify;
  let line = `{"level":30,"time":${Date.now()},"name":"kernway-waypoint-access","msg":"request","method":${s(r.method)},"path":${s(r.path)},"protocol":"${r.protocol}","status":${r.status},"durationMs":${r.durationMs},"route":${s(r.route)},"rule":${s(r.rule)},"destination":${s(r.destination)}`;
  if (r.upstream !== undefined) line += `,"upstream":"${r.upstream}"`;
  line += `,"source":${s(r.source)},"sourceAddress":"${r.sourceAddress}","parent":${s(r.parent)},"bytesIn":${r.bytesIn},"bytesOut":${r.bytesOut},"traceId":"${r.traceId}","spanId":"${r.spanId}","requestId":${s(r.requestId)}`;
  if (r.userAgent !== undefined) line += `,"userAgent":${s(r.userAgent)}`;
  if (r.reason !== undefined) line += `,"reason":"${r.reason}"`;
  if (r.responseFlags !== undefined) line += `,"responseFlags":"${r.responseFlags}"`;
  return `${line},"attempts":${r.attempts}}\n`;
}
