/**
 * Buffers <-> the C structs of bpf/include/{lb,maglev,affinity,revnat}.h. The one
 * place in TypeScript that knows their layout: offsets here mirror the headers field by
 * field (sizes are checked against the loaded maps' key and value sizes at start).
 *
 * Host-order integers are little-endian (x86-64, arm64); ports are network order.
 */
import { endianness } from 'node:os';
import { KernwayError } from '../../common/errors.js';
import { ADDR_SIZE, readAddr, writeAddr } from './addr.js';

if (endianness() !== 'LE') throw new KernwayError('KW_UNSUPPORTED_HOST', 'kernway datapath codecs assume a little-endian host');

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export type Protocol = 'TCP' | 'UDP';
export function protoNumber(p: Protocol): number {
  return p === 'TCP' ? IPPROTO_TCP : IPPROTO_UDP;
}
export function protoName(n: number): Protocol | `${number}` {
  return n === IPPROTO_TCP ? 'TCP' : n === IPPROTO_UDP ? 'UDP' : `${n}`;
}

/** kw_svc_val.flags */
export const SVC_F_MAGLEV = 1 << 0;
export const SVC_F_AFFINITY = 1 << 1;

/** Sizes of each struct: must equal the maps' key/value sizes. */
export const SIZES = {
  kw_svc: { key: 20, value: 20 },
  kw_slot: { key: 8, value: 4 },
  kw_backend: { key: 4, value: 24 },
  kw_svc_stats: { key: 4, value: 16 },
  kw_affinity: { key: 24, value: 16 },
  kw_revnat: { key: 32, value: 20 },
} as const;

// ---- struct kw_svc_key { kw_addr addr; __be16 port; __u8 proto; __u8 pad; } -------
export interface SvcKey { vip: string; port: number; proto: number }
export function encodeSvcKey(k: SvcKey, out: Buffer = Buffer.alloc(20), o = 0): Buffer {
  writeAddr(k.vip, out, o);
  out.writeUInt16BE(k.port, o + 16);
  out[o + 18] = k.proto;
  out[o + 19] = 0;
  return out;
}
export function decodeSvcKey(b: Buffer, o = 0): SvcKey {
  return { vip: readAddr(b, o), port: b.readUInt16BE(o + 16), proto: b[o + 18]! };
}

// ---- struct kw_svc_val { u32 count, set_id, svc_id; u16 flags, pad; u32 affinity_timeout; }
export interface SvcVal { count: number; setId: number; svcId: number; flags: number; affinityTimeout: number }
export function encodeSvcVal(v: SvcVal, out: Buffer = Buffer.alloc(20), o = 0): Buffer {
  out.writeUInt32LE(v.count, o);
  out.writeUInt32LE(v.setId, o + 4);
  out.writeUInt32LE(v.svcId, o + 8);
  out.writeUInt16LE(v.flags, o + 12);
  out.writeUInt16LE(0, o + 14);
  out.writeUInt32LE(v.affinityTimeout, o + 16);
  return out;
}
export function decodeSvcVal(b: Buffer, o = 0): SvcVal {
  return {
    count: b.readUInt32LE(o), setId: b.readUInt32LE(o + 4), svcId: b.readUInt32LE(o + 8),
    flags: b.readUInt16LE(o + 12), affinityTimeout: b.readUInt32LE(o + 16),
  };
}

// ---- struct kw_slot_key { u32 set_id, slot; } -> u32 backend id ---------------------
export interface SlotKey { setId: number; slot: number }
export function encodeSlotKey(k: SlotKey, out: Buffer = Buffer.alloc(8), o = 0): Buffer {
  out.writeUInt32LE(k.setId, o);
  out.writeUInt32LE(k.slot, o + 4);
  return out;
}
export function decodeSlotKey(b: Buffer, o = 0): SlotKey {
  return { setId: b.readUInt32LE(o), slot: b.readUInt32LE(o + 4) };
}
export function encodeU32(n: number, out: Buffer = Buffer.alloc(4), o = 0): Buffer {
  out.writeUInt32LE(n, o);
  return out;
}
export function decodeU32(b: Buffer, o = 0): number {
  return b.readUInt32LE(o);
}

// ---- struct kw_backend { kw_addr addr; __be16 port; u8 proto; u8 pad; u32 svc_id; } --
export interface Backend { ip: string; port: number; proto: number; svcId: number }
export function encodeBackend(v: Backend, out: Buffer = Buffer.alloc(24), o = 0): Buffer {
  writeAddr(v.ip, out, o);
  out.writeUInt16BE(v.port, o + 16);
  out[o + 18] = v.proto;
  out[o + 19] = 0;
  out.writeUInt32LE(v.svcId, o + 20);
  return out;
}
export function decodeBackend(b: Buffer, o = 0): Backend {
  return { ip: readAddr(b, o), port: b.readUInt16BE(o + 16), proto: b[o + 18]!, svcId: b.readUInt32LE(o + 20) };
}

// ---- struct kw_svc_stats { u64 balanced, refused; } per CPU ------------------------
export interface SvcStats { balanced: bigint; refused: bigint }
/** Sums a per-CPU value (one 16-byte struct per possible CPU, concatenated). */
export function decodeSvcStatsPerCpu(b: Buffer): SvcStats {
  let balanced = 0n;
  let refused = 0n;
  for (let o = 0; o + 16 <= b.length; o += 16) {
    balanced += b.readBigUInt64LE(o);
    refused += b.readBigUInt64LE(o + 8);
  }
  return { balanced, refused };
}

// ---- struct kw_maglev_table { u32 backend[M]; } -------------------------------------
export function encodeMaglevTable(table: Uint32Array): Buffer {
  const out = Buffer.alloc(table.length * 4);
  for (let i = 0; i < table.length; i++) out.writeUInt32LE(table[i]!, i * 4);
  return out;
}
export function decodeMaglevTable(b: Buffer): Uint32Array {
  const t = new Uint32Array(b.length / 4);
  for (let i = 0; i < t.length; i++) t[i] = b.readUInt32LE(i * 4);
  return t;
}

// ---- struct kw_aff_key { u32 svc_id; struct kw_client { u32 kind; kw_addr id; } } ----
export const CLIENT_ADDR = 1;
export const CLIENT_NETNS = 2;
export interface AffinityKey { svcId: number; kind: number; client: string /* address, or netns cookie in decimal */ }
export function decodeAffinityKey(b: Buffer, o = 0): AffinityKey {
  const kind = b.readUInt32LE(o + 4);
  const client = kind === CLIENT_NETNS ? `netns:${b.readBigUInt64LE(o + 8)}` : readAddr(b, o + 8);
  return { svcId: b.readUInt32LE(o), kind, client };
}
// ---- struct kw_aff_val { u32 backend_id; u32 pad; u64 last_ns; } --------------------
export interface AffinityVal { backendId: number; lastNs: bigint }
export function decodeAffinityVal(b: Buffer, o = 0): AffinityVal {
  return { backendId: b.readUInt32LE(o), lastNs: b.readBigUInt64LE(o + 8) };
}

// ---- struct kw_revnat_key { u64 cookie; kw_addr addr; __be16 port; u16 pad1; u32 pad2; }
export interface RevnatKey { cookie: bigint; ip: string; port: number }
export function decodeRevnatKey(b: Buffer, o = 0): RevnatKey {
  return { cookie: b.readBigUInt64LE(o), ip: readAddr(b, o + 8), port: b.readUInt16BE(o + 24) };
}
// ---- struct kw_revnat_val { kw_addr addr; __be16 port; u16 pad; } --------------------
export interface RevnatVal { ip: string; port: number }
export function decodeRevnatVal(b: Buffer, o = 0): RevnatVal {
  return { ip: readAddr(b, o), port: b.readUInt16BE(o + 16) };
}

export { ADDR_SIZE };
