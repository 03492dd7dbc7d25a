/**
 * Access logs: one JSON line per request in pino's format (level, time, name, msg
 * "request", then the fields), written asynchronously in batches through pino's
 * destination (sonic-boom), so that logging does not slow the proxy down: lines are
 * buffered here up to 64 KiB (a list of lines joined once per batch: sonic-boom's own
 * buffer measures its whole accumulated string on every write) and flushed at least once
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
import { writeSync } from 'node:fs';
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
  private readonly timer: NodeJS.Timeout | undefined;
  private failed = false;
  /** Lines not yet handed to the destination, and their length (characters: bytes for ASCII). */
  private lines: string[] = [];
  private buffered = 0;
  /** Bytes handed to the destination and not yet written (its 'write' events count them down). */
  private inFlight = 0;
  private written: (() => void) | undefined;
  private closing: Promise<void> | undefined;

  /** Other processes write to the same destination: hand lines over in whole-line writes of at most PIPE_BUF. */
  private readonly shared: boolean;

  constructor(where: AccessLogDestination, opts: { sharedDestination?: boolean } = {}) {
    this.shared = opts.sharedDestination === true && typeof where !== 'object';
    if (where === 'off') return;
    // minLength 0: what is handed over is written at once (asynchronously); the batching is here.
    // maxWrite: sonic-boom joins handed-over strings into writes of at most this (a longer one alone).
    const dest = pino.destination({ dest: where === 'stdout' ? 1 : where === 'stderr' ? 2 : where.file, sync: false, minLength: 0, maxWrite: this.shared ? PIPE_BUF : 2 * BUFFER_BYTES, mkdir: true });
    // A write that fails later (disk full, file removed with its folder) is not worth a crash.
    dest.on('error', (e: Error) => { if (!this.failed) { this.failed = true; process.emitWarning(`access log: ${e.message}; lines are dropped`); } });
    dest.on('write', (n: number) => {
      this.inFlight -= n;
      if (this.inFlight <= 0) { this.inFlight = 0; this.written?.(); }
    });
    this.dest = dest;
    this.timer = setInterval(() => this.handOver(), FLUSH_EVERY_MS);
    this.timer.unref();
  }

  get enabled(): boolean {
    return this.dest !== undefined;
  }

  write(r: AccessRecord): void {
    if (!this.dest) return;
    const s = JSON.stringify;
    let line = `{"level":30,"time":${Date.now()},"name":"kernway-waypoint-access","msg":"request","method":${s(r.method)},"path":${s(r.path)},"protocol":"${r.protocol}","status":${r.status},"durationMs":${r.durationMs},"route":${s(r.route)},"rule":${s(r.rule)},"destination":${s(r.destination)}`;
    if (r.upstream !== undefined) line += `,"upstream":"${r.upstream}"`;
    line += `,"source":${s(r.source)},"sourceAddress":"${r.sourceAddress}","parent":${s(r.parent)},"bytesIn":${r.bytesIn},"bytesOut":${r.bytesOut},"traceId":"${r.traceId}","spanId":"${r.spanId}","requestId":${s(r.requestId)}`;
    if (r.userAgent !== undefined) line += `,"userAgent":${s(r.userAgent)}`;
    if (r.reason !== undefined) line += `,"reason":"${r.reason}"`;
    if (r.responseFlags !== undefined) line += `,"responseFlags":"${r.responseFlags}"`;
    line += `,"attempts":${r.attempts}}\n`;
    this.lines.push(line);
    this.buffered += line.length;
    if (this.buffered >= BUFFER_BYTES) this.handOver();
  }

  /** The buffered lines to the destination, as one string (written asynchronously). */
  private handOver(): void {
    if (this.lines.length === 0 || !this.dest) return;
    if (this.shared) return this.handOverPieces();
    const batch = this.lines.length === 1 ? this.lines[0]! : this.lines.join('');
    this.lines = [];
    this.buffered = 0;
    this.inFlight += Buffer.byteLength(batch);
    try { this.dest.write(batch); } catch { /* destroyed at shutdown: nothing more is written */ }
  }

  /** handOver() in whole-line pieces of at most PIPE_BUF bytes (a longer line alone). */
  private handOverPieces(): void {
    const lines = this.lines;
    this.lines = [];
    this.buffered = 0;
    let piece = '';
    let bytes = 0;
    const put = (): void => {
      if (piece === '') return;
      this.inFlight += bytes;
      try { this.dest!.write(piece); } catch { /* destroyed at shutdown */ }
      piece = '';
      bytes = 0;
    };
    for (const line of lines) {
      const n = Buffer.byteLength(line);
      if (bytes + n > PIPE_BUF) put();
      piece += line;
      bytes += n;
    }
    put();
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
    const dest = this.dest;
    if (!dest) return;
    const fd = (dest as unknown as { fd: number }).fd;
    if (this.inFlight === 0 && fd >= 0 && this.lines.length > 0) {
      let batch = Buffer.from(this.lines.join(''));
      this.lines = [];
      this.buffered = 0;
      try {
        while (batch.length > 0) batch = batch.subarray(writeSync(fd, batch));
      } catch {
        this.inFlight += batch.length;
        dest.write(batch.toString());
      }
      return;
    }
    this.handOver();
    try { dest.flushSync(); } catch { /* not open yet: written when it is */ }
  }
}
