/**
 * The load of bench/chaos, run inside lab pods (`node dist/bench/chaos/traffic.js server|client CONFIG`):
 *
 *   server  in the server pod: a one-shot TCP service (read "ping\n", answer "pong\n", close),
 *           a TCP echo for long-lived streams, and an HTTP/1.1 server answering `ok <path>`.
 *   client  in the client pod, until told to stop:
 *           - new connections at a steady rate to the one-shot service's ClusterIP (balanced by
 *             the agent's connect() program);
 *           - long-lived streams to the echo's ClusterIP (same node: accelerated by sockmap)
 *             carrying a seeded byte sequence; every byte that comes back is compared with the
 *             byte sent at that position;
 *           - HTTP/1.1 keep-alive requests to the waypoint Service's ClusterIP (mesh port), each
 *             connection opened with a PROXY v2 header naming the target Service, as the
 *             kernel hand-off will. A request that finds its reused keep-alive connection closed
 *             before any byte of the answer is sent again once on a new connection, as HTTP
 *             clients do for idempotent requests (RFC 9112 §9.3.1); it is counted as retried.
 *
 * The client answers each line on stdin with one JSON line of cumulative counters
 * ("snap"), and on "stop" stops the load, lets the streams catch up, and prints the last.
 */
import http from 'node:http';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { encodeProxyV2 } from '../../waypoint/proxy/proxy-protocol.js';

export interface ServerConfig { oneShotPort: number; echoPort: number; httpPort: number }

export interface ClientConfig {
  seed: number;
  conn: { host: string; port: number; perSecond: number; timeoutMs: number };
  /**
   * Long-lived streams, each sending up to bytesPerSecond with at most windowBytes not yet
   * echoed. greeting: send one byte and wait for it to come back before streaming, as a
   * request/response protocol starts; the sockmap accelerator redirects a direction only
   * once its reader has read (docs/sockmap.md, rule 5), so a stream written from connect()
   * on, without that, stays on the TCP/IP stack.
   */
  streams: { host: string; port: number; count: number; bytesPerSecond: number; windowBytes: number; greeting: boolean };
  http: { host: string; port: number; source: string; target: { address: string; port: number }; connections: number; perSecond: number; timeoutMs: number };
}

/** t: when it failed; start: when the connection or request it belongs to started (ms since the epoch). */
export interface Failure { t: number; start: number; kind: 'conn' | 'stream' | 'http'; why: string; code?: string }

export interface Counters {
  t: number;
  /** slow: connections that succeeded but took more than a second (a SYN sent again, a starved process). */
  conn: { attempted: number; ok: number; failed: number; slow: number; maxMs: number };
  /** lost: bytes in flight on a stream that broke (never echoed). */
  stream: { sent: number; received: number; corrupted: number; lost: number; broken: number; open: number };
  http: { sent: number; ok: number; retried: number; failed: number; byStatus: Record<string, number> };
  /** The failures (oldest first, at most 100,000). */
  failures: Failure[];
}

// ---------------------------------------------------------------- the byte sequence

const PERIOD = 1_048_573; // prime: a loss or repeat of any length shows

/** The byte a stream sends at position i: a seeded block, varied per period. */
export class Sequence {
  private readonly block = Buffer.alloc(PERIOD);
  constructor(seed: number) {
    let x = (seed >>> 0) || 0x9e3779b9;
    for (let i = 0; i < PERIOD; i++) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      this.block[i] = x & 0xff;
    }
  }
  at(i: number): number {
    return this.block[i % PERIOD]! ^ (Math.floor(i / PERIOD) & 0xff);
  }
  /** Bytes [from, from+n). */
  slice(from: number, n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let k = 0;
    while (k < n) {
      const i = from + k;
      const off = i % PERIOD;
      const run = Math.min(n - k, PERIOD - off);
      this.block.copy(out, k, off, off + run);
      const x = Math.floor(i / PERIOD) & 0xff;
      if (x !== 0) for (let j = k; j < k + run; j++) out[j] = out[j]! ^ x;
      k += run;
    }
    return out;
  }
  /** Bytes of `b` that differ from the sequence at `from`. */
  mismatches(b: Buffer, from: number): number {
    const want = this.slice(from, b.length);
    if (want.equals(b)) return 0;
    let bad = 0;
    for (let k = 0; k < b.length; k++) if (b[k] !== want[k]) bad++;
    return bad;
  }
}

// ---------------------------------------------------------------- server

export function runServer(cfg: ServerConfig): void {
  net.createServer((s) => {
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => { got += d; if (got.includes('\n')) s.end('pong\n'); });
    s.on('error', () => s.destroy());
  }).listen(cfg.oneShotPort, '0.0.0.0');
  net.createServer((s) => {
    s.setNoDelay(true);
    s.pipe(s);
    s.on('error', () => s.destroy());
  }).listen(cfg.echoPort, '0.0.0.0');
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = `ok ${req.url ?? ''}\n`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  srv.keepAliveTimeout = 120_000;
  srv.listen(cfg.httpPort, '0.0.0.0');
}

// ---------------------------------------------------------------- client

/**
 * Runs `fn` once the event loop has also polled for I/O: when this process was starved of
 * CPU (a busy machine), a timer and the answer it waits for are both due, and timers run
 * first; without this, an answer that had arrived would count as a timeout.
 */
function lateSafe(fn: () => void): void {
  setImmediate(() => setImmediate(fn));
}

class Load {
  readonly c: Counters = {
    t: 0,
    conn: { attempted: 0, ok: 0, failed: 0, slow: 0, maxMs: 0 },
    stream: { sent: 0, received: 0, corrupted: 0, lost: 0, broken: 0, open: 0 },
    http: { sent: 0, ok: 0, retried: 0, failed: 0, byStatus: {} },
    failures: [],
  };
  private stopping = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly streams: Array<{ sock: net.Socket; sent: number; received: number }> = [];

  constructor(private readonly cfg: ClientConfig) {}

  private pending = 0;
  private readonly workers: Promise<void>[] = [];

  fail(kind: Failure['kind'], why: string, start = Date.now(), code?: string): void {
    if (this.c.failures.length < 100_000) this.c.failures.push({ t: Date.now(), start, kind, why, ...(code ? { code } : {}) });
  }

  start(): void {
    this.startConnections();
    for (let i = 0; i < this.cfg.streams.count; i++) this.openStream(i);
    for (let i = 0; i < this.cfg.http.connections; i++) this.workers.push(this.httpWorker(i));
  }

  // New connections at a steady rate: connect, one line each way, close.
  private startConnections(): void {
    const { host, port, perSecond, timeoutMs } = this.cfg.conn;
    const t0 = Date.now();
    let launched = 0;
    const tick = (): void => {
      const due = Math.floor(((Date.now() - t0) * perSecond) / 1000);
      for (; launched < due && !this.stopping; launched++) this.oneConnection(host, port, timeoutMs);
    };
    this.timers.push(setInterval(tick, 5));
  }

  private oneConnection(host: string, port: number, timeoutMs: number): void {
    this.c.conn.attempted++;
    this.pending++;
    const start = Date.now();
    let done = false;
    let got = '';
    const s = net.connect({ host, port });
    const finish = (why: string | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      this.pending--;
      const ms = Date.now() - start;
      if (why === undefined) {
        this.c.conn.ok++;
        if (ms > 1000) this.c.conn.slow++;
        if (ms > this.c.conn.maxMs) this.c.conn.maxMs = ms;
      } else { this.c.conn.failed++; this.fail('conn', why, start); }
    };
    const timer = setTimeout(() => lateSafe(() => finish(`timeout after ${timeoutMs} ms`)), timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write('ping\n'));
    s.on('data', (d: string) => { got += d; });
    s.on('end', () => finish(got === 'pong\n' ? undefined : `answer ${JSON.stringify(got)}`));
    s.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
  }

  // Long-lived streams: a window of bytes in flight, every byte checked on its way back.
  private openStream(i: number): void {
    const { host, port, bytesPerSecond, windowBytes } = this.cfg.streams;
    const seq = new Sequence(this.cfg.seed * 1000 + i + 1);
    const sock = net.connect({ host, port });
    const st = { sock, sent: 0, received: 0 };
    this.streams.push(st);
    this.c.stream.open++;
    let budget = 0;
    let last = Date.now();
    let over = false;
    const pump = (): void => {
      // One byte each way first (the greeting): see `greeting` in ClientConfig.
      if (over || this.stopping || sock.destroyed || sock.connecting || (this.cfg.streams.greeting && st.received < 1)) return;
      const now = Date.now();
      budget = Math.min(budget + ((now - last) * bytesPerSecond) / 1000, windowBytes);
      last = now;
      const n = Math.floor(Math.min(budget, windowBytes - (st.sent - st.received)));
      if (n < 1024) return;
      budget -= n;
      const b = seq.slice(st.sent, n);
      st.sent += n;
      this.c.stream.sent += n;
      sock.write(b);
    };
    if (this.cfg.streams.greeting) {
      sock.once('connect', () => { st.sent = 1; this.c.stream.sent += 1; sock.write(seq.slice(0, 1)); });
    }
    const timer = setInterval(pump, 10);
    this.timers.push(timer);
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => {
      const bad = seq.mismatches(d, st.received);
      if (bad > 0) { this.c.stream.corrupted += bad; this.fail('stream', `stream ${i}: ${bad} of ${d.length} bytes at offset ${st.received} differ`); }
      st.received += d.length;
      this.c.stream.received += d.length;
    });
    const broken = (why: string): void => {
      if (over) return;
      over = true;
      clearInterval(timer);
      sock.destroy();
      if (this.stopping) return;
      this.c.stream.broken++;
      this.c.stream.open--;
      this.fail('stream', `stream ${i}: ${why} after ${st.received} of ${st.sent} bytes`);
      this.c.stream.lost += st.sent - st.received;
      const k = this.streams.indexOf(st);
      if (k >= 0) this.streams.splice(k, 1);
      setTimeout(() => { if (!this.stopping) this.openStream(i); }, 100);
    };
    sock.on('error', (e: NodeJS.ErrnoException) => broken(e.code ?? e.message));
    sock.on('end', () => broken('closed by the peer'));
  }

  // HTTP/1.1 through the waypoint's mesh port.
  private async httpWorker(w: number): Promise<void> {
    const h = this.cfg.http;
    const every = (1000 * h.connections) / h.perSecond;
    let conn: HttpConn | undefined;
    let n = 0;
    let next = Date.now();
    while (!this.stopping) {
      const path = `/r/${w}/${n++}`;
      const start = Date.now();
      this.c.http.sent++;
      for (let attempt = 0; ; attempt++) {
        const fresh = conn === undefined;
        if (!conn) conn = new HttpConn(h);
        const r = await conn.get(path, h.timeoutMs);
        if (r.kind === 'response') {
          if (!r.keepAlive) { conn.close(); conn = undefined; }
          if (r.status === 200 && r.body === `ok ${path}\n`) { this.c.http.ok++; break; }
          const key = r.status === 200 ? 'bad body' : String(r.status);
          this.c.http.failed++;
          this.c.http.byStatus[key] = (this.c.http.byStatus[key] ?? 0) + 1;
          this.fail('http', `${path}: ${key}`, start, key);
          break;
        }
        conn.close();
        conn = undefined;
        if (!fresh && !r.anyByte && attempt === 0) { this.c.http.retried++; continue; }
        this.c.http.failed++;
        this.c.http.byStatus[r.why] = (this.c.http.byStatus[r.why] ?? 0) + 1;
        this.fail('http', `${path}: ${r.why}${fresh ? '' : ' (reused connection)'}`, start, r.why);
        break;
      }
      next += every;
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      else next = Date.now();
    }
    conn?.close();
  }

  /** The counters now (conn.maxMs: since the last snapshot). */
  snapshot(): Counters {
    this.c.t = Date.now();
    const out = JSON.parse(JSON.stringify(this.c)) as Counters;
    this.c.conn.maxMs = 0;
    return out;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    // Connections and requests under way finish (or time out) and count.
    await Promise.all(this.workers);
    while (this.pending > 0) await new Promise((r) => setTimeout(r, 20));
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && this.streams.some((s) => s.received < s.sent && !s.sock.destroyed)) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.streams) {
      if (s.received < s.sent) { this.c.stream.lost += s.sent - s.received; this.fail('stream', `${s.sent - s.received} bytes sent never came back`); }
      s.sock.destroy();
    }
  }
}

type HttpResult =
  | { kind: 'response'; status: number; body: string; keepAlive: boolean }
  | { kind: 'error'; why: string; anyByte: boolean };

/** One keep-alive connection to the waypoint's mesh port, one request at a time. */
class HttpConn {
  private readonly sock: net.Socket;
  private buf = Buffer.alloc(0);
  private waiter: ((r: HttpResult) => void) | undefined;
  private dead: string | undefined;

  constructor(h: ClientConfig['http']) {
    this.sock = net.connect({ host: h.host, port: h.port });
    this.sock.setNoDelay(true);
    this.sock.write(encodeProxyV2({ address: h.source, port: 40000 }, h.target));
    this.sock.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.parse(); });
    this.sock.on('error', (e: NodeJS.ErrnoException) => this.end(e.code ?? e.message));
    this.sock.on('close', () => this.end('closed before the answer'));
  }

  private end(why: string): void {
    if (this.dead === undefined) this.dead = why;
    const w = this.waiter;
    this.waiter = undefined;
    w?.({ kind: 'error', why: this.dead, anyByte: this.buf.length > 0 });
  }

  private parse(): void {
    if (!this.waiter) return;
    const head = this.buf.indexOf('\r\n\r\n');
    if (head < 0) return;
    const lines = this.buf.subarray(0, head).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!)?.[1] ?? 0);
    let length = 0;
    let keepAlive = true;
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      const k = l.slice(0, i).trim().toLowerCase();
      const v = l.slice(i + 1).trim().toLowerCase();
      if (k === 'content-length') length = Number(v);
      if (k === 'connection' && v.includes('close')) keepAlive = false;
    }
    if (this.buf.length < head + 4 + length) return;
    const body = this.buf.subarray(head + 4, head + 4 + length).toString('utf8');
    this.buf = this.buf.subarray(head + 4 + length);
    const w = this.waiter;
    this.waiter = undefined;
    w({ kind: 'response', status, body, keepAlive });
  }

  get(path: string, timeoutMs: number): Promise<HttpResult> {
    if (this.dead !== undefined) return Promise.resolve({ kind: 'error', why: this.dead, anyByte: false });
    return new Promise((resolve) => {
      const timer = setTimeout(() => lateSafe(() => {
        if (this.waiter !== waiter) return;
        this.waiter = undefined;
        resolve({ kind: 'error', why: `timeout after ${timeoutMs} ms`, anyByte: true });
      }), timeoutMs);
      const waiter = (r: HttpResult): void => { clearTimeout(timer); resolve(r); };
      this.waiter = waiter;
      this.sock.write(`GET ${path} HTTP/1.1\r\nhost: echo\r\n\r\n`);
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

function runClient(cfg: ClientConfig): void {
  const load = new Load(cfg);
  load.start();
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line.trim() === 'stop') {
      void load.stop().then(() => { process.stdout.write(JSON.stringify(load.snapshot()) + '\n'); process.exit(0); });
    } else {
      process.stdout.write(JSON.stringify(load.snapshot()) + '\n');
    }
  });
  rl.on('close', () => process.exit(0));
}

const [, , role, json] = process.argv;
if (role === 'server') runServer(JSON.parse(json ?? '{}') as ServerConfig);
else if (role === 'client') runClient(JSON.parse(json ?? '{}') as ClientConfig);
