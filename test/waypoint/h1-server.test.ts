/**
 * The waypoint's own HTTP/1.1 server (waypoint/proxy/h1-server.ts) against node:http
 * (`--http1-server node`), differentially: the same raw requests go through two waypoints
 * with the same configuration, one per server, to one recording backend. The backend must
 * receive the same bytes and the caller the same response (Date, the hop's span id and
 * the backend's own per-connection details aside). The cases cover what the servers
 * themselves decide: framing (Content-Length, chunked, HEAD/204/304, until-close),
 * `Expect: 100-continue`, pipelining order, HTTP/1.0 keep-alive, hop-by-hop headers,
 * refusals (400, smuggling, 431). A seeded fuzz run then checks that the new server
 * never crashes and answers every bad input with a 4xx or a closed connection.
 */
import net from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { ManifestDirSource } from '../../waypoint/config/source.js';
import { parseWaypointArgs, withLogger } from '../../waypoint/options.js';
import { Waypoint } from '../../waypoint/waypoint.js';
import { baseManifests, gatewayRoute, rawExchange, type RigAddresses } from './fixtures/rig.js';
import { fuzzCases, mulberry32, proxyCases, verdict } from '../../bench/waypoint/fuzz-inputs.js';
import { encodeProxyV2, parseProxyV2, SIGNATURE } from '../../waypoint/proxy/proxy-protocol.js';

const base = `127.92.${10 + (process.pid % 200)}`;
const BACKEND = `${base}.10`;
const GW = { node: `${base}.1`, kernway: `${base}.2` };
const PORT = 8080;

/** A backend that records every connection's bytes and answers by the path's first segment. */
class RecordingBackend {
  /** Every byte received, in order (requests are sent one test exchange at a time). */
  log = '';
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor() {
    this.server = net.createServer((s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => s.destroy());
      let buf = '';
      s.on('data', (d: Buffer) => {
        this.log += d.toString('latin1');
        buf += d.toString('latin1');
        for (;;) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buf.slice(0, end);
          const cl = /\r\ncontent-length: *([0-9]+)/i.exec(head);
          const chunked = /\r\ntransfer-encoding: *chunked/i.test(head);
          let total = end + 4;
          if (cl) total += Number(cl[1]);
          else if (chunked) {
            const z = buf.indexOf('0\r\n\r\n', end + 4);
            if (z < 0) return;
            total = z + 5;
          }
          if (buf.length < total) return;
          buf = buf.slice(total);
          const [method, target] = head.split(' ');
          if (target!.startsWith('/web/large')) { this.sendLarge(s); continue; }
          s.write(answer(method!, target!));
          if (target!.startsWith('/web/until-close')) { s.end(); return; }
        }
      });
    });
  }

  /** Chunks of the large response the kernel has taken (each written when the one before it was). */
  largeTaken = 0;

  /** LARGE_CHUNKS chunks of 1 MiB, byte i of the body being i % 251, one at a time as the socket takes them. */
  private sendLarge(s: net.Socket): void {
    this.largeTaken = 0;
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${LARGE_CHUNKS * MIB}\r\n\r\n`);
    const next = (i: number): void => {
      if (i === LARGE_CHUNKS || s.destroyed) return;
      s.write(largeChunk(i), () => { this.largeTaken++; next(i + 1); });
    };
    next(0);
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: BACKEND, port: PORT, exclusive: true }, () => resolve());
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

const MIB = 1024 * 1024;
const LARGE_CHUNKS = 64;
/** Chunk i of the large response: body byte n is n % 251 (1 MiB is not a multiple of 251, so chunks differ). */
function largeChunk(i: number): Buffer {
  const b = Buffer.allocUnsafe(MIB);
  const first = (i * MIB) % 251;
  for (let k = 0; k < MIB; k++) b[k] = (first + k) % 251;
  return b;
}

function answer(method: string, target: string): string {
  const what = target.split('/')[2] ?? '';
  const body = `${method} ${target}\n`;
  switch (what) {
    // One chunk: node:http re-chunks several chunks that arrive in one read differently by
    // version (Node.js 20 one chunk each, 24 coalesced), and the waypoint keeps each as it came.
    case 'chunked': return `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\nX-Trailer: t1\r\n\r\n`;
    case 'no-content': return 'HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n';
    case 'not-modified': return 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n';
    case 'informational': return `HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    case 'until-close': return `HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n${body}`;
    // Response headers from the target (/web/vary/<value>/<name>): the same length from request to request.
    case 'vary': return `HTTP/1.1 200 OK\r\n${target.split('/')[4] ?? 'X-V'}: ${target.split('/')[3]}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    case 'cookies': return `HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Multi: 1\r\nX-Multi: 2\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    default: return `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${method === 'HEAD' ? 42 : body.length}\r\n\r\n${method === 'HEAD' ? '' : body}`;
  }
}

const backend = new RecordingBackend();
const waypoints: Waypoint[] = [];
let dir = '';

async function startWaypoint(address: string, server: 'node' | 'kernway', manifests: string): Promise<Waypoint> {
  const opts = parseWaypointArgs([
    '--namespace', 'ns', '--manifests', manifests, '--listen-address', address, '--mesh-port', '0', '--metrics-address', 'off',
    '--access-log', 'off', '--header-timeout', '1s', '--max-header-bytes', '4096', '--http1-server', server,
  ]);
  const log = createLogger('kernway-waypoint-test', process.env.KERNWAY_LOG_LEVEL ?? 'silent');
  return Waypoint.start({ ...withLogger(opts, log), drainTimeoutMs: 500 }, new ManifestDirSource(manifests, { log, debounceMs: 10 }));
}

beforeAll(async () => {
  await backend.listen();
  dir = mkdtempSync(join(tmpdir(), 'kw-h1-diff-'));
  const manifests = join(dir, 'manifests');
  mkdirSync(manifests);
  const a: RigAddresses = { gateway: GW.kernway, pods: { web: [BACKEND] }, outside: `${base}.3`, caller: (i) => `${base}.${200 + i}` };
  writeFileSync(join(manifests, 'config.yaml'), baseManifests(a) + gatewayRoute('main', `  - matches: [{path: {type: PathPrefix, value: /web}}]
    backendRefs: [{name: web, port: 80}]`));
  waypoints.push(await startWaypoint(GW.node, 'node', manifests), await startWaypoint(GW.kernway, 'kernway', manifests));
}, 30_000);

afterAll(async () => {
  await Promise.all(waypoints.map((w) => w.stop(0)));
  await backend.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** What differs by nature between two runs: dates, the hop's span id, request ids the waypoint makes. */
function normalize(s: string): string {
  return s
    .replace(/^(date): .*$/gim, '$1: X')
    .replace(/^(traceparent): 00-([0-9a-f]{32})-[0-9a-f]{16}-/gim, '$1: 00-$2-SPAN-')
    .replace(/^(x-request-id): .*$/gim, '$1: X');
}

/** Send `data` through one waypoint on a new connection; the caller's bytes and the backend's bytes for it. */
async function through(server: 'node' | 'kernway', data: string | string[]): Promise<{ caller: string; backend: string }> {
  const before = backend.log.length;
  const parts = Array.isArray(data) ? [...data] : [data];
  const caller = await new Promise<string>((resolve, reject) => {
    const s = net.connect({ host: GW[server], port: PORT });
    let got = '';
    let timer = setTimeout(() => { s.destroy(); resolve(got); }, 700);
    s.on('data', (d) => {
      got += d.toString('latin1');
      clearTimeout(timer);
      timer = setTimeout(() => { s.destroy(); resolve(got); }, 400);
      // Later parts wait for the 100 Continue (or the first response).
      if (parts.length > 0) s.write(parts.shift()!);
    });
    s.on('close', () => { clearTimeout(timer); resolve(got); });
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve(got) : reject(e)));
    s.write(parts.shift()!);
  });
  const seen = backend.log.slice(before);
  return { caller: normalize(caller), backend: normalize(seen) };
}

async function same(data: string | string[]): Promise<{ caller: string; backend: string }> {
  const node = await through('node', data);
  const kernway = await through('kernway', data);
  expect(kernway.backend).toBe(node.backend);
  expect(kernway.caller).toBe(node.caller);
  return kernway;
}

const TP = 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx-request-id: r1\r\n';

describe('the same bytes through node:http and the waypoint\'s own server', () => {
  it('a GET with repeated, mixed-case and hop-by-hop headers', async () => {
    const r = await same(`GET /web/a?q=1 HTTP/1.1\r\nHost: example.com\r\n${TP}X-A: 1\r\nx-a: 2\r\nConnection: keep-alive, X-Drop\r\nX-Drop: secret\r\nKeep-Alive: timeout=5\r\nTE: gzip\r\nUser-Agent: t\r\n\r\n`);
    expect(r.caller).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(r.backend).toContain('X-A: 1\r\nx-a: 2\r\n');
    expect(r.backend).not.toMatch(/x-drop|keep-alive|^te:/im);
  });
  it('one connection whose request and response headers change between requests (values of the same length, names, order, one more or less): each head is its own', async () => {
    const tp = 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n';
    const req = (path: string, host: string, id: string, more: string): string => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${tp}x-request-id: ${id}\r\nX-A: 1\r\n${more}\r\n`;
    const parts = [
      req('/web/vary/aaaa', 'example.com', 'r1', ''), req('/web/vary/aaaa', 'example.com', 'r1', ''), req('/web/vary/aaaa', 'example.com', 'r2', ''),
      req('/web/vary/bbbb', 'example.com', 'r3', ''), req('/web/vary/bbbb', 'examplf.com', 'r4', ''), req('/web/vary/bbbb/X-W', 'examplf.com', 'r5', 'X-B: 2\r\n'),
      req('/web/vary/bbbb/X-W', 'examplf.com', 'r6', 'X-C: 2\r\n'), req('/web/vary/cccc', 'examplf.com', 'r7', 'X-C: 2\r\nX-D: 3\r\n'), req('/web/vary/cccc', 'examplf.com', 'r8', ''),
      `GET /web/vary/dddd HTTP/1.1\r\nHost: examplf.com\r\n${tp}\r\n`, `GET /web/vary/dddd HTTP/1.1\r\nHost: examplf.com\r\n${tp}\r\n`, `GET /web/vary/eeee HTTP/1.1\r\nHost: example.com\r\n${tp}\r\n`,
    ];
    const before = backend.log.length;
    const r = await same(parts);
    // What the normalized comparison leaves out: the ids the caller gave, each on its own request.
    expect([...backend.log.slice(before).matchAll(/^x-request-id: (.*)\r$/gm)].map((m) => m[1]).filter((id) => id!.startsWith('r')))
      .toEqual(['r1', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8', 'r1', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8']);
    expect([...r.caller.matchAll(/^X-[VW]: (.*)\r$/gm)].map((m) => m[1])).toEqual(['aaaa', 'aaaa', 'aaaa', 'bbbb', 'bbbb', 'bbbb', 'bbbb', 'cccc', 'cccc', 'dddd', 'dddd', 'eeee']);
    expect([...r.backend.matchAll(/^Host: (.*)\r$/gm)].map((m) => m[1])).toEqual(['example.com', 'example.com', 'example.com', 'example.com', ...Array(7).fill('examplf.com'), 'example.com']);
  });

  it('request bodies: Content-Length, chunked, Expect: 100-continue', async () => {
    expect((await same(`POST /web/cl HTTP/1.1\r\nHost: h\r\n${TP}Content-Length: 5\r\n\r\nhello`)).backend).toMatch(/\r\n\r\nhello$/);
    expect((await same(`POST /web/te HTTP/1.1\r\nHost: h\r\n${TP}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`)).backend).toContain('abc');
    const r = await same([`POST /web/expect HTTP/1.1\r\nHost: h\r\n${TP}Expect: 100-continue\r\nContent-Length: 4\r\n\r\n`, 'body']);
    expect(r.caller).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
    expect(await same(`GET /web/e HTTP/1.1\r\nHost: h\r\n${TP}Expect: something-else\r\n\r\n`)).toMatchObject({ caller: expect.stringMatching(/^HTTP\/1\.1 417 /) as unknown });
  });
  it('response framing: chunked with trailers, HEAD, 204, 304, 1xx skipped, until close, repeated response headers', async () => {
    for (const p of ['chunked', 'no-content', 'not-modified', 'informational', 'until-close', 'cookies']) {
      const r = await same(`GET /web/${p} HTTP/1.1\r\nHost: h\r\n${TP}\r\n`);
      expect(r.caller).toMatch(/^HTTP\/1\.1 [23]0[0-9] /);
    }
    const head = await same(`HEAD /web/x HTTP/1.1\r\nHost: h\r\n${TP}\r\n`);
    expect(head.caller).toMatch(/Content-Length: 42\r\n/);
  });
  it('pipelined requests are answered in order; HTTP/1.0 with and without keep-alive', async () => {
    const r = await same(`GET /web/1 HTTP/1.1\r\nHost: h\r\n${TP}\r\nGET /web/2 HTTP/1.1\r\nHost: h\r\n${TP}\r\nGET /web/3 HTTP/1.1\r\nHost: h\r\n${TP}Connection: close\r\n\r\n`);
    expect([...r.caller.matchAll(/GET (\/web\/[0-9])/g)].map((m) => m[1])).toEqual(['/web/1', '/web/2', '/web/3']);
    expect((await same(`GET /web/old HTTP/1.0\r\nHost: h\r\n${TP}\r\n`)).caller).toMatch(/Connection: close/i);
    const ka = await same(`GET /web/ka1 HTTP/1.0\r\nHost: h\r\n${TP}Connection: keep-alive\r\n\r\nGET /web/ka2 HTTP/1.0\r\nHost: h\r\n${TP}\r\n`);
    expect(ka.caller).toContain('/web/ka2');
  });
  it('refusals: malformed, smuggling, oversized, no Host, CONNECT', async () => {
    for (const bad of [
      'GET /web HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n',
      'POST /web HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /web/smuggled HTTP/1.1\r\nHost: x\r\n\r\n',
      'POST /web HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd',
      'POST /web HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
      `GET /web HTTP/1.1\r\nHost: x\r\nX-Big: ${'x'.repeat(5000)}\r\n\r\n`,
      'GET /web HTTP/1.1\r\n\r\n',
      'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
    ]) {
      const r = await same(bad);
      expect(r.caller).toMatch(/^HTTP\/1\.1 4[0-9][0-9] /);
      expect(r.backend).toBe('');
    }
  });
});

describe('a large response to a caller that stops reading (backpressure)', () => {
  it('the backend is held back while the caller reads nothing; then every byte arrives in order and the connection carries the next request', async () => {
    for (const server of ['kernway', 'node'] as const) {
      const s = net.connect({ host: GW[server], port: PORT });
      await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject); });
      s.pause();
      s.write('GET /web/large HTTP/1.1\r\nHost: h\r\n\r\n');
      // Wait until the backend's progress stops: the kernel buffers on the way are full.
      let last = -1, still = 0;
      for (let polls = 0; still < 8 && polls < 400; polls++) {
        await new Promise((r) => setTimeout(r, 50));
        if (backend.largeTaken === last && last > 0) still++; else { still = 0; last = backend.largeTaken; }
      }
      expect(still, `${server}: the backend's writes never stalled`).toBe(8);
      // Held back: most of the body is still at the backend (without backpressure the
      // waypoint would have read all of it into memory).
      expect(backend.largeTaken, server).toBeLessThan(LARGE_CHUNKS / 2);
      const total = LARGE_CHUNKS * MIB;
      const body = await new Promise<{ length: number; bad: number }>((resolve, reject) => {
        let head = '';
        let n = 0, bad = -1;
        const onData = (d: Buffer): void => {
          let from = 0;
          if (head === '' || !head.endsWith('\r\n\r\n')) {
            const all = head + d.toString('latin1');
            const end = all.indexOf('\r\n\r\n');
            if (end < 0) { head = all; return; }
            from = d.length - (all.length - end - 4);
            head = all.slice(0, end + 4);
          }
          for (let k = from; k < d.length; k++, n++) if (bad < 0 && d[k] !== n % 251) bad = n;
          if (n >= total) { s.off('data', onData); resolve({ length: n, bad }); }
        };
        s.on('data', onData);
        s.once('error', reject);
        s.resume();
      });
      expect(body, server).toEqual({ length: total, bad: -1 });
      const next = await new Promise<string>((resolve, reject) => {
        let got = '';
        s.on('data', (d: Buffer) => { got += d.toString('latin1'); if (got.endsWith('GET /web/after\n')) resolve(got); });
        s.once('error', reject);
        s.write('GET /web/after HTTP/1.1\r\nHost: h\r\n\r\n');
      });
      expect(next).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      s.destroy();
    }
  }, 60_000);
});

describe('the head timeout (--header-timeout 1s here) counts from the first byte of each head', () => {
  /** Writes `data` on a new connection and reads until the waypoint closes it (at most 10 s); what came back, and how the wait ended. */
  function untilClose(data: string, then?: { after: string; send: string }): Promise<{ caller: string; closed: boolean }> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: GW.kernway, port: PORT });
      let got = '';
      let sent = false;
      const timer = setTimeout(() => { s.destroy(); resolve({ caller: got, closed: false }); }, 10_000);
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (then && !sent && got.includes(then.after)) { sent = true; s.write(then.send); }
      });
      s.on('close', () => { clearTimeout(timer); resolve({ caller: got, closed: true }); });
      s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
      s.write(data);
    });
  }

  it('a head begun in the same read as the end of a request (after a GET, after a body) that never completes: 408 after the answer', async () => {
    for (const first of ['GET /web/t1 HTTP/1.1\r\nHost: h\r\n\r\n', 'POST /web/t2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc']) {
      const r = await untilClose(`${first}GET /web/never HTTP/1.1\r\nHo`);
      expect(r.closed).toBe(true);
      expect(r.caller).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n(GET|POST) \/web\/t[12]\nHTTP\/1\.1 408 Request Timeout\r\n/);
    }
  });

  it('a head sent in pieces after an answered request on a kept-alive connection: 408', async () => {
    const r = await untilClose('GET /web/t3 HTTP/1.1\r\nHost: h\r\n\r\n', { after: 'GET /web/t3\n', send: 'GET /web/never HTTP/1.1\r\n' });
    expect(r.closed).toBe(true);
    expect(r.caller).toMatch(/GET \/web\/t3\nHTTP\/1\.1 408 Request Timeout\r\n/);
  });

  it('a kept-alive connection quiet between requests for longer than the head timeout is not refused', async () => {
    const s = net.connect({ host: GW.kernway, port: PORT });
    let got = '';
    s.on('data', (d: Buffer) => { got += d.toString('latin1'); });
    const waitFor = async (text: string): Promise<void> => { for (let i = 0; i < 200 && !got.includes(text); i++) await new Promise((r) => setTimeout(r, 25)); };
    s.write('GET /web/q1 HTTP/1.1\r\nHost: h\r\n\r\n');
    await waitFor('GET /web/q1\n');
    // Longer than the head timeout plus a sweep period: a head wrongly marked as begun would be refused by now.
    await new Promise((r) => setTimeout(r, 1_600));
    s.write('GET /web/q2 HTTP/1.1\r\nHost: h\r\n\r\n');
    await waitFor('GET /web/q2\n');
    s.destroy();
    expect(got).not.toContain('408');
    expect(got).toContain('GET /web/q2\n');
  });
});

describe('a caller that half-closes after its requests (shutdown(SHUT_WR), as nginx and plain TCP allow)', () => {
  /** Writes `data`, half-closes, and reads to EOF; what came back, and whether our EOF came. */
  function halfClose(data: string): Promise<{ caller: string; ended: boolean }> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: GW.kernway, port: PORT, allowHalfOpen: true });
      let got = '';
      const timer = setTimeout(() => { s.destroy(); resolve({ caller: got, ended: false }); }, 5_000);
      s.on('data', (d: Buffer) => { got += d.toString('latin1'); });
      s.on('end', () => { clearTimeout(timer); s.destroy(); resolve({ caller: got, ended: true }); });
      s.on('error', (e) => { clearTimeout(timer); reject(e); });
      s.end(data);
    });
  }

  it('one request then FIN: the whole response, Connection: close, then the waypoint\'s FIN', async () => {
    const before = backend.log.length;
    const r = await halfClose('GET /web/half HTTP/1.1\r\nHost: a\r\n\r\n');
    expect(r.ended).toBe(true);
    expect(r.caller).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(r.caller).toMatch(/\r\nconnection: close\r\n/i);
    expect(r.caller.endsWith('GET /web/half\n')).toBe(true);
    expect(backend.log.slice(before)).toContain('GET /web/half HTTP/1.1');
  });

  it('three pipelined requests then FIN: three responses in order, only the last says close', async () => {
    const req = (p: string): string => `GET /web/${p} HTTP/1.1\r\nHost: a\r\n\r\n`;
    const r = await halfClose(req('p1') + req('p2') + req('p3'));
    expect(r.ended).toBe(true);
    const bodies = [...r.caller.matchAll(/GET \/web\/(p[0-9])\n/g)].map((m) => m[1]);
    expect(bodies).toEqual(['p1', 'p2', 'p3']);
    expect(r.caller.match(/\r\nconnection: close\r\n/gi)?.length).toBe(1);
    expect(r.caller.lastIndexOf('onnection: close')).toBeGreaterThan(r.caller.indexOf('GET /web/p2\n'));
  });

  it('FIN with nothing sent: the waypoint closes its side too', async () => {
    const r = await halfClose('');
    expect(r.ended).toBe(true);
    expect(r.caller).toBe('');
  });
});

describe('fuzzing (seeded, short; bench/waypoint/fuzz.ts runs for minutes)', () => {
  it('the request parser: never crashes; every input llhttp refuses gets a 4xx or a closed connection', async () => {
    const rand = mulberry32(1234);
    for (const input of fuzzCases(rand, 80)) {
      const got = await rawExchange(GW.kernway, PORT, input, 250);
      for (const m of got.matchAll(/HTTP\/1\.1 ([0-9]{3}) /g)) expect(Number(m[1])).toBeLessThan(600);
      if (verdict(input, 4096) === 'error') expect(got === '' || /^HTTP\/1\.1 4[0-9][0-9] /.test(got), JSON.stringify(input.toString('latin1').slice(0, 200))).toBe(true);
    }
    expect(await rawExchange(GW.kernway, PORT, 'GET /web/alive HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
  }, 60_000);
  it('the PROXY header reader: random and mutated headers never throw; the mesh port closes or answers, and keeps serving', async () => {
    const rand = mulberry32(99);
    for (let i = 0; i < 20_000; i++) {
      const b = Buffer.alloc(Math.floor(rand() * 80));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
      if (rand() < 0.5 && b.length >= 12) SIGNATURE.copy(b, 0);
      expect(['more', 'error', 'header']).toContain(parseProxyV2(b).kind);
    }
    const valid = encodeProxyV2({ address: `${base}.3`, port: 1234 }, { address: '10.96.0.1', port: 80 });
    const mesh = waypoints[1]!.meshPort;
    for (const input of proxyCases(rand, valid, 30)) {
      const got = await rawExchange(GW.kernway, mesh, input, 250);
      expect(got === '' || /^HTTP\/1\.1 [0-9]{3} /.test(got)).toBe(true);
    }
    expect(await rawExchange(GW.kernway, PORT, 'GET /web/alive HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
  }, 60_000);
});
