/**
 * Host names as Gateway API uses them: exact names and '*.'-wildcards (one or more
 * labels), the intersection of a listener's and a route's host names, and the Host of a
 * request.
 */

/** Whether `pattern` (exact or '*.suffix') matches the concrete host `host`. */
export function hostMatches(pattern: string, host: string): boolean {
  if (!pattern.startsWith('*.')) return pattern === host;
  const suffix = pattern.slice(1); // '.suffix'
  return host.length > suffix.length && host.endsWith(suffix);
}

/**
 * The host names a route serves on a listener: the intersection of the listener's host
 * name (undefined: any) and the route's (empty: any). Returns [] when they do not
 * intersect, [undefined] when both allow any host.
 */
export function intersectHostnames(listener: string | undefined, route: readonly string[]): (string | undefined)[] {
  if (route.length === 0) return [listener];
  if (listener === undefined) return [...route];
  const out = new Set<string>();
  for (const r of route) {
    if (r === listener) out.add(r);
    else if (!r.startsWith('*.') && hostMatches(listener, r)) out.add(r);
    else if (r.startsWith('*.') && !listener.startsWith('*.') && hostMatches(r, listener)) out.add(listener);
    else if (r.startsWith('*.') && listener.startsWith('*.')) {
      // Two wildcards intersect when one's suffix contains the other's: keep the narrower.
      if (r.endsWith(listener.slice(1))) out.add(r);
      else if (listener.endsWith(r.slice(1))) out.add(listener);
    }
  }
  return [...out];
}

/**
 * The host of a request from its Host header or :authority: lower case, without the port
 * or a trailing dot, IPv6 literals without brackets. Undefined when absent or malformed.
 */
export function requestHost(authority: string | undefined): string | undefined {
  if (authority === undefined || authority === '') return undefined;
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
