/**
 * IP addresses as the kernel maps hold them: 16 bytes in network order, IPv4 written
 * as IPv4-mapped IPv6 (::ffff:a.b.c.d), as bpf/include/kw_common.h `struct kw_addr`.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { InvalidArgumentError } from '../../common/errors.js';
import { ipv6Text } from '../../k8s/ip.js';

export const ADDR_SIZE = 16;

export type Family = 4 | 6;

/** 'ipv4' / 'ipv6' family of an address string, or undefined if it is neither. */
export function familyOf(ip: string): Family | undefined {
  if (isIPv4(ip)) return 4;
  if (isIPv6(ip)) return 6;
  return undefined;
}

/**
 * Parses a dotted quad into 4 bytes at offset; false when it is not one (no leading
 * zeros, octets 0-255). A char loop, as this runs for every backend.
 */
function parseV4(ip: string, out: Buffer, offset: number): boolean {
  if (ip.length < 7 || ip.length > 15) return false;
  let octet = 0;
  let digits = 0;
  let i = 0;
  for (let c = 0; c <= ip.length; c++) {
    const ch = c === ip.length ? 46 : ip.charCodeAt(c);
    if (ch === 46 /* . */) {
      if (digits === 0 || i > 3) return false;
      out[offset + i++] = octet;
      octet = 0;
      digits = 0;
    } else if (ch >= 48 && ch <= 57) {
      if (digits > 0 && octet === 0) return false; // leading zero
      octet = octet * 10 + (ch - 48);
      if (octet > 255) return false;
      digits++;
    } else {
      return false;
    }
  }
  return i === 4;
}

/** Could be a dotted quad (no colon): which parser to try first. */
function looksV4(ip: string): boolean {
  return ip.length <= 15 && ip.indexOf(':') < 0;
}

/** Writes `ip` (IPv4 or IPv6 text) as 16 bytes at `offset` of `out`. */
export function writeAddr(ip: string, out: Buffer, offset = 0): void {
  if (looksV4(ip) && parseV4(ip, out, offset + 12)) {
    out.fill(0, offset, offset + 10);
    out[offset + 10] = 0xff;
    out[offset + 11] = 0xff;
    return;
  }
  if (!isIPv6(ip)) throw new InvalidArgumentError('address', 'an IPv4 or IPv6 address', ip);
  let text = ip;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // An embedded IPv4 tail (::ffff:1.2.3.4) is two 16-bit groups.
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    const v4 = Buffer.alloc(4);
    if (!parseV4(text.slice(lastColon + 1), v4, 0)) throw new InvalidArgumentError('address', 'an IPv4 or IPv6 address', ip);
    tail = [v4.readUInt16BE(0), v4.readUInt16BE(2)];
    text = text.slice(0, lastColon + 1) + '0';
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const h = groups(head);
  let r = rest === undefined ? [] : groups(rest);
  if (tail.length) {
    if (rest === undefined) h.splice(h.length - 1, 1, ...tail);
    else r = [...r.slice(0, -1), ...tail];
  }
  const all = rest === undefined ? h : [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
  for (let i = 0; i < 8; i++) out.writeUInt16BE(all[i]!, offset + 2 * i);
}

export function encodeAddr(ip: string): Buffer {
  const b = Buffer.alloc(ADDR_SIZE);
  writeAddr(ip, b, 0);
  return b;
}

/** True when the 16 bytes at offset are an IPv4-mapped address. */
export function isMappedV4(b: Buffer, offset = 0): boolean {
  for (let i = 0; i < 10; i++) if (b[offset + i] !== 0) return false;
  return b[offset + 10] === 0xff && b[offset + 11] === 0xff;
}

/** Reads 16 bytes at offset back to text: dotted quad for IPv4-mapped, RFC 5952 form for IPv6. */
export function readAddr(b: Buffer, offset = 0): string {
  if (isMappedV4(b, offset)) return `${b[offset + 12]}.${b[offset + 13]}.${b[offset + 14]}.${b[offset + 15]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(offset + 2 * i));
  return ipv6Text(g);
}

/**
 * The text the datapath knows an address by, from a model address (already canonical:
 * dotted quad, or RFC 5952 IPv6): only an IPv4-mapped IPv6 address changes, to the
 * dotted quad the kernel maps hold it as.
 */
export function datapathAddr(ip: string): string {
  if (looksV4(ip)) return ip;
  return ip.startsWith('::ffff:') ? canonicalAddr(ip) : ip;
}

/** The canonical text of an address (so '::FFFF:0a00:1' and '10.0.0.1' compare equal). */
export function canonicalAddr(ip: string): string {
  return readAddr(encodeAddr(ip));
}
