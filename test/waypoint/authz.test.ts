import { describe, expect, it } from 'vitest';
import type { AuthorizationPolicy } from '../../k8s/policy-types.js';
import { AuthzTable, type AuthzRequest, type Destination } from '../../waypoint/authz/evaluate.js';
import { configOf } from './helpers.js';

function policies(yaml: string): readonly AuthorizationPolicy[] {
  const cfg = configOf(yaml);
  expect(cfg.problems).toEqual([]);
  return cfg.policies;
}
const pol = (name: string, spec: string): string => `---\napiVersion: kernway.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: ${name}, namespace: shop}\nspec:\n${spec}\n`;
const dest: Destination = { namespace: 'shop', labels: { app: 'cart' }, port: 8080 };
function request(p: Partial<AuthzRequest> & { headers?: Record<string, string> } = {}): AuthzRequest {
  const h = p.headers ?? {};
  return { caller: p.caller ?? { address: '10.0.0.5', namespace: 'web', serviceAccount: 'web/frontend' }, method: p.method ?? 'GET', path: p.path ?? '/', host: p.host ?? 'cart', header: (n) => h[n] };
}

describe('waypoint authorization (k8s/policy format)', () => {
  it('no policy: allowed', () => {
    expect(new AuthzTable([]).evaluate(dest, request()).allowed).toBe(true);
  });
  it('ALLOW lists methods, paths and sources; anything else is denied', () => {
    const t = new AuthzTable(policies(pol('allow-get', `  selector: {matchLabels: {app: cart}}
  action: ALLOW
  rules:
  - from: [{source: {namespaces: [web]}}]
    to: [{operation: {methods: [GET], paths: [/items/*]}}]`)));
    expect(t.evaluate(dest, request({ path: '/items/3' }))).toEqual({ allowed: true, policy: 'shop/allow-get' });
    expect(t.evaluate(dest, request({ path: '/items/3', method: 'DELETE' })).allowed).toBe(false);
    expect(t.evaluate(dest, request({ path: '/admin' })).allowed).toBe(false);
    expect(t.evaluate(dest, request({ path: '/items/3', caller: { address: '10.0.0.6', namespace: 'other', serviceAccount: 'other/x' } })).allowed).toBe(false);
    expect(t.evaluate(dest, request({ path: '/items/3', caller: { address: '10.0.0.6', namespace: undefined, serviceAccount: undefined } })).allowed).toBe(false);
  });
  it('a policy only applies to the workloads it selects', () => {
    const t = new AuthzTable(policies(pol('allow-none', `  selector: {matchLabels: {app: cart}}\n  action: ALLOW`)));
    expect(t.evaluate(dest, request()).allowed).toBe(false);
    expect(t.evaluate({ ...dest, labels: { app: 'other' } }, request()).allowed).toBe(true);
    expect(t.evaluate({ ...dest, namespace: 'elsewhere' }, request()).allowed).toBe(true);
  });
  it('DENY is evaluated before ALLOW', () => {
    const t = new AuthzTable(policies(
      pol('allow-all', `  action: ALLOW\n  rules: [{}]`) +
      pol('deny-delete', `  action: DENY\n  rules:\n  - to: [{operation: {methods: [DELETE]}}]\n    when: [{key: 'request.headers[x-debug]', values: ['1', 'yes*']}]`)));
    expect(t.evaluate(dest, request({ method: 'DELETE' })).allowed).toBe(true);
    expect(t.evaluate(dest, request({ method: 'DELETE', headers: { 'x-debug': 'yes-please' } }))).toEqual({ allowed: false, policy: 'shop/deny-delete' });
    expect(t.evaluate(dest, request({ method: 'GET', headers: { 'x-debug': '1' } })).allowed).toBe(true);
  });
  it('matches service accounts, ip blocks, ports and hosts', () => {
    const t = new AuthzTable(policies(pol('allow', `  action: ALLOW
  rules:
  - from: [{source: {serviceAccounts: [web/frontend], ipBlocks: [10.0.0.0/24]}}]
    to: [{operation: {ports: [8080], hosts: ['cart*']}}]`)));
    expect(t.evaluate(dest, request()).allowed).toBe(true);
    expect(t.evaluate({ ...dest, port: 9090 }, request()).allowed).toBe(false);
    expect(t.evaluate(dest, request({ host: 'other' })).allowed).toBe(false);
    expect(t.evaluate(dest, request({ caller: { address: '10.0.1.5', namespace: 'web', serviceAccount: 'web/frontend' } })).allowed).toBe(false);
    expect(t.evaluate(dest, request({ caller: { address: '10.0.0.5', namespace: 'web', serviceAccount: 'web/admin' } })).allowed).toBe(false);
  });
});
