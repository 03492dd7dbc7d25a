/**
 * The L4 policy engine of the agent, in one object: pods and AuthorizationPolicies in,
 * identities, endpoints (tc on local pod veths) and verdict tables in the kernel out.
 *
 *   const engine = await PolicyEngine.start({ nodeName, cgroupPath, bpffsDir, log });
 *   engine.update({ pods: model.pods, namespaces: model.namespaces });   // every pod looked at
 *   engine.update({ pods: model.pods, changedPods: change.pods });       // only the pods that changed
 *   engine.update({ policies });                                         // on each policy snapshot
 *   engine.report();                                                     // `kernway policies`
 *   await engine.close();                                                // programs stay attached
 *
 * Load it after the socket load balancer: its connect() check must run after the
 * balancer's (see agent/datapath/policy.ts).
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../common/log.js';
import type { Namespace, Pod, Problem } from '../../k8s/types.js';
import { PolicyCompiler, type CompileResult, type Enforcement, type WorkloadPolicy } from './policy-compile.js';
import { IdentityAllocator, type IdentityAssignment } from '../../model/identity.js';
import { ID_HOST, type AuthorizationPolicy } from '../../k8s/policy-types.js';
import { EndpointManager, type EndpointInfo, type LocalPod } from './endpoints.js';
import { PolicyDatapath, emptyStats, type ApplyStats, type PolicyCapacities } from './policy.js';
import { DROP_REASONS, zeroCounters, type DropReason, type EndpointCounters, type IdentVal } from './policy-codec.js';

import { USE_WAYPOINT_LABEL, WAYPOINT_OPT_OUT, WAYPOINT_POD_LABEL } from '../../model/waypoint-binding.js';

export interface PolicyEngineOptions {
  /** This node: pods with spec.nodeName equal to it are endpoints. */
  nodeName: string;
  /** The agent's cgroup: connect() is checked for its processes; pod cgroups are found under it. */
  cgroupPath: string;
  bpffsDir: string;
  /** Network namespace of the pod veths (a path); default: the agent's own. */
  netns?: string;
  /** The node's own addresses: identity host. Default: the addresses (scope global) of the node namespace, kept up to date. */
  hostIPs?: readonly string[];
  /** Policies there apply to every namespace (default kernway-system). */
  rootNamespace?: string;
  /** Traffic from the node's own addresses passes whatever the policy (default true). */
  allowHost?: boolean;
  capacities?: PolicyCapacities;
  objectDir?: string;
  attachConnect?: boolean;
  /** Watch links and routes for new veths (default true). */
  watch?: boolean;
  log?: Logger;
}

export interface PolicyEngineInput {
  /** Every pod (a map by 'ns/name' may be the model's live map). */
  pods?: ReadonlyMap<string, Pod> | Iterable<Pod>;
  /**
   * With `pods` a map: the keys of the pods that changed since the last update (the model's
   * change set); only those are looked at. Absent: every pod is.
   */
  changedPods?: Iterable<string>;
  namespaces?: ReadonlyMap<string, Namespace>;
  policies?: readonly AuthorizationPolicy[];
}

export interface PolicyUpdateResult {
  ms: number;
  identities: number;
  endpoints: number;
  destinations: number;
  tables: number;
  entries: number;
  stats: ApplyStats;
  problems: Problem[];
}

export interface WorkloadReport extends WorkloadPolicy {
  table?: number;
  pods: Array<{
    pod: string;
    ips: string[];
    local: boolean;
    endpoint?: EndpointInfo;
    counters?: EndpointCounters;
  }>;
}

export interface PolicyReport {
  node: string;
  workloads: WorkloadReport[];
  policies: Array<{ key: string; action: string; file: string; selects: number; enforcement: Enforcement; message?: string }>;
  problems: Problem[];
  totals: { identities: number; policies: number; tables: number; entries: number; cidrs: number; endpoints: number };
  drops: Record<DropReason, number>;
}

export class PolicyEngine {
  readonly datapath: PolicyDatapath;
  readonly endpoints: EndpointManager;
  private readonly opts: PolicyEngineOptions;
  private readonly allocator = new IdentityAllocator();
  private readonly compiler: PolicyCompiler;
  private pods: ReadonlyMap<string, Pod> = new Map();
  private namespaces: ReadonlyMap<string, Namespace> = new Map();
  /** This node's endpoints, by pod key. */
  private readonly local = new Map<string, LocalPod>();
  private epIds: ReadonlyMap<string, number> | undefined;
  /** Pods carrying the waypoint label, by key. */
  private readonly waypointPods = new Map<string, Pod>();
  /** What kw_ident should hold: address -> (identity, endpoint). */
  private readonly idents = new Map<string, IdentVal>();
  private hostApplied: readonly string[] = [];
  /** The next update writes kw_ident and compiles whole (the first, and the one after a failure). */
  private whole = true;
  private policies: readonly AuthorizationPolicy[] = [];
  private assignment: IdentityAssignment | undefined;
  private compiled: CompileResult | undefined;
  private lastProblems: Problem[] = [];
  private hostIPs: readonly string[];

  private constructor(opts: PolicyEngineOptions, datapath: PolicyDatapath) {
    this.opts = opts;
    this.datapath = datapath;
    this.hostIPs = opts.hostIPs ?? [];
    this.compiler = new PolicyCompiler({
      maxEntries: datapath.maps.kw_pol.info().maxEntries,
      maxCidrs: datapath.maps.kw_cidr.info().maxEntries,
    });
    this.compiler.seedClasses(datapath.pinnedClasses());
    this.allocator.seed(datapath.pinnedIdentities());
    this.endpoints = new EndpointManager({
      maps: datapath.maps,
      programs: { toPod: datapath.toPod, fromPod: datapath.fromPod },
      tcPinDir: datapath.pins.tc,
      cgroupRoot: opts.cgroupPath,
      ...(opts.netns ? { netns: opts.netns } : {}),
      ...(opts.log ? { log: opts.log } : {}),
      ...(opts.watch !== undefined ? { watch: opts.watch } : {}),
      ...(opts.hostIPs === undefined ? { onHostAddresses: (ips: readonly string[]) => this.setHostIPs(ips) } : {}),
    });
    this.endpoints.seed(datapath.pinnedEndpoints());
  }

  static async start(opts: PolicyEngineOptions): Promise<PolicyEngine> {
    const dp = await PolicyDatapath.load({
      cgroupPath: opts.cgroupPath, bpffsDir: opts.bpffsDir,
      ...(opts.objectDir ? { objectDir: opts.objectDir } : {}),
      ...(opts.capacities ? { capacities: opts.capacities } : {}),
      ...(opts.allowHost !== undefined ? { allowHost: opts.allowHost } : {}),
      ...(opts.attachConnect !== undefined ? { attachConnect: opts.attachConnect } : {}),
      ...(opts.log ? { log: opts.log } : {}),
    });
    const engine = new PolicyEngine(opts, dp);
    engine.endpoints.start();
    return engine;
  }

  /**
   * Takes what changed (pods, namespaces, policies; absent means unchanged) and brings
   * the kernel in line: identities, endpoints, verdict tables. Synchronous for the maps;
   * tc attachment of new endpoints continues in the background (see settled()).
   */
  update(input: PolicyEngineInput): PolicyUpdateResult {
    const t0 = performance.now();
    // Whole until an update has gone through (a failed one leaves `whole` set).
    const whole = this.whole;
    this.whole = true;
    let keys: Iterable<string> = [];
    if (input.pods) {
      const map = input.pods instanceof Map ? input.pods as ReadonlyMap<string, Pod> : new Map([...(input.pods as Iterable<Pod>)].map((p) => [p.key, p]));
      keys = input.changedPods && map === this.pods && !whole ? input.changedPods : new Set([...this.pods.keys(), ...map.keys()]);
      this.pods = map;
    }
    const namespacesChanged = input.namespaces !== undefined;
    if (input.namespaces) this.namespaces = input.namespaces;
    const policiesChanged = input.policies !== undefined && input.policies !== this.policies;
    if (input.policies) this.policies = input.policies;

    const delta = this.allocator.update(this.pods, keys);
    const a = this.allocator.current;
    this.assignment = a;
    for (const c of a.conflicts) {
      if (delta.addresses.has(c.ip)) this.opts.log?.warn({ ip: c.ip, pods: c.pods, winner: c.winner }, 'policy: two pods claim one address; the running one keeps it');
    }

    // Endpoints: the running pods of this node with an address of their own.
    let localChanged = this.epIds === undefined;
    const looked = whole ? new Set([...this.pods.keys(), ...this.local.keys(), ...this.waypointPods.keys()]) : delta.pods;
    for (const key of looked) {
      let pod = this.pods.get(key);
      if (pod?.hostNetwork) pod = undefined;
      const was = this.waypointPods.has(key);
      if (pod?.labels[WAYPOINT_POD_LABEL] !== undefined) this.waypointPods.set(key, pod); else if (was) this.waypointPods.delete(key);
      const lp = pod && localPod(pod, this.opts.nodeName, a.byPod.get(key)?.id);
      const cur = this.local.get(key);
      if (lp) {
        if (cur && cur.identity === lp.identity && cur.ips.join() === lp.ips.join() && cur.annotations === lp.annotations && cur.uid === lp.uid) continue;
        this.local.set(key, lp);
      } else if (!this.local.delete(key)) continue;
      localChanged = true;
    }
    const addresses = new Set(delta.addresses);
    if (localChanged) {
      const before = this.epIds ?? new Map<string, number>();
      this.epIds = this.endpoints.setPods([...this.local.values()]);
      for (const [key, lp] of this.local) if (before.get(key) !== this.epIds.get(key)) for (const ip of lp.ips) addresses.add(ip);
      for (const [key, id] of before) if (!this.local.has(key) && id !== undefined) for (const ip of this.pods.get(key)?.podIPs ?? []) addresses.add(ip);
    }
    const epIds = this.epIds!;
    if (this.hostApplied !== this.hostIPs) {
      for (const ip of this.hostApplied) addresses.add(ip);
      for (const ip of this.hostIPs) addresses.add(ip);
      this.hostApplied = this.hostIPs;
    }
    const host = new Set(this.hostIPs);
    const stats = emptyStats();
    for (const ip of whole ? [...new Set([...this.idents.keys(), ...a.addresses.keys(), ...host])] : addresses) {
      const v = a.addresses.get(ip);
      if (v) this.idents.set(ip, { id: v.id, epId: epIds.get(v.pod) ?? 0 });
      else if (host.has(ip)) this.idents.set(ip, { id: ID_HOST, epId: 0 });
      else this.idents.delete(ip);
    }
    if (whole) this.datapath.applyIdentities(this.idents, stats);
    else this.datapath.applyIdentityChanges(this.idents, addresses, stats);

    const compiled = this.compiler.compile({
      identities: a.identities, policies: this.policies, waypoints: this.waypoints(a),
      ...(this.opts.rootNamespace ? { rootNamespace: this.opts.rootNamespace } : {}),
    }, whole || policiesChanged ? undefined : delta);
    if (compiled !== this.compiled || whole) this.datapath.applyPolicies(compiled, stats);
    this.compiled = compiled;
    this.reportProblems(compiled.problems);
    this.whole = false;

    const ms = +(performance.now() - t0).toFixed(2);
    const result: PolicyUpdateResult = {
      ms, identities: a.identities.size, endpoints: this.local.size, destinations: compiled.destinations.size,
      tables: compiled.tables.size, entries: compiled.entryCount, stats, problems: compiled.problems,
    };
    this.opts.log?.info({ ms, pods: delta.pods.size, identities: result.identities, endpoints: result.endpoints, policies: this.policies.length, destinations: result.destinations,
      tables: result.tables, entries: result.entries, namespacesChanged, ...stats }, 'policy applied');
    return result;
  }

  /** The node's own addresses changed (auto-detected): they are identity host. */
  private setHostIPs(ips: readonly string[]): void {
    this.hostIPs = ips;
    this.opts.log?.info({ addresses: ips }, 'policy: node addresses (identity host)');
    if (this.assignment) {
      try { this.update({}); } catch (e) { this.opts.log?.error({ err: (e as Error).message }, 'policy: update after a node address change failed'); }
    }
  }

  /** The addresses given identity host. */
  nodeAddresses(): readonly string[] {
    return this.hostIPs;
  }

  /** Resolves when endpoint attachment in progress is done. */
  settled(): Promise<void> {
    return this.endpoints.settled();
  }

  problems(): Problem[] {
    return this.lastProblems;
  }

  /** Each workload's effective policy, its pods, endpoints and counters. */
  report(): PolicyReport {
    const a = this.assignment;
    const c = this.compiled;
    const eps = new Map(this.endpoints.list().map((e) => [e.key, e]));
    const counters = this.endpoints.counters();
    const drops = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
    for (const k of counters.values()) for (const r of DROP_REASONS) drops[r] += k.drops[r];
    const workloads: WorkloadReport[] = [];
    if (a && c) {
      const podsById = new Map<number, Pod[]>();
      for (const pod of this.pods.values()) {
        const ident = a.byPod.get(pod.key);
        if (!ident) continue;
        const l = podsById.get(ident.id);
        if (l) l.push(pod); else podsById.set(ident.id, [pod]);
      }
      for (const w of [...c.workloads.values()].sort((x, y) => (x.namespace < y.namespace ? -1 : x.namespace > y.namespace ? 1 : x.id - y.id))) {
        const r: WorkloadReport = { ...w, pods: [] };
        const t = this.datapath.tableOf(w.id);
        if (t !== undefined) r.table = t;
        for (const pod of podsById.get(w.id) ?? []) {
          const e = eps.get(pod.key);
          const entry: WorkloadReport['pods'][number] = { pod: pod.key, ips: [...pod.podIPs], local: e !== undefined };
          if (e) { entry.endpoint = e; entry.counters = counters.get(pod.key) ?? zeroCounters(); }
          r.pods.push(entry);
        }
        workloads.push(r);
      }
    }
    const policies = this.policies.map((p) => {
      const st = c?.policies.get(p.key);
      const out: PolicyReport['policies'][number] = { key: p.key, action: p.action, file: p.origin.file, selects: st?.selects.length ?? 0, enforcement: st?.enforcement ?? 'kernel' };
      if (st?.message) out.message = st.message;
      return out;
    });
    return {
      node: this.opts.nodeName, workloads, policies, problems: this.lastProblems, drops,
      totals: {
        identities: a?.identities.size ?? 0, policies: this.policies.length, tables: c?.tables.size ?? 0, entries: c?.entryCount ?? 0,
        cidrs: c?.cidrs.length ?? 0, endpoints: eps.size,
      },
    };
  }

  /** Stops watching and closes descriptors; programs stay attached, maps and links pinned. */
  async close(): Promise<void> {
    await this.endpoints.close();
    this.datapath.close();
  }

  /** Namespaces with a waypoint, and the identities of the waypoint's pods. */
  private waypoints(a: IdentityAssignment): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const ns of this.namespaces.values()) {
      const name = ns.labels[USE_WAYPOINT_LABEL];
      if (!name || name === WAYPOINT_OPT_OUT) continue;
      const ids = new Set<number>();
      for (const pod of this.waypointPods.values()) {
        if (pod.namespace === ns.name && pod.labels[WAYPOINT_POD_LABEL] === name) {
          const ident = a.byPod.get(pod.key);
          if (ident) ids.add(ident.id);
        }
      }
      out.set(ns.name, [...ids]);
    }
    return out;
  }

  private reportProblems(problems: Problem[]): void {
    const key = (p: Problem): string => `${p.code}\0${p.object ?? ''}\0${p.message}`;
    const before = new Set(this.lastProblems.map(key));
    for (const p of problems) if (!before.has(key(p))) this.opts.log?.warn({ code: p.code, file: p.file, object: p.object, field: p.field }, p.message);
    this.lastProblems = problems;
  }
}

/** A pod of `node` as an endpoint: running (or not yet reported), not on the host's network, with an address and an identity. */
function localPod(pod: Pod, node: string, identity: number | undefined): LocalPod | undefined {
  if (pod.nodeName !== node || pod.hostNetwork || pod.podIPs.length === 0 || identity === undefined) return undefined;
  if (pod.phase === 'Succeeded' || pod.phase === 'Failed') return undefined;
  const lp: LocalPod = { key: pod.key, ips: pod.podIPs, identity, annotations: pod.annotations };
  if (pod.uid) lp.uid = pod.uid;
  return lp;
}
