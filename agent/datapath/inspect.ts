/**
 * What the kernel balances, read from the maps themselves (not from the agent's
 * memory): each frontend with its live backend set, algorithm, affinity and counters.
 * Serves `kernway services` (through the agent's admin API, or from the pins directly).
 */
import { hostPort } from '../../k8s/ip.js';
import {
  SVC_F_AFFINITY, SVC_F_MAGLEV, decodeBackend, decodeSlotKey, decodeSvcKey, decodeSvcStatsPerCpu, decodeSvcVal, decodeU32,
  encodeU32, protoName,
} from './codec.js';
import type { LbMaps, MapLike } from './lb-maps.js';
import { decodeWpVal } from './waypoint-sync.js';

export interface KernelService {
  /** 'vip:port/PROTO' */
  frontend: string;
  vip: string;
  port: number;
  protocol: string;
  svcId: number;
  algorithm: 'random' | 'maglev';
  /** ClientIP affinity timeout in seconds, or null. */
  affinityTimeoutSeconds: number | null;
  /** Backends of the live set, 'ip:port', in slot order; a slot whose backend is missing shows as '?'. */
  backends: string[];
  /** Whether the Maglev table of the live set is present (maglev only). */
  maglevTable?: boolean;
  connectionsBalanced: number;
  connectionsRefused: number;
  /** 'ns/name' and port name, when the caller knows them (the agent does; the pins do not). */
  service?: string;
  portName?: string;
  /** An HTTP port handed to a waypoint (docs/waypoint-handoff.md): its pods ('ip:port'); none: connect() refused. */
  waypointPods?: string[];
}

export function readKernelServices(maps: LbMaps, names?: Map<number, { service?: string; portName?: string }>, wpSvc?: MapLike): KernelService[] {
  const svc = maps.kw_svc.batchLookup();
  const slots = maps.kw_slot.batchLookup();
  const backends = maps.kw_backend.batchLookup();
  const slotOf = new Map<string, number>();
  for (let i = 0; i < slots.keys.length; i++) {
    const k = decodeSlotKey(slots.keys[i]!);
    slotOf.set(`${k.setId}/${k.slot}`, decodeU32(slots.values[i]!));
  }
  const backendOf = new Map<number, string>();
  for (let i = 0; i < backends.keys.length; i++) {
    const b = decodeBackend(backends.values[i]!);
    backendOf.set(decodeU32(backends.keys[i]!), hostPort(b.ip, b.port));
  }
  const out: KernelService[] = [];
  for (let i = 0; i < svc.keys.length; i++) {
    const k = decodeSvcKey(svc.keys[i]!);
    const v = decodeSvcVal(svc.values[i]!);
    const list: string[] = [];
    for (let s = 0; s < v.count; s++) {
      const id = slotOf.get(`${v.setId}/${s}`);
      list.push(id === undefined ? '?' : backendOf.get(id) ?? '?');
    }
    const stats = maps.kw_svc_stats.lookup(encodeU32(v.svcId));
    const st = stats ? decodeSvcStatsPerCpu(stats) : { balanced: 0n, refused: 0n };
    const proto = protoName(k.proto);
    const maglev = (v.flags & SVC_F_MAGLEV) !== 0;
    const entry: KernelService = {
      frontend: `${hostPort(k.vip, k.port)}/${proto}`,
      vip: k.vip, port: k.port, protocol: proto, svcId: v.svcId,
      algorithm: maglev ? 'maglev' : 'random',
      affinityTimeoutSeconds: (v.flags & SVC_F_AFFINITY) !== 0 ? v.affinityTimeout : null,
      backends: list,
      connectionsBalanced: Number(st.balanced),
      connectionsRefused: Number(st.refused),
    };
    if (maglev) entry.maglevTable = v.count === 0 || maps.kw_maglev.lookup(encodeU32(v.setId)) !== undefined;
    const wp = wpSvc?.lookup(encodeU32(v.svcId));
    if (wp) {
      const w = decodeWpVal(wp);
      entry.waypointPods = w.pods.map((ip) => hostPort(ip, w.port));
    }
    const n = names?.get(v.svcId);
    if (n?.service !== undefined) entry.service = n.service;
    if (n?.portName !== undefined) entry.portName = n.portName;
    out.push(entry);
  }
  out.sort((a, b) => (a.frontend < b.frontend ? -1 : a.frontend > b.frontend ? 1 : 0));
  return out;
}
