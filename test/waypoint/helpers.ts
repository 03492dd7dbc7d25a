/** Small builders for waypoint tests: manifests from YAML text, configurations, tables. */
import { parseAllDocuments } from 'yaml';
import type { SourcedObject } from '../../k8s/types.js';
import { buildWaypointConfig, type WaypointConfig } from '../../model/waypoint-config.js';
import { buildRoutingTable, type RoutingTable } from '../../waypoint/routing/table.js';

export function objectsFrom(yaml: string, file = 'test.yaml'): SourcedObject[] {
  return parseAllDocuments(yaml).map((d, index) => ({ object: d.toJS() as SourcedObject['object'], file, index })).filter((o) => o.object !== null);
}

export function configOf(yaml: string): WaypointConfig {
  return buildWaypointConfig(objectsFrom(yaml));
}

export function tableOf(yaml: string, namespace = 'ns', listenAddress = '127.0.0.1'): RoutingTable {
  return buildRoutingTable(configOf(yaml), { namespace, listenAddress });
}

/** A GatewayClass for kernway and a Gateway `gw` in `ns` with one HTTP listener on port 80 (extra listener YAML appended). */
export const GATEWAY = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: kernway}
spec: {controllerName: kernway.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: kernway
  listeners:
  - {name: http, port: 80, protocol: HTTP}
`;

/** A Service `name` in `ns` with cluster IP, one port 80 -> 8080, and an EndpointSlice with the given pod IPs. */
export function service(name: string, ns: string, clusterIP: string, ips: string[], extra = ''): string {
  return `
---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ${ns}}
spec:
  clusterIP: ${clusterIP}
  selector: {app: ${name}}
  ports:
  - {name: http, port: 80, targetPort: 8080${extra}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-x, namespace: ${ns}, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
${ips.map((ip) => `- {addresses: [${ip}], conditions: {ready: true}}`).join('\n')}
`;
}
