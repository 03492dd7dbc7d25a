/**
 * The hand-off across nodes: three lab nodes (each its own node namespace, cgroup and
 * bpffs folder, joined by links with routes to each other's pod addresses: docs/lab.md),
 * one real `kernway agent` per node on the same standalone manifests (each with its own
 * --node-name), the client on node 0, `kernway waypoint` on node 1, the HTTP backends
 * web-v1 and web-v2 on node 2 (agent/demo/handoff.ts's objects: Service shop/web with the
 * canary HTTPRoute, demo/web without a waypoint). A Gateway listener on the waypoint
 * (DIRECT_PORT, routed to web-v2) is the same client talking to the waypoint directly.
 */
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Pod } from '../../lab/index.js';
import { freePort } from '../../lab/system.js';
import { adminRequest } from '../../agent/admin/client.js';
import { writeManifest } from '../../agent/demo/manifests.js';
import { WAYPOINT_METRICS, WEB_VIP, handoffObjects, waypointArgs, type HandoffPods } from '../../agent/demo/handoff.js';
import type { WaypointFrontend, WpStats } from '../../agent/datapath/waypoint-sync.js';
import { projectRoot } from '../../common/version.js';
import { DIRECT_PORT, HTTP_ECHO } from './rig.js';

const KERNWAY_MAIN = join(projectRoot(), 'dist', 'cli', 'main.js');

type Obj = Record<string, unknown>;

export interface NodeAgent { child: ChildProcess; socket: string; stderr: () => string }
export interface AgentStatus { waypoints?: { frontends: WaypointFrontend[]; stats: WpStats } }

export class NodesRig {
  readonly labs: Lab[] = [];
  readonly agents: NodeAgent[] = [];
  pods!: HandoffPods;
  dir = '';
  waypointOut = '';
  private readonly procs: ChildProcess[] = [];

  static async start(tag: string): Promise<NodesRig> {
    const r = new NodesRig();
    try {
      await r.init(tag);
    } catch (e) {
      await r.stop();
      throw e;
    }
    return r;
  }

  /** The lab (node) a pod is on. */
  labOf(p: Pod): Lab { return this.labs.find((l) => l.pods.get(p.name) === p)!; }
  get lab(): Lab { return this.labs[0]!; }
  get client(): Pod { return this.pods.client; }
  readonly nodeOf = (p: Pod): string => `node-${this.labOf(p).node}`;

  /** The hand-off objects, plus a Gateway listener on the waypoint routed to web-v2 (the direct baseline). */
  objects(withWaypointPod = true): Obj[] {
    const objs: Obj[] = [
      ...handoffObjects(this.nodeOf, this.pods),
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'kernway' }, spec: { controllerName: 'kernway.io/gateway-controller' } },
      {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'direct', namespace: 'shop' },
        spec: { gatewayClassName: 'kernway', listeners: [{ name: 'http', port: DIRECT_PORT, protocol: 'HTTP' }] },
      },
      {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'direct', namespace: 'shop' },
        spec: { parentRefs: [{ name: 'direct' }], rules: [{ backendRefs: [{ name: 'web-v2', port: 80 }] }] },
      },
    ];
    return withWaypointPod ? objs : objs.filter((o) => !(o.kind === 'Pod' && (o.metadata as { name: string }).name === 'wp'));
  }

  apply(objs: Obj[]): void { writeManifest(this.dir, 'mesh.yaml', objs); }

  status(node: number): Promise<AgentStatus> {
    return adminRequest<AgentStatus>(this.agents[node]!.socket, '/v1/status', { timeoutMs: 10_000 });
  }

  async frontend(node: number): Promise<WaypointFrontend | undefined> {
    return (await this.status(node)).waypoints?.frontends.find((f) => f.frontend === `${WEB_VIP}:80`);
  }

  async until(what: string, f: () => Promise<boolean>, ms = 30_000): Promise<void> {
    const end = Date.now() + ms;
    for (;;) {
      try { if (await f()) return; } catch { /* not yet */ }
      if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms\n${this.waypointOut.slice(-2000)}\n${this.agents.map((a) => a.stderr().slice(-1000)).join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** curl in a pod: { code, out, err, ms }. */
  async curl(p: Pod, args: string[]): Promise<{ code: number; out: string; err: string; ms: number }> {
    const t0 = Date.now();
    const r = await this.labOf(p).exec(p, 'curl', ['-s', '--max-time', '5', ...args], { timeoutMs: 30_000 });
    return { code: r.code, out: r.stdout, err: r.stderr, ms: Date.now() - t0 };
  }

  /**
   * The node's agent, in its node namespace (as a DaemonSet's hostNetwork agent is in its
   * node's), so that it finds its pods' veths there and attaches the tc programs (policy,
   * the hand-off's SYN guard); outside the lab cgroup. Ready when its /readyz, on the
   * node namespace's loopback, answers 200.
   */
  private async startAgent(l: Lab): Promise<NodeAgent> {
    const port = await freePort();
    const socket = join(this.dir, `admin-${l.node}.sock`);
    const child = l.spawn('node', process.execPath, [KERNWAY_MAIN, 'agent', '--standalone', this.dir, '--node-name', `node-${l.node}`, '--cgroup', l.cgroupPath,
      '--bpffs', join(l.bpffsDir, 'agent'), '--admin-socket', socket, '--metrics-address', `127.0.0.1:${port}`], { cgroup: false, stdio: ['ignore', 'ignore', 'pipe'] });
    this.procs.push(child);
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
    const a: NodeAgent = { child, socket, stderr: () => err };
    this.agents[l.node] = a;
    await this.until(`agent of node ${l.node} ready`, async () => {
      if (child.exitCode !== null) throw new Error(`agent exited ${child.exitCode}: ${err}`);
      return (await l.exec('node', 'curl', ['-sf', '-o', '/dev/null', `http://127.0.0.1:${port}/readyz`], { cgroup: false, timeoutMs: 10_000 })).code === 0;
    }, 60_000);
    return a;
  }

  private async init(tag: string): Promise<void> {
    for (const node of [0, 1, 2]) this.labs.push(await Lab.create({ tag, node }));
    const [n0, n1, n2] = this.labs as [Lab, Lab, Lab];
    await Lab.link(n0, n1);
    await Lab.link(n1, n2);
    await Lab.link(n0, n2);
    this.pods = { client: await n0.addPod('client'), wp: await n1.addPod('wp'), v1: await n2.addPod('web-v1'), v2: await n2.addPod('web-v2') };
    for (const p of [this.pods.v1, this.pods.v2]) this.procs.push(n2.spawn(p, process.execPath, [HTTP_ECHO, '8080'], { env: { ...process.env, POD_NAME: p.name } }));
    this.dir = mkdtempSync(join(tmpdir(), 'kw-handoffn-'));
    this.apply(this.objects());
    for (const l of this.labs) await this.startAgent(l);
    const wp = n1.spawn(this.pods.wp, process.execPath, [KERNWAY_MAIN, ...waypointArgs(this.dir)], { env: { ...process.env, KERNWAY_LOG_LEVEL: 'warn' } });
    this.procs.push(wp);
    wp.stdout!.setEncoding('utf8').on('data', (d: string) => { this.waypointOut += d; });
    wp.stderr!.setEncoding('utf8').on('data', (d: string) => { this.waypointOut += d; });
    await this.until('waypoint ready', async () => (await this.curl(this.pods.wp, ['-f', '-o', '/dev/null', `http://${WAYPOINT_METRICS}/readyz`])).code === 0, 60_000);
    // The backends on node 2, reached from the waypoint on node 1 (pod CIDR routes over the links).
    for (const p of [this.pods.v1, this.pods.v2]) {
      await this.until(`backend ${p.name} from node 1`, async () => (await this.curl(this.pods.wp, ['-f', '-o', '/dev/null', `http://${p.ipv4}:8080/healthz`])).code === 0);
    }
    await this.until('node 0 hands shop/web:80 to the waypoint pod on node 1', async () => (await this.frontend(0))?.pods.includes(this.pods.wp.ipv4) === true);
  }

  /** Stops node `node`'s agent (SIGTERM: programs stay attached, maps pinned) and starts a new one on the same pins. */
  async restartAgent(node: number): Promise<void> {
    const a = this.agents[node]!;
    await new Promise<void>((resolve) => {
      if (a.child.exitCode !== null || a.child.signalCode !== null) { resolve(); return; }
      a.child.once('exit', () => resolve());
      a.child.kill('SIGTERM');
    });
    await this.startAgent(this.labs[node]!);
  }

  async stop(): Promise<void> {
    for (const c of this.procs) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const l of this.labs) await l.destroy();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
