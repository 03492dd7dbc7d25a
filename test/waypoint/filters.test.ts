import { describe, expect, it } from 'vitest';
import type { Cors, Redirect } from '../../k8s/gateway-api-types.js';
import { corsResponseHeaders, originAllowed, preflightHeaders, redirectLocation } from '../../waypoint/proxy/filters.js';
import { applyModifier, forwardable, forwardableRequest, getHeader } from '../../waypoint/proxy/headers.js';

const ctx = { scheme: 'http' as const, host: 'a.example', port: 80, path: '/p/q', query: 'x=1', prefix: '/p', fallbackHost: '10.0.0.1' };
const rd = (r: Partial<Redirect>): Redirect => ({ scheme: undefined, hostname: undefined, path: undefined, port: undefined, statusCode: 302, ...r });

describe('RequestRedirect Location', () => {
  it('keeps what the filter does not set (query included)', () => {
    expect(redirectLocation(rd({}), ctx)).toBe('http://a.example/p/q?x=1');
    expect(redirectLocation(rd({ hostname: 'b.example' }), ctx)).toBe('http://b.example/p/q?x=1');
  });
  it('port: the filter\'s, else the scheme\'s default when it sets a scheme, else the listener\'s; default ports are left out', () => {
    expect(redirectLocation(rd({ port: 8083 }), ctx)).toBe('http://a.example:8083/p/q?x=1');
    expect(redirectLocation(rd({ scheme: 'https' }), { ...ctx, port: 8080 })).toBe('https://a.example/p/q?x=1');
    expect(redirectLocation(rd({}), { ...ctx, port: 8080 })).toBe('http://a.example:8080/p/q?x=1');
    expect(redirectLocation(rd({ scheme: 'https', port: 443 }), ctx)).toBe('https://a.example/p/q?x=1');
  });
  it('paths: full replacement and segment-aware prefix replacement', () => {
    expect(redirectLocation(rd({ path: { type: 'ReplaceFullPath', value: '/new' } }), ctx)).toBe('http://a.example/new?x=1');
    expect(redirectLocation(rd({ path: { type: 'ReplacePrefixMatch', value: '/r' } }), ctx)).toBe('http://a.example/r/q?x=1');
  });
  it('IPv6 hosts are bracketed; a request without host uses the local address', () => {
    expect(redirectLocation(rd({}), { ...ctx, host: 'fd00::1', query: '' })).toBe('http://[fd00::1]/p/q');
    expect(redirectLocation(rd({}), { ...ctx, host: undefined, query: '' })).toBe('http://10.0.0.1/p/q');
  });
});

const cors = (c: Partial<Cors>): Cors => ({ allowOrigins: [], allowMethods: [], allowHeaders: [], exposeHeaders: [], allowCredentials: false, maxAgeSeconds: 5, ...c });

describe('CORS', () => {
  it('matches origins exactly, by host wildcard (any number of labels), or *', () => {
    const c = cors({ allowOrigins: ['https://www.foo.com', 'https://*.bar.com'] });
    expect(originAllowed(c, 'https://www.foo.com')).toBe(true);
    expect(originAllowed(c, 'https://x.y.bar.com')).toBe(true);
    expect(originAllowed(c, 'https://bar.com')).toBe(false);
    expect(originAllowed(c, 'http://www.foo.com')).toBe(false);
    expect(originAllowed(c, 'https://www.foo.com:8443')).toBe(false);
    expect(originAllowed(cors({ allowOrigins: ['*'] }), 'https://anything:1234')).toBe(true);
    expect(originAllowed(c, 'null')).toBe(false);
  });
  it('answers preflights with the configured lists, echoing origin, method and headers for *', () => {
    const h = preflightHeaders(cors({ allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*'], allowCredentials: true, maxAgeSeconds: 60 }), 'https://o.example', 'PUT', 'x-a, x-b');
    expect(getHeader(h, 'access-control-allow-origin')).toBe('https://o.example');
    expect(getHeader(h, 'access-control-allow-methods')).toBe('PUT');
    expect(getHeader(h, 'access-control-allow-headers')).toBe('x-a, x-b');
    expect(getHeader(h, 'access-control-allow-credentials')).toBe('true');
    expect(getHeader(h, 'access-control-max-age')).toBe('60');
    const r = corsResponseHeaders(cors({ exposeHeaders: ['x-c'] }), 'https://o.example');
    expect(getHeader(r, 'access-control-allow-credentials')).toBeUndefined();
    expect(getHeader(r, 'access-control-expose-headers')).toBe('x-c');
  });
});

describe('header lists', () => {
  it('drop hop-by-hop headers and those Connection names, keep order and repeats', () => {
    const h = forwardable(['Host', 'h', 'Connection', 'keep-alive, X-Secret', 'X-Secret', 's', 'Transfer-Encoding', 'chunked', 'X-A', '1', 'x-a', '2', 'TE', 'trailers', 'Upgrade', 'websocket']);
    expect(h).toEqual(['Host', 'h', 'X-A', '1', 'x-a', '2']);
    expect(forwardable(['TE', 'trailers', 'Upgrade', 'websocket'], new Set(['te']))).toEqual(['TE', 'trailers']);
  });
  it('set replaces every value, add appends a value, remove drops all (names case-insensitive)', () => {
    const h = ['x-set', 'old', 'X-SET', 'older', 'x-add', 'a', 'x-rm', '1'];
    applyModifier(h, { set: [{ name: 'X-Set', value: 'new' }], add: [{ name: 'X-Add', value: 'b' }], remove: ['x-rm'] });
    expect(getHeader(h, 'x-set')).toBe('new');
    expect(getHeader(h, 'x-add')).toBe('a,b');
    expect(getHeader(h, 'x-rm')).toBeUndefined();
  });
});

// ---- forwardable()/forwardableRequest() against the writers before them (lower-case copies,
// Connection split with split/trim), kept here as the reference: same lists for mixed-case
// names, Connection tokens in any case and spacing (NBSP and the Kelvin sign included), and keep sets.
const HOP_REF = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-authorization']);
function namedRef(raw: readonly string[], keep: ReadonlySet<string> | undefined): Set<string> | undefined {
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue;
    for (const t of raw[i + 1]!.split(',')) {
      const n = t.trim().toLowerCase();
      if (n !== '' && n !== 'close' && n !== 'keep-alive' && !(keep?.has(n))) (named ??= new Set()).add(n);
    }
  }
  return named;
}
function forwardableRef(raw: readonly string[], keep?: ReadonlySet<string>): string[] {
  const named = namedRef(raw, keep);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower.startsWith(':') || (HOP_REF.has(lower) && !(keep?.has(lower))) || named?.has(lower)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}
function forwardableRequestRef(raw: readonly string[], keep: ReadonlySet<string> | undefined): [string[], string | undefined, string | undefined] {
  const named = namedRef(raw, keep);
  const out: string[] = [];
  let xff: string | undefined, requestId: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower === 'host' || lower === 'x-forwarded-proto' || lower === 'traceparent') continue;
    if (lower === 'x-forwarded-for') { xff = xff === undefined ? raw[i + 1] : `${xff}, ${raw[i + 1]}`; continue; }
    if (lower === 'x-request-id') requestId ??= raw[i + 1];
    if (lower.startsWith(':') || (HOP_REF.has(lower) && !(keep?.has(lower))) || named?.has(lower)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return [out, xff, requestId];
}

describe('hop-by-hop filtering', () => {
  it('gives the same lists as the reference for random heads', () => {
    const names = ['Connection', 'connection', 'CONNECTION', 'Keep-Alive', 'keep-alive', 'TE', 'te', 'Te', 'Trailer', 'Upgrade', 'upgrade', 'Host', 'host', 'HOST',
      'X-Forwarded-For', 'x-forwarded-for', 'x-forwarded-proto', 'X-Forwarded-Proto', 'Traceparent', 'traceparent', 'X-Request-Id', 'x-request-id',
      'Proxy-Connection', 'Transfer-Encoding', 'transfer-encoding', 'proxy-authorization', 'Proxy-Authenticate', 'foo', 'Foo', 'X-Custom', 'x-custom',
      ':authority', ':path', 'Content-Length', 'content-type', 'close', 'Server', 'Date'];
    const tokens = ['close', 'Close', 'CLOSE', 'keep-alive', 'Keep-Alive', 'foo', 'Foo', 'upgrade', 'te', 'TE', 'x-custom', ' bar ', '', ' ', '\u00a0foo\u00a0', '\tfoo',
      'cl\u212Ase', '\u212Aeep-alive', 'trailer', 'X-Request-Id', 'host', 'content-type'];
    const keeps = [undefined, new Set(['te']), new Set(['upgrade'])];
    let seed = 7;
    const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    for (let it = 0; it < 20_000; it++) {
      const raw: string[] = [];
      for (let j = rnd(9); j > 0; j--) {
        const name = names[rnd(names.length)]!;
        const parts: string[] = [];
        for (let q = 1 + rnd(3); q > 0; q--) parts.push(tokens[rnd(tokens.length)]!);
        raw.push(name, name.toLowerCase() === 'connection' ? parts.join(rnd(2) ? ',' : ', ') : `v${rnd(100)}`);
      }
      const keep = keeps[rnd(3)];
      expect(forwardable(raw, keep), JSON.stringify([raw, keep && [...keep]])).toEqual(forwardableRef(raw, keep));
      const into: string[] = [];
      const r = forwardableRequest(raw, keep, into);
      expect([into, r.xff, r.requestId], JSON.stringify([raw, keep && [...keep]])).toEqual(forwardableRequestRef(raw, keep));
    }
  });
});
