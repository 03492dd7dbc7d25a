/**
 * The benchmark's cluster: N Services, one of which (bench/target) carries all the
 * traffic; the others exist only to be installed, the way a real cluster's Services are.
 *
 * - The target has one port per workload and one endpoint, the lab's server pod.
 * - Every other Service has one TCP port and two endpoints on other nodes (addresses
 *   that are never contacted), like the typical small Deployment behind a Service.
 * - The target sits in the middle of the list: kube-proxy writes KUBE-SERVICES in Go map
 *   order (random), so a Service's rule is, on average, halfway down the chain.
 *
 * The same list feeds every mode: kube-proxy's iptables rules (bench/kube-proxy.ts) and
 * the kernway agent's manifests (Service + EndpointSlice, written as one JSON List).
 */
import { InvalidArgumentError } from '../common/errors.js';

export interface BenchPort {
  name: string;
  port: number;
  targetPort: number;
  protocol: 'TCP';
  appProtocol?: string;
}

export interface BenchService {
  namespace: string;
  name: string;
  clusterIP: string;
  ports: BenchPort[];
  /** Endpoint addresses (every port of the Service on each). */
  endpoints: string[];
}

export const TARGET_NAMESPACE = 'bench';
export const TARGET_NAME = 'target';
export const TARGET_VIP = '10.96.0.10';

/** The target Service's ports, one per workload (targetPort = port). */
export const TARGET_PORTS = {
  sockperf: 11111,
  http: 8080,
  h2c: 8081,
  connrate: 8090,
  iperf: 5201,
} as const;
export type TargetPortName = keyof typeof TARGET_PORTS;

/** The largest cluster the address plan below holds. */
export const MAX_SERVICES = 60_000;

/** ClusterIP of the k-th other Service: 10.96.1.1 onwards, 250 per /24. */
export function otherClusterIP(k: number): string {
  return `10.96.${1 + Math.floor(k / 250)}.${1 + (k % 250)}`;
}

/** The two endpoints of the k-th other Service: pods on other nodes (10.245.0.0/16, never contacted). */
export function otherEndpoints(k: number): string[] {
  const base = 2 * k;
  return [base, base + 1].map((j) => `10.245.${Math.floor(j / 250)}.${1 + (j % 250)}`);
}

export function targetService(backendIp: string): BenchService {
  return {
    namespace: TARGET_NAMESPACE,
    name: TARGET_NAME,
    clusterIP: TARGET_VIP,
    ports: (Object.entries(TARGET_PORTS) as Array<[TargetPortName, number]>).map(([name, port]) => ({
      name, port, targetPort: port, protocol: 'TCP' as const, ...(name === 'h2c' ? { appProtocol: 'kubernetes.io/h2c' } : {}),
    })),
    endpoints: [backendIp],
  };
}

/** N Services in all (N >= 1): N-1 others and the target in the middle. */
export function benchServices(total: number, backendIp: string): BenchService[] {
  if (!Number.isInteger(total) || total < 1 || total > MAX_SERVICES) {
    throw new InvalidArgumentError('services', `an integer from 1 to ${MAX_SERVICES}`, total);
  }
  const others: BenchService[] = [];
  for (let k = 0; k < total - 1; k++) {
    const port = k % 3 === 0 ? 443 : 80;
    others.push({
      namespace: `ns-${k % 50}`,
      name: `svc-${k}`,
      clusterIP: otherClusterIP(k),
      ports: [{ name: port === 443 ? 'https' : 'http', port, targetPort: port === 443 ? 8443 : 8080, protocol: 'TCP' }],
      endpoints: otherEndpoints(k),
    });
  }
  const mid = Math.floor(others.length / 2);
  return [...others.slice(0, mid), targetService(backendIp), ...others.slice(mid)];
}

/** Service and EndpointSlice objects for the Services, as one `kind: List` (the agent reads .json fast). */
export function serviceManifests(services: readonly BenchService[]): Record<string, unknown> {
  const items: Array<Record<string, unknown>> = [];
  for (const s of services) {
    items.push({
      apiVersion: 'v1', kind: 'Service',
      metadata: { name: s.name, namespace: s.namespace },
      spec: {
        type: 'ClusterIP', clusterIP: s.clusterIP, clusterIPs: [s.clusterIP], ipFamilies: ['IPv4'],
        ports: s.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort, protocol: p.protocol, ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) })),
      },
    });
    items.push({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: `${s.name}-bench`, namespace: s.namespace, labels: { 'kubernetes.io/service-name': s.name } },
      addressType: 'IPv4',
      ports: s.ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: p.protocol, ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) })),
      endpoints: s.endpoints.map((ip) => ({ addresses: [ip], conditions: { ready: true, serving: true, terminating: false } })),
    });
  }
  return { apiVersion: 'v1', kind: 'List', items };
}

/** How many frontends (ClusterIP:port pairs) the Services make. */
export function frontendCount(services: readonly BenchService[]): number {
  return services.reduce((n, s) => n + s.ports.length, 0);
}
