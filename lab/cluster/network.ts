/**
 * The lab cluster's network, all in namespaces of its own (the machine's namespace,
 * routes and iptables are never touched). The same addresses in every cluster: two
 * clusters never share a namespace, so they cannot collide.
 *
 *   control-plane netns  kw-<id>-cp      10.250.0.1 (lo); routes each node and its pod CIDR
 *   node i netns         kw-<id>-node-i  10.250.0.(10+i) (lo), link "up0" to the control
 *                                        plane, pods 10.244.i.0/24 on veths "kwpN"
 *   pod netns            kw-<id>-node-i-pN  10.244.i.N/32 on eth0, default via 169.254.1.1
 *
 * Nodes reach each other's pods through the control-plane namespace (a router).
 */
import { run } from '../system.js';

export const CP_IP = '10.250.0.1';
export const API_PORT = 6443;
export const SERVICE_CIDR = '10.96.0.0/16';
export const KUBERNETES_SERVICE_IP = '10.96.0.1';
export const CLUSTER_CIDR = '10.244.0.0/16';
export const POD_GATEWAY = '169.254.1.1';

export function nodeIp(index: number): string { return `10.250.0.${10 + index}`; }
export function podCidr(index: number): string { return `10.244.${index}.0/24`; }

export async function sysctlIn(netns: string, values: Record<string, string>): Promise<void> {
  const args = Object.entries(values).map(([k, v]) => `${k}=${v}`);
  await run('nsenter', [`--net=/var/run/netns/${netns}`, '--', 'sysctl', '-q', '-w', ...args]);
}

const ROUTER = {
  'net.ipv4.ip_forward': '1',
  'net.ipv4.conf.all.rp_filter': '0',
  'net.ipv4.conf.default.rp_filter': '0',
};

export async function makeControlPlaneNetns(netns: string): Promise<void> {
  await run('ip', ['netns', 'add', netns]);
  await run('ip', ['-n', netns, '-batch', '-'], { input: `link set lo up\naddr add ${CP_IP}/32 dev lo\n` });
  await sysctlIn(netns, ROUTER);
}

/** A node namespace linked to the control-plane namespace, its pod CIDR routed to it. */
export async function makeNodeNetns(cpNetns: string, netns: string, index: number): Promise<void> {
  const ip = nodeIp(index);
  const cpIf = `n${index}`;
  await run('ip', ['netns', 'add', netns]);
  await run('ip', ['-n', cpNetns, '-batch', '-'], {
    input: [
      `link add ${cpIf} type veth peer name up0 netns ${netns}`,
      `link set ${cpIf} up`,
      `route add ${ip}/32 dev ${cpIf}`,
      `route add ${podCidr(index)} via ${ip} dev ${cpIf} onlink`,
    ].join('\n') + '\n',
  });
  await run('ip', ['-n', netns, '-batch', '-'], {
    input: [
      'link set lo up',
      `addr add ${ip}/32 dev lo`,
      `addr add ${POD_GATEWAY}/32 dev lo`,
      'link set up0 up',
      `route add ${CP_IP}/32 dev up0 src ${ip}`,
      `route add default via ${CP_IP} dev up0 src ${ip}`,
    ].join('\n') + '\n',
  });
  await sysctlIn(netns, ROUTER);
}
