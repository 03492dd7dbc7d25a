/**
 * The benchmark's `iptables` mode on a lab cluster (lab/cluster): the real kube-proxy
 * 1.20 (iptables mode, --conntrack-max-per-core=0) in the lab node's namespace, reading
 * the cluster's API server, instead of generated rules. The server and client are Pods
 * run by the lab kubelet on the one node; the target Service selects the server pod (the
 * EndpointSlice controller publishes it), the other N-1 Services are selectorless with an
 * EndpointSlice each (discovery.k8s.io/v1beta1, what kube-proxy 1.20 reads), written
 * through the API. A configuration is done when kube-proxy's nat table has a KUBE-SVC jump
 * for every Service port. bench/kube-proxy.ts (the generator, tested against kube-proxy's
 * format) stays for the sidecar mode.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KernwayError, errorMessage } from '../common/errors.js';
import { processesIn } from '../lab/cgroup.js';
import type { ExecOptions } from '../lab/index.js';
import { Cluster, type LabNode } from '../lab/cluster/index.js';
import { execInPod } from '../lab/cluster/exec.js';
import { KubeApiError } from '../lab/cluster/kube-api.js';
import { waitFor } from '../lab/cluster/proc.js';
import { run, type RunResult } from '../lab/system.js';
import { appNginxConf } from './sidecar.js';
import { TARGET_NAME, TARGET_NAMESPACE, TARGET_PORTS, TARGET_VIP, frontendCount, type BenchService } from './services.js';
import type { PodRunner } from './tools.js';

export interface ClusterPod { name: string; namespace: string; ipv4: string }

const SERVER_LABELS = { app: 'bench-server' };

/** Runs commands in the cluster's pods (their cgroup, netns, mounts and env), as Lab.exec does in a lab's. */
export class ClusterPods implements PodRunner<ClusterPod> {
  readonly id: string;
  readonly cgroupPath: string;
  readonly bpffsDir: string;
  constructor(readonly cluster: Cluster) {
    this.id = cluster.id;
    this.cgroupPath = cluster.cgroupPath;
    this.bpffsDir = cluster.bpffsDir;
  }

  async exec(target: ClusterPod, cmd: string, args: string[], opts: ExecOptions = {}): Promise<RunResult> {
    const child = await execInPod(this.cluster.api, target.namespace, target.name, undefined, [cmd, ...args], { env: opts.env });
    return new Promise((resolve, reject) => {
      let stdout = '';
      let stderr = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
      child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new KernwayError('KW_LAB_TIMEOUT', `${cmd} ${args.join(' ')} in pod ${target.name} did not finish within ${opts.timeoutMs} ms`));
      }, opts.timeoutMs ?? 30_000);
      child.once('error', (e) => { clearTimeout(timer); reject(e); });
      child.once('close', (code, signal) => { clearTimeout(timer); resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }); });
      child.stdin!.end(opts.input);
    });
  }
}

/** Runs `f` over the items, `width` at a time. */
async function pool<T>(items: readonly T[], width: number, f: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) await f(items[next++]!);
  }));
}

const key = (s: BenchService): string => `${s.namespace}/${s.name}`;

/** The Service and EndpointSlice of a non-target Service (selectorless: the slice is written, not derived). */
function otherObjects(s: BenchService): { service: Record<string, unknown>; slice: Record<string, unknown> } {
  return {
    service: {
      apiVersion: 'v1', kind: 'Service', metadata: { name: s.name, namespace: s.namespace },
      spec: { type: 'ClusterIP', clusterIP: s.clusterIP, ports: s.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort, protocol: p.protocol })) },
    },
    slice: {
      apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice',
      metadata: { name: `${s.name}-bench`, namespace: s.namespace, labels: { 'kubernetes.io/service-name': s.name } },
      addressType: 'IPv4',
      ports: s.ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: p.protocol })),
      endpoints: s.endpoints.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
    },
  };
}

/**
 * Jumps from KUBE-SERVICES to a KUBE-SVC chain in a node's nat table: one per Service port
 * with endpoints, not counting the cluster's own `default/kubernetes` Service.
 */
export function kubeProxyFrontends(natTable: string): number {
  let n = 0;
  for (const line of natTable.split('\n')) {
    if (line.startsWith('-A KUBE-SERVICES ') && line.includes(' -j KUBE-SVC-') && !line.includes('"default/kubernetes:')) n++;
  }
  return n;
}

async function natTable(netnsPath: string): Promise<string> {
  return (await run('nsenter', [`--net=${netnsPath}`, '--', 'iptables-save', '-t', 'nat'], { timeoutMs: 120_000 })).stdout;
}

export interface KubeProxyCluster {
  cluster: Cluster;
  pods: ClusterPods;
  node: LabNode;
  client: ClusterPod;
  server: ClusterPod;
  /** Makes the cluster's Services the given ones (through the API) and waits for kube-proxy's rules. */
  configure(services: readonly BenchService[]): Promise<{ what: string; ms: number; details: Record<string, unknown> }>;
  cpuPids(): number[];
  close(): Promise<void>;
}

/** A one-node lab cluster with kube-proxy, the server pod (sockperf, nginx, iperf3) and a client pod. */
export async function kubeProxyCluster(dir: string): Promise<KubeProxyCluster> {
  const cluster = await Cluster.start({ tag: 'bkubeproxy', nodes: 1, kubeProxy: true });
  try {
    const api = cluster.api;
    const node = cluster.nodes[0]!;
    const appDir = join(dir, 'app');
    mkdirSync(appDir, { recursive: true });
    writeFileSync(join(appDir, 'nginx.conf'), appNginxConf(appDir));
    const tcp = (port: number): Record<string, unknown> => ({ tcpSocket: { port }, periodSeconds: 1 });
    await api.post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: TARGET_NAMESPACE } });
    await waitFor('the bench namespace\'s default ServiceAccount', async () => ((await api.find<{ secrets?: unknown[] }>(`/api/v1/namespaces/${TARGET_NAMESPACE}/serviceaccounts/default`))?.secrets?.length ?? 0) > 0, 60_000, 100);
    await api.post(`/api/v1/namespaces/${TARGET_NAMESPACE}/services`, {
      apiVersion: 'v1', kind: 'Service', metadata: { name: TARGET_NAME, namespace: TARGET_NAMESPACE },
      spec: {
        type: 'ClusterIP', clusterIP: TARGET_VIP, selector: SERVER_LABELS,
        ports: Object.entries(TARGET_PORTS).map(([name, port]) => ({ name, port, targetPort: port, protocol: 'TCP', ...(name === 'h2c' ? { appProtocol: 'kubernetes.io/h2c' } : {}) })),
      },
    });
    const pod = (name: string, labels: Record<string, string>, containers: unknown[]): Record<string, unknown> => ({
      apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: TARGET_NAMESPACE, labels },
      spec: { nodeName: node.name, terminationGracePeriodSeconds: 2, containers },
    });
    await api.post(`/api/v1/namespaces/${TARGET_NAMESPACE}/pods`, pod('server', SERVER_LABELS, [
      { name: 'sockperf', image: 'none', command: ['sockperf', 'server', '--tcp', '-i', '0.0.0.0', '-p', String(TARGET_PORTS.sockperf)], readinessProbe: tcp(TARGET_PORTS.sockperf) },
      { name: 'nginx', image: 'none', command: ['nginx', '-c', join(appDir, 'nginx.conf'), '-p', appDir, '-e', join(appDir, 'error.log')], readinessProbe: tcp(TARGET_PORTS.http) },
      { name: 'iperf3', image: 'none', command: ['iperf3', '-s', '-p', String(TARGET_PORTS.iperf)], readinessProbe: tcp(TARGET_PORTS.iperf) },
    ]));
    await api.post(`/api/v1/namespaces/${TARGET_NAMESPACE}/pods`, pod('client', { app: 'bench-client' }, [{ name: 'client', image: 'none', command: ['sleep', '1000000'] }]));
    type PodView = { status?: { podIP?: string; conditions?: Array<{ type: string; status: string }> } };
    const ready = async (name: string): Promise<ClusterPod> => {
      const p = await waitFor(`bench pod ${name} to be Ready`, async () => {
        const x = await api.find<PodView>(`/api/v1/namespaces/${TARGET_NAMESPACE}/pods/${name}`);
        return x?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? x : undefined;
      }, 60_000, 100).catch((e: unknown) => {
        let logs = '';
        try { logs = readFileSync(join(cluster.dir, node.name, 'logs', `${TARGET_NAMESPACE}_${name}_nginx.log`), 'utf8').slice(-500); } catch { /* none */ }
        throw new KernwayError('KW_BENCH_SETUP', `iptables (kube-proxy): ${errorMessage(e)}${logs ? `\n${logs}` : ''}`);
      });
      return { name, namespace: TARGET_NAMESPACE, ipv4: p.status!.podIP! };
    };
    const server = await ready('server');
    const client = await ready('client');
    const installed = new Map<string, BenchService>();
    const namespaces = new Set<string>([TARGET_NAMESPACE]);
    const ignore = (status: number) => (e: unknown): void => { if (!(e instanceof KubeApiError && e.status === status)) throw e; };

    return {
      cluster, pods: new ClusterPods(cluster), node, client, server,
      async configure(services) {
        const t0 = performance.now();
        const want = new Map(services.filter((s) => !(s.namespace === TARGET_NAMESPACE && s.name === TARGET_NAME)).map((s) => [key(s), s]));
        const add = [...want.values()].filter((s) => !installed.has(key(s)));
        const drop = [...installed.values()].filter((s) => !want.has(key(s)));
        for (const ns of new Set(add.map((s) => s.namespace))) {
          if (namespaces.has(ns)) continue;
          await api.post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }).catch(ignore(409));
          namespaces.add(ns);
        }
        await pool(add, 16, async (s) => {
          const o = otherObjects(s);
          await api.post(`/api/v1/namespaces/${s.namespace}/services`, o.service).catch(ignore(409));
          await api.post(`/apis/discovery.k8s.io/v1beta1/namespaces/${s.namespace}/endpointslices`, o.slice).catch(ignore(409));
          installed.set(key(s), s);
        });
        await pool(drop, 16, async (s) => {
          await api.delete(`/api/v1/namespaces/${s.namespace}/services/${s.name}`).catch(ignore(404));
          await api.delete(`/apis/discovery.k8s.io/v1beta1/namespaces/${s.namespace}/endpointslices/${s.name}-bench`).catch(ignore(404));
          installed.delete(key(s));
        });
        const apiMs = performance.now() - t0;
        const frontends = frontendCount(services);
        let seen = 0;
        await waitFor(`kube-proxy to program ${frontends} Service ports`, async () => (seen = kubeProxyFrontends(await natTable(node.netnsPath))) === frontends, 600_000, 500)
          .catch((e: unknown) => { throw new KernwayError('KW_BENCH_SETUP', `iptables (kube-proxy): ${errorMessage(e)}; it has ${seen}`); });
        const ms = performance.now() - t0;
        return {
          what: `real kube-proxy 1.20 (iptables): ${frontends} Service ports (${add.length} Services added, ${drop.length} removed through the API)`,
          ms, details: { frontends, apiMs: Math.round(apiMs), kubeProxySyncMs: Math.round(ms - apiMs) },
        };
      },
      cpuPids() {
        const system = processesIn(join(node.cgroupPath, 'system')).filter((pid) => {
          try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'kube-proxy'; } catch { return false; }
        });
        return [...processesIn(join(node.cgroupPath, 'kubepods')), ...system];
      },
      close: () => cluster.stop(),
    };
  } catch (e) {
    await cluster.stop();
    throw e;
  }
}
