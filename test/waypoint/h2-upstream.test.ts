/**
 * waypoint/proxy/upstream.ts, h2c backends: each request's outcome is told to its sink
 * once (the response with its body and trailers, or an UpstreamError of the right kind), and
 * a closed stream lets go of the request (nothing of it stays reachable from the stream
 * V8 may keep a while longer). Real HTTP/2 servers on loopback.
 */
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compactHeap } from '../../common/heap.js';
import { endpoint } from '../../waypoint/routing/backends.js';
import { AsyncLocalStorage, AsyncResource, executionAsyncId } from 'node:async_hooks';
import { UpstreamError, UpstreamPool, leanAsyncResourceBind, type UpstreamRequest, type UpstreamResponse } from '../../waypoint/proxy/upstream.js';

let server: http2.Http2Server;
/** Larger than the body's queue limit (64 KiB) and the stream's flow-control window. */
const BIG = 300 * 1024;
let port = 0;
const streams: http2.ServerHttp2Stream[] = [];

beforeAll(async () => {
  server = http2.createServer();
  server.on('stream', (stream, headers, _flags, rawHeaders: string[]) => {
    streams.push(stream);
    if (headers[':path'] === '/raw') {
      stream.respond({ ':status': 200 });
      stream.end(JSON.stringify(rawHeaders));
      return;
    }
    stream.on('error', () => { /* the reset ones */ });
    const path = headers[':path'] ?? '';
    if (path === '/reset') { stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR); return; }
    if (path === '/hang') return; // never answers
    if (path === '/half') {
      // A head and part of the body, then a reset.
      stream.respond({ ':status': 200 });
      stream.write('half');
      setTimeout(() => stream.destroy(new Error('cut')), 20); // RST_STREAM INTERNAL_ERROR
      return;
    }
    if (path === '/big') {
      stream.respond({ ':status': 200, 'content-length': String(BIG) });
      stream.end(Buffer.alloc(BIG, 120));
      return;
    }
    stream.respond({ ':status': 201, 'x-seen-authority': String(headers[':authority']), 'x-seen-te': String(headers.te ?? '') }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(`body of ${path}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  for (const s of streams) if (!s.closed) s.close();
  await new Promise<void>((r) => server.close(() => r()));
});

function request(path: string, p = port): UpstreamRequest {
  return { endpoint: endpoint('127.0.0.1', p, undefined), protocol: 'h2c', method: 'GET', path, headers: ['Host', 'shop.example', 'TE', 'trailers', 'x-a', '1'], body: undefined };
}

interface Outcome { responses: UpstreamResponse[]; errors: unknown[] }

/** Sends through the sink API; resolves once an outcome came (and a turn more, to see that no second one follows). */
function send(pool: UpstreamPool, r: UpstreamRequest, abortAfterSend = false): Promise<Outcome & { call: { abort(): void } }> {
  const o: Outcome = { responses: [], errors: [] };
  return new Promise((resolve) => {
    const told = (): void => { setTimeout(() => resolve({ ...o, call }), 20); };
    const call = pool.send(r, { onResponse: (up) => { o.responses.push(up); told(); }, onError: (e) => { o.errors.push(e); told(); } });
    if (abortAfterSend) call.abort();
  });
}

function readBody(up: UpstreamResponse): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const b = up.body as unknown as NodeJS.ReadableStream;
    b.on('data', (c: Buffer) => chunks.push(c));
    b.on('end', () => resolve(Buffer.concat(chunks).toString()));
    b.on('error', reject);
  });
}

/** The Node stream behind a response (the body is a LiteBody the exchange feeds from it). */
function streamOf(up: UpstreamResponse): http2.ClientHttp2Stream {
  const st = (up as unknown as { stream?: http2.ClientHttp2Stream }).stream;
  expect(st?.constructor.name).toBe('ClientHttp2Stream');
  return st!;
}

function closedStream(stream: http2.ClientHttp2Stream): Promise<void> {
  return new Promise<void>((r) => { if (stream.closed) r(); else stream.once('close', () => r()); });
}

/** The symbols a stream carries that name a kernway exchange. */
function exchangeOf(stream: object): unknown {
  const sym = Object.getOwnPropertySymbols(stream).find((s) => s.description === 'kernway.h2.exchange');
  return sym === undefined ? undefined : (stream as Record<symbol, unknown>)[sym];
}

describe('h2c backends through UpstreamPool.send', () => {
  it('the request head: Host as :authority (the last one), repeated fields as separate fields in order, TE only as trailers', async () => {
    const pool = new UpstreamPool({ maxIdlePerEndpoint: 4, idleTimeoutMs: 60_000, connectTimeoutMs: 5000 });
    try {
      const o = await send(pool, { ...request('/raw'), method: 'GET', headers: ['Host', 'a.example', 'X-Multi', '1', 'TE', 'gzip', 'x-multi', '2', 'Host', 'shop.example', 'Content-Type', 'text/plain'] });
      expect(o.errors).toEqual([]);
      const raw = JSON.parse(await readBody(o.responses[0]!)) as string[];
      const pairs = (name: string): string[] => raw.filter((_, i) => i % 2 === 1 && raw[i - 1] === name);
      expect(pairs(':method')).toEqual(['GET']);
      expect(pairs(':path')).toEqual(['/raw']);
      expect(pairs(':scheme')).toEqual(['http']);
      expect(pairs(':authority')).toEqual(['shop.example']);
      expect(pairs('x-multi')).toEqual(['1', '2']);
      expect(pairs('content-type')).toEqual(['text/plain']);
      expect(pairs('te')).toEqual([]);
      expect(pairs('host')).toEqual([]);
    } finally {
      pool.close();
    }
  });

  it('tells the response once, with its head (no pseudo-headers), body and trailers; the closed stream lets go of the exchange', async () => {
    const pool = new UpstreamPool({ maxIdlePerEndpoint: 4, idleTimeoutMs: 60_000, connectTimeoutMs: 5000 });
    try {
      const o = await send(pool, request('/items/1'));
      expect(o.errors).toEqual([]);
      expect(o.responses).toHaveLength(1);
      const up = o.responses[0]!;
      expect(up.status).toBe(201);
      expect(up.headers.filter((_, i) => i % 2 === 0).some((n) => n.startsWith(':'))).toBe(false);
      expect(up.headers).toEqual(expect.arrayContaining(['x-seen-authority', 'shop.example', 'x-seen-te', 'trailers']));
      const stream = streamOf(up);
      expect(await readBody(up)).toBe('body of /items/1');
      await closedStream(stream);
      expect(up.trailers()).toEqual(['grpc-status', '0']);
      expect(exchangeOf(stream)).toBeUndefined();
    } finally {
      pool.close();
    }
  });

  it("the body's consumer listens on the body, not on Node's stream: a closed stream keeps none of its listeners", async () => {
    const pool = new UpstreamPool({ maxIdlePerEndpoint: 4, idleTimeoutMs: 60_000, connectTimeoutMs: 5000 });
    try {
      const refs = await (async () => {
        const o = await send(pool, request('/items/4'));
        const up = o.responses[0]!;
        const stream = streamOf(up);
        // The consumer: a record its listeners close over, as the handler's relay does.
        const consumer = { chunks: [] as Buffer[], ended: false };
        const onData = (c: Buffer): void => { consumer.chunks.push(c); };
        up.body.on('data', onData);
        await new Promise<void>((r) => up.body.once('end', () => { consumer.ended = true; r(); }));
        expect(Buffer.concat(consumer.chunks).toString()).toBe('body of /items/4');
        expect(stream.listeners('data')).not.toContain(onData);
        await closedStream(stream);
        return { stream, consumer: new WeakRef(consumer) };
      })();
      await new Promise((res) => setTimeout(res, 10)); // WeakRefs made in a job hold until it ends
      compactHeap();
      expect(refs.stream.closed).toBe(true); // the stream itself is still held here
      expect(refs.consumer.deref()).toBeUndefined();
    } finally {
      pool.close();
    }
  });

  it('a body cut short by a reset after the response head: the consumer hears the close without an end', async () => {
    const pool = new UpstreamPool({ maxIdlePerEndpoint: 4, idleTimeoutMs: 60_000, connectTimeoutMs: 5000 });
    try {
      const o = await send(pool, request('/half'));
      const up = o.responses[0]!;
      expect(up.status).toBe(200);
      const events: string[] = [];
      up.body.on('data', (c: Buffer) => events.push(`data:${c.toString()}`));
      up.body.on('end', () => events.push('end'));
      up.body.on('error', () => events.push('error'));
      await new Promise<void>((r) => up.body.once('close', () => { events.push('close'); r(); }));
      expect(events).toContain('data:half');
      expect(events).toContain('error');
      expect(events).not.toContain('end');
      expect(events[events.length - 1]).toBe('close');
      expect(up.body.readableEnded).toBe(false);
    } finally {
      pool.close();
    }
  });

  it('a slow consumer pauses the stream and gets every byte (back-pressure through the body)', async () => {
    const pool = new UpstreamPool({ maxIdlePerEndpoint: 4, idleTimeoutMs: 60_000, connectTimeoutMs: 5000 });
    try {
      const o = await send(pool, request('/big'));
      const up = o.responses[0]!;
      up.body.pause();
      await new Promise((r) => setTimeout(r, 50)); // the body queues, then the stream is paused
      const stream = streamOf(up);
      expect(stream.isPaused()).toBe(true);
      let n = 0;
      up.body.on('data', (c: Buffer) => { n += c.length; });
      up.body.resume();
      await new Promise<void>((r) => up.body.once('end', () => r()));
      expect(n).toBe(BIG);
    } finally {
      pool.close();
    }
  });

  it('a closed stream does not keep its request alive (V8 may keep closed streams a while)', async () => {
    const pool = new UpstreamPool({ maxIdlePerEndpoint: 4, idleTimeoutMs: 60_000, connectTimeoutMs: 5000 });
    try {
      const refs = await (async () => {
        const r = request('/items/3');
        let resolveUp!: (u: UpstreamResponse) => void;
        const got = new Promise<UpstreamResponse>((res) => { resolveUp = res; });
        const sink = { onResponse: (u: UpstreamResponse): void => resolveUp(u), onError: (e: unknown): void => { throw e; } };
        pool.send(r, sink);
        const up = await got;
        const stream = streamOf(up);
        expect(await readBody(up)).toBe('body of /items/3');
        await closedStream(stream);
        return { stream, request: new WeakRef(r) };
      })();
      await new Promise((res) => setTimeout(res, 10)); // WeakRefs made in a job hold until it ends
      compactHeap();
      expect(refs.stream.closed).toBe(true); // the stream itself is still held here
      expect(refs.request.deref()).toBeUndefined();
    } finally {
      pool.close();
    }
  });

  it('a stream reset before its response is a reset error, told once', async () => {
    const pool = new UpstreamPool({ maxIdlePerEndpoint: 4, idleTimeoutMs: 60_000, connectTimeoutMs: 5000 });
    try {
      const o = await send(pool, request('/reset'));
      expect(o.responses).toEqual([]);
      expect(o.errors).toHaveLength(1);
      expect(o.errors[0]).toBeInstanceOf(UpstreamError);
      expect((o.errors[0] as UpstreamError).kind).toBe('reset');
    } finally {
      pool.close();
    }
  });

  it('aborted before its response: one reset error, and the backend sees the stream cancelled', async () => {
    const pool = new UpstreamPool({ maxIdlePerEndpoint: 4, idleTimeoutMs: 60_000, connectTimeoutMs: 5000 });
    try {
      const before = streams.length;
      const o = await send(pool, request('/hang'), true);
      expect(o.responses).toEqual([]);
      expect(o.errors).toHaveLength(1);
      expect((o.errors[0] as UpstreamError).kind).toBe('reset');
      expect((o.errors[0] as UpstreamError).retryable).toBe(false);
      // If the request reached the backend at all, its stream there ends.
      for (const s of streams.slice(before)) await new Promise<void>((r) => { if (s.closed) r(); else s.once('close', () => r()); });
    } finally {
      pool.close();
    }
  });

  it('a backend that refuses the connection is a connect error (retryable elsewhere)', async () => {
    // A port that was free a moment ago: nothing listens on it.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const closedPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const pool = new UpstreamPool({ maxIdlePerEndpoint: 4, idleTimeoutMs: 60_000, connectTimeoutMs: 5000 });
    try {
      const o = await send(pool, request('/x', closedPort));
      expect(o.responses).toEqual([]);
      expect(o.errors).toHaveLength(1);
      expect((o.errors[0] as UpstreamError).kind).toBe('connect');
      expect((o.errors[0] as UpstreamError).retryable).toBe(true);
    } finally {
      pool.close();
    }
  });

  it('request() (the promise form, for mirrors) gives the same response', async () => {
    const pool = new UpstreamPool({ maxIdlePerEndpoint: 4, idleTimeoutMs: 60_000, connectTimeoutMs: 5000 });
    try {
      const up = await pool.request(request('/items/2')).response;
      expect(up.status).toBe(201);
      expect(await readBody(up)).toBe('body of /items/2');
    } finally {
      pool.close();
    }
  });
});

describe("AsyncResource.prototype.bind in the waypoint's process (Node's http2 request() binds through it)", () => {
  it('runs the function in the resource\'s async scope and context, with this, arguments and length as Node\'s; no deprecated asyncResource accessor', () => {
    leanAsyncResourceBind();
    const als = new AsyncLocalStorage<string>();
    const r = als.run('the store', () => new AsyncResource('Test'));
    function f(this: unknown, a: number, b: number): unknown { return { self: this, sum: a + b, id: executionAsyncId(), store: als.getStore() }; }
    const bound = r.bind(f);
    expect(bound.length).toBe(2);
    expect(Object.getOwnPropertyNames(bound)).not.toContain('asyncResource');
    const holder = { m: bound };
    expect(holder.m(1, 2)).toEqual({ self: holder, sum: 3, id: r.asyncId(), store: 'the store' });
    const withThis = (r as unknown as { bind(fn: typeof f, thisArg: unknown): typeof f }).bind(f, 'fixed');
    expect(withThis(2, 3)).toEqual({ self: 'fixed', sum: 5, id: r.asyncId(), store: 'the store' });
    expect(() => r.bind(42 as unknown as () => void)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    // The static form goes through it too.
    expect(Object.getOwnPropertyNames(AsyncResource.bind(() => 1))).not.toContain('asyncResource');
  });
});
