/**
 * Buffers <-> the C structs of bpf/include/identity.h and policy.h. The one place in
 * TypeScript that knows their layout: each struct is declared once (layout.ts), the
 * codecs read their offsets from it, and the loader checks POLICY_LAYOUTS against the
 * objects' BTF before load.
 *
 * Host-order integers are little-endian (x86-64, arm64); ports are network order.
 */
import { endianness } from 'node:os';
import { KernwayError } from '../../common/errors.js';
import { addrBytes, addrText } from '../../k8s/cidr.js';
import { scalar, struct, type MapLayout } from './layout.js';

if (endianness() !== 'LE') throw new KernwayError('KW_UNSUPPORTED_HOST', 'kernway datapath codecs assume a little-endian host');

/** Map names, as in the BPF objects and as pinned under <bpffs>/policy/maps/. */
export const POLICY_MAP_NAMES = ['kw_ident', 'kw_lxc', 'kw_cgrp', 'kw_ep_stats', 'kw_pdst', 'kw_pol', 'kw_cidr', 'kw_wp_mesh', 'kw_netns'] as const;
export type PolicyMapName = (typeof POLICY_MAP_NAMES)[number];

// ---- Layouts (bpf/include/kw_common.h, identity.h, policy.h) ------------------------
export const KW_ADDR = struct('kw_addr', 16, { w: [0, 16] });
export const KW_IDENT_VAL = struct('kw_ident_val', 8, { id: [0, 4], ep_id: [4, 4] });
export const KW_LXC_VAL = struct('kw_lxc_val', 8, { ep_id: [0, 4], id: [4, 4] });
export const KW_CGRP_VAL = struct('kw_cgrp_val', 40, { ep_id: [0, 4], id: [4, 4], ip4: [8, KW_ADDR], ip6: [24, KW_ADDR] });
export const KW_EP_STATS = struct('kw_ep_stats', 72, {
  pkts_in: [0, 8], bytes_in: [8, 8], pkts_out: [16, 8], bytes_out: [24, 8], drops: [32, 32], refused_out: [64, 8],
});
export const KW_PDST_VAL = struct('kw_pdst_val', 8, { tbl: [0, 4], flags: [4, 2], combos: [6, 1], pad: [7, 1] });
export const KW_POL_KEY = struct('kw_pol_key', 16, { tbl: [0, 4], src: [4, 4], cls: [8, 4], port: [12, 2], proto: [14, 1], pad: [15, 1] });
export const KW_CIDR_KEY = struct('kw_cidr_key', 20, { prefixlen: [0, 4], addr: [4, KW_ADDR] });
/** The hand-off's SYN guard (bpf/include/waypoint_syn.h): a waypoint pod's mesh address -> SYNs dropped; written by waypoint-sync.ts. */
export const KW_WP_GKEY = struct('kw_wp_gkey', 20, { addr: [0, KW_ADDR], port: [16, 2], pad: [18, 2] });

/** What the codecs below encode of each policy map, checked against BTF at load. */
export const POLICY_LAYOUTS: Readonly<Record<PolicyMapName, MapLayout>> = {
  kw_ident: { key: KW_ADDR, value: KW_IDENT_VAL },
  kw_lxc: { key: scalar(4), value: KW_LXC_VAL },
  kw_cgrp: { key: scalar(8), value: KW_CGRP_VAL },
  kw_ep_stats: { key: scalar(4), value: KW_EP_STATS },
  kw_pdst: { key: scalar(4), value: KW_PDST_VAL },
  kw_pol: { key: KW_POL_KEY, value: scalar(4) },
  kw_cidr: { key: KW_CIDR_KEY, value: scalar(4) },
  kw_wp_mesh: { key: KW_WP_GKEY, value: scalar(8) },
  kw_netns: { key: scalar(8), value: KW_CGRP_VAL },
};

/** Drop reasons, by index of kw_ep_stats.drops[] (identity.h KW_DROP_*). */
export const DROP_REASONS = ['policy_denied', 'policy_l7_unenforceable', 'policy_denied_connect', 'policy_l7_unenforceable_connect'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export function encodeAddr(ip: string): Buffer {
  const b = addrBytes(ip);
  if (!b) throw new KernwayError('KW_INVALID_ARGUMENT', `not an IP address: ${JSON.stringify(ip)}`);
  return b;
}
export const decodeAddr = addrText;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}
export const encodeU32 = u32;
export function decodeU32(b: Buffer): number {
  return b.readUInt32LE(0);
}

// ---- kw_ident: struct kw_addr -> struct kw_ident_val { u32 id; u32 ep_id; }
export interface IdentVal { id: number; epId: number }
export function encodeIdentVal(v: IdentVal): Buffer {
  const b = Buffer.alloc(KW_IDENT_VAL.size);
  b.writeUInt32LE(v.id, KW_IDENT_VAL.at.id);
  b.writeUInt32LE(v.epId, KW_IDENT_VAL.at.ep_id);
  return b;
}
export function decodeIdentVal(b: Buffer): IdentVal {
  return { id: b.readUInt32LE(KW_IDENT_VAL.at.id), epId: b.readUInt32LE(KW_IDENT_VAL.at.ep_id) };
}

// ---- kw_lxc: u32 ifindex -> struct kw_lxc_val { u32 ep_id; u32 id; }
export interface LxcVal { epId: number; id: number }
export function encodeLxcVal(v: LxcVal): Buffer {
  const b = Buffer.alloc(KW_LXC_VAL.size);
  b.writeUInt32LE(v.epId, KW_LXC_VAL.at.ep_id);
  b.writeUInt32LE(v.id, KW_LXC_VAL.at.id);
  return b;
}
export function decodeLxcVal(b: Buffer): LxcVal {
  return { epId: b.readUInt32LE(KW_LXC_VAL.at.ep_id), id: b.readUInt32LE(KW_LXC_VAL.at.id) };
}

// ---- kw_cgrp: u64 cgroup id -> struct kw_cgrp_val { u32 ep_id; u32 id; kw_addr ip4; kw_addr ip6; }
export interface CgrpVal { epId: number; id: number; ip4?: string; ip6?: string }
export function encodeCgroupId(id: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(id);
  return b;
}
export function decodeCgroupId(b: Buffer): bigint {
  return b.readBigUInt64LE(0);
}
export function encodeCgrpVal(v: CgrpVal): Buffer {
  const b = Buffer.alloc(KW_CGRP_VAL.size);
  b.writeUInt32LE(v.epId, KW_CGRP_VAL.at.ep_id);
  b.writeUInt32LE(v.id, KW_CGRP_VAL.at.id);
  if (v.ip4) encodeAddr(v.ip4).copy(b, KW_CGRP_VAL.at.ip4);
  if (v.ip6) encodeAddr(v.ip6).copy(b, KW_CGRP_VAL.at.ip6);
  return b;
}

// ---- kw_ep_stats: u32 ep_id -> struct kw_ep_stats (per CPU)
export interface EndpointCounters {
  packetsIn: number;
  bytesIn: number;
  packetsOut: number;
  bytesOut: number;
  drops: Record<DropReason, number>;
  /** This pod's own connect() calls refused by a policy. */
  refusedOut: number;
}
export function zeroCounters(): EndpointCounters {
  return { packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0, drops: Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>, refusedOut: 0 };
}
/** Sums the per-CPU values of a kw_ep_stats lookup (each CPU's value padded to 8 bytes; 72 already is). */
export function decodeEpStats(all: Buffer, valueSize = KW_EP_STATS.size): EndpointCounters {
  const c = zeroCounters();
  const stride = Math.ceil(valueSize / 8) * 8;
  const at = KW_EP_STATS.at;
  for (let o = 0; o + valueSize <= all.length; o += stride) {
    const n = (off: number): number => Number(all.readBigUInt64LE(o + off));
    c.packetsIn += n(at.pkts_in);
    c.bytesIn += n(at.bytes_in);
    c.packetsOut += n(at.pkts_out);
    c.bytesOut += n(at.bytes_out);
    DROP_REASONS.forEach((r, i) => { c.drops[r] += n(at.drops + 8 * i); });
    c.refusedOut += n(at.refused_out);
  }
  return c;
}

// ---- kw_pdst: u32 dst identity -> struct kw_pdst_val { u32 tbl; u16 flags; u8 combos; u8 pad; }
export interface PdstVal { tbl: number; flags: number; combos: number }
export function encodePdstVal(v: PdstVal): Buffer {
  const b = Buffer.alloc(KW_PDST_VAL.size);
  b.writeUInt32LE(v.tbl, KW_PDST_VAL.at.tbl);
  b.writeUInt16LE(v.flags, KW_PDST_VAL.at.flags);
  b[KW_PDST_VAL.at.combos] = v.combos;
  return b;
}
export function decodePdstVal(b: Buffer): PdstVal {
  return { tbl: b.readUInt32LE(KW_PDST_VAL.at.tbl), flags: b.readUInt16LE(KW_PDST_VAL.at.flags), combos: b[KW_PDST_VAL.at.combos]! };
}

// ---- kw_pol: struct kw_pol_key { u32 tbl, src, cls; be16 port; u8 proto; u8 pad; } -> u32 bits
export interface PolKey { tbl: number; src: number; cls: number; port: number; proto: number }
const PK = KW_POL_KEY.at;
export function encodePolKey(k: PolKey, out = Buffer.alloc(KW_POL_KEY.size), o = 0): Buffer {
  out.writeUInt32LE(k.tbl, o + PK.tbl);
  out.writeUInt32LE(k.src, o + PK.src);
  out.writeUInt32LE(k.cls, o + PK.cls);
  out.writeUInt16BE(k.port, o + PK.port);
  out[o + PK.proto] = k.proto;
  out[o + PK.pad] = 0;
  return out;
}
export function decodePolKey(b: Buffer): PolKey {
  return { tbl: b.readUInt32LE(PK.tbl), src: b.readUInt32LE(PK.src), cls: b.readUInt32LE(PK.cls), port: b.readUInt16BE(PK.port), proto: b[PK.proto]! };
}

// ---- kw_cidr: struct kw_cidr_key { u32 prefixlen; kw_addr addr; } -> u32 class
export function encodeCidrKey(addr: Buffer, bits: number): Buffer {
  const b = Buffer.alloc(KW_CIDR_KEY.size);
  b.writeUInt32LE(bits, KW_CIDR_KEY.at.prefixlen);
  addr.copy(b, KW_CIDR_KEY.at.addr);
  return b;
}
export function decodeCidrKey(b: Buffer): { addr: Buffer; bits: number } {
  const a = KW_CIDR_KEY.at.addr;
  return { bits: b.readUInt32LE(KW_CIDR_KEY.at.prefixlen), addr: Buffer.from(b.subarray(a, a + KW_ADDR.size)) };
}
