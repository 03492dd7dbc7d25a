/**
 * What the cluster-side parts of the agent (leader election, status, waypoints) need of a
 * Kubernetes client: one JSON request, rejected with an error carrying the HTTP status on
 * >= 400. Both the agent's API client and the lab's (tests) fit.
 */
export interface KubeRequests {
  request<T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T>;
}

/** The HTTP status of a failed request (404, 409...), or undefined (not an HTTP answer). */
export function httpStatusOf(e: unknown): number | undefined {
  const s = (e as { status?: unknown; statusCode?: unknown; code?: unknown } | undefined);
  const v = s?.status ?? s?.statusCode ?? (typeof s?.code === 'number' ? s.code : undefined);
  return typeof v === 'number' ? v : undefined;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  deletionTimestamp?: string;
}

export interface OwnerReference { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }
