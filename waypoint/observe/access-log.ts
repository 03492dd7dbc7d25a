/**
 * Access logs: one pino JSON line per request (msg "request"), written asynchronously in
 * batches so that logging does not slow the proxy down. Destination: stdout (default),
 * stderr, a file, or off.
 */
import pino, { type Logger } from 'pino';

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
}

export class AccessLog {
  private readonly logger: Logger | undefined;
  private readonly dest: pino.DestinationStream & { flushSync?: () => void; end?: () => void } | undefined;

  constructor(where: AccessLogDestination) {
    if (where === 'off') return;
    const dest = pino.destination({ dest: where === 'stdout' ? 1 : where === 'stderr' ? 2 : where.file, sync: false, minLength: 4096, mkdir: true });
    this.dest = dest;
    this.logger = pino({ name: 'kernway-waypoint-access', base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, dest);
  }

  get enabled(): boolean {
    return this.logger !== undefined;
  }

  write(r: AccessRecord): void {
    this.logger?.info(r, 'request');
  }

  /** Flush what is buffered (at shutdown). */
  flush(): void {
    try { this.dest?.flushSync?.(); } catch { /* not ready yet: nothing to flush */ }
  }
}
