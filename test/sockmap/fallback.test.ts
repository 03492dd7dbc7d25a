/**
 * Where acceleration does not apply, the normal stack carries the bytes, and nothing
 * fails: connections opened before the programs were attached, peers that are not
 * local pods, TCP Fast Open, a full sockhash, and acceleration switched off (node-wide or by pod
 * annotation) while connections run.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { fileURLToPath } from 'node:url';
import { Lab, type Pod } from '../../lab/index.js';
import type { Sockmap } from '../../agent/datapath/sockmap.js';
import { Server, delta, dualStack, loadSockmap, localPodsOf, runClient, startClient, stopRig, waitFor } from './harness.js';

const TFO = fileURLToPath(new URL('../fixtures/sockmap-tfo.py', import.meta.url));

describe('sockmap: connections opened before the agent started', () => {
  let lab: Lab;
  let sm: Sockmap | undefined;
  let server: Server;
  afterAll(() => stopRig({ server, sm, lab }));

  it('keep working through the stack; new ones are accelerated', async () => {
    lab = await Lab.create({ tag: 'smearly' });
    const a = await lab.addPod('a');
    const b = await lab.addPod('b');
    server = await Server.start(lab, b, '::', [7001]);
    const targets = dualStack(b, 7001);
    // Long transfers: each side waits 1.5 s before reading, so most bytes move after the load.
    const early = startClient(lab, a, { targets, conns: 6, concurrency: 6, min: 8 << 20, max: 8 << 20, serverDelayMs: 1500, readDelayMs: 1500 });
    // All six must be established before the programs are attached: wait for the server to see them.
    await vi.waitFor(async () => {
      const ss = await lab.exec(b, 'ss', ['-Htn', 'state', 'established', '( sport = :7001 )']);
      expect(ss.stdout.trim().split('\n').filter(Boolean).length).toBeGreaterThanOrEqual(6);
    }, { timeout: 30_000, interval: 50 });
    sm = await loadSockmap(lab);
    sm.setLocalPods(localPodsOf(a, b));
    expect(sm.socketCount()).toBe(0);
    const res = await early;
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(6);
    const s = sm.stats();
    expect(s.inserts).toBe(0);
    expect(s.redirectedBytes).toBe(0);

    // The server's listener predates the programs: whether its owner blocks is unknown,
    // so the sockets it accepts stay out (rule 5); the clients' are added, and send
    // through the stack (their peer is not a target).
    const later = await runClient(lab, a, { targets, conns: 10, concurrency: 10, min: 1, max: 1 << 20 });
    expect(later.failures).toEqual([]);
    const s1 = sm.stats();
    expect(s1.inserts).toBe(10);
    expect(s1.skippedBlocking).toBe(10);
    expect(s1.redirectedBytes).toBe(0);
    // A server that listens after the programs were attached is accelerated.
    const second = await Server.start(lab, b, '::', [7002]);
    try {
      const res = await runClient(lab, a, { targets: dualStack(b, 7002), conns: 10, concurrency: 10, min: 1, max: 1 << 20 });
      expect(res.failures).toEqual([]);
      const d = delta(s1, sm.stats());
      expect(d.inserts).toBe(20);
      expect(d.redirectedBytes).toBeGreaterThanOrEqual(0.9 * (res.sent + res.received));
    } finally {
      await second.stop();
    }
  });
});

describe('sockmap: peers that are not local pods', () => {
  let lab: Lab;
  let a: Pod, b: Pod, r: Pod;
  let sm: Sockmap;
  let servers: Server[];
  beforeAll(async () => {
    lab = await Lab.create({ tag: 'smremote' });
    a = await lab.addPod('a');
    b = await lab.addPod('b');
    r = await lab.addPod('r', { remote: true });
    sm = await loadSockmap(lab);
    sm.setLocalPods(localPodsOf(a, b));
    servers = [await Server.start(lab, b, '::', [7001]), await Server.start(lab, r, '::', [7001]), await Server.start(lab, 'node', '::', [7002])];
  });
  afterAll(() => stopRig({ servers, sm, lab }));

  it('a pod talking to a host on another node, and back, goes through the stack', async () => {
    const before = sm.stats();
    const out = await runClient(lab, a, { targets: dualStack(r, 7001), conns: 20, concurrency: 10, min: 1, max: 1 << 20 });
    const back = await runClient(lab, r, { targets: dualStack(b, 7001), conns: 20, concurrency: 10, min: 1, max: 1 << 20 });
    expect(out.failures).toEqual([]);
    expect(back.failures).toEqual([]);
    expect(out.ok + back.ok).toBe(40);
    const d = delta(before, sm.stats());
    expect(d.inserts).toBe(0);
    expect(d.redirectedBytes).toBe(0);
  });

  it('a pod talking to the node itself (not a pod) goes through the stack', async () => {
    const before = sm.stats();
    const res = await runClient(lab, a, { targets: [{ host: '10.244.0.1', port: 7002 }], conns: 10, concurrency: 10, min: 1, max: 1 << 20 });
    expect(res.failures).toEqual([]);
    expect(delta(before, sm.stats()).inserts).toBe(0);
  });
});

describe('sockmap: TCP Fast Open', () => {
  let lab: Lab;
  let sm: Sockmap;
  afterAll(() => stopRig({ sm, lab }));

  it('data sent in the SYN and the bytes after it arrive in order', async () => {
    lab = await Lab.create({ tag: 'smtfo' });
    const a = await lab.addPod('a');
    const b = await lab.addPod('b');
    for (const p of [a, b]) expect((await lab.exec(p, 'sysctl', ['-q', '-w', 'net.ipv4.tcp_fastopen=3'])).code).toBe(0);
    sm = await loadSockmap(lab);
    sm.setLocalPods(localPodsOf(a, b));
    const server = lab.spawn(b, 'python3', [TFO, 'server', '7001', '20']);
    let out = '';
    server.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    // 'close', not 'exit': the last lines of stdout may still be unread at 'exit'.
    const done = new Promise((r) => server.once('close', r));
    await waitFor(() => out.includes('ready'), 'the TFO server');
    const client = await lab.exec(a, 'python3', [TFO, 'client', b.ipv4, '7001', '20'], { timeoutMs: 30_000 });
    expect(client.stderr).toBe('');
    await done;
    expect(out.match(/^ok /gm), out).toHaveLength(20);
    expect(out).not.toMatch(/^bad /m);
    // The fixture's sockets are blocking (Python's default): kept out by rule 5, as
    // every blocking socket is. (With non-blocking ones, the first connection, with no
    // cookie yet, queues its 1,000 bytes on the stack while waiting for the handshake,
    // after sock_ops inserted it; the others send bytes in the SYN; none may switch to
    // redirection ahead of those bytes: kw_sm_verdict re-checks write_seq.)
    const st = sm.stats();
    expect(st.inserts).toBe(0);
    expect(st.skippedBlocking).toBe(40);
  });
});

describe('sockmap: a full sockhash', () => {
  let lab: Lab;
  let sm: Sockmap;
  let server: Server;
  afterAll(() => stopRig({ server, sm, lab }));

  it('leaves new connections on the stack, counts them, and fails nothing', async () => {
    lab = await Lab.create({ tag: 'smfull' });
    const a = await lab.addPod('a');
    const b = await lab.addPod('b');
    sm = await loadSockmap(lab, { capacities: { kw_sm_hash: 8 } });
    expect(sm.maps.kw_sm_hash.info().maxEntries).toBe(8);
    sm.setLocalPods(localPodsOf(a, b));
    server = await Server.start(lab, b, '::', [7001]);
    // 40 connections open at once: at most 8 sockets fit.
    const res = await runClient(lab, a, { targets: dualStack(b, 7001), conns: 40, concurrency: 40, min: 64 << 10, max: 1 << 20, serverDelayMs: 300 });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(40);
    const s = sm.stats();
    expect(s.insertFull).toBeGreaterThan(0);
    expect(s.inserts + s.insertFull).toBe(80);
    expect(s.inserts).toBeGreaterThan(0);
    expect(s.insertErrors).toBe(0);
    await waitFor(() => sm.socketCount() === 0, 'closed sockets to leave the full map');
  });
});

describe('sockmap: switched off at runtime', () => {
  let lab: Lab;
  let a: Pod, b: Pod, c: Pod;
  let sm: Sockmap;
  let servers: Server[];
  beforeAll(async () => {
    lab = await Lab.create({ tag: 'smswitch' });
    a = await lab.addPod('a');
    b = await lab.addPod('b');
    c = await lab.addPod('c');
    sm = await loadSockmap(lab);
    sm.setLocalPods(localPodsOf(a, b, c));
    servers = [await Server.start(lab, b, '::', [7001]), await Server.start(lab, c, '::', [7001])];
  });
  afterEach(() => {
    sm.setEnabled(true);
    sm.setLocalPods(localPodsOf(a, b, c));
  });
  afterAll(() => stopRig({ servers, sm, lab }));

  it('node-wide: running connections stay accelerated, new ones take the stack, on again accelerates', async () => {
    const targets = dualStack(b, 7001);
    const s0 = sm.stats();
    // Established now; the server only starts sending (16 MiB each) after 800 ms.
    const running = startClient(lab, a, { targets, conns: 4, concurrency: 4, min: 16 << 20, max: 16 << 20, serverDelayMs: 800, readDelayMs: 800 });
    await waitFor(() => sm.stats().inserts - s0.inserts === 8, 'the running connections to be accelerated');
    sm.setEnabled(false);
    expect(sm.enabled).toBe(false);
    const s1 = sm.stats();
    const off = await runClient(lab, a, { targets, conns: 10, concurrency: 10, min: 1, max: 256 << 10 });
    expect(off.failures).toEqual([]);
    const s2 = sm.stats();
    expect(s2.inserts).toBe(s1.inserts);
    expect(s2.skippedOff - s1.skippedOff).toBe(20);
    const res = await running;
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(4);
    // The running connections stayed accelerated after the switch (their readers stall
    // 800 ms, so part of each 16 MiB takes the stack by rule 6).
    expect(sm.stats().redirectedBytes - s1.redirectedBytes).toBeGreaterThan(4 << 20);

    sm.setEnabled(true);
    const on = await runClient(lab, a, { targets, conns: 10, concurrency: 10, min: 1, max: 256 << 10 });
    expect(on.failures).toEqual([]);
    expect(sm.stats().inserts - s2.inserts).toBe(20);
  });

  it('per pod: an opted-out pod gets the stack, the others keep acceleration', async () => {
    sm.setLocalPods([...localPodsOf(a, c), { ip: b.ipv4, sockmapOff: true }, { ip: b.ipv6, sockmapOff: true }]);
    const s0 = sm.stats();
    const toB = await runClient(lab, a, { targets: dualStack(b, 7001), conns: 10, concurrency: 10, min: 1, max: 256 << 10 });
    const s1 = sm.stats();
    const toC = await runClient(lab, a, { targets: dualStack(c, 7001), conns: 10, concurrency: 10, min: 1, max: 256 << 10 });
    const s2 = sm.stats();
    expect(toB.failures).toEqual([]);
    expect(toC.failures).toEqual([]);
    expect(s1.inserts - s0.inserts).toBe(0);
    expect(s1.skippedOff - s0.skippedOff).toBe(20);
    expect(s2.inserts - s1.inserts).toBe(20);
  });
});
