/**
 * The modes compared by `kernway bench`, as data. Each mode gets a lab of its own (its
 * own "node" namespace, pods, cgroup and bpffs folder), so modes never see each other's
 * rules or programs and can stay installed side by side while rounds interleave:
 *
 *   direct    client pod -> server pod address. No mesh, no Service: the floor.
 *   ebpf      client pod -> ClusterIP, with the real `kernway agent` (standalone
 *             manifests of the N Services) attached to the lab's cgroup.
 *   iptables  client pod -> ClusterIP, DNAT by kube-proxy's rules (bench/kube-proxy.ts)
 *             in the lab's node namespace, where pod traffic is routed.
 *   sidecar   kube-proxy's rules as above, plus a proxy in each pod (bench/sidecar.ts)
 *             with istio-iptables style REDIRECT rules in the pod's namespace.
 *   waypoint  HTTP only: client pod -> ClusterIP -> the namespace's `kernway waypoint`
 *             (its own pod) -> server pod, with the kernway agent doing the connect()
 *             rewrite to the waypoint (the Service's HTTP ports have the waypoint as
 *             endpoint in the agent's manifests, which is where kernway sends them).
 *
 * Every lab has the same server pod: sockperf server, nginx (HTTP/1.1 and h2c) and an
 * iperf3 server, on the target Service's ports.
 */
import { chmodSync, chownSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../common/log.js';
import { KernwayError, errorMessage } from '../common/errors.js';
import { Lab, type Pod } from '../lab/index.js';
import { run } from '../lab/system.js';
import { adminRequest } from '../agent/admin/client.js';
import { kubeProxyRules } from './kube-proxy.js';
import { PROXY_UID, appNginxConf, sidecarIptables, sidecarNginxConf, sidecarPorts } from './sidecar.js';
import { TARGET_NAME, TARGET_NAMESPACE, TARGET_PORTS, TARGET_VIP, frontendCount, serviceManifests, type BenchService, type TargetPortName } from './services.js';
import type { Workload } from './workloads.js';
import type { Endpoint } from './tools.js';

export const MODE_NAMES = ['direct', 'ebpf', 'iptables', 'sidecar', 'waypoint'] as const;
export type ModeName = typeof MODE_NAMES[number];

export const CLUSTER_CIDR = '10.244.0.0/16';

export interface ModeEnv {
  /** This mode's scratch folder (configs, manifests, logs). */
  dir: string;
  log: Logger;
  /** `node` and dist/cli/main.js, to run `kernway agent` / `kernway waypoint` as users do. */
  node: string;
  kernwayMain: string;
}

export interface ConfigureResult {
  /** What was installed, in the mode's own terms. */
  what: string;
  /** Time to install N Services, ms (iptables-restore; agent: manifests written -> reconciled). */
  ms: number;
  details?: Record<string, unknown>;
}

export interface ModeInstance {
  readonly name: ModeName;
  readonly lab: Lab;
  readonly client: Pod;
  readonly server: Pod;
  /** Where the client sends a workload's traffic. */
  endpoint(w: Workload): Endpoint;
  /** Installs the N Services the mode's way (replacing the previous set). */
  configure(services: readonly BenchService[]): Promise<ConfigureResult>;
  /** Evidence the traffic took the mode's path (counters), read after the run. */
  evidence(): Promise<Record<string, unknown>>;
  /** Stops the mode's processes gracefully, then destroys the lab. Idempotent. */
  close(): Promise<void>;
}

export interface ModeDef {
  name: ModeName;
  description: string;
  /** Which workloads the mode carries. */
  carries(w: Workload): boolean;
  create(env: ModeEnv): Promise<ModeInstance>;
}

// ---------------------------------------------------------------- shared pieces

/** Waits until TCP ports listen in a namespace (ss), or fails naming the missing ones. */
export async function waitListening(netnsPath: string, ports: readonly number[], what: string, timeoutMs = 15_000, logPath?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let missing: number[] = [...ports];
  while (Date.now() < deadline) {
    const r = await run('nsenter', [`--net=${netnsPath}`, '--', 'ss', '-Hltn'], { allowFail: true });
    const listening = new Set([...r.stdout.matchAll(/:(\d+)\s/g)].map((m) => Number(m[1])));
    missing = ports.filter((p) => !listening.has(p));
    if (missing.length === 0) return;
    await sleep(50);
  }
  throw new KernwayError('KW_BENCH_SETUP', `${what}: nothing listens on port(s) ${missing.join(', ')} after ${timeoutMs} ms${logPath ? `\n${tail(logPath)}` : ''}`);
}

/** The last lines of a log file (for error messages: the run's scratch folder is removed). */
export function tail(path: string, lines = 10): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return `(no ${path})`;
  }
}

/** Sends a signal to a child and waits (bounded) for it to exit. */
export async function stopChild(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 3000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  await Promise.race([exited, sleep(timeoutMs)]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/** Fails with the process's log when it dies early. */
function watchEarlyExit(child: ChildProcess, what: string, logPath?: string): Promise<never> {
  return new Promise((_, reject) => {
    child.once('exit', (code, signal) => reject(new KernwayError('KW_BENCH_SETUP', `${what} exited (${code ?? signal}) during setup${logPath ? `\n${tail(logPath)}` : ''}`)));
  });
}

function logFile(path: string): number {
  return openSync(path, 'a');
}

/** iptables-restore of a whole ruleset, in one call, inside a lab namespace (never the machine's). */
export async function iptablesRestore(netnsPath: string, text: string, opts: { noflush?: boolean } = {}): Promise<number> {
  const t0 = performance.now();
  await run('nsenter', [`--net=${netnsPath}`, '--', 'iptables-restore', '-w', ...(opts.noflush ? ['--noflush'] : [])], { input: text, timeoutMs: 120_000 });
  return performance.now() - t0;
}

interface BaseLab { lab: Lab; client: Pod; server: Pod; app: ChildProcess[]; appDir: string }

/** A lab with a client pod and a server pod running the apps (sockperf, nginx, iperf3). */
async function baseLab(tag: string, env: ModeEnv): Promise<BaseLab> {
  const lab = await Lab.create({ tag });
  try {
    const client = await lab.addPod('client');
    const server = await lab.addPod('server');
    const appDir = join(env.dir, 'app');
    mkdirSync(appDir, { recursive: true });
    writeFileSync(join(appDir, 'nginx.conf'), appNginxConf(appDir));
    const out = logFile(join(env.dir, 'app.log'));
    const stdio: ['ignore', number, number] = ['ignore', out, out];
    const app = [
      lab.spawn(server, 'sockperf', ['server', '--tcp', '-i', '0.0.0.0', '-p', String(TARGET_PORTS.sockperf)], { stdio }),
      lab.spawn(server, 'nginx', ['-c', join(appDir, 'nginx.conf'), '-p', appDir, '-e', join(appDir, 'error.log')], { stdio }),
      lab.spawn(server, 'iperf3', ['-s', '-p', String(TARGET_PORTS.iperf)], { stdio }),
    ];
    closeSync(out);
    await waitListening(server.netnsPath, Object.values(TARGET_PORTS), `${tag}: the server pod's apps`, 15_000, join(env.dir, 'app.log'));
    return { lab, client, server, app, appDir };
  } catch (e) {
    await lab.destroy();
    throw e;
  }
}

async function closeBase(b: BaseLab, extra: Array<ChildProcess | undefined> = []): Promise<void> {
  await Promise.all([...extra, ...b.app].map((c) => stopChild(c)));
  await b.lab.destroy();
}

const vipEndpoint = (w: Workload): Endpoint => ({ host: TARGET_VIP, port: TARGET_PORTS[w.port] });

/** Counters of the target's KUBE-SEP DNAT rules in a namespace (proof the traffic was DNATed there). */
async function dnatCounters(netnsPath: string): Promise<Record<string, number>> {
  const r = await run('nsenter', [`--net=${netnsPath}`, '--', 'iptables-save', '-c', '-t', 'nat'], { allowFail: true, timeoutMs: 60_000 });
  const out: Record<string, number> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^\[(\d+):\d+\] -A KUBE-SEP-\S+ .*-j DNAT --to-destination (10\.244\.\S+)$/.exec(line);
    if (m) out[m[2]!] = (out[m[2]!] ?? 0) + Number(m[1]);
  }
  return out;
}

// ---------------------------------------------------------------- the kernway agent

/** `kernway agent --standalone` in a lab's node namespace, fed the N Services as one JSON List. */
interface AgentStatusView {
  frontends: number;
  generation: number;
  lastReconcile?: { ms: number; error?: string };
  sockmap?: { enabled: boolean; localPods: number; stats: Record<string, number> };
}

const NODE_NAME = 'bench-node';

/** Namespace and Pod objects for the lab's pods, on node `nodeName`. */
export function podManifests(pods: readonly Pod[], nodeName: string): Record<string, unknown> {
  return {
    apiVersion: 'v1', kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: TARGET_NAMESPACE } },
      ...pods.map((p) => ({
        apiVersion: 'v1', kind: 'Pod',
        // The pod's cgroup, relative to the agent's --cgroup (kubelet's pod<uid> folders do not exist in a lab).
        metadata: { name: p.name, namespace: TARGET_NAMESPACE, labels: { app: p.name }, annotations: { 'kernway.io/cgroup': `pod-${p.name}` } },
        spec: { nodeName, containers: [{ name: p.name, image: 'bench' }] },
        status: { phase: 'Running', podIP: p.ipv4, podIPs: [{ ip: p.ipv4 }, { ip: p.ipv6 }] },
      })),
    ],
  };
}

class AgentProcess {
  readonly manifests: string;
  private pods = 0;
  readonly socket: string;
  private child: ChildProcess | undefined;

  constructor(private readonly lab: Lab, private readonly env: ModeEnv, private readonly name: string) {
    this.manifests = join(env.dir, 'manifests');
    this.socket = join(env.dir, 'admin.sock');
    mkdirSync(this.manifests, { recursive: true });
  }

  /**
   * The lab's pods as Pod objects on this node (the agent accelerates same-node
   * connections between the pods it knows), then the agent.
   */
  async start(pods: readonly Pod[]): Promise<void> {
    this.pods = pods.length;
    writeFileSync(join(this.manifests, 'pods.json'), JSON.stringify(podManifests(pods, NODE_NAME)));
    const out = logFile(join(this.env.dir, 'agent.log'));
    this.child = this.lab.spawn('node', this.env.node, [this.env.kernwayMain, 'agent', '--standalone', this.manifests, '--node-name', NODE_NAME,
      '--cgroup', this.lab.cgroupPath, '--bpffs', join(this.lab.bpffsDir, 'agent'), '--admin-socket', this.socket,
      '--metrics-address', '127.0.0.1:0'], { stdio: ['ignore', out, out] });
    closeSync(out);
    await Promise.race([this.waitStatus(() => true, 30_000), watchEarlyExit(this.child, `${this.name}: kernway agent`, join(this.env.dir, 'agent.log'))]);
  }

  private async status(): Promise<AgentStatusView | undefined> {
    try {
      return await adminRequest(this.socket, '/v1/status', { timeoutMs: 10_000 });
    } catch {
      return undefined;
    }
  }

  private async waitStatus(ok: (s: AgentStatusView) => boolean, timeoutMs: number): Promise<AgentStatusView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.status();
      if (s && ok(s)) return s;
      if (Date.now() > deadline) {
        throw new KernwayError('KW_BENCH_SETUP', `${this.name}: the agent did not reach the expected state in ${timeoutMs} ms (last status: ${JSON.stringify(s)})\n${tail(join(this.env.dir, 'agent.log'))}`);
      }
      await sleep(50);
    }
  }

  /** Writes the Services (atomically) and waits until the agent has reconciled all their frontends. */
  async apply(services: readonly BenchService[]): Promise<ConfigureResult> {
    const before = (await this.status())?.generation ?? 0;
    const t0 = performance.now();
    const file = join(this.manifests, 'services.json');
    writeFileSync(`${file}.tmp`, JSON.stringify(serviceManifests(services)));
    renameSync(`${file}.tmp`, file);
    const want = frontendCount(services);
    // Each pod has an IPv4 and an IPv6 address: both are local pod addresses to the sockmap.
    const s = await this.waitStatus((st) => st.generation > before && st.frontends === want && st.lastReconcile?.error === undefined
      && (st.sockmap === undefined || st.sockmap.localPods >= 2 * this.pods), 300_000);
    return {
      what: `kernway agent: ${want} frontends${s.sockmap ? `, sockmap ${s.sockmap.enabled ? 'on' : 'off'} for ${s.sockmap.localPods} local pod addresses` : ', no sockmap'}`,
      ms: performance.now() - t0, details: { frontends: s.frontends, reconcileMs: s.lastReconcile?.ms, sockmap: s.sockmap !== undefined },
    };
  }

  async evidence(): Promise<Record<string, unknown>> {
    try {
      const services = await adminRequest<Array<{ vip?: string; port?: number; connectionsBalanced?: number; backends?: string[] }>>(this.socket, '/v1/services', { timeoutMs: 30_000 });
      const balanced: Record<string, unknown> = {};
      for (const s of services) if (s.vip === TARGET_VIP) balanced[`${s.vip}:${s.port} -> ${(s.backends ?? []).join(',')}`] = s.connectionsBalanced;
      const st = await this.status();
      return { agentFrontends: services.length, connectionsBalanced: balanced, sockmap: st?.sockmap ? { enabled: st.sockmap.enabled, stats: st.sockmap.stats } : 'not loaded' };
    } catch (e) {
      return { agentError: errorMessage(e) };
    }
  }

  async stop(): Promise<void> {
    await stopChild(this.child, 'SIGTERM', 5000);
  }
}

// ---------------------------------------------------------------- the modes

const direct: ModeDef = {
  name: 'direct',
  description: 'client pod -> server pod address: no Service, no mesh (the floor)',
  carries: () => true,
  async create(env) {
    const b = await baseLab('bdirect', env);
    return {
      name: 'direct', lab: b.lab, client: b.client, server: b.server,
      endpoint: (w) => ({ host: b.server.ipv4, port: TARGET_PORTS[w.port] }),
      configure: async () => ({ what: 'nothing (no Services in this mode)', ms: 0 }),
      evidence: async () => ({}),
      close: () => closeBase(b),
    };
  },
};

const ebpf: ModeDef = {
  name: 'ebpf',
  description: 'client pod -> ClusterIP, `kernway agent` (standalone manifests) on the lab cgroup',
  carries: () => true,
  async create(env) {
    const b = await baseLab('bebpf', env);
    const agent = new AgentProcess(b.lab, env, 'ebpf');
    try {
      await agent.start([b.client, b.server]);
    } catch (e) {
      await agent.stop();
      await closeBase(b);
      throw e;
    }
    return {
      name: 'ebpf', lab: b.lab, client: b.client, server: b.server,
      endpoint: vipEndpoint,
      configure: (services) => agent.apply(services),
      evidence: () => agent.evidence(),
      close: async () => { await agent.stop(); await closeBase(b); },
    };
  },
};

function kubeProxyConfigure(nodeNsPath: string): (services: readonly BenchService[]) => Promise<ConfigureResult> {
  return async (services) => {
    const rules = kubeProxyRules(services, { clusterCIDR: CLUSTER_CIDR });
    const ms = await iptablesRestore(nodeNsPath, rules.text);
    return {
      what: `kube-proxy iptables rules: ${rules.natRules} nat rules in ${rules.natChains} chains, ${rules.filterRules} filter rules`,
      ms, details: { natRules: rules.natRules, natChains: rules.natChains, filterRules: rules.filterRules, largeClusterMode: rules.largeClusterMode },
    };
  };
}

const iptables: ModeDef = {
  name: 'iptables',
  description: "client pod -> ClusterIP, DNAT by kube-proxy's iptables rules in the node namespace",
  carries: () => true,
  async create(env) {
    const b = await baseLab('biptables', env);
    return {
      name: 'iptables', lab: b.lab, client: b.client, server: b.server,
      endpoint: vipEndpoint,
      configure: kubeProxyConfigure(b.lab.nodeNsPath),
      evidence: async () => ({ dnatPacketsSinceLastInstall: await dnatCounters(b.lab.nodeNsPath) }),
      close: () => closeBase(b),
    };
  },
};

const sidecar: ModeDef = {
  name: 'sidecar',
  description: 'kube-proxy iptables + an nginx proxy in each pod, REDIRECT rules in the pod namespaces (istio-iptables style)',
  carries: () => true,
  async create(env) {
    const b = await baseLab('bsidecar', env);
    const proxies: ChildProcess[] = [];
    // The proxies run as uid 1337: their folders live apart from the run's (root-only) scratch folder.
    const proxyRoot = mkdtempSync(join(tmpdir(), `kernway-sidecar-${process.pid}-`));
    chmodSync(proxyRoot, 0o755);
    const close = async (): Promise<void> => {
      await closeBase(b, proxies);
      rmSync(proxyRoot, { recursive: true, force: true });
    };
    try {
      const ports = sidecarPorts(Object.keys(TARGET_PORTS) as TargetPortName[]);
      for (const pod of [b.client, b.server]) {
        const dir = join(proxyRoot, pod.name);
        mkdirSync(dir);
        writeFileSync(join(dir, 'nginx.conf'), sidecarNginxConf(ports, b.server.ipv4, dir));
        chownSync(dir, PROXY_UID, PROXY_UID);
        await iptablesRestore(pod.netnsPath, sidecarIptables(ports));
        const out = logFile(join(dir, 'stdout.log'));
        // The proxy runs as uid 1337 (the rules let its own traffic through), like Istio's.
        proxies.push(b.lab.spawn(pod, 'setpriv', [`--reuid=${PROXY_UID}`, `--regid=${PROXY_UID}`, '--clear-groups', '--',
          'nginx', '-c', join(dir, 'nginx.conf'), '-p', dir, '-e', join(dir, 'error.log')], { stdio: ['ignore', out, out] }));
        closeSync(out);
        await waitListening(pod.netnsPath, ports.flatMap((p) => [p.outbound, p.inbound]), `sidecar proxy in pod ${pod.name}`, 15_000, join(dir, 'error.log'));
      }
    } catch (e) {
      await close();
      throw e;
    }
    return {
      name: 'sidecar', lab: b.lab, client: b.client, server: b.server,
      endpoint: vipEndpoint,
      configure: kubeProxyConfigure(b.lab.nodeNsPath),
      evidence: async () => {
        const r = await run('nsenter', [`--net=${b.client.netnsPath}`, '--', 'iptables-save', '-c', '-t', 'nat'], { allowFail: true });
        const redirected = [...r.stdout.matchAll(/^\[(\d+):\d+\] -A ISTIO_REDIRECT .*--dport (\d+) -j REDIRECT/gm)].map((m) => [m[2], Number(m[1])]);
        return { clientRedirectPackets: Object.fromEntries(redirected) };
      },
      close,
    };
  },
};

/** Gateway API objects for the waypoint: one HTTP listener per HTTP port, each routed to the target Service. */
export function waypointManifests(serverIp: string): Record<string, unknown> {
  const httpPorts = (['http', 'h2c'] as const).map((name) => ({ name, port: TARGET_PORTS[name] }));
  const items: Array<Record<string, unknown>> = [
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'kernway' }, spec: { controllerName: 'kernway.io/gateway-controller' } },
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint', namespace: TARGET_NAMESPACE },
      spec: { gatewayClassName: 'kernway', listeners: httpPorts.map((p) => ({ name: p.name, port: p.port, protocol: 'HTTP' })) },
    },
    ...httpPorts.map((p) => ({
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: `target-${p.name}`, namespace: TARGET_NAMESPACE },
      spec: { parentRefs: [{ name: 'waypoint', sectionName: p.name }], rules: [{ backendRefs: [{ name: TARGET_NAME, port: p.port }] }] },
    })),
    ...(serviceManifests([{
      namespace: TARGET_NAMESPACE, name: TARGET_NAME, clusterIP: TARGET_VIP, endpoints: [serverIp],
      ports: httpPorts.map((p) => ({ name: p.name, port: p.port, targetPort: p.port, protocol: 'TCP' as const, ...(p.name === 'h2c' ? { appProtocol: 'kubernetes.io/h2c' } : {}) })),
    }]).items as Array<Record<string, unknown>>),
  ];
  return { apiVersion: 'v1', kind: 'List', items };
}

const waypoint: ModeDef = {
  name: 'waypoint',
  description: 'HTTP only: client pod -> ClusterIP -> `kernway waypoint` (own pod) -> server pod, with `kernway agent` for the connect() rewrite',
  carries: (w) => w.l7,
  async create(env) {
    const b = await baseLab('bwaypoint', env);
    const agent = new AgentProcess(b.lab, env, 'waypoint');
    let proxy: ChildProcess | undefined;
    let wpPod: Pod;
    try {
      wpPod = await b.lab.addPod('waypoint');
      const wdir = join(env.dir, 'waypoint-manifests');
      mkdirSync(wdir, { recursive: true });
      writeFileSync(join(wdir, 'waypoint.json'), JSON.stringify(waypointManifests(b.server.ipv4)));
      const out = logFile(join(env.dir, 'waypoint.log'));
      proxy = b.lab.spawn(wpPod, env.node, [env.kernwayMain, 'waypoint', '--namespace', TARGET_NAMESPACE, '--manifests', wdir,
        '--listen-address', '0.0.0.0', '--mesh-port', '15019', '--metrics-address', '127.0.0.1:15020', '--access-log', 'off'], { stdio: ['ignore', out, out] });
      closeSync(out);
      await Promise.race([
        waitListening(wpPod.netnsPath, [TARGET_PORTS.http, TARGET_PORTS.h2c], 'kernway waypoint', 30_000, join(env.dir, 'waypoint.log')),
        watchEarlyExit(proxy, 'kernway waypoint', join(env.dir, 'waypoint.log')),
      ]);
      await agent.start([b.client, b.server, wpPod]);
    } catch (e) {
      await agent.stop();
      await closeBase(b, [proxy]);
      throw e;
    }
    const wp = wpPod;
    return {
      name: 'waypoint', lab: b.lab, client: b.client, server: b.server,
      endpoint: vipEndpoint,
      // The Service's HTTP ports lead to the waypoint (where kernway sends a Service that has one).
      configure: (services) => agent.apply(services.map((s) => (s.namespace === TARGET_NAMESPACE && s.name === TARGET_NAME ? { ...s, endpoints: [wp.ipv4] } : s))),
      evidence: () => agent.evidence(),
      close: async () => { await stopChild(proxy); await agent.stop(); await closeBase(b); },
    };
  },
};

export const MODES: readonly ModeDef[] = Object.freeze([direct, ebpf, iptables, sidecar, waypoint]);

export function modeDef(name: ModeName): ModeDef {
  return MODES.find((m) => m.name === name)!;
}
