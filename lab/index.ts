/**
 * The lab: a Kubernetes node in miniature, for tests, the demo and the benchmarks.
 *
 * - a cgroup of its own under the machine's cgroup2 mount (BPF cgroup programs are
 *   attached there, never to the machine's root cgroup), with a child cgroup per pod;
 * - a "node" network namespace standing for the node's root namespace, and a network
 *   namespace per pod joined to it by a veth pair (Calico-style: /32 and /128 pod
 *   addresses, routes on the node side, proxy ARP), so the machine's own namespace,
 *   routes and iptables are never touched;
 * - a bpffs folder of its own for pins;
 * - processes started in a pod's cgroup and netns, tracked and ended by PID.
 *
 * Several labs made with different `node` numbers are several nodes: node k's pods are
 * 10.244.2k.x / fd00:244:2k::x (its remote hosts 10.244.2k+1.x), and Lab.link() joins two
 * node namespaces by a veth pair with routes to each other's pod addresses, so pods on
 * different nodes talk by plain pod-IP TCP, each node with its own cgroup and bpffs.
 *
 * Everything is removed by destroy(), also after a failure; leftovers of crashed runs
 * are removed by sweepLeftovers() (lab/sweep.ts).
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, KernwayError } from '../common/errors.js';
import { createCgroup, removeCgroupTree } from './cgroup.js';
import { runId, validPodName, validTag } from './names.js';
import { cgroup2Mount, ensureBpffs, run, type RunResult } from './system.js';

export interface Pod {
  name: string;
  netns: string;
  netnsPath: string;
  ipv4: string;
  ipv6: string;
  /** The pod's interface name inside its namespace. */
  podIf: string;
  /** The host side of the pod's veth, in the node namespace. */
  hostVeth: string;
  hostIfindex: number;
  /** The pod's own cgroup (a child of the lab cgroup); empty for a remote host. */
  cgroupPath: string;
  remote: boolean;
}

export type Target = Pod | 'node' | 'host';

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  stdio?: StdioOptions;
  /** Put the process in the lab's cgroup tree (default true; for 'host', false means truly outside). */
  cgroup?: boolean;
  cwd?: string;
}

export interface ExecOptions extends SpawnOptions {
  input?: string;
  timeoutMs?: number;
}

export const NODE_IPV4 = '10.244.0.1';
export const NODE_IPV6 = 'fd00:244::1';
/** The highest node number of a multi-node lab (node k uses 10.244.2k.0/24 and 10.244.2k+1.0/24). */
export const MAX_NODE = 63;
const GATEWAY_V4 = '169.254.1.1';
const GATEWAY_V6 = 'fe80::1';

export class Lab {
  readonly id: string;
  readonly tag: string;
  readonly cgroupPath: string;
  readonly bpffsDir: string;
  readonly nodeNs: string;
  readonly nodeNsPath: string;
  readonly pods = new Map<string, Pod>();
  /** Processes the lab started, with the pod each runs in ('' for node/host). */
  private readonly children = new Map<ChildProcess, string>();
  private nextLocal = 2;
  private nextRemote = 2;
  private nextLink = 0;
  private destroyed = false;
  /** This lab's node number (0 unless made as one node of several). */
  readonly node: number;

  private constructor(tag: string, id: string, cgroupRoot: string, bpffsRoot: string, node: number) {
    this.tag = tag;
    this.id = id;
    this.node = node;
    this.cgroupPath = join(cgroupRoot, `kernway-${tag}-${id}`);
    this.bpffsDir = join(bpffsRoot, `kernway-${tag}-${id}`);
    this.nodeNs = `kw-${id}-node`;
    this.nodeNsPath = `/var/run/netns/${this.nodeNs}`;
  }

  /** The node's own addresses (on lo of its node namespace). */
  get nodeIPv4(): string { return `10.244.${2 * this.node}.1`; }
  get nodeIPv6(): string { return `${this.v6Prefix(false)}1`; }
  /** The pod CIDRs of this node (local pods and remote hosts), as routes on another node point them. */
  get podCidrs(): string[] {
    return [`10.244.${2 * this.node}.0/24`, `10.244.${2 * this.node + 1}.0/24`, `${this.v6Prefix(false)}/64`, `${this.v6Prefix(true)}/64`];
  }

  private v6Prefix(remote: boolean): string {
    const n = 2 * this.node + (remote ? 1 : 0);
    return n === 0 ? 'fd00:244::' : `fd00:244:${n.toString(16)}::`;
  }

  static async create(opts: { tag?: string; node?: number } = {}): Promise<Lab> {
    const tag = opts.tag ?? 'test';
    if (!validTag(tag)) throw new InvalidArgumentError('tag', '1-12 lowercase letters or digits', tag);
    const node = opts.node ?? 0;
    if (!Number.isInteger(node) || node < 0 || node > MAX_NODE) throw new InvalidArgumentError('node', `an integer from 0 to ${MAX_NODE}`, String(opts.node));
    if (process.getuid?.() !== 0) throw new KernwayError('KW_LAB_NOT_ROOT', 'the lab needs root (network namespaces, cgroups, bpffs)');
    const lab = new Lab(tag, runId(), cgroup2Mount(), ensureBpffs(), node);
    try {
      createCgroup(lab.cgroupPath);
      createCgroup(join(lab.cgroupPath, 'node'));
      mkdirSync(lab.bpffsDir);
      await run('ip', ['netns', 'add', lab.nodeNs]);
      await run('ip', ['-n', lab.nodeNs, '-batch', '-'], {
        input: [
          'link set lo up',
          // The node's own address lives on lo (this kernel may lack the dummy driver).
          `addr add ${lab.nodeIPv4}/32 dev lo`,
          `addr add ${lab.nodeIPv6}/128 dev lo nodad`,
          // Pods route via 169.254.1.1 (Calico-style); the node answers ARP for it.
          `addr add ${GATEWAY_V4}/32 dev lo`,
        ].join('\n') + '\n',
      });
      await lab.sysctl(lab.nodeNsPath, {
        'net.ipv4.ip_forward': '1',
        'net.ipv6.conf.all.forwarding': '1',
        'net.ipv4.conf.all.rp_filter': '0',
        'net.ipv4.conf.default.rp_filter': '0',
      });
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  private async sysctl(netnsPath: string, values: Record<string, string>): Promise<void> {
    const args = Object.entries(values).map(([k, v]) => `${k}=${v}`);
    await run('nsenter', [`--net=${netnsPath}`, '--', 'sysctl', '-q', '-w', ...args]);
  }

  /** Adds a pod on this node, or with { remote: true } a host elsewhere (not a local pod). */
  async addPod(name: string, opts: { remote?: boolean } = {}): Promise<Pod> {
    this.assertLive();
    if (!validPodName(name)) throw new InvalidArgumentError('pod name', 'lowercase letters, digits and dashes, at most 12', name);
    if (this.pods.has(name)) throw new InvalidArgumentError('pod name', 'a name not used in this lab', name);
    const remote = opts.remote === true;
    const n = remote ? this.nextRemote++ : this.nextLocal++;
    if (n > 254) throw new KernwayError('KW_LAB_FULL', 'a lab holds at most 253 local pods and 253 remote hosts');
    const subnet = 2 * this.node + (remote ? 1 : 0);
    const pod: Pod = {
      name,
      netns: `kw-${this.id}-${name}`,
      netnsPath: `/var/run/netns/kw-${this.id}-${name}`,
      ipv4: `10.244.${subnet}.${n}`,
      ipv6: `${this.v6Prefix(remote)}${n.toString(16)}`,
      podIf: 'eth0',
      hostVeth: `${remote ? 'kwr' : 'kwp'}${n}`,
      hostIfindex: 0,
      cgroupPath: remote ? '' : join(this.cgroupPath, `pod-${name}`),
      remote,
    };
    this.pods.set(name, pod);
    await run('ip', ['netns', 'add', pod.netns]);
    if (!remote) createCgroup(pod.cgroupPath);
    await run('ip', ['-n', this.nodeNs, '-batch', '-'], {
      input: [
        `link add ${pod.hostVeth} type veth peer name eth0 netns ${pod.netns}`,
        `addr add ${GATEWAY_V6}/64 dev ${pod.hostVeth} nodad`,
        `link set ${pod.hostVeth} up`,
        `route add ${pod.ipv4}/32 dev ${pod.hostVeth}`,
        `route add ${pod.ipv6}/128 dev ${pod.hostVeth}`,
      ].join('\n') + '\n',
    });
    await run('ip', ['-n', pod.netns, '-batch', '-'], {
      input: [
        'link set lo up',
        `addr add ${pod.ipv4}/32 dev eth0`,
        `addr add ${pod.ipv6}/128 dev eth0 nodad`,
        'link set eth0 up',
        `route add ${GATEWAY_V4} dev eth0 scope link`,
        `route add default via ${GATEWAY_V4} dev eth0`,
        `route add default via ${GATEWAY_V6} dev eth0`,
      ].join('\n') + '\n',
    });
    await this.sysctl(this.nodeNsPath, { [`net.ipv4.conf.${pod.hostVeth}.proxy_arp`]: '1' });
    const link = await run('ip', ['-n', this.nodeNs, '-j', 'link', 'show', 'dev', pod.hostVeth]);
    pod.hostIfindex = (JSON.parse(link.stdout) as Array<{ ifindex: number }>)[0]!.ifindex;
    return pod;
  }

  /**
   * Joins two labs' node namespaces (two nodes) by a veth pair, with routes to each other's
   * pod addresses: what a cluster's pod CIDR routes do. Removed with either namespace.
   */
  static async link(a: Lab, b: Lab): Promise<void> {
    if (a.node === b.node) throw new InvalidArgumentError('node', 'two labs with different node numbers', `${a.node} and ${b.node}`);
    const ifA = `kwn${b.node}x${a.nextLink++}`;
    const ifB = `kwn${a.node}x${b.nextLink++}`;
    // Link addresses: 169.254.(100+min).(2*max)/31-like pairs, and fd00:255:min:max::1/2.
    const [lo, hi] = a.node < b.node ? [a, b] : [b, a];
    const v4 = (l: Lab): string => `169.254.${100 + lo.node}.${2 * hi.node + (l === lo ? 0 : 1)}`;
    const v6 = (l: Lab): string => `fd00:255:${lo.node.toString(16)}:${hi.node.toString(16)}::${l === lo ? 1 : 2}`;
    await run('ip', ['-n', a.nodeNs, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', b.nodeNs]);
    for (const [l, me, other] of [[a, ifA, b], [b, ifB, a]] as const) {
      await run('ip', ['-n', l.nodeNs, '-batch', '-'], {
        input: [
          `addr add ${v4(l)}/31 dev ${me}`,
          `addr add ${v6(l)}/64 dev ${me} nodad`,
          `link set ${me} up`,
          ...other.podCidrs.map((c) => `route add ${c} via ${c.includes(':') ? v6(other) : v4(other)} dev ${me}`),
          `route add ${other.nodeIPv4}/32 via ${v4(other)} dev ${me}`,
        ].join('\n') + '\n',
      });
    }
  }

  pod(name: string): Pod {
    const p = this.pods.get(name);
    if (!p) throw new InvalidArgumentError('pod', `one of ${[...this.pods.keys()].join(', ') || '(none)'}`, name);
    return p;
  }

  async removePod(name: string): Promise<void> {
    const pod = this.pods.get(name);
    if (!pod) return;
    this.pods.delete(name);
    for (const [child, podName] of this.children) {
      if (podName === name && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    if (pod.cgroupPath) await removeCgroupTree(pod.cgroupPath);
    await run('ip', ['netns', 'del', pod.netns], { allowFail: true });
  }

  /** Where a target's processes go: cgroup (or none) and netns path (or none for the root netns). */
  private placement(target: Target, inCgroup: boolean): { cgroup: string | undefined; netns: string | undefined } {
    if (target === 'host') return { cgroup: inCgroup ? join(this.cgroupPath, 'node') : undefined, netns: undefined };
    if (target === 'node') return { cgroup: inCgroup ? join(this.cgroupPath, 'node') : undefined, netns: this.nodeNsPath };
    return { cgroup: inCgroup && target.cgroupPath ? target.cgroupPath : undefined, netns: target.netnsPath };
  }

  /**
   * Starts a process in a pod (its cgroup, then its netns), in the node netns, or on the
   * host. It is moved into the cgroup before it enters the namespace and before it runs
   * the command, so every socket it opens is seen by the cgroup's BPF programs.
   */
  spawn(target: Target, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    this.assertLive();
    const inCgroup = opts.cgroup ?? target !== 'host';
    const { cgroup, netns } = this.placement(target, inCgroup);
    const inner = netns ? ['nsenter', `--net=${netns}`, '--', cmd, ...args] : [cmd, ...args];
    const script = cgroup ? 'echo $$ > "$KW_LAB_CGROUP/cgroup.procs" && exec "$@"' : 'exec "$@"';
    const child = spawn('sh', ['-c', script, 'sh', ...inner], {
      env: { ...process.env, ...opts.env, KW_LAB_CGROUP: cgroup ?? '' },
      stdio: opts.stdio ?? ['pipe', 'pipe', 'pipe'],
      cwd: opts.cwd,
    });
    this.children.set(child, typeof target === 'string' ? '' : target.name);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Runs a command to completion in a target; resolves with its exit code and output. */
  exec(target: Target, cmd: string, args: string[], opts: ExecOptions = {}): Promise<RunResult> {
    const child = this.spawn(target, cmd, args, opts);
    return new Promise((resolve, reject) => {
      let stdout = '';
      let stderr = '';
      child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
      child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new KernwayError('KW_LAB_TIMEOUT', `${cmd} ${args.join(' ')} did not finish within ${opts.timeoutMs} ms`));
      }, opts.timeoutMs ?? 30_000);
      child.once('error', (e) => { clearTimeout(timer); reject(e); });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
      });
      if (opts.input !== undefined) child.stdin?.end(opts.input);
      else child.stdin?.end();
    });
  }

  private assertLive(): void {
    if (this.destroyed) throw new KernwayError('KW_LAB_DESTROYED', `lab ${this.id} was already destroyed`);
  }

  /** Ends the lab's processes (by PID), deletes its namespaces, cgroups and pins. Idempotent. */
  async destroy(): Promise<void> {
    this.destroyed = true;
    for (const child of this.children.keys()) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    await removeCgroupTree(this.cgroupPath);
    for (const pod of this.pods.values()) await run('ip', ['netns', 'del', pod.netns], { allowFail: true });
    this.pods.clear();
    await run('ip', ['netns', 'del', this.nodeNs], { allowFail: true });
    rmSync(this.bpffsDir, { recursive: true, force: true });
  }

  /** For long-running users (demo, bench): destroy the lab on SIGINT/SIGTERM, then exit. */
  destroyOnSignals(): () => void {
    const handler = (sig: NodeJS.Signals): void => {
      void this.destroy().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    };
    process.once('SIGINT', handler);
    process.once('SIGTERM', handler);
    return () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    };
  }
}
