/**
 * The same h2c requests through two waypoints, one on each HTTP/2 server
 * (`--http2-server node`: nghttp2; `kernway`: waypoint/proxy/h2-conn.ts): the backend must
 * receive the same request (method, target, raw header list in order, body bytes, whether
 * it was cut short) and the caller the same response (status, header list in order with
 * Date aside, body, trailers, or the same kind of failure). Methods, repeated and cookie
 * headers, bodies with and without a length and past the 65,535-byte windows both ways,
 * Expect: 100-continue, trailers from a chunked HTTP/1.1 body, gRPC over an h2c backend
 * (unary, trailers-only errors, server streaming), the waypoint's own answers, a backend
 * that dies mid-body (the one difference: the waypoint's own server resets the caller's
 * stream with INTERNAL_ERROR, nghttp2 with NO_ERROR, which a caller reads as a clean end),
 * and a caller that resets its stream mid-body.
 */
import http from 'node:http';
import http2 from 'node:http2';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { ManifestDirSource } from '../../waypoint/config/source.js';
import { parseWaypointArgs, withLogger } from '../../waypoint/options.js';
import { Waypoint } from '../../waypoint/waypoint.js';
import { block, F, frame, goawayCode, h2FuzzCases, hello, mulberry32, rawH2, T } from '../../bench/waypoint/h2-fuzz-inputs.js';
import { baseManifests, gatewayRoute, type RigAddresses } from './fixtures/rig.js';

const base = `127.85.${10 + (process.pid % 200)}`;
const H1 = `${base}.10`;
const GRPC = `${base}.11`;
const GW = { node: `${base}.1`, kernway: `${base}.2` } as const;
type Engine = keyof typeof GW;

/** What the HTTP/1.1 backend received, by X-Case header (each request carries its case name). */
interface Seen { method: string; url: string; version: string; raw: string[]; body: string; aborted: boolean }
const seen = new Map<string, Seen>();
/** The hop's own span id in traceparent is new on every request: masked (the trace id, sent by the caller, is compared). */
function hopSpan(v: string): string {
  return /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/.test(v) ? `${v.slice(0, 36)}<span>${v.slice(52)}` : v;
}
const seenGrpc = new Map<string, { headers: string[]; body: string }>();
let h1: http.Server;
let h2: http2.Http2Server;
const wps: Waypoint[] = [];
let dir = '';

beforeAll(async () => {
  h1 = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    const key = `${String(req.headers['x-case'])}@${String(req.headers['x-engine'])}`;
    const record = (aborted: boolean): void => {
      // The engine's name is the one thing that differs: left out of what is compared.
      const raw = req.rawHeaders.filter((_, i, a) => a[i - (i % 2)]!.toLowerCase() !== 'x-engine').map(hopSpan);
      seen.set(key, { method: req.method!, url: req.url!, version: req.httpVersion, raw, body: Buffer.concat(chunks).toString('base64'), aborted });
    };
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('aborted', () => record(true));
    req.on('end', () => {
      record(false);
      const path = req.url ?? '';
      if (path.startsWith('/web/trailers')) {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('part one,');
        res.write('part two');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end();
      } else if (path.startsWith('/web/big')) {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(300_000) });
        for (let i = 0; i < 300; i++) res.write(Buffer.alloc(1000, i & 255));
        res.end();
      } else if (path.startsWith('/web/status/')) {
        const st = Number(path.slice(12, 15));
        res.writeHead(st, ['X-Status', String(st), 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', ...(st === 204 || st === 304 ? [] : ['Content-Length', '3'])]);
        res.end(st === 204 || st === 304 ? undefined : 'abc');
      } else if (path.startsWith('/web/die')) {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
        res.write('only part of it');
        setTimeout(() => res.socket?.destroy(), 20);
      } else if (path.startsWith('/web/slow')) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first');
        setTimeout(() => res.end('last'), 30);
      } else {
        const body = Buffer.concat(chunks);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-mixed-Case': 'Value', 'x-length': String(body.length) });
        res.end(req.method === 'HEAD' ? undefined : body);
      }
    });
  });
  h2 = http2.createServer();
  h2.on('stream', (stream, headers, _flags, rawHeaders: string[]) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const key = `${String(headers['x-case'])}@${String(headers['x-engine'])}`;
      seenGrpc.set(key, { headers: rawHeaders.filter((_, i, a) => a[i - (i % 2)] !== 'x-engine').map(hopSpan), body: Buffer.concat(chunks).toString('base64') });
      const path = headers[':path'];
      if (path === '/pkg.Svc/Fail') stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '7', 'grpc-message': 'no thanks' }, { endStream: true });
      else if (path === '/pkg.Svc/Stream') {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-trail': 'yes' }));
        for (let i = 1; i <= 5; i++) stream.write(Buffer.from([0, 0, 0, 0, 1, 48 + i]));
        stream.end();
      } else {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-meta': 'm' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.from([0, 0, 0, 0, 2, 104, 105]));
      }
    });
  });
  await new Promise<void>((resolve, reject) => { h1.once('error', reject); h1.listen({ host: H1, port: 8080, exclusive: true }, resolve); });
  await new Promise<void>((resolve, reject) => { h2.once('error', reject); h2.listen({ host: GRPC, port: 8080, exclusive: true }, resolve); });
  dir = mkdtempSync(join(tmpdir(), 'kw-h2-diff-'));
  for (const engine of ['node', 'kernway'] as const) {
    const manifests = join(dir, engine);
    mkdirSync(manifests);
    const a: RigAddresses = { gateway: GW[engine], pods: { web: [H1], grpc: [GRPC] }, outside: `${base}.3`, caller: (i) => `${base}.${200 + i}` };
    writeFileSync(join(manifests, 'config.yaml'), baseManifests(a, 'ns', { appProtocol: { grpc: 'kubernetes.io/h2c' } }) + gatewayRoute('main', `  - matches: [{path: {type: PathPrefix, value: /pkg.Svc}}]
    backendRefs: [{name: grpc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /web}}]
    backendRefs: [{name: web, port: 80}]`));
    const opts = parseWaypointArgs(['--namespace', 'ns', '--manifests', manifests, '--listen-address', GW[engine], '--mesh-port', '0', '--metrics-address', 'off',
      '--access-log', 'off', '--http2-server', engine]);
    const log = createLogger('kernway-waypoint-test', process.env.KERNWAY_LOG_LEVEL ?? 'silent');
    wps.push(await Waypoint.start({ ...withLogger(opts, log), drainTimeoutMs: 500 }, new ManifestDirSource(manifests, { log, debounceMs: 10 })));
  }
}, 30_000);

afterAll(async () => {
  for (const w of wps) await w.stop(0);
  await new Promise<void>((r) => { if (h1) h1.close(() => r()); else r(); });
  await new Promise<void>((r) => { if (h2) h2.close(() => r()); else r(); });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Reply { status: number; raw: string[]; body: string; trailers: string[] | undefined; error: string | undefined; endAfterHeaders: boolean }

interface Ask { headers: http2.OutgoingHttpHeaders; body?: Buffer | Buffer[]; waitForContinue?: boolean; resetAfter?: number; trailers?: Record<string, string> }

/** One exchange with the waypoint of `engine`; the header list without Date (which changes with the second). */
function ask(engine: Engine, name: string, a: Ask): Promise<Reply> {
  return new Promise((resolve) => {
    const session = http2.connect(`http://${GW[engine]}:8080`);
    session.on('error', () => { /* the stream reports it */ });
    const hasBody = a.body !== undefined;
    const st = session.request({ ':authority': 'test.example', 'x-case': name, 'x-engine': engine, 'x-request-id': `id-${name}`,
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', ...a.headers },
      { endStream: !hasBody, waitForTrailers: a.trailers !== undefined });
    let status = 0;
    let raw: string[] = [];
    let trailers: string[] | undefined;
    let endAfterHeaders = false;
    const chunks: Buffer[] = [];
    const done = (error: string | undefined): void => {
      session.close();
      resolve({ status, raw: raw.filter((_, i, x) => x[i - (i % 2)] !== 'date'), body: Buffer.concat(chunks).toString('base64'), trailers, error, endAfterHeaders });
    };
    st.on('response', (_h, flags, rawHeaders: string[]) => { status = Number(_h[':status']); raw = rawHeaders; endAfterHeaders = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0; });
    st.on('trailers', (_t, _f, rawTrailers: string[]) => { trailers = rawTrailers; });
    st.on('data', (c: Buffer) => chunks.push(c));
    st.on('end', () => done(undefined));
    st.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? 'error'));
    if (a.trailers) st.once('wantTrailers', () => st.sendTrailers(a.trailers!));
    if (!hasBody) return;
    const parts = Array.isArray(a.body) ? a.body : [a.body!];
    const send = (): void => {
      if (a.resetAfter !== undefined) {
        st.write(parts[0]!);
        setTimeout(() => st.close(http2.constants.NGHTTP2_CANCEL), a.resetAfter);
        return;
      }
      for (let i = 0; i < parts.length - 1; i++) st.write(parts[i]!);
      st.end(parts[parts.length - 1]);
    };
    if (a.waitForContinue) st.once('continue', send); else send();
  });
}

const BIG = Buffer.alloc(200_000);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 7) & 255;

const CASES: [string, Ask][] = [
  ['get', { headers: { ':path': '/web/a?x=1&y=%20', 'accept': 'text/plain', 'user-agent': 'diff/1' } }],
  ['head', { headers: { ':method': 'HEAD', ':path': '/web/head' } }],
  ['delete', { headers: { ':method': 'DELETE', ':path': '/web/d' } }],
  ['options', { headers: { ':method': 'OPTIONS', ':path': '/web/o' } }],
  ['repeated', { headers: { ':path': '/web/rep', 'x-multi': ['a', 'b', 'c'], 'cookie': ['c1=1', 'c2=2'], 'x-forwarded-for': '10.1.2.3', 'te': 'trailers' } }],
  ['post-small', { headers: { ':method': 'POST', ':path': '/web/p', 'content-type': 'text/plain', 'content-length': '5' }, body: Buffer.from('hello') }],
  ['post-big', { headers: { ':method': 'POST', ':path': '/web/big-up', 'content-length': String(BIG.length) }, body: BIG }],
  ['post-chunks-no-length', { headers: { ':method': 'PUT', ':path': '/web/chunks' }, body: [BIG.subarray(0, 70_000), BIG.subarray(70_000, 140_000), BIG.subarray(140_000)] }],
  ['post-empty', { headers: { ':method': 'POST', ':path': '/web/empty', 'content-length': '0' }, body: Buffer.alloc(0) }],
  ['expect-continue', { headers: { ':method': 'POST', ':path': '/web/cont', 'expect': '100-continue' }, body: Buffer.from('after continue'), waitForContinue: true }],
  ['request-trailers', { headers: { ':method': 'POST', ':path': '/web/rt' }, body: Buffer.from('body'), trailers: { 'x-req-trailer': '1' } }],
  ['response-trailers', { headers: { ':path': '/web/trailers' } }],
  ['response-big', { headers: { ':path': '/web/big' } }],
  ['status-201', { headers: { ':path': '/web/status/201' } }],
  ['status-204', { headers: { ':path': '/web/status/204' } }],
  ['status-304', { headers: { ':path': '/web/status/304' } }],
  ['status-404', { headers: { ':path': '/web/status/404' } }],
  ['status-503', { headers: { ':path': '/web/status/503' } }],
  ['streamed', { headers: { ':path': '/web/slow' } }],
  ['no-route', { headers: { ':path': '/nowhere' } }],
  ['grpc-unary', { headers: { ':method': 'POST', ':path': '/pkg.Svc/Say', 'content-type': 'application/grpc', 'te': 'trailers', 'grpc-timeout': '5S' }, body: Buffer.from([0, 0, 0, 0, 3, 1, 2, 3]) }],
  ['grpc-error', { headers: { ':method': 'POST', ':path': '/pkg.Svc/Fail', 'content-type': 'application/grpc', 'te': 'trailers' }, body: Buffer.from([0, 0, 0, 0, 0]) }],
  ['grpc-stream', { headers: { ':method': 'POST', ':path': '/pkg.Svc/Stream', 'content-type': 'application/grpc', 'te': 'trailers' }, body: Buffer.from([0, 0, 0, 0, 0]) }],
];

describe('the same requests through both HTTP/2 servers', () => {
  for (const [name, a] of CASES) {
    it(name, async () => {
      const [n, k] = [await ask('node', name, a), await ask('kernway', name, a)];
      expect(k).toEqual(n);
      const bn = seen.get(`${name}@node`) ?? seenGrpc.get(`${name}@node`);
      const bk = seen.get(`${name}@kernway`) ?? seenGrpc.get(`${name}@kernway`);
      expect(bk).toEqual(bn);
      if (name !== 'no-route') expect(bk).toBeDefined();
    });
  }

  it('a backend that dies mid-body: the same head and bytes; kernway resets the stream with INTERNAL_ERROR where nghttp2 sends NO_ERROR (the caller sees a clean end)', async () => {
    const a: Ask = { headers: { ':path': '/web/die' } };
    const [n, k] = [await ask('node', 'die', a), await ask('kernway', 'die', a)];
    expect({ ...k, error: undefined }).toEqual({ ...n, error: undefined });
    expect(n.error).toBeUndefined();
    expect(k.error).toBe('ERR_HTTP2_STREAM_ERROR');
    expect(seen.get('die@kernway')).toEqual(seen.get('die@node'));
  });

  it('a caller that resets its stream mid-body: the backend sees the request cut short, the same on both', async () => {
    const a: Ask = { headers: { ':method': 'POST', ':path': '/web/reset', 'content-length': String(BIG.length) }, body: BIG.subarray(0, 30_000), resetAfter: 50 };
    const [n, k] = [await ask('node', 'reset', a), await ask('kernway', 'reset', a)];
    expect(k.error).toBe(n.error);
    expect(k.status).toBe(n.status);
    await expect.poll(() => seen.get('reset@kernway')?.aborted).toBe(true);
    await expect.poll(() => seen.get('reset@node')?.aborted).toBe(true);
    const bn = seen.get('reset@node')!;
    const bk = seen.get('reset@kernway')!;
    expect({ ...bk, body: '' }).toEqual({ ...bn, body: '' });
    expect(Buffer.from(bk.body, 'base64').length).toBeLessThanOrEqual(30_000);
  });
});

describe('fuzzing through the whole waypoint (seeded, short; bench/waypoint/h2-fuzz.ts runs for minutes)', () => {
  it('random and mutated h2c connections to --http2-server kernway: nothing throws, every GOAWAY has a known code, and it keeps serving', async () => {
    const rand = mulberry32(777);
    for (const input of h2FuzzCases(rand, 200)) {
      const o = await rawH2(GW.kernway, 8080, input, 40);
      const code = goawayCode(o);
      if (code !== undefined) expect(code).toBeLessThanOrEqual(13);
    }
    // A request body the handler is about to forward, then a connection error in the same read: the body fails with nobody listening yet.
    const post = block([[':method', 'POST'], [':scheme', 'http'], [':path', '/web/cut'], [':authority', 'test.example'], ['content-length', '100']]);
    const cut = await rawH2(GW.kernway, 8080, hello(frame(T.HEADERS, F.END_HEADERS, 1, post), frame(T.DATA, 0, 1, Buffer.alloc(10)), frame(T.PING, 0, 0, Buffer.alloc(3))));
    expect(goawayCode(cut)).toBe(6);
    const alive = await ask('kernway', 'alive', { headers: { ':path': '/web/alive' } });
    expect(alive.status).toBe(200);
  }, 60_000);
});
