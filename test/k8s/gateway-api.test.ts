import { describe, expect, it } from 'vitest';
import { parseObject } from '../../k8s/kinds.js';
import type { HTTPRoute } from '../../k8s/gateway-api-types.js';
import { objectsFrom } from '../waypoint/helpers.js';

function parse(yaml: string): ReturnType<typeof parseObject> {
  return parseObject(objectsFrom(yaml, 'routes.yaml')[0]!);
}
function route(spec: string): ReturnType<typeof parseObject> {
  return parse(`apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: ns}\nspec:\n${spec}`);
}
function fields(r: ReturnType<typeof parseObject>): string[] {
  return r.problems.map((p) => p.field ?? '');
}

describe('HTTPRoute defaults', () => {
  it('fills what the API server would: rule, match, parent and backend defaults', () => {
    const r = route(`  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: svc, port: 80}]`);
    expect(r.problems).toEqual([]);
    const v = r.object!.value as HTTPRoute;
    expect(v.parentRefs[0]).toEqual({ group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'ns', name: 'gw', sectionName: undefined, port: undefined });
    expect(v.rules[0]!.matches).toEqual([{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [], method: undefined }]);
    expect(v.rules[0]!.backendRefs[0]).toMatchObject({ group: '', kind: 'Service', namespace: 'ns', name: 'svc', port: 80, weight: 1 });
  });
  it('a route without rules gets the default rule; header names are lower-cased, the first of a name wins', () => {
    const r = route(`  parentRefs: [{name: gw}]\n  rules:\n  - matches:\n    - headers: [{name: Version, value: one}, {name: version, value: two}]`);
    const m = (r.object!.value as HTTPRoute).rules[0]!.matches[0]!;
    expect(m.headers).toEqual([{ type: 'Exact', name: 'version', value: 'one' }]);
    expect((route(`  parentRefs: [{name: gw}]`).object!.value as HTTPRoute).rules).toHaveLength(1);
  });
  it('parses timeouts, retries and mirror fractions', () => {
    const r = route(`  rules:
  - timeouts: {request: 10s, backendRequest: 1s500ms}
    retry: {attempts: 3, codes: [500, 503], backoff: 100ms}
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: m, port: 80}, fraction: {numerator: 1, denominator: 4}}
    backendRefs: [{name: svc, port: 80}]`);
    expect(r.problems).toEqual([]);
    const rule = (r.object!.value as HTTPRoute).rules[0]!;
    expect(rule.requestTimeoutMs).toBe(10_000);
    expect(rule.backendRequestTimeoutMs).toBe(1500);
    expect(rule.retry).toEqual({ attempts: 3, codes: [500, 503], backoffMs: 100 });
    expect(rule.filters[0]).toMatchObject({ type: 'RequestMirror', percent: 25 });
  });
});

describe('HTTPRoute validation names the file, the object and the field', () => {
  it('reports a bad path with the CRD rule it breaks', () => {
    const r = route(`  rules:\n  - matches: [{path: {type: PathPrefix, value: /a//b}}]`);
    expect(r.object).toBeUndefined();
    expect(r.problems[0]).toMatchObject({ file: 'routes.yaml', object: 'HTTPRoute ns/r', field: 'spec.rules[0].matches[0].path.value' });
    expect(r.problems[0]!.message).toMatch(/'\/\/'/);
  });
  it('enforces the CEL rules: redirect with backends, repeated filters, prefix rewrite needs one PathPrefix match', () => {
    expect(fields(route(`  rules:
  - filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301}}]
    backendRefs: [{name: s, port: 80}]`))).toContain('spec.rules[0].filters');
    expect(route(`  rules:
  - filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: c}]}}`).problems[0]!.message).toMatch(/cannot be repeated/);
    expect(fields(route(`  rules:
  - matches: [{path: {type: Exact, value: /a}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]`))).toContain('spec.rules[0].matches');
  });
  it('checks filter type and body agree, Service refs have ports, timeouts are ordered', () => {
    expect(fields(route(`  rules:\n  - filters: [{type: URLRewrite, requestRedirect: {statusCode: 301}}]`))).toEqual(expect.arrayContaining(['spec.rules[0].filters[0].requestRedirect', 'spec.rules[0].filters[0].urlRewrite']));
    expect(fields(route(`  rules:\n  - backendRefs: [{name: s}]`))).toContain('spec.rules[0].backendRefs[0].port');
    expect(fields(route(`  rules:\n  - timeouts: {request: 1s, backendRequest: 2s}`))).toContain('spec.rules[0].timeouts.backendRequest');
    expect(fields(route(`  rules:\n  - timeouts: {request: 10 seconds}`))).toContain('spec.rules[0].timeouts.request');
    expect(fields(route(`  hostnames: [Example.com]`))).toContain('spec.hostnames[0]');
    expect(fields(route(`  rules:\n  - matches: [{method: FETCH}]`))).toContain('spec.rules[0].matches[0].method');
  });
  it('drops (with a reason for the status) rules it cannot serve instead of rejecting the file', () => {
    const r = route(`  rules:
  - matches: [{path: {type: RegularExpression, value: '/(?=x)'}}]
  - filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Magic, name: m}}]
  - backendRefs: [{name: s, port: 80}]`);
    expect(r.problems).toEqual([]);
    const v = r.object!.value as HTTPRoute;
    expect(v.rules.map((x) => x.index)).toEqual([2]);
    expect(v.droppedRules.map((d) => d.index)).toEqual([0, 1]);
    expect(v.droppedRules[0]!.reason).toMatch(/lookaround/);
    expect(v.droppedRules[1]!.reason).toMatch(/ExtensionRef/);
  });
});

describe('Gateway validation', () => {
  it('requires unique listener names, a class, and a selector for from: Selector', () => {
    const r = parse(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g, namespace: ns}
spec:
  listeners:
  - {name: a, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector}}}
  - {name: a, port: 81, protocol: HTTP}`);
    expect(fields(r)).toEqual(expect.arrayContaining(['spec.gatewayClassName', 'spec.listeners[1].name', 'spec.listeners[0].allowedRoutes.namespaces.selector']));
  });
});
