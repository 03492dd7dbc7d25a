/**
 * Access logs: one JSON line per request in pino's format (level, time, name, msg
 * "request", then the fields), written asynchronously in batches through pino's
 * destination (sonic-boom), so that logging does not slow the proxy down: lines are
 * buffered up to 64 KiB and flushed at least once a second (as nginx's
 * `access_log ... buffer=64k flush=1s`); at shutdown the write in flight is waited for and
 * the rest written, so no line is lost on SIGTERM. The line is
 * assembled here rather than by pino's generic serializer: its fields are fixed, and this
 * is on every request's path. Destination: stdout (default), stderr, a file, or off.
 */
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
const FLUSH_EVERY_MS = 1000;
/** At shutdown, how long a write in flight may take before the rest is written anyway. */
const CLOSE_WAIT_MS = 5000;

export class AccessLog {
  private readonly dest: Destination | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private failed = false;
  /** Lines written since the last flush: the timer flushes only when there are some. */
  private pending = false;
  /** The destination is open (a file is opened asynchronously). */
  private open = false;
  private closing: Promise<void> | undefined;

  constructor(where: AccessLogDestination) {
    if (where === 'off') return;
    const dest = pino.destination({ dest: where === 'stdout' ? 1 : where === 'stderr' ? 2 : where.file, sync: false, minLength: BUFFER_BYTES, maxWrite: 2 * BUFFER_BYTES, mkdir: true });
    // A write that fails later (disk full, file removed with its folder) is not worth a crash.
    dest.on('error', (e: Error) => { if (!this.failed) { this.failed = true; process.emitWarning(`access log: ${e.message}; lines are dropped`); } });
    dest.once('ready', () => { this.open = true; });
    this.dest = dest;
    this.timer = setInterval(() => {
      if (!this.pending || !this.open) return;
      this.pending = false;
      try { dest.flush(); } catch { /* busy writing: the next tick takes it */ }
    }, FLUSH_EVERY_MS);
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
    this.pending = true;
    this.dest.write(`${line},"attempts":${r.attempts}}\n`);
  }

  /**
   * At shutdown: stop the flush timer, wait for the write in flight (an asynchronous write
   * of the flush timer), then write what is buffered. Resolves when every line written
   * before it is in the destination.
   */
  close(): Promise<void> {
    return (this.closing ??= this.drain());
  }

  private async drain(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    const dest = this.dest;
    if (!dest || this.failed) return;
    await new Promise<void>((resolve) => {
      const guard = setTimeout(resolve, CLOSE_WAIT_MS);
      guard.unref();
      const done = (): void => { clearTimeout(guard); resolve(); };
      // flush(cb): the callback runs once nothing is in flight (after an fsync, which fails on
      // pipes: ignored); before the file is open, sonic-boom writes and calls it once it is.
      try { dest.flush(done); } catch { done(); }
    });
    this.flush();
  }

  /** Write what is buffered now. */
  flush(): void {
    try { this.dest?.flushSync(); } catch { /* not ready yet: nothing to flush */ }
  }
}
