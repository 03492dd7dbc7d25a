import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { projectRoot } from '../../common/version.js';
import { kindOf, parseObject } from '../../k8s/kinds.js';
import { TRAFFIC_POLICY_FIELDS } from '../../k8s/traffic-policy.js';
import type { BackendTrafficPolicy } from '../../k8s/traffic-policy-types.js';
import type { SourcedObject } from '../../k8s/types.js';
import { buildModel } from '../../model/model.js';
import { attachTrafficPolicies, mergeTrafficSettings } from '../../model/traffic-policy.js';
import { buildWaypointConfig } from '../../model/waypoint-config.js';

function src(text: string, file = '/m/btp.yaml'): SourcedObject[] {
  return parseAllDocuments(text).map((d, index) => ({ object: d.toJS() as SourcedObject['object'], file, index }));
}
function one(text: string) {
  return parseObject(src(text)[0]!);
}
const head = (name = 'p', ns = 'shop', created?: string) =>
  `apiVersion: kernway.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: { name: ${name}, namespace: ${ns}${created ? `, creationTimestamp: "${created}"` : ''} }\n`;

const FULL = `${head('full')}spec:
  targetRefs:
  - { group: "", kind: Service, name: web }
  - { group: gateway.networking.k8s.io, kind: HTTPRoute, name: web-route }
  circuitBreaker: { maxConnections: 10, maxPendingRequests: 5, maxParallelRequests: 20, maxParallelRetries: 2, maxRequestsPerConnection: 100 }
  healthCheck:
    passive: { consecutive5XxErrors: 3, consecutiveGatewayErrors: 2, consecutiveLocalOriginFailures: 4, splitExternalLocalOriginErrors: true, interval: 2s, baseEjectionTime: 10s, maxEjectionPercent: 50 }
  faultInjection:
    delay: { fixedDelay: 150ms, percentage: 12.5 }
    abort: { httpStatus: 503, percentage: 5 }
  rateLimit:
    type: Local
    local:
      rules:
      - limit: { requests: 100, unit: Second }
      - clientSelectors:
        - headers: [{ name: X-User, type: Distinct }]
        - sourceCIDR: { type: Distinct, value: 10.0.0.0/8 }
        limit: { requests: 10, unit: Minute }
  timeout:
    tcp: { connectTimeout: 2s }
    http: { connectionIdleTimeout: 1m, maxConnectionDuration: 1h, requestTimeout: 5s }
  retry:
    numRetries: 3
    retryOn: { triggers: [connect-failure, retriable-status-codes], httpStatusCodes: [503] }
    perRetry: { timeout: 1s, backOff: { baseInterval: 10ms, maxInterval: 100ms } }
    budget: { percent: 25, minRetryConcurrency: 2 }
  tcpKeepalive: { probes: 3, idleTime: 60s, interval: 10s }
`;

describe('BackendTrafficPolicy parsing', () => {
  it('is a kind of the registry (kernway.io/v1alpha1)', () => {
    expect(kindOf({ apiVersion: 'kernway.io/v1alpha1', kind: 'BackendTrafficPolicy' })?.namespaced).toBe(true);
  });

  it('reads every field into the slim form (durations in ms, header names lower case)', () => {
    const r = one(FULL);
    expect(r.problems).toEqual([]);
    expect(r.object?.kind).toBe('BackendTrafficPolicy');
    const p = r.object!.value as BackendTrafficPolicy;
    expect(p.meta.key).toBe('shop/full');
    expect(p.targetRefs).toEqual([{ group: '', kind: 'Service', name: 'web' }, { group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', name: 'web-route' }]);
    const s = p.settings;
    expect(s.circuitBreaker).toEqual({ maxConnections: 10, maxPendingRequests: 5, maxParallelRequests: 20, maxParallelRetries: 2, maxRequestsPerConnection: 100 });
    expect(s.healthCheck?.passive).toEqual({ consecutive5XxErrors: 3, consecutiveGatewayErrors: 2, consecutiveLocalOriginFailures: 4, splitExternalLocalOriginErrors: true, intervalMs: 2000, baseEjectionTimeMs: 10000, maxEjectionPercent: 50 });
    expect(s.faultInjection).toEqual({ delay: { fixedDelayMs: 150, percentage: 12.5 }, abort: { httpStatus: 503, percentage: 5 } });
    expect(s.rateLimit?.rules[0]).toEqual({ clientSelectors: [], limit: { requests: 100, unit: 'Second' } });
    expect(s.rateLimit?.rules[1]!.clientSelectors[0]!.headers[0]).toEqual({ name: 'x-user', type: 'Distinct', value: undefined, invert: false });
    expect(s.rateLimit?.rules[1]!.clientSelectors[1]!.sourceCIDR?.cidr.text).toBe('10.0.0.0/8');
    expect(s.timeout).toEqual({ tcp: { connectTimeoutMs: 2000 }, http: { connectionIdleTimeoutMs: 60000, maxConnectionDurationMs: 3600000, requestTimeoutMs: 5000 } });
    expect(s.retry).toEqual({ numRetries: 3, retryOn: { triggers: ['connect-failure', 'retriable-status-codes'], httpStatusCodes: [503] }, perRetry: { timeoutMs: 1000, backOff: { baseIntervalMs: 10, maxIntervalMs: 100 } }, budget: { percent: 25, minRetryConcurrency: 2 } });
    expect(s.tcpKeepalive).toEqual({ probes: 3, idleTimeMs: 60000, intervalMs: 10000 });
    expect(Object.isFrozen(s.circuitBreaker)).toBe(true);
  });

  const bad: [string, string, RegExp][] = [
    ['no targetRefs', `spec: { circuitBreaker: { maxConnections: 1 } }`, /spec\.targetRefs: is required/],
    ['a Gateway target', `spec: { targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: g }] }`, /spec\.targetRefs\[0\]\.kind: must be Service .*HTTPRoutes only/],
    ['a Service in a group', `spec: { targetRefs: [{ group: apps, kind: Service, name: web }] }`, /spec\.targetRefs\[0\]\.group: must be ""/],
    ['a negative limit', `spec: { targetRefs: [{ kind: Service, name: w }], circuitBreaker: { maxParallelRequests: -1 } }`, /spec\.circuitBreaker\.maxParallelRequests: must be an integer from 0/],
    ['an unknown field', `spec: { targetRefs: [{ kind: Service, name: w }], circuitBreaker: { maxRequests: 1 } }`, /spec\.circuitBreaker\.maxRequests: unknown field \(known here: maxConnections/],
    ['active health checks', `spec: { targetRefs: [{ kind: Service, name: w }], healthCheck: { active: {} } }`, /spec\.healthCheck\.active: is not supported by kernway \(only passive/],
    ['a bad duration', `spec: { targetRefs: [{ kind: Service, name: w }], healthCheck: { passive: { interval: 3 } } }`, /spec\.healthCheck\.passive\.interval: must be a duration/],
    ['an ejection percent over 100', `spec: { targetRefs: [{ kind: Service, name: w }], healthCheck: { passive: { maxEjectionPercent: 101 } } }`, /maxEjectionPercent: must be an integer from 0 to 100/],
    ['both abort statuses', `spec: { targetRefs: [{ kind: Service, name: w }], faultInjection: { abort: { httpStatus: 503, grpcStatus: 14 } } }`, /spec\.faultInjection\.abort: must set exactly one of httpStatus and grpcStatus/],
    ['a percentage over 100', `spec: { targetRefs: [{ kind: Service, name: w }], faultInjection: { delay: { fixedDelay: 1s, percentage: 150 } } }`, /spec\.faultInjection\.delay\.percentage: must be a number from 0 to 100/],
    ['a global rate limit', `spec: { targetRefs: [{ kind: Service, name: w }], rateLimit: { type: Global } }`, /spec\.rateLimit\.type: Global is not supported/],
    ['a rate limit without unit', `spec: { targetRefs: [{ kind: Service, name: w }], rateLimit: { type: Local, local: { rules: [{ limit: { requests: 5 } }] } } }`, /spec\.rateLimit\.local\.rules\[0\]\.limit\.unit: is required/],
    ['a bad CIDR', `spec: { targetRefs: [{ kind: Service, name: w }], rateLimit: { type: Local, local: { rules: [{ clientSelectors: [{ sourceCIDR: { value: 10.0.0.300/8 } }], limit: { requests: 5, unit: Second } }] } } }`, /clientSelectors\[0\]\.sourceCIDR\.value/],
    ['a Distinct header with a value', `spec: { targetRefs: [{ kind: Service, name: w }], rateLimit: { type: Local, local: { rules: [{ clientSelectors: [{ headers: [{ name: x, type: Distinct, value: a }] }], limit: { requests: 5, unit: Second } }] } } }`, /headers\[0\]\.value: must not be set with type Distinct/],
    ['a bad regex', `spec: { targetRefs: [{ kind: Service, name: w }], rateLimit: { type: Local, local: { rules: [{ clientSelectors: [{ headers: [{ name: x, type: RegularExpression, value: "a(" }] }], limit: { requests: 5, unit: Second } }] } } }`, /headers\[0\]\.value: is not a regular expression/],
    ['an unknown retry trigger', `spec: { targetRefs: [{ kind: Service, name: w }], retry: { retryOn: { triggers: [boom] } } }`, /spec\.retry\.retryOn\.triggers\[0\]: must be one of 5xx/],
    ['a keepalive under a second', `spec: { targetRefs: [{ kind: Service, name: w }], tcpKeepalive: { idleTime: 10ms } }`, /spec\.tcpKeepalive\.idleTime: must be at least 1000ms/],
  ];
  for (const [what, spec, re] of bad) {
    it(`names the field of ${what}`, () => {
      const r = one(`${head()}${spec}\n`);
      expect(r.object).toBeUndefined();
      expect(r.problems.length).toBeGreaterThan(0);
      expect(r.problems.map((p) => p.message).join('\n')).toMatch(re);
      expect(r.problems[0]).toMatchObject({ code: 'KW_INVALID_FIELD', file: '/m/btp.yaml', object: 'BackendTrafficPolicy shop/p' });
    });
  }
});

describe('the BackendTrafficPolicy CRD', () => {
  it('has the schema of the fields the parser reads, no more and no fewer', () => {
    const crd = parse(readFileSync(join(projectRoot(), 'deploy', 'crds', 'backendtrafficpolicy.yaml'), 'utf8'));
    expect(crd.spec.group).toBe('kernway.io');
    expect(crd.spec.names.kind).toBe('BackendTrafficPolicy');
    const v = crd.spec.versions[0];
    expect(v.name).toBe('v1alpha1');
    const spec = v.schema.openAPIV3Schema.properties.spec;
    type S = { properties: Record<string, S>; items: S };
    const keys = (o: S) => Object.keys(o.properties).sort();
    const F = TRAFFIC_POLICY_FIELDS;
    const sp = spec.properties as Record<string, S>;
    const pairs: [S, readonly string[]][] = [
      [spec, F.spec], [sp.targetRefs!.items, F.targetRef], [sp.circuitBreaker!, F.circuitBreaker], [sp.healthCheck!, F.healthCheck],
      [sp.healthCheck!.properties.passive!, F.passive], [sp.faultInjection!, F.faultInjection], [sp.faultInjection!.properties.delay!, F.delay],
      [sp.faultInjection!.properties.abort!, F.abort], [sp.rateLimit!, F.rateLimit], [sp.rateLimit!.properties.local!, F.local],
      [sp.rateLimit!.properties.local!.properties.rules!.items, F.rule], [sp.rateLimit!.properties.local!.properties.rules!.items.properties.clientSelectors!.items, F.clientSelector],
      [sp.rateLimit!.properties.local!.properties.rules!.items.properties.clientSelectors!.items.properties.headers!.items, F.header],
      [sp.rateLimit!.properties.local!.properties.rules!.items.properties.clientSelectors!.items.properties.sourceCIDR!, F.sourceCIDR],
      [sp.rateLimit!.properties.local!.properties.rules!.items.properties.limit!, F.limit],
      [sp.timeout!, F.timeout], [sp.timeout!.properties.tcp!, F.tcp], [sp.timeout!.properties.http!, F.http],
      [sp.retry!, F.retry], [sp.retry!.properties.retryOn!, F.retryOn], [sp.retry!.properties.perRetry!, F.perRetry],
      [sp.retry!.properties.perRetry!.properties.backOff!, F.backOff], [sp.retry!.properties.budget!, F.budget], [sp.tcpKeepalive!, F.tcpKeepalive],
    ];
    for (const [schema, fields] of pairs) expect(keys(schema)).toEqual([...fields].sort());
    // The CRD's duration pattern is the parser's.
    const re = new RegExp((sp.timeout!.properties.http!.properties.requestTimeout as unknown as { pattern: string }).pattern);
    expect(re.test('1h30m')).toBe(true);
    expect(re.test('1.5s')).toBe(false);
  });
});

describe('attachment, conflicts and status', () => {
  const world = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, ports: [{ port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web-route, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
`;
  it('puts the older policy in force, the other Conflicted; a missing target is TargetNotFound', () => {
    const objs = [
      ...src(world, '/m/a.yaml'),
      ...src(`${head('a-newer', 'shop', '2026-01-02T00:00:00Z')}spec: { targetRefs: [{ group: "", kind: Service, name: web }], circuitBreaker: { maxParallelRequests: 1 } }
---
${head('b-older', 'shop', '2026-01-01T00:00:00Z')}spec: { targetRefs: [{ group: "", kind: Service, name: web }, { group: "", kind: Service, name: gone }], circuitBreaker: { maxParallelRequests: 2 } }
`, '/m/b.yaml'),
    ];
    const model = buildModel(objs);
    expect(model.problems).toEqual([]);
    const att = attachTrafficPolicies(model);
    expect(att.byService.get('shop/web')?.meta.name).toBe('b-older');
    const older = att.status.find((s) => s.name === 'b-older')!;
    const newer = att.status.find((s) => s.name === 'a-newer')!;
    expect(older.ancestors[0]!.conditions).toEqual([
      expect.objectContaining({ type: 'Accepted', status: 'True', reason: 'Accepted' }),
      expect.objectContaining({ type: 'Conflicted', status: 'False' }),
    ]);
    expect(older.ancestors[1]).toMatchObject({ ancestorRef: { kind: 'Service', name: 'gone', namespace: 'shop' }, conditions: [{ type: 'Accepted', status: 'False', reason: 'TargetNotFound' }, { type: 'Conflicted', status: 'False' }] });
    expect(newer.ancestors[0]!.conditions).toEqual([
      expect.objectContaining({ type: 'Accepted', status: 'False', reason: 'Conflicted', message: expect.stringContaining('shop/b-older') }),
      expect.objectContaining({ type: 'Conflicted', status: 'True', reason: 'Conflicted' }),
    ]);
    // The waypoint's slice of the model carries the policies and their attachment (the feed sends it as is).
    const cfg = buildWaypointConfig(objs);
    expect(cfg.trafficPolicies.map((p) => p.meta.name)).toEqual(['a-newer', 'b-older']);
    expect(cfg.trafficAttachments.byService.get('shop/web')?.meta.name).toBe('b-older');
  });

  it('a route-level policy overrides a Service-level one field by field', () => {
    const objs = src(`${world}---
${head('svc')}spec:
  targetRefs: [{ group: "", kind: Service, name: web }]
  circuitBreaker: { maxConnections: 5, maxParallelRequests: 50 }
  timeout: { http: { requestTimeout: 5s, connectionIdleTimeout: 30s } }
  faultInjection: { delay: { fixedDelay: 1s, percentage: 10 } }
  rateLimit: { type: Local, local: { rules: [{ limit: { requests: 1, unit: Second } }] } }
---
${head('route')}spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web-route }]
  circuitBreaker: { maxParallelRequests: 7 }
  timeout: { http: { requestTimeout: 1s } }
  faultInjection: { abort: { httpStatus: 500, percentage: 1 } }
`);
    const att = attachTrafficPolicies(buildModel(objs));
    const m = mergeTrafficSettings(att.byService.get('shop/web')!.settings, att.byRoute.get('shop/web-route')!.settings)!;
    expect(m.circuitBreaker).toEqual({ maxConnections: 5, maxParallelRequests: 7 });
    expect(m.timeout).toEqual({ http: { requestTimeoutMs: 1000, connectionIdleTimeoutMs: 30000 } });
    expect(m.faultInjection).toEqual({ delay: { fixedDelayMs: 1000, percentage: 10 }, abort: { httpStatus: 500, percentage: 1 } });
    expect(m.rateLimit?.rules).toHaveLength(1);
    expect(mergeTrafficSettings(undefined, undefined)).toBeUndefined();
  });
});

describe('kernway routes shows the policies\' status', () => {
  it('prints status.ancestors with Accepted and Conflicted, and the JSON has them', async () => {
    const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { vi } = await import('vitest');
    const { main } = await import('../../cli/main.js');
    const dir = mkdtempSync(join(tmpdir(), 'kw-btp-routes-'));
    try {
      writeFileSync(join(dir, 'all.yaml'), `apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, ports: [{ port: 80 }] }
---
${head('second', 'shop', '2026-01-01T00:00:00Z')}spec: { targetRefs: [{ group: "", kind: Service, name: web }], circuitBreaker: { maxParallelRequests: 2 } }
---
${head('first', 'shop', '2026-01-02T00:00:00Z')}spec: { targetRefs: [{ group: "", kind: Service, name: web }, { group: gateway.networking.k8s.io, kind: HTTPRoute, name: nope }], faultInjection: { abort: { httpStatus: 500 } } }
`);
      const out: string[] = [];
      const log = vi.spyOn(console, 'log').mockImplementation((...x: unknown[]) => { out.push(x.join(' ')); });
      try {
        expect(await main(['routes', '--manifests', dir, '--namespace', 'shop'])).toBe(0);
        expect(await main(['routes', '--manifests', dir, '--namespace', 'shop', '--json'])).toBe(0);
      } finally { log.mockRestore(); }
      const text = out[0]!;
      // 'second' is older, so it wins although it sorts after 'first'.
      expect(text).toMatch(/BACKEND TRAFFIC POLICIES\n {2}BackendTrafficPolicy shop\/first[^\n]*\n {4}target Service shop\/web\n {6}Accepted=False {2}Conflicted: BackendTrafficPolicy shop\/second[^\n]*\n {6}Conflicted=True {2}Conflicted/);
      expect(text).toMatch(/target HTTPRoute shop\/nope\n {6}Accepted=False {2}TargetNotFound/);
      expect(text).toMatch(/BackendTrafficPolicy shop\/second[^\n]*\n {4}target Service shop\/web\n {6}Accepted=True {2}Accepted/);
      const report = JSON.parse(out[1]!) as { trafficPolicies: { name: string; ancestors: { conditions: { type: string; status: string; reason: string }[] }[] }[] };
      expect(report.trafficPolicies.map((p) => p.name)).toEqual(['first', 'second']);
      expect(report.trafficPolicies[0]!.ancestors[0]!.conditions[1]).toMatchObject({ type: 'Conflicted', status: 'True' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the bench policy', () => {
  it('is valid (bench/waypoint --policy measures a policy that applies)', async () => {
    const { BENCH_POLICY, waypointBenchManifests } = await import('../../bench/waypoint/run.js');
    const cfg = buildWaypointConfig(src(waypointBenchManifests() + BENCH_POLICY));
    expect(cfg.problems).toEqual([]);
    expect(cfg.trafficAttachments.byService.get('bench/echo')?.meta.name).toBe('echo');
  });
});

describe('status written back (the elected agent\'s status writer)', () => {
  it('clusterStatusOf carries status.ancestors; the merge keeps other controllers\' entries and transition times', async () => {
    const { clusterStatusOf } = await import('../../model/route-status.js');
    const { mergePolicyAncestors } = await import('../../agent/cluster/status-writer.js');
    const model = buildModel(src(`apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, ports: [{ port: 80 }] }
---
apiVersion: kernway.io/v1alpha1
kind: BackendTrafficPolicy
metadata: { name: p, namespace: shop, generation: 3 }
spec: { targetRefs: [{ group: "", kind: Service, name: web }], circuitBreaker: { maxParallelRequests: 2 } }
`));
    const st = clusterStatusOf(model).trafficPolicies!;
    expect(st).toHaveLength(1);
    expect(st[0]!.ancestors[0]!.conditions[0]).toMatchObject({ type: 'Accepted', status: 'True', reason: 'Accepted', observedGeneration: 3 });
    const other = { ancestorRef: { group: '', kind: 'Service', namespace: 'shop', name: 'web' }, controllerName: 'example.com/other', conditions: [] };
    const current = [other, { ...st[0]!.ancestors[0]!, conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', lastTransitionTime: '2026-01-01T00:00:00Z' }] }];
    const merged = mergePolicyAncestors(current, st[0]!.ancestors, '2026-02-02T00:00:00Z');
    expect(merged[0]).toEqual(other);
    expect(merged[1]!.conditions[0]).toMatchObject({ type: 'Accepted', lastTransitionTime: '2026-01-01T00:00:00Z' });
    expect(merged[1]!.conditions[1]).toMatchObject({ type: 'Conflicted', status: 'False', lastTransitionTime: '2026-02-02T00:00:00Z' });
  });
});
