/**
 * `kernway demo` in cluster mode: the lab cluster (a real Kubernetes 1.20 control plane, two
 * lab nodes, docs/lab.md), `kubectl apply -k deploy/` exactly as written, the DaemonSet's
 * agents started by the lab nodes and reading the API in-cluster, an app Deployment and its
 * Service, connections from a client pod to the ClusterIP balanced in the kernel, a Gateway
 * and an HTTPRoute applied with kubectl and the route status the elected agent writes; then
 * everything is removed.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../common/version.js';
import { Cluster } from '../../lab/cluster/index.js';
import { execInPod } from '../../lab/cluster/exec.js';
import { waitFor } from '../../lab/cluster/proc.js';
import { kubeBinDir } from '../../lab/cluster/bin.js';
import { adminRequest } from '../admin/client.js';
import type { KernelService } from '../datapath/inspect.js';

type Say = (line: string) => void;
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const REQUESTS = 60;
const GATEWAY_API_CRDS = join(projectRoot(), '..', 'shared', 'crds', 'gateway-api-standard');

/** Why cluster mode cannot run here (undefined: it can). */
export function clusterDemoUnavailable(): string | undefined {
  try {
    kubeBinDir();
  } catch (e) {
    return (e as Error).message;
  }
  if (!existsSync(GATEWAY_API_CRDS)) return `the Gateway API CRDs are not in ${GATEWAY_API_CRDS} (clone shared/ beside the repository)`;
  return undefined;
}

const GETS = `
const http = require('node:http');
const [url, n] = process.argv.slice(1);
(async () => { for (let i = 0; i < Number(n); i++) {
  const body = await new Promise((res, rej) => http.get(url, { agent: false, timeout: 3000 }, (r) => { let b = ''; r.on('data', (d) => b += d); r.on('end', () => res(b)); }).on('error', rej));
  console.log(body);
} })().catch((e) => { console.error(e.message); process.exit(3); });`;

function bar(n: number, total: number): string {
  return '#'.repeat(Math.round((40 * n) / Math.max(1, total)));
}

export async function runClusterDemo(say: Say = (l) => console.log(l)): Promise<void> {
  const t0 = performance.now();
  const secs = (): string => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
  say('== starting the lab cluster: Kubernetes 1.20 control plane, 2 lab nodes with kube-proxy (for the API server\'s Service)');
  const cluster = await Cluster.start({ tag: 'demo', nodes: 2, kubeProxy: true });
  let stopping = false;
  const onSignal = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    say(`== ${sig}: removing the cluster`);
    void cluster.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const kubectl = async (args: string[], input?: string): Promise<string> => (await cluster.kubectl(args, { timeoutMs: 120_000, ...(input ? { input } : {}) })).stdout.trimEnd();
  const show = (text: string): void => { for (const l of text.split('\n')) say(`   ${l}`); };
  try {
    say(`   API server ${cluster.api.creds.server} (${secs()}); KUBECONFIG=${cluster.kubeconfig}`);

    say('== kubectl apply --validate=false -f ../shared/crds/gateway-api-standard/  (the Gateway API CRDs)');
    await kubectl(['apply', '--validate=false', ...readdirSync(GATEWAY_API_CRDS).filter((f) => f.endsWith('.yaml')).map((f) => `-f=${join(GATEWAY_API_CRDS, f)}`)]);
    await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/gatewayclasses.gateway.networking.k8s.io', 'crd/httproutes.gateway.networking.k8s.io']);
    say('== kubectl apply -k deploy/');
    show(await kubectl(['apply', '-k', join(projectRoot(), 'deploy')]));
    await waitFor('the agents Ready on both nodes', async () => {
      const ds = await cluster.api.get<Json>('/apis/apps/v1/namespaces/kernway-system/daemonsets/kernway-agent');
      return ds.status?.numberReady === 2 || undefined;
    }, 180_000, 250);
    say(`== the DaemonSet's agents are Ready on both nodes, reading the API in-cluster (${secs()})`);
    show(await kubectl(['get', 'pods', '-n', 'kernway-system', '-o', 'wide']));
    const lease = await waitFor('a Lease holder', () => cluster.api.find<Json>('/apis/coordination.k8s.io/v1/namespaces/kernway-system/leases/kernway-agent'), 30_000, 200);
    say(`   elected (Lease kernway-system/kernway-agent): ${lease.spec.holderIdentity}`);

    const echo = join(projectRoot(), 'test', 'fixtures', 'http-echo.mjs');
    const app = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } },
      {
        apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'echo', namespace: 'shop' },
        spec: {
          replicas: 3, selector: { matchLabels: { app: 'echo' } },
          template: {
            metadata: { labels: { app: 'echo' } },
            spec: {
              containers: [{
                name: 'echo', image: 'none', command: [process.execPath, echo, '8080'], ports: [{ name: 'http', containerPort: 8080 }],
                env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }, { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
                readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1 },
              }],
            },
          },
        },
      },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: 'shop' }, spec: { selector: { app: 'echo' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } },
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'client', namespace: 'shop' }, spec: { nodeName: 'node-1', containers: [{ name: 'client', image: 'none', command: ['sleep', '3600'] }] } },
    ];
    say('== kubectl apply: namespace shop, Deployment echo (3 replicas), Service echo :80, Pod client on node-1');
    show(await kubectl(['apply', '-f', '-'], app.map((d) => JSON.stringify(d)).join('\n')));
    await waitFor('3 Ready echo pods and the client', async () => {
      const pods = (await cluster.api.get<{ items: Json[] }>('/api/v1/namespaces/shop/pods')).items;
      const ready = pods.filter((p) => p.status?.conditions?.some((c: Json) => c.type === 'Ready' && c.status === 'True'));
      return ready.length === 4 || undefined;
    }, 120_000, 250);
    const svc = await cluster.api.get<Json>('/api/v1/namespaces/shop/services/echo');
    const vip = svc.spec.clusterIP as string;
    show(await kubectl(['get', 'pods', '-n', 'shop', '-o', 'wide']));

    // What the kernel balances on node-1, from its agent's admin socket (hostPath /run/kernway).
    const socket = join(cluster.dir, 'node-1', 'root', 'run', 'kernway', 'admin.sock');
    const entry = await waitFor(`shop/echo in node-1's kernel maps`, async () => {
      const list = await adminRequest<KernelService[]>(socket, '/v1/services').catch(() => []);
      return list.find((s) => s.service === 'shop/echo' && s.backends.length === 3);
    }, 30_000, 200);
    say(`== node-1's agent (kernway services, read from the kernel maps): shop/echo ${vip}:80 -> ${entry.backends.join(', ')}`);

    const child = await execInPod(cluster.api, 'shop', 'client', undefined, [process.execPath, '-e', GETS, `http://${vip}/`, String(REQUESTS)]);
    child.stdin?.end();
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    await new Promise((r) => child.once('close', r));
    const counts: Record<string, number> = {};
    for (const l of out.split('\n').filter(Boolean)) {
      try { const pod = (JSON.parse(l) as { pod: string; node: string }); counts[`${pod.pod} (${pod.node})`] = (counts[`${pod.pod} (${pod.node})`] ?? 0) + 1; } catch { /* not an answer */ }
    }
    say(`== ${REQUESTS} HTTP requests from pod client to ${vip}:80, each a new connection balanced at connect() by the kernel`);
    for (const [k, n] of Object.entries(counts).sort()) say(`   ${k.padEnd(32)} ${String(n).padStart(3)} ${bar(n, REQUESTS)}`);

    const gw = [
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'shop' }, spec: { gatewayClassName: 'kernway', listeners: [{ name: 'http', port: 8080, protocol: 'HTTP' }] } },
      {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'echo', namespace: 'shop' },
        spec: { parentRefs: [{ name: 'edge' }, { name: 'missing' }], hostnames: ['shop.example'], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [{ name: 'echo', port: 80 }] }] },
      },
    ];
    say('== kubectl apply: Gateway shop/edge (class kernway), HTTPRoute shop/echo (parents edge and missing)');
    show(await kubectl(['apply', '-f', '-'], gw.map((d) => JSON.stringify(d)).join('\n')));
    await waitFor('the route status', async () => {
      const r = await cluster.api.get<Json>('/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/echo');
      return (r.status?.parents?.length ?? 0) === 2 || undefined;
    }, 30_000, 200);
    say(`== kubectl get httproute echo -n shop -o yaml   (status written by the elected agent, ${lease.spec.holderIdentity})`);
    const yaml = await kubectl(['get', 'httproute', 'echo', '-n', 'shop', '-o', 'yaml']);
    show(yaml.slice(yaml.lastIndexOf('\nstatus:') + 1));
    show(await kubectl(['get', 'gateway', '-n', 'shop']));
  } finally {
    say('== removing the cluster (processes, namespaces, cgroups, bpffs, run folder)');
    if (!stopping) await cluster.stop();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    say(`== done in ${secs()}`);
  }
}
