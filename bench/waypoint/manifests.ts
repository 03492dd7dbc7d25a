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
