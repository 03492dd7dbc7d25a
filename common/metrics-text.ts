/**
 * Prometheus text (format 0.0.4) written straight into fixed-size chunks, for /metrics
 * endpoints with tens of thousands of series (the agent's per-Service series, the
 * waypoint's request cells): no string of the whole text, no object per series.
 * prom-client stays the registry and renders the ordinary metrics; the large families
 * write themselves here, byte for byte as prom-client would (Registry.metrics(): families
 * joined by a blank line, `# HELP` and `# TYPE` once per family, label values escaped,
 * values as `${v}` with NaN as `Nan` and ±Inf as `+Inf`/`-Inf`).
 *
 *   const w = new TextChunks((chunk) => res.write(chunk));
 *   w.family('kernway_x_total', 'help', 'counter');
 *   w.text('kernway_x_total{service="'); w.label(name); w.text('"} '); w.value(n); w.text('\n');
 *   w.end();
 *
 * A chunk is handed on when full (CHUNK_BYTES); writeMetricsText() below drives a
 * renderer with the response's backpressure (it waits for 'drain' between chunks).
 */
import type { ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';

/** Size of one chunk of text handed to the response. */
export const CHUNK_BYTES = 64 * 1024;

/** Whether a label value needs escaping (backslash, newline, double quote): a loop, not a RegExp test (which allocates ~70 bytes a call where V8's top tier is left out). */
function needsEscape(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 92 || c === 10 || c === 34) return true;
  }
  return false;
}

/**
 * Buffer's own UTF-8 writer. buf.write(s, offset, 'utf8') checks its arguments through
 * node's stack-hiding validators, each call a rest-parameter array: ~80 bytes of garbage per
 * call where V8's top tier is left out (the agent: common/heap.ts leaveOutTurbofanAndSparkplug), about
 * 14 MiB per scrape of 10,000 Services (docs/kubernetes-api.md). utf8Write writes what fits
 * and allocates nothing; `text` makes room first. (As waypoint/observe/access-log.ts.)
 */
type Utf8Buffer = Buffer & { utf8Write(s: string, offset: number): number };

/** A label value as prom-client writes it (backslash, newline and double quote escaped). */
export function escapeLabelValue(s: string): string {
  return needsEscape(s) ? s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : s;
}

/** A metric name or HELP text as prom-client writes it (backslash and newline escaped). */
export function escapeHelp(s: string): string {
  return s.includes('\\') || s.includes('\n') ? s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n') : s;
}

/** A sample value as prom-client writes it. */
export function valueText(v: number): string {
  if (Number.isNaN(v)) return 'Nan';
  if (!Number.isFinite(v)) return v < 0 ? '-Inf' : '+Inf';
  return `${v}`;
}

/**
 * Write buffers of CHUNK_BYTES, reused: a chunk handed on is a view of one, and comes
 * back here (recycle) once the socket has taken it (res.write's callback), so a scrape
 * allocates no buffer per chunk and leaves no 64 KiB blocks for the GC to find. At most
 * POOLED are kept (1 MiB); a slow reader's extra chunks are left to the GC.
 */
const POOLED = 16;
const pool: ArrayBuffer[] = [];
const ours = new WeakSet<ArrayBuffer>();

function takeBuffer(): Buffer {
  const ab = pool.pop();
  if (ab) return Buffer.from(ab, 0, CHUNK_BYTES);
  const b = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  ours.add(b.buffer as ArrayBuffer);
  return b;
}

/**
 * Frees the pooled buffers now (each is detached: ArrayBuffer.transfer(0) lets go of its memory
 * at once, without waiting for a GC) and returns how many. For a process whose RSS between two
 * scrapes counts: the agent calls it after each scrape (agent/datapath/memory.ts), where the
 * pool otherwise kept 11 of its 16 buffers, 0.7 MiB written and resident, after scrapes of
 * 10,000 Services' series. A buffer is in the pool only once nothing writes or reads it; the
 * next scrape allocates new ones.
 */
export function releasePooledBuffers(): number {
  const n = pool.length;
  for (const ab of pool.splice(0)) (ab as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(0);
  return n;
}

/** How many buffers the pool holds (tests). */
export function pooledBuffers(): number {
  return pool.length;
}

/** A chunk TextChunks handed on is no longer needed (written to the socket, or dropped): its buffer is written again. */
export function recycle(chunk: Buffer): void {
  const ab = chunk.buffer as ArrayBuffer;
  if (ours.has(ab) && pool.length < POOLED && !pool.includes(ab)) pool.push(ab);
}

export class TextChunks {
  private buf: Buffer | undefined;
  private off = 0;
  private families = 0;
  /** Bytes handed on so far. */
  bytes = 0;

  constructor(private readonly out: (chunk: Buffer) => void) {}

  /** Text as is (already escaped where it needs to be). */
  text(s: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    if (this.off + s.length * 3 > CHUNK_BYTES) {
      this.flush();
      if (s.length * 3 > CHUNK_BYTES) { this.handOn(Buffer.from(s, 'utf8')); return; }
    }
    this.off += ((this.buf ??= takeBuffer()) as Utf8Buffer).utf8Write(s, this.off);
  }

  /** A label value, escaped. */
  label(s: string): void {
    this.text(escapeLabelValue(s));
  }

  /** A sample value; whole numbers are written digit by digit (no string made). */
  value(v: number): void {
    if (Number.isInteger(v) && v >= 0 && v < 1e15) {
      if (this.off + 16 > CHUNK_BYTES) this.flush();
      const b = (this.buf ??= takeBuffer());
      if (v < 10) { b[this.off++] = 48 + v; return; }
      let digits = 1;
      for (let x = v; x >= 10; x = Math.floor(x / 10)) digits++;
      let o = this.off + digits;
      this.off = o;
      for (let x = v; o > this.off - digits; x = Math.floor(x / 10)) b[--o] = 48 + (x % 10);
      return;
    }
    this.text(valueText(v));
  }

  /**
   * The start of a family: the blank line that separates it from the previous one, then
   * `# HELP` and `# TYPE` (name and help escaped as prom-client does).
   */
  family(name: string, help: string, type: string): void {
    this.startFamily();
    this.text(`# HELP ${escapeHelp(name)} ${escapeHelp(help)}\n# TYPE ${escapeHelp(name)} ${type}\n`);
  }

  /** A family prom-client rendered (getSingleMetricAsString: no final newline). */
  rendered(family: string): void {
    this.startFamily();
    this.text(family);
    this.text('\n');
  }

  /** The blank line before every family but the first (prom-client joins them with one). */
  startFamily(): void {
    if (this.families++ > 0) this.text('\n');
  }


  /** True when a chunk is full enough to be handed on at the next pause. */
  get full(): boolean {
    return this.off > CHUNK_BYTES - 4096;
  }

  /** Hands on what is written so far (a view of the buffer: recycle() it once used); the next write takes another buffer. */
  flush(): void {
    if (this.off === 0 || !this.buf) return;
    const b = this.buf.subarray(0, this.off);
    this.buf = undefined;
    this.off = 0;
    this.handOn(b);
  }

  /** A chunk goes on, or is held while a tentative family is written. */
  private handOn(b: Buffer): void {
    if (this.held) { this.held.push(b); return; }
    this.bytes += b.length;
    this.out(b);
  }

  /** While a tentative family is written: its full chunks, kept until commit() or dropped by rollback(). */
  private held: Buffer[] | undefined;
  private markOff = 0;
  private markFamilies = 0;

  /**
   * Start a family that may be dropped (a reader that can fail half-way): what follows is
   * held back until commit(), and rollback() takes it all back.
   */
  tentative(): void {
    if (this.held) throw new Error('TextChunks: tentative() inside another');
    this.held = [];
    this.markOff = this.off;
    this.markFamilies = this.families;
  }

  commit(): void {
    const held = this.held;
    this.held = undefined;
    for (const c of held ?? []) { this.bytes += c.length; this.out(c); }
  }

  rollback(): void {
    const held = this.held;
    this.held = undefined;
    if (!held) return;
    this.families = this.markFamilies;
    if (held.length === 0) { this.off = this.markOff; return; }
    // The first held chunk starts with what was written before the mark: that part goes on.
    const first = held[0]!;
    for (let i = 1; i < held.length; i++) recycle(held[i]!);
    this.off = 0;
    if (this.markOff > 0) { this.bytes += this.markOff; this.out(first.subarray(0, this.markOff)); } else recycle(first);
  }

  /** Flush, and give an unused write buffer back. */
  release(): void {
    this.flush();
    if (this.buf) recycle(this.buf);
    this.buf = undefined;
  }
}

/**
 * What writes itself into TextChunks: a family with many series. The renderer yields
 * between series groups (a cell, a Service) so that the response can drain; a group's
 * lines are written in one go, so they are consistent with each other.
 */
export type MetricsRenderer = (w: TextChunks) => Iterable<unknown> | AsyncIterable<unknown>;

/** How long a scrape's render runs before letting the event loop take a turn. */
export const SCRAPE_TURN_MS = 5;

/**
 * Serve the text that `render` writes as the response body, in chunks (chunked transfer
 * encoding), waiting for 'drain' whenever the socket is full. A failure before the first
 * chunk is a 500; after it, the response is cut off (Prometheus then sees a broken body
 * and counts the scrape as failed, rather than getting part of the series as if complete).
 */
export async function writeMetricsText(res: ServerResponse, contentType: string, head: boolean, render: MetricsRenderer): Promise<void> {
  let started = false;
  let blocked = false;
  const begin = (): void => {
    if (started) return;
    started = true;
    res.writeHead(200, { 'content-type': contentType });
  };
  const w = new TextChunks((chunk) => {
    begin();
    if (head) recycle(chunk);
    else if (!res.write(chunk, () => recycle(chunk))) blocked = true;
  });
  const drained = (): Promise<void> => new Promise((resolve) => {
    const done = (): void => { res.off('drain', done); res.off('close', done); resolve(); };
    res.on('drain', done);
    res.on('close', done);
  });
  try {
    const it = render(w);
    // The render's steps run as microtasks: without a turn of the event loop now and then, a
    // scrape of 10,000 Services' families would hold everything else (a watch event, a
    // reconcile) for the whole render.
    let turn = performance.now();
    for await (const _ of it as AsyncIterable<unknown>) {
      if (res.destroyed) return;
      if (w.full) w.flush();
      if (blocked) { blocked = false; await drained(); if (res.destroyed) return; turn = performance.now(); }
      else if (performance.now() - turn >= SCRAPE_TURN_MS) {
        await new Promise((r) => setImmediate(r));
        if (res.destroyed) return;
        turn = performance.now();
      }
    }
    w.release();
    begin();
    res.end();
  } catch (e) {
    if (!started) {
      const body = `${(e as Error).message}\n`;
      res.writeHead(500, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(head ? undefined : body);
    } else {
      res.destroy(e as Error);
    }
  }
}

/** The whole text as one string (tests, callers that want a string). */
export async function metricsTextOf(render: MetricsRenderer): Promise<string> {
  const chunks: Buffer[] = [];
  const w = new TextChunks((c) => chunks.push(c));
  for await (const _ of render(w) as AsyncIterable<unknown>) { /* drain */ }
  w.release();
  const text = Buffer.concat(chunks).toString('utf8');
  for (const c of chunks) recycle(c);
  return text;
}

/** A metric that writes its own text (RequestFamily in the waypoint). */
export interface WritesText { writeText(w: TextChunks): Iterable<unknown> }

/**
 * A prom-client registry's text, in its order: prom-client renders each family
 * (getSingleMetricAsString), except those that write their own text. The same text as
 * `registry.metrics()` (no default labels: kernway's registries have none).
 */
export async function* registryText(registry: Pick<Registry, 'getMetricsAsArray' | 'getSingleMetricAsString'>, w: TextChunks): AsyncGenerator<unknown> {
  for (const m of registry.getMetricsAsArray()) {
    const self = m as unknown as Partial<WritesText>;
    if (typeof self.writeText === 'function') yield* self.writeText(w);
    else { w.rendered(await registry.getSingleMetricAsString(m.name)); yield; }
  }
}
