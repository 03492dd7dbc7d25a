/** IP addresses: validation, family, and one canonical text form (so map keys compare equal). */
import { isIPv4, isIPv6 } from 'node:net';
import type { IPFamily } from './types.js';

export interface ParsedIP { ip: string; family: IPFamily }

/**
 * Parse an IPv4 or IPv6 address into its canonical text (IPv6 lower case, zeros
 * compressed as RFC 5952). Returns undefined for anything else (zones, prefixes, names,
 * IPv4 with leading zeros).
 */
export function parseIP(s: unknown): ParsedIP | undefined {
  if (typeof s !== 'string') return undefined;
  if (isIPv4(s)) return { ip: s, family: 'IPv4' };
  if (!isIPv6(s) || s.includes('%')) return undefined;
  try {
    const host = new URL(`http://[${s}]/`).hostname; // WHATWG URL serialises IPv6 canonically
    return { ip: host.slice(1, -1), family: 'IPv6' };
  } catch {
    return undefined;
  }
}

/** 'ip:port' with IPv6 in brackets. */
export function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

export function familyOf(ip: string): IPFamily {
  return ip.includes(':') ? 'IPv6' : 'IPv4';
}

/**
 * Why `ip` can never be a cluster IP, an endpoint or a pod address (the API server refuses
 * these; a manifest holding one could take over loopback or the metadata address inside
 * the balanced cgroup), or undefined when it can be. IPv4-mapped IPv6 is refused too: the
 * datapath keys IPv4 that way, so it would alias an IPv4 address.
 */
export function forbiddenAddress(ip: ParsedIP): string | undefined {
  if (ip.family === 'IPv4') {
    const [a, b] = ip.ip.split('.').map(Number) as [number, number];
    if (ip.ip === '0.0.0.0') return 'the unspecified address';
    if (a === 0) return 'in 0.0.0.0/8 ("this network")';
    if (a === 127) return 'a loopback address (127.0.0.0/8)';
    if (a === 169 && b === 254) return 'a link-local address (169.254.0.0/16)';
    if (a >= 224 && a <= 239) return 'a multicast address (224.0.0.0/4)';
    if (ip.ip === '255.255.255.255') return 'the broadcast address';
    if (a >= 240) return 'a reserved address (240.0.0.0/4)';
    return undefined;
  }
  const s = ip.ip; // canonical: lower case, zeros compressed
  if (s === '::') return 'the unspecified address';
  if (s === '::1') return 'the loopback address';
  if (/^fe[89ab][0-9a-f]:/.test(s)) return 'a link-local address (fe80::/10)';
  if (s.startsWith('ff')) return 'a multicast address (ff00::/8)';
  if (s.startsWith('::ffff:')) return 'an IPv4-mapped IPv6 address (::ffff:0:0/96); write the IPv4 address';
  return undefined;
}

/**
 * An IPv6 address's eight 16-bit groups as text, RFC 5952: lowercase hex without leading
 * zeros, the first longest run of two or more zero groups compressed to '::' (the form
 * WHATWG URL and parseIP give).
 */
export function ipv6Text(g: readonly number[]): string {
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (xs: readonly number[]): string => xs.map((x) => x.toString(16)).join(':');
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}
