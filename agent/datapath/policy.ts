/**
 * The L4 policy datapath: loads bpf/tc_pod.bpf.c and bpf/policy_sock.bpf.c (sharing their
 * maps through pins), attaches the connect() check to the agent's cgroup, and writes
 * identities and compiled policies into the maps as diffs.
 *
 * Pins, under the agent's bpffs folder (beside the load balancer's maps/ and links/):
 *   <bpffs>/policy/maps/kw_*                        the maps; a restarted agent reuses them
 *   <bpffs>/policy/links/cg-<ino>/kw_pol_connect4   the cgroup links (also connect6)
 *   <bpffs>/policy/tc/<ifindex>-<to|from>           the tc links on pod veths (endpoints.ts)
 *
 * Ordering: the connect programs must be attached AFTER the load balancer's (cgroup
 * programs run in attach order), so they see the backend a ClusterIP was sent to. The
 * agent loads the load balancer first; a restart updates both links in place.
 *
 * Verdict tables are switched, never edited: new table, then kw_pdst switch, then the
 * old table is deleted (bpf/include/policy.h).
 */
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { KernwayError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { projectRoot } from '../../common/version.js';
import { BpfError, type BpfMap, type BpfProgram } from '../../native/index.js';
import type { CompileResult } from './policy-compile.js';
import { checkBpffsFolder, checkCgroupLinks, detachCgroupLinks, detachPin, removeEmptyDir, unpinOwnMaps } from './pins.js';
import {
  decodeAddr, decodeCidrKey, decodePolKey, encodeAddr, encodeCidrKey, encodeIdentVal, encodePdstVal, encodePolKey, encodeU32,
  POLICY_LAYOUTS, POLICY_MAP_NAMES, type IdentVal, type PolicyMapName,
} from './policy-codec.js';
import { planMap, type MapPlan } from './plan.js';
import { checkSubsystem, type LoadedSubsystem, type SubsystemPlan, type SubsystemSpec } from './loader.js';

export const CONNECT_PROGRAMS = [['kw_pol_connect4', 'connect4'], ['kw_pol_connect6', 'connect6']] as const;

export type PolicyMaps = Record<PolicyMapName, BpfMap>;
export type PolicyCapacities = Partial<Record<PolicyMapName, number>>;

export interface PolicyDatapathOptions {
  /** The cgroup (v2) whose processes' connect() calls are checked. */
  cgroupPath: string;
  /** The agent's bpffs folder. */
  bpffsDir: string;
  /** Where tc_pod.bpf.o and policy_sock.bpf.o are (default build/bpf). */
  objectDir?: string;
  capacities?: PolicyCapacities;
  /** Traffic from the node's own addresses passes whatever the policy (default true, as kubelet probes need). */
  allowHost?: boolean;
  /** Attach the connect() check (default true); without it only tc ingress enforces. */
  attachConnect?: boolean;
  log?: Logger;
}

export interface PolicyPins { root: string; maps: string; links: string; tc: string }

export function policyPins(bpffsDir: string): PolicyPins {
  const root = join(bpffsDir, 'policy');
  return { root, maps: join(root, 'maps'), links: join(root, 'links'), tc: join(root, 'tc') };
}

export function defaultObjectDir(): string {
  return join(projectRoot(), 'build', 'bpf');
}

export interface ApplyStats {
  identUpserts: number;
  identDeletes: number;
  tablesAdded: number;
  tablesDeleted: number;
  entriesWritten: number;
  entriesDeleted: number;
  destinationChanges: number;
  cidrChanges: number;
}

const hex = (b: Buffer): string => b.toString('hex');

export class PolicyDatapath {
  readonly maps: PolicyMaps;
  readonly toPod: BpfProgram;
  readonly fromPod: BpfProgram;
  readonly pins: PolicyPins;
  /** Whether the maps were adopted from pins (a restart). */
  readonly reusedMaps: boolean;

  private readonly sub: LoadedSubsystem;
  /** What the maps hold, as this process wrote (or found) it. */
  private readonly identApplied = new Map<string, string>();
  private readonly pdstApplied = new Map<number, string>();
  private readonly cidrApplied = new Map<string, number>();
  /** Live tables: content key -> id, and id -> its entry keys. */
  private readonly tableIds = new Map<string, number>();
  private readonly tableKeys = new Map<number, Buffer[]>();
  private nextTable = 1;

  private constructor(sub: LoadedSubsystem, maps: PolicyMaps, pins: PolicyPins) {
    this.sub = sub;
    this.maps = maps;
    this.pins = pins;
    this.reusedMaps = sub.reusedMaps;
    this.toPod = sub.program('kw_to_pod');
    this.fromPod = sub.program('kw_from_pod');
    this.readBack();
  }

  /** The policy datapath as the loader sees it (agent/datapath/loader.ts). */
  static spec(opts: PolicyDatapathOptions): SubsystemSpec {
    const pins = policyPins(opts.bpffsDir);
    const dir = opts.objectDir ?? defaultObjectDir();
    const rodata = { kw_cfg_allow_host: opts.allowHost === false ? 0 : 1 };
    const attach = opts.attachConnect !== false;
    return {
      what: 'the policy datapath',
      objects: [{ path: join(dir, 'tc_pod.bpf.o'), rodata }, { path: join(dir, 'policy_sock.bpf.o'), rodata }],
      mapsDir: pins.maps,
      maps: POLICY_MAP_NAMES,
      layouts: POLICY_LAYOUTS,
      codec: 'agent/datapath/policy-codec.ts',
      capacities: opts.capacities ?? {},
      ...(attach ? {
        linksDir: join(pins.links, `cg-${statSync(opts.cgroupPath).ino}`),
        links: CONNECT_PROGRAMS.map(([program, type]) => ({ program, attach: (p: BpfProgram) => p.attachCgroup(opts.cgroupPath, type) })),
      } : {}),
      ...(opts.log ? { log: opts.log } : {}),
    };
  }

  /** Everything checked before the kernel is touched (capacities, layouts vs BTF, pinned maps). */
  static check(opts: PolicyDatapathOptions): SubsystemPlan {
    return checkSubsystem(PolicyDatapath.spec(opts));
  }

  static async load(opts: PolicyDatapathOptions): Promise<PolicyDatapath> {
    const pins = policyPins(opts.bpffsDir);
    const plan = PolicyDatapath.check(opts);
    mkdirSync(pins.tc, { recursive: true });
    const sub = await plan.load();
    try {
      const maps = Object.fromEntries(POLICY_MAP_NAMES.map((n) => [n, sub.map(n)])) as unknown as PolicyMaps;
      const dp = new PolicyDatapath(sub, maps, pins);
      sub.attach();
      opts.log?.info({ bpffs: opts.bpffsDir, reusedMaps: sub.reusedMaps, migratedMaps: sub.migrated }, 'policy datapath loaded');
      return dp;
    } catch (e) {
      sub.close();
      throw e;
    }
  }

  /** What the pinned maps hold after a restart: the starting point of the diffs. */
  private readBack(): void {
    const ident = this.maps.kw_ident.batchLookup();
    ident.keys.forEach((k, i) => this.identApplied.set(hex(k), hex(ident.values[i]!)));
    const pdst = this.maps.kw_pdst.batchLookup();
    pdst.keys.forEach((k, i) => this.pdstApplied.set(k.readUInt32LE(0), hex(pdst.values[i]!)));
    for (const [k, v] of this.maps.kw_cidr.entries()) this.cidrApplied.set(hex(k), v.readUInt32LE(0));
    // Tables of an earlier agent: kept (kw_pdst points at them) until the first apply replaces them.
    const pol = this.maps.kw_pol.batchLookup();
    for (const k of pol.keys) {
      const tbl = decodePolKey(k).tbl;
      let list = this.tableKeys.get(tbl);
      if (!list) this.tableKeys.set(tbl, (list = []));
      list.push(Buffer.from(k));
      if (tbl >= this.nextTable) this.nextTable = tbl + 1;
    }
    for (const v of this.pdstApplied.values()) {
      const tbl = Buffer.from(v, 'hex').readUInt32LE(0);
      if (tbl >= this.nextTable) this.nextTable = tbl + 1;
    }
  }

  /** Address -> (identity, endpoint) pairs in the maps, for seeding the identity allocator after a restart. */
  pinnedIdentities(): { ip: string; id: number }[] {
    const out: { ip: string; id: number }[] = [];
    for (const [k, v] of this.identApplied) {
      const b = Buffer.from(k, 'hex');
      out.push({ ip: decodeAddr(b), id: Buffer.from(v, 'hex').readUInt32LE(0) });
    }
    return out;
  }

  /** Address -> endpoint id pairs in the maps (local pods), to keep endpoint ids (and counters) after a restart. */
  pinnedEndpoints(): { ip: string; epId: number }[] {
    const out: { ip: string; epId: number }[] = [];
    for (const [k, v] of this.identApplied) {
      const epId = Buffer.from(v, 'hex').readUInt32LE(4);
      if (epId > 0) out.push({ ip: decodeAddr(Buffer.from(k, 'hex')), epId });
    }
    return out;
  }

  /** CIDR classes in the pinned kw_cidr ('<addr hex>/<bits>' -> class), to seed the compiler after a restart. */
  pinnedClasses(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [k, cls] of this.cidrApplied) {
      const { addr, bits } = decodeCidrKey(Buffer.from(k, 'hex'));
      out.set(`${addr.toString('hex')}/${bits}`, cls);
    }
    return out;
  }

  /** Writes the address -> identity map: changed and new entries, then removals. */
  applyIdentities(desired: ReadonlyMap<string, IdentVal>, stats: ApplyStats = emptyStats()): ApplyStats {
    const plan = planIdentities(this.identApplied, desired);
    const keys = plan.upserts.map((u) => Buffer.from(u.key, 'hex'));
    if (keys.length > 0) this.maps.kw_ident.batchUpdate(keys, plan.upserts.map((u) => Buffer.from(u.value, 'hex')));
    for (const u of plan.upserts) this.identApplied.set(u.key, u.value);
    stats.identUpserts += keys.length;
    if (plan.removals.length > 0) this.maps.kw_ident.batchDelete(plan.removals.map((k) => Buffer.from(k, 'hex')));
    for (const k of plan.removals) this.identApplied.delete(k);
    stats.identDeletes += plan.removals.length;
    return stats;
  }

  /**
   * kw_ident for the addresses under `ips` only (`desired` holds every address's entry;
   * one absent from it is removed): the cost of a change, not of the cluster.
   */
  applyIdentityChanges(desired: ReadonlyMap<string, IdentVal>, ips: Iterable<string>, stats: ApplyStats = emptyStats()): ApplyStats {
    const upKeys: Buffer[] = [];
    const upValues: Buffer[] = [];
    const removals: Buffer[] = [];
    for (const ip of ips) {
      const key = encodeAddr(ip);
      const k = hex(key);
      const want = desired.get(ip);
      if (want) {
        const value = encodeIdentVal(want);
        if (this.identApplied.get(k) === hex(value)) continue;
        upKeys.push(key);
        upValues.push(value);
      } else if (this.identApplied.has(k)) {
        removals.push(key);
      }
    }
    if (upKeys.length > 0) this.maps.kw_ident.batchUpdate(upKeys, upValues);
    upKeys.forEach((k, i) => this.identApplied.set(hex(k), hex(upValues[i]!)));
    stats.identUpserts += upKeys.length;
    if (removals.length > 0) this.maps.kw_ident.batchDelete(removals);
    for (const k of removals) this.identApplied.delete(hex(k));
    stats.identDeletes += removals.length;
    return stats;
  }

  /** Writes a compilation: new tables, the destination switch, CIDR classes, then old tables out. */
  applyPolicies(result: Pick<CompileResult, 'cidrs' | 'destinations' | 'tables'>, stats: ApplyStats = emptyStats()): ApplyStats {
    const plan = planPolicies({ tableIds: this.tableIds, tableKeys: this.tableKeys, pdst: this.pdstApplied, cidr: this.cidrApplied, nextTable: this.nextTable }, result);
    // 1. Tables not in the maps yet, each under a fresh id.
    for (const t of plan.tables) {
      this.nextTable = t.tbl + 1;
      if (t.keys.length > 0) {
        try {
          this.maps.kw_pol.batchUpdate(t.keys, t.values);
        } catch (e) {
          this.maps.kw_pol.batchDelete(t.keys);
          throw capacityError('kw_pol', e);
        }
      }
      this.tableIds.set(t.key, t.tbl);
      this.tableKeys.set(t.tbl, t.keys);
      stats.tablesAdded++;
      stats.entriesWritten += t.keys.length;
    }
    // 2. Destinations switch to their tables (one atomic update each), or leave.
    for (const { key: id, value: v } of plan.pdst.upserts) {
      try {
        this.maps.kw_pdst.update(encodeU32(id), Buffer.from(v, 'hex'));
      } catch (e) {
        throw capacityError('kw_pdst', e);
      }
      this.pdstApplied.set(id, v);
      stats.destinationChanges++;
    }
    for (const id of plan.pdst.removals) {
      this.maps.kw_pdst.delete(encodeU32(id));
      this.pdstApplied.delete(id);
      stats.destinationChanges++;
    }
    // 3. CIDR classes: new and changed prefixes, then prefixes no longer used.
    for (const { key: k, value: cls } of plan.cidr.upserts) {
      try {
        this.maps.kw_cidr.update(Buffer.from(k, 'hex'), encodeU32(cls));
      } catch (e) {
        throw capacityError('kw_cidr', e);
      }
      this.cidrApplied.set(k, cls);
      stats.cidrChanges++;
    }
    for (const k of plan.cidr.removals) {
      this.maps.kw_cidr.delete(Buffer.from(k, 'hex'));
      this.cidrApplied.delete(k);
      stats.cidrChanges++;
    }
    // 4. Tables no destination uses any more.
    for (const key of plan.forget) this.tableIds.delete(key);
    for (const tbl of plan.tablesOut) {
      const keys = this.tableKeys.get(tbl)!;
      if (keys.length > 0) this.maps.kw_pol.batchDelete(keys);
      this.tableKeys.delete(tbl);
      stats.tablesDeleted++;
      stats.entriesDeleted += keys.length;
    }
    return stats;
  }

  /** Table id of each destination identity (for `kernway policies`). */
  tableOf(id: number): number | undefined {
    const v = this.pdstApplied.get(id);
    return v === undefined ? undefined : Buffer.from(v, 'hex').readUInt32LE(0);
  }

  /** Closes our file descriptors; programs stay attached (pinned links) and maps pinned. */
  close(): void {
    this.sub.close();
  }
}

/** What the policy maps hold, as the datapath mirrors it (read by planPolicies, not changed). */
export interface PolicyState {
  /** Live tables: content key -> id, and id -> its kw_pol keys. */
  tableIds: ReadonlyMap<string, number>;
  tableKeys: ReadonlyMap<number, readonly Buffer[]>;
  /** kw_pdst: destination identity -> value (hex). */
  pdst: ReadonlyMap<number, string>;
  /** kw_cidr: key (hex) -> class. */
  cidr: ReadonlyMap<string, number>;
  /** The id the next new table takes. */
  nextTable: number;
}

/** A compilation's writes, in apply order (PolicyDatapath.applyPolicies). */
export interface PolicyPlan {
  /** 1. new tables, each under a fresh id, with their kw_pol entries. */
  tables: Array<{ key: string; tbl: number; keys: Buffer[]; values: Buffer[] }>;
  /** 2. the destination switch. */
  pdst: MapPlan<number, string>;
  /** 3. CIDR classes. */
  cidr: MapPlan<string, number>;
  /** 4. content keys forgotten and tables deleted (no destination uses them after 2). */
  forget: string[];
  tablesOut: number[];
}

/** Plans writing a compilation over what the maps hold: pure, no map touched. */
export function planPolicies(state: PolicyState, result: Pick<CompileResult, 'cidrs' | 'destinations' | 'tables'>): PolicyPlan {
  const tables: PolicyPlan['tables'] = [];
  const tableIds = new Map(state.tableIds);
  let nextTable = state.nextTable;
  for (const t of result.tables.values()) {
    if (tableIds.has(t.key)) continue;
    const tbl = nextTable++;
    const keys = t.entries.map((e) => encodePolKey({ tbl, src: e.src, cls: e.cls, port: e.port, proto: e.proto }));
    tables.push({ key: t.key, tbl, keys, values: t.entries.map((e) => encodeU32(e.bits)) });
    tableIds.set(t.key, tbl);
  }
  const pdstWant = new Map<number, string>();
  for (const [id, d] of result.destinations) {
    pdstWant.set(id, hex(encodePdstVal({ tbl: tableIds.get(d.table.key)!, flags: d.flags, combos: d.table.combos })));
  }
  const cidrWant = new Map<string, number>();
  for (const { cidr, cls } of result.cidrs) cidrWant.set(hex(encodeCidrKey(cidr.addr, cidr.bits)), cls);
  const used = new Set<number>();
  for (const v of pdstWant.values()) used.add(Buffer.from(v, 'hex').readUInt32LE(0));
  const forget = [...tableIds].filter(([, tbl]) => !used.has(tbl)).map(([key]) => key);
  const tablesOut = [...state.tableKeys.keys(), ...tables.map((t) => t.tbl)].filter((tbl) => !used.has(tbl));
  return { tables, pdst: planMap(state.pdst, pdstWant), cidr: planMap(state.cidr, cidrWant), forget, tablesOut };
}

/** The kw_ident plan: address -> identity entries to write and remove (keys and values as hex). */
export function planIdentities(applied: ReadonlyMap<string, string>, desired: ReadonlyMap<string, IdentVal>): MapPlan<string, string> {
  const want = new Map<string, string>();
  for (const [ip, v] of desired) want.set(hex(encodeAddr(ip)), hex(encodeIdentVal(v)));
  return planMap(applied, want);
}

export function emptyStats(): ApplyStats {
  return { identUpserts: 0, identDeletes: 0, tablesAdded: 0, tablesDeleted: 0, entriesWritten: 0, entriesDeleted: 0, destinationChanges: 0, cidrChanges: 0 };
}

function capacityError(map: string, e: unknown): Error {
  if (e instanceof BpfError && (e.code === 'E2BIG' || e.code === 'ENOMEM' || e.code === 'ENOSPC')) {
    return new KernwayError('KW_POLICY_CAPACITY', `map ${map} is full (${e.code}); raise its capacity (the policy in force is unchanged)`, undefined, { cause: e });
  }
  return e instanceof Error ? e : new Error(String(e));
}

export interface PolicyUninstallResult { detached: string[]; unpinned: string[] }

/** Detaches the policy programs linked under <bpffs>/policy and removes its own pins (agent/datapath/pins.ts rules). */
export function uninstallPolicy(bpffsDir: string, cgroupPath?: string): PolicyUninstallResult {
  const pins = policyPins(bpffsDir);
  const result: PolicyUninstallResult = { detached: [], unpinned: [] };
  if (!existsSync(pins.root)) return result;
  checkBpffsFolder(bpffsDir);
  const programs = new Set<string>(CONNECT_PROGRAMS.map(([p]) => p));
  if (cgroupPath !== undefined) checkCgroupLinks(pins.links, cgroupPath, programs);
  result.detached.push(...detachCgroupLinks(pins.links, programs, cgroupPath).map((d) => `links/${d}`));
  if (existsSync(pins.tc)) {
    for (const name of readdirSync(pins.tc)) {
      // Per pod interface: <ifindex>-to, <ifindex>-from (agent/datapath/endpoints.ts).
      if (/^\d+-(to|from)$/.test(name) && detachPin(join(pins.tc, name))) result.detached.push(`tc/${name}`);
    }
  }
  result.unpinned.push(...unpinOwnMaps(pins.maps, new Set(POLICY_MAP_NAMES)));
  for (const d of [pins.links, pins.tc, pins.maps, pins.root]) removeEmptyDir(d);
  return result;
}
