/**
 * Access logs: one JSON line per request in pino's format (level, time, name, msg
 * "request", then the fields), written asynchronously in batches through pino's
 * destination (sonic-boom, in its buffer mode), so that logging does not slow the proxy
 * down: each line is copied at once into a 64 KiB batch buffer (no string lives on until
 * the batch is written; sonic-boom's string mode measured its whole accumulated string on
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
    // One string per line, copied into the batch buffer by one native call (byte-by-byte
    // copying in JS measured 4-5 times slower); printable-ASCII values are quoted as they
    // are, anything else goes through JSON.stringify (and the line is then written as UTF-8).
    ascii = true;
    const line = lineOf(r);
    const most = ascii ? line.length : line.length * 3;
    if (most > BUFFER_BYTES) {
      this.handOver(); // the lines before it go first
      this.send(Buffer.from(line));
      return;
    }
    const b = this.room(most);
    this.buffered += ascii ? b.write(line, this.buffered, 'latin1') : b.write(line, this.buffered);
    if (this.buffered + LINE_OVERHEAD > b.length) this.handOver();
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

/** Bytes of a line besides its strings' characters (keys, punctuation, numbers), with room to spare. */
const LINE_OVERHEAD = 1024;


/** Whether the line being built is ASCII only (it is then written as latin1, else as UTF-8). */
let ascii = true;
/** Printable ASCII without '"' and '\\': a JSON string as it is. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** A JSON string: printable ASCII quoted as it is, anything else through JSON.stringify. */
function j(s: string): string {
  if (PLAIN.test(s)) return `"${s}"`;
  ascii = false;
  return JSON.stringify(s);
}

let timeMs = 0;
let timeText = '0';
/** Date.now() as text, made once per millisecond (a number this large is converted from a double each time). */
function now(): string {
  const t = Date.now();
  if (t !== timeMs) { timeMs = t; timeText = String(t); }
  return timeText;
}

/** The line (pino's format, the fields in a fixed order). */
function lineOf(r: AccessRecord): string {
  let line = `{"level":30,"time":${now()},"name":"kernway-waypoint-access","msg":"request","method":${j(r.method)},"path":${j(r.path)},"protocol":${j(r.protocol)},"status":${r.status},"durationMs":${r.durationMs},"route":${j(r.route)},"rule":${j(r.rule)},"destination":${j(r.destination)}`;
  if (r.upstream !== undefined) line += `,"upstream":${j(r.upstream)}`;
  line += `,"source":${j(r.source)},"sourceAddress":${j(r.sourceAddress)},"parent":${j(r.parent)},"bytesIn":${r.bytesIn},"bytesOut":${r.bytesOut},"traceId":${j(r.traceId)},"spanId":${j(r.spanId)},"requestId":${j(r.requestId)}`;
  if (r.userAgent !== undefined) line += `,"userAgent":${j(r.userAgent)}`;
  if (r.reason !== undefined) line += `,"reason":${j(r.reason)}`;
  if (r.responseFlags !== undefined) line += `,"responseFlags":${j(r.responseFlags)}`;
  return `${line},"attempts":${r.attempts}}\n`;
}
