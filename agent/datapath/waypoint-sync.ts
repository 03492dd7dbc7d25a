/**
 * The hand-off of HTTP ports to the waypoint, as the agent programs it
 * (bpf/include/waypoint*.h, docs/waypoint-handoff.md):
 *
 * - kw_wp_svc: svc_id of each bound frontend (a Service HTTP port, per cluster IP) -> the
 *   waypoint's ready pods of the frontend's family and the mesh port. No ready pod (or a
 *   waypoint that is not a kernway waypoint, or no sk_msg program to write the header):
 *   count 0, and connect() is refused (fail closed);
 * - kw_wp_guard: every waypoint pod's mesh address: a connect() there that the kernel did
 *   not redirect is refused (EPERM);
 * - kw_wp_exempt: network namespace cookies of the waypoints' own pods: never redirected;
 * - kw_wp_mesh (a policy map: the tc program on pod veths has it): the same mesh addresses
 *   as kw_wp_guard; a SYN to one of them from an address that is no known pod is dropped,
 *   counted in the entry's value (bpf/include/waypoint_syn.h).
 *
 * Each apply diffs what is wanted against the maps and writes the difference; the maps
 * are small (one entry per bound frontend).
 */
import { familyOf } from '../../k8s/ip.js';
import type { WaypointBindings } from '../../model/waypoint-binding.js';
import { ADDR_SIZE, datapathAddr, readAddr, writeAddr } from './addr.js';
import { IPPROTO_TCP } from './codec.js';
import { scalar, struct, type MapLayout } from './layout.js';
import type { MapLike } from './lb-maps.js';
import { KW_WP_GKEY } from './policy-codec.js';

/** Maps of the hand-off; kw_wp_sk and kw_wp_stats are shared with the sockmap object. */
export const WP_MAP_NAMES = ['kw_wp_svc', 'kw_wp_guard', 'kw_wp_exempt', 'kw_wp_sk', 'kw_wp_stats'] as const;
export type WpMapName = (typeof WP_MAP_NAMES)[number];
/** The maps both objects declare (the second to load reuses the first one's pin). */
export const WP_SHARED_MAPS = ['kw_wp_sk', 'kw_wp_stats'] as const;

/** KW_WP_MAX_PODS in bpf/include/waypoint_connect.h. */
export const WP_MAX_PODS = 16;

export const KW_WP_VAL = struct('kw_wp_val', 8 + WP_MAX_PODS * ADDR_SIZE, { count: [0, 4], port: [4, 2], pad: [6, 2], pods: [8, WP_MAX_PODS * ADDR_SIZE] });
/** Key of kw_wp_guard and of the policy datapath's kw_wp_mesh (bpf/include/waypoint_key.h). */
export { KW_WP_GKEY } from './policy-codec.js';

export const WP_LAYOUTS: Readonly<Record<string, MapLayout>> = {
  kw_wp_svc: { key: scalar(4), value: KW_WP_VAL },
  kw_wp_guard: { key: KW_WP_GKEY, value: scalar(4) },
  kw_wp_exempt: { key: scalar(8), value: scalar(4) },
  kw_wp_stats: { key: scalar(4), value: scalar(8), readOnly: true },
};

/** kw_wp_stats indexes (KW_WP_STAT_*). */
export const WP_STATS = ['redirected', 'refused', 'meshDenied', 'exempt', 'headersWritten', 'headerFailed', 'hashFailed'] as const;
/** kw_wp_stats summed over CPUs, and `synDropped`: SYNs to this node's waypoint pods' mesh ports from no known pod (kw_wp_mesh). */
export type WpStats = Record<(typeof WP_STATS)[number] | 'synDropped', number>;

export function encodeWpVal(pods: readonly string[], port: number): Buffer {
  const b = Buffer.alloc(KW_WP_VAL.size);
  b.writeUInt32LE(pods.length, KW_WP_VAL.at.count);
  b.writeUInt16BE(port, KW_WP_VAL.at.port);
  pods.forEach((ip, i) => writeAddr(ip, b, KW_WP_VAL.at.pods + i * ADDR_SIZE));
  return b;
}
export function decodeWpVal(b: Buffer): { pods: string[]; port: number } {
  const n = Math.min(b.readUInt32LE(KW_WP_VAL.at.count), WP_MAX_PODS);
  const pods: string[] = [];
  for (let i = 0; i < n; i++) pods.push(readAddr(b, KW_WP_VAL.at.pods + i * ADDR_SIZE));
  return { pods, port: b.readUInt16BE(KW_WP_VAL.at.port) };
}
export function encodeGuardKey(ip: string, port: number): Buffer {
  const b = Buffer.alloc(KW_WP_GKEY.size);
  writeAddr(ip, b, KW_WP_GKEY.at.addr);
  b.writeUInt16BE(port, KW_WP_GKEY.at.port);
  return b;
}

/** A frontend as ServiceSync holds it. */
export interface Frontend { svcId: number; service: string | undefined; vip: string; port: number; proto: number }

export interface WaypointFrontend {
  svcId: number;
  service: string;
  /** 'vip:port' */
  frontend: string;
  waypoint: string;
  /** Waypoint pods the kernel picks from (empty: refused). */
  pods: string[];
  /** Why there is no pod, when there is none. */
  reason?: string;
}

export interface WaypointPlan {
  svc: Map<number, Buffer>;
  guard: Map<string, Buffer>;
  exempt: Set<bigint>;
  frontends: WaypointFrontend[];
}

/**
 * What the maps should hold. `canWriteHeader` false (no sk_msg program: the sockmap
 * object is not loaded) binds every frontend with no pod: refused rather than sent to the
 * waypoint without the header it requires.
 */
export function planWaypoints(frontends: Iterable<Frontend>, b: WaypointBindings, opts: { canWriteHeader: boolean; exempt?: Iterable<bigint> }): WaypointPlan {
  const svc = new Map<number, Buffer>();
  const out: WaypointFrontend[] = [];
  for (const f of frontends) {
    if (f.proto !== IPPROTO_TCP || f.service === undefined) continue;
    const sb = b.services.get(f.service);
    if (!sb || !sb.httpPorts.has(f.port)) continue;
    const w = b.waypoints.get(sb.waypoint)!;
    const fam = familyOf(f.vip);
    let pods = w.podIPs.filter((ip) => familyOf(ip) === fam).map(datapathAddr);
    let reason: string | undefined;
    if (!w.valid) reason = `${w.key} is not a kernway waypoint Gateway`;
    else if (!opts.canWriteHeader) reason = 'no sk_msg program to write the PROXY header (sockmap not loaded)';
    else if (pods.length === 0) reason = `${w.key} has no ready ${fam} pod`;
    if (reason !== undefined) pods = [];
    if (pods.length > WP_MAX_PODS) pods = pods.slice(0, WP_MAX_PODS);
    svc.set(f.svcId, encodeWpVal(pods, w.meshPort));
    out.push({ svcId: f.svcId, service: f.service, frontend: `${f.vip}:${f.port}`, waypoint: w.key, pods, ...(reason ? { reason } : {}) });
  }
  const guard = new Map<string, Buffer>();
  for (const ip of b.waypointPodIPs) {
    const k = encodeGuardKey(datapathAddr(ip), 15019);
    guard.set(k.toString('hex'), k);
  }
  return { svc, guard, exempt: new Set(opts.exempt ?? []), frontends: out.sort((x, y) => x.svcId - y.svcId) };
}

function u32(n: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; }
function u64(n: bigint): Buffer { const b = Buffer.alloc(8); b.writeBigUInt64LE(n); return b; }

export class WaypointSync {
  private last: WaypointFrontend[] = [];
  /**
   * `mesh`: the policy datapath's kw_wp_mesh (the SYN guard on pod veths); without it
   * (no policy programs loaded) only the connect() guard protects the mesh port.
   */
  constructor(private readonly maps: Readonly<Record<WpMapName, MapLike>>, private readonly mesh?: MapLike) {}

  /** Makes the maps hold the plan; returns the number of writes and deletes. */
  apply(plan: WaypointPlan): { writes: number; deletes: number } {
    let writes = 0, deletes = 0;
    const sync = (map: MapLike, want: Map<string, [Buffer, Buffer]>): void => {
      const have = map.batchLookup();
      const seen = new Set<string>();
      for (let i = 0; i < have.keys.length; i++) {
        const k = have.keys[i]!.toString('hex');
        const w = want.get(k);
        if (!w) { if (map.delete(have.keys[i]!)) deletes++; continue; }
        seen.add(k);
        if (!w[1].equals(have.values[i]!)) { map.update(w[0], w[1]); writes++; }
      }
      for (const [k, [kb, vb]] of want) if (!seen.has(k)) { map.update(kb, vb); writes++; }
    };
    const one = u32(1);
    sync(this.maps.kw_wp_guard, new Map([...plan.guard].map(([k, kb]) => [k, [kb, one]])));
    if (this.mesh) {
      // The same keys; the values are the kernel's drop counters: added at zero, never rewritten.
      const have = new Set(this.mesh.batchLookup().keys.map((k) => k.toString('hex')));
      for (const [k, kb] of plan.guard) if (!have.has(k)) { this.mesh.update(kb, Buffer.alloc(8)); writes++; }
      for (const k of have) if (!plan.guard.has(k) && this.mesh.delete(Buffer.from(k, 'hex'))) deletes++;
    }
    sync(this.maps.kw_wp_exempt, new Map([...plan.exempt].map((c) => { const kb = u64(c); return [kb.toString('hex'), [kb, one]]; })));
    sync(this.maps.kw_wp_svc, new Map([...plan.svc].map(([id, vb]) => { const kb = u32(id); return [kb.toString('hex'), [kb, vb]]; })));
    this.last = plan.frontends;
    return { writes, deletes };
  }

  /** The frontends last applied (for `kernway status` and `kernway services`). */
  get frontends(): readonly WaypointFrontend[] { return this.last; }

  /** kw_wp_stats summed over CPUs, and the SYN guard's drops. */
  stats(): WpStats {
    const out = Object.fromEntries([...WP_STATS, 'synDropped'].map((n) => [n, 0])) as WpStats;
    const m = this.maps.kw_wp_stats;
    for (let i = 0; i < WP_STATS.length; i++) {
      const v = m.lookup(u32(i));
      if (!v) continue;
      let sum = 0n;
      for (let o = 0; o + 8 <= v.length; o += 8) sum += v.readBigUInt64LE(o);
      out[WP_STATS[i]!] = Number(sum);
    }
    if (this.mesh) for (const v of this.mesh.batchLookup().values) out.synDropped += Number(v.readBigUInt64LE(0));
    return out;
  }
}
