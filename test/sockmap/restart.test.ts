/**
 * An agent restart in the middle of running transfers: the programs stay attached
 * through pinned links, the maps (above all kw_sm_hash) through pins; the new agent
 * reuses the maps and swaps each link's program in one bpf_link_update().
 */
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Lab } from '../../lab/index.js';
import { BpfLink } from '../../native/index.js';
import { pinLayout, uninstall } from '../../agent/datapath/sock-lb.js';
import type { Sockmap } from '../../agent/datapath/sockmap.js';
import { Server, dualStack, loadSockmap, localPodsOf, runClient, startClient, stopRig, waitFor } from './harness.js';

/** BPF objects (maps, programs, links) this process holds file descriptors of. */
function bpfFds(): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const t = readlinkSync(`/proc/self/fd/${fd}`);
      return t.startsWith('anon_inode:bpf') ? [t] : [];
    } catch {
      return [];
    }
  });
}

function linkProgIds(lab: Lab): Record<string, number> {
  const dir = pinLayout(lab.bpffsDir, lab.cgroupPath).cgroupLinks!;
  const out: Record<string, number> = {};
  for (const name of readdirSync(dir)) {
    const l = BpfLink.openPinned(join(dir, name));
    try { out[name] = l.info().progId; } finally { l.close(); }
  }
  return out;
}

describe('sockmap: agent restart', () => {
  let lab: Lab;
  let sm: Sockmap | undefined;
  let server: Server;
  afterAll(() => stopRig({ server, sm, lab }));

  it('100 transfers running across the restart all complete with correct checksums', async () => {
    lab = await Lab.create({ tag: 'smrestart' });
    const a = await lab.addPod('a');
    const b = await lab.addPod('b');
    const targets = dualStack(b, 7001);
    const fdsBefore = bpfFds().length;

    sm = await loadSockmap(lab);
    sm.setLocalPods(localPodsOf(a, b));
    // Listening after the programs are attached: its accepted sockets are known non-blocking (rule 5).
    server = await Server.start(lab, b, '::', [7001]);
    expect(sm.createdLinks.sort()).toEqual(['kw_sm_msg', 'kw_sm_recv_prog', 'kw_sm_sockops']);
    const progsBefore = linkProgIds(lab);

    // 100 transfers: the client's bytes move at once, the server's (4 MiB each) only
    // after 1.5 s, when the first agent is gone and the second one has taken over.
    const running = startClient(lab, a, { targets, conns: 100, concurrency: 100, min: 4 << 20, max: 4 << 20, serverDelayMs: 1500, readDelayMs: 1500, timeoutMs: 60_000 });
    await waitFor(() => sm!.stats().inserts === 200, 'the 100 transfers to be accelerated');

    // The first agent stops: every file descriptor closed, as a process exit would.
    sm.close();
    sm = undefined;
    expect(bpfFds().length).toBe(fdsBefore);

    // The second agent adopts the pins.
    sm = await loadSockmap(lab);
    expect(sm.reusedMaps).toBe(true);
    expect(sm.createdLinks).toEqual([]);
    expect(sm.updatedLinks.sort()).toEqual(['kw_sm_msg', 'kw_sm_recv_prog', 'kw_sm_sockops']);
    const progsAfter = linkProgIds(lab);
    for (const name of ['kw_sm_msg', 'kw_sm_recv_prog', 'kw_sm_sockops']) expect(progsAfter[name]).not.toBe(progsBefore[name]);
    // The running connections are still in the (same) sockhash, the local pods still known.
    expect(sm.socketCount()).toBe(200);
    expect(sm.localPods()).toHaveLength(4);
    const mid = sm.stats();

    const res = await running;
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(100);
    // The servers' bytes, sent after the restart, went socket to socket.
    expect(sm.stats().redirectedBytes - mid.redirectedBytes).toBeGreaterThanOrEqual(100 * (4 << 20));

    // New connections are accelerated by the new programs.
    const later = await runClient(lab, a, { targets, conns: 10, concurrency: 10, min: 1, max: 1 << 20 });
    expect(later.failures).toEqual([]);
    expect(sm.stats().inserts - mid.inserts).toBe(20);
  });

  it('kernway uninstall (sock-lb uninstall()) detaches the links and removes the pins', async () => {
    sm?.close();
    sm = undefined;
    const res = uninstall(lab.bpffsDir, lab.cgroupPath);
    expect(res.detached.map((d) => d.split('/')[1]).sort()).toEqual(['kw_sm_msg', 'kw_sm_recv_prog', 'kw_sm_sockops']);
    expect(res.unpinned.sort()).toEqual([
      'kw_sm_cfg', 'kw_sm_ck', 'kw_sm_handover', 'kw_sm_hash', 'kw_sm_io', 'kw_sm_listen', 'kw_sm_pods', 'kw_sm_rx', 'kw_sm_sk', 'kw_sm_stats',
      'kw_wp_sk', 'kw_wp_stats', // shared with the load balancer: the waypoint hand-off (bpf/include/waypoint.h)
    ]);
    expect(existsSync(join(lab.bpffsDir, 'maps'))).toBe(false);
    // Nothing is attached any more: a new connection is plain TCP, and works.
    const b = lab.pod('b');
    const res2 = await runClient(lab, lab.pod('a'), { targets: [{ host: b.ipv4, port: 7001 }], conns: 5, concurrency: 5, min: 1, max: 1 << 20 });
    expect(res2.failures).toEqual([]);
  });
});
