/**
 * Idle HTTP/2 sessions (waypoint/proxy/h2-server.ts): a session is idle when it has no
 * open stream, and an idle session gets a GOAWAY and is closed after idleTimeoutMs (a sweep
 * finds them; Node's per-session timer, refreshed at several points of every stream, is not
 * used). A stream that stays open longer than the idle time keeps its session; once it ends,
 * the idle time counts from then. Real sockets on loopback, the H2Server as the waypoint
 * hands connections to it; the same for the waypoint's own server (KwH2Server, h2-conn.ts).
 */
import http2 from 'node:http2';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { H2Server, type H2Request, type H2Response } from '../../waypoint/proxy/h2-server.js';
import { KwH2Server, type KwH2Request, type KwH2Response } from '../../waypoint/proxy/h2-conn.js';

type Server = H2Server | KwH2Server;
type Req = H2Request | KwH2Request;
type Res = H2Response | KwH2Response;
const ENGINES = [['node', H2Server], ['kernway', KwH2Server]] as const;

const IDLE_MS = 300;
const host = `127.86.${10 + (process.pid % 200)}.1`;
describe.each(ENGINES)('%s', (_name, Engine) => {
  let listener: net.Server;
  let server: Server;
  let port = 0;
  /** Responses of /hold requests, ended by the test. */
  const holding: Res[] = [];

  beforeAll(async () => {
    server = new Engine({
      maxHeaderBytes: 16384,
      idleTimeoutMs: IDLE_MS,
      onRequest(req: Req, res: Res) {
        res.writeHead(200, ['content-type', 'text/plain']);
        if (req.url === '/hold') { res.write('first\n'); holding.push(res); return; }
        res.end('ok\n');
      },
    } as never);
    listener = net.createServer((s) => server.connection(s));
    await new Promise<void>((resolve, reject) => { listener.once('error', reject); listener.listen({ host, port: 0 }, resolve); });
    port = (listener.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    for (const r of holding) r.destroy();
    server?.closeSessions();
    server?.close();
    await new Promise<void>((r) => { if (listener) listener.close(() => r()); else r(); });
  });

  function connect(): Promise<{ session: http2.ClientHttp2Session; closed: () => boolean; goaway: () => boolean }> {
    return new Promise((resolve, reject) => {
      const session = http2.connect(`http://${host}:${port}`);
      let closed = false, goaway = false;
      session.on('close', () => { closed = true; });
      session.on('goaway', () => { goaway = true; });
      session.on('error', () => { /* reported by 'close' */ });
      session.once('connect', () => resolve({ session, closed: () => closed, goaway: () => goaway }));
      session.once('error', reject);
    });
  }

  function get(session: http2.ClientHttp2Session, path: string, onFirstData?: () => void): Promise<string> {
    return new Promise((resolve, reject) => {
      const st = session.request({ ':path': path }, { endStream: true });
      let body = '';
      st.on('data', (c: Buffer) => { const first = body === ''; body += c.toString(); if (first) onFirstData?.(); });
      st.on('end', () => resolve(body));
      st.on('error', reject);
    });
  }

  async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    while (!cond()) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return Date.now() - t0;
  }

  it('a session without open streams gets a GOAWAY and is closed after the idle time', async () => {
    const c = await connect();
    expect(await get(c.session, '/a')).toBe('ok\n');
    expect(await get(c.session, '/b')).toBe('ok\n');
    const t0 = Date.now();
    await until('idle session closed', c.closed, 5000);
    expect(c.goaway()).toBe(true);
    // Not before the idle time (the sweep runs every idle/4).
    expect(Date.now() - t0).toBeGreaterThanOrEqual(IDLE_MS - 50);
  });

  it('a stream open longer than the idle time keeps its session; the idle time counts from its end', async () => {
    const c = await connect();
    let firstData = false;
    const body = get(c.session, '/hold', () => { firstData = true; });
    await until('first chunk of the held response', () => firstData, 5000);
    // Asserting an absence: three idle periods with the stream open, the session stays.
    await new Promise((r) => setTimeout(r, 3 * IDLE_MS));
    expect(c.closed()).toBe(false);
    expect(c.goaway()).toBe(false);
    const res = holding.shift()!;
    res.end('last\n');
    expect(await body).toBe('first\nlast\n');
    const t0 = Date.now();
    await until('session closed after its stream ended', c.closed, 5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(IDLE_MS - 50);
  });

  it('idleTimeoutMs 0: sessions are never closed for idleness', async () => {
    const never = new Engine({ maxHeaderBytes: 16384, idleTimeoutMs: 0, onRequest(_req: Req, res: Res) { res.end('ok\n'); } } as never);
    const l = net.createServer((s) => never.connection(s));
    await new Promise<void>((resolve, reject) => { l.once('error', reject); l.listen({ host, port: 0 }, resolve); });
    const session = http2.connect(`http://${host}:${(l.address() as net.AddressInfo).port}`);
    let closed = false;
    session.on('close', () => { closed = true; });
    session.on('error', () => { /* reported by 'close' */ });
    try {
      expect(await get(session, '/a')).toBe('ok\n');
      // Asserting an absence: well past what the sweep of any other setting would take.
      await new Promise((r) => setTimeout(r, 2 * IDLE_MS));
      expect(closed).toBe(false);
      expect(await get(session, '/b')).toBe('ok\n');
    } finally {
      session.destroy();
      never.closeSessions();
      never.close();
      await new Promise<void>((r) => l.close(() => r()));
    }
  });
});
