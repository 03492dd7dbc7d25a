/**
 * `kernway agent --kubeconfig` against the real API server of a lab cluster (1.20: only
 * discovery.k8s.io/v1beta1 EndpointSlices), balancing in the real kernel (a lab's pods):
 * Services, EndpointSlices, Pods and policies changed with kubectl reach the kernel maps;
 * missing CRDs are problems until installed; the API server killed for 30 s under traffic
 * fails no connection and flushes nothing, and changes made around it arrive; watches that
 * expire (410 Gone: the API server runs without a watch cache and compacts etcd every 2 s)
 * relist without a flush.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { projectRoot } from '../../common/version.js';
import { Lab, type Pod } from '../../lab/index.js';
import { Cluster } from '../../lab/cluster/index.js';
import { KINDS } from '../../k8s/kinds.js';
import { Agent } from '../../agent/agent.js';
import { validateAgentOptions } from '../../agent/options.js';
import { uninstallAgent } from '../../agent/uninstall.js';
import { renderStatus } from '../../cli/status.js';
import { clusterStatusOf } from '../../model/route-status.js';
import { LeaderElector } from '../../agent/cluster/lease.js';
import { KubeClient, loadKubeConfig } from '../../sources/kube-config.js';
import { Client, startEcho, type Counts } from '../fixtures/lb-harness.js';

const NODE = 'node-a';
const WEB = '10.96.0.50:80/TCP';
let cluster: Cluster;
let lab: Lab;
let pods: Pod[];
let client: Client;
let agent: Agent;
let root: string;

/** The agent's debug log (a file in `root`): a failed wait shows its tail. */
let agentLog: string;

/** What the agent says about the API and its objects, and the tail of its log: a failed wait's explanation. */
function explain(): string {
  let tail = '';
  try { tail = readFileSync(agentLog, 'utf8').trim().split('\n').slice(-80).join('\n'); } catch { /* no log yet */ }
  let state: string;
  try {
    const st = agent.status();
    state = JSON.stringify({ api: st.api, lastReconcile: st.lastReconcile, problems: st.problems.map((p) => `${p.code} ${p.object ?? ''}: ${p.message}`), frontends: agent.services().map((s) => `${s.frontend} ${s.backends.length}`) });
  } catch (e) { state = `status: ${String(e)}`; }
  return `\nagent: ${state}\nagent log (last 80 lines):\n${tail}`;
}

async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms${explain()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function kubectl(args: string[], input?: unknown[]): Promise<void> {
  await cluster.kubectl(args, input ? { input: input.map((d) => JSON.stringify(d)).join('\n') } : {});
}

function service(name: string, ip: string, labels: Record<string, string> = {}) {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'shop', labels },
    spec: { clusterIP: ip, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } };
}

/** 1.20 serves EndpointSlices as discovery.k8s.io/v1beta1 only (node in topology). */
function slice(name: string, svc: string, backends: Pod[], labels: Record<string, string> = {}) {
  return { apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice',
    metadata: { name, namespace: 'shop', labels: { 'kubernetes.io/service-name': svc, ...labels } },
    addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: backends.map((p) => ({ addresses: [p.ipv4], conditions: { ready: true }, topology: { 'kubernetes.io/hostname': NODE } })) };
}

const backendsOf = (frontend: string): string[] | undefined => agent.services().find((s) => s.frontend === frontend)?.backends;
const ips = (ps: Pod[]): string[] => ps.map((p) => `${p.ipv4}:8080`).sort();

beforeAll(async () => {
  cluster = await Cluster.start({ tag: 'kubeapi', nodes: 1, apiserverArgs: ['--watch-cache=false', '--etcd-compaction-interval=2s'] });
  lab = await Lab.create({ tag: 'kubeapi' });
  const c = await lab.addPod('c');
  pods = [await lab.addPod('b1'), await lab.addPod('b2'), await lab.addPod('b3')];
  await Promise.all(pods.map((p) => startEcho(lab, p, p.name, 8080, 5353)));
  client = new Client(lab, c);
  root = mkdtempSync(join(tmpdir(), 'kernway-kube-agent-'));
  agentLog = join(root, 'agent.log');
  await kubectl(['apply', '-f', '-'], [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } }, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kernway-system' } }]);
  await kubectl(['apply', '-f', '-'], [
    service('web', '10.96.0.50'), slice('web-1', 'web', pods),
    // Handed to another proxy: not kernway's.
    service('other', '10.96.0.51', { 'service.kubernetes.io/service-proxy-name': 'elsewhere' }),
    slice('other-1', 'other', pods, { 'service.kubernetes.io/service-proxy-name': 'elsewhere' }),
  ]);
}, 180_000);

afterAll(async () => {
  await agent?.drain().catch(() => undefined);
  client?.close();
  try { uninstallAgent(join(lab.bpffsDir, 'agent')); } catch { /* the lab removes the folder anyway */ }
  await lab?.destroy();
  await cluster?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
}, 120_000);

describe('kernway agent --kubeconfig (lab cluster, real kernel)', () => {
  it('syncs every kind, then balances the Services of the API server; missing CRDs are problems', async () => {
    agent = new Agent(validateAgentOptions({
      kubeconfig: cluster.kubeconfig, nodeName: NODE, cgroup: lab.cgroupPath, bpffs: join(lab.bpffsDir, 'agent'),
      adminSocket: join(root, 'admin.sock'), metricsAddress: '127.0.0.1:0',
      kubeTuning: { watchTimeoutSeconds: 4, missingRetryMs: 300, backoff: { initialMs: 100, maxMs: 1000 } },
    }), pino({ name: 'test-agent', level: 'debug' }, pino.destination({ dest: agentLog, sync: true })));
    // As `kernway agent --kubeconfig` does: a candidate for the status writer's Lease (alone: it leads).
    agent.enableClusterDuties(clusterStatusOf);
    await agent.start();
    expect(agent.ready).toBe(true);
    // The cluster's own kubernetes Service, web, and not 'other'.
    expect(agent.services().map((s) => s.frontend)).toEqual(['10.96.0.1:443/TCP', WEB]);
    expect(backendsOf(WEB)).toEqual(ips(pods));
    const st = agent.status();
    expect(st.api?.synced).toBe(true);
    expect(st.api?.kinds.find((k) => k.kind === 'EndpointSlice')?.apiVersion).toBe('discovery.k8s.io/v1beta1');
    const missing = st.problems.filter((p) => p.code === 'KW_KUBE_KIND_MISSING').map((p) => p.object).sort();
    // Every kind of a CRD (kernway's, the Gateway API's): none is installed yet.
    expect(missing).toEqual(KINDS.filter((k) => k.group !== '' && k.group !== 'discovery.k8s.io').map((k) => k.kind).sort());
    expect(missing).toContain('HTTPRoute');
    const r = await client.send<Counts>({ op: 'tcp', host: '10.96.0.50', port: 80, n: 60 });
    expect(r.errors).toEqual({});
    expect(Object.keys(r.counts).sort()).toEqual(['b1', 'b2', 'b3']);
  });

  it('an EndpointSlice changed with kubectl reaches the maps', async () => {
    await kubectl(['apply', '-f', '-'], [slice('web-1', 'web', [pods[0]!, pods[2]!])]);
    await until('b2 gone from the maps', () => backendsOf(WEB)?.length === 2);
    expect(backendsOf(WEB)).toEqual(ips([pods[0]!, pods[2]!]));
    const r = await client.send<Counts>({ op: 'tcp', host: '10.96.0.50', port: 80, n: 40 });
    expect(Object.keys(r.counts).sort()).toEqual(['b1', 'b3']);
    // A new Service and its slice; then the Service deleted: gone from the maps.
    await kubectl(['apply', '-f', '-'], [service('api', '10.96.0.52'), slice('api-1', 'api', [pods[1]!])]);
    await until('api in the maps', () => backendsOf('10.96.0.52:80/TCP')?.length === 1);
    await kubectl(['delete', '-n', 'shop', 'service', 'api']);
    await until('api gone', () => backendsOf('10.96.0.52:80/TCP') === undefined);
  });

  it('CRDs installed later are read; a Pod and an AuthorizationPolicy reach the policy and pod maps', async () => {
    const crds = [join(projectRoot(), 'deploy', 'crds'), join(projectRoot(), '..', 'shared', 'crds', 'gateway-api-standard')];
    for (const d of crds) for (const f of readdirSync(d).filter((x) => x.endsWith('.yaml'))) await kubectl(['apply', '--validate=false', '-f', join(d, f)]); // 1.20's kubectl does not know x-kubernetes-validations
    await until('every kind served', () => agent.status().problems.every((p) => p.code !== 'KW_KUBE_KIND_MISSING'), 30_000);
    expect(agent.status().api?.kinds.every((k) => k.state === 'watching' || k.state === 'listing')).toBe(true);

    // A pod of this node (no kubelet runs it: its status is written by hand) at b1's address.
    await kubectl(['apply', '-f', '-'], [{ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'b1', namespace: 'shop', labels: { app: 'web' } },
      spec: { nodeName: NODE, containers: [{ name: 'c', image: 'none', command: ['sleep', '1'] }] } }]);
    await cluster.api.request('PATCH', '/api/v1/namespaces/shop/pods/b1/status', { status: { phase: 'Running', podIP: pods[0]!.ipv4, podIPs: [{ ip: pods[0]!.ipv4 }] } }, 'application/merge-patch+json');
    await until('b1 a local pod in kw_sm_pods', () => agent.status().sockmap?.localPods === 1);

    const before = agent.status().generation;
    await kubectl(['apply', '-f', '-'], [{ apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'web-allow', namespace: 'shop' },
      spec: { selector: { matchLabels: { app: 'web' } }, action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['shop'] } }] }] } }]);
    const report = await until('the policy in force', () => {
      const rep = (agent as unknown as { policy: { report(): { policies: Array<{ key: string; selects: number }>; totals: { entries: number } } } }).policy.report();
      return rep.policies.some((p) => p.key === 'shop/web-allow' && p.selects === 1) ? rep : undefined;
    });
    expect(report.totals.entries).toBeGreaterThan(0);
    expect(agent.status().generation).toBeGreaterThan(before);
  });

  it('the elected agent writes route status on Gateway API changes, and runs no status round for EndpointSlice-only changes', async () => {
    await until('this agent leads', () => agent.status().leader?.leading, 30_000);
    const ROUTE = '/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web';
    type Route = { metadata: { resourceVersion: string }; status?: { parents?: Array<{ controllerName: string; conditions: Array<{ type: string; status: string; reason: string }> }> } };
    const ours = (r: Route) => r.status?.parents?.find((p) => p.controllerName === 'kernway.io/gateway-controller');
    const route = (backend: string) => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web', namespace: 'shop' },
      spec: { parentRefs: [{ name: 'edge' }], rules: [{ backendRefs: [{ name: backend, port: 80 }] }] } });
    await kubectl(['apply', '-f', '-'], [
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'kernway' }, spec: { controllerName: 'kernway.io/gateway-controller' } },
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'shop' }, spec: { gatewayClassName: 'kernway', listeners: [{ name: 'http', port: 8080, protocol: 'HTTP' }] } },
      route('web'),
    ]);
    await until('the route status written', async () => ours(await cluster.api.get<Route>(ROUTE))?.conditions.some((c) => c.type === 'ResolvedRefs' && c.status === 'True'));

    // The leader's writes come back through the watches (the route's, the Gateway's and the
    // class's status: each a change that asks for a round). Wait until the agent has each of
    // them at the server's resourceVersion, delivered, with no round in flight, so that what
    // follows counts only the slices' changes.
    type Internals = { kube: { timer?: unknown; reflectors: Array<{ info: { kind: string }; items: Map<string, { rv: string | number }> }> };
      cluster: { round?: unknown } };
    const inside = agent as unknown as Internals;
    const written = [
      { kind: 'GatewayClass', key: 'kernway', path: '/apis/gateway.networking.k8s.io/v1/gatewayclasses/kernway' },
      { kind: 'Gateway', key: 'shop/edge', path: '/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/edge' },
      { kind: 'HTTPRoute', key: 'shop/web', path: ROUTE },
    ];
    await until('the status writes seen back', async () => {
      if (inside.cluster.round !== undefined || inside.kube.timer !== undefined) return false;
      for (const w of written) {
        const server = (await cluster.api.get<Route>(w.path)).metadata.resourceVersion;
        const seen = inside.kube.reflectors.find((r) => r.info.kind === w.kind)?.items.get(w.key)?.rv;
        if (String(seen) !== server) return false;
      }
      return inside.cluster.round === undefined && inside.kube.timer === undefined;
    });

    // EndpointSlice-only changes (web's b2 back, then gone again): in the maps, and no status round asked for.
    const before = agent.status().leader!.changes!;
    const rv = (await cluster.api.get<Route>(ROUTE)).metadata.resourceVersion;
    await kubectl(['apply', '-f', '-'], [slice('web-1', 'web', pods)]);
    await until('b2 back in the maps', () => backendsOf(WEB)?.length === 3);
    await kubectl(['apply', '-f', '-'], [slice('web-1', 'web', [pods[0]!, pods[2]!])]);
    await until('b2 gone again', () => backendsOf(WEB)?.length === 2);
    const after = agent.status().leader!.changes!;
    expect(after.rounds).toBe(before.rounds);
    expect(after.skipped).toBeGreaterThanOrEqual(before.skipped + 2);
    expect((await cluster.api.get<Route>(ROUTE)).metadata.resourceVersion).toBe(rv);

    // An HTTPRoute change: a round, and its status written (a backend that does not exist).
    await kubectl(['apply', '-f', '-'], [route('nowhere')]);
    await until('ResolvedRefs False written', async () => ours(await cluster.api.get<Route>(ROUTE))?.conditions.some((c) => c.type === 'ResolvedRefs' && c.status === 'False' && c.reason === 'BackendNotFound'));
    expect(agent.status().leader!.changes!.rounds).toBeGreaterThan(after.rounds);

    // Another writer replaces the route's parents with its own entry only (a JSON merge patch
    // replaces the list): the route changed on the server, so the leader reads it again and puts
    // kernway's entry back beside the other's, though what kernway wants to write is unchanged.
    const foreign = { parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'shop', name: 'theirs' }, controllerName: 'example.com/other',
      conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'theirs', lastTransitionTime: '2026-01-01T00:00:00Z', observedGeneration: 1 }] };
    await cluster.api.request('PATCH', `${ROUTE}/status`, { status: { parents: [foreign] } }, 'application/merge-patch+json');
    const back = await until('kernway\'s entry back beside the other writer\'s', async () => {
      const r = await cluster.api.get<Route>(ROUTE);
      return r.status?.parents?.length === 2 && ours(r)?.conditions.some((c) => c.reason === 'BackendNotFound') ? r : undefined;
    });
    expect(back.status!.parents!.map((p) => p.controllerName).sort()).toEqual(['example.com/other', 'kernway.io/gateway-controller']);
  });

  it('watches that expire (410 Gone) relist without flushing the maps', async () => {
    const writes: number[] = [];
    agent.onReconcile((ev) => { if (ev.result) writes.push(ev.result.deletes); });
    const relists = (): number => agent.status().api!.kinds.reduce((a, k) => a + k.relists, 0);
    const start = relists();
    await until('a relist after a 410', () => relists() >= start + 2, 60_000);
    const kinds = agent.status().api!.kinds.filter((x) => x.relists > 0);
    expect(kinds[0]!.lastRelistReason).toMatch(/compacted|too old|expired/i);
    expect(backendsOf(WEB)).toEqual(ips([pods[0]!, pods[2]!]));
    expect(writes.every((d) => d === 0)).toBe(true);
  }, 90_000);

  it('a leader renews its Lease with one PUT per round; a write by someone else makes it read the Lease again, and it keeps leading', async () => {
    const api = new KubeClient(loadKubeConfig(cluster.kubeconfig));
    const path = '/apis/coordination.k8s.io/v1/namespaces/default/leases/kw-renewals';
    const elector = new LeaderElector(api, { namespace: 'default', name: 'kw-renewals', identity: 'me', leaseDurationMs: 5000, renewDeadlineMs: 4000, retryPeriodMs: 100 });
    elector.start();
    try {
      await until('leading', () => elector.isLeader);
      const renewTimes = new Set<string>();
      const from = elector.requests;
      const renewed = elector.renewals;
      // Every renewal moves renewTime: 10 of them seen through the API server, one PUT each.
      await until('10 renewals', async () => {
        renewTimes.add((await api.get<{ spec: { renewTime: string } }>(path)).spec.renewTime);
        return renewTimes.size >= 11;
      });
      await elector.stop();
      const rounds = elector.renewals - renewed;
      expect(rounds).toBeGreaterThanOrEqual(10);
      expect(elector.requests - from).toBeLessThanOrEqual(rounds + 1); // one PUT per round (two with a GET each)
      expect(elector.requests - from).toBeGreaterThanOrEqual(10);
      // Someone else writes the Lease (an annotation): the next renewal's PUT is refused (409), read again, renewed.
      elector.start();
      await until('leading again', () => elector.isLeader);
      const cur = await api.get<{ metadata: Record<string, unknown> }>(path);
      await api.request('PUT', path, { ...cur, metadata: { ...cur.metadata, annotations: { 'example.com/touched': 'yes' } } });
      const touched = elector.requests;
      await until('renewed after the foreign write', async () => {
        const l = await api.get<{ metadata: { annotations?: Record<string, string> }; spec: { holderIdentity: string; renewTime: string } }>(path);
        return elector.requests >= touched + 3 && l.spec.holderIdentity === 'me' && l.metadata.annotations?.['example.com/touched'] === 'yes' && !renewTimes.has(l.spec.renewTime);
      });
      expect(elector.isLeader).toBe(true);
    } finally {
      await elector.stop();
    }
  }, 60_000);

  it('the API server killed for 30 s under traffic: no connection fails, nothing flushed, changes around it arrive', async () => {
    let stop = false;
    const errors: Record<string, number> = {};
    const t0 = Date.now();
    const when: string[] = [];
    let connections = 0;
    const traffic = (async () => {
      while (!stop) {
        // The machine is shared and loaded: a connection counts as failed after 15 s, not the fixture's 3 s.
        const r = await client.send<Counts>({ op: 'tcp', host: '10.96.0.50', port: 80, n: 10, concurrency: 5, timeoutMs: 15_000 });
        if (Object.keys(r.errors).length > 0) when.push(`${Date.now() - t0} ms: ${JSON.stringify(r.errors)}`);
        for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
        connections += Object.values(r.counts).reduce((a, b) => a + b, 0);
      }
    })();
    let minBackends = Infinity;
    const watch = setInterval(() => { minBackends = Math.min(minBackends, backendsOf(WEB)?.length ?? 0); }, 50);
    try {
      // Just before: b2 back in web (may or may not arrive before the kill).
      await kubectl(['apply', '-f', '-'], [slice('web-1', 'web', pods)]);
      await cluster.stopApiServer();
      const down = Date.now();
      const since = await until('status says the API is unreachable', () => agent.status().api?.unreachableSince, 15_000);
      await until('the problem in the status', () => agent.status().problems.some((p) => p.code === 'KW_KUBE_UNREACHABLE' && p.message.includes(since)));
      expect(renderStatus(agent.status())).toContain(`unreachable since ${since}`);
      expect(agent.ready).toBe(true);
      await new Promise((r) => setTimeout(r, Math.max(0, 30_000 - (Date.now() - down)))); // the outage under test
      await cluster.startApiServer();
      // Just after: a new Service.
      await kubectl(['apply', '-f', '-'], [service('late', '10.96.0.53'), slice('late-1', 'late', [pods[2]!])]);
      await until('the change made before the outage', () => backendsOf(WEB)?.length === 3, 60_000);
      await until('the change made after the outage', () => backendsOf('10.96.0.53:80/TCP')?.length === 1, 60_000);
      await until('the API reachable again', () => agent.status().api?.unreachableSince === undefined, 30_000);
    } finally {
      stop = true;
      clearInterval(watch);
      await traffic;
    }
    expect(errors, when.join('; ')).toEqual({});
    expect(connections).toBeGreaterThan(100);
    expect(minBackends).toBeGreaterThanOrEqual(2); // never flushed
  }, 180_000);
});
