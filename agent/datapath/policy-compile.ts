/**
 * AuthorizationPolicies compiled into what the kernel looks up (bpf/include/policy.h):
 * per destination identity a verdict table and a default, and the CIDR classes of all
 * ipBlocks. Pure: policies and identities in, map contents out.
 *
 * Semantics (Istio's): a connection to a workload is denied if any DENY policy selecting
 * the workload has a matching rule; otherwise, if any ALLOW policy selects it, it is
 * allowed only when some ALLOW rule matches; otherwise it is allowed. A rule matches when
 * one of its sources (from) and one of its operations (to) match; an absent from/to
 * matches anything; the fields of one source (or operation) must all match.
 *
 * L7 parts (methods, paths, hosts, when) are for the waypoint. For a workload whose
 * namespace has no waypoint they cannot be checked, and kernway fails safe, like Istio's
 * ztunnel: the L4 part of a DENY rule with L7 parts denies (KW_POL_DENY_L7), an ALLOW
 * rule with L7 parts admits nothing (KW_POL_HOLD_L7 marks what it would have had to
 * inspect, so the drop is counted under its own reason). With a waypoint, such ALLOW
 * rules admit the waypoint's own identities on the rule's ports (the waypoint checks the
 * rest), and such DENY rules deny every other source.
 */
import { selectorMatches } from '../../k8s/selector.js';
import { addrBig, addrBytes, cidrContains } from '../../k8s/cidr.js';
import {
  ID_HOST, ID_WORLD, POLICY_CAPACITY, POLICY_L7_NOT_ENFORCEABLE,
  type AuthorizationPolicy, type Cidr, type Identity, type PolicyOperation, type PolicyRule, type PolicySource,
} from '../../k8s/policy-types.js';
import type { Problem } from '../../k8s/types.js';

/** Verdict bits (bpf/include/policy.h KW_POL_*). */
export const POL_DENY = 1;
export const POL_ALLOW = 2;
export const POL_DENY_L7 = 4;
export const POL_HOLD_L7 = 8;
/** kw_pdst_val.flags */
export const PDST_ALLOWLIST = 1;
/** kw_pdst_val.combos bits: which fields of an entry are exact. */
export const COMBO_SRC = 1;
export const COMBO_CLASS = 2;
export const COMBO_PORT = 4;
export const IPPROTO_TCP = 6;

/** Kernel verdicts (KW_POL_PASS / DROP / DROP_L7). */
export type Verdict = 'allow' | 'deny' | 'deny-l7';

export interface PolicyEntry {
  /** Source identity, 0: any. */
  src: number;
  /** CIDR class of the source address, 0: any. */
  cls: number;
  /** Destination port, 0: any. */
  port: number;
  proto: number;
  bits: number;
}

export interface CompiledTable {
  /** Content key: equal tables (many workloads share one) have equal keys. */
  key: string;
  combos: number;
  entries: readonly PolicyEntry[];
}

export interface DestinationPolicy {
  table: CompiledTable;
  /** PDST_* */
  flags: number;
}

export type Enforcement = 'kernel' | 'kernel+waypoint' | 'not-enforceable';

/** How one workload (identity) is protected; what `kernway policies` shows. */
export interface WorkloadPolicy {
  id: number;
  namespace: string;
  serviceAccount: string;
  labels: Readonly<Record<string, string>>;
  /** 'open': no policy selects it; 'deny-listed': only DENY policies; 'allow-listed': an ALLOW policy selects it (default deny). */
  mode: 'open' | 'deny-listed' | 'allow-listed';
  policies: { key: string; action: 'ALLOW' | 'DENY'; enforcement: Enforcement }[];
  waypoint: boolean;
  entries: number;
}

export interface PolicyStatus {
  key: string;
  action: 'ALLOW' | 'DENY';
  /** Identities it selects. */
  selects: number[];
  enforcement: Enforcement;
  l7Fields: readonly string[];
  message?: string;
}

export interface CompileInput {
  identities: ReadonlyMap<number, Identity> | readonly Identity[];
  policies: readonly AuthorizationPolicy[];
  /** Policies in this namespace apply to every namespace (Istio's root namespace). */
  rootNamespace?: string;
  /** Namespaces with a waypoint, with the identities of the waypoint's pods. */
  waypoints?: ReadonlyMap<string, readonly number[]>;
}

export interface CompileResult {
  /** ipBlock prefixes -> class, for kw_cidr. */
  cidrs: readonly { cidr: Cidr; cls: number }[];
  /** Destination identity -> table and flags, for kw_pdst (identities no policy selects are absent). */
  destinations: ReadonlyMap<number, DestinationPolicy>;
  /** Distinct tables by key. */
  tables: ReadonlyMap<string, CompiledTable>;
  workloads: ReadonlyMap<number, WorkloadPolicy>;
  policies: ReadonlyMap<string, PolicyStatus>;
  /** Policies that cannot be enforced as written, and capacity problems. */
  problems: Problem[];
  /** Entries over all distinct tables. */
  entryCount: number;
}

/** '*', 'prod-*' (prefix), '*-test' (suffix) or an exact name. */
export function namespaceMatches(pattern: string, ns: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return ns.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return ns.endsWith(pattern.slice(1));
  return pattern === ns;
}

export function selects(p: AuthorizationPolicy, ident: Identity, rootNamespace: string): boolean {
  if (p.namespace !== ident.namespace && p.namespace !== rootNamespace) return false;
  return p.selector === undefined || selectorMatches(p.selector, ident.labels);
}

const V4_SPACE: Cidr = { text: '0.0.0.0/0', addr: addrBytes('0.0.0.0')!, bits: 96 };

function isV4(c: Cidr): boolean {
  return cidrContains(V4_SPACE, c);
}

/** Source id set: undefined = any source identity. */
type IdSet = readonly number[] | undefined;
/** Class set: undefined = any address. */
type ClassSet = readonly number[] | undefined;
/** Port set: undefined = any port. */
type PortSet = readonly number[] | undefined;

/**
 * The compiler keeps CIDR class ids stable from one compilation to the next (a class id
 * lives as long as its prefix is used), so an unrelated change rewrites no table.
 */
export class PolicyCompiler {
  private readonly classIds = new Map<string, number>();
  private nextClass = 1;

  constructor(private readonly opts: { maxEntries?: number; maxCidrs?: number } = {}) {}

  /** After a restart: the classes the pinned kw_cidr holds ('<addr hex>/<bits>' -> class), kept where still used. */
  seedClasses(classes: ReadonlyMap<string, number>): void {
    for (const [k, cls] of classes) {
      this.classIds.set(k, cls);
      if (cls >= this.nextClass) this.nextClass = cls + 1;
    }
  }

  compile(input: CompileInput): CompileResult {
    const identities = Array.isArray(input.identities) ? input.identities as readonly Identity[] : [...(input.identities as ReadonlyMap<number, Identity>).values()];
    const root = input.rootNamespace ?? 'kernway-system';
    const waypoints = input.waypoints ?? new Map<string, readonly number[]>();
    const problems: Problem[] = [];

    // ---- CIDR classes: every distinct ipBlock, plus the IPv4 space when an IPv6 block covers it.
    const prefixes = new Map<string, Cidr>();
    for (const p of input.policies) for (const r of p.rules) for (const s of r.from ?? []) for (const b of s.ipBlocks ?? []) prefixes.set(prefixKey(b), b);
    if ([...prefixes.values()].some((b) => !isV4(b) && cidrContains(b, V4_SPACE))) prefixes.set(prefixKey(V4_SPACE), V4_SPACE);
    for (const k of [...this.classIds.keys()]) if (!prefixes.has(k)) this.classIds.delete(k);
    const cidrs: { cidr: Cidr; cls: number }[] = [];
    for (const [k, b] of [...prefixes].sort(([a], [b2]) => (a < b2 ? -1 : 1))) {
      let cls = this.classIds.get(k);
      if (cls === undefined) { cls = this.nextClass++; this.classIds.set(k, cls); }
      cidrs.push({ cidr: b, cls });
    }
    if (this.opts.maxCidrs !== undefined && cidrs.length > this.opts.maxCidrs) {
      problems.push({ code: POLICY_CAPACITY, file: '', message: `policies use ${cidrs.length} distinct ipBlocks, more than kw_cidr holds (${this.opts.maxCidrs}); raise the capacity` });
    }

    // Each prefix with what the class computation compares, worked out once.
    const prefixInfo = cidrs.map(({ cidr, cls }) => ({ cls, bits: cidr.bits, v4: isV4(cidr), value: addrBig(cidr.addr) }));

    // ---- Indexes for sources.
    const idsByNs = new Map<string, number[]>();
    const idsBySa = new Map<string, number[]>();
    for (const i of identities) {
      push(idsByNs, i.namespace, i.id);
      push(idsBySa, `${i.namespace}/${i.serviceAccount}`, i.id);
    }
    const allIds = [ID_HOST, ID_WORLD, ...identities.map((i) => i.id)].sort((a, b) => a - b);
    const sourceCache = new Map<PolicySource, { ids: IdSet; classes: ClassSet }>();
    const sourceOf = (s: PolicySource): { ids: IdSet; classes: ClassSet } => {
      let r = sourceCache.get(s);
      if (r) return r;
      let ids: IdSet;
      if (s.namespaces || s.serviceAccounts) {
        let set: Set<number> | undefined;
        if (s.namespaces) {
          set = new Set();
          for (const pat of s.namespaces) for (const [ns, list] of idsByNs) if (namespaceMatches(pat, ns)) for (const id of list) set.add(id);
        }
        if (s.serviceAccounts) {
          const sa = new Set<number>();
          for (const name of s.serviceAccounts) for (const id of idsBySa.get(name) ?? []) sa.add(id);
          set = set ? new Set([...set].filter((id) => sa.has(id))) : sa;
        }
        ids = [...set!].sort((a, b) => a - b);
      }
      let classes: ClassSet;
      if (s.ipBlocks) {
        const set = new Set<number>();
        for (const x of s.ipBlocks) {
          const fx = isV4(x);
          const shift = BigInt(128 - x.bits);
          const xv = addrBig(x.addr) >> shift;
          for (const p of prefixInfo) if (p.v4 === fx && p.bits >= x.bits && p.value >> shift === xv) set.add(p.cls);
        }
        classes = [...set].sort((a, b) => a - b);
      }
      r = { ids, classes };
      sourceCache.set(s, r);
      return r;
    };

    // ---- Selection.
    const byNs = new Map<string, AuthorizationPolicy[]>();
    for (const p of input.policies) push(byNs, p.namespace, p);
    const rootPolicies = byNs.get(root) ?? [];
    const statuses = new Map<string, PolicyStatus>();
    for (const p of input.policies) {
      const l7 = p.rules.flatMap((r) => r.l7Fields);
      statuses.set(p.key, { key: p.key, action: p.action, selects: [], enforcement: 'kernel', l7Fields: l7 });
    }

    const tables = new Map<string, CompiledTable>();
    const destinations = new Map<number, DestinationPolicy>();
    const workloads = new Map<number, WorkloadPolicy>();
    const memo = new Map<string, DestinationPolicy>();

    for (const ident of [...identities].sort((a, b) => a.id - b.id)) {
      const candidates = ident.namespace === root ? rootPolicies : [...rootPolicies, ...(byNs.get(ident.namespace) ?? [])];
      const selected = candidates.filter((p) => selects(p, ident, root));
      const wp = waypoints.get(ident.namespace);
      const w: WorkloadPolicy = {
        id: ident.id, namespace: ident.namespace, serviceAccount: ident.serviceAccount, labels: ident.labels,
        mode: 'open', policies: [], waypoint: wp !== undefined, entries: 0,
      };
      workloads.set(ident.id, w);
      if (selected.length === 0) continue;
      for (const p of selected) {
        const st = statuses.get(p.key)!;
        st.selects.push(ident.id);
        const hasL7 = st.l7Fields.length > 0;
        const enforcement: Enforcement = !hasL7 ? 'kernel' : wp && wp.length > 0 ? 'kernel+waypoint' : 'not-enforceable';
        if (enforcement === 'not-enforceable') st.enforcement = 'not-enforceable';
        else if (enforcement === 'kernel+waypoint' && st.enforcement === 'kernel') st.enforcement = 'kernel+waypoint';
        w.policies.push({ key: p.key, action: p.action, enforcement });
      }
      w.mode = selected.some((p) => p.action === 'ALLOW') ? 'allow-listed' : 'deny-listed';

      const memoKey = `${selected.map((p) => p.key).join('\u0000')}\u0001${wp ? wp.join(',') : '-'}`;
      let dp = memo.get(memoKey);
      if (!dp) {
        dp = this.compileDestination(selected, wp, sourceOf, allIds);
        const shared = tables.get(dp.table.key);
        if (shared) dp = { table: shared, flags: dp.flags };
        else tables.set(dp.table.key, dp.table);
        memo.set(memoKey, dp);
      }
      destinations.set(ident.id, dp);
      w.entries = dp.table.entries.length;
    }

    for (const st of statuses.values()) {
      if (st.enforcement !== 'not-enforceable') continue;
      const p = input.policies.find((x) => x.key === st.key)!;
      st.message = `${st.l7Fields.join(', ')}: L7 fields need a waypoint, and the namespace of ${st.selects.length === 1 ? 'a workload' : 'workloads'} it selects has none; ` +
        (p.action === 'DENY'
          ? 'until it has one, kernway denies every connection the rule\'s L4 part matches (fail safe)'
          : 'until it has one, those rules admit nothing (fail safe); the policy still makes its workloads allow-listed');
      problems.push({ code: POLICY_L7_NOT_ENFORCEABLE, file: p.origin.file, object: `AuthorizationPolicy ${p.key}`, field: st.l7Fields[0], message: st.message });
    }

    let entryCount = 0;
    for (const t of tables.values()) entryCount += t.entries.length;
    if (this.opts.maxEntries !== undefined && entryCount > this.opts.maxEntries) {
      problems.push({ code: POLICY_CAPACITY, file: '', message: `compiled policies need ${entryCount} verdict entries, more than kw_pol holds (${this.opts.maxEntries}); raise the capacity` });
    }
    return { cidrs, destinations, tables, workloads, policies: statuses, problems, entryCount };
  }

  private compileDestination(
    selected: readonly AuthorizationPolicy[],
    waypointIds: readonly number[] | undefined,
    sourceOf: (s: PolicySource) => { ids: IdSet; classes: ClassSet },
    allIds: readonly number[],
  ): DestinationPolicy {
    const bits = new Map<string, PolicyEntry>();
    const add = (ids: IdSet, classes: ClassSet, ports: PortSet, bit: number): void => {
      for (const src of ids ?? [0]) for (const cls of classes ?? [0]) for (const port of ports ?? [0]) {
        const k = `${src}:${cls}:${port}`;
        const e = bits.get(k);
        if (e) e.bits |= bit;
        else bits.set(k, { src, cls, port, proto: IPPROTO_TCP, bits: bit });
      }
    };
    const hasWaypoint = waypointIds !== undefined && waypointIds.length > 0;
    let flags = 0;
    for (const p of selected) {
      if (p.action === 'ALLOW') flags |= PDST_ALLOWLIST;
      for (const rule of p.rules) {
        const sources = rule.from === undefined ? [{ ids: undefined, classes: undefined }] : rule.from.map(sourceOf);
        for (const { ports, l7 } of operationsOf(rule)) {
          if (!l7) {
            for (const s of sources) add(s.ids, s.classes, ports, p.action === 'ALLOW' ? POL_ALLOW : POL_DENY);
          } else if (!hasWaypoint) {
            for (const s of sources) add(s.ids, s.classes, ports, p.action === 'ALLOW' ? POL_HOLD_L7 : POL_DENY_L7);
          } else if (p.action === 'ALLOW') {
            // The waypoint checks who and what; the kernel lets the waypoint through on these ports.
            add([...waypointIds!].sort((a, b) => a - b), undefined, ports, POL_ALLOW);
          } else {
            // Traffic through the waypoint is the waypoint's to check; any other source matching the L4 part is denied.
            const wp = new Set(waypointIds);
            for (const s of sources) add((s.ids ?? allIds).filter((id) => !wp.has(id)), s.classes, ports, POL_DENY_L7);
          }
        }
      }
    }
    const entries = [...bits.values()].sort((a, b) => a.src - b.src || a.cls - b.cls || a.port - b.port);
    let combos = 0;
    for (const e of entries) combos |= 1 << ((e.src ? COMBO_SRC : 0) | (e.cls ? COMBO_CLASS : 0) | (e.port ? COMBO_PORT : 0));
    const key = `${combos}|${entries.map((e) => `${e.src}:${e.cls}:${e.port}:${e.proto}=${e.bits}`).join(',')}`;
    return { table: { key, combos, entries }, flags };
  }
}

/** The operations of a rule as port sets, each marked L7 when it (or the rule's `when`) has L7 fields. */
function operationsOf(rule: PolicyRule): { ports: PortSet; l7: boolean }[] {
  const ruleL7 = (rule.when?.length ?? 0) > 0;
  if (rule.to === undefined) return [{ ports: undefined, l7: ruleL7 }];
  return rule.to.map((op: PolicyOperation) => ({
    ports: op.ports ? [...op.ports].sort((a, b) => a - b) : undefined,
    l7: ruleL7 || op.methods !== undefined || op.paths !== undefined || op.hosts !== undefined,
  }));
}

function prefixKey(c: Cidr): string {
  return `${c.addr.toString('hex')}/${c.bits}`;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const l = m.get(k);
  if (l) l.push(v); else m.set(k, [v]);
}

/**
 * The verdict the kernel computes (bpf/include/policy.h kw_policy_check), in TypeScript:
 * for tests (compiled tables against the reference semantics) and for explaining a
 * decision in `kernway policies`.
 */
export function evaluateCompiled(
  result: Pick<CompileResult, 'cidrs' | 'destinations'>,
  dst: number, src: number, srcAddr: Buffer, port: number,
  opts: { allowHost?: boolean } = {},
): Verdict {
  if (src === ID_HOST && (opts.allowHost ?? true)) return 'allow';
  const d = result.destinations.get(dst);
  if (!d) return 'allow';
  let cls = 0;
  let best = -1;
  for (const { cidr, cls: c } of result.cidrs) {
    if (cidr.bits > best && cidrHasAddr(cidr, srcAddr)) { best = cidr.bits; cls = c; }
  }
  let bits = 0;
  for (const e of d.table.entries) {
    if ((e.src === 0 || e.src === src) && (e.cls === 0 || (cls !== 0 && e.cls === cls)) && (e.port === 0 || e.port === port)) bits |= e.bits;
  }
  if (bits & POL_DENY) return 'deny';
  if (bits & POL_DENY_L7) return 'deny-l7';
  if ((d.flags & PDST_ALLOWLIST) && !(bits & POL_ALLOW)) return bits & POL_HOLD_L7 ? 'deny-l7' : 'deny';
  return 'allow';
}

function cidrHasAddr(c: Cidr, a: Buffer): boolean {
  return cidrContains(c, { text: '', addr: a, bits: 128 });
}
