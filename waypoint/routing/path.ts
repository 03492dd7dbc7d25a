/**
 * Request paths: splitting the request target, normalising the path (RFC 3986: percent-
 * encoded unreserved characters decoded, dot segments removed) so that routing and
 * authorization see one spelling of each path, and the path modifiers of Gateway API
 * (ReplaceFullPath, segment-aware ReplacePrefixMatch).
 */

export interface RequestTarget {
  /** Normalised path, always starting with '/'. */
  path: string;
  /** The query without '?', as received ('' when none). */
  query: string;
  /** For an absolute-form target (http://host/...), its authority. */
  authority: string | undefined;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;
const HEX = /^[0-9A-Fa-f]{2}$/;

/**
 * Split and normalise a request target (origin-form or absolute-form). Returns undefined
 * for a target the waypoint refuses (400): no leading '/', a fragment, a bad %-escape,
 * or dot segments that climb above the root.
 */
export function parseTarget(raw: string): RequestTarget | undefined {
  let authority: string | undefined;
  let rest = raw;
  if (!rest.startsWith('/')) {
    const m = /^https?:\/\/([^/?#]*)(.*)$/i.exec(rest);
    if (!m) return undefined;
    authority = m[1];
    rest = m[2] === '' ? '/' : m[2]!;
    if (rest.startsWith('?')) rest = '/' + rest;
    if (!rest.startsWith('/')) return undefined;
  }
  if (rest.includes('#')) return undefined;
  const q = rest.indexOf('?');
  const rawPath = q === -1 ? rest : rest.slice(0, q);
  const query = q === -1 ? '' : rest.slice(q + 1);
  const path = normalizePath(rawPath);
  if (path === undefined) return undefined;
  return { path, query, authority };
}

/** RFC 3986 §6.2.2 normalisation of an absolute path; undefined when it is malformed. */
export function normalizePath(p: string): string | undefined {
  if (!p.startsWith('/')) return undefined;
  let s = p;
  if (s.includes('%')) {
    let out = '';
    for (let i = 0; i < s.length; i++) {
      const ch = s[i]!;
      if (ch !== '%') { out += ch; continue; }
      const hex = s.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return undefined;
      const dec = String.fromCharCode(parseInt(hex, 16));
      out += UNRESERVED.test(dec) ? dec : '%' + hex.toUpperCase();
      i += 2;
    }
    s = out;
  }
  if (!s.includes('/.')) return s;
  return removeDotSegments(s);
}

function removeDotSegments(p: string): string | undefined {
  const segs = p.split('/');
  const out: string[] = [];
  for (let i = 1; i < segs.length; i++) {
    const seg = segs[i]!;
    const last = i === segs.length - 1;
    if (seg === '.') { if (last) out.push(''); continue; }
    if (seg === '..') {
      if (out.length === 0) return undefined;
      out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(seg);
  }
  return '/' + out.join('/');
}

/** The PathPrefix value as compared: without its trailing '/' ('' for '/'). */
export function prefixKey(value: string): string {
  return value.endsWith('/') ? value.replace(/\/+$/, '') : value;
}

/** Element-wise prefix match: /v2 matches /v2, /v2/ and /v2/x, never /v2x. `key` from prefixKey(). */
export function matchesPrefix(path: string, key: string): boolean {
  if (key === '') return true;
  if (!path.startsWith(key)) return false;
  return path.length === key.length || path.charCodeAt(key.length) === 47 /* '/' */;
}

/**
 * ReplacePrefixMatch: replace the matched prefix (`key` from prefixKey()) by `replacement`,
 * keeping exactly one '/' at the joint; an empty result is '/'.
 */
export function replacePrefix(path: string, key: string, replacement: string): string {
  const rest = path.slice(key.length);
  const head = replacement.endsWith('/') ? replacement.replace(/\/+$/, '') : replacement;
  const out = head + rest;
  return out === '' ? '/' : out.startsWith('/') ? out : '/' + out;
}

/** The first value of query parameter `name` (percent-decoded), or undefined. Names are case-sensitive. */
export function queryParam(query: string, name: string): string | undefined {
  if (query === '') return undefined;
  let start = 0;
  while (start <= query.length) {
    let end = query.indexOf('&', start);
    if (end === -1) end = query.length;
    const eq = query.indexOf('=', start);
    const nameEnd = eq === -1 || eq > end ? end : eq;
    const rawName = query.slice(start, nameEnd);
    if (decode(rawName) === name) return nameEnd === end ? '' : decode(query.slice(nameEnd + 1, end));
    start = end + 1;
  }
  return undefined;
}

function decode(s: string): string {
  if (!s.includes('%')) return s;
  try { return decodeURIComponent(s); } catch { return s; }
}
