/**
 * deploy/ against the real API server of a lab cluster (2 nodes): `kubectl apply -k deploy/`
 * (and --dry-run=server), the agent DaemonSet's pods on every node from the manifest as
 * written, the GatewayClasses, RBAC as the agent's ServiceAccount (403 where it must not), the
 * waypoint controller, and a waypoint fed by its node's agent over TCP serving an HTTPRoute.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../../lab/cluster/index.js';
import { waitFor } from '../../lab/cluster/proc.js';
import { DEPLOY_DIR, TokenApi, asToken, installGatewayApiCrds, modelFromApi, serviceAccountToken } from './helpers.js';
import { HTTP_ECHO, NODE, apply, containerLog, environOf, isReady, pidOf, podExec, podsWith, type PodJson } from '../cluster/helpers.js';
import { waypointGateway } from '../../agent/cluster/waypoint-manifests.js';

const CLI = join(projectRoot(), 'dist', 'cli', 'main.js');
import { ClusterController } from '../../agent/cluster/controller.js';
import { clusterStatusOf } from '../../model/route-status.js';
import { renderStatus } from '../../cli/status.js';
import { WaypointController, covers } from '../../agent/cluster/waypoints.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { projectRoot } from '../../common/version.js';
import { run } from '../../lab/system.js';

const SA = 'system:serviceaccount:kernway-system:kernway-agent';
/** node -e: one GET of URL with one header (argv: URL, header name, value); prints the status and body. */
const HTTP_GET = `
const http = require('node:http');
const [url, name, value] = process.argv.slice(1);
http.get(url, { agent: false, timeout: 3000, headers: { [name]: value } }, (r) => { let b = ''; r.setEncoding('utf8').on('data', (d) => { b += d; }).on('end', () => console.log(r.statusCode + ' ' + b)); })
  .on('error', (e) => { console.error(e.message); process.exit(3); }).on('timeout', function () { this.destroy(new Error('timeout')); });
`;
/** kubectl's discovery of a dozen API groups takes long on a loaded machine. */
const KUBECTL_MS = 120_000;

describe('deploy/ on the lab cluster', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    // kube-proxy makes the kubernetes Service (10.96.0.1:443) reachable from the nodes, where
    // the agents' in-cluster configuration points (docs/deploy.md: kube-proxy-free clusters).
    cluster = await Cluster.start({ tag: 'deploy', nodes: 2, kubeProxy: true });
    await installGatewayApiCrds(cluster);
  }, 400_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 60_000);

  it('kubectl apply -k deploy/ succeeds, also with --dry-run=server, and creates what it lists', async () => {
    const dry = await cluster.kubectl(['apply', '-k', DEPLOY_DIR, '--dry-run=server'], { allowFail: true, timeoutMs: KUBECTL_MS });
    const applied = await cluster.kubectl(['apply', '-k', DEPLOY_DIR], { timeoutMs: KUBECTL_MS });
    expect(applied.stdout).toMatch(/namespace\/kernway-system created/);
    expect(applied.stdout).toMatch(/daemonset.apps\/kernway-agent created/);
    expect(applied.stdout).toMatch(/gatewayclass.gateway.networking.k8s.io\/kernway-waypoint created/);
    // A second server-side dry run against the installed objects, and the first one (before
    // anything existed) must not have failed on anything but the namespace it creates itself.
    await cluster.kubectl(['apply', '-k', DEPLOY_DIR, '--dry-run=server'], { timeoutMs: KUBECTL_MS });
    expect(dry.code === 0 || /namespaces "kernway-system" not found/.test(dry.stderr), dry.stderr).toBe(true);
    const classes = await cluster.api.get<{ items: Array<{ metadata: { name: string }; spec: { controllerName: string } }> }>('/apis/gateway.networking.k8s.io/v1/gatewayclasses');
    expect(Object.fromEntries(classes.items.map((c) => [c.metadata.name, c.spec.controllerName]))).toEqual({
      kernway: 'kernway.io/gateway-controller', 'kernway-waypoint': 'kernway.io/mesh-controller',
    });
  }, 300_000);

  it('the DaemonSet runs one agent per node, as written (hostNetwork, capabilities, not privileged, the image entrypoint); the agents read the API in-cluster, become Ready, one holds the Lease', async () => {
    const pods = await waitFor('an agent pod on each node', async () => {
      const list = await cluster.api.get<{ items: Array<PodJson & { spec: Record<string, any> }> }>('/api/v1/namespaces/kernway-system/pods?labelSelector=app.kubernetes.io%2Fname%3Dkernway-agent'); // eslint-disable-line @typescript-eslint/no-explicit-any
      const started = list.items.filter((p) => p.status.containerStatuses?.[0]?.containerID);
      return started.length === 2 ? started : undefined;
    }, 60_000, 200);
    expect(pods.map((p) => p.spec.nodeName).sort()).toEqual(['node-1', 'node-2']);
    for (const p of pods) {
      expect(p.spec.hostNetwork).toBe(true);
      expect(p.spec.dnsPolicy).toBe('ClusterFirstWithHostNet');
      expect(p.spec.priorityClassName).toBe('system-node-critical');
      expect(p.spec.tolerations).toContainEqual({ operator: 'Exists' });
      const c = p.spec.containers[0];
      expect(c.securityContext.privileged).toBe(false);
      expect(c.securityContext.capabilities.add.sort()).toEqual(['BPF', 'NET_ADMIN', 'PERFMON', 'SYS_ADMIN', 'SYS_RESOURCE']);
      expect(c.resources.limits.memory).toBeDefined();
    }
    // The agents read the API in-cluster (their ServiceAccount token) and become Ready once every kind synced.
    await waitFor('both agents Ready', async () => {
      const list = await cluster.api.get<{ items: PodJson[] }>('/api/v1/namespaces/kernway-system/pods?labelSelector=app.kubernetes.io%2Fname%3Dkernway-agent');
      return list.items.filter(isReady).length === 2 || undefined;
    }, 90_000, 250).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${pods.map((p) => containerLog(cluster, p.spec.nodeName!, p.metadata.name, 'agent', 'kernway-system').slice(-3000)).join('\n')}`);
    });
    for (const p of pods) expect(containerLog(cluster, p.spec.nodeName!, p.metadata.name, 'agent', 'kernway-system')).toMatch(/in-cluster/);
    // The manifest's environment reaches the agent process (one malloc arena: docs/deploy.md).
    for (const p of pods) expect(environOf(pidOf(p))).toMatchObject({ MALLOC_ARENA_MAX: '1', NODE_OPTIONS: '--use-openssl-ca', NODE_NAME: p.spec.nodeName });
    const lease = await waitFor('an agent holding the Lease', () => cluster.api.find<{ spec: { holderIdentity?: string } }>('/apis/coordination.k8s.io/v1/namespaces/kernway-system/leases/kernway-agent'), 30_000, 200);
    expect(['node-1', 'node-2']).toContain(lease.spec.holderIdentity);
    const ds = await cluster.api.get<{ spec: { updateStrategy: unknown }; status: { desiredNumberScheduled: number } }>('/apis/apps/v1/namespaces/kernway-system/daemonsets/kernway-agent');
    expect(ds.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    expect(ds.status.desiredNumberScheduled).toBe(2);
  }, 150_000);

  it('RBAC: the agent reads what it watches and writes only status, its Lease and waypoints; Secrets and Pods are refused (403)', async () => {
    const canI = async (...args: string[]): Promise<boolean> => (await cluster.kubectl(['auth', 'can-i', `--as=${SA}`, ...args], { allowFail: true })).stdout.trim() === 'yes';
    for (const [verb, what, ...rest] of [
      ['list', 'services'], ['watch', 'pods'], ['list', 'endpointslices.discovery.k8s.io'], ['watch', 'namespaces'],
      ['list', 'httproutes.gateway.networking.k8s.io'], ['watch', 'gateways.gateway.networking.k8s.io'], ['list', 'authorizationpolicies.kernway.io'],
      ['update', 'httproutes.gateway.networking.k8s.io/x', '--subresource=status'],
      ['create', 'tokenreviews.authentication.k8s.io'], ['create', 'deployments.apps', '-n', 'default'], ['create', 'serviceaccounts', '-n', 'default'],
      ['create', 'leases.coordination.k8s.io', '-n', 'kernway-system'], ['update', 'leases.coordination.k8s.io/kernway-agent', '-n', 'kernway-system'],
    ] as const) expect(await canI(verb, what, ...rest), `${verb} ${what} ${rest.join(' ')}`).toBe(true);
    for (const [verb, what, ...rest] of [
      ['get', 'secrets', '-n', 'kernway-system'], ['list', 'secrets'], ['list', 'configmaps'], ['create', 'pods'], ['delete', 'pods'], ['patch', 'pods'],
      ['update', 'httproutes.gateway.networking.k8s.io/x'], ['update', 'gateways.gateway.networking.k8s.io/x'],
      ['update', 'leases.coordination.k8s.io/other', '-n', 'kernway-system'], ['create', 'leases.coordination.k8s.io', '-n', 'default'],
      ['create', 'clusterroles.rbac.authorization.k8s.io'], ['update', 'nodes/x'],
      // AuthorizationPolicy has no status subresource: nothing to write there.
      ['update', 'authorizationpolicies.kernway.io/x', '--subresource=status'],
    ] as const) expect(await canI(verb, what, ...rest), `${verb} ${what} ${rest.join(' ')}`).toBe(false);

    // Real requests with the agent's ServiceAccount token.
    const token = await serviceAccountToken(cluster, 'kernway-system', 'kernway-agent');
    expect((await asToken(cluster, token, 'GET', '/api/v1/services')).status).toBe(200);
    expect((await asToken(cluster, token, 'GET', '/apis/gateway.networking.k8s.io/v1/httproutes')).status).toBe(200);
    expect((await asToken(cluster, token, 'GET', '/api/v1/namespaces/kernway-system/secrets')).status).toBe(403);
    expect((await asToken(cluster, token, 'GET', '/api/v1/secrets')).status).toBe(403);
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'forbidden' }, spec: { containers: [{ name: 'c', image: 'x', command: ['sleep', '1'] }] } };
    expect((await asToken(cluster, token, 'POST', '/api/v1/namespaces/default/pods', pod)).status).toBe(403);
    const review = await asToken(cluster, token, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } });
    expect(review.status).toBe(201);
    expect(JSON.parse(review.body).status.user.username).toBe(SA);
  }, 180_000);

  it('the DaemonSet\'s elected agent writes HTTPRoute status (others\' entries kept); then two candidates race for the Lease: exactly one writes, the other takes over when it stops', async () => {
    await apply(cluster, [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'shop' }, spec: { gatewayClassName: 'kernway', listeners: [{ name: 'http', port: 8080, protocol: 'HTTP' }] } },
      {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web', namespace: 'shop' },
        spec: { parentRefs: [{ name: 'edge' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] },
      },
    ]);
    // Another implementation's entry, which kernway must keep. The elected agent may write the route's status
    // between our read and our write (409 Conflict): read again and retry, as any controller does.
    const foreign = { parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'shop', name: 'theirs' }, controllerName: 'example.com/other', conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'theirs', lastTransitionTime: '2026-01-01T00:00:00Z', observedGeneration: 1 }] };
    for (let attempt = 1; ; attempt++) {
      const route = await cluster.api.get<Record<string, unknown>>('/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web');
      try {
        await cluster.api.put('/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web/status', { ...route, status: { parents: [foreign] } });
        break;
      } catch (e) {
        if ((e as { status?: number }).status !== 409 || attempt >= 10) throw e;
      }
    }

    // The DaemonSet's elected agent writes the route's status: kernway's entry beside the foreign one.
    let lastSeen: unknown;
    await waitFor('the route status written by the elected DaemonSet agent', async () => {
      const r = await cluster.api.get<{ status?: { parents?: Array<{ controllerName: string; conditions: Array<{ type: string; status: string }> }> } }>('/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web');
      const ps = r.status?.parents ?? [];
      lastSeen = r.status;
      return ps.length === 2 && ps.some((p) => p.controllerName === 'example.com/other') && ps.some((p) => p.controllerName === 'kernway.io/gateway-controller' && p.conditions.some((c) => c.type === 'Accepted' && c.status === 'True')) || undefined;
    }, 30_000, 200).catch(async (e: unknown) => {
      // What the agents knew: the Lease, the route's status as last read, the tail of each agent's log.
      const lease = await cluster.api.find('/apis/coordination.k8s.io/v1/namespaces/kernway-system/leases/kernway-agent').catch((x: unknown) => String(x));
      const agents = await podsWith(cluster, 'app.kubernetes.io/name=kernway-agent', 'kernway-system');
      const logs = agents.map((p) => `--- ${p.metadata.name} on ${p.spec.nodeName} (restarts ${p.status.containerStatuses?.[0]?.restartCount}):\n${containerLog(cluster, p.spec.nodeName!, p.metadata.name, 'agent', 'kernway-system').split('\n').slice(-40).join('\n')}`);
      throw new Error(`${(e as Error).message}\nLease: ${JSON.stringify(lease)}\nroute status: ${JSON.stringify(lastSeen)}\n${logs.join('\n')}`);
    });
    expect((await cluster.kubectl(['get', 'httproute', 'web', '-n', 'shop', '-o', 'yaml'])).stdout).toMatch(/controllerName: kernway\.io\/gateway-controller/);

    // The DaemonSet goes (its leader releases the Lease); two candidates race for it.
    await cluster.kubectl(['delete', 'daemonset', 'kernway-agent', '-n', 'kernway-system']);
    await waitFor('the agent pods gone', async () => (await cluster.api.get<{ items: unknown[] }>('/api/v1/namespaces/kernway-system/pods')).items.length === 0 || undefined, 60_000, 250);
    await cluster.api.put('/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web/status', { ...(await cluster.api.get<Record<string, unknown>>('/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web')), status: { parents: [foreign] } });
    const token = await serviceAccountToken(cluster, 'kernway-system', 'kernway-agent');
    const lease = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 };
    const agents = ['candidate-a', 'candidate-b'].map((identity) => new ClusterController(new TokenApi(cluster, token), { identity, computeStatus: clusterStatusOf, lease }));
    try {
      const model = await modelFromApi(cluster);
      for (const a of agents) { a.update(model); a.start(); }
      const leader = await waitFor('a leader that wrote status', () => agents.find((a) => a.isLeader && a.rounds > 0), 20_000, 50);
      const other = agents.find((a) => a !== leader)!;
      await waitFor('the other candidate to have read the Lease', () => other.elector.status().holder, 5_000, 50);
      expect(other.isLeader).toBe(false);
      // What `kernway status` shows of the Lease, from either side.
      expect(other.elector.status()).toMatchObject({ lease: 'kernway-system/kernway-agent', leading: false, holder: leader.elector.identity });
      expect(leader.elector.status()).toMatchObject({ leading: true, holder: leader.elector.identity, holderSince: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
      const shown = renderStatus({ state: 'running', nodeName: 'n', cgroup: '/c', bpffs: '/b', generation: 1, frontends: 0, problems: [], reusedMaps: false, leader: other.elector.status() });
      expect(shown).toMatch(new RegExp(`status writer\\s+${leader.elector.identity} leads \\(this agent, ${other.elector.identity}, is a candidate\\) since \\d{4}-`));
      expect(other.writer.totals.written).toBe(0);
      // The route (its kernway entry removed above) is written; the 2 GatewayClasses and the Gateway the DaemonSet's agent wrote are unchanged.
      expect(leader.writer.totals.written).toBeGreaterThanOrEqual(1);
      expect(leader.writer.totals.written + leader.writer.totals.unchanged).toBeGreaterThanOrEqual(4);
      const held = await cluster.api.get<{ spec: { holderIdentity: string } }>('/apis/coordination.k8s.io/v1/namespaces/kernway-system/leases/kernway-agent');
      expect(held.spec.holderIdentity).toBe(leader.elector.identity);

      const yaml = (await cluster.kubectl(['get', 'httproute', 'web', '-n', 'shop', '-o', 'yaml'])).stdout;
      expect(yaml).toMatch(/controllerName: kernway\.io\/gateway-controller/);
      expect(yaml).toMatch(/controllerName: example\.com\/other/);
      const st = (await cluster.api.get<{ status: { parents: Array<{ controllerName: string; parentRef: { name: string }; conditions: Array<{ type: string; status: string; reason: string }> }> } }>('/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web')).status;
      expect(st.parents).toHaveLength(2);
      expect(st.parents[0]).toEqual(foreign);
      const ours = st.parents.find((p) => p.controllerName === 'kernway.io/gateway-controller')!;
      expect(ours.parentRef.name).toBe('edge');
      expect(ours.conditions.map((c) => [c.type, c.status, c.reason])).toEqual([['Accepted', 'True', 'Accepted'], ['ResolvedRefs', 'True', 'ResolvedRefs']]);
      const gw = (await cluster.api.get<{ status: { conditions: Array<{ type: string; status: string }>; listeners: Array<{ name: string; attachedRoutes: number }> } }>('/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/edge')).status;
      expect(gw.conditions.map((c) => `${c.type}=${c.status}`)).toEqual(['Accepted=True', 'Programmed=True']);
      expect(gw.listeners).toMatchObject([{ name: 'http', attachedRoutes: 1 }]);
      const gc = (await cluster.api.get<{ status: { conditions: Array<{ type: string; status: string }> } }>('/apis/gateway.networking.k8s.io/v1/gatewayclasses/kernway-waypoint')).status;
      expect(gc.conditions).toContainEqual(expect.objectContaining({ type: 'Accepted', status: 'True' }));

      // The same model again: nothing to write.
      const before = leader.writer.totals.written;
      leader.update(model);
      await leader.settled();
      expect(leader.writer.totals.written).toBe(before);

      // The leader stops (releases the Lease): the other takes over and writes the next change.
      await leader.stop();
      await waitFor('the other agent to lead', () => other.isLeader || undefined, 10_000, 50);
      await apply(cluster, {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web', namespace: 'shop' },
        spec: { parentRefs: [{ name: 'edge' }], rules: [{ backendRefs: [{ name: 'nowhere', port: 80 }] }] },
      });
      other.update(await modelFromApi(cluster));
      await waitFor('ResolvedRefs False written by the new leader', async () => {
        const r = await cluster.api.get<{ status: { parents: Array<{ controllerName: string; conditions: Array<{ type: string; status: string; reason: string }> }> } }>('/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web');
        return r.status.parents.find((p) => p.controllerName === 'kernway.io/gateway-controller')?.conditions.find((c) => c.type === 'ResolvedRefs' && c.status === 'False' && c.reason === 'BackendNotFound');
      }, 10_000, 100);
      expect(other.writer.totals.written).toBeGreaterThan(0);
      const st2 = (await cluster.api.get<{ status: { parents: unknown[] } }>('/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web')).status;
      expect(st2.parents).toHaveLength(2);
      expect(st2.parents[0]).toEqual(foreign);
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
    }
  }, 150_000);

  it('a Gateway of class kernway-waypoint yields a waypoint (Deployment, Service, ServiceAccount owned by it), the same objects `kernway waypoint generate` prints; without an agent on its node it runs but is not Ready', async () => {
    const token = await serviceAccountToken(cluster, 'kernway-system', 'kernway-agent');
    const api = new TokenApi(cluster, token);
    const waypoints: WaypointController[] = [];
    const ctl = new ClusterController(api, {
      // Not a node's name: the DaemonSet's agent on that node would take this Lease record for its own.
      identity: 'deploy-test-controller', computeStatus: clusterStatusOf, duties: [(m) => waypoints[0]!.reconcile(m)], resyncMs: 300,
      lease: { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 },
    });
    waypoints.push(new WaypointController(api, ctl.writer));
    const generated = (await run(NODE, [CLI, 'waypoint', 'generate', '--namespace', 'shop'])).stdout;
    const docs = parseAllDocuments(generated).map((d) => d.toJS() as { kind: string; metadata: { name: string }; spec?: unknown });
    expect(docs.map((d) => d.kind)).toEqual(['Gateway', 'ServiceAccount', 'Deployment', 'Service']);
    await apply(cluster, docs[0]); // the Gateway only: the agent makes the rest
    try {
      ctl.start();
      const poll = async (): Promise<void> => { ctl.update(await modelFromApi(cluster)); };
      await poll();
      const gw = await cluster.api.get<{ metadata: { uid: string } }>('/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/waypoint');
      await waitFor('the waypoint Service (made last)', () => cluster.api.find('/api/v1/namespaces/shop/services/waypoint'), 20_000, 100);
      const dep = await waitFor('the waypoint Deployment', () => cluster.api.find<{ metadata: { ownerReferences: Array<{ kind: string; name: string; uid: string }> }; spec: unknown }>('/apis/apps/v1/namespaces/shop/deployments/waypoint'), 20_000, 100);
      expect(dep.metadata.ownerReferences).toMatchObject([{ kind: 'Gateway', name: 'waypoint', uid: gw.metadata.uid }]);
      for (const [kind, path] of [['ServiceAccount', '/api/v1/namespaces/shop/serviceaccounts/waypoint'], ['Service', '/api/v1/namespaces/shop/services/waypoint']] as const) {
        const o = await cluster.api.get<{ metadata: { ownerReferences: Array<{ uid: string }> }; spec?: unknown }>(path);
        expect(o.metadata.ownerReferences[0]!.uid, kind).toBe(gw.metadata.uid);
        const want = docs.find((d) => d.kind === kind)!;
        if (want.spec) expect(covers(o.spec, want.spec), `${kind} spec as generated`).toBe(true);
      }
      expect(covers(dep.spec, docs.find((d) => d.kind === 'Deployment')!.spec), 'Deployment spec as generated').toBe(true);

      // Its pod runs `kernway waypoint --namespace shop --agent $(HOST_IP):15012` in the lab (the image is mapped to this
      // build); with no agent on its node (the DaemonSet was deleted above) it has no configuration, so it is not Ready
      // and the Gateway is not Programmed (the next test has the DaemonSet's agents feed a waypoint).
      const pod = await waitFor('a started waypoint pod', async () => (await podsWith(cluster, 'gateway.networking.k8s.io/gateway-name=waypoint', 'shop')).find((p) => p.status.containerStatuses?.[0]?.containerID), 60_000, 200);
      expect(pod.metadata.labels?.['gateway.networking.k8s.io/gateway-name']).toBe('waypoint');
      expect(readFileSync(`/proc/${pidOf(pod)}/cmdline`, 'utf8').split('\0')).toEqual(expect.arrayContaining(['waypoint', '--namespace=shop', `--agent=${cluster.node(pod.spec.nodeName!).ip}:15012`]));
      await waitFor('Gateway waypoint Programmed=False Pending', async () => {
        const g = await cluster.api.get<{ status?: { conditions?: Array<{ type: string; status: string; reason: string }> } }>('/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/waypoint');
        return g.status?.conditions?.some((c) => c.type === 'Programmed' && c.status === 'False' && c.reason === 'Pending') || undefined;
      }, 30_000, 200);
      expect(isReady((await podsWith(cluster, 'gateway.networking.k8s.io/gateway-name=waypoint', 'shop')).find((p) => p.metadata.name === pod.metadata.name)!)).toBe(false);
      expect(waypoints[0]!.totals.created).toBe(3);

      // Drift is put back: a changed replica count and a removed label.
      await cluster.api.mergePatch('/apis/apps/v1/namespaces/shop/deployments/waypoint', { spec: { replicas: 0 }, metadata: { labels: { 'gateway.networking.k8s.io/gateway-name': null } } });
      await poll();
      await waitFor('the Deployment repaired', async () => {
        const d = await cluster.api.get<{ spec: { replicas: number }; metadata: { labels: Record<string, string> } }>('/apis/apps/v1/namespaces/shop/deployments/waypoint');
        return d.spec.replicas === 1 && d.metadata.labels['gateway.networking.k8s.io/gateway-name'] === 'waypoint' ? true : undefined;
      }, 10_000, 100);

      // The Gateway deleted: its objects go with it (the garbage collector, ownerReferences).
      await ctl.stop();
      await cluster.kubectl(['delete', 'gateway', 'waypoint', '-n', 'shop']);
      await waitFor('the waypoint objects gone', async () => (await cluster.api.find('/apis/apps/v1/namespaces/shop/deployments/waypoint')) === undefined
        && (await cluster.api.find('/api/v1/namespaces/shop/services/waypoint')) === undefined || undefined, 30_000, 200);
    } finally {
      await ctl.stop();
    }
  }, 150_000);
  it('the DaemonSet\'s agents feed the waypoint their elected agent made from a Gateway of class kernway-waypoint ($(HOST_IP):15012, projected token of audience kernway): an HTTPRoute\'s header match picks one of two backend Services', async () => {
    // The DaemonSet again (the Lease test deleted it): its elected agent makes the waypoint, every agent serves the feed.
    await cluster.kubectl(['apply', '-k', DEPLOY_DIR], { timeoutMs: KUBECTL_MS });
    const ns = 'mall';
    const echo = (name: string): unknown[] => [
      {
        apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace: ns },
        spec: {
          replicas: 1, selector: { matchLabels: { app: name } },
          template: {
            metadata: { labels: { app: name } },
            spec: {
              terminationGracePeriodSeconds: 2,
              containers: [{
                name: 'echo', image: 'none', command: [NODE, HTTP_ECHO, '8080'], ports: [{ name: 'http', containerPort: 8080 }],
                env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
                readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1 },
              }],
            },
          },
        },
      },
      { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
    ];
    await apply(cluster, [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
      ...echo('web-v1'), ...echo('web-v2'),
      // The route's parent, bound to the waypoint: the kernel hands web:80 to it (docs/waypoint-handoff.md); v2 by header, else v1.
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: ns, labels: { 'kernway.io/use-waypoint': 'waypoint' } }, spec: { selector: { app: 'web-v1' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
      {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web', namespace: ns },
        spec: {
          parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
          rules: [
            { matches: [{ headers: [{ name: 'x-version', value: 'v2' }] }], backendRefs: [{ name: 'web-v2', port: 80 }] },
            { backendRefs: [{ name: 'web-v1', port: 80 }] },
          ],
        },
      },
      waypointGateway(ns, 'waypoint'),
    ]);
    const agents = async (): Promise<PodJson[]> => podsWith(cluster, 'app.kubernetes.io/name=kernway-agent', 'kernway-system');
    const wp = await waitFor('a Ready waypoint pod (Ready = it has its first configuration from the feed)', async () =>
      (await podsWith(cluster, 'gateway.networking.k8s.io/gateway-name=waypoint', ns)).find(isReady), 150_000, 250).catch(async (e: unknown) => {
      const wps = await podsWith(cluster, 'gateway.networking.k8s.io/gateway-name=waypoint', ns);
      const pods = (await cluster.kubectl(['get', 'pods,deployments,gateways', '-A', '-o', 'wide'], { allowFail: true })).stdout;
      const lease = JSON.stringify(await cluster.api.find('/apis/coordination.k8s.io/v1/namespaces/kernway-system/leases/kernway-agent'));
      const logs = [...wps.map((p) => `waypoint ${p.metadata.name}: ${containerLog(cluster, p.spec.nodeName ?? 'node-1', p.metadata.name, 'waypoint', ns).slice(-3000)}`),
        ...(await agents()).map((p) => `agent ${p.metadata.name}: ${containerLog(cluster, p.spec.nodeName!, p.metadata.name, 'agent', 'kernway-system').split('\n').filter((l) => /waypoint|feed|lease|leader|error|warn|"level":[45]0/i.test(l)).join('\n').slice(-3000)}`)];
      throw new Error(`${String(e)}\n${pods}\n${lease}\n${logs.join('\n----\n')}`);
    });
    // As generated: the PodMonitor's label, the node's address from the downward API, the projected token.
    expect(wp.metadata.labels?.['app.kubernetes.io/name']).toBe('kernway-waypoint');
    expect(wp.status.hostIP).toBe(cluster.node(wp.spec.nodeName!).ip);
    const pid = pidOf(wp);
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toEqual(expect.arrayContaining(['waypoint', `--namespace=${ns}`, `--agent=${wp.status.hostIP}:15012`, '--token-file=/var/run/secrets/kernway/token']));
    expect(environOf(pid)).toMatchObject({ HOST_IP: wp.status.hostIP, MALLOC_ARENA_MAX: '2' });
    const wsvc = await cluster.api.get<{ spec: { clusterIP: string } }>(`/api/v1/namespaces/${ns}/services/waypoint`);
    await waitFor('Gateway waypoint Programmed by the DaemonSet\'s elected agent, with its Service\'s address', async () => {
      const g = await cluster.api.get<{ status?: { conditions?: Array<{ type: string; status: string }>; addresses?: Array<{ value: string }> } }>(`/apis/gateway.networking.k8s.io/v1/namespaces/${ns}/gateways/waypoint`);
      return g.status?.conditions?.some((c) => c.type === 'Programmed' && c.status === 'True') && g.status.addresses?.[0]?.value === wsvc.spec.clusterIP ? true : undefined;
    }, 30_000, 200);
    const token = (await podExec(cluster, wp.metadata.name, ['cat', '/var/run/secrets/kernway/token'], ns)).stdout.trim();
    const review = await cluster.api.post<{ status: { authenticated: boolean; audiences: string[]; user: { username: string } } }>('/apis/authentication.k8s.io/v1/tokenreviews', {
      apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['kernway'] },
    });
    expect(review.status).toMatchObject({ authenticated: true, audiences: ['kernway'], user: { username: `system:serviceaccount:${ns}:waypoint` } });

    // From a lab pod: web's ClusterIP:80, handed by the kernel to the waypoint's mesh port (a PROXY v2 header for web:80);
    // a direct connect() to the mesh port is refused (EPERM, no bypass).
    const web = await cluster.api.get<{ spec: { clusterIP: string } }>(`/api/v1/namespaces/${ns}/services/web`);
    const client = await waitFor('a Ready web-v1 pod', async () => (await podsWith(cluster, 'app=web-v1', ns)).find(isReady), 60_000, 200);
    await waitFor('a Ready web-v2 pod', async () => (await podsWith(cluster, 'app=web-v2', ns)).find(isReady), 60_000, 200);
    const ask = async (name: string, value: string): Promise<string> => {
      const r = await podExec(cluster, client.metadata.name, [NODE, '-e', HTTP_GET, `http://${web.spec.clusterIP}/hello`, name, value], ns);
      if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
      return r.stdout;
    };
    const answer = await waitFor('the route served (x-version: v2 -> web-v2)', async () => {
      const out = await ask('x-version', 'v2');
      return out.startsWith('200 ') && out.includes('"pod":"web-v2-') ? out : undefined;
    }, 30_000, 300);
    expect(answer).toMatch(/"path":"\/hello"/);
    expect(await ask('x-version', 'v1')).toMatch(/^200 .*"pod":"web-v1-/);
    expect(await ask('x-other', 'v2')).toMatch(/^200 .*"pod":"web-v1-/);
    const direct = await podExec(cluster, client.metadata.name, [NODE, '-e', HTTP_GET, `http://${wp.status.podIP}:15019/hello`, 'x-version', 'v2'], ns);
    expect(direct.stderr).toMatch(/EPERM/);
    // The agent of the waypoint's node served it over TCP, after a TokenReview.
    const local = (await agents()).find((p) => p.spec.nodeName === wp.spec.nodeName)!;
    expect(containerLog(cluster, local.spec.nodeName!, local.metadata.name, 'agent', 'kernway-system')).toContain(`serviceaccount ${ns}/waypoint`);
  }, 300_000);
});
