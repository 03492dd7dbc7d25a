/** Manifest text the waypoint bench (and the waypoint tests) start from. */

/**
 * The GatewayClass `kernway` and one Gateway `name` in `namespace` with a single HTTP
 * listener on `port` (routes from all namespaces when `allowedFromAll`). No trailing
 * newline: callers append `\n---\n` and the next objects.
 */
export function gatewayManifests(name: string, namespace: string, port: number, opts: { allowedFromAll?: boolean } = {}): string {
  const allowed = opts.allowedFromAll ? ', allowedRoutes: {namespaces: {from: All}}' : '';
  return `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: kernway}
spec: {controllerName: kernway.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ${name}, namespace: ${namespace}}
spec:
  gatewayClassName: kernway
  listeners: [{name: http, port: ${port}, protocol: HTTP${allowed}}]`;
}

/**
 * A Service `name` (port 80, cluster IP `clusterIP`) with one endpoint `endpoint`:`targetPort`
 * and an HTTPRoute `name` from Gateway `gateway` to it (under `pathPrefix`, or every path).
 * Starts with `---`: append it to gatewayManifests().
 */
export function backendManifests(o: { name: string; namespace: string; gateway: string; clusterIP: string; endpoint: string; targetPort: number; pathPrefix?: string }): string {
  const match = o.pathPrefix === undefined ? '' : `matches: [{path: {type: PathPrefix, value: ${o.pathPrefix}}}], `;
  return `
---
apiVersion: v1
kind: Service
metadata: {name: ${o.name}, namespace: ${o.namespace}}
spec: {clusterIP: ${o.clusterIP}, ports: [{name: http, port: 80, targetPort: ${o.targetPort}}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${o.name}-1, namespace: ${o.namespace}, labels: {kubernetes.io/service-name: ${o.name}}}
addressType: IPv4
ports: [{name: http, port: ${o.targetPort}, protocol: TCP}]
endpoints: [{addresses: [${o.endpoint}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${o.name}, namespace: ${o.namespace}}
spec:
  parentRefs: [{name: ${o.gateway}}]
  rules: [{${match}backendRefs: [{name: ${o.name}, port: 80}]}]
`;
}
