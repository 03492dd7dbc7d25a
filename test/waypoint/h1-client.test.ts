/**
 * The waypoint's HTTP/1.1 client for backends, against raw TCP servers that answer with
 * crafted bytes: framing (Content-Length, chunked split anywhere, until close, no body),
 * 1xx, keep-alive reuse and its limits, strictness (bad responses are protocol errors),
 * request bodies, connect and reset errors.
 */
import net, { type AddressInfo } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { H1Error, H1Pool, type H1Response } from '../../waypoint/proxy/h1-client.js';

const HOST = `127.94.${10 + (process.pid % 200)}.1`;
interface Fake { port: number; connections: number; requests: string[]; close(): Promise<void> }
const servers: Fake[] = [];
const pools: H1Pool[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) p.close();
  for (const s of servers.splice(0)) await s.close();
});

/** A server that answers each request (one per `data` burst ending the head) with `answer(i, request)`; writes are split by `split`. */
async function fake(answer: (i: number, req: string, s: net.Socket) => string | Buffer | undefined, split = 0): Promise<Fake> {
  const f: Fake = { port: 0, connections: 0, requests: [], close: async () => {} };
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    f.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    let buf = '';
    s.on('data', async (d) => {
      buf += d.toString('latin1');
      while (buf.includes('\r\n\r\n')) {
        const end = buf.indexOf('\r\n\r\n') + 4;
        let req = buf.slice(0, end);
        buf = buf.slice(end);
        const cl = /content-length: (\d+)/i.exec(req);
        if (cl) { req += buf.slice(0, Number(cl[1])); buf = buf.slice(Number(cl[1])); }
        if (/transfer-encoding: chunked/i.test(req)) { const e = buf.indexOf('0\r\n\r\n'); req += buf.slice(0, e + 5); buf = buf.slice(e + 5); }
        f.requests.push(req);
        const out = answer(f.requests.length - 1, req, s);
        if (out === undefined) continue;
        const b = Buffer.isBuffer(out) ? out : Buffer.from(out, 'latin1');
        if (split > 0) for (let i = 0; i < b.length; i += split) { s.write(b.subarray(i, i + split)); await new Promise((r) => setImmediate(r)); }
        else s.write(b);
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, HOST, () => r()));
  f.port = (srv.address() as AddressInfo).port;
  f.close = () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); });
  servers.push(f);
  return f;
}

function pool(idleTimeoutMs = 10_000): H1Pool {
  const p = new H1Pool({ maxIdlePerEndpoint: 8, idleTimeoutMs, connectTimeoutMs: 2000 });
  pools.push(p);
  return p;
}

/** The whole body, read the way the proxy reads it ('data', then 'end'; 'close' without 'end' is an error). */
function body(r: H1Response): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let failure: Error | undefined;
    r.body.on('data', (c: Buffer) => chunks.push(c));
    r.body.once('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    r.body.once('error', (e: Error) => { failure = e; });
    r.body.once('close', () => { if (!r.body.readableEnded) reject(failure ?? new Error('closed before the end')); });
  });
}

function get(p: H1Pool, port: number, extra: { method?: string; body?: Buffer | Readable; headers?: string[] } = {}): Promise<H1Response> {
  return p.request({ address: HOST, port, method: extra.method ?? 'GET', path: '/x', headers: ['Host', 'h', ...(extra.headers ?? [])], body: extra.body }).response;
}

describe('framing', () => {
  it('Content-Length bodies, and the connection is reused', async () => {
    const f = await fake(() => 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello');
    const p = pool();
    for (let i = 0; i < 3; i++) {
      const r = await get(p, f.port);
      expect(r.status).toBe(200);
      expect(r.headers).toEqual(['Content-Length', '5', 'X-A', '1', 'x-a', '2']);
      expect(await body(r)).toBe('hello');
    }
    expect(f.connections).toBe(1);
    expect(f.requests[0]).toBe('GET /x HTTP/1.1\r\nHost: h\r\n\r\n');
  });
  it('chunked bodies split at every byte, with extensions and trailers', async () => {
    const f = await fake(() => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n', 1);
    const p = pool();
    const r = await get(p, f.port);
    expect(await body(r)).toBe('hello, world');
    expect(r.trailers()).toEqual(['X-Trailer', 't']);
    const again = await get(p, f.port);
    expect(await body(again)).toBe('hello, world');
    expect(f.connections).toBe(1);
  });
  it('a body delimited by the end of the connection; not reused', async () => {
    const f = await fake((_i, _r, s) => { s.end('HTTP/1.1 200 OK\r\n\r\nuntil the end'); return undefined; });
    const p = pool();
    expect(await body(await get(p, f.port))).toBe('until the end');
    expect(await body(await get(p, f.port))).toBe('until the end');
    expect(f.connections).toBe(2);
  });
  it('no body for HEAD, 204 and 304, whatever the headers say', async () => {
    const f = await fake((i) => (i === 0 ? 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n' : i === 1 ? 'HTTP/1.1 204 No Content\r\n\r\n' : 'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n'));
    const p = pool();
    expect(await body(await get(p, f.port, { method: 'HEAD' }))).toBe('');
    expect((await get(p, f.port)).status).toBe(204);
    expect((await get(p, f.port)).status).toBe(304);
    expect(f.connections).toBe(1);
  });
  it('skips 1xx responses', async () => {
    const f = await fake(() => 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok', 3);
    const r = await get(pool(), f.port);
    expect(r.status).toBe(201);
    expect(await body(r)).toBe('ok');
  });
  it('Connection: close and HTTP/1.0 responses end the connection', async () => {
    const f = await fake((i) => (i % 2 === 0 ? 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na' : 'HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb'));
    const p = pool();
    await body(await get(p, f.port));
    await body(await get(p, f.port));
    expect(f.connections).toBe(2);
  });
});

describe('flow control', () => {
  it('a large body reaches a slow consumer whole, the backend held back meanwhile', async () => {
    const size = 8 * 1024 * 1024;
    const payload = Buffer.alloc(size, 'x');
    payload.write('begin', 0);
    payload.write('end', size - 3);
    const f = await fake(() => Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`), payload]));
    const p = pool();
    const r = await get(p, f.port);
    let got = 0;
    let first = '';
    let last = '';
    let paused = 0;
    await new Promise<void>((resolve, reject) => {
      r.body.on('data', (c: Buffer) => {
        if (got === 0) first = c.toString('latin1', 0, 5);
        got += c.length;
        last = c.toString('latin1', c.length - 3);
        r.body.pause();
        paused++;
        setTimeout(() => r.body.resume(), 1);
      });
      r.body.on('end', () => resolve());
      r.body.on('error', reject);
    });
    expect(got).toBe(size);
    expect(first).toBe('begin');
    expect(last).toBe('end');
    expect(paused).toBeGreaterThan(10);
    // The connection is reused afterwards.
    expect(await body(await get(p, f.port))).toHaveLength(size);
    expect(f.connections).toBe(1);
  }, 30_000);
});

describe('strictness', () => {
  const bad: [string, string][] = [
    ['a bad status line', 'HTTP/2 200 OK\r\n\r\n'],
    ['a header without a name', 'HTTP/1.1 200 OK\r\n: x\r\n\r\n'],
    ['a header name with a space', 'HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 0\r\n\r\n'],
    ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'],
    ['a negative Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n'],
    ['Content-Length with Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['another HTTP version', 'HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n'],
    ['a 101 to a request that asked for no upgrade', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'],
  ];
  for (const [what, bytes] of bad) {
    it(`refuses ${what}`, async () => {
      const f = await fake(() => bytes);
      await expect(get(pool(), f.port)).rejects.toMatchObject({ kind: 'protocol' });
    });
  }
  it('a bad chunk size breaks the body, and its connection is never reused', async () => {
    const f = await fake((i) => (i === 0 ? 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n' : 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    const p = pool();
    const r = await get(p, f.port);
    await expect(body(r)).rejects.toThrow(/chunk size/);
    expect(await body(await get(p, f.port))).toBe('ok');
    expect(f.connections).toBe(2);
  });
  it('a response whose trailing bytes start another message is delivered, and its connection not reused', async () => {
    const f = await fake((i) => (i === 0 ? 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokH' : 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    const p = pool();
    expect(await body(await get(p, f.port))).toBe('ok');
    expect(await body(await get(p, f.port))).toBe('ok');
    expect(f.connections).toBe(2);
  });
  it('a response longer than announced is cut, and its connection not reused', async () => {
    const f = await fake(() => 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n');
    const p = pool();
    expect(await body(await get(p, f.port))).toBe('ok');
    await get(p, f.port).then(body, () => '');
    expect(f.connections).toBe(2);
  });
});

describe('requests', () => {
  it('sends a buffered body with its length, a streamed one chunked or as declared', async () => {
    const f = await fake(() => 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    const p = pool();
    await get(p, f.port, { method: 'POST', body: Buffer.from('abc'), headers: ['Content-Length', '999'] });
    expect(f.requests[0]).toBe('POST /x HTTP/1.1\r\nHost: h\r\ncontent-length: 3\r\n\r\nabc');
    const s = new PassThrough();
    const pending = get(p, f.port, { method: 'POST', body: s });
    s.write('hello'); s.end(' world');
    await pending;
    expect(f.requests[1]).toBe('POST /x HTTP/1.1\r\nHost: h\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
    const s2 = new PassThrough();
    const p2 = get(p, f.port, { method: 'PUT', body: s2, headers: ['Content-Length', '4'] });
    s2.end('data');
    await p2;
    expect(f.requests[2]).toBe('PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\ndata');
  });
});

describe('errors', () => {
  it('a refused connection is a retryable connect error', async () => {
    const f = await fake(() => '');
    const port = f.port;
    await f.close();
    servers.splice(servers.indexOf(f), 1);
    await expect(get(pool(), port)).rejects.toMatchObject({ kind: 'connect', retryable: true });
  });
  it('a pooled connection the backend closed without answering is a retryable reset', async () => {
    let first = true;
    const f = await fake((_i, _r, s) => {
      if (first) { first = false; return 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na'; }
      s.destroy();
      return undefined;
    });
    const p = pool();
    await body(await get(p, f.port));
    const e = await get(p, f.port).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(H1Error);
    expect(e).toMatchObject({ kind: 'reset', retryable: true });
  });
  it('a reset in the middle of a body errors the body', async () => {
    const f = await fake((_i, _r, s) => { s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial'); setTimeout(() => s.destroy(), 20); return undefined; });
    const r = await get(pool(), f.port);
    await expect(body(r)).rejects.toBeDefined();
  });
  it('idle pooled connections are closed after the idle timeout', async () => {
    const f = await fake(() => 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na');
    const p = pool(100);
    await body(await get(p, f.port));
    expect(p.connections).toBe(1);
    await vi.waitFor(() => expect(p.connections).toBe(0), { timeout: 5000, interval: 10 });
  });
});
