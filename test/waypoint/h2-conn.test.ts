/**
 * The waypoint's own HTTP/2 server (waypoint/proxy/h2-conn.ts, `--http2-server kernway`)
 * at the frame level, beside the nghttp2 path (h2-server.ts) where both should agree:
 * requests RFC 9113 §8.2 calls malformed get the same outcome from both (reset, answered,
 * or connection error); the protocol-abuse limits (concurrent streams, header list size,
 * CONTINUATION floods, rapid reset, PING/SETTINGS/empty-frame floods, stream ids, window
 * overflow, frame sizes, HPACK errors) end in the RST_STREAM or GOAWAY code nghttp2 uses;
 * flow control both ways (responses wait for the caller's windows, request bodies larger
 * than ours arrive whole); PING is answered; and a seeded fuzz run of the frame reader
 * and the HPACK decoder never throws out of the socket handler (bench/waypoint/h2-fuzz.ts
 * runs for minutes).
 */
import http2 from 'node:http2';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { H2Server, type H2Request, type H2Response } from '../../waypoint/proxy/h2-server.js';
import { KwH2Server, type KwH2Request, type KwH2Response } from '../../waypoint/proxy/h2-conn.js';
import {
  answered, block, F, frame, getFields, goawayCode, h2FuzzCases, hello, mulberry32, PREFACE, rawH2, resetCode, settings, T, u32, type RawOutcome,
} from '../../bench/waypoint/h2-fuzz-inputs.js';

const host = '127.0.0.1';
const MAX_HEADER = 4096;
type Req = H2Request | KwH2Request;
type Res = H2Response | KwH2Response;
const held: Res[] = [];

function onRequest(req: Req, res: Res): void {
  const url = req.url;
  if (url === '/echo') {
    const chunks: Buffer[] = [];
    const s = req.stream as NodeJS.ReadableStream;
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => { const n = chunks.reduce((a, c) => a + c.length, 0); res.writeHead(200, ['content-type', 'text/plain']); res.end(String(n)); });
    s.on('error', () => { /* reset */ });
    return;
  }
  if (url === '/hold') { res.writeHead(200, ['content-type', 'text/plain']); res.write('held\n'); held.push(res); return; }
  if (url.startsWith('/big/')) {
    const n = Number(url.slice(5));
    res.writeHead(200, ['content-type', 'application/octet-stream', 'content-length', String(n)]);
    res.end(Buffer.alloc(n, 97));
    return;
  }
  res.writeHead(200, ['content-type', 'text/plain']);
  res.end(`ok ${url}\n`);
}

interface Served { port: number; listener: net.Server; close(): Promise<void> }
async function serve(kind: 'node' | 'kernway'): Promise<Served> {
  const opts = { maxHeaderBytes: MAX_HEADER, idleTimeoutMs: 0, onRequest: onRequest as never };
  const server = kind === 'node' ? new H2Server(opts) : new KwH2Server(opts);
  const listener = net.createServer((s) => server.connection(s));
  await new Promise<void>((resolve) => listener.listen({ host, port: 0 }, resolve));
  return {
    port: (listener.address() as net.AddressInfo).port, listener,
    close: async () => { server.closeSessions(); server.close(); await new Promise<void>((r) => listener.close(() => r())); },
  };
}

let node: Served;
let kw: Served;
beforeAll(async () => { node = await serve('node'); kw = await serve('kernway'); });
afterAll(async () => {
  for (const r of held) r.destroy();
  await node?.close();
  await kw?.close();
});

const req = (id: number, fields: [string, string][], flags = F.END_HEADERS | F.END_STREAM): Buffer => frame(T.HEADERS, flags, id, block(fields));

/** What a caller sees of stream 1 (and the connection): answered, reset code, GOAWAY code. */
function outcome(o: RawOutcome, stream = 1): { answered: boolean; reset: number | undefined; goaway: number | undefined } {
  return { answered: answered(o, stream), reset: resetCode(o, stream), goaway: goawayCode(o) };
}

describe('RFC 9113 §8.2: malformed requests get the outcome nghttp2 gives them', () => {
  const base = getFields('/x');
  const cases: [string, Buffer][] = [
    ['a valid request', req(1, base)],
    ['an upper-case name', req(1, [...base, ['X-Upper', 'v']])],
    ['connection', req(1, [...base, ['connection', 'keep-alive']])],
    ['keep-alive', req(1, [...base, ['keep-alive', 'timeout=5']])],
    ['proxy-connection', req(1, [...base, ['proxy-connection', 'x']])],
    ['transfer-encoding', req(1, [...base, ['transfer-encoding', 'chunked']])],
    ['upgrade', req(1, [...base, ['upgrade', 'h2c']])],
    ['te: gzip', req(1, [...base, ['te', 'gzip']])],
    ['te: trailers', req(1, [...base, ['te', 'trailers']])],
    ['a pseudo-header after a regular one', req(1, [[':method', 'GET'], [':scheme', 'http'], ['x-a', '1'], [':path', '/x']])],
    ['two :path', req(1, [...base, [':path', '/y']])],
    ['no :path', req(1, [[':method', 'GET'], [':scheme', 'http'], [':authority', 'a']])],
    ['no :method', req(1, [[':scheme', 'http'], [':path', '/'], [':authority', 'a']])],
    ['no :scheme', req(1, [[':method', 'GET'], [':path', '/'], [':authority', 'a']])],
    ['an unknown pseudo-header', req(1, [...getFields('/x').slice(0, 4), [':foo', 'bar']])],
    [':status in a request', req(1, [[':status', '200'], ...base])],
    ['an empty :path', req(1, getFields(''))],
    ['a :path without a slash', req(1, getFields('x'))],
    ['OPTIONS *', req(1, [[':method', 'OPTIONS'], [':scheme', 'http'], [':path', '*'], [':authority', 'a']])],
    ['host without :authority', req(1, [[':method', 'GET'], [':scheme', 'http'], [':path', '/x'], ['host', 'h']])],
    ['CONNECT without :authority', req(1, [[':method', 'CONNECT']])],
    ['Content-Length larger than the body', Buffer.concat([req(1, [...getFields('/echo'), ['content-length', '10']], F.END_HEADERS), frame(T.DATA, F.END_STREAM, 1, Buffer.from('abc'))])],
    ['a malformed Content-Length', req(1, [...base, ['content-length', 'x1']])],
    ['trailers with a pseudo-header', Buffer.concat([req(1, getFields('/echo'), F.END_HEADERS), frame(T.DATA, 0, 1, Buffer.from('abc')), req(1, [[':path', '/z']])])],
    ['trailers', Buffer.concat([req(1, getFields('/echo'), F.END_HEADERS), frame(T.DATA, 0, 1, Buffer.from('abc')), req(1, [['x-t', '1']])])],
  ];
  for (const [name, input] of cases) {
    it(name, async () => {
      const [a, b] = await Promise.all([rawH2(host, node.port, hello(input)), rawH2(host, kw.port, hello(input))]);
      expect(outcome(b)).toEqual(outcome(a));
    });
  }

  it('Content-Length smaller than the body: the stream is reset (nghttp2 resets it too, or ends the connection)', async () => {
    const input = hello(req(1, [...getFields('/echo'), ['content-length', '2']], F.END_HEADERS), frame(T.DATA, F.END_STREAM, 1, Buffer.from('abc')));
    const [a, b] = await Promise.all([rawH2(host, node.port, input), rawH2(host, kw.port, input)]);
    expect(answered(a, 1)).toBe(false);
    expect(resetCode(a, 1) ?? goawayCode(a)).toBeDefined();
    expect(outcome(b)).toEqual({ answered: false, reset: 1, goaway: undefined });
  });

  // RFC 9113 §8.2.1 MUSTs that nghttp2, as Node runs it, lets through to the handler: the waypoint's own server resets them.
  const stricter: [string, Buffer][] = [
    ['a value with a NUL', req(1, [...base, ['x-a', 'a\0b']])],
    ['a value with CR LF', req(1, [...base, ['x-a', 'a\r\nb: c']])],
    ['a value with a leading space', req(1, [...base, ['x-a', ' a']])],
    ['a value with a trailing tab', req(1, [...base, ['x-a', 'a\t']])],
    ['a name with a space', req(1, [...base, ['x a', 'b']])],
    ['an empty name', req(1, [...base, ['', 'b']])],
  ];
  for (const [name, input] of stricter) {
    it(`${name}: reset (PROTOCOL_ERROR) where nghttp2 answers`, async () => {
      const [a, b] = await Promise.all([rawH2(host, node.port, hello(input)), rawH2(host, kw.port, hello(input))]);
      expect(outcome(a)).toEqual({ answered: true, reset: undefined, goaway: undefined });
      expect(outcome(b)).toEqual({ answered: false, reset: 1, goaway: undefined });
    });
  }
});

describe('protocol-abuse limits', () => {
  it('PING is answered with its payload', async () => {
    const o = await rawH2(host, kw.port, hello(frame(T.PING, 0, 0, Buffer.from('12345678'))));
    expect(o.frames.find((f) => f.type === T.PING)).toMatchObject({ flags: F.ACK, stream: 0, payload: Buffer.from('12345678') });
    expect(goawayCode(o)).toBeUndefined();
  });

  it('the 101st concurrent stream is refused (REFUSED_STREAM); the others are served', async () => {
    const frames: Buffer[] = [];
    for (let i = 0; i < 101; i++) frames.push(req(1 + 2 * i, getFields('/hold')));
    const o = await rawH2(host, kw.port, hello(...frames), 400);
    expect(resetCode(o, 201)).toBe(7);
    expect(answered(o, 199)).toBe(true);
    expect(goawayCode(o)).toBeUndefined();
  });

  it('a header list above --max-header-bytes is answered 431 (nghttp2 in Node lets it through); the connection goes on', async () => {
    const input = hello(req(1, [...getFields('/x'), ['x-big', 'v'.repeat(MAX_HEADER)]]), req(3, getFields('/after')));
    const [a, b] = await Promise.all([rawH2(host, node.port, input), rawH2(host, kw.port, input)]);
    expect(outcome(a)).toEqual({ answered: true, reset: undefined, goaway: undefined });
    const h = b.frames.find((f) => f.type === T.HEADERS && f.stream === 1)!;
    expect(h.flags & F.END_STREAM).toBe(F.END_STREAM);
    expect(h.payload[0]).toBe(0x08); // :status, a literal with the static table's name (431 is not in the table)
    expect(h.payload.subarray(2, 5).toString()).toBe('431');
    expect(answered(b, 3)).toBe(true);
    // Just under the limit is served.
    const under = await rawH2(host, kw.port, hello(req(1, [...getFields('/x'), ['x-big', 'v'.repeat(MAX_HEADER - 400)]])));
    expect(under.frames.find((f) => f.type === T.DATA && f.stream === 1)?.payload.toString()).toBe('ok /x\n');
  });

  it('a HEADERS on a stream id lower than one already used is ignored, as nghttp2 does', async () => {
    const input = hello(req(5, getFields('/x')), req(3, getFields('/x')));
    const [a, b] = await Promise.all([rawH2(host, node.port, input), rawH2(host, kw.port, input)]);
    expect(outcome(b, 3)).toEqual(outcome(a, 3));
    expect(outcome(b, 3)).toEqual({ answered: false, reset: undefined, goaway: undefined });
    expect(answered(b, 5)).toBe(true);
  });

  it('a header block in more than 8 CONTINUATION frames: GOAWAY ENHANCE_YOUR_CALM', async () => {
    const b = block(getFields('/x', Array.from({ length: 20 }, (_, i) => [`x-${i}`, 'v'] as [string, string])));
    const parts = [frame(T.HEADERS, F.END_STREAM, 1, b.subarray(0, 5))];
    for (let i = 5; i < b.length; i += 5) parts.push(frame(T.CONTINUATION, i + 5 >= b.length ? F.END_HEADERS : 0, 1, b.subarray(i, i + 5)));
    const o = await rawH2(host, kw.port, hello(...parts));
    expect(goawayCode(o)).toBe(11);
    expect(o.closed).toBe(true);
  });

  it('rapid reset (CVE-2023-44487): streams opened and reset in a burst end in GOAWAY ENHANCE_YOUR_CALM', async () => {
    const frames: Buffer[] = [];
    for (let i = 0; i < 1100; i++) frames.push(req(1 + 2 * i, getFields('/hold')), frame(T.RST_STREAM, 0, 1 + 2 * i, u32(8)));
    const o = await rawH2(host, kw.port, hello(...frames), 400);
    expect(goawayCode(o)).toBe(11);
    expect(o.closed).toBe(true);
  });

  for (const [name, f] of [['PING', frame(T.PING, 0, 0, Buffer.alloc(8))], ['SETTINGS', settings([[3, 100]])], ['empty DATA', frame(T.DATA, 0, 1, Buffer.alloc(0))]] as const) {
    it(`a ${name} flood: GOAWAY ENHANCE_YOUR_CALM`, async () => {
      const open = name === 'empty DATA' ? [req(1, getFields('/echo'), F.END_HEADERS)] : [];
      const o = await rawH2(host, kw.port, hello(...open, ...Array.from({ length: 1500 }, () => f)), 400);
      expect(goawayCode(o)).toBe(11);
      expect(o.closed).toBe(true);
    });
  }

  const connErrors: [string, Buffer, number][] = [
    ['an even stream id', req(2, getFields('/x')), 1],
    ['a connection window past 2^31-1', frame(T.WINDOW_UPDATE, 0, 0, u32(0x7fffffff)), 3],
    ['a WINDOW_UPDATE of 0 on the connection', frame(T.WINDOW_UPDATE, 0, 0, u32(0)), 1],
    ['SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1', settings([[4, 0x80000000]]), 3],
    ['SETTINGS_MAX_FRAME_SIZE below 16384', settings([[5, 100]]), 1],
    ['SETTINGS_ENABLE_PUSH 2', settings([[2, 2]]), 1],
    ['SETTINGS with a length not a multiple of 6', frame(T.SETTINGS, 0, 0, Buffer.alloc(5)), 6],
    ['a frame larger than SETTINGS_MAX_FRAME_SIZE', frame(T.HEADERS, F.END_HEADERS, 1, Buffer.alloc(16385)), 6],
    ['a PING of 7 bytes', frame(T.PING, 0, 0, Buffer.alloc(7)), 6],
    ['a PING on a stream', frame(T.PING, 0, 1, Buffer.alloc(8)), 1],
    ['PUSH_PROMISE from the client', frame(T.PUSH_PROMISE, F.END_HEADERS, 1, Buffer.alloc(8)), 1],
    ['DATA on stream 0', frame(T.DATA, 0, 0, Buffer.from('x')), 1],
    ['DATA on an idle stream', frame(T.DATA, 0, 7, Buffer.from('x')), 1],
    ['CONTINUATION without HEADERS', frame(T.CONTINUATION, F.END_HEADERS, 1, block(getFields('/x'))), 1],
    ['a HEADERS interrupted by another frame', Buffer.concat([frame(T.HEADERS, 0, 1, block(getFields('/x'))), frame(T.PING, 0, 0, Buffer.alloc(8))]), 1],
    ['an HPACK index past the tables', frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, Buffer.from([0xff, 0x7f])), 9],
    ['a table size update above 4096', frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, Buffer.from([0x3f, 0xe2, 0x1f, 0x82])), 9],
    ['DATA past the windows', Buffer.concat([req(1, getFields('/hold'), F.END_HEADERS), ...Array.from({ length: 5 }, () => frame(T.DATA, 0, 1, Buffer.alloc(16384)))]), 3],
  ];
  for (const [name, input, code] of connErrors) {
    it(`${name}: GOAWAY ${code}, then the close`, async () => {
      const o = await rawH2(host, kw.port, hello(input));
      expect(goawayCode(o)).toBe(code);
      expect(o.closed).toBe(true);
    });
  }

  it('a first frame that is not SETTINGS: GOAWAY PROTOCOL_ERROR', async () => {
    const o = await rawH2(host, kw.port, Buffer.concat([PREFACE, frame(T.PING, 0, 0, Buffer.alloc(8))]));
    expect(goawayCode(o)).toBe(1);
    expect(o.closed).toBe(true);
  });

  it('a stream window past 2^31-1: RST_STREAM FLOW_CONTROL_ERROR; the connection goes on', async () => {
    const o = await rawH2(host, kw.port, hello(req(1, getFields('/hold')), frame(T.WINDOW_UPDATE, 0, 1, u32(0x7fffffff)), req(3, getFields('/after'))));
    expect(resetCode(o, 1)).toBe(3);
    expect(answered(o, 3)).toBe(true);
    expect(goawayCode(o)).toBeUndefined();
  });
});

describe('flow control', () => {
  it('a response waits for the caller\'s stream window, and goes on after WINDOW_UPDATE', async () => {
    const s = net.connect({ host, port: kw.port });
    const data: number[] = [];
    let buf = Buffer.alloc(0);
    let ended = false;
    const got = new Promise<void>((resolve) => {
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 9) {
          const n = buf.readUIntBE(0, 3);
          if (buf.length < 9 + n) break;
          if (buf[3] === T.DATA && (buf.readUInt32BE(5) & 0x7fffffff) === 1) { data.push(n); if (buf[4]! & F.END_STREAM) { ended = true; resolve(); } }
          buf = buf.subarray(9 + n);
        }
      });
    });
    s.write(Buffer.concat([PREFACE, settings([[4, 100]]), req(1, getFields('/big/1000'))]));
    await expect.poll(() => data.reduce((a, b) => a + b, 0)).toBe(100);
    await new Promise((r) => setTimeout(r, 50));
    expect(data.reduce((a, b) => a + b, 0)).toBe(100);
    expect(ended).toBe(false);
    s.write(frame(T.WINDOW_UPDATE, 0, 1, u32(900)));
    await got;
    expect(data.reduce((a, b) => a + b, 0)).toBe(1000);
    s.destroy();
  });

  it('with Node\'s client: request and response bodies far larger than the windows, on several streams at once', async () => {
    const c = http2.connect(`http://${host}:${kw.port}`);
    try {
      const post = (n: number): Promise<string> => new Promise((resolve, reject) => {
        const st = c.request({ ':method': 'POST', ':path': '/echo' });
        let body = '';
        st.setEncoding('utf8');
        st.on('data', (d: string) => { body += d; });
        st.on('end', () => resolve(body));
        st.on('error', reject);
        st.end(Buffer.alloc(n, 1));
      });
      const get = (n: number): Promise<number> => new Promise((resolve, reject) => {
        const st = c.request({ ':path': `/big/${n}` }, { endStream: true });
        let len = 0;
        st.on('data', (d: Buffer) => { len += d.length; });
        st.on('end', () => resolve(len));
        st.on('error', reject);
      });
      expect(await Promise.all([post(1_000_000), post(70_000), get(2_000_000), get(65_536), post(0)])).toEqual(['1000000', '70000', 2_000_000, 65_536, '0']);
    } finally {
      c.close();
    }
  });
});

describe('fuzzing (seeded, short; bench/waypoint/h2-fuzz.ts runs for minutes)', () => {
  it('random and mutated frames: the server never throws out of the socket handler, answers or closes, and keeps serving', async () => {
    const rand = mulberry32(4242);
    const errors: unknown[] = [];
    const onError = (e: unknown): void => { errors.push(e); };
    process.on('uncaughtException', onError);
    try {
      for (const input of h2FuzzCases(rand, 150)) {
        const o = await rawH2(host, kw.port, input, 60);
        // Whatever came back is well-formed frames; a GOAWAY carries a known error code.
        const code = goawayCode(o);
        if (code !== undefined) expect(code).toBeLessThanOrEqual(13);
      }
    } finally {
      process.off('uncaughtException', onError);
    }
    expect(errors.map((e) => String((e as Error).stack ?? e))).toEqual([]);
    const o = await rawH2(host, kw.port, hello(req(1, getFields('/alive'))));
    expect(answered(o, 1)).toBe(true);
  }, 60_000);
});
