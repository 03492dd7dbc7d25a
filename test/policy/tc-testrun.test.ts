/**
 * bpf/tc_pod.bpf.c with BPF_PROG_TEST_RUN: policies compiled and written by the agent's
 * own modules, packets built here, verdicts and counters read back from the kernel.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from '../../lab/index.js';
import { PolicyDatapath } from '../../agent/datapath/policy.js';
import { decodeEpStats, encodeLxcVal, encodeU32 } from '../../agent/datapath/policy-codec.js';
import { PolicyCompiler } from '../../agent/datapath/policy-compile.js';
import { IdentityAllocator } from '../../model/identity.js';
import type { AuthorizationPolicy } from '../../k8s/policy-types.js';
import { parsePolicy, pod } from './helpers.js';
import { packet, type PacketSpec } from './packets.js';

const TC_ACT_UNSPEC = -1;
const TC_ACT_SHOT = 2;
// Test runs see the packet on the runner's loopback. retval is the u32 the program returned:
// TC_ACT_UNSPEC (-1) reads 0xffffffff, hence the `| 0`.
const LO_IFINDEX = 1;

function policy(ns: string, name: string, spec: unknown): AuthorizationPolicy {
  const r = parsePolicy({ object: { apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec } as never, file: `/m/${name}.yaml`, index: 0 });
  if (!r.policy) throw new Error(r.problems.map((p) => p.message).join('; '));
  return r.policy;
}

describe('tc_pod: policy at the pod veth (BPF_PROG_TEST_RUN)', () => {
  let lab: Lab;
  let dp: PolicyDatapath;
  const pods = [
    pod('shop', 'web', { labels: { app: 'web' }, sa: 'web', ips: ['10.0.0.10', 'fd00::a'] }),
    pod('front', 'client', { sa: 'client', ips: ['10.0.1.10', 'fd00::1:a'] }),
    pod('front', 'other', { sa: 'other', ips: ['10.0.1.11', 'fd00::1:b'] }),
  ];
  const ids = new IdentityAllocator().assign(pods);
  const web = ids.byPod.get('shop/web')!.id;
  const EP = 7;

  beforeAll(async () => {
    lab = await Lab.create({ tag: 'test' });
    dp = await PolicyDatapath.load({ cgroupPath: lab.cgroupPath, bpffsDir: lab.bpffsDir, attachConnect: false });
    dp.applyIdentities(new Map([...ids.addresses].map(([ip, a]) => [ip, { id: a.id, epId: a.pod === 'shop/web' ? EP : 0 }])));
    dp.maps.kw_lxc.update(encodeU32(LO_IFINDEX), encodeLxcVal({ epId: EP, id: web }));
    dp.maps.kw_ep_stats.update(encodeU32(EP), Buffer.alloc(dp.maps.kw_ep_stats.valueBytes));
    const compiled = new PolicyCompiler().compile({ identities: ids.identities, policies: [
      policy('shop', 'deny-all', {}),
      policy('shop', 'allow', { selector: { matchLabels: { app: 'web' } }, rules: [
        { from: [{ source: { serviceAccounts: ['front/client'] } }], to: [{ operation: { ports: ['8080'] } }] },
        { from: [{ source: { ipBlocks: ['192.0.2.0/24', '2001:db8::/32'] } }] },
      ] }),
      policy('shop', 'deny-bad', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['192.0.2.66/32'] } }] }] }),
    ] });
    dp.applyPolicies(compiled);
  });
  afterAll(async () => {
    dp?.close();
    await lab?.destroy();
  });

  const cases: [string, PacketSpec, number][] = [
    ['IPv4 SYN from the allowed service account, allowed port', { src: '10.0.1.10', dst: '10.0.0.10', dport: 8080 }, TC_ACT_UNSPEC],
    ['IPv4 SYN from the allowed service account, other port', { src: '10.0.1.10', dst: '10.0.0.10', dport: 9090 }, TC_ACT_SHOT],
    ['IPv4 SYN from another service account', { src: '10.0.1.11', dst: '10.0.0.10', dport: 8080 }, TC_ACT_SHOT],
    ['IPv4 ACK from another service account (an established flow)', { src: '10.0.1.11', dst: '10.0.0.10', dport: 8080, ack: true, syn: false }, TC_ACT_UNSPEC],
    ['IPv4 SYN-ACK (a reply to the pod\'s own connection)', { src: '10.0.1.11', dst: '10.0.0.10', dport: 40000, syn: true, ack: true }, TC_ACT_UNSPEC],
    ['IPv4 SYN from an allowed ipBlock (world)', { src: '192.0.2.7', dst: '10.0.0.10', dport: 1 }, TC_ACT_UNSPEC],
    ['IPv4 SYN from the DENY /32 inside the allowed block', { src: '192.0.2.66', dst: '10.0.0.10', dport: 1 }, TC_ACT_SHOT],
    ['IPv4 SYN from an unknown address', { src: '198.51.100.1', dst: '10.0.0.10', dport: 8080 }, TC_ACT_SHOT],
    ['IPv4 UDP (not a TCP connection)', { src: '198.51.100.1', dst: '10.0.0.10', dport: 53, proto: 'udp' }, TC_ACT_UNSPEC],
    ['IPv4 later fragment', { src: '198.51.100.1', dst: '10.0.0.10', dport: 8080, fragOffset: 100 }, TC_ACT_UNSPEC],
    ['IPv6 SYN from the allowed service account', { src: 'fd00::1:a', dst: 'fd00::a', dport: 8080 }, TC_ACT_UNSPEC],
    ['IPv6 SYN from another service account', { src: 'fd00::1:b', dst: 'fd00::a', dport: 8080 }, TC_ACT_SHOT],
    ['IPv6 SYN behind two extension headers', { src: 'fd00::1:b', dst: 'fd00::a', dport: 8080, ext: [0, 60] }, TC_ACT_SHOT],
    ['IPv6 SYN behind too many extension headers (fail safe)', { src: '2001:db8::1', dst: 'fd00::a', dport: 8080, ext: [0, 60, 60, 60, 60] }, TC_ACT_SHOT],
    ['IPv6 SYN from an allowed ipBlock', { src: '2001:db8::1', dst: 'fd00::a', dport: 8080 }, TC_ACT_UNSPEC],
  ];
  for (const [what, spec, want] of cases) {
    it(`${what}: ${want === TC_ACT_SHOT ? 'dropped' : 'passed'}`, () => {
      const r = dp.toPod.testRun({ data: packet(spec) });
      expect(r.retval | 0).toBe(want);
    });
  }

  it('counts passed packets and bytes in, drops by reason, and packets out', () => {
    const before = decodeEpStats(dp.maps.kw_ep_stats.lookup(encodeU32(EP))!);
    const allowed = packet({ src: '10.0.1.10', dst: '10.0.0.10', dport: 8080 });
    for (let i = 0; i < 3; i++) expect(dp.toPod.testRun({ data: allowed }).retval | 0).toBe(TC_ACT_UNSPEC);
    for (let i = 0; i < 2; i++) expect(dp.toPod.testRun({ data: packet({ src: '10.0.1.11', dst: '10.0.0.10', dport: 8080 }) }).retval | 0).toBe(TC_ACT_SHOT);
    expect(dp.fromPod.testRun({ data: packet({ src: '10.0.0.10', dst: '10.0.1.10', dport: 40000, sport: 8080, ack: true }) }).retval | 0).toBe(TC_ACT_UNSPEC);
    const after = decodeEpStats(dp.maps.kw_ep_stats.lookup(encodeU32(EP))!);
    expect(after.packetsIn - before.packetsIn).toBe(3);
    expect(after.bytesIn - before.bytesIn).toBe(3 * allowed.length);
    expect(after.drops.policy_denied - before.drops.policy_denied).toBe(2);
    expect(after.packetsOut - before.packetsOut).toBe(1);
  });

  it('leaves a veth that is no endpoint alone, and lets everything through once no policy selects the pod', () => {
    dp.maps.kw_lxc.delete(encodeU32(LO_IFINDEX));
    const denied = packet({ src: '10.0.1.11', dst: '10.0.0.10', dport: 8080 });
    expect(dp.toPod.testRun({ data: denied }).retval | 0).toBe(TC_ACT_UNSPEC);
    dp.maps.kw_lxc.update(encodeU32(LO_IFINDEX), encodeLxcVal({ epId: EP, id: web }));
    expect(dp.toPod.testRun({ data: denied }).retval | 0).toBe(TC_ACT_SHOT);
    dp.applyPolicies(new PolicyCompiler().compile({ identities: ids.identities, policies: [] }));
    expect(dp.toPod.testRun({ data: denied }).retval | 0).toBe(TC_ACT_UNSPEC);
    expect(dp.maps.kw_pol.batchLookup().keys.length).toBe(0);
    expect(dp.maps.kw_cidr.batchLookup().keys.length).toBe(0);
  });
});
