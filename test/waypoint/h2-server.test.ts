/**
 * HTTP/2 callers on nghttp2's core 'stream' API (waypoint/proxy/h2-server.ts, issue 16),
 * through a real waypoint on loopback, with backends that answer what the compatibility
 * layer used to smooth over: a gRPC error answered "trailers-only" (one HEADERS frame
 * ending the stream, passed on as one), trailers after a chunked HTTP/1.1 body, a body
 * larger than HTTP/2's flow-control windows, HEAD and 204 without DATA, a request body
 * without Content-Length, Expect: 100-continue, a caller that resets its stream
 * mid-response (the backend exchange dropped, the request logged once), and the
 * waypoint's own answers (404). No Http2ServerRequest is ever made. Every case runs on
 * both HTTP/2 servers: nghttp2's (`--http2-server node`) and the waypoint's own (`kernway`).
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { ManifestDirSource } from '../../waypoint/config/source.js';
import { parseWaypointArgs, withLogger } from '../../waypoint/options.js';
import { Waypoint } from '../../waypoint/waypoint.js';
import { H2Server } from '../../waypoint/proxy/h2-server.js';
import { KwH2Server } from '../../waypoint/proxy/h2-conn.js';
import { baseManifests, gatewayRoute, type RigAddresses } from './fixtures/rig.js';

const base = `127.87.${10 + (process.pid % 200)}`;
const H1 = `${base}.10`;
const GRPC = `${base}.11`;
const GW = `${base}.1`;
const BIG = 3 * 1024 * 1024 + 17;

describe.each(['node', 'kernway'] as const)('--http2-server %s', (engine) => {
  let h1: http.Server;
  let h2: http2.Http2Server;
  let wp: Waypoint;
  let dir = '';
  let accessLog = '';
  /** What the HTTP/1.1 backend received, by path. */
  const received = new Map<string, { headers: http.IncomingHttpHeaders; body: string }>();
  /** Responses held open by the backend (/hold), ended by the test. */
  const held: http.ServerResponse[] = [];

  beforeAll(async () => {
    h1 = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = req.url ?? '';
        received.set(path.split('?')[0]!, { headers: req.headers, body: Buffer.concat(chunks).toString() });
        if (path.startsWith('/web/trailers')) {
          res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
          res.write('part one,');
          res.write('part two');
          res.addTrailers({ 'x-checksum': 'abc123' });
          res.end();
        } else if (path.startsWith('/web/big')) {
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG) });
          const chunk = Buffer.alloc(64 * 1024, 7);
          let left = BIG;
          const more = (): void => {
            while (left > 0) {
              const n = Math.min(left, chunk.length);
              left -= n;
              if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { res.once('drain', more); return; }
            }
            res.end();
          };
          more();
        } else if (path.startsWith('/web/fields')) {
          // Mixed-case names, repeated fields, and connection-specific ones HTTP/2 must not carry.
          res.writeHead(201, ['X-Multi', 'a', 'Content-Type', 'text/plain', 'x-multi', 'b', 'Set-Cookie', 'c=1', 'Keep-Alive', 'timeout=5',
            'Upgrade', 'h2c', 'Set-Cookie', 'd=2', 'Content-Length', '2', 'Connection', 'keep-alive, upgrade', 'TE', 'gzip', 'X-Last', 'z']);
          res.end('ok');
        } else if (path.startsWith('/web/no-content')) {
          res.writeHead(204, { 'x-kind': 'empty' });
          res.end();
        } else if (path.startsWith('/web/hold')) {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('first chunk\n');
          held.push(res);
        } else {
          const body = JSON.stringify({ path, method: req.method, length: chunks.reduce((n, c) => n + c.length, 0) });
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
          res.end(req.method === 'HEAD' ? undefined : body);
        }
      });
    });
    // An h2c backend answering like a gRPC server that refuses: trailers-only.
    h2 = http2.createServer();
    h2.on('stream', (stream, headers) => {
      stream.resume();
      stream.on('end', () => {
        if (headers[':path'] === '/pkg.Svc/Fail') stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '7', 'grpc-message': 'no thanks' }, { endStream: true });
        else {
          stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
          stream.end(Buffer.from([0, 0, 0, 0, 2, 104, 105]));
        }
      });
    });
    await new Promise<void>((resolve, reject) => { h1.once('error', reject); h1.listen({ host: H1, port: 8080, exclusive: true }, resolve); });
    await new Promise<void>((resolve, reject) => { h2.once('error', reject); h2.listen({ host: GRPC, port: 8080, exclusive: true }, resolve); });
    dir = mkdtempSync(join(tmpdir(), 'kw-h2-server-'));
    const manifests = join(dir, 'manifests');
    mkdirSync(manifests);
    accessLog = join(dir, 'access.log');
    const a: RigAddresses = { gateway: GW, pods: { web: [H1], grpc: [GRPC] }, outside: `${base}.3`, caller: (i) => `${base}.${200 + i}` };
    writeFileSync(join(manifests, 'config.yaml'), baseManifests(a, 'ns', { appProtocol: { grpc: 'kubernetes.io/h2c' } }) + gatewayRoute('main', `  - matches: [{path: {type: PathPrefix, value: /pkg.Svc}}]
    backendRefs: [{name: grpc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /web}}]
    backendRefs: [{name: web, port: 80}]`));
    const opts = parseWaypointArgs(['--namespace', 'ns', '--manifests', manifests, '--listen-address', GW, '--mesh-port', '0', '--metrics-address', 'off', '--access-log', accessLog, '--http2-server', engine]);
    const log = createLogger('kernway-waypoint-test', process.env.KERNWAY_LOG_LEVEL ?? 'silent');
    wp = await Waypoint.start({ ...withLogger(opts, log), drainTimeoutMs: 500 }, new ManifestDirSource(manifests, { log, debounceMs: 10 }));
  }, 30_000);

  afterAll(async () => {
    for (const r of held) r.destroy();
    await wp?.stop(0);
    await new Promise<void>((r) => { if (h1) h1.close(() => r()); else r(); });
    await new Promise<void>((r) => { if (h2) h2.close(() => r()); else r(); });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** frames: HEADERS frames received, and whether the first one ended the stream (END_STREAM). */
  interface H2Reply { status: number; headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders | undefined; body: Buffer; frames: { headers: number; endAfterHeaders: boolean }; raw: string[] }

  function exchange(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer | string, opts: { waitForContinue?: boolean } = {}): Promise<H2Reply> {
    return new Promise((resolve, reject) => {
      const st = session.request({ ':authority': 'test.example', ...headers }, { endStream: body === undefined });
      let head: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders | undefined;
      let headerFrames = 0;
      let endAfterHeaders = false;
      const chunks: Buffer[] = [];
      let raw: string[] = [];
      st.on('response', (h, flags, rawHeaders: string[]) => { head = h; raw = rawHeaders; headerFrames++; endAfterHeaders = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0; });
      st.on('trailers', (t) => { trailers = t; headerFrames++; });
      st.on('data', (c: Buffer) => chunks.push(c));
      st.on('end', () => resolve({ status: Number(head[':status']), headers: head, trailers, body: Buffer.concat(chunks), frames: { headers: headerFrames, endAfterHeaders }, raw }));
      st.on('error', reject);
      if (body !== undefined) {
        if (opts.waitForContinue) st.once('continue', () => st.end(body));
        else st.end(body);
      }
    });
  }

  function accessLines(): Record<string, unknown>[] {
    wp['accessLog'].flush();
    return readFileSync(accessLog, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  it('never sets up Node\'s compatibility layer: no \'request\' listener on the HTTP/2 server (kernway: no Node HTTP/2 server at all)', () => {
    if (engine === 'kernway') { expect(wp['h2']).toBeInstanceOf(KwH2Server); return; }
    const server = (wp['h2'] as H2Server)['server'] as http2.Http2Server;
    expect(server.listenerCount('request')).toBe(0);
    expect(server.listenerCount('stream')).toBe(1);
  });

  it('a gRPC "trailers-only" answer reaches the caller as one HEADERS frame that ends the stream', async () => {
    const s = http2.connect(`http://${GW}:8080`);
    try {
      const frame = Buffer.from([0, 0, 0, 0, 1, 120]);
      const fail = await exchange(s, { ':method': 'POST', ':path': '/pkg.Svc/Fail', 'content-type': 'application/grpc', te: 'trailers' }, frame);
      expect(fail.status).toBe(200);
      expect(fail.headers['grpc-status']).toBe('7');
      expect(fail.headers['grpc-message']).toBe('no thanks');
      expect(fail.frames).toEqual({ headers: 1, endAfterHeaders: true });
      expect(fail.body.length).toBe(0);
      const ok = await exchange(s, { ':method': 'POST', ':path': '/pkg.Svc/Ok', 'content-type': 'application/grpc', te: 'trailers' }, frame);
      expect(ok.headers['grpc-status']).toBeUndefined();
      expect(ok.trailers?.['grpc-status']).toBe('0');
      expect([...ok.body]).toEqual([0, 0, 0, 0, 2, 104, 105]);
    } finally {
      s.close();
    }
  });

  it('trailers of a chunked HTTP/1.1 response travel on as HTTP/2 trailers', async () => {
    const s = http2.connect(`http://${GW}:8080`);
    try {
      const r = await exchange(s, { ':path': '/web/trailers' });
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('part one,part two');
      expect(r.trailers?.['x-checksum']).toBe('abc123');
      expect(r.headers.trailer).toBeUndefined(); // hop-by-hop
    } finally {
      s.close();
    }
  });

  it('a body larger than the flow-control windows arrives whole, on several streams at once', async () => {
    const s = http2.connect(`http://${GW}:8080`);
    try {
      const rs = await Promise.all([1, 2, 3].map((i) => exchange(s, { ':path': `/web/big/${i}` })));
      for (const r of rs) {
        expect(r.status).toBe(200);
        expect(r.headers['content-length']).toBe(String(BIG));
        expect(r.body.length).toBe(BIG);
        expect(r.body.every((b) => b === 7)).toBe(true);
      }
    } finally {
      s.close();
    }
  });

  it('a backend head reaches the caller with lower-case names, repeated fields in order, :status, and no connection-specific field', async () => {
    const s = http2.connect(`http://${GW}:8080`);
    try {
      const r = await exchange(s, { ':path': '/web/fields' });
      expect(r.status).toBe(201);
      expect(r.body.toString()).toBe('ok');
      const raw = r.raw;
      const names = raw.filter((_, i) => i % 2 === 0);
      expect(names[0]).toBe(':status');
      expect(names.filter((n) => n.startsWith(':'))).toEqual([':status']);
      for (const n of names) expect(n).toBe(n.toLowerCase());
      for (const gone of ['keep-alive', 'upgrade', 'connection', 'te', 'transfer-encoding']) expect(names).not.toContain(gone);
      const pairs = (name: string): string[] => raw.filter((_, i) => i % 2 === 1 && raw[i - 1] === name);
      expect(pairs('x-multi')).toEqual(['a', 'b']);
      expect(pairs('set-cookie')).toEqual(['c=1', 'd=2']);
      expect(pairs('content-type')).toEqual(['text/plain']);
      expect(pairs('x-last')).toEqual(['z']);
    } finally {
      s.close();
    }
  });

  it('H2Response.writeHead takes a header list over: connection-specific fields dropped in place, the rest in order, :status sent', async () => {
    let given: string[] = [];
    const h2opts = { maxHeaderBytes: 16384, idleTimeoutMs: 0, onRequest: (_req: unknown, res: { writeHead(s: number, h: string[]): void; end(b: string): void }) => {
      given = ['Keep-Alive', 'timeout=5', 'X-A', '1', 'Connection', 'close', 'x-a', '2', 'Transfer-Encoding', 'chunked', 'TE', 'gzip', 'Content-Type', 'text/plain', 'Upgrade', 'h2c', 'X-Last', 'z'];
      res.writeHead(203, given);
      res.end('ok');
    } };
    const server = engine === 'node' ? new H2Server(h2opts as never) : new KwH2Server(h2opts as never);
    const plain = net.createServer((sock) => server.connection(sock));
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    const s = http2.connect(`http://127.0.0.1:${(plain.address() as net.AddressInfo).port}`);
    try {
      const r = await exchange(s, { ':path': '/' });
      expect(r.body.toString()).toBe('ok');
      const raw = r.raw;
      const names = raw.filter((_, i) => i % 2 === 0);
      expect(raw.slice(0, 2)).toEqual([':status', '203']);
      expect(names.filter((n) => n.startsWith(':'))).toEqual([':status']);
      for (const gone of ['keep-alive', 'upgrade', 'connection', 'te', 'transfer-encoding']) expect(names).not.toContain(gone);
      // Node adds date; everything else is what was given, lower-cased, in order.
      expect(raw.slice(2).filter((_, i, a) => a[i - (i % 2)] !== 'date')).toEqual(['x-a', '1', 'x-a', '2', 'content-type', 'text/plain', 'x-last', 'z']);
      // Taken over: the list itself is what went out (plus :status last; kernway: plus the date it adds, as Node does).
      expect(given.slice(0, 8)).toEqual(['x-a', '1', 'x-a', '2', 'content-type', 'text/plain', 'x-last', 'z']);
      expect(given[8]).toBe(engine === 'node' ? ':status' : 'date');
    } finally {
      s.close();
      server.close();
      await new Promise<void>((r) => plain.close(() => r()));
    }
  });

  it('HEAD and 204 answers carry no DATA; the head ends the stream', async () => {
    const s = http2.connect(`http://${GW}:8080`);
    try {
      const head = await exchange(s, { ':method': 'HEAD', ':path': '/web/head' });
      expect(head.status).toBe(200);
      expect(head.headers['content-length']).toMatch(/^[0-9]+$/);
      expect(head.body.length).toBe(0);
      expect(head.frames.endAfterHeaders).toBe(true);
      const empty = await exchange(s, { ':path': '/web/no-content' });
      expect(empty.status).toBe(204);
      expect(empty.headers['x-kind']).toBe('empty');
      expect(empty.frames.endAfterHeaders).toBe(true);
    } finally {
      s.close();
    }
  });

  it('a request body without Content-Length reaches an HTTP/1.1 backend whole; Expect: 100-continue is answered', async () => {
    const s = http2.connect(`http://${GW}:8080`);
    try {
      const body = 'x'.repeat(100_000);
      const r = await exchange(s, { ':method': 'POST', ':path': '/web/upload' }, body);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body.toString())).toMatchObject({ method: 'POST', length: 100_000 });
      expect(received.get('/web/upload')!.body).toBe(body);
      const c = await exchange(s, { ':method': 'PUT', ':path': '/web/continue', expect: '100-continue' }, 'after continue', { waitForContinue: true });
      expect(c.status).toBe(200);
      expect(received.get('/web/continue')!.body).toBe('after continue');
    } finally {
      s.close();
    }
  });

  it('the waypoint\'s own answers (no route: 404)', async () => {
    const s = http2.connect(`http://${GW}:8080`);
    try {
      const miss = await exchange(s, { ':path': '/nowhere' });
      expect(miss.status).toBe(404);
      expect(miss.body.toString()).toBe('no route matched\n');
      expect(miss.headers['content-length']).toBe(String('no route matched\n'.length));
      expect((await exchange(s, { ':path': '/web/after' })).status).toBe(200);
    } finally {
      s.close();
    }
    const lines = accessLines();
    expect(lines.find((l) => l.path === '/nowhere')).toMatchObject({ status: 404, protocol: 'HTTP/2', reason: 'no_route' });
  });

  it('a caller that resets its stream mid-response: the backend exchange is dropped, the request logged and counted once', async () => {
    const s = http2.connect(`http://${GW}:8080`);
    try {
      const got = await new Promise<string>((resolve, reject) => {
        const st = s.request({ ':path': '/web/hold', ':authority': 'test.example' });
        st.setEncoding('utf8');
        st.once('data', (d: string) => { st.close(http2.constants.NGHTTP2_CANCEL); resolve(d); });
        st.on('error', reject);
      });
      expect(got).toBe('first chunk\n');
      // The waypoint gives up its backend connection: the held response sees its socket close.
      await poll('the backend connection closed', () => held.length === 1 && held[0]!.socket === null || held[0]!.destroyed || held[0]!.socket?.destroyed === true);
      await poll('the access log line', () => accessLines().some((l) => l.path === '/web/hold'));
      // As before the core API: the status sent is logged (the head was sent), with the bytes that were.
      expect(accessLines().filter((l) => l.path === '/web/hold')).toMatchObject([{ status: 200, protocol: 'HTTP/2', bytesOut: 12 }]);
      expect(wp.metrics.active).toBe(0);
      // The session survives the reset stream.
      expect((await exchange(s, { ':path': '/web/after-reset' })).status).toBe(200);
    } finally {
      s.close();
    }
  });

  /** HTTP/2 frames as they arrive on a raw connection: type, flags, stream, payload length. */
  interface RawFrame { type: number; flags: number; stream: number; length: number }

  /** One GET over a raw h2c connection (no client library between the test and the frames): the frames of stream 1, up to its END_STREAM. */
  function rawGet(path: string): Promise<RawFrame[]> {
    const str = (s: string): Buffer => Buffer.concat([Buffer.from([s.length]), Buffer.from(s, 'latin1')]);
    // HPACK: :method GET, :scheme http (static table), :path and :authority as literals with an indexed name.
    const block = Buffer.concat([Buffer.from([0x82, 0x86, 0x04]), str(path), Buffer.from([0x01]), str('test.example')]);
    const frame = (type: number, flags: number, stream: number, payload: Buffer): Buffer => {
      const h = Buffer.alloc(9);
      h.writeUIntBE(payload.length, 0, 3);
      h[3] = type;
      h[4] = flags;
      h.writeUInt32BE(stream, 5);
      return Buffer.concat([h, payload]);
    };
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: GW, port: 8080 });
      const frames: RawFrame[] = [];
      let buf = Buffer.alloc(0);
      sock.on('error', reject);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 9) {
          const length = buf.readUIntBE(0, 3);
          if (buf.length < 9 + length) break;
          const f = { type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, length };
          buf = buf.subarray(9 + length);
          if (f.type === 4 && (f.flags & 1) === 0) sock.write(frame(4, 1, 0, Buffer.alloc(0))); // SETTINGS ack
          if (f.stream !== 1) continue;
          frames.push(f);
          if ((f.flags & 1) !== 0 || f.type === 3) { sock.destroy(); resolve(frames); return; }
        }
      });
      sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x5, 1, block)]));
    });
  }

  it('a small answer with its body is HEADERS and one DATA frame that ends the stream (no empty DATA frame after it)', async () => {
    const frames = await rawGet('/web/small');
    // HEADERS (END_HEADERS, not END_STREAM), then DATA carrying the body and END_STREAM.
    expect(frames.map((f) => ({ type: f.type, endStream: (f.flags & 1) !== 0 }))).toEqual([{ type: 1, endStream: false }, { type: 0, endStream: true }]);
    expect(frames[1]!.length).toBe(JSON.stringify({ path: '/web/small', method: 'GET', length: 0 }).length);
  });

  async function poll(what: string, f: () => boolean, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!f()) {
      if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
});
