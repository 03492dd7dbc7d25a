/**
 * The hand-off's SYN guard (bpf/include/waypoint_syn.h) in the tc program of pod veths,
 * with BPF_PROG_TEST_RUN: the mesh addresses written by WaypointSync (the agent's code)
 * into the policy datapath's kw_wp_mesh, identities by the policy datapath, packets built
 * here, verdicts and drop counters read back from the kernel. The same guard with real
 * sockets across nodes is in nodes.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Lab } from '../../lab/index.js';
import { PolicyDatapath } from '../../agent/datapath/policy.js';
import { encodeLxcVal, encodeU32 } from '../../agent/datapath/policy-codec.js';
import { loadSockLb, type SockLb } from '../../agent/datapath/sock-lb.js';
import { WaypointSync, encodeGuardKey, type WaypointPlan } from '../../agent/datapath/waypoint-sync.js';
import { datapathAddr } from '../../agent/datapath/addr.js';
import { packet, type PacketSpec } from '../policy/packets.js';

const TC_ACT_UNSPEC = -1;
const TC_ACT_SHOT = 2;
const LO_IFINDEX = 1; // test runs see the packet on the runner's loopback

const WP4 = '10.0.0.10';
const WP6 = 'fd00::a';
const CLIENT = '10.0.1.10';
const CLIENT6 = 'fd00::1:a';
const NODE = '192.168.50.1';

function plan(ips: string[]): WaypointPlan {
  const guard = new Map<string, Buffer>();
  for (const ip of ips) { const k = encodeGuardKey(datapathAddr(ip), 15019); guard.set(k.toString('hex'), k); }
  return { svc: new Map(), guard, exempt: new Set(), frontends: [] };
}

describe('SYN guard on the waypoint pod\'s veth (BPF_PROG_TEST_RUN)', () => {
  let lab: Lab;
  let dp: PolicyDatapath;
  let lb: SockLb;
  let sync: WaypointSync;

  beforeAll(async () => {
    lab = await Lab.create({ tag: 'syng' });
    const bpffs = join(lab.bpffsDir, 'agent');
    lb = await loadSockLb({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs });
    dp = await PolicyDatapath.load({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs, attachConnect: false });
    // The waypoint pod (endpoint 3, identity 300), a client pod elsewhere (301), this node (host).
    dp.applyIdentities(new Map([[WP4, { id: 300, epId: 3 }], [WP6, { id: 300, epId: 3 }], [CLIENT, { id: 301, epId: 0 }], [CLIENT6, { id: 301, epId: 0 }], [NODE, { id: 1, epId: 0 }]]));
    dp.maps.kw_lxc.update(encodeU32(LO_IFINDEX), encodeLxcVal({ epId: 3, id: 300 }));
    dp.maps.kw_ep_stats.update(encodeU32(3), Buffer.alloc(dp.maps.kw_ep_stats.valueBytes));
    sync = new WaypointSync(lb.wpMaps, dp.maps.kw_wp_mesh);
    sync.apply(plan([WP4, WP6]));
  }, 60_000);
  afterAll(async () => {
    dp?.close();
    lb?.close();
    await lab?.destroy();
  });

  const cases: [string, PacketSpec, number][] = [
    ['IPv4 SYN to the mesh port from an address that is no known pod', { src: '198.51.100.7', dst: WP4, dport: 15019 }, TC_ACT_SHOT],
    ['IPv6 SYN to the mesh port from an address that is no known pod', { src: '2001:db8::7', dst: WP6, dport: 15019 }, TC_ACT_SHOT],
    ['IPv4 SYN to the mesh port from a pod (a kernel-redirected client)', { src: CLIENT, dst: WP4, dport: 15019 }, TC_ACT_UNSPEC],
    ['IPv6 SYN to the mesh port from a pod', { src: CLIENT6, dst: WP6, dport: 15019 }, TC_ACT_UNSPEC],
    ['IPv4 SYN to the mesh port from a node address (host identity: a redirected host client, probes)', { src: NODE, dst: WP4, dport: 15019 }, TC_ACT_UNSPEC],
    ['IPv4 SYN from outside to another port of the waypoint pod (no policy selects it)', { src: '198.51.100.7', dst: WP4, dport: 15020 }, TC_ACT_UNSPEC],
    ['IPv4 SYN from outside to port 15019 of a pod that is no waypoint', { src: '198.51.100.7', dst: '10.0.0.99', dport: 15019 }, TC_ACT_UNSPEC],
    ['IPv4 ACK from outside to the mesh port (not a new connection)', { src: '198.51.100.7', dst: WP4, dport: 15019, syn: false, ack: true }, TC_ACT_UNSPEC],
  ];
  for (const [what, spec, want] of cases) {
    it(`${what}: ${want === TC_ACT_SHOT ? 'dropped' : 'passed'}`, () => {
      expect(dp.toPod.testRun({ data: packet(spec) }).retval | 0).toBe(want);
    });
  }

  it('counts the drops per waypoint address (kernway status: synDropped); the counter survives a re-apply; a waypoint gone is unguarded', () => {
    const before = sync.stats().synDropped;
    const forged = packet({ src: '203.0.113.5', dst: WP4, dport: 15019 });
    for (let i = 0; i < 3; i++) expect(dp.toPod.testRun({ data: forged }).retval | 0).toBe(TC_ACT_SHOT);
    expect(sync.stats().synDropped).toBe(before + 3);
    expect(sync.apply(plan([WP4, WP6]))).toEqual({ writes: 0, deletes: 0 }); // nothing rewritten: the counts stay
    expect(sync.stats().synDropped).toBe(before + 3);
    sync.apply(plan([WP6]));
    expect(dp.toPod.testRun({ data: forged }).retval | 0).toBe(TC_ACT_UNSPEC);
    expect(dp.maps.kw_wp_mesh.batchLookup().keys).toHaveLength(1);
    sync.apply(plan([WP4, WP6]));
    expect(dp.toPod.testRun({ data: forged }).retval | 0).toBe(TC_ACT_SHOT);
  });
});
