/**
 * Route features on real sockets beyond the conformance data: RequestRedirect on a
 * backendRef, several mirrors and mirror percentages, mirrors on a backendRef,
 * least-request balancing.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { baseManifests, gatewayRoute, request, startRig, type Rig, type RigAddresses } from './fixtures/rig.js';

const OCTET = 95;
let rig: Rig;

function manifests(a: RigAddresses): string {
  return baseManifests(a, 'ns', { annotations: { lr: 'least-request' } }) + gatewayRoute('features', `  - matches: [{path: {type: PathPrefix, value: /split}}]
    backendRefs:
    - name: web
      port: 80
      filters: [{type: RequestRedirect, requestRedirect: {hostname: moved.example, statusCode: 301}}]
    - {name: web, port: 80}
  - matches: [{path: {type: PathPrefix, value: /mirror-two}}]
    filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: m1, port: 80}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: m2, port: 80}}}
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /mirror-half}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m1, port: 80}, percent: 50}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /mirror-none}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m1, port: 80}, fraction: {numerator: 0}}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /mirror-backend}}]
    backendRefs:
    - name: web
      port: 80
      weight: 1
      filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m2, port: 80}}}]
    - {name: lr, port: 80, weight: 1}
  - matches: [{path: {type: PathPrefix, value: /lr}}]
    backendRefs: [{name: lr, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /header-ok}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-set, value: "a\\tb"}], add: [{name: x-added, value: "caf\\xe9"}]}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /header-control}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-bad, value: "a\\x01b"}]}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /header-del}}]
    backendRefs:
    - name: web
      port: 80
      filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-bad, value: "a\\x7fb"}]}}]`);
}

beforeAll(async () => {
  rig = await startRig({ octet: OCTET, backends: { web: 1, m1: 1, m2: 1, lr: 2 }, manifests });
}, 30_000);
afterAll(async () => { await rig?.close(); });

const get = (path: string): ReturnType<typeof request> => request({ address: rig.a.gateway, port: 8080, path });
const seen = (name: string, path: string): number => rig.echoes[name]!.reduce((n, e) => n + e.received.filter((r) => r.path.startsWith(path)).length, 0);
/** Mirrors are fire and forget: waits until `name` has seen `n` copies under `path`. */
const mirrored = (name: string, path: string, n: number): Promise<void> =>
  vi.waitFor(() => expect(seen(name, path)).toBeGreaterThanOrEqual(n), { timeout: 10_000, interval: 10 });
/**
 * A random share has no count to wait for: a fixed pause lets the last mirrors land. The
 * assertions after it are ranges, so a straggler cannot fail them.
 */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 200));

describe('backendRef filters', () => {
  it('a RequestRedirect on a backendRef redirects the requests given that backend', async () => {
    const codes: number[] = [];
    let location = '';
    for (let i = 0; i < 10; i++) {
      const r = await get(`/split/${i}`);
      codes.push(r.status);
      if (r.status === 301) location = String(r.headers.location);
    }
    expect(codes.filter((c) => c === 301)).toHaveLength(5);
    expect(codes.filter((c) => c === 200)).toHaveLength(5);
    expect(location).toMatch(/^http:\/\/moved\.example:8080\/split\/\d$/);
  });
  it('a RequestMirror on a backendRef mirrors only the requests given that backend', async () => {
    for (let i = 0; i < 10; i++) expect((await get(`/mirror-backend/${i}`)).status).toBe(200);
    await mirrored('m2', '/mirror-backend', 5);
    expect(seen('web', '/mirror-backend')).toBe(5);
    expect(seen('m2', '/mirror-backend')).toBe(5);
    expect(new Set(rig.echoes.m2!.flatMap((e) => e.received.filter((r) => r.path.startsWith('/mirror-backend')).map((r) => r.path)))).toEqual(
      new Set(rig.echoes.web!.flatMap((e) => e.received.filter((r) => r.path.startsWith('/mirror-backend')).map((r) => r.path))));
  });
});

describe('response header modifiers', () => {
  // Headers from the backend's strict parser are not checked again when the response head is
  // written; what a modifier adds is, once: a value Node would not send still gets a 502.
  it('values the configuration may hold but HTTP may not carry answer 502; others are sent', async () => {
    const ok = await get('/header-ok');
    expect(ok.status).toBe(200);
    expect(ok.headers['x-set']).toBe('a\tb');
    expect(Buffer.from(ok.headers['x-added'] as string, 'latin1').toString('latin1')).toBe('caf\u00e9');
    for (const path of ['/header-control', '/header-del']) {
      const r = await get(path);
      expect(r.status).toBe(502);
    }
    expect((await get('/header-ok')).status).toBe(200);
  });
});

describe('mirrors', () => {
  it('several mirrors each get a copy', async () => {
    for (let i = 0; i < 5; i++) await get(`/mirror-two/${i}`);
    await mirrored('m1', '/mirror-two', 5);
    await mirrored('m2', '/mirror-two', 5);
    expect(seen('m1', '/mirror-two')).toBe(5);
    expect(seen('m2', '/mirror-two')).toBe(5);
  });
  it('percent and fraction choose the share mirrored', async () => {
    for (let i = 0; i < 200; i++) await get(`/mirror-half/${i}`);
    for (let i = 0; i < 20; i++) await get(`/mirror-none/${i}`);
    await settle();
    const half = seen('m1', '/mirror-half');
    expect(half).toBeGreaterThan(50);
    expect(half).toBeLessThan(150);
    expect(seen('m1', '/mirror-none')).toBe(0);
    expect(seen('web', '/mirror-half')).toBe(200);
  });
});

describe('least-request balancing', () => {
  it('sends most requests to the endpoint that is not busy', async () => {
    const [slow, fast] = rig.echoes.lr!;
    slow!.delayMs = 300;
    try {
      const before = [slow!.received.length, fast!.received.length];
      const workers = Array.from({ length: 4 }, async () => { for (let i = 0; i < 10; i++) await get('/lr/x'); });
      await Promise.all(workers);
      const toSlow = slow!.received.length - before[0]!;
      const toFast = fast!.received.length - before[1]!;
      expect(toSlow + toFast).toBe(40);
      expect(toFast).toBeGreaterThan(30);
    } finally {
      slow!.delayMs = 0;
    }
  });
});
