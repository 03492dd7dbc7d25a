/** The Gateway API status computed from the model (model/route-status.ts): no kernel, no sockets. */
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { SourcedObject } from '../../k8s/types.js';
import { GATEWAY_CONTROLLER, MESH_CONTROLLER } from '../../k8s/gateway-status.js';
import { buildModel } from '../../model/model.js';
import { clusterStatusOf, routeStatusOf, type NamespaceRouteStatus } from '../../model/route-status.js';
import { waypointConfigOf } from '../../model/waypoint-config.js';

function objects(yaml: string): SourcedObject[] {
  return parseAllDocuments(yaml).map((d, index) => ({ object: d.toJS() as SourcedObject['object'], file: 'test.yaml', index })).filter((o) => o.object !== null);
}

function statusOf(yaml: string, namespace = 'ns'): NamespaceRouteStatus {
  return routeStatusOf(waypointConfigOf(buildModel(objects(yaml))), { namespace, listenAddress: '127.0.0.1' });
}

const CLASS = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: kernway}
spec: {controllerName: kernway.io/gateway-controller}
`;

function gateway(listeners: string, name = 'gw', ns = 'ns', extra = ''): string {
  return `\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: ${name}, namespace: ${ns}, generation: 3}\nspec:\n  gatewayClassName: kernway\n${extra}  listeners:\n${listeners}`;
}
const GATEWAY = CLASS + gateway('  - {name: http, port: 80, protocol: HTTP}');

function service(name: string, ns: string, ip: string, ports = '  - {name: http, port: 80, targetPort: 8080}'): string {
  return `\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ${name}, namespace: ${ns}}\nspec:\n  clusterIP: ${ip}\n  ports:\n${ports}`;
}
const SVC = service('svc', 'ns', '10.96.0.1');

function route(name: string, spec: string, ns = 'ns', parents = '[{name: gw, namespace: ns}]'): string {
  return `\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: ${name}, namespace: ${ns}, generation: 7}\nspec:\n  parentRefs: ${parents}\n${spec}`;
}
const TO_SVC = '  rules:\n  - backendRefs: [{name: svc, port: 80}]';

function conds(c: ReadonlyArray<{ type: string; status: string; reason: string }>): Record<string, string> {
  return Object.fromEntries(c.map((x) => [x.type, `${x.status}/${x.reason}`]));
}
function routeConds(s: NamespaceRouteStatus, name: string, parent = 0): Record<string, string> {
  const r = s.routes.find((x) => x.name === name);
  if (!r) throw new Error(`no status for route ${name}`);
  return conds(r.parents[parent]!.conditions);
}

describe('Gateway and listener status', () => {
  it('a served Gateway is Accepted and Programmed, with its listeners, observed generation and attached routes', () => {
    const s = statusOf(GATEWAY + SVC + route('a', TO_SVC) + route('b', TO_SVC));
    expect(s.gateways).toHaveLength(1);
    const g = s.gateways[0]!;
    expect(conds(g.conditions)).toEqual({ Accepted: 'True/Accepted', Programmed: 'True/Programmed' });
    expect(g.addresses).toEqual(['127.0.0.1']);
    expect(g.conditions.every((c) => c.observedGeneration === 3)).toBe(true);
    expect(g.listeners).toMatchObject([{ name: 'http', port: 80, attachedRoutes: 2 }]);
    expect(conds(g.listeners[0]!.conditions)).toEqual({ Accepted: 'True/Accepted', Programmed: 'True/Programmed', ResolvedRefs: 'True/ResolvedRefs' });
    expect(s.listeners.map((l) => [l.listener.name, l.addresses])).toEqual([['http', ['127.0.0.1']]]);
  });
  it('spec.addresses replace the listen address', () => {
    const s = statusOf(CLASS + gateway('  - {name: http, port: 80, protocol: HTTP}', 'gw', 'ns', '  addresses: [{type: IPAddress, value: 10.1.2.3}]\n'));
    expect(s.gateways[0]!.addresses).toEqual(['10.1.2.3']);
    expect(s.listeners[0]!.addresses).toEqual(['10.1.2.3']);
  });
  it('UnsupportedProtocol, HostnameConflict and InvalidRouteKinds listeners', () => {
    const s = statusOf(CLASS + gateway([
      '  - {name: tls, port: 443, protocol: HTTPS}',
      '  - {name: a, port: 80, protocol: HTTP}',
      '  - {name: b, port: 80, protocol: HTTP}',
      '  - {name: kinds, port: 81, protocol: HTTP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}',
    ].join('\n')));
    const ls = Object.fromEntries(s.gateways[0]!.listeners.map((l) => [l.name, conds(l.conditions)]));
    expect(ls.tls).toEqual({ Accepted: 'False/UnsupportedProtocol', Programmed: 'False/Invalid' });
    expect(ls.a).toMatchObject({ Accepted: 'True/Accepted' });
    expect(ls.b).toEqual({ Conflicted: 'True/HostnameConflict', Accepted: 'False/HostnameConflict', Programmed: 'False/Invalid' });
    expect(ls.kinds).toMatchObject({ Accepted: 'True/Accepted', ResolvedRefs: 'False/InvalidRouteKinds' });
    expect(s.listeners.map((l) => l.listener.name)).toEqual(['a', 'kinds']);
  });
  it('Gateways of another controller or namespace are not this namespace\'s', () => {
    expect(statusOf(GATEWAY.replace('kernway.io/gateway-controller', 'example.com/other') + SVC + route('r', TO_SVC))).toMatchObject({ gateways: [], routes: [], listeners: [] });
    expect(statusOf(GATEWAY + SVC + route('r', TO_SVC), 'elsewhere')).toMatchObject({ gateways: [], routes: [], listeners: [] });
  });
});

describe('HTTPRoute parents of Gateways', () => {
  it('Accepted with the host names the route serves on each listener', () => {
    const s = statusOf(CLASS + gateway('  - {name: any, port: 80, protocol: HTTP}\n  - {name: wild, port: 81, protocol: HTTP, hostname: "*.example.com"}') + SVC +
      route('r', `  hostnames: [a.example.com, other.net]\n${TO_SVC}`));
    expect(routeConds(s, 'r')).toEqual({ Accepted: 'True/Accepted', ResolvedRefs: 'True/ResolvedRefs' });
    expect(s.routes[0]!.parents[0]!.conditions.every((c) => c.observedGeneration === 7)).toBe(true);
    expect(s.gatewayAttachments.map((a) => [a.listener.listener.name, a.hosts])).toEqual([['any', ['a.example.com', 'other.net']], ['wild', ['a.example.com']]]);
  });
  it('NotAllowedByListeners, NoMatchingListenerHostname, NoMatchingParent (section, port, missing Gateway)', () => {
    const s = statusOf(CLASS + gateway('  - {name: http, port: 80, protocol: HTTP, hostname: only.example.com}') + SVC +
      route('elsewhere', TO_SVC, 'other') +
      route('hosts', `  hostnames: [x.other.com]\n${TO_SVC}`) +
      route('section', TO_SVC, 'ns', '[{name: gw, namespace: ns, sectionName: nope}]') +
      route('port', TO_SVC, 'ns', '[{name: gw, namespace: ns, port: 8080}]') +
      route('ghost', TO_SVC, 'ns', '[{name: ghost, namespace: ns}]'));
    expect(routeConds(s, 'elsewhere').Accepted).toBe('False/NotAllowedByListeners');
    expect(routeConds(s, 'hosts').Accepted).toBe('False/NoMatchingListenerHostname');
    expect(routeConds(s, 'section').Accepted).toBe('False/NoMatchingParent');
    expect(routeConds(s, 'port').Accepted).toBe('False/NoMatchingParent');
    expect(routeConds(s, 'ghost').Accepted).toBe('False/NoMatchingParent');
    expect(s.gatewayAttachments).toEqual([]);
    expect(s.gateways[0]!.listeners[0]!.attachedRoutes).toBe(0);
  });
  it('allowedRoutes from Selector matches the route namespace\'s labels', () => {
    const sel = '  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: a}}}}}';
    const ns = (name: string, team: string): string => `\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}, labels: {team: ${team}}}`;
    const s = statusOf(CLASS + gateway(sel) + SVC + ns('ta', 'a') + ns('tb', 'b') + route('in', TO_SVC, 'ta') + route('out', TO_SVC, 'tb'));
    expect(routeConds(s, 'in').Accepted).toBe('True/Accepted');
    expect(routeConds(s, 'out').Accepted).toBe('False/NotAllowedByListeners');
  });
  it('PartiallyInvalid when rules are dropped; UnsupportedValue when none is left', () => {
    const s = statusOf(GATEWAY + SVC +
      route('partly', `  rules:\n  - matches: [{path: {type: RegularExpression, value: '(a'}}]\n  - backendRefs: [{name: svc, port: 80}]`) +
      route('none', `  rules:\n  - matches: [{path: {type: RegularExpression, value: '(a'}}]`));
    expect(routeConds(s, 'partly')).toMatchObject({ Accepted: 'True/Accepted', PartiallyInvalid: 'True/UnsupportedValue' });
    expect(routeConds(s, 'none').Accepted).toBe('False/UnsupportedValue');
    expect(s.gatewayAttachments.map((a) => a.route.meta.name)).toEqual(['partly']);
  });
});

describe('ResolvedRefs: backendRefs, mirrors and ReferenceGrants', () => {
  const other = service('other', 'b', '10.96.0.9');
  it('BackendNotFound, InvalidKind, RefNotPermitted, UnsupportedProtocol; the first failure names the reason, all are in the message', () => {
    const s = statusOf(GATEWAY + SVC + other + service('grpcish', 'ns', '10.96.0.3', '  - {name: x, port: 80, appProtocol: example.com/thrift}') +
      route('missing', '  rules:\n  - backendRefs: [{name: nope, port: 80}]') +
      route('badport', '  rules:\n  - backendRefs: [{name: svc, port: 81}]') +
      route('kind', '  rules:\n  - backendRefs: [{group: example.com, kind: Bucket, name: x}]') +
      route('cross', '  rules:\n  - backendRefs: [{name: other, namespace: b, port: 80}]') +
      route('proto', '  rules:\n  - backendRefs: [{name: grpcish, port: 80}]') +
      route('two', '  rules:\n  - backendRefs: [{name: nope, port: 80}, {name: other, namespace: b, port: 80}]'));
    expect(routeConds(s, 'missing').ResolvedRefs).toBe('False/BackendNotFound');
    expect(routeConds(s, 'badport').ResolvedRefs).toBe('False/BackendNotFound');
    expect(routeConds(s, 'kind').ResolvedRefs).toBe('False/InvalidKind');
    expect(routeConds(s, 'cross')).toEqual({ Accepted: 'True/Accepted', ResolvedRefs: 'False/RefNotPermitted' });
    expect(routeConds(s, 'proto').ResolvedRefs).toBe('False/UnsupportedProtocol');
    const two = s.routes.find((r) => r.name === 'two')!.parents[0]!.conditions.find((c) => c.type === 'ResolvedRefs')!;
    expect(two.reason).toBe('BackendNotFound');
    expect(two.message).toContain('Service ns/nope not found');
    expect(two.message).toContain('no ReferenceGrant in b');
  });
  it('a ReferenceGrant permits the cross-namespace reference, for the named Service only', () => {
    const grant = (to: string): string => `\n---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: b}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: ns}]\n  to: [${to}]`;
    const r = route('cross', '  rules:\n  - backendRefs: [{name: other, namespace: b, port: 80}]');
    expect(routeConds(statusOf(GATEWAY + SVC + other + r + grant("{group: '', kind: Service}")), 'cross').ResolvedRefs).toBe('True/ResolvedRefs');
    expect(routeConds(statusOf(GATEWAY + SVC + other + r + grant("{group: '', kind: Service, name: other}")), 'cross').ResolvedRefs).toBe('True/ResolvedRefs');
    expect(routeConds(statusOf(GATEWAY + SVC + other + r + grant("{group: '', kind: Service, name: else}")), 'cross').ResolvedRefs).toBe('False/RefNotPermitted');
  });
  it('a RequestMirror filter\'s backend is checked too', () => {
    const s = statusOf(GATEWAY + SVC + route('m', '  rules:\n  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: nope, port: 80}}}]\n    backendRefs: [{name: svc, port: 80}]'));
    expect(routeConds(s, 'm').ResolvedRefs).toBe('False/BackendNotFound');
  });
});

describe('HTTPRoute parents of Services (GAMMA)', () => {
  const meshParent = (port = ''): string => `[{group: '', kind: Service, name: svc, namespace: ns${port}}]`;
  const svc2 = service('svc', 'ns', '10.96.0.1', '  - {name: http, port: 80, targetPort: 8080}\n  - {name: alt, port: 8080}');
  it('producer and consumer routes are Accepted on the Service ports they name', () => {
    const s = statusOf(svc2 + route('producer', TO_SVC, 'ns', meshParent(', port: 80')) +
      route('consumer', '  rules:\n  - backendRefs: [{name: svc, namespace: ns, port: 80}]', 'client', meshParent()));
    expect(routeConds(s, 'producer')).toEqual({ Accepted: 'True/Accepted', ResolvedRefs: 'True/ResolvedRefs' });
    // A consumer route may name its parent Service without a ReferenceGrant.
    expect(routeConds(s, 'consumer')).toEqual({ Accepted: 'True/Accepted', ResolvedRefs: 'True/ResolvedRefs' });
    expect(s.meshAttachments.map((a) => [a.route.meta.name, a.service, a.ports, a.consumer])).toEqual([
      ['producer', 'ns/svc', [80], false], ['consumer', 'ns/svc', [80, 8080], true],
    ]);
    expect([...s.meshParents.keys()]).toEqual(['ns/svc']);
  });
  it('NoMatchingParent for a missing Service or port; another namespace\'s Service is not ours', () => {
    const s = statusOf(SVC + route('ghost', TO_SVC, 'ns', "[{group: '', kind: Service, name: ghost, namespace: ns}]") +
      route('port', TO_SVC, 'ns', meshParent(', port: 9999')));
    expect(routeConds(s, 'ghost').Accepted).toBe('False/NoMatchingParent');
    expect(routeConds(s, 'port').Accepted).toBe('False/NoMatchingParent');
    expect(s.meshAttachments).toEqual([]);
    expect(statusOf(SVC + route('r', TO_SVC, 'ns', meshParent()), 'elsewhere').routes).toEqual([]);
  });
});

describe('clusterStatusOf: what the elected agent writes', () => {
  it('GatewayClasses of both controllers, Gateways of ours, every route (kernway parents only), mesh parents under the mesh controller', () => {
    const yaml = GATEWAY + `\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: mesh}\nspec: {controllerName: kernway.io/mesh-controller}` +
      `\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: foreign}\nspec: {controllerName: example.com/other}` + SVC +
      route('gwroute', TO_SVC) + route('meshroute', TO_SVC, 'ns', "[{group: '', kind: Service, name: svc, namespace: ns}]") +
      route('foreign', TO_SVC, 'ns', '[{group: example.com, kind: Thing, name: x, namespace: ns}]');
    const cs = clusterStatusOf(buildModel(objects(yaml)));
    expect(cs.gatewayClasses.map((c) => c.name).sort()).toEqual(['kernway', 'mesh']);
    expect(cs.gateways.map((g) => `${g.namespace}/${g.name}`)).toEqual(['ns/gw']);
    expect(cs.gateways[0]).not.toHaveProperty('addresses');
    const byName = Object.fromEntries(cs.routes.map((r) => [r.name, r.parents]));
    expect(byName.gwroute!.map((p) => p.controllerName)).toEqual([GATEWAY_CONTROLLER]);
    expect(byName.meshroute!.map((p) => p.controllerName)).toEqual([MESH_CONTROLLER]);
    expect(byName.foreign).toEqual([]);
  });

  it('a Service parent is Accepted only when the Service is bound to a kernway waypoint (else NoMatchingParent: nothing applies the route)', () => {
    const meshRoute = route('meshroute', TO_SVC, 'ns', "[{group: '', kind: Service, name: svc, namespace: ns}]");
    const accepted = (yaml: string): { status: string; reason: string; message: string } =>
      clusterStatusOf(buildModel(objects(yaml))).routes.find((r) => r.name === 'meshroute')!.parents[0]!.conditions.find((c) => c.type === 'Accepted')!;
    const unbound = accepted(SVC + meshRoute);
    expect(`${unbound.status}/${unbound.reason}`).toBe('False/NoMatchingParent');
    expect(unbound.message).toMatch(/not bound to a waypoint/);
    const waypoint = `\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: kernway-waypoint}\nspec: {controllerName: kernway.io/mesh-controller}` +
      `\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: ns}\nspec:\n  gatewayClassName: kernway-waypoint\n  listeners: [{name: mesh, port: 15019, protocol: kernway.io/mesh}]`;
    const labelled = `\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns, labels: {kernway.io/use-waypoint: waypoint}}`;
    // Labelled, but the Gateway is missing: still not applied.
    expect(accepted(labelled + SVC + meshRoute).reason).toBe('NoMatchingParent');
    const bound = accepted(labelled + waypoint + SVC + meshRoute);
    expect(`${bound.status}/${bound.reason}`).toBe('True/Accepted');
  });
});
