/**
 * Buffers <-> the C structs of bpf/include/identity.h and policy.h. The one place in
 * TypeScript that knows their layout; sizes are checked against the loaded maps at start.
 *
 * Host-order integers are little-endian (x86-64, arm64); ports are network order.
 */
import { endianness } from 'node:os';
import { KernwayError } from '../../common/errors.js';
import { addrBytes, addrText } from '../../k8s/cidr.js';

if (endianness() !== 'LE') throw new KernwayError('KW_UNSUPPORTED_HOST', 'kernway datapath codecs assume a little-endian host');

/** Map names, as in the BPF objects and as pinned under <bpffs>/policy/maps/. */
export const POLICY_MAP_NAMES = ['kw_ident', 'kw_lxc', 'kw_cgrp', 'kw_ep_stats', 'kw_pdst', 'kw_pol', 'kw_cidr'] as const;
export type PolicyMapName = (typeof POLICY_MAP_NAMES)[number];

export const POLICY_SIZES: Record<PolicyMapName, { key: number; value: number }> = {
  kw_ident: { key: 16, value: 8 },
  kw_lxc: { key: 4, value: 8 },
  kw_cgrp: { key: 8, value: 40 },
  kw_ep_stats: { key: 4, value: 72 },
  kw_pdst: { key: 4, value: 8 },
  kw_pol: { key: 16, value: 4 },
  kw_cidr: { key: 20, value: 4 },
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
  const b = Buffer.alloc(8);
  b.writeUInt32LE(v.id, 0);
  b.writeUInt32LE(v.epId, 4);
  return b;
}
export function decodeIdentVal(b: Buffer): IdentVal {
  return { id: b.readUInt32LE(0), epId: b.readUInt32LE(4) };
}

// ---- kw_lxc: u32 ifindex -> struct kw_lxc_val { u32 ep_id; u32 id; }
export interface LxcVal { epId: number; id: number }
export function encodeLxcVal(v: LxcVal): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(v.epId, 0);
  b.writeUInt32LE(v.id, 4);
  return b;
}
export function decodeLxcVal(b: Buffer): LxcVal {
  return { epId: b.readUInt32LE(0), id: b.readUInt32LE(4) };
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
  const b = Buffer.alloc(40);
  b.writeUInt32LE(v.epId, 0);
  b.writeUInt32LE(v.id, 4);
  if (v.ip4) encodeAddr(v.ip4).copy(b, 8);
  if (v.ip6) encodeAddr(v.ip6).copy(b, 24);
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
export function decodeEpStats(all: Buffer, valueSize = 72): EndpointCounters {
  const c = zeroCounters();
  const stride = Math.ceil(valueSize / 8) * 8;
  for (let o = 0; o + valueSize <= all.length; o += stride) {
    const n = (i: number): number => Number(all.readBigUInt64LE(o + 8 * i));
    c.packetsIn += n(0);
    c.bytesIn += n(1);
    c.packetsOut += n(2);
    c.bytesOut += n(3);
    DROP_REASONS.forEach((r, i) => { c.drops[r] += n(4 + i); });
    c.refusedOut += n(8);
  }
  return c;
}

// ---- kw_pdst: u32 dst identity -> struct kw_pdst_val { u32 tbl; u16 flags; u8 combos; u8 pad; }
export interface PdstVal { tbl: number; flags: number; combos: number }
export function encodePdstVal(v: PdstVal): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(v.tbl, 0);
  b.writeUInt16LE(v.flags, 4);
  b[6] = v.combos;
  return b;
}
export function decodePdstVal(b: Buffer): PdstVal {
  return { tbl: b.readUInt32LE(0), flags: b.readUInt16LE(4), combos: b[6]! };
}

// ---- kw_pol: struct kw_pol_key { u32 tbl, src, cls; be16 port; u8 proto; u8 pad; } -> u32 bits
export interface PolKey { tbl: number; src: number; cls: number; port: number; proto: number }
export function encodePolKey(k: PolKey, out = Buffer.alloc(16), o = 0): Buffer {
  out.writeUInt32LE(k.tbl, o);
  out.writeUInt32LE(k.src, o + 4);
  out.writeUInt32LE(k.cls, o + 8);
  out.writeUInt16BE(k.port, o + 12);
  out[o + 14] = k.proto;
  out[o + 15] = 0;
  return out;
}
export function decodePolKey(b: Buffer): PolKey {
  return { tbl: b.readUInt32LE(0), src: b.readUInt32LE(4), cls: b.readUInt32LE(8), port: b.readUInt16BE(12), proto: b[14]! };
}

// ---- kw_cidr: struct kw_cidr_key { u32 prefixlen; kw_addr addr; } -> u32 class
export function encodeCidrKey(addr: Buffer, bits: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32LE(bits, 0);
  addr.copy(b, 4);
  return b;
}
export function decodeCidrKey(b: Buffer): { addr: Buffer; bits: number } {
  return { bits: b.readUInt32LE(0), addr: Buffer.from(b.subarray(4, 20)) };
}
