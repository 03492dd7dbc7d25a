/**
 * HTTPRoute matches compiled for the request path, and the precedence Gateway API
 * defines between them across all routes of a parent:
 *   1. Exact path, then PathPrefix by length (kernway, like Istio, ranks RegularExpression
 *      paths after both: their precedence is implementation-specific);
 *   2. a method match; 3. more header matches; 4. more query parameter matches;
 *   5. the oldest route (creationTimestamp), then 'namespace/name' alphabetically;
 *   6. the rule's, then the match's, position in the route.
 */
import type { RouteMatch } from '../../k8s/gateway-api-types.js';
import { matchesPrefix, prefixKey, queryParam } from './path.js';

/** A compiled regular expression: `test` is a full match, in linear time. */
import { RE2JS } from 're2js';

export interface FullMatcher { test(value: string): boolean }
export interface ValueMatcher { name: string; exact: string | undefined; regex: FullMatcher | undefined }

export interface CompiledMatch<T> {
  pathType: 'Exact' | 'PathPrefix' | 'RegularExpression';
  /** The exact path, the prefix key (without trailing '/') or the pattern. */
  path: string;
  /** Length used for precedence (the value as written). */
  pathLength: number;
  pathRegex: FullMatcher | undefined;
  method: string | undefined;
  headers: readonly ValueMatcher[];
  query: readonly ValueMatcher[];
  routeCreated: number;
  routeKey: string;
  ruleIndex: number;
  matchIndex: number;
  target: T;
}

/** What matching needs from a request. */
export interface MatchRequest {
  path: string;
  query: string;
  method: string;
  /** A header's value (lower-case name; repeated headers joined by ','), or undefined. */
  header(name: string): string | undefined;
}

/**
 * A full-match regular expression (Gateway API regexes match the whole value), with RE2
 * semantics and linear-time matching (re2js, a port of RE2: what Envoy and Istio use).
 * V8's backtracking engine took 18 s on `/x(a+)+b` and a 33-character path, blocking
 * the whole waypoint; RE2 matches in time linear in the input.
 */
export function fullRegex(pattern: string): FullMatcher {
  const re = RE2JS.compile(`(?:${pattern})`);
  return { test: (value: string) => re.matches(value) };
}

export function compileMatch<T>(m: RouteMatch, order: { routeCreated: number; routeKey: string; ruleIndex: number; matchIndex: number }, target: T): CompiledMatch<T> {
  const valueMatcher = (v: { type: string; name: string; value: string }): ValueMatcher =>
    v.type === 'RegularExpression' ? { name: v.name, exact: undefined, regex: fullRegex(v.value) } : { name: v.name, exact: v.value, regex: undefined };
  return {
    pathType: m.path.type,
    path: m.path.type === 'PathPrefix' ? prefixKey(m.path.value) : m.path.value,
    pathLength: m.path.value.length,
    pathRegex: m.path.type === 'RegularExpression' ? fullRegex(m.path.value) : undefined,
    method: m.method,
    headers: m.headers.map(valueMatcher),
    query: m.queryParams.map(valueMatcher),
    ...order,
    target,
  };
}

const RANK = { Exact: 3, PathPrefix: 2, RegularExpression: 1 } as const;

/** Sort order: the match that takes precedence first. */
export function comparePrecedence(a: CompiledMatch<unknown>, b: CompiledMatch<unknown>): number {
  if (a.pathType !== b.pathType) return RANK[b.pathType] - RANK[a.pathType];
  if (a.pathLength !== b.pathLength) return b.pathLength - a.pathLength;
  const am = a.method === undefined ? 0 : 1, bm = b.method === undefined ? 0 : 1;
  if (am !== bm) return bm - am;
  if (a.headers.length !== b.headers.length) return b.headers.length - a.headers.length;
  if (a.query.length !== b.query.length) return b.query.length - a.query.length;
  if (a.routeCreated !== b.routeCreated) return a.routeCreated < b.routeCreated ? -1 : 1;
  if (a.routeKey !== b.routeKey) return a.routeKey < b.routeKey ? -1 : 1;
  if (a.ruleIndex !== b.ruleIndex) return a.ruleIndex - b.ruleIndex;
  return a.matchIndex - b.matchIndex;
}

export function matches(m: CompiledMatch<unknown>, req: MatchRequest): boolean {
  if (m.method !== undefined && m.method !== req.method) return false;
  switch (m.pathType) {
    case 'Exact': if (req.path !== m.path) return false; break;
    case 'PathPrefix': if (!matchesPrefix(req.path, m.path)) return false; break;
    case 'RegularExpression': if (!m.pathRegex!.test(req.path)) return false; break;
  }
  for (const h of m.headers) {
    const v = req.header(h.name);
    if (v === undefined) return false;
    if (h.exact !== undefined ? v !== h.exact : !h.regex!.test(v)) return false;
  }
  for (const q of m.query) {
    const v = queryParam(req.query, q.name);
    if (v === undefined) return false;
    if (q.exact !== undefined ? v !== q.exact : !q.regex!.test(v)) return false;
  }
  return true;
}

/** The first match (in precedence order, `list` sorted by comparePrecedence) the request satisfies. */
export function firstMatch<T>(list: readonly CompiledMatch<T>[], req: MatchRequest): CompiledMatch<T> | undefined {
  for (const m of list) if (matches(m, req)) return m;
  return undefined;
}
