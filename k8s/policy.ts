/**
 * AuthorizationPolicy (kernway.io/v1alpha1) checked and normalised. Modelled on Istio's
 * security.istio.io AuthorizationPolicy; the format is in docs/policy.md and in the CRD
 * (deploy/crds/authorizationpolicy.yaml).
 *
 * Every problem names the file, the object and the field (spec.rules[0].from[1].source.
 * ipBlocks[2]). A field kernway does not know is an error, not ignored: a policy that is
 * silently weaker than its author thinks is the worst outcome for a security control.
 * Parsing is memoised on the raw object, so an unchanged file costs nothing.
 */
import { Checker, isDnsLabel, isDnsSubdomain, isRecord } from './check.js';
import { parseLabelSelector, selectsAll } from './selector.js';
import type { ParseResult, SourcedObject } from './types.js';
import { describe } from '../common/errors.js';
import { parseCidr } from './cidr.js';
import {
  IDENTITY_IGNORED_LABELS,
  type AuthorizationPolicy, type Cidr, type PolicyAction, type PolicyCondition, type PolicyOperation, type PolicyRule, type PolicySource,
} from './policy-types.js';

type Parsed = ParseResult<{ kind: 'AuthorizationPolicy'; value: AuthorizationPolicy }>;

const HEADER_KEY = /^request\.headers\[[A-Za-z0-9!#$%&'*+\-.^_`|~]+\]$/;
const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

/** The fields kernway reads, by object (the CRD's schema lists the same; a test keeps them equal). */
export const POLICY_FIELDS = {
  spec: ['selector', 'action', 'rules'],
  selector: ['matchLabels', 'matchExpressions'],
  rule: ['from', 'to', 'when'],
  from: ['source'],
  source: ['namespaces', 'serviceAccounts', 'ipBlocks'],
  to: ['operation'],
  operation: ['ports', 'methods', 'paths', 'hosts'],
  when: ['key', 'values'],
} as const;

/** Fields Istio has and kernway does not, with what to use instead. */
const UNSUPPORTED: Record<string, string> = {
  targetRef: 'select workloads with spec.selector',
  targetRefs: 'select workloads with spec.selector',
  provider: 'CUSTOM actions are not supported',
  principals: 'use serviceAccounts: ["namespace/name"]',
  notPrincipals: 'write a DENY policy instead',
  requestPrincipals: 'request principals (JWT) are not supported',
  notRequestPrincipals: 'request principals (JWT) are not supported',
  notNamespaces: 'write a DENY policy instead',
  notServiceAccounts: 'write a DENY policy instead',
  notIpBlocks: 'write a DENY policy instead',
  remoteIpBlocks: 'kernway matches the connection\'s source address: use ipBlocks',
  notRemoteIpBlocks: 'write a DENY policy with ipBlocks instead',
  notPorts: 'write a DENY policy instead',
  notMethods: 'write a DENY policy instead',
  notPaths: 'write a DENY policy instead',
  notHosts: 'write a DENY policy instead',
  notValues: 'write a DENY policy instead',
};

class PolicyChecker extends Checker {
  /** Flags every key of `o` not in `known`. */
  only(o: Record<string, unknown>, field: string, known: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (known.includes(k)) continue;
      const f = field === '' ? k : `${field}.${k}`;
      const hint = UNSUPPORTED[k];
      this.fail(f, hint ? `is not supported by kernway (${hint})` : `unknown field (known here: ${known.join(', ')})`);
    }
  }

  /** A mapping that must be there when the key is present. */
  object(v: unknown, field: string): Record<string, unknown> | undefined {
    if (isRecord(v)) return v;
    this.fail(field, `must be a mapping, got ${describe(v)}`);
    return undefined;
  }

  /** An optional list of non-empty strings; present means non-empty (omit the field to match anything). */
  strings(v: unknown, field: string): string[] | undefined {
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v)) { this.fail(field, `must be a list of strings, got ${describe(v)}`); return undefined; }
    if (v.length === 0) { this.fail(field, 'must not be empty (omit the field to match anything)'); return undefined; }
    const out: string[] = [];
    v.forEach((x, i) => {
      if (typeof x === 'string' && x !== '') out.push(x);
      else this.fail(`${field}[${i}]`, `must be a non-empty string, got ${describe(x)}`);
    });
    return out;
  }

  /** An optional non-empty list of mappings. */
  objects(v: unknown, field: string): Record<string, unknown>[] | undefined {
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v)) { this.fail(field, `must be a list, got ${describe(v)}`); return undefined; }
    if (v.length === 0) { this.fail(field, 'must not be empty (omit the field to match anything)'); return undefined; }
    const out: Record<string, unknown>[] = [];
    v.forEach((x, i) => { const o = this.object(x, `${field}[${i}]`); if (o) out.push(o); });
    return out;
  }
}

/** Check and normalise one AuthorizationPolicy (the registry, kinds.ts, memoises it). */
export function parseAuthorizationPolicy(src: SourcedObject): Parsed {
  const o = src.object;
  const namespace = o.metadata.namespace ?? 'default';
  const name = o.metadata.name;
  const c = new PolicyChecker(src, namespace);
  c.dnsLabel(namespace, 'metadata.namespace');
  c.dnsSubdomain(name, 'metadata.name');
  c.only(o, '', ['apiVersion', 'kind', 'metadata', 'spec', 'status']);

  // An absent or empty spec is valid: ALLOW with no rule, which admits nothing.
  const spec = o.spec === undefined || o.spec === null ? {} : c.object(o.spec, 'spec') ?? {};
  c.only(spec, 'spec', POLICY_FIELDS.spec);

  let selector: AuthorizationPolicy['selector'];
  if (spec.selector !== undefined && spec.selector !== null) {
    const sel = c.object(spec.selector, 'spec.selector');
    if (sel) {
      c.only(sel, 'spec.selector', POLICY_FIELDS.selector);
      selector = parseLabelSelector(c, sel, 'spec.selector', {
        checkKey: (ch, k, f) => {
          if (IDENTITY_IGNORED_LABELS.has(k)) ch.fail(f, `selects by a per-pod or per-rollout label, which kernway leaves out of workload identities; select by a stable label`);
        },
      });
      if (selector !== undefined && selectsAll(selector)) selector = undefined;
    }
  }

  let action: PolicyAction = 'ALLOW';
  if (spec.action !== undefined && spec.action !== null && spec.action !== '') {
    if (spec.action === 'ALLOW' || spec.action === 'DENY') action = spec.action;
    else if (spec.action === 'AUDIT' || spec.action === 'CUSTOM') c.fail('spec.action', `${spec.action} is not supported by kernway (ALLOW or DENY)`);
    else c.fail('spec.action', `must be "ALLOW" or "DENY", got ${describe(spec.action)}`);
  }

  const rules: PolicyRule[] = [];
  if (spec.rules !== undefined && spec.rules !== null) {
    if (!Array.isArray(spec.rules)) c.fail('spec.rules', `must be a list, got ${describe(spec.rules)}`);
    else spec.rules.forEach((rr, i) => {
      const r = parseRule(c, rr, `spec.rules[${i}]`, namespace);
      if (r) rules.push(r);
    });
  }

  if (!c.ok) return { object: undefined, problems: c.problems };
  return {
    object: { kind: 'AuthorizationPolicy', value: Object.freeze({
      namespace, name, key: `${namespace}/${name}`, selector,
      action, rules, origin: { file: src.file, index: src.index },
    }) },
    problems: [],
  };
}

function parseRule(c: PolicyChecker, rr: unknown, f: string, namespace: string): PolicyRule | undefined {
  const r = c.object(rr, f);
  if (!r) return undefined;
  c.only(r, f, POLICY_FIELDS.rule);
  const l7Fields: string[] = [];
  const rule: PolicyRule = { l7Fields };

  const froms = c.objects(r.from, `${f}.from`);
  if (froms) {
    const from: PolicySource[] = [];
    froms.forEach((fr, j) => {
      const ff = `${f}.from[${j}]`;
      c.only(fr, ff, POLICY_FIELDS.from);
      if (fr.source === undefined || fr.source === null) { c.fail(`${ff}.source`, 'is required'); return; }
      const s = c.object(fr.source, `${ff}.source`);
      if (s) from.push(parseSource(c, s, `${ff}.source`, namespace));
    });
    rule.from = from;
  }

  const tos = c.objects(r.to, `${f}.to`);
  if (tos) {
    const to: PolicyOperation[] = [];
    tos.forEach((tr, j) => {
      const tf = `${f}.to[${j}]`;
      c.only(tr, tf, POLICY_FIELDS.to);
      if (tr.operation === undefined || tr.operation === null) { c.fail(`${tf}.operation`, 'is required'); return; }
      const op = c.object(tr.operation, `${tf}.operation`);
      if (op) to.push(parseOperation(c, op, `${tf}.operation`, l7Fields));
    });
    rule.to = to;
  }

  const whens = c.objects(r.when, `${f}.when`);
  if (whens) {
    const when: PolicyCondition[] = [];
    whens.forEach((w, j) => {
      const wf = `${f}.when[${j}]`;
      c.only(w, wf, POLICY_FIELDS.when);
      if (typeof w.key !== 'string' || !HEADER_KEY.test(w.key)) {
        c.fail(`${wf}.key`, `must be request.headers[<header name>] (the only condition kernway supports), got ${describe(w.key)}`);
        return;
      }
      const values = c.strings(w.values, `${wf}.values`);
      if (values === undefined && (w.values === undefined || w.values === null)) c.fail(`${wf}.values`, 'is required');
      when.push({ key: w.key, values: values ?? [] });
      l7Fields.push(wf);
    });
    rule.when = when;
  }
  return rule;
}

function parseSource(c: PolicyChecker, s: Record<string, unknown>, f: string, namespace: string): PolicySource {
  c.only(s, f, POLICY_FIELDS.source);
  const out: PolicySource = {};
  const namespaces = c.strings(s.namespaces, `${f}.namespaces`);
  if (namespaces) {
    namespaces.forEach((ns, k) => {
      if (!validNamespacePattern(ns)) c.fail(`${f}.namespaces[${k}]`, `must be a namespace name, or a pattern with '*' at the start or the end (prod-*, *-test, *), got ${describe(ns)}`);
    });
    out.namespaces = namespaces;
  }
  const sas = c.strings(s.serviceAccounts, `${f}.serviceAccounts`);
  if (sas) {
    sas.forEach((sa, k) => {
      const parts = sa.split('/');
      const ok = parts.length === 2 && isDnsLabel(parts[0]!) && isDnsSubdomain(parts[1]!);
      if (!ok) {
        const hint = parts.length === 1 && isDnsSubdomain(sa) ? ` (did you mean ${namespace}/${sa}?)` : '';
        c.fail(`${f}.serviceAccounts[${k}]`, `must be NAMESPACE/NAME, got ${describe(sa)}${hint}`);
      }
    });
    out.serviceAccounts = sas;
  }
  const blocks = c.strings(s.ipBlocks, `${f}.ipBlocks`);
  if (blocks) {
    const ipBlocks: Cidr[] = [];
    blocks.forEach((b, k) => {
      const r = parseCidr(b);
      if ('error' in r) c.fail(`${f}.ipBlocks[${k}]`, r.error);
      else ipBlocks.push(r.cidr);
    });
    out.ipBlocks = ipBlocks;
  }
  return out;
}

function parseOperation(c: PolicyChecker, op: Record<string, unknown>, f: string, l7Fields: string[]): PolicyOperation {
  c.only(op, f, POLICY_FIELDS.operation);
  const out: PolicyOperation = {};
  if (op.ports !== undefined && op.ports !== null) {
    if (!Array.isArray(op.ports)) c.fail(`${f}.ports`, `must be a list of ports, got ${describe(op.ports)}`);
    else if (op.ports.length === 0) c.fail(`${f}.ports`, 'must not be empty (omit the field to match any port)');
    else {
      const ports: number[] = [];
      op.ports.forEach((p, k) => {
        // Istio writes ports as strings ("8080"); numbers are accepted too.
        const n = typeof p === 'number' ? p : typeof p === 'string' && /^[0-9]{1,5}$/.test(p) ? Number(p) : NaN;
        if (!Number.isInteger(n) || n < 1 || n > 65535) c.fail(`${f}.ports[${k}]`, `must be a port number from 1 to 65535 (port ranges and names are not supported), got ${describe(p)}`);
        else if (!ports.includes(n)) ports.push(n);
      });
      out.ports = ports;
    }
  }
  const methods = c.strings(op.methods, `${f}.methods`);
  if (methods) {
    methods.forEach((m, k) => { if (m !== '*' && !HTTP_METHODS.includes(m.toUpperCase())) c.fail(`${f}.methods[${k}]`, `must be an HTTP method (${HTTP_METHODS.join(', ')}), got ${describe(m)}`); });
    out.methods = methods;
    l7Fields.push(`${f}.methods`);
  }
  const paths = c.strings(op.paths, `${f}.paths`);
  if (paths) {
    paths.forEach((p, k) => {
      const stars = p.split('*').length - 1;
      const ok = p === '*' || (stars === 0 && p.startsWith('/')) || (stars === 1 && (p.endsWith('*') ? p.startsWith('/') : p.startsWith('*')));
      if (!ok) c.fail(`${f}.paths[${k}]`, `must be an exact path (/a), a prefix (/a/*), a suffix (*.png) or '*', got ${describe(p)}`);
    });
    out.paths = paths;
    l7Fields.push(`${f}.paths`);
  }
  const hosts = c.strings(op.hosts, `${f}.hosts`);
  if (hosts) {
    out.hosts = hosts;
    l7Fields.push(`${f}.hosts`);
  }
  return out;
}

/** A namespace name, '*', or a pattern with one '*' at the start or the end (Istio's prefix/suffix match). */
export function validNamespacePattern(ns: string): boolean {
  if (ns === '*') return true;
  let core = ns;
  if (core.startsWith('*')) core = core.slice(1);
  else if (core.endsWith('*')) core = core.slice(0, -1);
  if (core.includes('*') || core === '' || core.length > 63) return false;
  return core === ns ? isDnsLabel(ns) : /^[a-z0-9-]+$/.test(core);
}
