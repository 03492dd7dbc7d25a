/**
 * A namespace's waypoint as Kubernetes objects: a ServiceAccount, a Deployment whose pods
 * run `kernway waypoint --namespace NS --agent $(HOST_IP):15012` (fed by their node's agent,
 * docs/feed.md, with a projected ServiceAccount token of audience kernway) and carry
 * gateway.networking.k8s.io/gateway-name and app.kubernetes.io/name=kernway-waypoint (the
 * PodMonitor of deploy/monitoring), and a Service for the mesh port. One generator for the waypoint controller (the elected
 * agent, objects owned by the Gateway) and for `kernway waypoint generate` (YAML to keep in
 * git, with the Gateway itself and no owner).
 */
import { version } from '../../common/version.js';
import type { OwnerReference } from './api.js';
import { FEED_PORT, TOKEN_AUDIENCE, TOKEN_DIR, TOKEN_FILE } from '../../sources/feed/protocol.js';

export const WAYPOINT_CLASS = 'kernway-waypoint';
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
export const USE_WAYPOINT_LABEL = 'kernway.io/use-waypoint';
export const MESH_PORT = 15019;
export const WAYPOINT_METRICS_PORT = 15020;
/** The app.kubernetes.io/name of every waypoint pod (deploy/monitoring's PodMonitor selects it). */
export const WAYPOINT_APP_NAME = 'kernway-waypoint';

export interface WaypointSpec {
  namespace: string;
  /** The Gateway's name (default `waypoint`): the Deployment, Service and ServiceAccount are named after it. */
  name: string;
  image?: string;
  /** The Gateway, when the controller makes the objects (they go with it). */
  owner?: { name: string; uid: string };
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export function defaultImage(): string {
  return `ghcr.io/kernway/kernway:${version()}`;
}

/** The Gateway a namespace's waypoint is (issue 13's names): class kernway-waypoint, listener mesh 15019. */
export function waypointGateway(namespace: string, name: string): Json {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
    metadata: { name, namespace },
    spec: { gatewayClassName: WAYPOINT_CLASS, listeners: [{ name: 'mesh', port: MESH_PORT, protocol: 'kernway.io/mesh' }] },
  };
}

/** The ServiceAccount, Deployment and Service of a waypoint, in the order to create them. */
export function waypointObjects(w: WaypointSpec): Json[] {
  const labels = { [GATEWAY_NAME_LABEL]: w.name, 'app.kubernetes.io/name': WAYPOINT_APP_NAME, 'app.kubernetes.io/instance': w.name, 'app.kubernetes.io/component': 'waypoint', 'app.kubernetes.io/managed-by': 'kernway' };
  const ownerReferences: OwnerReference[] | undefined = w.owner
    ? [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: w.owner.name, uid: w.owner.uid, controller: true }]
    : undefined;
  const metadata = (extra: Json = {}): Json => ({ name: w.name, namespace: w.namespace, labels: { ...labels, ...extra }, ...(ownerReferences ? { ownerReferences } : {}) });
  const sa = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: metadata() };
  const deployment = {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: metadata(),
    spec: {
      replicas: 1,
      selector: { matchLabels: { [GATEWAY_NAME_LABEL]: w.name } },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: w.name,
          terminationGracePeriodSeconds: 15,
          containers: [{
            name: 'waypoint',
            image: w.image ?? defaultImage(),
            env: [
              // The node's agent (hostNetwork) serves the feed on the node's address.
              { name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
              // As the agent's DaemonSet: glibc's per-thread arenas kept ~13 MiB of a large
              // manifest's parse after load (1,000 HTTPRoutes: idle 108 -> 95 MiB, docs/waypoint-bench.md).
              { name: 'MALLOC_ARENA_MAX', value: '2' },
            ],
            args: ['waypoint', `--namespace=${w.namespace}`, `--agent=$(HOST_IP):${FEED_PORT}`, `--token-file=${TOKEN_FILE}`, `--mesh-port=${MESH_PORT}`, `--metrics-address=0.0.0.0:${WAYPOINT_METRICS_PORT}`],
            ports: [{ name: 'mesh', containerPort: MESH_PORT, protocol: 'TCP' }, { name: 'metrics', containerPort: WAYPOINT_METRICS_PORT, protocol: 'TCP' }],
            readinessProbe: { httpGet: { path: '/readyz', port: WAYPOINT_METRICS_PORT }, periodSeconds: 2 },
            livenessProbe: { httpGet: { path: '/healthz', port: WAYPOINT_METRICS_PORT }, initialDelaySeconds: 5, periodSeconds: 10 },
            resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
            securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
            volumeMounts: [{ name: 'kernway-token', mountPath: TOKEN_DIR, readOnly: true }],
          }],
          // The token the agent checks with the TokenReview API (audience kernway, rotated by the kubelet).
          volumes: [{ name: 'kernway-token', projected: { sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: 3600, path: 'token' } }] } }],
        },
      },
    },
  };
  // The waypoint's own Service never has a waypoint (no loop).
  const service = {
    apiVersion: 'v1', kind: 'Service', metadata: metadata({ [USE_WAYPOINT_LABEL]: 'none' }),
    spec: { selector: { [GATEWAY_NAME_LABEL]: w.name }, ports: [{ name: 'mesh', port: MESH_PORT, targetPort: MESH_PORT, protocol: 'TCP' }] },
  };
  return [sa, deployment, service];
}
