/**
 * The policy engine's metrics, read at scrape time (agent/metrics): kernel counters summed
 * over this node's endpoints, and the size of what is compiled. Labels stay bounded:
 * reasons and directions, never a pod, an address or a policy name (per-pod counters are
 * in `kernway policies`).
 */
import type { AgentMetrics } from '../metrics/registry.js';
import type { PolicyEngine } from './policy-engine.js';
import { DROP_REASONS } from './policy-codec.js';

export function registerPolicyMetrics(m: AgentMetrics, engine: () => PolicyEngine | undefined): void {
  const counters = () => {
    const e = engine();
    return e ? [...e.endpoints.counters().values()] : [];
  };
  m.counterAtScrape({
    name: 'kernway_policy_denied_total',
    help: 'Connections into this node\'s pods denied by AuthorizationPolicy, by reason: SYNs dropped at the pod\'s tc ingress (policy_denied, policy_l7_unenforceable; retransmitted SYNs count again) and local connect() calls refused with EPERM (*_connect). Summed over the pods on the node now.',
    labelNames: ['reason'],
    read: () => {
      const sums = new Map<string, number>(DROP_REASONS.map((r) => [r, 0]));
      for (const c of counters()) for (const r of DROP_REASONS) sums.set(r, sums.get(r)! + c.drops[r]);
      return [...sums].map(([reason, value]) => ({ labels: { reason }, value }));
    },
  });
  m.counterAtScrape({
    name: 'kernway_pod_packets_total',
    help: 'Packets into (in) and out of (out) this node\'s pods, seen on their host veths; denied SYNs are not counted in. Summed over the pods on the node now.',
    labelNames: ['direction'],
    read: () => {
      let pin = 0, pout = 0;
      for (const c of counters()) { pin += c.packetsIn; pout += c.packetsOut; }
      return [{ labels: { direction: 'in' }, value: pin }, { labels: { direction: 'out' }, value: pout }];
    },
  });
  m.counterAtScrape({
    name: 'kernway_pod_bytes_total',
    help: 'Bytes into (in) and out of (out) this node\'s pods, seen on their host veths. Summed over the pods on the node now.',
    labelNames: ['direction'],
    read: () => {
      let bin = 0, bout = 0;
      for (const c of counters()) { bin += c.bytesIn; bout += c.bytesOut; }
      return [{ labels: { direction: 'in' }, value: bin }, { labels: { direction: 'out' }, value: bout }];
    },
  });
  m.gaugeAtScrape({
    name: 'kernway_policy_objects',
    help: 'What the policy engine holds: policies, workload identities, verdict tables and their entries, ipBlock prefixes, local endpoints.',
    labelNames: ['kind'],
    read: () => {
      const e = engine();
      if (!e) return [];
      const t = e.report().totals;
      return Object.entries(t).map(([kind, value]) => ({ labels: { kind }, value }));
    },
  });
  m.gaugeAtScrape({
    name: 'kernway_policy_endpoints',
    help: 'Pods of this node by endpoint status: attached (tc programs on its veth) or pending (no veth found yet).',
    labelNames: ['status'],
    read: () => {
      const e = engine();
      if (!e) return [];
      const list = e.endpoints.list();
      return ['attached', 'pending'].map((status) => ({ labels: { status }, value: list.filter((x) => x.status === status).length }));
    },
  });
  m.gaugeAtScrape({
    name: 'kernway_policy_not_enforceable',
    help: 'AuthorizationPolicies with L7 fields selecting a workload without a waypoint: enforced fail-safe (denying what the L7 rule would inspect).',
    read: () => {
      const e = engine();
      return e ? [{ value: e.report().policies.filter((p) => p.enforcement === 'not-enforceable').length }] : [];
    },
  });
}
