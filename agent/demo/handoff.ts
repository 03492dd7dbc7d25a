/**
 * The hand-off part of `kernway demo --mode node` (docs/waypoint-handoff.md): namespace
 * `shop` carries `kernway.io/use-waypoint: wp`, Gateway shop/wp is a kernway-waypoint with
 * the mesh listener, `kernway waypoint` runs in pod wp, an HTTPRoute canary (a header match
 * and a weighted split) has Service shop/web as parent; plain `curl` in the client pod dials
 * the ClusterIP and the kernel hands the connection to the waypoint. Service demo/web (a
 * namespace without the label) has the same backends and stays balanced in the kernel.
 */
import type { Pod } from '../../lab/index.js';

export const WEB_VIP = '10.96.0.30';
export const PLAIN_WEB_VIP = '10.96.0.31';
export const WAYPOINT_METRICS = '127.0.0.1:15020';

type Obj = Record<string, unknown>;

export interface HandoffPods { client: Pod; wp: Pod; v1: Pod; v2: Pod }

/** The node of a pod: one name for all (the demo's one node), or per pod (several lab nodes). */
export type NodeOf = string | ((p: Pod) => string);
const nodeName = (n: NodeOf, p: Pod): string => (typeof n === 'string' ? n : n(p));

function pod(node: NodeOf, ns: string, p: Pod, labels: Record<string, string>): Obj {
  return {
    apiVersion: 'v1', kind: 'Pod', metadata: { name: p.name, namespace: ns, labels },
    spec: { nodeName: nodeName(node, p), serviceAccountName: p.name, containers: [{ name: 'c', image: 'x' }] },
    status: { phase: 'Running', podIP: p.ipv4, podIPs: [{ ip: p.ipv4 }] },
  };
}

function httpService(node: NodeOf, ns: string, name: string, vip: string, backends: Pod[]): Obj[] {
  return [
    {
      apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns },
      spec: { clusterIP: vip, clusterIPs: [vip], ipFamilies: ['IPv4'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
    },
    {
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `${name}-1`, namespace: ns, labels: { 'kubernetes.io/service-name': name } },
      addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: backends.map((b) => ({ addresses: [b.ipv4], conditions: { ready: true }, nodeName: nodeName(node, b) })),
    },
  ];
}

/** The objects of the hand-off: the labelled namespace, the waypoint's Gateway and pod, Services, the canary HTTPRoute. */
export function handoffObjects(node: NodeOf, p: HandoffPods): Obj[] {
  const web = [p.v1, p.v2];
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'kernway.io/use-waypoint': 'wp' } } },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'kernway-waypoint' }, spec: { controllerName: 'kernway.io/mesh-controller' } },
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'wp', namespace: 'shop' },
      spec: { gatewayClassName: 'kernway-waypoint', listeners: [{ name: 'mesh', port: 15019, protocol: 'kernway.io/mesh' }] },
    },
    pod(node, 'demo', p.client, { app: 'client' }),
    pod(node, 'shop', p.wp, { 'gateway.networking.k8s.io/gateway-name': 'wp' }),
    pod(node, 'shop', p.v1, { app: 'web', version: 'v1' }),
    pod(node, 'shop', p.v2, { app: 'web', version: 'v2' }),
    ...httpService(node, 'shop', 'web', WEB_VIP, web),
    ...httpService(node, 'shop', 'web-v1', '10.96.0.32', [p.v1]),
    ...httpService(node, 'shop', 'web-v2', '10.96.0.33', [p.v2]),
    ...httpService(node, 'demo', 'web', PLAIN_WEB_VIP, web),
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'canary', namespace: 'shop' },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
        rules: [
          { matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }], backendRefs: [{ name: 'web-v2', port: 80 }] },
          { backendRefs: [{ name: 'web-v1', port: 80, weight: 80 }, { name: 'web-v2', port: 80, weight: 20 }] },
        ],
      },
    },
  ];
}

/** `kernway waypoint` as the waypoint pod runs it, on the same manifests. */
export function waypointArgs(dir: string): string[] {
  return ['waypoint', '--namespace', 'shop', '--manifests', dir, '--mesh-address', '::', '--metrics-address', WAYPOINT_METRICS];
}

/** Which pod answered each line of http-echo's JSON, counted. */
export function answeredBy(out: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const l of out.split('\n')) {
    const m = /"pod":"([^"]*)"/.exec(l);
    if (m) counts[m[1]!] = (counts[m[1]!] ?? 0) + 1;
  }
  return counts;
}

/** curl's arguments for `n` GETs of `url` (one curl run, `-w '\n'` after each answer). */
export function curlMany(url: string, n: number): string[] {
  const args: string[] = [];
  for (let i = 0; i < n; i++) args.push(`${url}${i}`, '-w', '\n');
  return args;
}

/** The access log lines of the waypoint (JSON with a path), shortened to what the demo shows. */
export function accessLines(out: string): string[] {
  const lines: string[] = [];
  for (const l of out.split('\n')) {
    if (!l.startsWith('{') || !l.includes('"path"')) continue;
    try {
      const o = JSON.parse(l) as Record<string, unknown>;
      const keep = ['method', 'path', 'status', 'route', 'rule', 'destination', 'upstream', 'source', 'sourceAddress', 'parent', 'durationMs'];
      lines.push(JSON.stringify(Object.fromEntries(keep.filter((k) => k in o).map((k) => [k, o[k]]))));
    } catch { /* not a JSON line */ }
  }
  return lines;
}
