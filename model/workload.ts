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

/**
 * The pods of the model that pass a test (this node's, a waypoint's...), kept up to date
 * from the model's change sets: an update costs the changed pods, not the cluster's.
 */
export class PodSubset {
  readonly pods = new Map<string, Pod>();
  private started = false;

  constructor(private readonly test: (pod: Pod) => boolean) {}

  /**
   * Looks at the pods under `changed` (every pod when undefined, and on the first call).
   * Returns whether the subset changed (a pod in it added, removed or replaced).
   */
  update(all: ReadonlyMap<string, Pod>, changed: Iterable<string> | undefined): boolean {
    const keys = changed === undefined || !this.started ? new Set([...this.pods.keys(), ...all.keys()]) : changed;
    this.started = true;
    let moved = false;
    for (const key of keys) {
      const pod = all.get(key);
      if (pod && this.test(pod)) {
        if (this.pods.get(key) === pod) continue;
        this.pods.set(key, pod);
        moved = true;
      } else if (this.pods.delete(key)) {
        moved = true;
      }
    }
    return moved;
  }
}
