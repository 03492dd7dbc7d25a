/**
 * Accelerated sockets under write pressure: writes far larger than the socket buffers
 * against a reader that stalls, and many tiny writes with TCP_NODELAY.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lab, Pod } from '../../lab/index.js';
import type { Sockmap } from '../../agent/datapath/sockmap.js';
import { run } from '../../lab/system.js';
import { delta, runClient, startPairRig, stopRig, type Server } from './harness.js';

let lab: Lab;
let a: Pod;
let sm: Sockmap;
let server: Server;
let targets: Array<{ host: string; port: number }>;

beforeAll(async () => {
  ({ lab, a, sm, server, targets } = await startPairRig('smpress'));
});

afterAll(() => stopRig({ server, sm, lab }));

describe('sockmap: backpressure and tiny writes', () => {
  it('writes much larger than the socket buffers, to readers that stall, arrive whole', async () => {
    const wmem = Number((await run('nsenter', [`--net=${a.netnsPath}`, '--', 'sysctl', '-n', 'net.ipv4.tcp_wmem'])).stdout.trim().split(/\s+/)[2]);
    const size = 24 << 20;
    expect(size).toBeGreaterThan(2 * wmem);
    const before = sm.stats();
    // 4 MiB writes each way; each side stops reading for 400 ms first.
    const res = await runClient(lab, a, {
      targets, mode: 'normal', conns: 4, concurrency: 4, min: size, max: size,
      chunkMax: 4 << 20, serverDelayMs: 400, readDelayMs: 400, timeoutMs: 60_000,
    });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(4);
    expect(res.sent).toBe(4 * size);
    expect(res.received).toBe(4 * size);
    // A reader that stalls holds its writer back (rule 6): the writer takes the stack
    // once the reader's unread redirected bytes fill its buffers, and TCP blocks it.
    const d = delta(before, sm.stats());
    expect(d.passedFull).toBeGreaterThan(0);
    expect(d.redirectedBytes).toBeGreaterThan(0);
  });

  it('many tiny writes with TCP_NODELAY: each one redirected, all echoed back in order', async () => {
    const before = sm.stats();
    const res = await runClient(lab, a, { targets, mode: 'echo', conns: 4, concurrency: 4, tinyCount: 5000 });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(4);
    const d = delta(before, sm.stats());
    // One send() per tiny write on the client side alone.
    expect(d.redirectedMessages).toBeGreaterThanOrEqual(4 * 5000);
    expect(d.redirectedBytes).toBeGreaterThanOrEqual(res.sent);
  });
});
