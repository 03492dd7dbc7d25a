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

const ESCAPE = /[\\\n"]/;

/** A label value as prom-client writes it (backslash, newline and double quote escaped). */
export function escapeLabelValue(s: string): string {
  return ESCAPE.test(s) ? s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : s;
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
 * Spare write buffers: a TextChunks writes into one of CHUNK_BYTES and hands on a copy of
 * what it holds (sized to it), so a scrape's garbage is its text, not a 64 KiB buffer per
 * family or chunk; release() gives the buffer back.
 */
const spare: Buffer[] = [];

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
      if (s.length * 3 > CHUNK_BYTES) { const b = Buffer.from(s, 'utf8'); this.bytes += b.length; this.out(b); return; }
    }
    this.off += (this.buf ??= spare.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES)).write(s, this.off, 'utf8');
  }

  /** A label value, escaped. */
  label(s: string): void {
    this.text(ESCAPE.test(s) ? escapeLabelValue(s) : s);
  }

  /** A sample value; whole numbers are written digit by digit (no string made). */
  value(v: number): void {
    if (Number.isInteger(v) && v >= 0 && v < 1e15) {
      if (this.off + 16 > CHUNK_BYTES) this.flush();
      const b = (this.buf ??= spare.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES));
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

  /** Chunks written elsewhere (a family rendered aside, kept only if it completed), after what is written so far. */
  append(chunks: readonly Buffer[]): void {
    this.flush();
    for (const c of chunks) { this.bytes += c.length; this.out(c); }
  }

  /** True when a chunk is full enough to be handed on at the next pause. */
  get full(): boolean {
    return this.off > CHUNK_BYTES - 4096;
  }

  /** Hands on (a copy of) what is written so far; the buffer is written again. */
  flush(): void {
    if (this.off === 0 || !this.buf) return;
    const b = Buffer.allocUnsafe(this.off);
    this.buf.copy(b, 0, 0, this.off);
    this.bytes += this.off;
    this.off = 0;
    this.out(b);
  }

  /** Flush, and give the write buffer back for the next writer. */
  release(): void {
    this.flush();
    if (this.buf && spare.length < 4) spare.push(this.buf);
    this.buf = undefined;
  }
}

/**
 * What writes itself into TextChunks: a family with many series. The renderer yields
 * between series groups (a cell, a Service) so that the response can drain; a group's
 * lines are written in one go, so they are consistent with each other.
 */
export type MetricsRenderer = (w: TextChunks) => Iterable<unknown> | AsyncIterable<unknown>;

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
    if (!head && !res.write(chunk)) blocked = true;
  });
  const drained = (): Promise<void> => new Promise((resolve) => {
    const done = (): void => { res.off('drain', done); res.off('close', done); resolve(); };
    res.on('drain', done);
    res.on('close', done);
  });
  try {
    const it = render(w);
    for await (const _ of it as AsyncIterable<unknown>) {
      if (res.destroyed) return;
      if (w.full) w.flush();
      if (blocked) { blocked = false; await drained(); if (res.destroyed) return; }
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
  return Buffer.concat(chunks).toString('utf8');
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
