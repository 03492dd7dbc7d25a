/**
 * Rule 3 of bpf/include/sockmap.h with real traffic: a direction whose first message
 * found no peer socket (the Merbridge #167 race, made certain here by the test knob
 * kw_sm_test_first_miss) goes through the stack, and switches to redirection only once
 * the peer has read every byte sent so far. Streams stay whole and in order.
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
  ({ lab, a, sm, server, targets } = await startPairRig('smhand', { testFirstMiss: true }));
});

afterAll(() => stopRig({ server, sm, lab }));

describe('sockmap: handover after a first message without peer', () => {
  it('request/response: both directions hand over and every byte arrives in order', async () => {
    const before = sm.stats();
    const res = await runClient(lab, a, { targets, mode: 'echo', conns: 40, concurrency: 20, tinyCount: 300 });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(40);
    const d = delta(before, sm.stats());
    expect(d.passedNoPeer).toBe(80); // the first message of each direction
    expect(d.handovers).toBeGreaterThan(0);
    expect(d.redirectedMessages).toBeGreaterThan(0);
  });

  it('two concurrent streams of random sizes stay whole through the stack-to-redirection switch', async () => {
    const before = sm.stats();
    const res = await runClient(lab, a, { targets, mode: 'normal', conns: 100, concurrency: 25, min: 1, max: 4 << 20 });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(100);
    const d = delta(before, sm.stats());
    expect(d.passedNoPeer).toBe(200);
    expect(d.handovers).toBeGreaterThan(0);
  });

  it('a half-closed exchange never switches in the middle of what the peer has not read', async () => {
    const res = await runClient(lab, a, { targets, mode: 'halfclose', conns: 40, concurrency: 20, min: 1, max: 1 << 20, readDelayMs: 50 });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(40);
  });
});
