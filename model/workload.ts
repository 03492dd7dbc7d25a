/**
 * Workload names, as Istio's telemetry labels them: a pod's workload is its app name
 * (label app.kubernetes.io/name, else app), else the Deployment its name comes from
 * (<deployment>-<replicaset hash>-<suffix>), else the pod's own name.
 */
import type { Pod } from '../k8s/types.js';

export interface Workload { name: string; namespace: string }

export function workloadOf(pod: Pick<Pod, 'name' | 'namespace' | 'labels'>): Workload {
  const l = pod.labels;
  const app = l['app.kubernetes.io/name'] ?? l.app;
  if (app) return { name: app, namespace: pod.namespace };
  const parts = pod.name.split('-');
  return { name: parts.length > 2 ? parts.slice(0, -2).join('-') : pod.name, namespace: pod.namespace };
}

/** The Istio-style host of a Service: name.namespace.svc.cluster.local. */
export function serviceHost(namespace: string, name: string, clusterDomain = 'cluster.local'): string {
  return `${name}.${namespace}.svc.${clusterDomain}`;
}
