/**
 * Kubernetes manifests (Service + EndpointSlice) written as YAML files for the
 * standalone agent: used by `kernway demo`, the load-balancing tests and bench/lb.
 * Plain data in, plain YAML out; the agent reads them like any other manifest.
 */
import { writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';

export interface ServiceSpec {
  name: string;
  namespace?: string;
  clusterIPs: string[];
  ports: Array<{ name?: string; port: number; targetPort?: number | string; protocol?: 'TCP' | 'UDP' }>;
  algorithm?: 'random' | 'maglev';
  affinityTimeoutSeconds?: number;
  internalTrafficPolicy?: 'Cluster' | 'Local';
}

export interface EndpointSpec {
  ip: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  nodeName?: string;
}

export interface SliceSpec {
  name: string;
  namespace?: string;
  service: string;
  addressType?: 'IPv4' | 'IPv6';
  ports: Array<{ name?: string; port: number; protocol?: 'TCP' | 'UDP' }>;
  endpoints: EndpointSpec[];
}

export function serviceObject(s: ServiceSpec): Record<string, unknown> {
  const annotations = s.algorithm ? { 'kernway.io/lb-algorithm': s.algorithm } : undefined;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: s.name, namespace: s.namespace ?? 'default', ...(annotations ? { annotations } : {}) },
    spec: {
      type: 'ClusterIP',
      clusterIP: s.clusterIPs[0],
      clusterIPs: s.clusterIPs,
      ipFamilies: s.clusterIPs.map((ip) => (ip.includes(':') ? 'IPv6' : 'IPv4')),
      ...(s.clusterIPs.length > 1 ? { ipFamilyPolicy: 'RequireDualStack' } : {}),
      ports: s.ports.map((p) => ({
        ...(p.name ? { name: p.name } : {}), port: p.port, protocol: p.protocol ?? 'TCP', targetPort: p.targetPort ?? p.port,
      })),
      ...(s.affinityTimeoutSeconds
        ? { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: s.affinityTimeoutSeconds } } }
        : {}),
      ...(s.internalTrafficPolicy ? { internalTrafficPolicy: s.internalTrafficPolicy } : {}),
    },
  };
}

export function sliceObject(s: SliceSpec): Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: s.name, namespace: s.namespace ?? 'default', labels: { 'kubernetes.io/service-name': s.service } },
    addressType: s.addressType ?? (s.endpoints[0]?.ip.includes(':') ? 'IPv6' : 'IPv4'),
    ports: s.ports.map((p) => ({ ...(p.name ? { name: p.name } : {}), port: p.port, protocol: p.protocol ?? 'TCP' })),
    endpoints: s.endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
      ...(e.nodeName ? { nodeName: e.nodeName } : {}),
    })),
  };
}

/** YAML of several objects as one multi-document file. */
export function toYaml(objects: Array<Record<string, unknown>>): string {
  return objects.map((o) => stringify(o)).join('---\n');
}

/** Writes a manifest file atomically (temp file + rename), so the agent never reads half a file. */
export function writeManifest(dir: string, file: string, objects: Array<Record<string, unknown>>): string {
  const path = join(dir, file);
  const tmp = join(dir, `.${file}.tmp-${process.pid}`);
  writeFileSync(tmp, toYaml(objects));
  renameSync(tmp, path);
  return path;
}
