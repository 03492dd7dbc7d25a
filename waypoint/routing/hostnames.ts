/**
 * Host names as Gateway API uses them: exact names and '*.'-wildcards (one or more
 * labels; matching and the intersection of a listener's and a route's host names are the
 * model's, model/route-status.ts), the Host of a request and precedence.
 */

export { hostMatches, intersectHostnames } from '../../model/route-status.js';

/**
 * The host of a request from its Host header or :authority: lower case, without the port
 * or a trailing dot, IPv6 literals without brackets. Undefined when absent or malformed.
 */
export function requestHost(authority: string | undefined): string | undefined {
  if (authority === undefined || authority === '') return undefined;
  // Most requests repeat a few Host values: each parsed once (no regex, slice or
  // toLowerCase per request). Bounded: cleared when it grows past HOST_CACHE_MAX.
  const known = hostCache.get(authority);
  if (known !== undefined) return known === '' ? undefined : known;
  const h = parseHost(authority);
  if (hostCache.size >= HOST_CACHE_MAX) hostCache.clear();
  hostCache.set(authority, h ?? '');
  return h;
}

const HOST_CACHE_MAX = 1024;
/** Host header value → requestHost() ('' for malformed). */
const hostCache = new Map<string, string>();

function parseHost(authority: string): string | undefined {
  let h = authority;
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end === -1) return undefined;
    const rest = h.slice(end + 1);
    if (rest !== '' && !/^:[0-9]{1,5}$/.test(rest)) return undefined;
    return h.slice(1, end).toLowerCase();
  }
  const colon = h.lastIndexOf(':');
  if (colon !== -1) {
    if (!/^[0-9]{0,5}$/.test(h.slice(colon + 1))) return undefined;
    h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (h === '' || /[\s/@?#]/.test(h)) return undefined;
  return h.toLowerCase();
}

/** Specificity of a host pattern for precedence: exact names first, then longer wildcards. */
export function hostSpecificity(pattern: string | undefined): number {
  if (pattern === undefined) return 0;
  return pattern.startsWith('*.') ? 1_000 + pattern.length : 1_000_000 + pattern.length;
}
