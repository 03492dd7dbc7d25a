/**
 * A lab wired like the agent wires the policy engine: a manifest directory read by the
 * StandaloneSource with the policy validator, each snapshot (pods, namespaces, policies)
 * handed to a PolicyRuntime attached to the lab's cgroup and pod veths. Plus long-lived
 * clients and servers in pods.
 */
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Lab, type Pod } from '../../lab/index.js';
import type { PolicyEngine, PolicyEngineOptions } from '../../agent/datapath/policy-engine.js';
import { PolicyRuntime } from '../../agent/datapath/policy-runtime.js';
import { MODEL, StandaloneSource, type StandaloneSnapshot } from '../../agent/standalone.js';
import type { Problem } from '../../k8s/types.js';
import { projectRoot } from '../../common/version.js';

export const NODE_NAME = 'lab-node';
const FIXTURES = join(projectRoot(), 'test', 'fixtures');

export interface ConnectResult { ok: boolean; code?: string; greeting?: string; reply?: string; ms?: number }

/** A policy-client.mjs process in a pod: one command at a time. */
export class PodClient {
  private readonly waiters: Array<(r: ConnectResult) => void> = [];
  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (l) => this.waiters.shift()?.(JSON.parse(l) as ConnectResult));
  }
  private send(cmd: Record<string, unknown>): Promise<ConnectResult> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.child.stdin!.write(JSON.stringify(cmd) + '\n');
    });
  }
  connect(host: string, port: number, timeoutMs = 3000): Promise<ConnectResult> {
    return this.send({ op: 'connect', host, port, timeoutMs });
  }
  hold(id: string, host: string, port: number): Promise<ConnectResult> {
    return this.send({ op: 'hold', id, host, port, timeoutMs: 3000 });
  }
  ping(id: string, line: string): Promise<ConnectResult> {
    return this.send({ op: 'ping', id, line, timeoutMs: 3000 });
  }
  close(id: string): Promise<ConnectResult> {
    return this.send({ op: 'close', id });
  }
}

export interface PodSpec { namespace: string; serviceAccount?: string; labels?: Record<string, string> }

export class PolicyLab {
  readonly dir: string;
  engine!: PolicyEngine;
  private runtime!: PolicyRuntime;
  private source!: StandaloneSource;
  snapshot: StandaloneSnapshot | undefined;
  /** Processes started in pods, ended (and waited for) before the lab is destroyed. */
  private readonly children: ChildProcess[] = [];

  private constructor(readonly lab: Lab) {
    this.dir = mkdtempSync(join(tmpdir(), 'kernway-policy-'));
  }

  /** `beforeEngine` runs first (e.g. loads the load balancer, whose connect programs must come first). */
  static async create(opts: Partial<PolicyEngineOptions> = {}, beforeEngine?: (lab: Lab) => Promise<void>,
    onModel?: (s: StandaloneSnapshot) => void): Promise<PolicyLab> {
    const lab = await Lab.create({ tag: 'test' });
    const h = new PolicyLab(lab);
    try {
      if (beforeEngine) await beforeEngine(lab);
      h.runtime = await PolicyRuntime.start({ nodeName: NODE_NAME, cgroupPath: lab.cgroupPath, bpffsDir: lab.bpffsDir, netns: lab.nodeNsPath, ...opts });
      h.engine = h.runtime.engine;
      h.source = new StandaloneSource(h.dir, { debounceMs: 5 });
      const first = await h.source.start();
      h.snapshot = first;
      h.runtime.onSnapshot(first);
      onModel?.(first);
      h.source.on(MODEL, (s: StandaloneSnapshot) => { h.snapshot = s; h.runtime.onSnapshot(s); onModel?.(s); });
    } catch (e) {
      await h.destroy();
      throw e;
    }
    return h;
  }

  /**
   * Stops the engine as a draining agent does (closes its descriptors, leaves programs
   * attached and maps pinned) and returns a function that starts a new one on the same
   * pins, as a restarted agent, fed the sources' current state.
   */
  async stopEngine(): Promise<(beforeFirstUpdate?: () => Promise<void>) => Promise<PolicyEngine>> {
    await this.runtime.close();
    return async (beforeFirstUpdate) => {
      this.runtime = await PolicyRuntime.start({ nodeName: NODE_NAME, cgroupPath: this.lab.cgroupPath, bpffsDir: this.lab.bpffsDir, netns: this.lab.nodeNsPath });
      this.engine = this.runtime.engine;
      await beforeFirstUpdate?.();
      this.runtime.onSnapshot(this.source.current()!);
      return this.engine;
    };
  }

  /** Problems about AuthorizationPolicies in the latest snapshot. */
  policyProblems(): Problem[] {
    return (this.snapshot?.problems ?? []).filter((p) => p.object?.startsWith('AuthorizationPolicy ') === true);
  }

  /** A pod manifest for a lab pod (on this node, with its cgroup named by annotation). */
  podManifest(name: string, ips: string[], spec: PodSpec, node = NODE_NAME): string {
    return JSON.stringify({
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name, namespace: spec.namespace, labels: spec.labels ?? {}, annotations: { 'kernway.io/cgroup': `pod-${name}` } },
      spec: { nodeName: node, serviceAccountName: spec.serviceAccount ?? 'default' },
      status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) },
    }, null, 1);
  }

  async addPod(name: string, spec: PodSpec): Promise<Pod> {
    const pod = await this.lab.addPod(name);
    this.write(`pod-${name}.json`, this.podManifest(name, [pod.ipv4, pod.ipv6], spec));
    return pod;
  }

  write(file: string, text: string): void {
    const tmp = join(this.dir, `.${file}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, join(this.dir, file)); // the watcher sees one complete file
  }

  remove(file: string): void {
    rmSync(join(this.dir, file), { force: true });
  }

  client(pod: Pod | 'node'): PodClient {
    const child = this.lab.spawn(pod, process.execPath, [join(FIXTURES, 'policy-client.mjs')]);
    this.children.push(child);
    return new PodClient(child);
  }

  async server(pod: Pod, ports: number[]): Promise<ChildProcess> {
    const child = this.lab.spawn(pod, process.execPath, [join(FIXTURES, 'policy-server.mjs'), pod.name, ...ports.map(String)]);
    this.children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('exit', (c) => reject(new Error(`server in ${pod.name} exited (${c})`)));
    });
    return child;
  }

  /** Waits until cond() holds (polling), or fails naming what it waited for. */
  async until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Waits until the engine has a policy with this key (or, with present=false, has not). */
  untilPolicy(key: string, present = true): Promise<void> {
    return this.until(`policy ${key} ${present ? 'applied' : 'removed'}`, () => this.engine.report().policies.some((p) => p.key === key) === present);
  }

  counters(podKey: string) {
    const c = this.engine.endpoints.counters().get(podKey);
    if (!c) throw new Error(`no endpoint ${podKey}`);
    return c;
  }

  async destroy(): Promise<void> {
    this.source?.close();
    if (this.engine) {
      await this.engine.endpoints.detachAll().catch(() => {});
      await this.engine.close().catch(() => {});
    }
    // End our processes and wait until they (all their threads) are gone, so the lab's
    // cgroups are empty when it removes them.
    await Promise.all(this.children.map((c) => new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) { resolve(); return; }
      const t = setTimeout(resolve, 3000);
      c.once('exit', () => { clearTimeout(t); resolve(); });
      c.kill('SIGKILL');
    })));
    try {
      await this.lab.destroy();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
      await new Promise((r) => setTimeout(r, 200)); // a process still leaving its cgroup
      await this.lab.destroy();
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
