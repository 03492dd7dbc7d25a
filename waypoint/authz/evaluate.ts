/**
 * L7 authorization at the waypoint: kernway's AuthorizationPolicy (k8s/policy.ts, one
 * format for the kernel and the waypoint), evaluated in full (sources, ports, methods,
 * paths, hosts, header conditions) for the workload a request is about to reach, with
 * Istio's semantics: a matching DENY rule refuses; else, when an ALLOW policy selects the
 * workload, one of its rules must match; else the request is allowed.
 *
 * The kernel enforces the L4 parts and lets the waypoint through where rules have L7
 * parts (agent/datapath/policy-compile.ts); the waypoint checks the rest here.
 */
import { selectorMatches } from '../../k8s/selector.js';
import { addrBytes, cidrHas } from '../../k8s/cidr.js';
import type { AuthorizationPolicy, PolicyOperation, PolicyRule, PolicySource } from '../../k8s/policy-types.js';

/** Who is calling, from the TCP peer's address mapped through Pods (never from headers). */
export interface Caller {
  address: string;
  namespace: string | undefined;
  /** 'ns/name' */
  serviceAccount: string | undefined;
}

/** The workload a request goes to (the backend Pod), or its namespace alone when the Pod is unknown. */
export interface Destination {
  namespace: string;
  labels: Readonly<Record<string, string>>;
  /** The port on the workload (the endpoint's port). */
  port: number;
}

export interface AuthzRequest {
  caller: Caller;
  method: string;
  /** Normalised path, without the query. */
  path: string;
  /** Request host, lower case, without port. */
  host: string | undefined;
  header(name: string): string | undefined;
}

export interface Decision {
  allowed: boolean;
  /** The deciding policy: the DENY that matched, the ALLOW that matched, or the ALLOW policies none of which matched. */
  policy: string | undefined;
}

const ALLOWED: Decision = Object.freeze({ allowed: true, policy: undefined });

export class AuthzTable {
  private readonly byNamespace = new Map<string, AuthorizationPolicy[]>();

  constructor(policies: readonly AuthorizationPolicy[]) {
    for (const p of policies) {
      let list = this.byNamespace.get(p.namespace);
      if (!list) this.byNamespace.set(p.namespace, (list = []));
      list.push(p);
    }
  }

  get empty(): boolean {
    return this.byNamespace.size === 0;
  }

  evaluate(dest: Destination, req: AuthzRequest): Decision {
    const list = this.byNamespace.get(dest.namespace);
    if (!list) return ALLOWED;
    let allowPolicies: string[] | undefined;
    for (const p of list) {
      if (p.action !== 'DENY' || !selects(p, dest.labels)) continue;
      if (p.rules.some((r) => ruleMatches(r, dest, req))) return { allowed: false, policy: p.key };
    }
    for (const p of list) {
      if (p.action !== 'ALLOW' || !selects(p, dest.labels)) continue;
      if (p.rules.some((r) => ruleMatches(r, dest, req))) return { allowed: true, policy: p.key };
      (allowPolicies ??= []).push(p.key);
    }
    return allowPolicies ? { allowed: false, policy: allowPolicies.join(',') } : ALLOWED;
  }
}

function selects(p: AuthorizationPolicy, labels: Readonly<Record<string, string>>): boolean {
  return p.selector === undefined || selectorMatches(p.selector, labels);
}

export function ruleMatches(r: PolicyRule, dest: Destination, req: AuthzRequest): boolean {
  if (r.from && !r.from.some((s) => sourceMatches(s, req.caller))) return false;
  if (r.to && !r.to.some((o) => operationMatches(o, dest, req))) return false;
  if (r.when) {
    for (const w of r.when) {
      const name = w.key.slice('request.headers['.length, -1).toLowerCase();
      const v = req.header(name);
      if (v === undefined || !w.values.some((p) => patternMatches(p, v))) return false;
    }
  }
  return true;
}

function sourceMatches(s: PolicySource, c: Caller): boolean {
  if (s.namespaces && (c.namespace === undefined || !s.namespaces.some((p) => patternMatches(p, c.namespace!)))) return false;
  if (s.serviceAccounts && (c.serviceAccount === undefined || !s.serviceAccounts.includes(c.serviceAccount))) return false;
  if (s.ipBlocks) {
    const a = addrBytes(c.address);
    if (!a || !s.ipBlocks.some((b) => cidrHas(b, a))) return false;
  }
  return true;
}

function operationMatches(o: PolicyOperation, dest: Destination, req: AuthzRequest): boolean {
  if (o.ports && !o.ports.includes(dest.port)) return false;
  if (o.methods && !o.methods.some((m) => m === '*' || m.toUpperCase() === req.method)) return false;
  if (o.paths && !o.paths.some((p) => patternMatches(p, req.path))) return false;
  if (o.hosts && (req.host === undefined || !o.hosts.some((h) => patternMatches(h.toLowerCase(), req.host!)))) return false;
  return true;
}

/** Istio-style string patterns: exact, 'prefix*', '*suffix', or '*'. */
export function patternMatches(pattern: string, value: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return value === pattern;
}
