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
import { KernwayError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { projectRoot } from '../../common/version.js';
import { BpfError, BpfLink, BpfMap, BpfObject, type BpfProgram } from '../../native/index.js';
import type { CompileResult } from './policy-compile.js';
import { checkBpffsFolder, checkCgroupLinks, detachCgroupLinks, detachPin, removeEmptyDir, unpinOwnMaps } from './pins.js';
import {
  decodeAddr, decodeCidrKey, decodePolKey, encodeAddr, encodeCidrKey, encodeIdentVal, encodePdstVal, encodePolKey, encodeU32,
  POLICY_MAP_NAMES, POLICY_SIZES, type IdentVal, type PolicyMapName,
} from './policy-codec.js';

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

  private readonly objects: BpfObject[];
  /** What the maps hold, as this process wrote (or found) it. */
  private readonly identApplied = new Map<string, string>();
  private readonly pdstApplied = new Map<number, string>();
  private readonly cidrApplied = new Map<string, number>();
  /** Live tables: content key -> id, and id -> its entry keys. */
  private readonly tableIds = new Map<string, number>();
  private readonly tableKeys = new Map<number, Buffer[]>();
  private nextTable = 1;

  private constructor(objects: BpfObject[], maps: PolicyMaps, pins: PolicyPins, reused: boolean) {
    this.objects = objects;
    this.maps = maps;
    this.pins = pins;
    this.reusedMaps = reused;
    this.toPod = objects[0]!.program('kw_to_pod');
    this.fromPod = objects[0]!.program('kw_from_pod');
    this.readBack();
  }

  static async load(opts: PolicyDatapathOptions): Promise<PolicyDatapath> {
    const pins = policyPins(opts.bpffsDir);
    mkdirSync(pins.maps, { recursive: true });
    mkdirSync(pins.tc, { recursive: true });
    const sizes: Record<string, number> = {};
    let reused = false;
    const mapPins: Record<string, string> = {};
    for (const name of POLICY_MAP_NAMES) {
      const pin = join(pins.maps, name);
      mapPins[name] = pin;
      const want = opts.capacities?.[name];
      if (existsSync(pin)) {
        reused = true;
        const m = BpfMap.openPinned(pin);
        const info = m.info();
        m.close();
        const size = POLICY_SIZES[name];
        if (info.keySize !== size.key || info.valueSize !== size.value) {
          throw new KernwayError('KW_MAP_LAYOUT', `map ${name} pinned at ${pin} has key/value sizes ${info.keySize}/${info.valueSize}, expected ${size.key}/${size.value}; it was pinned by another kernway version: run \`kernway uninstall\``);
        }
        if (want !== undefined && want !== info.maxEntries) {
          throw new KernwayError('KW_MAP_CAPACITY_CHANGED', `map ${name} is pinned with ${info.maxEntries} entries but ${want} were asked; a pinned map cannot be resized: keep the capacity, or run \`kernway uninstall\``);
        }
        sizes[name] = info.maxEntries;
      } else if (want !== undefined) {
        sizes[name] = want;
      }
    }
    const dir = opts.objectDir ?? defaultObjectDir();
    const rodata = { kw_cfg_allow_host: opts.allowHost === false ? 0 : 1 };
    const objects: BpfObject[] = [];
    try {
      for (const file of ['tc_pod.bpf.o', 'policy_sock.bpf.o']) {
        const path = join(dir, file);
        let obj: BpfObject;
        try {
          obj = BpfObject.open(path, { maxEntries: sizes, reusePinned: mapPins, pinMaps: mapPins, rodata });
        } catch (e) {
          if ((e as { code?: string }).code === 'KW_ADDON_LOAD') throw e;
          throw new KernwayError('KW_BPF_OBJECT', `cannot open ${path}: ${errorMessage(e)} (run \`make bpf\`)`, undefined, { cause: e });
        }
        objects.push(obj);
        try {
          await obj.load();
        } catch (e) {
          const log = e instanceof BpfError && e.verifierLog ? `\nverifier log (tail):\n${e.verifierLog}` : '';
          throw new KernwayError('KW_BPF_LOAD', `loading ${path} failed: ${errorMessage(e)}${log}`, undefined, { cause: e });
        }
      }
      const maps = Object.fromEntries(POLICY_MAP_NAMES.map((n) => [n, objects[0]!.map(n)])) as unknown as PolicyMaps;
      for (const n of POLICY_MAP_NAMES) {
        const s = POLICY_SIZES[n];
        const info = maps[n].info();
        if (info.keySize !== s.key || info.valueSize !== s.value) throw new KernwayError('KW_MAP_LAYOUT', `map ${n}: key/value sizes ${info.keySize}/${info.valueSize} in the object, the agent expects ${s.key}/${s.value} (rebuild with \`make bpf\`)`);
      }
      const dp = new PolicyDatapath(objects, maps, pins, reused);
      if (opts.attachConnect !== false) dp.attachConnect(opts.cgroupPath, opts.log);
      opts.log?.info({ bpffs: opts.bpffsDir, reusedMaps: reused }, 'policy datapath loaded');
      return dp;
    } catch (e) {
      for (const o of objects) o.close();
      throw e;
    }
  }

  /** Attaches (or, after a restart, updates in place) the connect programs on the cgroup. */
  private attachConnect(cgroupPath: string, log?: Logger): void {
    const dir = join(this.pins.links, `cg-${statSync(cgroupPath).ino}`);
    mkdirSync(dir, { recursive: true });
    const sock = this.objects[1]!;
    try {
      for (const [prog, type] of CONNECT_PROGRAMS) {
        const pin = join(dir, prog);
        const p = sock.program(prog);
        if (existsSync(pin)) {
          const link = BpfLink.openPinned(pin);
          try { link.update(p); } finally { link.close(); }
        } else {
          const link = p.attachCgroup(cgroupPath, type);
          try { link.pin(pin); } catch (e) { link.detach(); throw e; } finally { link.close(); }
        }
      }
    } catch (e) {
      const hint = e instanceof BpfError && e.code === 'EPERM' ? ' (the agent needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)' : '';
      throw new KernwayError('KW_BPF_ATTACH', `attaching the policy connect() check to ${cgroupPath} failed: ${errorMessage(e)}${hint}`, undefined, { cause: e });
    }
    log?.debug({ cgroup: cgroupPath }, 'policy connect() check attached');
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
    const want = new Map<string, string>();
    for (const [ip, v] of desired) want.set(hex(encodeAddr(ip)), hex(encodeIdentVal(v)));
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    for (const [k, v] of want) {
      if (this.identApplied.get(k) === v) continue;
      keys.push(Buffer.from(k, 'hex'));
      values.push(Buffer.from(v, 'hex'));
    }
    if (keys.length > 0) this.maps.kw_ident.batchUpdate(keys, values);
    for (const k of keys) this.identApplied.set(hex(k), want.get(hex(k))!);
    stats.identUpserts += keys.length;
    const gone = [...this.identApplied.keys()].filter((k) => !want.has(k));
    if (gone.length > 0) this.maps.kw_ident.batchDelete(gone.map((k) => Buffer.from(k, 'hex')));
    for (const k of gone) this.identApplied.delete(k);
    stats.identDeletes += gone.length;
    return stats;
  }

  /** Writes a compilation: new tables, the destination switch, CIDR classes, then old tables out. */
  applyPolicies(result: Pick<CompileResult, 'cidrs' | 'destinations' | 'tables'>, stats: ApplyStats = emptyStats()): ApplyStats {
    // 1. Tables not in the maps yet, each under a fresh id.
    for (const t of result.tables.values()) {
      if (this.tableIds.has(t.key)) continue;
      const tbl = this.nextTable++;
      const keys = t.entries.map((e) => encodePolKey({ tbl, src: e.src, cls: e.cls, port: e.port, proto: e.proto }));
      if (keys.length > 0) {
        try {
          this.maps.kw_pol.batchUpdate(keys, t.entries.map((e) => encodeU32(e.bits)));
        } catch (e) {
          this.maps.kw_pol.batchDelete(keys);
          throw capacityError('kw_pol', e);
        }
      }
      this.tableIds.set(t.key, tbl);
      this.tableKeys.set(tbl, keys);
      stats.tablesAdded++;
      stats.entriesWritten += keys.length;
    }
    // 2. Destinations switch to their tables (one atomic update each), or leave.
    const want = new Map<number, string>();
    for (const [id, d] of result.destinations) {
      want.set(id, hex(encodePdstVal({ tbl: this.tableIds.get(d.table.key)!, flags: d.flags, combos: d.table.combos })));
    }
    for (const [id, v] of want) {
      if (this.pdstApplied.get(id) === v) continue;
      try {
        this.maps.kw_pdst.update(encodeU32(id), Buffer.from(v, 'hex'));
      } catch (e) {
        throw capacityError('kw_pdst', e);
      }
      this.pdstApplied.set(id, v);
      stats.destinationChanges++;
    }
    for (const id of [...this.pdstApplied.keys()]) {
      if (want.has(id)) continue;
      this.maps.kw_pdst.delete(encodeU32(id));
      this.pdstApplied.delete(id);
      stats.destinationChanges++;
    }
    // 3. CIDR classes: new and changed prefixes, then prefixes no longer used.
    const cidrWant = new Map<string, number>();
    for (const { cidr, cls } of result.cidrs) cidrWant.set(hex(encodeCidrKey(cidr.addr, cidr.bits)), cls);
    for (const [k, cls] of cidrWant) {
      if (this.cidrApplied.get(k) === cls) continue;
      try {
        this.maps.kw_cidr.update(Buffer.from(k, 'hex'), encodeU32(cls));
      } catch (e) {
        throw capacityError('kw_cidr', e);
      }
      this.cidrApplied.set(k, cls);
      stats.cidrChanges++;
    }
    for (const k of [...this.cidrApplied.keys()]) {
      if (cidrWant.has(k)) continue;
      this.maps.kw_cidr.delete(Buffer.from(k, 'hex'));
      this.cidrApplied.delete(k);
      stats.cidrChanges++;
    }
    // 4. Tables no destination uses any more.
    const used = new Set<number>();
    for (const v of this.pdstApplied.values()) used.add(Buffer.from(v, 'hex').readUInt32LE(0));
    for (const [key, tbl] of [...this.tableIds]) if (!used.has(tbl)) this.tableIds.delete(key);
    for (const [tbl, keys] of [...this.tableKeys]) {
      if (used.has(tbl)) continue;
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
    for (const o of this.objects) o.close();
  }
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
