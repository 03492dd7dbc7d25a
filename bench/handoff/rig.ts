/**
 * A lab node with the hand-off to the waypoint: the socket load balancer and the sockmap
 * programs on the lab cgroup (one bpffs folder, as the agent has them), a real
 * `kernway waypoint` in a pod labelled as the waypoint of namespace `shop`, HTTP backends
 * in pods, and a client pod running unmodified tools (curl, h2load, node).
 */
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Pod } from '../../lab/index.js';
import { buildModel } from '../../model/model.js';
import { buildServiceTable } from '../../model/service-table.js';
import { waypointBindings } from '../../model/waypoint-binding.js';
import type { Model } from '../../model/types.js';
import type { SourcedObject } from '../../k8s/types.js';
import { ServiceSync } from '../../agent/datapath/service-sync.js';
import { loadSockLb, type SockLb } from '../../agent/datapath/sock-lb.js';
import { Sockmap } from '../../agent/datapath/sockmap.js';
import { WaypointSync, planWaypoints } from '../../agent/datapath/waypoint-sync.js';
import { netnsCookiesOf } from '../../agent/datapath/netns.js';
import { toYaml } from '../../agent/demo/manifests.js';
import { projectRoot } from '../../common/version.js';

const NODE = 'node-a';
const ROOT = projectRoot();
const KERNWAY_MAIN = join(ROOT, 'dist', 'cli', 'main.js');
export const HTTP_ECHO = join(ROOT, 'test', 'fixtures', 'http-echo.mjs');
export const ECHO = join(ROOT, 'test', 'fixtures', 'echo-server.mjs');
/** An unmodified gRPC server and client (@grpc/grpc-js, h2c). */
export const GRPC_ECHO = join(ROOT, 'test', 'fixtures', 'grpc-echo.mjs');
/** Service web's gRPC port (appProtocol grpc) and the backends' gRPC port. */
export const GRPC_PORT = 9090;
const GRPC_TARGET = 50051;
/** Port of the waypoint's Gateway listener: the same client talking to the waypoint directly (the bench's baseline). */
export const DIRECT_PORT = 8081;

export const VIP = '10.96.0.10';
export const VIP6 = 'fd00:96::10';
export const PLAIN_VIP = '10.96.0.20';

type Obj = Record<string, unknown>;

function podObj(ns: string, p: Pod, labels: Record<string, string> = {}): Obj {
  return {
    apiVersion: 'v1', kind: 'Pod', metadata: { name: p.name, namespace: ns, labels },
    spec: { nodeName: NODE, serviceAccountName: p.name, containers: [{ name: 'c', image: 'x' }] },
    status: { phase: 'Running', podIP: p.ipv4, podIPs: [{ ip: p.ipv4 }, { ip: p.ipv6 }] },
  };
}
function svcObj(ns: string, name: string, ips: string[], ports: Obj[], labels?: Record<string, string>): Obj {
  return {
    apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, ...(labels ? { labels } : {}) },
    spec: { clusterIP: ips[0], clusterIPs: ips, ipFamilies: ips.map((ip) => (ip.includes(':') ? 'IPv6' : 'IPv4')), ipFamilyPolicy: ips.length > 1 ? 'RequireDualStack' : 'SingleStack', ports },
  };
}
function sliceObj(ns: string, name: string, svc: string, family: 'IPv4' | 'IPv6', ips: string[], ports: Obj[]): Obj {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
    addressType: family, ports, endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: NODE })),
  };
}

export interface RigOptions {
  tag: string;
  /** The waypoint on a host off this node (a lab remote host: its own netns, not in the cgroup), reached by pod-IP TCP. */
  remoteWaypoint?: boolean;
  /** More `kernway waypoint` options (e.g. --workers 2). */
  waypointArgs?: string[];
}

export class HandoffRig {
  lab!: Lab;
  client!: Pod;
  wp!: Pod;
  v1!: Pod;
  v2!: Pod;
  lb!: SockLb;
  sm!: Sockmap;
  sync!: ServiceSync;
  wpSync!: WaypointSync;
  dir!: string;
  waypoint: ChildProcess | undefined;
  waypointOut = '';
  private readonly procs: ChildProcess[] = [];
  private waypointArgs: string[] = [];

  static async start(o: RigOptions): Promise<HandoffRig> {
    const r = new HandoffRig();
    try {
      await r.init(o);
    } catch (e) {
      await r.stop();
      throw e;
    }
    return r;
  }

  private async init(o: RigOptions): Promise<void> {
    this.waypointArgs = o.waypointArgs ?? [];
    this.lab = await Lab.create({ tag: o.tag });
    this.client = await this.lab.addPod('client');
    this.wp = await this.lab.addPod('wp', { remote: o.remoteWaypoint === true });
    this.v1 = await this.lab.addPod('v1');
    this.v2 = await this.lab.addPod('v2');
    await this.loadDatapath();
    this.dir = mkdtempSync(join(tmpdir(), 'kw-handoff-'));
    for (const p of [this.v1, this.v2]) {
      const c = this.lab.spawn(p, process.execPath, [HTTP_ECHO, '8080'], { env: { ...process.env, POD_NAME: p.name } });
      this.procs.push(c);
      const c2 = this.lab.spawn(p, process.execPath, [ECHO, p.name, '9000', '5353']);
      this.procs.push(c2);
      const g = this.lab.spawn(p, process.execPath, [GRPC_ECHO, 'serve', String(GRPC_TARGET)], { env: { ...process.env, POD_NAME: p.name } });
      this.procs.push(g);
      await new Promise<void>((resolve, reject) => {
        g.stdout!.once('data', () => resolve());
        g.once('exit', (code) => reject(new Error(`gRPC server in ${p.name} exited (${code})`)));
      });
    }
    this.apply(this.objects(true));
    await this.startWaypoint();
    this.apply(this.objects(true));
    for (const p of [this.v1, this.v2]) await this.until(async () => (await this.lab.exec(this.wp, 'curl', ['-sf', '-o', '/dev/null', `http://${p.ipv4}:8080/healthz`])).code === 0, `backend ${p.name}`);
  }

  get bpffs(): string { return join(this.lab.bpffsDir, 'agent'); }

  /** What the agent loads at start: the balancer, then the sockmap programs (pinned maps and links reused after a restart). */
  async loadDatapath(): Promise<void> {
    this.lb = await loadSockLb({ cgroupPath: this.lab.cgroupPath, bpffsDir: this.bpffs });
    this.sm = await Sockmap.load({ cgroupPath: this.lab.cgroupPath, bpffsDir: this.bpffs });
    // As the agent does: the waypoint's pod may receive redirected bytes, the others say nothing (docs/sockmap.md, rule 7).
    this.sm.setLocalPods([this.client, this.wp, this.v1, this.v2].filter((p) => !p.remote).flatMap((p) => [{ ip: p.ipv4, target: p === this.wp }, { ip: p.ipv6, target: p === this.wp }]));
    this.sync = new ServiceSync(this.lb.maps);
    this.wpSync = new WaypointSync(this.lb.wpMaps);
  }

  /** An agent restart: descriptors closed (programs stay attached, maps pinned), loaded again, the model applied again. */
  async restartDatapath(): Promise<void> {
    this.sm.close();
    this.lb.close();
    await this.loadDatapath();
    this.apply(this.objects(true));
  }

  /**
   * The manifests: namespace shop uses waypoint wp; Service web (HTTP port 80, TCP port
   * 9000, gRPC port 9090), web-v1, web-v2, HTTPRoutes canary (port 80) and grpc-canary
   * (port 9090); plain/web unlabelled.
   */
  objects(withWaypointPod: boolean): Obj[] {
    const shop = 'shop';
    const http = (port: number, target: number): Obj => ({ name: 'http', port, targetPort: target, protocol: 'TCP' });
    const grpc: Obj = { name: 'grpc', port: GRPC_PORT, targetPort: GRPC_TARGET, protocol: 'TCP', appProtocol: 'grpc' };
    const grpcEp: Obj = { name: 'grpc', port: GRPC_TARGET, protocol: 'TCP', appProtocol: 'grpc' };
    const objs: Obj[] = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: shop, labels: { 'kernway.io/use-waypoint': 'wp' } } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'front' } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'plain' } },
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'kernway-waypoint' }, spec: { controllerName: 'kernway.io/mesh-controller' } },
      {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'wp', namespace: shop },
        spec: { gatewayClassName: 'kernway-waypoint', listeners: [{ name: 'mesh', port: 15019, protocol: 'kernway.io/mesh' }] },
      },
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'kernway' }, spec: { controllerName: 'kernway.io/gateway-controller' } },
      {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'direct', namespace: shop },
        spec: { gatewayClassName: 'kernway', listeners: [{ name: 'http', port: DIRECT_PORT, protocol: 'HTTP' }] },
      },
      {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'direct', namespace: shop },
        spec: { parentRefs: [{ name: 'direct' }], rules: [{ backendRefs: [{ name: 'web-v2', port: 80 }] }] },
      },
      podObj('front', this.client, { app: 'client' }),
      podObj(shop, this.v1, { app: 'web', version: 'v1' }),
      podObj(shop, this.v2, { app: 'web', version: 'v2' }),
      svcObj(shop, 'web', [VIP, VIP6], [http(80, 8080), { name: 'tcp', port: 9000, targetPort: 9000, protocol: 'TCP' }, grpc]),
      sliceObj(shop, 'web-4', 'web', 'IPv4', [this.v1.ipv4, this.v2.ipv4], [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'tcp', port: 9000, protocol: 'TCP' }, grpcEp]),
      sliceObj(shop, 'web-6', 'web', 'IPv6', [this.v1.ipv6, this.v2.ipv6], [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'tcp', port: 9000, protocol: 'TCP' }]),
      svcObj(shop, 'web-v1', ['10.96.0.11'], [http(80, 8080), grpc]),
      sliceObj(shop, 'web-v1', 'web-v1', 'IPv4', [this.v1.ipv4], [{ name: 'http', port: 8080, protocol: 'TCP' }, grpcEp]),
      svcObj(shop, 'web-v2', ['10.96.0.12'], [http(80, 8080), grpc]),
      sliceObj(shop, 'web-v2', 'web-v2', 'IPv4', [this.v2.ipv4], [{ name: 'http', port: 8080, protocol: 'TCP' }, grpcEp]),
      svcObj('plain', 'web', [PLAIN_VIP], [http(80, 8080)]),
      sliceObj('plain', 'web', 'web', 'IPv4', [this.v1.ipv4], [{ name: 'http', port: 8080, protocol: 'TCP' }]),
      {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'canary', namespace: shop },
        spec: {
          parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
          rules: [
            { matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }], backendRefs: [{ name: 'web-v2', port: 80 }] },
            { backendRefs: [{ name: 'web-v1', port: 80, weight: 80 }, { name: 'web-v2', port: 80, weight: 20 }] },
          ],
        },
      },
      {
        // The same canary on the gRPC port: plain HTTPRoute rules (a header match, a weighted split) for gRPC calls.
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'grpc-canary', namespace: shop },
        spec: {
          parentRefs: [{ group: '', kind: 'Service', name: 'web', port: GRPC_PORT }],
          rules: [
            { matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }], backendRefs: [{ name: 'web-v2', port: GRPC_PORT }] },
            { backendRefs: [{ name: 'web-v1', port: GRPC_PORT, weight: 80 }, { name: 'web-v2', port: GRPC_PORT, weight: 20 }] },
          ],
        },
      },
    ];
    if (withWaypointPod) objs.push(podObj(shop, this.wp, { 'gateway.networking.k8s.io/gateway-name': 'wp' }));
    return objs;
  }

  model(objs: Obj[]): Model {
    const srcs: SourcedObject[] = objs.map((o, index) => ({ object: o as SourcedObject['object'], file: 'mesh.yaml', index }));
    return buildModel(srcs);
  }

  /** What the agent does on a snapshot: the service table, then the waypoint bindings. */
  apply(objs: Obj[]): { model: Model } {
    const model = this.model(objs);
    if (model.problems.length > 0) throw new Error(`model problems: ${JSON.stringify(model.problems)}`);
    this.sync.reconcile(buildServiceTable(model, { nodeName: NODE }));
    // The waypoint's own pod is never redirected: known by its network namespace (as the agent finds it).
    const exempt = objs.some((o) => (o.metadata as { name: string }).name === 'wp' && o.kind === 'Pod') ? [...netnsCookiesOf(this.lab.cgroupPath, [this.wp.ipv4]).values()] : [];
    this.wpSync.apply(planWaypoints(this.sync.frontends(), waypointBindings(model), { canWriteHeader: true, exempt }));
    writeFileSync(join(this.dir, 'mesh.yaml'), toYaml(objs));
    return { model };
  }

  async startWaypoint(): Promise<void> {
    this.waypointOut = '';
    const c = this.lab.spawn(this.wp, process.execPath, [KERNWAY_MAIN, 'waypoint', '--namespace', 'shop', '--manifests', this.dir, '--mesh-address', '::', '--metrics-address', '127.0.0.1:15020', ...this.waypointArgs],
      { env: { ...process.env, KERNWAY_LOG_LEVEL: 'warn' } });
    c.stdout?.setEncoding('utf8').on('data', (d: string) => { this.waypointOut += d; });
    c.stderr?.setEncoding('utf8').on('data', (d: string) => { this.waypointOut += d; });
    this.waypoint = c;
    this.procs.push(c);
    await this.until(async () => (await this.lab.exec(this.wp, 'curl', ['-sf', '-o', '/dev/null', 'http://127.0.0.1:15020/readyz'])).code === 0, 'waypoint ready');
  }

  async until(f: () => Promise<boolean>, what: string, ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await f()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}\n${this.waypointOut.slice(-2000)}`);
  }

  /** curl in the client pod: { code, body, ms }. */
  async curl(args: string[]): Promise<{ code: number; out: string; err: string; ms: number }> {
    const t0 = Date.now();
    const r = await this.lab.exec(this.client, 'curl', ['-s', '--max-time', '5', ...args], { timeoutMs: 15_000 });
    return { code: r.code, out: r.stdout, err: r.stderr, ms: Date.now() - t0 };
  }

  async stop(): Promise<void> {
    for (const c of this.procs) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    this.sm?.close();
    this.lb?.close();
    await this.lab?.destroy();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
