/**
 * CIDR blocks (ipBlocks) in the one 128-bit space the kernel maps use: IPv4 is written
 * as IPv4-mapped IPv6 (::ffff:a.b.c.d), so an IPv4 /n is a /(96 + n).
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { Cidr } from './policy-types.js';

/** 16 bytes of an address, or undefined when `ip` is not a plain IPv4/IPv6 address. */
export function addrBytes(ip: string): Buffer | undefined {
  const out = Buffer.alloc(16);
  if (isIPv4(ip)) {
    out[10] = 0xff;
    out[11] = 0xff;
    ip.split('.').forEach((p, i) => { out[12 + i] = Number(p); });
    return out;
  }
  if (!isIPv6(ip) || ip.includes('%')) return undefined;
  let host: string;
  try {
    host = new URL(`http://[${ip}]/`).hostname.slice(1, -1); // canonical, hex groups only
  } catch {
    return undefined;
  }
  const [head, tail] = host.split('::') as [string, string | undefined];
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  all.forEach((g, i) => out.writeUInt16BE(g, 2 * i));
  return out;
}

function isMappedV4(b: Buffer): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** Text of 16 address bytes: dotted quad for IPv4-mapped, canonical IPv6 otherwise. */
export function addrText(b: Buffer): string {
  if (isMappedV4(b)) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const g: string[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(2 * i).toString(16));
  return new URL(`http://[${g.join(':')}]/`).hostname.slice(1, -1);
}

/** Zeroes the bits after the first `bits`. */
export function maskAddr(b: Buffer, bits: number): Buffer {
  const out = Buffer.from(b);
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    out[i] = out[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

export type CidrResult = { cidr: Cidr } | { error: string };

/**
 * Parses '10.0.0.0/8', 'fd00::/16', or a bare address (a /32 or /128). Host bits must be
 * zero: '10.0.0.5/8' is refused (with the network it probably meant), since it is more
 * likely a typo than a wish to match 10.0.0.0/8.
 */
export function parseCidr(s: string): CidrResult {
  const slash = s.indexOf('/');
  const ip = slash < 0 ? s : s.slice(0, slash);
  const addr = addrBytes(ip);
  if (!addr) return { error: `must be an IPv4 or IPv6 address or CIDR block (like 10.0.0.0/8), got ${JSON.stringify(s)}` };
  const v4 = isIPv4(ip);
  const max = v4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const lenText = s.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(lenText) || Number(lenText) > max) {
      return { error: `prefix length must be an integer from 0 to ${max}, got ${JSON.stringify(s)}` };
    }
    len = Number(lenText);
  }
  const bits = v4 ? 96 + len : len;
  const net = maskAddr(addr, bits);
  if (!net.equals(addr)) {
    return { error: `has host bits set: ${JSON.stringify(s)} (did you mean ${addrText(net)}/${len}?)` };
  }
  return { cidr: { text: `${addrText(net)}/${len}`, addr: net, bits } };
}

const bigCache = new WeakMap<Buffer, bigint>();

/** The 16 address bytes as one 128-bit integer (memoised per buffer). */
export function addrBig(b: Buffer): bigint {
  let v = bigCache.get(b);
  if (v === undefined) {
    v = (b.readBigUInt64BE(0) << 64n) | b.readBigUInt64BE(8);
    bigCache.set(b, v);
  }
  return v;
}

/** Whether block `outer` contains block `inner` (equal blocks contain each other). */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  if (outer.bits > inner.bits) return false;
  const shift = BigInt(128 - outer.bits);
  return addrBig(inner.addr) >> shift === addrBig(outer.addr) >> shift;
}

/** Whether the address (16 bytes) is in the block. */
export function cidrHas(block: Cidr, addr: Buffer): boolean {
  const shift = BigInt(128 - block.bits);
  return addrBig(addr) >> shift === addrBig(block.addr) >> shift;
}
