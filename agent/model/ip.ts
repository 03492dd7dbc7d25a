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
