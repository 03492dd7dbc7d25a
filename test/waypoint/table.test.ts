import { describe, expect, it } from 'vitest';
import type { MatchRequest } from '../../waypoint/routing/match.js';
import { routeStatusOf } from '../../model/route-status.js';
import { buildRoutingTable, directRule, meshLookup, selectListener, type RoutingTable } from '../../waypoint/routing/table.js';
import { GATEWAY, configOf, service, tableOf } from './helpers.js';

function req(path: string, extra: Partial<MatchRequest> & { headers?: Record<string, string> } = {}): MatchRequest {
  const [p, q] = path.split('?');
  const headers = extra.headers ?? {};
  return { path: p!, query: q ?? '', method: extra.method ?? 'GET', header: (n) => headers[n] };
}

function lookup(t: RoutingTable, host: string | undefined, r: MatchRequest): string | undefined {
  const bp = t.ports.get('127.0.0.1:80')!;
  const entry = selectListener(bp, host);
  const m = entry?.table.lookup(host, r);
  return m ? `${m.target.route}#${m.target.rule}` : undefined;
}

function route(name: string, spec: string, ns = 'ns', created?: string): string {
  return `\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: ${name}, namespace: ${ns}${created ? `, creationTimestamp: '${created}'` : ''}}\nspec:\n  parentRefs: [{name: gw, namespace: ns}]\n${spec}`;
}

function conditions(t: RoutingTable, name: string, parent = 0): Record<string, string> {
  const r = t.routes.find((x) => x.name === name)!;
  return Object.fromEntries(r.parents[parent]!.conditions.map((c) => [c.type, `${c.status}/${c.reason}`]));
}

const SVC = service('svc', 'ns', '10.96.0.1', ['10.0.0.1']);

describe('precedence across all routes of a listener', () => {
  const t = tableOf(GATEWAY + SVC +
    route('b-new', `  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: svc, port: 80}]`, 'ns', '2024-01-02T00:00:00Z') +
    route('a-old', `  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}, method: POST}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x, value: '1'}]}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api}, queryParams: [{name: q, value: '1'}]}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: Exact, value: /api/exact}}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /api/longer}}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: RegularExpression, value: '/api/[0-9]+'}}]
    backendRefs: [{name: svc, port: 80}]`, 'ns', '2024-01-01T00:00:00Z'));

  it('exact beats prefixes, a longer prefix beats a shorter one', () => {
    expect(lookup(t, 'h', req('/api/exact'))).toBe('ns/a-old#4');
    expect(lookup(t, 'h', req('/api/longer/x'))).toBe('ns/a-old#5');
  });
  it('then a method match, more headers, more query parameters', () => {
    expect(lookup(t, 'h', req('/api', { method: 'POST', headers: { x: '1' } }))).toBe('ns/a-old#1');
    expect(lookup(t, 'h', req('/api?q=1', { headers: { x: '1' } }))).toBe('ns/a-old#2');
    expect(lookup(t, 'h', req('/api?q=1'))).toBe('ns/a-old#3');
  });
  it('then the oldest route, whatever the names', () => {
    expect(lookup(t, 'h', req('/api/other'))).toBe('ns/a-old#0');
  });
  it('regular expressions match the whole path and rank after prefixes of their length class', () => {
    expect(lookup(t, 'h', req('/api/123'))).toBe('ns/a-old#0');
    expect(lookup(t, 'h', req('/nothing'))).toBeUndefined();
  });
  it('ties between routes of the same age go to namespace/name order', () => {
    const t2 = tableOf(GATEWAY + SVC + route('zeta', `  rules:\n  - backendRefs: [{name: svc, port: 80}]`) + route('alpha', `  rules:\n  - backendRefs: [{name: svc, port: 80}]`));
    expect(lookup(t2, 'h', req('/'))).toBe('ns/alpha#0');
  });
});

describe('host names: listeners and routes', () => {
  const t = tableOf(GATEWAY.replace('  - {name: http, port: 80, protocol: HTTP}', `  - {name: http, port: 80, protocol: HTTP}
  - {name: foo, port: 80, protocol: HTTP, hostname: foo.example.com}`) + SVC +
    route('exact', `  hostnames: [a.example.com]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /only-exact}}]\n    backendRefs: [{name: svc, port: 80}]`) +
    route('wild', `  hostnames: ['*.example.com']\n  rules:\n  - backendRefs: [{name: svc, port: 80}]`) +
    route('foo', `  parentRefs: [{name: gw, sectionName: foo}]\n  rules:\n  - backendRefs: [{name: svc, port: 80}]`).replace('  parentRefs: [{name: gw, namespace: ns}]\n', ''));
  it('the most specific listener takes the request', () => {
    expect(lookup(t, 'foo.example.com', req('/'))).toBe('ns/foo#0');
  });
  it('routes with the request host exactly come first, then wildcards', () => {
    expect(lookup(t, 'a.example.com', req('/only-exact'))).toBe('ns/exact#0');
    expect(lookup(t, 'a.example.com', req('/other'))).toBe('ns/wild#0');
    expect(lookup(t, 'b.example.com', req('/only-exact'))).toBe('ns/wild#0');
    expect(lookup(t, 'other.net', req('/'))).toBeUndefined();
  });
});

describe('route status', () => {
  it('Accepted and ResolvedRefs when all is well', () => {
    const t = tableOf(GATEWAY + SVC + route('ok', `  rules:\n  - backendRefs: [{name: svc, port: 80}]`));
    expect(conditions(t, 'ok')).toEqual({ Accepted: 'True/Accepted', ResolvedRefs: 'True/ResolvedRefs' });
  });
  it('is the model\'s (model/route-status.ts, tested there), and only accepted routes are placed', () => {
    const gw = GATEWAY.replace('  - {name: http, port: 80, protocol: HTTP}', '  - {name: http, port: 80, protocol: HTTP, hostname: only.example.com}');
    const cfg = configOf(gw + SVC +
      route('accepted', `  rules:\n  - matches: [{path: {type: PathPrefix, value: /ok}}]\n    backendRefs: [{name: svc, port: 80}]`) +
      route('elsewhere', `  rules:\n  - matches: [{path: {type: PathPrefix, value: /other}}]\n    backendRefs: [{name: svc, port: 80}]`, 'other') +
      route('hosts', `  hostnames: [x.other.com]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /hosts}}]\n    backendRefs: [{name: svc, port: 80}]`) +
      route('missing', `  rules:\n  - matches: [{path: {type: PathPrefix, value: /missing}}]\n    backendRefs: [{name: nope, port: 80}]`));
    const opts = { namespace: 'ns', listenAddress: '127.0.0.1' };
    const t = buildRoutingTable(cfg, opts);
    const st = routeStatusOf(cfg, opts);
    expect(t.routes).toEqual(st.routes);
    expect(t.gateways).toEqual(st.gateways);
    expect(conditions(t, 'elsewhere').Accepted).toBe('False/NotAllowedByListeners');
    expect(conditions(t, 'missing')).toEqual({ Accepted: 'True/Accepted', ResolvedRefs: 'False/BackendNotFound' });
    expect(lookup(t, 'only.example.com', req('/ok'))).toBe('ns/accepted#0');
    expect(lookup(t, 'only.example.com', req('/missing'))).toBe('ns/missing#0');
    expect(lookup(t, 'only.example.com', req('/other'))).toBeUndefined();
    expect(lookup(t, 'only.example.com', req('/hosts'))).toBeUndefined();
    expect(t.gateways[0]!.listeners[0]!.attachedRoutes).toBe(2);
  });
  it('Gateways of other controllers or namespaces are not this waypoint\'s', () => {
    const t = tableOf(GATEWAY.replace('kernway.io/gateway-controller', 'example.com/other') + SVC + route('r', `  rules:\n  - backendRefs: [{name: svc, port: 80}]`));
    expect(t.ports.size).toBe(0);
    expect(t.routes).toEqual([]);
  });
});

describe('mesh parents (GAMMA)', () => {
  const meshRoute = (name: string, ns: string, parent: string, extra = ''): string =>
    `\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: ${name}, namespace: ${ns}}\nspec:\n  parentRefs: [{group: '', kind: Service, name: svc, namespace: ns${parent}}]\n  rules:\n  - ${extra}backendRefs: [{name: svc, namespace: ns, port: 80}]`;
  const t = tableOf(SVC.replace('ports:\n  - {name: http, port: 80, targetPort: 8080}', 'ports:\n  - {name: http, port: 80, targetPort: 8080}\n  - {name: alt, port: 8080, targetPort: 8080}') +
    meshRoute('producer', 'ns', ', port: 80') + meshRoute('consumer', 'client', ''));
  const mp80 = t.mesh.get('10.96.0.1:80')!;
  const mp8080 = t.mesh.get('10.96.0.1:8080')!;
  it('binds by cluster IP and port; parentRef.port limits a route to that port', () => {
    expect(meshLookup(mp80, 'ns', req('/')).rule?.route).toBe('ns/producer');
    expect(meshLookup(mp8080, 'ns', req('/'))).toMatchObject({ routed: false });
    expect(meshLookup(mp8080, 'ns', req('/')).rule?.rule).toBe('passthrough');
  });
  it('consumer routes apply to their namespace only, and win there', () => {
    expect(meshLookup(mp80, 'client', req('/')).rule?.route).toBe('client/consumer');
    expect(meshLookup(mp8080, 'client', req('/')).rule?.route).toBe('client/consumer');
    expect(meshLookup(mp80, undefined, req('/')).rule?.route).toBe('ns/producer');
  });
  it('a consumer route may name its parent Service as backend without a ReferenceGrant', () => {
    expect(conditions(t, 'consumer').ResolvedRefs).toBe('True/ResolvedRefs');
  });
  it('a Service of another namespace is not a parent of this waypoint', () => {
    const other = tableOf(SVC, 'elsewhere');
    expect(other.mesh.size).toBe(0);
  });
});

describe('direct destinations (a Pod of the namespace on any port)', () => {
  const pods = `
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: ns, labels: {app: web}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.0.7}
---
apiVersion: v1
kind: Pod
metadata: {name: other-1, namespace: elsewhere}
spec: {containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.0.0.8}`;
  it('one passthrough rule per table and destination, with its keys and labels made once', () => {
    const t = tableOf(GATEWAY + SVC + pods);
    const a = directRule(t, '10.0.0.7', 9090)!;
    expect(a.parent).toBe('pod ns/web-1');
    expect(a.rule.rule).toBe('passthrough');
    const target = a.rule.backends[0]!.target!;
    expect(target).toMatchObject({ label: 'ns/direct', port: 9090, key: 'pod ns/web-1:9090' });
    expect(target.endpoints).toEqual([{ address: '10.0.0.7', port: 9090, pod: 'web-1', key: '10.0.0.7:9090' }]);
    expect(directRule(t, '10.0.0.7', 9090)).toBe(a);
    expect(directRule(t, '10.0.0.7', 9091)).not.toBe(a);
    expect(directRule(t, '10.0.0.8', 9090), 'a Pod of another namespace').toBeUndefined();
    expect(directRule(t, '10.0.0.9', 9090), 'no Pod').toBeUndefined();
    expect(directRule(tableOf(GATEWAY + SVC + pods), '10.0.0.7', 9090), 'another table').not.toBe(a);
  });
});
