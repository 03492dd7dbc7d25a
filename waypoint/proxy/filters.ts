/**
 * The Gateway API filters that compute something: RequestRedirect (the Location),
 * URLRewrite (path and host), and CORS (origin checks, preflight answers, response
 * headers). Header modifiers are in headers.ts.
 */
import type { Cors, PathModifier, Redirect } from '../../k8s/gateway-api-types.js';
import { replacePrefix } from '../routing/path.js';
import type { HeaderList } from './headers.js';

const DEFAULT_PORT: Record<string, number> = { http: 80, https: 443 };

/** The path after a path modifier; `prefix` is the matched PathPrefix key. */
export function modifyPath(path: string, m: PathModifier | undefined, prefix: string | undefined): string {
  if (!m) return path;
  if (m.type === 'ReplaceFullPath') return m.value;
  return prefix === undefined ? path : replacePrefix(path, prefix, m.value);
}

export interface RedirectContext {
  scheme: 'http' | 'https';
  /** The request's host (no port); undefined when the request had none. */
  host: string | undefined;
  /** The listener (or Service) port the request came in on. */
  port: number;
  path: string;
  query: string;
  prefix: string | undefined;
  /** Used when the request has no host. */
  fallbackHost: string;
}

/**
 * The Location of a RequestRedirect. Without a port in the filter: the scheme's well-known
 * port when the filter sets a scheme, else the listener's port; a well-known port for the
 * scheme is left out of the URL.
 */
export function redirectLocation(r: Redirect, c: RedirectContext): string {
  const scheme = r.scheme ?? c.scheme;
  const host = r.hostname ?? c.host ?? c.fallbackHost;
  const port = r.port ?? (r.scheme !== undefined ? DEFAULT_PORT[r.scheme]! : c.port);
  const hostPart = host.includes(':') ? `[${host}]` : host;
  const portPart = port === DEFAULT_PORT[scheme] ? '' : `:${port}`;
  const path = modifyPath(c.path, r.path, c.prefix);
  return `${scheme}://${hostPart}${portPart}${path}${c.query !== '' ? `?${c.query}` : ''}`;
}

// ------------------------------------------------------------------ CORS

/** Whether an Origin header value is allowed by the filter. */
export function originAllowed(cors: Cors, origin: string): boolean {
  const o = parseOrigin(origin);
  if (!o) return false;
  for (const pat of cors.allowOrigins) {
    if (pat === '*') return true;
    const p = parseOrigin(pat);
    if (!p || p.scheme !== o.scheme || p.port !== o.port) continue;
    if (p.host.startsWith('*.')) {
      const suffix = p.host.slice(1);
      if (o.host.length > suffix.length && o.host.endsWith(suffix)) return true;
    } else if (p.host === o.host) return true;
  }
  return false;
}

function parseOrigin(s: string): { scheme: string; host: string; port: string } | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(\[[^\]]+\]|[^/:?#]+)(?::([0-9]+))?\/?$/.exec(s);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  const port = m[3] ?? '';
  return { scheme, host: m[2]!.toLowerCase(), port: port === String(DEFAULT_PORT[scheme] ?? '') ? '' : port };
}

/** Whether a request is a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method). */
export function isPreflight(method: string, origin: string | undefined, requestMethod: string | undefined): boolean {
  return method === 'OPTIONS' && origin !== undefined && requestMethod !== undefined;
}

/** Headers answering an allowed preflight. */
export function preflightHeaders(cors: Cors, origin: string, requestMethod: string, requestHeaders: string | undefined): HeaderList {
  const h: HeaderList = ['access-control-allow-origin', origin, 'vary', 'Origin'];
  if (cors.allowCredentials) h.push('access-control-allow-credentials', 'true');
  if (cors.allowMethods.length > 0) {
    h.push('access-control-allow-methods', cors.allowMethods[0] === '*' ? requestMethod : cors.allowMethods.join(', '));
  }
  if (cors.allowHeaders.length > 0) {
    if (cors.allowHeaders[0] !== '*') h.push('access-control-allow-headers', cors.allowHeaders.join(', '));
    else if (requestHeaders !== undefined && requestHeaders !== '') h.push('access-control-allow-headers', requestHeaders);
  }
  if (cors.exposeHeaders.length > 0) h.push('access-control-expose-headers', cors.exposeHeaders.join(', '));
  h.push('access-control-max-age', String(cors.maxAgeSeconds));
  return h;
}

/** Headers added to the response of an allowed (non-preflight) cross-origin request. */
export function corsResponseHeaders(cors: Cors, origin: string): HeaderList {
  const h: HeaderList = ['access-control-allow-origin', origin, 'vary', 'Origin'];
  if (cors.allowCredentials) h.push('access-control-allow-credentials', 'true');
  if (cors.exposeHeaders.length > 0) h.push('access-control-expose-headers', cors.exposeHeaders.join(', '));
  return h;
}
