/**
 * A small cluster on loopback for the conformance cases: the base manifests' Deployments
 * become Pods (each an echo server on its own 127.x address, on the target ports of the
 * Services selecting it), Services get cluster IPs (addresses that only travel in PROXY
 * headers), EndpointSlices point at the Pods. Everything is written to a manifest
 * directory served by `kernway waypoint` (its own argument parsing and manifest source),
 * and each test's manifests are swapped in through the watched directory.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createLogger } from '../../../common/log.js';
import { ManifestDirSource } from '../../../waypoint/config/source.js';
import { FeedServer } from '../../../agent/feed/server.js';
import { configSource } from '../../../cli/waypoint.js';
import { ManifestSource } from '../../../sources/manifest-source.js';
import { parseFeedAddress } from '../../../sources/feed/protocol.js';
import { parseWaypointArgs, withLogger } from '../../../waypoint/options.js';
import { Waypoint } from '../../../waypoint/waypoint.js';
import { EchoServer } from '../fixtures/echo.js';
import { parseObjects, readText, type Obj } from './data.js';

export const GATEWAY_CLASS = 'kernway';

export interface PodInfo {
  namespace: string;
  name: string;
  deployment: string;
  ip: string;
  labels: Record<string, string>;
  echoes: EchoServer[];
}

export interface ServiceInfo { namespace: string; name: string; clusterIP: string; ports: { name: string; port: number; targetPort: number }[] }

export interface World {
  namespace: string;
  dir: string;
  waypoint: Waypoint;
  /** Gateway listeners' address (port 80 as in the Gateways). */
  gatewayAddress: string;
  /** Source address of Gateway (north-south) clients: not a Pod. */
  clientAddress: string;
  meshAddress: string;
  meshPort: number;
  pods: PodInfo[];
  services: Map<string, ServiceInfo>;
  /** Write a test's manifests and wait until the waypoint serves exactly its routes. */
  apply(files: string[]): Promise<void>;
  close(): Promise<void>;
}

interface Spec { selector?: Record<string, string>; ports?: { name?: string; port: number; targetPort?: number | string; protocol?: string; appProtocol?: string }[]; replicas?: number; template?: { metadata?: { labels?: Record<string, string> } } }

/** An address block of its own per group and process, so concurrent runs do not collide. */
function block(group: 'gateway' | 'mesh'): string {
  return `127.${group === 'gateway' ? 86 : 87}.${10 + (process.pid % 200)}`;
}

/**
 * How the waypoint gets its configuration: `manifests` (--manifests DIR, watched) or `feed`
 * (the agent's feed server, reading the same directory, over a Unix socket: --agent).
 */
export type ConfigPath = 'manifests' | 'feed';

export async function startWorld(group: 'gateway' | 'mesh', baseFile: string, namespace: string, via: ConfigPath = 'manifests'): Promise<World> {
  const net3 = block(group);
  const base = parseObjects(readText(baseFile));
  const objects: Obj[] = [];
  const pods: PodInfo[] = [];
  const services = new Map<string, ServiceInfo>();
  let nextHost = 10;
  let nextVip = 1;

  objects.push({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: GATEWAY_CLASS }, spec: { controllerName: 'kernway.io/gateway-controller' } });
  for (const o of base) {
    if (o.kind === 'Deployment') {
      const spec = o.spec as Spec;
      const labels = spec.template?.metadata?.labels ?? {};
      const ns = o.metadata.namespace ?? 'default';
      const hash = createHash('sha1').update(`${ns}/${o.metadata.name}`).digest('hex').slice(0, 10);
      for (let i = 0; i < (spec.replicas ?? 1); i++) {
        const name = `${o.metadata.name}-${hash}-${String.fromCharCode(97 + i)}${hash.slice(0, 4)}`;
        const ip = `${net3}.${nextHost++}`;
        pods.push({ namespace: ns, name, deployment: o.metadata.name, ip, labels: { ...labels }, echoes: [] });
        objects.push({
          apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns, labels: { ...labels, 'pod-template-hash': hash } },
          spec: { serviceAccountName: 'default', containers: [{ name: 'echo', image: 'echo' }] },
          status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
        });
      }
      continue;
    }
    if (o.kind === 'Gateway') {
      const g = structuredClone(o) as Obj & { spec: { gatewayClassName: string } };
      g.spec.gatewayClassName = GATEWAY_CLASS;
      objects.push(g);
      continue;
    }
    if (o.kind === 'Service' || o.kind === 'Namespace') objects.push(structuredClone(o));
  }

  // Cluster IPs and EndpointSlices.
  for (const o of objects) {
    if (o.kind !== 'Service') continue;
    const spec = o.spec as Spec & { clusterIP?: string };
    const ns = o.metadata.namespace ?? 'default';
    const clusterIP = `10.96.${group === 'gateway' ? 1 : 2}.${nextVip++}`;
    spec.clusterIP = clusterIP;
    const ports = (spec.ports ?? []).map((p) => ({ name: p.name ?? '', port: p.port, targetPort: typeof p.targetPort === 'number' ? p.targetPort : p.port, protocol: p.protocol ?? 'TCP' }));
    services.set(`${ns}/${o.metadata.name}`, { namespace: ns, name: o.metadata.name, clusterIP, ports });
    const selected = pods.filter((p) => p.namespace === ns && spec.selector && Object.entries(spec.selector).every(([k, v]) => p.labels[k] === v));
    for (const p of selected) {
      for (const port of ports) if (port.protocol === 'TCP' && !p.echoes.some((e) => e.opts.port === port.targetPort)) {
        p.echoes.push(await EchoServer.start({ address: p.ip, port: port.targetPort, pod: p.name, namespace: p.namespace }));
      }
    }
  }
  const slices: Obj[] = [];
  for (const s of services.values()) {
    const svc = objects.find((o) => o.kind === 'Service' && o.metadata.name === s.name && (o.metadata.namespace ?? 'default') === s.namespace)!;
    const selector = (svc.spec as Spec).selector ?? {};
    const selected = pods.filter((p) => p.namespace === s.namespace && Object.entries(selector).every(([k, v]) => p.labels[k] === v));
    slices.push({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: `${s.name}-abcde`, namespace: s.namespace, labels: { 'kubernetes.io/service-name': s.name } },
      addressType: 'IPv4',
      ports: s.ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: 'TCP' })),
      endpoints: selected.map((p) => ({ addresses: [p.ip], conditions: { ready: true }, targetRef: { kind: 'Pod', name: p.name, namespace: p.namespace } })),
    });
  }

  const dir = mkdtempSync(join(tmpdir(), `kw-conformance-${group}-`));
  const manifests = join(dir, 'manifests');
  mkdirSync(manifests);
  writeFileSync(join(manifests, '00-base.yaml'), [...objects, ...slices].map((o) => stringify(o)).join('---\n'));
  const gatewayAddress = `${net3}.1`;
  const feedSocket = join(dir, 'feed.sock');
  const opts = parseWaypointArgs([
    '--namespace', namespace, ...(via === 'feed' ? ['--agent', `unix://${feedSocket}`] : ['--manifests', manifests]),
    '--listen-address', gatewayAddress, '--mesh-port', '0', '--metrics-address', `${gatewayAddress}:0`, '--access-log', join(dir, 'access.log'),
  ]);
  const log = createLogger('kernway-waypoint-conformance', process.env.KERNWAY_LOG_LEVEL ?? 'warn');
  let feed: { server: FeedServer; source: ManifestSource } | undefined;
  if (via === 'feed') {
    // The agent's side: its feed server, reading the directory through the manifest source.
    const server = new FeedServer({ addresses: [parseFeedAddress('--feed-address', `unix://${feedSocket}`)], log, agentId: 'conformance' });
    const source = new ManifestSource(manifests, { debounceMs: 10, log });
    await source.start((b) => server.update(b.upserted, b.deleted));
    await server.start();
    feed = { server, source };
  }
  const waypoint = await Waypoint.start({ ...withLogger(opts, log), drainTimeoutMs: 500 },
    via === 'feed' ? configSource(opts, log) : new ManifestDirSource(manifests, { log, debounceMs: 10 }));

  let lastContent = '';
  const world: World = {
    namespace, dir, waypoint, gatewayAddress, clientAddress: `${net3}.2`, meshAddress: gatewayAddress, meshPort: waypoint.meshPort, pods, services,
    async apply(files: string[]): Promise<void> {
      const texts = files.map((f) => readText(f));
      const want = new Set(texts.flatMap(parseObjects).filter((o) => o.kind === 'HTTPRoute').map((o) => `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`));
      const content = texts.join('\n---\n');
      // The same manifests as the previous test (another test of the same file): nothing changes.
      const before = content === lastContent ? -1 : waypoint.configGeneration;
      lastContent = content;
      writeFileSync(join(manifests, '10-test.yaml'), content);
      const deadline = Date.now() + 10_000;
      for (;;) {
        const have = new Set(waypoint.table.routes.map((r) => `${r.namespace}/${r.name}`));
        if (waypoint.configGeneration > before && have.size === want.size && [...want].every((k) => have.has(k))) return;
        if (Date.now() > deadline) throw new Error(`the waypoint did not pick up ${files.join(', ')} (serving ${[...have].join(', ') || 'no route'})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async close(): Promise<void> {
      await waypoint.stop(200);
      feed?.source.close();
      await feed?.server.close();
      await Promise.all(pods.flatMap((p) => p.echoes.map((e) => e.close())));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return world;
}
