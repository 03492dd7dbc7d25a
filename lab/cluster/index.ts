/**
 * A Kubernetes cluster on one machine, for tests, `kernway lab`, the demo and the bench:
 * etcd, kube-apiserver, kube-controller-manager and kube-scheduler (v1.20.2, built by
 * scripts/build-kube.sh) in a control-plane network namespace of their own, and lab nodes
 * (network namespaces with a cgroup and a bpffs folder each) where the lab kubelet
 * (lab/cluster/kubelet.ts) runs pods as processes. Optionally the real kube-proxy
 * (iptables mode) in each node.
 *
 * The machine reaches the API server at https://127.0.0.1:<port chosen per run> through a
 * forwarder (this process listens; a helper inside the control-plane namespace connects);
 * nodes and pods reach it directly at 10.250.0.1:6443, and through the `kubernetes`
 * Service (10.96.0.1:443) where a service proxy runs. See docs/lab.md.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, KernwayError } from '../../common/errors.js';
import { projectRoot } from '../../common/version.js';
import { createCgroup, removeCgroupTree } from '../cgroup.js';
import { runId, validTag } from '../names.js';
import { cgroup2Mount, ensureBpffs, run, type RunResult } from '../system.js';
import { kubeBin, kubeBinDir } from './bin.js';
import { KubeApi, credentialsFromKubeconfig, type KubeObject } from './kube-api.js';
import type { KubeletConfig } from './kubelet.js';
import {
  API_PORT, CLUSTER_CIDR, CP_IP, KUBERNETES_SERVICE_IP, SERVICE_CIDR, makeControlPlaneNetns, makeNodeNetns, nodeIp, podCidr,
} from './network.js';
import { makePki, writeKubeconfig } from './pki.js';
import { spawnPlaced, stopPid, waitFor } from './proc.js';

export { CP_IP, API_PORT, KUBERNETES_SERVICE_IP, SERVICE_CIDR, CLUSTER_CIDR } from './network.js';

export interface ClusterOptions {
  /** Names this run's objects (kernway-<tag>-<pid>-<rand>); 1-12 lowercase letters or digits. */
  tag?: string;
  /** Lab nodes, 1-8 (default 2). */
  nodes?: number;
  /** Run the real kube-proxy (iptables mode) in every node (default false). */
  kubeProxy?: boolean;
  /** Parent of the run folder (default /dev/shm, else the OS temp folder: etcd's fsyncs cost nothing in memory). */
  baseDir?: string;
  /**
   * More image → entrypoint mappings for the lab kubelet (there are no images: a container
   * without `command` runs its image's entrypoint from this map, then its `args`). Added to
   * labImages(): `kernway` runs this checkout's CLI.
   */
  images?: Record<string, string[]>;
  /** More kube-apiserver flags (e.g. '--watch-cache=false', '--etcd-compaction-interval=2s' to make watches expire). */
  apiserverArgs?: readonly string[];
}

/** The lab's default image map: kernway's image (any registry, any tag) is this checkout's CLI. */
export function labImages(): Record<string, string[]> {
  return { kernway: [process.execPath, join(projectRoot(), 'dist', 'cli', 'main.js')] };
}

export interface LabNode {
  name: string;
  index: number;
  netns: string;
  netnsPath: string;
  ip: string;
  podCidr: string;
  /** The node's own cgroup: kubelet's kubepods/... tree lives under it. */
  cgroupPath: string;
  /** The node's bpffs folder (what a pod's hostPath /sys/fs/bpf is bound to). */
  bpffsDir: string;
  kubeconfig: string;
}

interface Proc { name: string; child: ChildProcess; log: string }

const FORWARD_SCRIPT = `
const net = require('node:net'); const fs = require('node:fs');
const [sock, host, port] = process.argv.slice(1);
try { fs.unlinkSync(sock); } catch {}
net.createServer((c) => { const u = net.connect(Number(port), host); c.pipe(u).pipe(c);
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy()); })
  .listen(sock, () => { fs.chmodSync(sock, 0o600); console.log('forwarding'); });
process.on('SIGTERM', () => process.exit(0));
`;

export function defaultBaseDir(): string {
  return existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
}

export class Cluster {
  readonly id: string;
  readonly tag: string;
  readonly dir: string;
  readonly cgroupPath: string;
  readonly bpffsDir: string;
  readonly cpNetns: string;
  readonly nodes: LabNode[] = [];
  /** The admin kubeconfig (server https://127.0.0.1:<apiPort>). */
  readonly kubeconfig: string;
  apiPort = 0;
  api!: KubeApi;
  /** Milliseconds of each start phase, for reports. */
  readonly timings: Record<string, number> = {};
  private readonly procs: Proc[] = [];
  private forwarder: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private stopped = false;
  private images: Record<string, string[]> = {};
  private apiserverArgs: readonly string[] = [];

  private constructor(tag: string, baseDir: string) {
    this.tag = tag;
    this.id = runId();
    this.dir = join(baseDir, `kernway-${tag}-${this.id}`);
    this.cgroupPath = join(cgroup2Mount(), `kernway-${tag}-${this.id}`);
    this.bpffsDir = join(ensureBpffs(), `kernway-${tag}-${this.id}`);
    this.cpNetns = `kw-${this.id}-cp`;
    this.kubeconfig = join(this.dir, 'admin.kubeconfig');
  }

  /** Builds and starts a cluster; on any failure removes what it made and rethrows. */
  static async start(opts: ClusterOptions = {}): Promise<Cluster> {
    const tag = opts.tag ?? 'test';
    if (!validTag(tag)) throw new InvalidArgumentError('tag', '1-12 lowercase letters or digits', tag);
    const nodes = opts.nodes ?? 2;
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > 8) throw new InvalidArgumentError('nodes', 'an integer from 1 to 8', nodes);
    if (process.getuid?.() !== 0) throw new KernwayError('KW_LAB_NOT_ROOT', 'the lab cluster needs root (network namespaces, cgroups, bpffs)');
    for (const [image, argv] of Object.entries(opts.images ?? {})) {
      if (!image || !Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string' && a !== '')) {
        throw new InvalidArgumentError(`images[${image}]`, 'a non-empty list of non-empty strings (the entrypoint argv)', argv);
      }
    }
    kubeBinDir();
    const c = new Cluster(tag, opts.baseDir ?? defaultBaseDir());
    c.images = { ...labImages(), ...opts.images };
    c.apiserverArgs = opts.apiserverArgs ?? [];
    try {
      await c.boot(nodes, opts.kubeProxy === true);
    } catch (e) {
      // KERNWAY_LAB_KEEP=1 keeps the run folder (logs) of a failed start for a look.
      await c.stop({ keepDir: process.env.KERNWAY_LAB_KEEP === '1' });
      throw e;
    }
    return c;
  }

  private async phase<T>(name: string, f: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    const v = await f();
    this.timings[name] = Math.round(performance.now() - t0);
    return v;
  }

  private spawnProc(name: string, cgroup: string, netns: string | undefined, cmd: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess {
    const log = join(this.dir, 'logs', `${name}.log`);
    const child = spawnPlaced({ cgroup, netns: netns && `/var/run/netns/${netns}` }, cmd, args, { log, env });
    this.procs.push({ name, child, log });
    child.once('exit', (code, signal) => {
      if (!this.stopped) writeFileSync(join(this.dir, 'logs', `${name}.exit`), `${code ?? signal}\n`);
    });
    return child;
  }

  private async boot(nodeCount: number, kubeProxy: boolean): Promise<void> {
    const t0 = performance.now();
    mkdirSync(join(this.dir, 'logs'), { recursive: true, mode: 0o700 });
    mkdirSync(join(this.dir, 'pki'), { mode: 0o700 });
    createCgroup(this.cgroupPath);
    mkdirSync(this.bpffsDir);
    const pki = join(this.dir, 'pki');
    const nodeNames = Array.from({ length: nodeCount }, (_, i) => `node-${i + 1}`);
    await this.phase('pki', async () => {
      await Promise.all([
        makePki(pki, [CP_IP, '127.0.0.1', KUBERNETES_SERVICE_IP, 'localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'], [
          { name: 'admin', cn: 'kernway-admin', org: 'system:masters' },
          { name: 'controller-manager', cn: 'system:kube-controller-manager' },
          { name: 'scheduler', cn: 'system:kube-scheduler' },
          { name: 'kube-proxy', cn: 'system:kube-proxy' },
          ...nodeNames.map((n) => ({ name: n, cn: `system:node:${n}`, org: 'system:nodes' })),
        ]),
        makeControlPlaneNetns(this.cpNetns),
      ]);
      const inside = `https://${CP_IP}:${API_PORT}`;
      for (const id of ['controller-manager', 'scheduler', 'kube-proxy', ...nodeNames]) writeKubeconfig(pki, id, inside, join(this.dir, `${id}.kubeconfig`));
    });

    const cpCgroup = join(this.cgroupPath, 'control-plane');
    createCgroup(cpCgroup);
    await this.phase('etcd+apiserver', async () => {
      this.spawnProc('etcd', cpCgroup, this.cpNetns, kubeBin('etcd'), [
        '--name=lab', `--data-dir=${join(this.dir, 'etcd')}`,
        '--listen-client-urls=http://127.0.0.1:2379', '--advertise-client-urls=http://127.0.0.1:2379',
        '--listen-peer-urls=http://127.0.0.1:2380', '--initial-advertise-peer-urls=http://127.0.0.1:2380',
        '--initial-cluster=lab=http://127.0.0.1:2380', '--log-level=warn',
      ]);
      this.spawnApiServer();
      await this.startForwarder();
      this.api = new KubeApi(credentialsFromKubeconfig(this.kubeconfig));
      await waitFor('the API server to be ready', async () => (this.failIfExited(), await this.api.request<string>('GET', '/readyz', undefined, undefined, 2000).then(() => true)), 60_000, 100);
    });

    await this.phase('controllers+nodes', async () => {
      this.spawnProc('kube-controller-manager', cpCgroup, this.cpNetns, kubeBin('kube-controller-manager'), [
        `--kubeconfig=${this.dir}/controller-manager.kubeconfig`, '--port=0', '--secure-port=0', '--bind-address=127.0.0.1', '--leader-elect=false',
        `--service-account-private-key-file=${pki}/sa.key`, `--root-ca-file=${pki}/ca.crt`, '--use-service-account-credentials=true',
        `--flex-volume-plugin-dir=${join(this.dir, 'flexvolume')}`, `--cluster-cidr=${CLUSTER_CIDR}`, `--service-cluster-ip-range=${SERVICE_CIDR}`,
        '--profiling=false', '--v=1',
      ]);
      this.spawnProc('kube-scheduler', cpCgroup, this.cpNetns, kubeBin('kube-scheduler'), [
        `--kubeconfig=${this.dir}/scheduler.kubeconfig`, '--port=0', '--secure-port=0', '--bind-address=127.0.0.1', '--leader-elect=false', '--profiling=false', '--v=1',
      ]);
      for (const [i, name] of nodeNames.entries()) await this.addNode(name, i + 1, kubeProxy);
      await waitFor('every lab node to be Ready', async () => {
        this.failIfExited();
        const list = await this.api.get<{ items: Array<KubeObject & { status?: { conditions?: Array<{ type: string; status: string }> } }> }>('/api/v1/nodes');
        const ready = list.items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
        return ready.length === nodeCount;
      }, 60_000, 100);
      // The default ServiceAccount is what pods run as; wait for its controller.
      // 1.20 admits a pod only once its ServiceAccount has a token Secret.
      await waitFor('the default ServiceAccount and its token', async () => {
        const sa = await this.api.find<{ secrets?: unknown[] }>('/api/v1/namespaces/default/serviceaccounts/default');
        return (sa?.secrets?.length ?? 0) > 0;
      }, 60_000, 100);
    });
    this.timings.total = Math.round(performance.now() - t0);
    writeFileSync(join(this.dir, 'cluster.json'), JSON.stringify(this.describe(), null, 2) + '\n');
  }

  /** The kube-apiserver process (with ClusterOptions.apiserverArgs). */
  private spawnApiServer(): ChildProcess {
    const pki = join(this.dir, 'pki');
    return this.spawnProc('kube-apiserver', join(this.cgroupPath, 'control-plane'), this.cpNetns, kubeBin('kube-apiserver'), [
      '--etcd-servers=http://127.0.0.1:2379', `--advertise-address=${CP_IP}`, '--bind-address=0.0.0.0', `--secure-port=${API_PORT}`,
        `--tls-cert-file=${pki}/apiserver.crt`, `--tls-private-key-file=${pki}/apiserver.key`, `--client-ca-file=${pki}/ca.crt`,
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-signing-key-file=${pki}/sa.key`, `--service-account-key-file=${pki}/sa.pub`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`, '--authorization-mode=Node,RBAC', '--enable-admission-plugins=NodeRestriction',
        '--allow-privileged=true', `--cert-dir=${join(this.dir, 'apiserver-certs')}`, '--profiling=false', '--v=1',
      ...this.apiserverArgs,
    ]);
  }

  /**
   * Stops the API server (SIGKILL: an outage, not a shutdown); etcd and everything else keep
   * running. Clients see connections reset and refused until startApiServer().
   */
  async stopApiServer(): Promise<void> {
    const i = this.procs.findIndex((p) => p.name === 'kube-apiserver' && p.child.exitCode === null && p.child.signalCode === null);
    if (i < 0) return;
    const p = this.procs[i]!;
    this.procs.splice(i, 1);
    const exited = new Promise<void>((r) => p.child.once('exit', () => r()));
    p.child.kill('SIGKILL');
    await exited;
  }

  /** Starts the API server again (after stopApiServer) and waits until it is ready. */
  async startApiServer(): Promise<void> {
    if (this.procs.some((p) => p.name === 'kube-apiserver')) return;
    this.spawnApiServer();
    await waitFor('the API server to be ready again', async () => (this.failIfExited(), await this.api.request<string>('GET', '/readyz', undefined, undefined, 2000).then(() => true)), 60_000, 100);
  }

  /** Throws KW_LAB_START, with the tail of its log, when a lab process has exited. */
  private failIfExited(): void {
    for (const p of this.procs) {
      if (p.child.exitCode !== null || p.child.signalCode !== null) {
        let tail = '';
        try { tail = readFileSync(p.log, 'utf8').trim().split('\n').slice(-5).join('\n'); } catch { /* no log */ }
        throw new KernwayError('KW_LAB_START', `${p.name} exited (${p.child.exitCode ?? p.child.signalCode}) while the lab cluster started; ${p.log}:\n${tail}`, { name: p.name, dir: this.dir });
      }
    }
  }

  /** The root-namespace end of the API forwarder: 127.0.0.1:<port> → Unix socket → control-plane netns. */
  private async startForwarder(): Promise<void> {
    const sock = join(this.dir, 'apiserver.sock');
    const helper = this.spawnProc('api-forwarder', join(this.cgroupPath, 'control-plane'), this.cpNetns, process.execPath, ['-e', FORWARD_SCRIPT, sock, CP_IP, String(API_PORT)]);
    await waitFor('the API forwarder', () => existsSync(sock) || helper.exitCode !== null, 10_000, 20);
    const server = createServer((c) => {
      this.sockets.add(c);
      const u = createConnection(sock);
      c.pipe(u).pipe(c);
      c.on('error', () => u.destroy());
      u.on('error', () => c.destroy());
      c.on('close', () => { this.sockets.delete(c); u.destroy(); });
    });
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
    this.forwarder = server;
    this.apiPort = (server.address() as { port: number }).port;
    writeKubeconfig(join(this.dir, 'pki'), 'admin', `https://127.0.0.1:${this.apiPort}`, this.kubeconfig);
  }

  private async addNode(name: string, index: number, kubeProxy: boolean): Promise<LabNode> {
    const netns = `kw-${this.id}-${name}`;
    const node: LabNode = {
      name, index, netns, netnsPath: `/var/run/netns/${netns}`, ip: nodeIp(index), podCidr: podCidr(index),
      cgroupPath: join(this.cgroupPath, name), bpffsDir: join(this.bpffsDir, name), kubeconfig: join(this.dir, `${name}.kubeconfig`),
    };
    this.nodes.push(node);
    await makeNodeNetns(this.cpNetns, netns, index);
    createCgroup(node.cgroupPath);
    createCgroup(join(node.cgroupPath, 'system'));
    mkdirSync(node.bpffsDir);
    const cfg: KubeletConfig = {
      nodeName: name, nodeIp: node.ip, podCidr: node.podCidr, netns, cgroupPath: node.cgroupPath, bpffsDir: node.bpffsDir,
      kubeconfig: node.kubeconfig, dir: join(this.dir, name), cgroup2Mount: cgroup2Mount(), apiHost: CP_IP, apiPort: API_PORT,
      images: this.images,
    };
    mkdirSync(cfg.dir);
    const cfgPath = join(cfg.dir, 'kubelet.json');
    writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
    this.spawnProc(`${name}-kubelet`, join(node.cgroupPath, 'system'), netns, process.execPath, [join(projectRoot(), 'dist', 'cli', 'main.js'), 'lab', 'kubelet', cfgPath]);
    if (kubeProxy) this.startKubeProxy(node);
    return node;
  }

  /** Starts the real kube-proxy (iptables mode) in a node's namespace. */
  startKubeProxy(node: LabNode): ChildProcess {
    return this.spawnProc(`${node.name}-kube-proxy`, join(node.cgroupPath, 'system'), node.netns, kubeBin('kube-proxy'), [
      `--kubeconfig=${this.dir}/kube-proxy.kubeconfig`, '--proxy-mode=iptables', `--hostname-override=${node.name}`,
      `--cluster-cidr=${CLUSTER_CIDR}`, '--conntrack-max-per-core=0', '--conntrack-tcp-timeout-established=0s',
      '--conntrack-tcp-timeout-close-wait=0s', '--oom-score-adj=0', `--bind-address=${node.ip}`,
      '--metrics-bind-address=127.0.0.1:10249', '--healthz-bind-address=127.0.0.1:10256', '--profiling=false', '--v=1',
    ]);
  }

  node(name: string): LabNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new InvalidArgumentError('node', `one of ${this.nodes.map((x) => x.name).join(', ')}`, name);
    return n;
  }

  /** Runs the cluster's kubectl (1.20) with the admin kubeconfig. */
  kubectl(args: string[], opts: { input?: string; allowFail?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    return run(kubeBin('kubectl'), [`--kubeconfig=${this.kubeconfig}`, `--cache-dir=${join(this.dir, 'kubectl-cache')}`, ...args], opts);
  }

  describe(): Record<string, unknown> {
    return {
      id: this.id, tag: this.tag, pid: process.pid, dir: this.dir, kubeconfig: this.kubeconfig, server: `https://127.0.0.1:${this.apiPort}`,
      cgroup: this.cgroupPath, bpffs: this.bpffsDir, controlPlaneNetns: this.cpNetns,
      nodes: this.nodes.map((n) => ({ name: n.name, ip: n.ip, podCidr: n.podCidr, netns: n.netns, cgroup: n.cgroupPath, bpffs: n.bpffsDir })),
      timingsMs: this.timings,
    };
  }

  /**
   * Stops everything, clients first and etcd last (SIGTERM, then SIGKILL after a short
   * grace), then removes the cgroups (and any process left in them), every namespace
   * named kw-<id>-…, the bpffs folder and the run folder. Idempotent; safe after a failure.
   */
  async stop(opts: { keepDir?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.api?.close();
    const order = (p: Proc): number => {
      if (p.name.endsWith('-kubelet')) return 0;
      if (p.name.endsWith('-kube-proxy')) return 1;
      return ({ 'kube-controller-manager': 2, 'kube-scheduler': 2, 'kube-apiserver': 3, 'api-forwarder': 4, etcd: 5 } as Record<string, number>)[p.name] ?? 1;
    };
    const groups = new Map<number, Proc[]>();
    for (const p of this.procs) groups.set(order(p), [...(groups.get(order(p)) ?? []), p]);
    for (const k of [...groups.keys()].sort()) {
      await Promise.all(groups.get(k)!.map((p) => stopPid(p.child.pid, p.name.endsWith('-kubelet') ? 10_000 : 3_000)));
    }
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.forwarder ? this.forwarder.close(() => r()) : r()));
    await removeCgroupTree(this.cgroupPath);
    if (existsSync('/var/run/netns')) {
      const mine = readdirSync('/var/run/netns').filter((n) => n.startsWith(`kw-${this.id}-`));
      // Pods and nodes first, the control plane (the router) last.
      mine.sort((a, b) => Number(a === this.cpNetns) - Number(b === this.cpNetns));
      for (const n of mine) await run('ip', ['netns', 'del', n], { allowFail: true });
    }
    rmSync(this.bpffsDir, { recursive: true, force: true });
    if (!opts.keepDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

