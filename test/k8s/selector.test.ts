/** Label selectors (k8s/selector.ts): one parser and one matcher for every kind that selects by labels. */
import { describe, expect, it } from 'vitest';
import { Checker } from '../../k8s/check.js';
import { parseLabelSelector, selectorMatches, selectsAll } from '../../k8s/selector.js';
import { parseObject } from '../../k8s/kinds.js';
import type { SourcedObject } from '../../k8s/types.js';

const src = { object: { apiVersion: 'v1', kind: 'Thing', metadata: { name: 'x', namespace: 'ns' } }, file: '/m/x.yaml', index: 0 } as SourcedObject;

function sel(v: unknown) {
  const c = new Checker(src);
  return { s: parseLabelSelector(c, v, 'spec.selector'), problems: c.problems.map((p) => p.message) };
}

describe('label selectors', () => {
  it('ANDs matchLabels and matchExpressions with the Kubernetes operators', () => {
    const { s } = sel({ matchLabels: { app: 'web' }, matchExpressions: [
      { key: 'tier', operator: 'In', values: ['a', 'b'] },
      { key: 'canary', operator: 'DoesNotExist' },
      { key: 'zone', operator: 'NotIn', values: ['z1'] },
      { key: 'team', operator: 'Exists' },
    ] });
    expect(s).toBeDefined();
    const ok = { app: 'web', tier: 'a', team: 't' };
    expect(selectorMatches(s!, ok)).toBe(true);
    expect(selectorMatches(s!, { ...ok, zone: 'z2' })).toBe(true);
    expect(selectorMatches(s!, { ...ok, zone: 'z1' })).toBe(false);
    expect(selectorMatches(s!, { ...ok, canary: '' })).toBe(false);
    expect(selectorMatches(s!, { ...ok, tier: 'c' })).toBe(false);
    expect(selectorMatches(s!, { app: 'web', tier: 'a' })).toBe(false); // team missing
    expect(selectorMatches(s!, { ...ok, app: 'api' })).toBe(false);
    // Keys of Object.prototype are not labels.
    expect(selectorMatches(sel({ matchExpressions: [{ key: 'constructor', operator: 'Exists' }] }).s!, {})).toBe(false);
    expect(selectorMatches(sel({ matchLabels: { toString: 'x' } }).s!, {})).toBe(false);
  });

  it('takes an absent or empty selector as selecting everything', () => {
    for (const v of [undefined, null, {}, { matchLabels: {}, matchExpressions: [] }]) {
      const { s, problems } = sel(v);
      expect(problems).toEqual([]);
      expect(selectsAll(s!)).toBe(true);
      expect(selectorMatches(s!, { any: 'thing' })).toBe(true);
    }
  });

  it('names what is wrong with a requirement', () => {
    expect(sel({ matchExpressions: [{ key: 'a', operator: 'In' }] }).problems).toEqual(['spec.selector.matchExpressions[0].values: must not be empty with operator In']);
    expect(sel({ matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] }).problems).toEqual(['spec.selector.matchExpressions[0].values: must be empty with operator Exists']);
    expect(sel({ matchExpressions: [{ key: 'a' }] }).problems[0]).toBe('spec.selector.matchExpressions[0].operator: is required (In, NotIn, Exists or DoesNotExist)');
    expect(sel({ matchExpressions: [{ operator: 'Exists' }] }).problems).toEqual(['spec.selector.matchExpressions[0].key: is required']);
    expect(sel({ matchExpressions: [{ key: 'a', operator: 'Like', values: ['x'] }] }).problems[0]).toMatch(/operator: must be one of "In", "NotIn", "Exists", "DoesNotExist"/);
    expect(sel({ matchLabels: { a: 1 } }).problems[0]).toMatch(/matchLabels\["a"\]: must be a string/);
    expect(sel({ matchLabels: { a: 'b' } }).s).toBeDefined();
  });

  it('gives an AuthorizationPolicy and a Gateway listener the same selector for the same text', () => {
    const selector = { matchLabels: { env: 'prod' }, matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }] };
    const policy = parseObject({ object: { apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'shop' }, spec: { selector } }, file: '/m/p.yaml', index: 0 } as SourcedObject);
    const gateway = parseObject({ object: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'g', namespace: 'shop' },
      spec: { gatewayClassName: 'c', listeners: [{ name: 'http', port: 80, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'Selector', selector } } }] } }, file: '/m/g.yaml', index: 1 } as SourcedObject);
    expect(policy.problems).toEqual([]);
    expect(gateway.problems).toEqual([]);
    const a = policy.object?.kind === 'AuthorizationPolicy' ? policy.object.value.selector : undefined;
    const b = gateway.object?.kind === 'Gateway' ? gateway.object.value.listeners[0]!.allowedRoutes.selector : undefined;
    expect(a).toEqual({ matchLabels: { env: 'prod' }, matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }] });
    expect(b).toEqual(a);
  });

  it('refuses a policy selecting by a per-pod label in either part', () => {
    for (const selector of [{ matchLabels: { 'pod-template-hash': 'abc' } }, { matchExpressions: [{ key: 'pod-template-hash', operator: 'Exists' }] }]) {
      const r = parseObject({ object: { apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'shop' }, spec: { selector } }, file: '/m/p.yaml', index: 0 } as SourcedObject);
      expect(r.problems.map((p) => p.message)[0]).toMatch(/per-pod or per-rollout label/);
    }
  });
});
