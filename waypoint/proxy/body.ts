/**
 * A response body from a backend as the proxy consumes it: the few members of a Readable
 * it uses ('data', 'end', 'error', 'close', pause, resume, readableEnded, destroy).
 * Both backend clients hand out a LiteBody, which is a queue and four listener slots
 * instead of a stream (no ReadableState, no EventEmitter arrays, no wrapper per `once`):
 * made and dropped on every request, streams used to be a large share of the garbage.
 * The h2c client feeds it from Node's stream, so that the consumer's listeners hang on
 * the LiteBody and not on a stream that outlives scavenges (upstream.ts, H2Exchange).
 */
export interface ResponseBody {
  on(event: 'data', fn: (chunk: Buffer) => void): unknown;
  on(event: 'end' | 'close', fn: () => void): unknown;
  on(event: 'error', fn: (e: Error) => void): unknown;
  once(event: 'end' | 'close', fn: () => void): unknown;
  once(event: 'error', fn: (e: Error) => void): unknown;
  pause(): unknown;
  resume(): unknown;
  destroy(e?: Error): unknown;
  readonly readableEnded: boolean;
}

/** A LiteBody's consumer with methods instead of listeners (no closure per response). */
export interface BodySink {
  bodyData(chunk: Buffer): void;
  bodyEnd(): void;
  bodyError(e: Error): void;
  bodyClose(): void;
}

/** Queued bytes above which push() asks the producer to wait. */
const HIGH_WATER = 64 * 1024;

function flowNT(b: LiteBody): void {
  b.flow();
}

export class LiteBody implements ResponseBody {
  private queue: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private endEmitted = false;
  private closed = false;
  private error: Error | undefined;
  private paused = false;
  private flowing = false;
  private scheduled = false;
  /** push() said false: the producer waits for resumeBody(). */
  private waiting = false;
  private onData: ((c: Buffer) => void) | undefined;
  private onEnd: (() => void) | undefined;
  private onError: ((e: Error) => void) | undefined;
  private onClose: (() => void) | undefined;
  private sink: BodySink | undefined;

  /** `producer.resumeBody()`: the consumer wants more after push() returned false. */
  constructor(private readonly producer: { resumeBody(): void }) {}

  get readableEnded(): boolean {
    return this.endEmitted;
  }

  on(event: 'data' | 'end' | 'close' | 'error', fn: ((c: Buffer) => void) | (() => void) | ((e: Error) => void)): this {
    if (this.closed) {
      // Over already (the failure may come before the consumer listens): told on the next tick.
      if (event === 'close') process.nextTick(fn as () => void);
      else if (event === 'error' && this.error) process.nextTick(fn as (e: Error) => void, this.error);
      return this;
    }
    switch (event) {
      case 'data':
        this.onData = chain1(this.onData, fn as (c: Buffer) => void);
        if (!this.paused) { this.flowing = true; this.schedule(); }
        break;
      case 'end': this.onEnd = chain0(this.onEnd, fn as () => void); break;
      case 'close': this.onClose = chain0(this.onClose, fn as () => void); break;
      default: this.onError = chain1(this.onError, fn as (e: Error) => void);
    }
    return this;
  }

  /**
   * The consumer, as one object: it gets the chunks as they are parsed (synchronously when
   * nothing is queued), then the end; chunks queued before it came follow on the next tick.
   */
  attach(sink: BodySink): void {
    if (this.closed) {
      const e = this.error;
      process.nextTick(() => { if (e) sink.bodyError(e); sink.bodyClose(); });
      return;
    }
    this.sink = sink;
    if (this.paused) return;
    this.flowing = true;
    if (this.queue.length > 0 || this.ended) this.schedule();
  }

  once(event: 'end' | 'close' | 'error', fn: (() => void) | ((e: Error) => void)): this {
    return this.on(event, fn);
  }

  pause(): this {
    this.paused = true;
    return this;
  }

  resume(): this {
    this.paused = false;
    this.flowing = true;
    this.schedule();
    return this;
  }

  /** Producer: a chunk (false: wait until resumeBody()), or null at the end. */
  push(b: Buffer | null): boolean {
    if (this.closed) return false;
    if (b === null) {
      this.ended = true;
      if (this.queued === 0 && this.flowing && !this.paused) {
        if (this.sink !== undefined && !this.scheduled && !this.endEmitted) this.emitEnd();
        else this.schedule();
      }
      return false;
    }
    if (b.length === 0) return true;
    if (this.flowing && !this.paused && this.queued === 0 && !this.scheduled) {
      if (this.sink !== undefined) { this.sink.bodyData(b); return true; }
      if (this.onData) { this.onData(b); return true; }
    }
    this.queue.push(b);
    this.queued += b.length;
    if (this.queued < HIGH_WATER) return true;
    this.waiting = true;
    return false;
  }

  destroy(e?: Error): this {
    if (this.closed) return this;
    this.closed = true;
    this.error = e;
    this.queue = [];
    this.queued = 0;
    const sink = this.sink;
    if (sink !== undefined) {
      if (e) sink.bodyError(e);
      sink.bodyClose();
      return this;
    }
    if (e) this.onError?.(e);
    this.onClose?.();
    return this;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    process.nextTick(flowNT, this);
  }

  /** Deliver what is queued while flowing, then 'end' and 'close' once the producer is done. */
  flow(): void {
    this.scheduled = false;
    if (this.closed) return;
    while (this.queue.length > 0 && !this.paused && this.flowing) {
      const c = this.queue.shift()!;
      this.queued -= c.length;
      if (this.sink !== undefined) this.sink.bodyData(c);
      else this.onData?.(c);
      if (this.closed) return;
    }
    if (this.waiting && this.queued < HIGH_WATER) { this.waiting = false; this.producer.resumeBody(); }
    if (this.queue.length === 0 && this.ended && !this.endEmitted && this.flowing && !this.paused) this.emitEnd();
  }

  private emitEnd(): void {
    this.endEmitted = true;
    const sink = this.sink;
    if (sink !== undefined) {
      sink.bodyEnd();
      if (!this.closed) { this.closed = true; sink.bodyClose(); }
      return;
    }
    this.onEnd?.();
    if (!this.closed) { this.closed = true; this.onClose?.(); }
  }
}

function chain0(a: (() => void) | undefined, b: () => void): () => void {
  return a ? (): void => { a(); b(); } : b;
}

function chain1<T>(a: ((x: T) => void) | undefined, b: (x: T) => void): (x: T) => void {
  return a ? (x: T): void => { a(x); b(x); } : b;
}
