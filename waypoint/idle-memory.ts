/**
 * Gives memory back when the waypoint goes idle after load.
 *
 * Under request load V8 grows the young generation (Node.js 24: up to 2 x 64 MiB of
 * semi-spaces, and more while scavenges keep objects alive) and keeps it, empty, for as long
 * as the process lives: with 1,000 HTTPRoutes the waypoint held ~60 MiB above its heap after
 * a burst (docs/waypoint-bench.md, Memory). Keeping the young generation small for good
 * costs ~15 % CPU per request (more scavenges), so instead: a timer every few seconds (not
 * per request) reads how many requests the waypoint has answered (the metrics' own counts,
 * summed) and the young generation's size; when no request was answered or in progress for
 * a whole interval and the young generation is larger than it needs to be, it runs
 * common/heap.ts's compactHeap() — a last-resort GC that shrinks the young generation and
 * compacts the old one. Under load nothing runs; a pause happens once per burst, while
 * idle. Idleness is counted in requests, not in the event loop's utilization: scrapes
 * keep the loop busy and continue when traffic stops. Scrapes alone never trigger it: when
 * /metrics was rendered by prom-client a scrape of 1,000 routes grew the young generation
 * again (to 32 MiB) and compacting after each would have paused 0.2-0.5 s per scrape; the
 * streamed writer (common/metrics-text.ts) now leaves ~2 MiB per scrape (30-40 ms of CPU),
 * nothing worth a pause.
 */
import { compactHeap, youngGenerationBytes } from '../common/heap.js';

export { youngGenerationBytes }; // the tests read it here, beside the compactor

export interface IdleCompactionOptions {
  /** How often the timer looks (ms). */
  intervalMs: number;
  /** Compact only when the young generation has grown beyond this (bytes). */
  youngGenerationBytes: number;
  /** Called after each compaction, with its duration and the young generation's size before and after (bytes). */
  onCompacted?: (c: { ms: number; youngBefore: number; youngAfter: number }) => void;
}

export const DEFAULT_IDLE_COMPACTION: IdleCompactionOptions = {
  intervalMs: 5_000,
  youngGenerationBytes: 4 * 1024 * 1024,
};


/** What the compactor reads of the waypoint's traffic. */
export interface Traffic {
  /** Requests answered so far (any monotonic count of finished requests). */
  answered(): number;
  /** Requests in progress now. */
  inProgress(): number;
}

export class IdleCompactor {
  private readonly opts: IdleCompactionOptions;
  private timer: NodeJS.Timeout | undefined;
  private last = Number.NaN;
  /** answered() when it last compacted: once per burst of requests, not again for scrapes alone. */
  private compactedAt = Number.NaN;
  /** Compactions run so far. */
  count = 0;

  constructor(private readonly traffic: Traffic, opts: Partial<IdleCompactionOptions> = {}) {
    this.opts = { ...DEFAULT_IDLE_COMPACTION, ...opts };
  }

  start(): void {
    if (this.timer) return;
    this.last = this.traffic.answered();
    this.compactedAt = Number.NaN; // the start (reading and compiling the configuration) counts as a burst
    this.timer = setInterval(() => this.check(), this.opts.intervalMs).unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * One look: compacts if requests were answered since the last compaction but none since the last look, none is
   * in progress, and the young generation is large. Returns whether it compacted.
   */
  check(): boolean {
    const answered = this.traffic.answered();
    const idle = answered === this.last && this.traffic.inProgress() === 0;
    this.last = answered;
    if (!idle || answered === this.compactedAt) return false;
    const youngBefore = youngGenerationBytes();
    if (youngBefore <= this.opts.youngGenerationBytes) return false;
    const ms = compactHeap();
    this.compactedAt = answered;
    this.count++;
    this.opts.onCompacted?.({ ms, youngBefore, youngAfter: youngGenerationBytes() });
    return true;
  }
}

