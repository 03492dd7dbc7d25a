/**
 * kube-proxy's iptables mode, generated the way kube-proxy (pkg/proxy/iptables/proxier.go,
 * Kubernetes 1.28) generates it, for the benchmark's "iptables" mode: one iptables-restore
 * input holding the filter and nat tables, written in one call however many Services
 * there are (kube-proxy's full sync).
 *
 * nat table, per Service port with endpoints (ClusterIP only; Cluster traffic policy):
 *   -A KUBE-SERVICES -m comment --comment "ns/svc:port cluster IP" -m tcp -p tcp -d VIP --dport P -j KUBE-SVC-<hash>
 *   -A KUBE-SVC-<hash> -m comment --comment "ns/svc:port cluster IP" -m tcp -p tcp -d VIP --dport P ! -s <clusterCIDR> -j KUBE-MARK-MASQ
 *   -A KUBE-SVC-<hash> [-m comment --comment "ns/svc:port -> ip:port"] -m statistic --mode random --probability 1/n -j KUBE-SEP-<hash>
 *     ... 1/(n-1) ... and the last endpoint unconditionally
 *   -A KUBE-SEP-<hash> [-m comment --comment "ns/svc:port"] -s ip -j KUBE-MARK-MASQ
 *   -A KUBE-SEP-<hash> [-m comment --comment "ns/svc:port"] -m tcp -p tcp -j DNAT --to-destination ip:port
 * and, last in KUBE-SERVICES, the jump to KUBE-NODEPORTS for local destinations.
 * Chain hashes: base32(sha256(servicePortName + protocol [+ endpoint])) cut to 16
 * characters. Above 1,000 endpoints kube-proxy drops the per-endpoint comments
 * ("large cluster mode"); so does this generator.
 *
 * filter table: KUBE-FORWARD (INVALID drop, masquerade mark and conntrack accept),
 * empty KUBE-SERVICES / KUBE-EXTERNAL-SERVICES / KUBE-NODEPORTS / KUBE-PROXY-FIREWALL
 * (every Service here has endpoints: nothing to reject), kubelet's KUBE-FIREWALL.
 *
 * The jumps from the built-in chains (PREROUTING, OUTPUT, POSTROUTING, INPUT, FORWARD)
 * are written into the same input, in the order kube-proxy's prepends leave them.
 * Left out, as they are never on a packet's path: the KUBE-PROXY-CANARY chains.
 */
import { createHash } from 'node:crypto';
import type { BenchService } from './services.js';

export interface KubeProxyOptions {
  /** --cluster-cidr: traffic to a ClusterIP from outside it is masqueraded. */
  clusterCIDR: string;
  /** --iptables-masquerade-bit (default 14). */
  masqueradeBit?: number;
}

export interface KubeProxyRuleset {
  /** iptables-restore input (filter and nat tables). */
  text: string;
  natChains: number;
  natRules: number;
  filterRules: number;
  /** kube-proxy's "large cluster mode" (more than 1,000 endpoints: no per-endpoint comments). */
  largeClusterMode: boolean;
}

const LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000;

/** RFC 4648 base32 (Go's base32.StdEncoding), enough of it for the chain hashes. */
export function base32(bytes: Uint8Array): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  while (out.length % 8 !== 0) out += '=';
  return out;
}

function hash16(s: string): string {
  return base32(createHash('sha256').update(s).digest()).slice(0, 16);
}

/** "ns/name:port" (or "ns/name" for an unnamed port), as proxy.ServicePortName.String(). */
export function servicePortName(namespace: string, name: string, port: string): string {
  return `${namespace}/${name}${port ? `:${port}` : ''}`;
}

/** KUBE-SVC-<hash> of a service port (protocol lower case, as kube-proxy passes it). */
export function serviceChainName(svcPortName: string, protocol: string): string {
  return `KUBE-SVC-${hash16(svcPortName + protocol)}`;
}

/** KUBE-SEP-<hash> of one endpoint ("ip:port") of a service port. */
export function endpointChainName(svcPortName: string, protocol: string, endpoint: string): string {
  return `KUBE-SEP-${hash16(svcPortName + protocol + endpoint)}`;
}

/** 1/n with 10 decimals, as kube-proxy's computeProbability. */
export function probability(n: number): string {
  return (1 / n).toFixed(10);
}

/** Quotes an iptables-restore argument the way kube-proxy writes comments. */
function q(s: string): string {
  return `"${s}"`;
}

export function kubeProxyRules(services: readonly BenchService[], opts: KubeProxyOptions): KubeProxyRuleset {
  const bit = opts.masqueradeBit ?? 14;
  const mark = `0x${(1 << bit).toString(16)}`;
  const totalEndpoints = services.reduce((n, s) => n + s.ports.length * s.endpoints.length, 0);
  const large = totalEndpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;

  const filterChains = ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL', 'KUBE-FIREWALL'];
  const filterRules: string[] = [
    // Jumps, in the order kube-proxy's EnsureRule(Prepend) leaves them, kubelet's firewall after.
    `-A INPUT -m conntrack --ctstate NEW -m comment --comment ${q('kubernetes load balancer firewall')} -j KUBE-PROXY-FIREWALL`,
    `-A INPUT -m comment --comment ${q('kubernetes health check service ports')} -j KUBE-NODEPORTS`,
    `-A INPUT -m conntrack --ctstate NEW -m comment --comment ${q('kubernetes externally-visible service portals')} -j KUBE-EXTERNAL-SERVICES`,
    '-A INPUT -j KUBE-FIREWALL',
    `-A FORWARD -m conntrack --ctstate NEW -m comment --comment ${q('kubernetes load balancer firewall')} -j KUBE-PROXY-FIREWALL`,
    `-A FORWARD -m comment --comment ${q('kubernetes forwarding rules')} -j KUBE-FORWARD`,
    `-A FORWARD -m conntrack --ctstate NEW -m comment --comment ${q('kubernetes service portals')} -j KUBE-SERVICES`,
    `-A FORWARD -m conntrack --ctstate NEW -m comment --comment ${q('kubernetes externally-visible service portals')} -j KUBE-EXTERNAL-SERVICES`,
    `-A OUTPUT -m conntrack --ctstate NEW -m comment --comment ${q('kubernetes load balancer firewall')} -j KUBE-PROXY-FIREWALL`,
    `-A OUTPUT -m conntrack --ctstate NEW -m comment --comment ${q('kubernetes service portals')} -j KUBE-SERVICES`,
    '-A OUTPUT -j KUBE-FIREWALL',
    `-A KUBE-FIREWALL -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m comment --comment ${q('block incoming localnet connections')} -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
    '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
    `-A KUBE-FORWARD -m comment --comment ${q('kubernetes forwarding rules')} -m mark --mark ${mark}/${mark} -j ACCEPT`,
    `-A KUBE-FORWARD -m comment --comment ${q('kubernetes forwarding conntrack rule')} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
  ];

  const natChains = ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ'];
  const natRules: string[] = [
    `-A PREROUTING -m comment --comment ${q('kubernetes service portals')} -j KUBE-SERVICES`,
    `-A OUTPUT -m comment --comment ${q('kubernetes service portals')} -j KUBE-SERVICES`,
    `-A POSTROUTING -m comment --comment ${q('kubernetes postrouting rules')} -j KUBE-POSTROUTING`,
    `-A KUBE-POSTROUTING -m mark ! --mark ${mark}/${mark} -j RETURN`,
    `-A KUBE-POSTROUTING -j MARK --xor-mark ${mark}`,
    `-A KUBE-POSTROUTING -m comment --comment ${q('kubernetes service traffic requiring SNAT')} -j MASQUERADE --random-fully`,
    `-A KUBE-MARK-MASQ -j MARK --or-mark ${mark}`,
  ];
  // kube-proxy writes all KUBE-SERVICES rules while walking the services, and each
  // service's own chains after its KUBE-SERVICES rule; the order of rules within a chain
  // is what matters to the kernel, and that is kept.
  for (const s of services) {
    for (const p of s.ports) {
      const protocol = p.protocol.toLowerCase();
      const spn = servicePortName(s.namespace, s.name, p.name);
      const svcChain = serviceChainName(spn, protocol);
      const match = `-m comment --comment ${q(`${spn} cluster IP`)} -m ${protocol} -p ${protocol} -d ${s.clusterIP} --dport ${p.port}`;
      natRules.push(`-A KUBE-SERVICES ${match} -j ${svcChain}`);
      natChains.push(svcChain);
      natRules.push(`-A ${svcChain} ${match} ! -s ${opts.clusterCIDR} -j KUBE-MARK-MASQ`);
      const eps = s.endpoints.map((ip) => ({ ip, endpoint: `${ip}:${p.targetPort}`, chain: endpointChainName(spn, protocol, `${ip}:${p.targetPort}`) }));
      eps.forEach((ep, i) => {
        const comment = large ? '' : `-m comment --comment ${q(`${spn} -> ${ep.endpoint}`)} `;
        const stat = i < eps.length - 1 ? `-m statistic --mode random --probability ${probability(eps.length - i)} ` : '';
        natRules.push(`-A ${svcChain} ${comment}${stat}-j ${ep.chain}`);
      });
      for (const ep of eps) {
        natChains.push(ep.chain);
        const comment = large ? '' : `-m comment --comment ${q(spn)} `;
        natRules.push(`-A ${ep.chain} ${comment}-s ${ep.ip} -j KUBE-MARK-MASQ`);
        natRules.push(`-A ${ep.chain} ${comment}-m ${protocol} -p ${protocol} -j DNAT --to-destination ${ep.endpoint}`);
      }
    }
  }
  natRules.push(`-A KUBE-SERVICES -m comment --comment ${q('kubernetes service nodeports; NOTE: this must be the last rule in this chain')} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`);

  const text = [
    '*filter',
    ...filterChains.map((c) => `:${c} - [0:0]`),
    ...filterRules,
    'COMMIT',
    '*nat',
    ...natChains.map((c) => `:${c} - [0:0]`),
    ...natRules,
    'COMMIT',
    '',
  ].join('\n');
  return { text, natChains: natChains.length, natRules: natRules.length, filterRules: filterRules.length, largeClusterMode: large };
}
