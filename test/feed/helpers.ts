/** Objects for the feed tests: a Gateway, a route and an echo Service per namespace, as sourced objects. */
import http from 'node:http';
import type { SourcedObject } from '../../k8s/types.js';
import { objectsFrom } from '../waypoint/helpers.js';

export function nsObjects(ns: string, opts: { echoIp: string; echoPort: number; vip: string; gatewayPort: number; path?: string; file?: string; podUid?: string }): SourcedObject[] {
  return objectsFrom(`
apiVersion: v1
kind: Namespace
metadata: {name: ${ns}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ${ns}}
spec:
  gatewayClassName: kernway
  listeners:
  - {name: http, port: ${opts.gatewayPort}, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: ${ns}}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: ${opts.path ?? '/'}}}]
    backendRefs: [{name: echo, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: ${ns}}
spec:
  clusterIP: ${opts.vip}
  ports: [{port: 80, targetPort: ${opts.echoPort}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: ${ns}, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{port: ${opts.echoPort}, protocol: TCP}]
endpoints: [{addresses: [${opts.echoIp}], conditions: {ready: true}}]
`, opts.file ?? `${ns}.yaml`);
}

export const GATEWAY_CLASS = objectsFrom(`
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: kernway}
spec: {controllerName: kernway.io/gateway-controller}
`, 'class.yaml');

/** Poll `cond` every 10 ms until it holds (or fail after `ms`); a condition that throws counts as not yet. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      if (await cond()) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A GET on 127.0.0.1 without keep-alive: status and body. */
export function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => { body += d; }).on('end', () => resolve({ status: res.statusCode!, body }));
    }).on('error', reject);
  });
}
