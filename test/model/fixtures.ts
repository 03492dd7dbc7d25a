/** Small builders of raw Kubernetes objects for model tests. */
import type { SourcedObject } from '../../k8s/types.js';

let n = 0;
export function src(object: SourcedObject['object'], file = 'test.yaml'): SourcedObject {
  return { object, file, index: n++ };
}

export interface SvcOpts {
  ns?: string; ip?: string | string[]; ports?: unknown[]; type?: string; affinity?: number | 'default';
  itp?: string; algorithm?: string; extra?: Record<string, unknown>;
}
export function service(name: string, o: SvcOpts = {}): SourcedObject['object'] {
  const spec: Record<string, unknown> = { ports: o.ports ?? [{ port: 80, targetPort: 8080 }] };
  if (o.type) spec.type = o.type;
  if (Array.isArray(o.ip)) { spec.clusterIP = o.ip[0]; spec.clusterIPs = o.ip; } else spec.clusterIP = o.ip ?? '10.96.0.1';
  if (o.affinity !== undefined) {
    spec.sessionAffinity = 'ClientIP';
    if (o.affinity !== 'default') spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: o.affinity } };
  }
  if (o.itp) spec.internalTrafficPolicy = o.itp;
  Object.assign(spec, o.extra ?? {});
  const metadata: Record<string, unknown> = { name, namespace: o.ns ?? 'default' };
  if (o.algorithm) metadata.annotations = { 'kernway.io/lb-algorithm': o.algorithm };
  return { apiVersion: 'v1', kind: 'Service', metadata: metadata as { name: string }, spec };
}

export interface Ep { ip: string; ready?: boolean; serving?: boolean; terminating?: boolean; node?: string }
export function slice(name: string, service: string, endpoints: (Ep | string)[], ports: unknown[] = [{ port: 8080 }], o: { ns?: string; addressType?: string } = {}): SourcedObject['object'] {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name, namespace: o.ns ?? 'default', labels: { 'kubernetes.io/service-name': service } },
    addressType: o.addressType ?? (endpoints.some((e) => (typeof e === 'string' ? e : e.ip).includes(':')) ? 'IPv6' : 'IPv4'),
    endpoints: endpoints.map((e) => {
      const ep = typeof e === 'string' ? { ip: e } : e;
      const conditions: Record<string, boolean> = {};
      if (ep.ready !== undefined) conditions.ready = ep.ready;
      if (ep.serving !== undefined) conditions.serving = ep.serving;
      if (ep.terminating !== undefined) conditions.terminating = ep.terminating;
      return { addresses: [ep.ip], conditions, ...(ep.node ? { nodeName: ep.node } : {}) };
    }),
    ports,
  };
}
