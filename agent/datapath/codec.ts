/**
 * Buffers <-> the C structs of bpf/include/{lb,maglev,affinity,revnat}.h. The one
 * place in TypeScript that knows their layout: each struct is declared once (layout.ts)
 * with its fields' offsets and sizes, the codecs read their offsets from it, and the
 * loader checks every declaration against the object's BTF before load (LB_LAYOUTS).
 *
 * Host-order integers are little-endian (x86-64, arm64); ports are network order.
 */
import { endianness } from 'node:os';
import { KernwayError } from '../../common/errors.js';
import { ADDR_SIZE, readAddr, writeAddr } from './addr.js';
import { arrayOf, scalar, struct, type MapLayout } from './layout.js';

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

// ---- Layouts (bpf/include/lb.h, maglev.h, affinity.h, revnat.h) --------------------
export const KW_SVC_KEY = struct('kw_svc_key', 20, { addr: [0, 16], port: [16, 2], proto: [18, 1], pad: [19, 1] });
export const KW_SVC_VAL = struct('kw_svc_val', 20, {
  count: [0, 4], set_id: [4, 4], svc_id: [8, 4], flags: [12, 2], pad: [14, 2], affinity_timeout: [16, 4],
});
export const KW_SLOT_KEY = struct('kw_slot_key', 8, { set_id: [0, 4], slot: [4, 4] });
export const KW_BACKEND = struct('kw_backend', 24, { addr: [0, 16], port: [16, 2], proto: [18, 1], pad: [19, 1], svc_id: [20, 4] });
export const KW_SVC_STATS = struct('kw_svc_stats', 16, { balanced: [0, 8], refused: [8, 8] });
export const KW_CLIENT = struct('kw_client', 20, { kind: [0, 4], id: [4, 16] });
export const KW_AFF_KEY = struct('kw_aff_key', 24, { svc_id: [0, 4], client: [4, KW_CLIENT] });
export const KW_AFF_VAL = struct('kw_aff_val', 16, { backend_id: [0, 4], pad: [4, 4], last_ns: [8, 8] });
export const KW_REVNAT_KEY = struct('kw_revnat_key', 32, { cookie: [0, 8], addr: [8, 16], port: [24, 2], pad1: [26, 2], pad2: [28, 4] });
export const KW_REVNAT_VAL = struct('kw_revnat_val', 20, { addr: [0, 16], port: [16, 2], pad: [18, 2] });

/** What the codecs below encode of each map of the load balancer, checked against BTF at load. */
export const LB_LAYOUTS: Readonly<Record<string, MapLayout>> = {
  kw_svc: { key: KW_SVC_KEY, value: KW_SVC_VAL },
  kw_slot: { key: KW_SLOT_KEY, value: scalar(4) },
  kw_backend: { key: scalar(4), value: KW_BACKEND },
  kw_maglev: { key: scalar(4), value: arrayOf(4, 'kw_maglev_table') },
  kw_svc_stats: { key: scalar(4), value: KW_SVC_STATS },
  // Written by the programs only; read by `kernway services` and tests.
  kw_affinity: { key: KW_AFF_KEY, value: KW_AFF_VAL, readOnly: true },
  kw_revnat: { key: KW_REVNAT_KEY, value: KW_REVNAT_VAL, readOnly: true },
};

// ---- struct kw_svc_key { kw_addr addr; __be16 port; __u8 proto; __u8 pad; } -------
export interface SvcKey { vip: string; port: number; proto: number }
const SK = KW_SVC_KEY.at;
export function encodeSvcKey(k: SvcKey, out: Buffer = Buffer.alloc(KW_SVC_KEY.size), o = 0): Buffer {
  writeAddr(k.vip, out, o + SK.addr);
  out.writeUInt16BE(k.port, o + SK.port);
  out[o + SK.proto] = k.proto;
  out[o + SK.pad] = 0;
  return out;
}
export function decodeSvcKey(b: Buffer, o = 0): SvcKey {
  return { vip: readAddr(b, o + SK.addr), port: b.readUInt16BE(o + SK.port), proto: b[o + SK.proto]! };
}

// ---- struct kw_svc_val { u32 count, set_id, svc_id; u16 flags, pad; u32 affinity_timeout; }
export interface SvcVal { count: number; setId: number; svcId: number; flags: number; affinityTimeout: number }
const SV = KW_SVC_VAL.at;
export function encodeSvcVal(v: SvcVal, out: Buffer = Buffer.alloc(KW_SVC_VAL.size), o = 0): Buffer {
  out.writeUInt32LE(v.count, o + SV.count);
  out.writeUInt32LE(v.setId, o + SV.set_id);
  out.writeUInt32LE(v.svcId, o + SV.svc_id);
  out.writeUInt16LE(v.flags, o + SV.flags);
  out.writeUInt16LE(0, o + SV.pad);
  out.writeUInt32LE(v.affinityTimeout, o + SV.affinity_timeout);
  return out;
}
export function decodeSvcVal(b: Buffer, o = 0): SvcVal {
  return {
    count: b.readUInt32LE(o + SV.count), setId: b.readUInt32LE(o + SV.set_id), svcId: b.readUInt32LE(o + SV.svc_id),
    flags: b.readUInt16LE(o + SV.flags), affinityTimeout: b.readUInt32LE(o + SV.affinity_timeout),
  };
}

// ---- struct kw_slot_key { u32 set_id, slot; } -> u32 backend id ---------------------
export interface SlotKey { setId: number; slot: number }
export function encodeSlotKey(k: SlotKey, out: Buffer = Buffer.alloc(KW_SLOT_KEY.size), o = 0): Buffer {
  out.writeUInt32LE(k.setId, o + KW_SLOT_KEY.at.set_id);
  out.writeUInt32LE(k.slot, o + KW_SLOT_KEY.at.slot);
  return out;
}
export function decodeSlotKey(b: Buffer, o = 0): SlotKey {
  return { setId: b.readUInt32LE(o + KW_SLOT_KEY.at.set_id), slot: b.readUInt32LE(o + KW_SLOT_KEY.at.slot) };
}
/**
 * A u32, little-endian, byte by byte: writeUInt32LE and readUInt32LE check their arguments
 * through node's validators, which allocate an array per call where V8's top tier is left out
 * (the agent: ~65-80 bytes a call, and a /metrics scrape of 10,000 Services makes ~50,000 such
 * calls). The same checks here allocate only when they fail.
 */
export function encodeU32(n: number, out: Buffer = Buffer.alloc(4), o = 0): Buffer {
  if (!(o >= 0 && o + 4 <= out.length) || n >>> 0 !== n) throw new RangeError(`encodeU32: ${n} at offset ${o} of ${out.length} bytes`);
  out[o] = n & 0xff; out[o + 1] = (n >>> 8) & 0xff; out[o + 2] = (n >>> 16) & 0xff; out[o + 3] = n >>> 24;
  return out;
}
export function decodeU32(b: Buffer, o = 0): number {
  if (!(o >= 0 && o + 4 <= b.length)) throw new RangeError(`decodeU32: offset ${o} of ${b.length} bytes`);
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16)) + b[o + 3]! * 0x100_0000;
}

// ---- struct kw_backend { kw_addr addr; __be16 port; u8 proto; u8 pad; u32 svc_id; } --
export interface Backend { ip: string; port: number; proto: number; svcId: number }
const BE = KW_BACKEND.at;
export function encodeBackend(v: Backend, out: Buffer = Buffer.alloc(KW_BACKEND.size), o = 0): Buffer {
  writeAddr(v.ip, out, o + BE.addr);
  out.writeUInt16BE(v.port, o + BE.port);
  out[o + BE.proto] = v.proto;
  out[o + BE.pad] = 0;
  out.writeUInt32LE(v.svcId, o + BE.svc_id);
  return out;
}
export function decodeBackend(b: Buffer, o = 0): Backend {
  return { ip: readAddr(b, o + BE.addr), port: b.readUInt16BE(o + BE.port), proto: b[o + BE.proto]!, svcId: b.readUInt32LE(o + BE.svc_id) };
}

// ---- struct kw_svc_stats { u64 balanced, refused; } per CPU ------------------------
export interface SvcStats { balanced: bigint; refused: bigint }
/** Sums a per-CPU value (one 16-byte struct per possible CPU, concatenated). */
export function decodeSvcStatsPerCpu(b: Buffer): SvcStats {
  let balanced = 0n;
  let refused = 0n;
  const size = KW_SVC_STATS.size;
  for (let o = 0; o + size <= b.length; o += size) {
    balanced += b.readBigUInt64LE(o + KW_SVC_STATS.at.balanced);
    refused += b.readBigUInt64LE(o + KW_SVC_STATS.at.refused);
  }
  return { balanced, refused };
}

/**
 * One field of a per-CPU kw_svc_stats value summed over the CPUs, as a number (no BigInt:
 * a scrape sums 10,000 of them; exact below 2^53, as Number() of the BigInt sum).
 */
export function sumSvcStatPerCpu(b: Buffer, field: keyof SvcStats): number {
  const size = KW_SVC_STATS.size;
  const at = KW_SVC_STATS.at[field];
  let sum = 0;
  for (let o = 0; o + size <= b.length; o += size) sum += decodeU32(b, o + at) + decodeU32(b, o + at + 4) * 0x1_0000_0000;
  return sum;
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
  const c = o + KW_AFF_KEY.at.client;
  const kind = b.readUInt32LE(c + KW_CLIENT.at.kind);
  const id = c + KW_CLIENT.at.id;
  const client = kind === CLIENT_NETNS ? `netns:${b.readBigUInt64LE(id)}` : readAddr(b, id);
  return { svcId: b.readUInt32LE(o + KW_AFF_KEY.at.svc_id), kind, client };
}
// ---- struct kw_aff_val { u32 backend_id; u32 pad; u64 last_ns; } --------------------
export interface AffinityVal { backendId: number; lastNs: bigint }
export function decodeAffinityVal(b: Buffer, o = 0): AffinityVal {
  return { backendId: b.readUInt32LE(o + KW_AFF_VAL.at.backend_id), lastNs: b.readBigUInt64LE(o + KW_AFF_VAL.at.last_ns) };
}

// ---- struct kw_revnat_key { u64 cookie; kw_addr addr; __be16 port; u16 pad1; u32 pad2; }
export interface RevnatKey { cookie: bigint; ip: string; port: number }
export function decodeRevnatKey(b: Buffer, o = 0): RevnatKey {
  const at = KW_REVNAT_KEY.at;
  return { cookie: b.readBigUInt64LE(o + at.cookie), ip: readAddr(b, o + at.addr), port: b.readUInt16BE(o + at.port) };
}
// ---- struct kw_revnat_val { kw_addr addr; __be16 port; u16 pad; } --------------------
export interface RevnatVal { ip: string; port: number }
export function decodeRevnatVal(b: Buffer, o = 0): RevnatVal {
  return { ip: readAddr(b, o + KW_REVNAT_VAL.at.addr), port: b.readUInt16BE(o + KW_REVNAT_VAL.at.port) };
}

export { ADDR_SIZE };
