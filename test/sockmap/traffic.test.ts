/**
 * Same-node acceleration under load: real sockets between lab pods, in the lab cgroup
 * where the programs are attached. Every byte of both directions is checked with a
 * SHA-256 by the other side; the counters must show the bytes were redirected.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, type Pod } from '../../lab/index.js';
import type { Sockmap } from '../../agent/datapath/sockmap.js';
import { Server, delta, loadSockmap, localPodsOf, runClient, waitFor } from './harness.js';

let lab: Lab;
let a: Pod, b: Pod, c: Pod;
let sm: Sockmap;
let servers: Server[] = [];

beforeAll(async () => {
  lab = await Lab.create({ tag: 'smtraffic' });
  a = await lab.addPod('a');
  b = await lab.addPod('b');
  c = await lab.addPod('c');
  sm = await loadSockmap(lab);
  sm.setLocalPods(localPodsOf(a, b, c));
  servers = [await Server.start(lab, b, '::', [7001, 7002]), await Server.start(lab, b, '0.0.0.0', [7003])];
});

afterAll(async () => {
  for (const s of servers) await s.stop();
  sm?.close();
  await lab?.destroy();
});

describe('sockmap: 1,000 concurrent connections', () => {
  it('delivers every byte of both directions, in order, through redirection (IPv4 and IPv6)', async () => {
    const before = sm.stats();
    // 4 client processes x 250 connections, all open at once; sizes log-uniform 1 B..4 MiB.
    const job = (targets: Array<{ host: string; port: number }>) =>
      ({ targets, conns: 250, concurrency: 250, min: 1, max: 4 << 20, timeoutMs: 150_000 });
    const results = await Promise.all([
      runClient(lab, a, job([{ host: b.ipv4, port: 7001 }, { host: b.ipv6, port: 7002 }]), 180_000),
      runClient(lab, a, job([{ host: b.ipv6, port: 7001 }, { host: b.ipv4, port: 7002 }]), 180_000),
      runClient(lab, c, job([{ host: b.ipv4, port: 7001 }, { host: b.ipv6, port: 7002 }]), 180_000),
      // An IPv6 socket dialling the IPv4-mapped address of an IPv4-only server.
      runClient(lab, c, job([{ host: `::ffff:${b.ipv4}`, port: 7003 }, { host: b.ipv4, port: 7003 }]), 180_000),
    ]);
    const failures = results.flatMap((r) => r.failures);
    expect(failures).toEqual([]);
    expect(results.map((r) => r.ok)).toEqual([250, 250, 250, 250]);
    const payload = results.reduce((n, r) => n + r.sent + r.received, 0);

    const d = delta(before, sm.stats());
    expect(d.inserts).toBe(2000); // both ends of every connection
    expect(d.insertFull + d.insertErrors).toBe(0);
    // Every byte went socket to socket, save a direction whose first message raced its
    // peer's establishment (kept on the stack until handover).
    expect(d.redirectedBytes).toBeGreaterThanOrEqual(0.9 * payload);
    expect(d.redirectedMessages).toBeGreaterThan(0);
    // Closed sockets leave the sockhash (the kernel removes them at close()).
    await waitFor(() => sm.socketCount() === 0, 'an empty sockhash after every connection closed');
  }, 240_000);
});
