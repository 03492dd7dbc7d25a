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

/** Identities created and released since the last compilation (IdentityAllocator.update's). */
export interface CompileDelta {
  added: readonly Identity[];
  removed: readonly Identity[];
}

/** What one compilation leaves for the next: the result and the indexes it was built from. */
interface CompileState {
  policies: readonly AuthorizationPolicy[];
  root: string;
  waypoints: ReadonlyMap<string, readonly number[]>;
  wpKey: string;
  identities: Map<number, Identity>;
  prefixInfo: { cls: number; bits: number; v4: boolean; value: bigint }[];
  cidrProblems: Problem[];
  idsByNs: Map<string, Set<number>>;
  idsBySa: Map<string, Set<number>>;
  allIds: number[] | undefined;
  byNs: Map<string, AuthorizationPolicy[]>;
  rootPolicies: AuthorizationPolicy[];
  sourceCache: Map<PolicySource, { ids: IdSet; classes: ClassSet }>;
  /** Destination id -> the policies selecting it. */
  selectedOf: Map<number, AuthorizationPolicy[]>;
  /** Selected policies (and waypoint) -> the destination policy, with the keys of those policies. */
  memo: Map<string, { dp: DestinationPolicy; policies: readonly string[] }>;
  tableRefs: Map<string, number>;
  /** Per policy: selected identities whose enforcement is not-enforceable, kernel+waypoint. */
  enf: Map<string, { ne: number; kw: number }>;
  entryCount: number;
  destinations: Map<number, DestinationPolicy>;
  tables: Map<string, CompiledTable>;
  workloads: Map<number, WorkloadPolicy>;
  statuses: Map<string, PolicyStatus>;
}

/**
 * The compiler keeps CIDR class ids stable from one compilation to the next (a class id
 * lives as long as its prefix is used), so an unrelated change rewrites no table.
 *
 * Given the identities created and released since the last compilation (and the same
 * policies, root namespace and waypoints), it recompiles only what they affect: the new
 * identities' own tables, and the tables of the destinations selected by a policy whose
 * sources name the namespace or service account of one of them. The result then shares
 * its maps with the previous one (updated in place).
 */
export class PolicyCompiler {
  private readonly classIds = new Map<string, number>();
  private nextClass = 1;
  private state: CompileState | undefined;

  constructor(private readonly opts: { maxEntries?: number; maxCidrs?: number } = {}) {}

  /** After a restart: the classes the pinned kw_cidr holds ('<addr hex>/<bits>' -> class), kept where still used. */
  seedClasses(classes: ReadonlyMap<string, number>): void {
    for (const [k, cls] of classes) {
      this.classIds.set(k, cls);
      if (cls >= this.nextClass) this.nextClass = cls + 1;
    }
  }

  /**
   * Compiles `input`. With `delta` (what changed in `input.identities` since the last call)
   * and otherwise the same input, only what the delta affects is recompiled.
   */
  compile(input: CompileInput, delta?: CompileDelta): CompileResult {
    const root = input.rootNamespace ?? 'kernway-system';
    const waypoints = input.waypoints ?? new Map<string, readonly number[]>();
    const st = this.state;
    const size = Array.isArray(input.identities) ? input.identities.length : (input.identities as ReadonlyMap<number, Identity>).size;
    if (delta && st && st.root === root && st.wpKey === waypointsKey(waypoints) && samePolicies(st.policies, input.policies) &&
        st.identities.size + countNew(st, delta) === size) {
      return this.incremental(st, delta);
    }
    return this.full(input, root, waypoints);
  }

  private full(input: CompileInput, root: string, waypoints: ReadonlyMap<string, readonly number[]>): CompileResult {
    const identities = Array.isArray(input.identities) ? input.identities as readonly Identity[] : [...(input.identities as ReadonlyMap<number, Identity>).values()];
    const cidrProblems: Problem[] = [];

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
      cidrProblems.push({ code: POLICY_CAPACITY, file: '', message: `policies use ${cidrs.length} distinct ipBlocks, more than kw_cidr holds (${this.opts.maxCidrs}); raise the capacity` });
    }

    const byNs = new Map<string, AuthorizationPolicy[]>();
    for (const p of input.policies) push(byNs, p.namespace, p);
    const st: CompileState = {
      policies: input.policies, root, waypoints, wpKey: waypointsKey(waypoints), identities: new Map(),
      // Each prefix with what the class computation compares, worked out once.
      prefixInfo: cidrs.map(({ cidr, cls }) => ({ cls, bits: cidr.bits, v4: isV4(cidr), value: addrBig(cidr.addr) })),
      cidrProblems, idsByNs: new Map(), idsBySa: new Map(), allIds: undefined, byNs, rootPolicies: byNs.get(root) ?? [],
      sourceCache: new Map(), selectedOf: new Map(), memo: new Map(), tableRefs: new Map(), enf: new Map(), entryCount: 0,
      destinations: new Map(), tables: new Map(), workloads: new Map(), statuses: new Map(),
    };
    for (const i of identities) index(st, i, true);
    for (const p of input.policies) {
      const l7 = p.rules.flatMap((r) => r.l7Fields);
      st.statuses.set(p.key, { key: p.key, action: p.action, selects: [], enforcement: 'kernel', l7Fields: l7 });
      st.enf.set(p.key, { ne: 0, kw: 0 });
    }
    for (const ident of [...identities].sort((a, b) => a.id - b.id)) this.place(st, ident);
    this.state = st;
    return this.finish(st, cidrs);
  }

  private incremental(st: CompileState, delta: CompileDelta): CompileResult {
    if (delta.added.length === 0 && delta.removed.length === 0 && this.lastResult) return this.lastResult;
    const cidrs = this.lastCidrs;
    const changed = [...delta.removed, ...delta.added];
    // Policies whose sources (or "every identity") now mean other identities.
    const affected = st.policies.filter((p) => changed.some((i) => dependsOn(p, i)));
    const affectedKeys = new Set(affected.map((p) => p.key));
    for (const p of affected) for (const r of p.rules) for (const s of r.from ?? []) st.sourceCache.delete(s);
    for (const [k, m] of st.memo) if (m.policies.some((x) => affectedKeys.has(x))) st.memo.delete(k);
    st.allIds = undefined;

    const redo = new Set<number>();
    for (const p of affected) for (const id of st.statuses.get(p.key)!.selects) redo.add(id);
    for (const i of delta.removed) {
      this.unplace(st, i.id);
      index(st, i, false);
      redo.delete(i.id);
    }
    for (const i of delta.added) index(st, i, true);
    for (const id of redo) this.unplace(st, id);
    for (const id of [...redo, ...delta.added.map((i) => i.id)].sort((a, b) => a - b)) {
      const ident = st.identities.get(id);
      if (ident) this.place(st, ident);
    }
    return this.finish(st, cidrs);
  }

  private lastCidrs: { cidr: Cidr; cls: number }[] = [];
  private lastResult: CompileResult | undefined;

  /** Statuses' messages and the problems, from the state. */
  private finish(st: CompileState, cidrs: { cidr: Cidr; cls: number }[]): CompileResult {
    const problems: Problem[] = [...st.cidrProblems];
    for (const p of st.policies) {
      const s = st.statuses.get(p.key)!;
      const e = st.enf.get(p.key)!;
      s.enforcement = e.ne > 0 ? 'not-enforceable' : e.kw > 0 ? 'kernel+waypoint' : 'kernel';
      if (s.enforcement !== 'not-enforceable') { delete s.message; continue; }
      s.message = `${s.l7Fields.join(', ')}: L7 fields need a waypoint, and the namespace of ${s.selects.length === 1 ? 'a workload' : 'workloads'} it selects has none; ` +
        (p.action === 'DENY'
          ? 'until it has one, kernway denies every connection the rule\'s L4 part matches (fail safe)'
          : 'until it has one, those rules admit nothing (fail safe); the policy still makes its workloads allow-listed');
      problems.push({ code: POLICY_L7_NOT_ENFORCEABLE, file: p.origin.file, object: `AuthorizationPolicy ${p.key}`, field: s.l7Fields[0], message: s.message });
    }
    if (this.opts.maxEntries !== undefined && st.entryCount > this.opts.maxEntries) {
      problems.push({ code: POLICY_CAPACITY, file: '', message: `compiled policies need ${st.entryCount} verdict entries, more than kw_pol holds (${this.opts.maxEntries}); raise the capacity` });
    }
    this.lastCidrs = cidrs;
    this.lastResult = { cidrs, destinations: st.destinations, tables: st.tables, workloads: st.workloads, policies: st.statuses, problems, entryCount: st.entryCount };
    return this.lastResult;
  }

  /** One destination identity: the policies selecting it, its workload entry and its table. */
  private place(st: CompileState, ident: Identity): void {
    const root = st.root;
    const candidates = ident.namespace === root ? st.rootPolicies : [...st.rootPolicies, ...(st.byNs.get(ident.namespace) ?? [])];
    const selected = candidates.filter((p) => selects(p, ident, root));
    const wp = st.waypoints.get(ident.namespace);
    const w: WorkloadPolicy = {
      id: ident.id, namespace: ident.namespace, serviceAccount: ident.serviceAccount, labels: ident.labels,
      mode: 'open', policies: [], waypoint: wp !== undefined, entries: 0,
    };
    st.workloads.set(ident.id, w);
    if (selected.length === 0) return;
    st.selectedOf.set(ident.id, selected);
    for (const p of selected) {
      const s = st.statuses.get(p.key)!;
      insertSorted(s.selects, ident.id);
      const enforcement: Enforcement = s.l7Fields.length === 0 ? 'kernel' : wp && wp.length > 0 ? 'kernel+waypoint' : 'not-enforceable';
      const e = st.enf.get(p.key)!;
      if (enforcement === 'not-enforceable') e.ne++;
      else if (enforcement === 'kernel+waypoint') e.kw++;
      w.policies.push({ key: p.key, action: p.action, enforcement });
    }
    w.mode = selected.some((p) => p.action === 'ALLOW') ? 'allow-listed' : 'deny-listed';

    const memoKey = `${selected.map((p) => p.key).join('\u0000')}\u0001${wp ? wp.join(',') : '-'}`;
    let dp = st.memo.get(memoKey)?.dp;
    if (!dp) {
      dp = this.compileDestination(selected, wp, (s) => sourceOf(st, s), () => allIdsOf(st));
      st.memo.set(memoKey, { dp, policies: selected.map((p) => p.key) });
    }
    const shared = st.tables.get(dp.table.key);
    if (!shared) { st.tables.set(dp.table.key, dp.table); st.entryCount += dp.table.entries.length; }
    else if (shared !== dp.table) dp = { table: shared, flags: dp.flags };
    st.tableRefs.set(dp.table.key, (st.tableRefs.get(dp.table.key) ?? 0) + 1);
    st.destinations.set(ident.id, dp);
    w.entries = dp.table.entries.length;
  }

  /** Undoes place() for one identity. */
  private unplace(st: CompileState, id: number): void {
    const w = st.workloads.get(id);
    if (!w) return;
    st.workloads.delete(id);
    const selected = st.selectedOf.get(id);
    if (!selected) return;
    st.selectedOf.delete(id);
    for (const [i, p] of selected.entries()) {
      removeSorted(st.statuses.get(p.key)!.selects, id);
      const e = st.enf.get(p.key)!;
      const enforcement = w.policies[i]!.enforcement;
      if (enforcement === 'not-enforceable') e.ne--;
      else if (enforcement === 'kernel+waypoint') e.kw--;
    }
    const dp = st.destinations.get(id)!;
    st.destinations.delete(id);
    const n = st.tableRefs.get(dp.table.key)! - 1;
    if (n > 0) { st.tableRefs.set(dp.table.key, n); return; }
    st.tableRefs.delete(dp.table.key);
    st.tables.delete(dp.table.key);
    st.entryCount -= dp.table.entries.length;
  }

  private compileDestination(
    selected: readonly AuthorizationPolicy[],
    waypointIds: readonly number[] | undefined,
    sourceOf: (s: PolicySource) => { ids: IdSet; classes: ClassSet },
    allIds: () => readonly number[],
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
            for (const s of sources) add((s.ids ?? allIds()).filter((id) => !wp.has(id)), s.classes, ports, POL_DENY_L7);
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

/** A policy's tables depend on identity `i`: a source names its namespace or service account, or a rule means every identity. */
function dependsOn(p: AuthorizationPolicy, i: Identity): boolean {
  for (const r of p.rules) {
    for (const s of r.from ?? []) if ((s.namespaces || s.serviceAccounts) && sourceIncludes(s, i)) return true;
    // A DENY rule with L7 parts behind a waypoint lists every other identity (compileDestination).
    if (p.action === 'DENY' && r.l7Fields.length > 0 && (r.from === undefined || r.from.some((s) => !s.namespaces && !s.serviceAccounts))) return true;
  }
  return false;
}

/** Identity `i` is among the identities a source with namespaces or service accounts names. */
function sourceIncludes(s: PolicySource, i: Identity): boolean {
  if (s.namespaces && !s.namespaces.some((pat) => namespaceMatches(pat, i.namespace))) return false;
  if (s.serviceAccounts && !s.serviceAccounts.includes(`${i.namespace}/${i.serviceAccount}`)) return false;
  return true;
}

function index(st: CompileState, i: Identity, add: boolean): void {
  const sa = `${i.namespace}/${i.serviceAccount}`;
  if (add) {
    st.identities.set(i.id, i);
    setAdd(st.idsByNs, i.namespace, i.id);
    setAdd(st.idsBySa, sa, i.id);
  } else {
    st.identities.delete(i.id);
    setDelete(st.idsByNs, i.namespace, i.id);
    setDelete(st.idsBySa, sa, i.id);
  }
}

function sourceOf(st: CompileState, s: PolicySource): { ids: IdSet; classes: ClassSet } {
  let r = st.sourceCache.get(s);
  if (r) return r;
  let ids: IdSet;
  if (s.namespaces || s.serviceAccounts) {
    let set: Set<number> | undefined;
    if (s.namespaces) {
      set = new Set();
      for (const pat of s.namespaces) for (const [ns, list] of st.idsByNs) if (namespaceMatches(pat, ns)) for (const id of list) set.add(id);
    }
    if (s.serviceAccounts) {
      const sa = new Set<number>();
      for (const name of s.serviceAccounts) for (const id of st.idsBySa.get(name) ?? []) sa.add(id);
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
      for (const p of st.prefixInfo) if (p.v4 === fx && p.bits >= x.bits && p.value >> shift === xv) set.add(p.cls);
    }
    classes = [...set].sort((a, b) => a - b);
  }
  r = { ids, classes };
  st.sourceCache.set(s, r);
  return r;
}

function allIdsOf(st: CompileState): number[] {
  st.allIds ??= [ID_HOST, ID_WORLD, ...st.identities.keys()].sort((a, b) => a - b);
  return st.allIds;
}

function countNew(st: CompileState, d: CompileDelta): number {
  let n = 0;
  for (const i of d.added) if (!st.identities.has(i.id)) n++;
  for (const i of d.removed) if (st.identities.has(i.id)) n--;
  return n;
}

function samePolicies(a: readonly AuthorizationPolicy[], b: readonly AuthorizationPolicy[]): boolean {
  return a === b || (a.length === b.length && a.every((p, i) => p === b[i]));
}

function waypointsKey(w: ReadonlyMap<string, readonly number[]>): string {
  return [...w].map(([ns, ids]) => `${ns}=${[...ids].sort((x, y) => x - y).join(',')}`).sort().join(';');
}

function setAdd<K>(m: Map<K, Set<number>>, k: K, v: number): void {
  const s = m.get(k);
  if (s) s.add(v); else m.set(k, new Set([v]));
}

function setDelete<K>(m: Map<K, Set<number>>, k: K, v: number): void {
  const s = m.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) m.delete(k);
}

function insertSorted(a: number[], v: number): void {
  let lo = 0, hi = a.length;
  while (lo < hi) { const mid = (lo + hi) >>> 1; if (a[mid]! < v) lo = mid + 1; else hi = mid; }
  if (a[lo] !== v) a.splice(lo, 0, v);
}

function removeSorted(a: number[], v: number): void {
  let lo = 0, hi = a.length;
  while (lo < hi) { const mid = (lo + hi) >>> 1; if (a[mid]! < v) lo = mid + 1; else hi = mid; }
  if (a[lo] === v) a.splice(lo, 1);
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
