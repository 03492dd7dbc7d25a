/**
 * Connection endings on accelerated sockets: half-close, abortive close (RST), and a
 * peer that goes away mid-stream. Nothing may be lost that TCP would deliver, and
 * nothing may hang.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lab, Pod } from '../../lab/index.js';
import type { Sockmap } from '../../agent/datapath/sockmap.js';
import { delta, runClient, startPairRig, stopRig, type Server } from './harness.js';

let lab: Lab;
let a: Pod;
let sm: Sockmap;
let server: Server;
let targets: Array<{ host: string; port: number }>;

beforeAll(async () => {
  ({ lab, a, sm, server, targets } = await startPairRig('smclose'));
});

afterAll(() => stopRig({ server, sm, lab }));

describe('sockmap: half-close', () => {
  it('after shutdown(SHUT_WR) the server reads EOF and its reply arrives whole', async () => {
    const before = sm.stats();
    const res = await runClient(lab, a, { targets, mode: 'halfclose', conns: 60, concurrency: 30, min: 1, max: 1 << 20 });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(60);
    const d = delta(before, sm.stats());
    expect(d.redirectedBytes).toBeGreaterThanOrEqual(0.9 * (res.sent + res.received));
  });

  it('keeps the reply when the client reads it only after the server has closed (socket in TCP_CLOSE)', async () => {
    // The client's socket goes FIN_WAIT2 -> TIME_WAIT (TCP_CLOSE) while the reply waits,
    // unread, in its queue: the entry must stay until close() or the reply is dropped.
    const before = sm.stats();
    const res = await runClient(lab, a, { targets, mode: 'halfclose', conns: 40, concurrency: 40, min: 1, max: 1 << 20, readDelayMs: 300 });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(40);
    expect(delta(before, sm.stats()).redirectedBytes).toBeGreaterThanOrEqual(0.9 * res.received);
  });
});

describe('sockmap: abortive close and a peer leaving mid-stream', () => {
  it('a client reset (RST) reaches the server as ECONNRESET, nothing hangs', async () => {
    server.events.length = 0;
    const res = await runClient(lab, a, { targets, mode: 'rst', conns: 20, concurrency: 20, min: 1, max: 256 << 10, holdMs: 100 });
    expect(res.failures).toEqual([]);
    const events = await server.waitEvents('rst', 20);
    expect(events).toHaveLength(20);
    for (const e of events) expect(e.outcome).toBe('ECONNRESET');
  });

  it('a server that closes with unread data makes the writer fail, never hang', async () => {
    server.events.length = 0;
    const res = await runClient(lab, a, { targets, mode: 'peerclose', conns: 10, concurrency: 10, min: 16 << 20, max: 16 << 20, timeoutMs: 20_000 });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(10);
    // Every writer learns of the close: an error (EPIPE/ECONNRESET), or EOF then an error.
    expect(Object.keys(res.outcomes).every((o) => o === 'EPIPE' || o === 'ECONNRESET' || o === 'ECLOSED')).toBe(true);
    expect(await server.waitEvents('peerclose', 10)).toHaveLength(10);
  });

  it('a server that resets mid-stream makes the writer fail, never hang', async () => {
    server.events.length = 0;
    const res = await runClient(lab, a, { targets, mode: 'peerrst', conns: 10, concurrency: 10, min: 16 << 20, max: 16 << 20, timeoutMs: 20_000 });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(10);
    expect(Object.keys(res.outcomes).every((o) => o === 'EPIPE' || o === 'ECONNRESET' || o === 'ECLOSED')).toBe(true);
  });
});
