import { describe, expect, it } from 'vitest';
import { parsePolicy, parseYaml } from '../policy/helpers.js';
import { kindOf, validateObject } from '../../k8s/kinds.js';

function parse(yaml: string, file = '/m/policy.yaml') {
  return parsePolicy(parseYaml(yaml, file));
}

describe('AuthorizationPolicy parsing', () => {
  it('reads a full policy and applies the defaults', () => {
    const r = parse(`
apiVersion: kernway.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: web, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  rules:
  - from:
    - source: { namespaces: [front, "prod-*"], serviceAccounts: [front/client], ipBlocks: ["10.1.0.0/16", "fd00::1"] }
    to:
    - operation: { ports: ["8080", 9090] }
`);
    expect(r.problems).toEqual([]);
    const p = r.policy!;
    expect(p.key).toBe('shop/web');
    expect(p.action).toBe('ALLOW');
    expect(p.selector).toEqual({ matchLabels: { app: 'web' }, matchExpressions: [] });
    const src = p.rules[0]!.from![0]!;
    expect(src.namespaces).toEqual(['front', 'prod-*']);
    expect(src.serviceAccounts).toEqual(['front/client']);
    expect(src.ipBlocks!.map((b) => [b.text, b.bits])).toEqual([['10.1.0.0/16', 112], ['fd00::1/128', 128]]);
    expect(p.rules[0]!.to![0]!.ports).toEqual([8080, 9090]);
    expect(p.rules[0]!.l7Fields).toEqual([]);
  });

  it('takes an empty spec as ALLOW with no rule (admits nothing) for the whole namespace', () => {
    const r = parse('apiVersion: kernway.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: { name: deny-all, namespace: shop }\nspec: {}\n');
    expect(r.problems).toEqual([]);
    expect(r.policy).toMatchObject({ action: 'ALLOW', rules: [], selector: undefined });
  });

  it('marks L7 fields and keeps them', () => {
    const r = parse(`
apiVersion: kernway.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: l7, namespace: shop }
spec:
  action: DENY
  rules:
  - to: [ { operation: { ports: ["80"], methods: [POST], paths: ["/admin/*"] } } ]
    when: [ { key: "request.headers[x-user]", values: [bob] } ]
`);
    expect(r.problems).toEqual([]);
    expect(r.policy!.rules[0]!.l7Fields).toEqual([
      'spec.rules[0].to[0].operation.methods', 'spec.rules[0].to[0].operation.paths', 'spec.rules[0].when[0]',
    ]);
  });

  const bad: [string, string, RegExp][] = [
    ['unknown field', 'rules: [ { from: [ { source: { namespace: [a] } } ] } ]', /spec\.rules\[0\]\.from\[0\]\.source\.namespace: unknown field/],
    ['unknown spec field', 'selectr: { matchLabels: { a: b } }', /^spec\.selectr: unknown field/],
    ['Istio field kernway lacks', 'rules: [ { from: [ { source: { principals: [x] } } ] } ]', /source\.principals: is not supported by kernway \(use serviceAccounts/],
    ['bad CIDR', 'rules: [ { from: [ { source: { ipBlocks: ["10.0.0.0/33"] } } ] } ]', /source\.ipBlocks\[0\]: prefix length must be an integer from 0 to 32/],
    ['not an address', 'rules: [ { from: [ { source: { ipBlocks: ["10.0.0.300"] } } ] } ]', /source\.ipBlocks\[0\]: must be an IPv4 or IPv6 address or CIDR block/],
    ['host bits', 'rules: [ { from: [ { source: { ipBlocks: ["10.0.0.5/8"] } } ] } ]', /has host bits set.*did you mean 10\.0\.0\.0\/8/],
    ['bad port', 'rules: [ { to: [ { operation: { ports: ["http"] } } ] } ]', /spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]: must be a port number from 1 to 65535/],
    ['port out of range', 'rules: [ { to: [ { operation: { ports: [70000] } } ] } ]', /ports\[0\]: must be a port number/],
    ['bad action', 'action: AUDIT', /spec\.action: AUDIT is not supported/],
    ['service account without namespace', 'rules: [ { from: [ { source: { serviceAccounts: [client] } } ] } ]', /serviceAccounts\[0\]: must be NAMESPACE\/NAME, got "client" \(did you mean shop\/client\?\)/],
    ['empty list', 'rules: [ { from: [ { source: { namespaces: [] } } ] } ]', /namespaces: must not be empty/],
    ['source missing', 'rules: [ { from: [ { } ] } ]', /from\[0\]\.source: is required/],
    ['bad condition', 'rules: [ { when: [ { key: "source.ip", values: [x] } ] } ]', /when\[0\]\.key: must be request\.headers/],
    ['selector on a per-pod label', 'selector: { matchLabels: { pod-template-hash: abc } }', /per-pod or per-rollout label/],
  ];
  for (const [what, spec, re] of bad) {
    it(`rejects ${what}, naming the file and the field`, () => {
      const yaml = `apiVersion: kernway.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: { name: p, namespace: shop }\nspec:\n  ${spec}\n`;
      const src = parseYaml(yaml, '/m/bad.yaml');
      const problems = validateObject(src);
      expect(problems.length).toBeGreaterThan(0);
      expect(problems[0]!.file).toBe('/m/bad.yaml');
      expect(problems[0]!.object).toBe('AuthorizationPolicy shop/p');
      expect(problems.map((p) => p.message).join('\n')).toMatch(re);
      expect(parsePolicy(src).policy).toBeUndefined();
    });
  }

  it('leaves other kinds and API groups alone', () => {
    expect(kindOf({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy' })).toBeUndefined();
    const src = parseYaml('apiVersion: v1\nkind: ConfigMap\nmetadata: { name: x }\n', '/m/cm.yaml');
    expect(validateObject(src)).toEqual([]);
    expect(parsePolicy(src).policy).toBeUndefined();
  });
});

describe('the CRD manifest', () => {
  it('has the schema of the fields the agent reads, no more and no fewer', async () => {
    const { readFileSync } = await import('node:fs');
    const { parse } = await import('yaml');
    const { join } = await import('node:path');
    const { projectRoot } = await import('../../common/version.js');
    const { POLICY_FIELDS } = await import('../../k8s/policy.js');
    const crd = parse(readFileSync(join(projectRoot(), 'deploy', 'crds', 'authorizationpolicy.yaml'), 'utf8'));
    expect(crd.spec.group).toBe('kernway.io');
    expect(crd.spec.names.kind).toBe('AuthorizationPolicy');
    const v = crd.spec.versions[0];
    expect(v.name).toBe('v1alpha1');
    const spec = v.schema.openAPIV3Schema.properties.spec;
    const rule = spec.properties.rules.items;
    const from = rule.properties.from.items;
    const to = rule.properties.to.items;
    const keys = (o: { properties: Record<string, unknown> }) => Object.keys(o.properties).sort();
    expect(keys(spec)).toEqual([...POLICY_FIELDS.spec].sort());
    expect(keys(spec.properties.selector)).toEqual([...POLICY_FIELDS.selector].sort());
    expect(keys(rule)).toEqual([...POLICY_FIELDS.rule].sort());
    expect(keys(from)).toEqual([...POLICY_FIELDS.from].sort());
    expect(keys(from.properties.source)).toEqual([...POLICY_FIELDS.source].sort());
    expect(keys(to)).toEqual([...POLICY_FIELDS.to].sort());
    expect(keys(to.properties.operation)).toEqual([...POLICY_FIELDS.operation].sort());
    expect(keys(rule.properties.when.items)).toEqual([...POLICY_FIELDS.when].sort());
    expect(spec.properties.action.enum).toEqual(['ALLOW', 'DENY']);
    // The CRD's service account pattern accepts what the parser accepts.
    const re = new RegExp(from.properties.source.properties.serviceAccounts.items.pattern);
    expect(re.test('front/client')).toBe(true);
    expect(re.test('client')).toBe(false);
  });
});
