import { describe, expect, it } from 'vitest';
import { parseCidr, addrBytes, cidrHas } from '../../k8s/cidr.js';
import { evaluateCompiled, PolicyCompiler, namespaceMatches, type Verdict } from '../../agent/datapath/policy-compile.js';
import { IdentityAllocator } from '../../model/identity.js';
import { ID_HOST, ID_WORLD, type AuthorizationPolicy, type Identity } from '../../k8s/policy-types.js';
import { parsePolicy, parseYaml, pod } from './helpers.js';

function policy(ns: string, name: string, spec: unknown): AuthorizationPolicy {
  const r = parsePolicy({ object: { apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec } as never, file: `/m/${name}.yaml`, index: 0 });
  if (!r.policy) throw new Error(r.problems.map((p) => p.message).join('; '));
  return r.policy;
}

/** Istio's semantics written plainly, straight from the policies: what the compiled tables must agree with. */
function reference(policies: AuthorizationPolicy[], dst: Identity, src: Identity | 'world' | 'host', srcIp: string, port: number, root = 'kernway-system'): Verdict {
  if (src === 'host') return 'allow';
  const addr = addrBytes(srcIp)!;
  const selected = policies.filter((p) => (p.namespace === dst.namespace || p.namespace === root) &&
    Object.entries(p.selector?.matchLabels ?? {}).every(([k, v]) => dst.labels[k] === v));
  const sourceMatches = (s: NonNullable<AuthorizationPolicy['rules'][number]['from']>[number]): boolean => {
    if (s.namespaces && (typeof src !== 'object' || !s.namespaces.some((n) => namespaceMatches(n, src.namespace)))) return false;
    if (s.serviceAccounts && (typeof src !== 'object' || !s.serviceAccounts.includes(`${src.namespace}/${src.serviceAccount}`))) return false;
    if (s.ipBlocks && !s.ipBlocks.some((b) => (b.bits >= 96) === (addr.subarray(0, 12).equals(Buffer.from('00000000000000000000ffff', 'hex'))) && cidrHas(b, addr))) return false;
    return true;
  };
  let l7deny = false, allowed = false, hold = false;
  for (const p of selected) for (const r of p.rules) {
    if (r.from && !r.from.some(sourceMatches)) continue;
    const ops = r.to ?? [{}];
    for (const op of ops) {
      if (op.ports && !op.ports.includes(port)) continue;
      const l7 = (r.when?.length ?? 0) > 0 || op.methods !== undefined || op.paths !== undefined || op.hosts !== undefined;
      if (p.action === 'DENY') { if (!l7) return 'deny'; l7deny = true; }
      else if (l7) hold = true; else allowed = true;
    }
  }
  if (l7deny) return 'deny-l7';
  if (selected.some((p) => p.action === 'ALLOW') && !allowed) return hold ? 'deny-l7' : 'deny';
  return 'allow';
}

describe('policy compilation', () => {
  const pods = [
    pod('shop', 'web', { labels: { app: 'web' }, sa: 'web', ips: ['10.0.0.10'] }),
    pod('shop', 'db', { labels: { app: 'db' }, sa: 'db', ips: ['10.0.0.11'] }),
    pod('front', 'client', { labels: { app: 'client' }, sa: 'client', ips: ['10.0.1.10', 'fd00::10'] }),
    pod('front', 'other', { labels: { app: 'other' }, sa: 'other', ips: ['10.0.1.11'] }),
    pod('prod-a', 'x', { labels: { app: 'x' }, ips: ['10.0.2.10'] }),
  ];
  const alloc = new IdentityAllocator();
  const ids = alloc.assign(pods);
  const ident = (k: string): Identity => ids.byPod.get(k)!;
  const web = ident('shop/web'), db = ident('shop/db'), client = ident('front/client'), other = ident('front/other'), prod = ident('prod-a/x');

  it('gives one identity per (namespace, service account, labels), and every address its identity', () => {
    expect(new Set([web.id, db.id, client.id, other.id, prod.id]).size).toBe(5);
    expect(ids.addresses.get('fd00::10')!.id).toBe(client.id);
    const again = alloc.assign([...pods, pod('shop', 'web2', { labels: { app: 'web', 'pod-template-hash': 'abc' }, sa: 'web', ips: ['10.0.0.12'] })]);
    expect(again.byPod.get('shop/web2')!.id).toBe(web.id); // per-rollout labels are not part of an identity
    expect(again.byPod.get('shop/web')!.id).toBe(web.id); // ids are stable
  });

  it('deny-all, then an ALLOW by service account admits exactly that client, and a DENY for its namespace overrides', () => {
    const c = new PolicyCompiler();
    const denyAll = policy('shop', 'deny-all', {});
    let r = c.compile({ identities: ids.identities, policies: [denyAll] });
    expect(r.workloads.get(web.id)!.mode).toBe('allow-listed');
    expect(evaluateCompiled(r, web.id, client.id, addrBytes('10.0.1.10')!, 80)).toBe('deny');
    expect(evaluateCompiled(r, client.id, web.id, addrBytes('10.0.0.10')!, 80)).toBe('allow'); // front is open

    const allowClient = policy('shop', 'allow-client', { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { serviceAccounts: ['front/client'] } }] }] });
    r = c.compile({ identities: ids.identities, policies: [denyAll, allowClient] });
    expect(evaluateCompiled(r, web.id, client.id, addrBytes('10.0.1.10')!, 80)).toBe('allow');
    expect(evaluateCompiled(r, web.id, other.id, addrBytes('10.0.1.11')!, 80)).toBe('deny');
    expect(evaluateCompiled(r, db.id, client.id, addrBytes('10.0.1.10')!, 80)).toBe('deny');
    expect(evaluateCompiled(r, web.id, ID_WORLD, addrBytes('192.0.2.1')!, 80)).toBe('deny');

    const denyFront = policy('shop', 'deny-front', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['front'] } }] }] });
    r = c.compile({ identities: ids.identities, policies: [denyAll, allowClient, denyFront] });
    expect(evaluateCompiled(r, web.id, client.id, addrBytes('10.0.1.10')!, 80)).toBe('deny');
  });

  it('honours ports and ipBlocks (IPv4 and IPv6 kept apart)', () => {
    const c = new PolicyCompiler();
    const p = policy('shop', 'p', { selector: { matchLabels: { app: 'web' } }, rules: [
      { from: [{ source: { ipBlocks: ['10.0.1.0/24'] } }], to: [{ operation: { ports: ['8080'] } }] },
      { from: [{ source: { ipBlocks: ['::/0'] } }] },
    ] });
    const r = c.compile({ identities: ids.identities, policies: [p] });
    expect(evaluateCompiled(r, web.id, client.id, addrBytes('10.0.1.10')!, 8080)).toBe('allow');
    expect(evaluateCompiled(r, web.id, client.id, addrBytes('10.0.1.10')!, 80)).toBe('deny');
    expect(evaluateCompiled(r, web.id, ID_WORLD, addrBytes('10.0.3.1')!, 8080)).toBe('deny');
    // ::/0 is every IPv6 address, not the IPv4 ones written as ::ffff:a.b.c.d
    expect(evaluateCompiled(r, web.id, ID_WORLD, addrBytes('2001:db8::1')!, 1)).toBe('allow');
    expect(evaluateCompiled(r, web.id, ID_WORLD, addrBytes('192.0.2.1')!, 1)).toBe('deny');
    expect(r.cidrs.map((x) => x.cidr.text).sort()).toEqual(['0.0.0.0/0', '10.0.1.0/24', '::/0']);
  });

  it('fails safe on L7 rules without a waypoint, and lets the waypoint through when there is one', () => {
    const c = new PolicyCompiler();
    const allowL7 = policy('shop', 'l7', { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { namespaces: ['front'] } }], to: [{ operation: { methods: ['GET'] } }] }] });
    const denyL7 = policy('shop', 'l7deny', { selector: { matchLabels: { app: 'db' } }, action: 'DENY', rules: [{ to: [{ operation: { ports: ['5432'], paths: ['/x'] } }] }] });
    let r = c.compile({ identities: ids.identities, policies: [allowL7, denyL7] });
    expect(evaluateCompiled(r, web.id, client.id, addrBytes('10.0.1.10')!, 80)).toBe('deny-l7');
    expect(evaluateCompiled(r, db.id, client.id, addrBytes('10.0.1.10')!, 5432)).toBe('deny-l7');
    expect(evaluateCompiled(r, db.id, client.id, addrBytes('10.0.1.10')!, 80)).toBe('allow');
    expect(r.policies.get('shop/l7')!.enforcement).toBe('not-enforceable');
    expect(r.problems.map((p) => p.code)).toEqual(['KW_POLICY_L7_NOT_ENFORCEABLE', 'KW_POLICY_L7_NOT_ENFORCEABLE']);
    expect(r.problems[0]!.message).toMatch(/methods: L7 fields need a waypoint/);

    // A waypoint in shop whose pods have identity `prod`'s id (any identity will do for the test).
    r = c.compile({ identities: ids.identities, policies: [allowL7, denyL7], waypoints: new Map([['shop', [prod.id]]]) });
    expect(r.policies.get('shop/l7')!.enforcement).toBe('kernel+waypoint');
    expect(evaluateCompiled(r, web.id, prod.id, addrBytes('10.0.2.10')!, 80)).toBe('allow');
    // A direct connection that bypasses the waypoint is simply not admitted.
    expect(evaluateCompiled(r, web.id, client.id, addrBytes('10.0.1.10')!, 80)).toBe('deny');
    expect(evaluateCompiled(r, db.id, prod.id, addrBytes('10.0.2.10')!, 5432)).toBe('allow');
    expect(evaluateCompiled(r, db.id, client.id, addrBytes('10.0.1.10')!, 5432)).toBe('deny-l7');
  });

  it('lets the node through (identity host) and applies root-namespace policies everywhere', () => {
    const c = new PolicyCompiler();
    const meshDeny = policy('kernway-system', 'mesh', {});
    const r = c.compile({ identities: ids.identities, policies: [meshDeny] });
    expect(evaluateCompiled(r, client.id, web.id, addrBytes('10.0.0.10')!, 80)).toBe('deny');
    expect(evaluateCompiled(r, client.id, ID_HOST, addrBytes('10.0.0.1')!, 80)).toBe('allow');
    expect(evaluateCompiled(r, client.id, ID_HOST, addrBytes('10.0.0.1')!, 80, { allowHost: false })).toBe('deny');
  });

  it('shares one table between workloads with the same policies, and keeps class ids across compilations', () => {
    const c = new PolicyCompiler();
    const denyAll = policy('front', 'deny-all', {});
    const p1 = policy('shop', 'p1', { rules: [{ from: [{ source: { ipBlocks: ['10.9.0.0/16'] } }] }] });
    const r1 = c.compile({ identities: ids.identities, policies: [denyAll, p1] });
    expect(r1.destinations.get(client.id)!.table).toBe(r1.destinations.get(other.id)!.table);
    expect(r1.tables.size).toBe(2);
    const cls = r1.cidrs.find((x) => x.cidr.text === '10.9.0.0/16')!.cls;
    const p2 = policy('shop', 'p2', { rules: [{ from: [{ source: { ipBlocks: ['10.8.0.0/16'] } }] }] });
    const r2 = c.compile({ identities: ids.identities, policies: [denyAll, p1, p2] });
    expect(r2.cidrs.find((x) => x.cidr.text === '10.9.0.0/16')!.cls).toBe(cls);
  });

  it('agrees with the reference semantics on random policies, sources and ports', () => {
    let seed = 12345;
    const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)]!;
    const nss = ['shop', 'front', 'prod-a'];
    const blocks = ['10.0.0.0/8', '10.0.1.0/24', '10.0.1.10/32', '10.0.0.0/16', '192.0.2.0/24', '::/0', 'fd00::/8', '0.0.0.0/0'];
    const ports = [80, 443, 8080];
    const all = [web, db, client, other, prod];
    const addrs: [Identity | 'world' | 'host', string][] = [
      [web, '10.0.0.10'], [db, '10.0.0.11'], [client, '10.0.1.10'], [client, 'fd00::10'], [other, '10.0.1.11'], [prod, '10.0.2.10'],
      ['world', '192.0.2.7'], ['world', '10.200.0.1'], ['world', '2001:db8::5'], ['host', '10.0.0.1'],
    ];
    for (let round = 0; round < 60; round++) {
      const policies: AuthorizationPolicy[] = [];
      const count = 1 + rnd(5);
      for (let i = 0; i < count; i++) {
        const rules = [];
        for (let j = rnd(3); j > 0; j--) {
          const rule: Record<string, unknown> = {};
          if (rnd(3) > 0) {
            const src: Record<string, unknown> = {};
            if (rnd(2)) src.namespaces = [pick([...nss, 'prod-*', '*'])];
            if (rnd(3) === 0) src.serviceAccounts = [`${pick(nss)}/${pick(['web', 'db', 'client', 'other', 'default'])}`];
            if (rnd(2)) src.ipBlocks = [pick(blocks), ...(rnd(2) ? [pick(blocks)] : [])];
            rule.from = [{ source: Object.keys(src).length ? src : { namespaces: ['*'] } }];
          }
          if (rnd(2)) rule.to = [{ operation: { ports: [String(pick(ports))], ...(rnd(4) === 0 ? { methods: ['GET'] } : {}) } }];
          rules.push(rule);
        }
        const spec: Record<string, unknown> = { rules };
        if (rnd(3) === 0) spec.action = 'DENY';
        if (rnd(2)) spec.selector = { matchLabels: { app: pick(['web', 'db', 'client', 'x']) } };
        policies.push(policy(pick([...nss, 'kernway-system']), `p${i}`, spec));
      }
      const r = new PolicyCompiler().compile({ identities: ids.identities, policies });
      for (const dst of all) for (const [src, ip] of addrs) for (const port of ports) {
        const srcId = src === 'world' ? ID_WORLD : src === 'host' ? ID_HOST : src.id;
        const got = evaluateCompiled(r, dst.id, srcId, addrBytes(ip)!, port);
        const want = reference(policies, dst, src, ip, port);
        if (got !== want) throw new Error(`round ${round}: ${dst.namespace}/${JSON.stringify(dst.labels)} <- ${typeof src === 'object' ? src.namespace + '/' + src.serviceAccount : src} ${ip}:${port}: compiled ${got}, reference ${want}\n${JSON.stringify(policies.map((p) => [p.key, p.action, p.selector, p.rules.map((x) => ({ from: x.from?.map((s) => ({ ...s, ipBlocks: s.ipBlocks?.map((b) => b.text) })), to: x.to }))]), null, 1)}`);
      }
    }
  });

  it('parses CIDRs into the 128-bit space', () => {
    const r = parseCidr('10.1.0.0/16');
    expect('cidr' in r && r.cidr.bits).toBe(112);
    expect(cidrHas((r as { cidr: import('../../k8s/policy-types.js').Cidr }).cidr, addrBytes('10.1.200.3')!)).toBe(true);
    void parseYaml;
  });
});
