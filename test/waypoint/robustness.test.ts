/**
 * What the waypoint refuses and how it fails, on real sockets: malformed requests (400),
 * request smuggling (conflicting Content-Length / Transfer-Encoding), oversized heads
 * (431), slow heads (408), bad PROXY headers, failing backends (502/503/504), retries,
 * configuration changes and bad files while requests are in flight.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { baseManifests, gatewayRoute, rawExchange, request, startRig, type Rig, type RigAddresses } from './fixtures/rig.js';

const OCTET = 90;
let rig: Rig;

function manifests(a: RigAddresses, extraRules = ''): string {
  return baseManifests(a) + `
---
apiVersion: v1
kind: Service
metadata: {name: dead, namespace: ns}
spec:
  clusterIP: 10.96.${100 + (process.pid % 100)}.99
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dead-1, namespace: ns, labels: {kubernetes.io/service-name: dead}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [${a.caller(9)}]}]
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: ns}
spec:
  clusterIP: 10.96.${100 + (process.pid % 100)}.98
  ports: [{name: http, port: 80, targetPort: 8080}]` +
    gatewayRoute('main', `  - matches: [{path: {type: PathPrefix, value: /web}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /dead}}]
    backendRefs: [{name: dead, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /empty}}]
    backendRefs: [{name: empty, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /flaky}}]
    retry: {attempts: 2, codes: [503]}
    backendRefs: [{name: flaky, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /noretry}}]
    backendRefs: [{name: flaky, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    timeouts: {backendRequest: 300ms}
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /zero}}]
    backendRefs: [{name: web, port: 80, weight: 0}]
${extraRules}`);
}

beforeAll(async () => {
  rig = await startRig({ octet: OCTET, backends: { web: 2, flaky: 2 }, manifests: (a) => manifests(a), extraArgs: ['--header-timeout', '500ms', '--max-header-bytes', '4096'] });
}, 30_000);
afterAll(async () => { await rig?.close(); });

const gw = (): [string, number] => [rig.a.gateway, 8080];

describe('malformed requests', () => {
  it('400 for a malformed request line or header', async () => {
    expect(await rawExchange(...gw(), 'GET /web HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await rawExchange(...gw(), 'NOT A REQUEST\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await rawExchange(...gw(), 'GET web HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await rawExchange(...gw(), 'GET /web/../../etc HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
  });
  it('400 without a Host in HTTP/1.1, or with two', async () => {
    expect(await rawExchange(...gw(), 'GET /web HTTP/1.1\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await rawExchange(...gw(), 'GET /web HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
  });
  it('request smuggling is refused: Content-Length with Transfer-Encoding, duplicate lengths, odd encodings', async () => {
    const before = rig.echoes.web!.reduce((n, e) => n + e.received.length, 0);
    const clte = await rawExchange(...gw(), 'POST /web HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /web/smuggled HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(clte).toMatch(/^HTTP\/1\.1 400 /);
    const dupCl = await rawExchange(...gw(), 'POST /web HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd');
    expect(dupCl).toMatch(/^HTTP\/1\.1 400 /);
    const te = await rawExchange(...gw(), 'POST /web HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n');
    expect(te).toMatch(/^HTTP\/1\.1 400 /);
    expect(clte).not.toContain('smuggled');
    const after = rig.echoes.web!.reduce((n, e) => n + e.received.length, 0);
    expect(after).toBe(before);
    const m = await rig.waypoint.metrics.registry.getSingleMetricAsString('kernway_waypoint_downstream_errors_total');
    expect(m).toMatch(/kind="request_smuggling"} [1-9]/);
  });
  it('431 for a request head over the limit', async () => {
    const big = 'x'.repeat(5000);
    expect(await rawExchange(...gw(), `GET /web HTTP/1.1\r\nHost: x\r\nX-Big: ${big}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 431 /);
  });
  it('408 for a head that does not arrive in time (slowloris)', async () => {
    const t0 = Date.now();
    const got = await new Promise<string>((resolve) => {
      const s = net.connect({ host: rig.a.gateway, port: 8080 });
      let buf = '';
      s.write('GET /web HTTP/1.1\r\nHost: x\r\n');
      const drip = setInterval(() => s.write('X-Slow: 1\r\n'), 100);
      s.on('data', (d) => { buf += d.toString(); });
      s.on('close', () => { clearInterval(drip); resolve(buf); });
      s.on('error', () => { clearInterval(drip); resolve(buf); });
    });
    expect(got).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
  it('a mesh connection without a valid PROXY header is closed without an answer', async () => {
    expect(await rawExchange(rig.a.gateway, rig.waypoint.meshPort, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n')).toBe('');
    const m = await rig.waypoint.metrics.registry.getSingleMetricAsString('kernway_waypoint_downstream_errors_total');
    expect(m).toMatch(/kind="proxy_protocol"} [1-9]/);
  });
});

describe('failing backends', () => {
  it('503 when the backend refuses connections, 503 when a Service has no endpoint', async () => {
    expect((await request({ address: rig.a.gateway, port: 8080, path: '/dead' })).status).toBe(503);
    expect((await request({ address: rig.a.gateway, port: 8080, path: '/empty' })).status).toBe(503);
  });
  it('500 when every backend has weight 0; 404 when no rule matches', async () => {
    expect((await request({ address: rig.a.gateway, port: 8080, path: '/zero' })).status).toBe(500);
    expect((await request({ address: rig.a.gateway, port: 8080, path: '/nothing-here' })).status).toBe(404);
  });
  it('502 when the backend answers garbage', async () => {
    const junk = net.createServer((s) => { s.on('data', () => s.end('this is not HTTP\r\n\r\n')); s.on('error', () => {}); });
    await new Promise<void>((r) => junk.listen(8080, rig.a.caller(9), () => r()));
    try {
      expect((await request({ address: rig.a.gateway, port: 8080, path: '/dead' })).status).toBe(502);
    } finally {
      await new Promise<void>((r) => junk.close(() => r()));
    }
  });
  it('504 when the backend does not answer within timeouts.backendRequest', async () => {
    const t0 = Date.now();
    expect((await request({ address: rig.a.gateway, port: 8080, path: '/slow?delay=2s' })).status).toBe(504);
    expect(Date.now() - t0).toBeLessThan(1500);
  });
  it('retries the codes listed, on another endpoint, up to the attempts', async () => {
    const [f0, f1] = rig.echoes.flaky!;
    f0!.failWith = 503;
    const n0 = f0!.received.length, n1 = f1!.received.length;
    try {
      for (let i = 0; i < 6; i++) expect((await request({ address: rig.a.gateway, port: 8080, path: '/flaky' })).status).toBe(200);
      expect(f1!.received.length - n1).toBe(6);
      f1!.failWith = 503;
      expect((await request({ address: rig.a.gateway, port: 8080, path: '/flaky' })).status).toBe(503);
      expect((await request({ address: rig.a.gateway, port: 8080, path: '/noretry' })).status).toBe(503);
      expect(f0!.received.length - n0).toBeGreaterThan(0);
    } finally {
      f0!.failWith = undefined;
      f1!.failWith = undefined;
    }
  });
});

/** Waits until a backend has received `path`: the request is then in flight at the waypoint. */
async function inFlight(path: string): Promise<void> {
  await vi.waitFor(() => {
    if (!Object.values(rig.echoes).flat().some((e) => e.received.some((x) => x.path === path))) throw new Error(`${path} has not reached a backend`);
  }, { timeout: 10_000, interval: 10 });
}

describe('configuration changes', () => {
  it('a request in flight survives a change that removes its route', async () => {
    const pending = request({ address: rig.a.gateway, port: 8080, path: '/web/inflight?delay=700ms' });
    await inFlight('/web/inflight?delay=700ms');
    await rig.update(manifests(rig.a).replace('value: /web}', 'value: /moved}'));
    const r = await pending;
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ path: '/web/inflight?delay=700ms' });
    expect((await request({ address: rig.a.gateway, port: 8080, path: '/web/x' })).status).toBe(404);
    expect((await request({ address: rig.a.gateway, port: 8080, path: '/moved/x' })).status).toBe(200);
    await rig.update(manifests(rig.a));
  });
  it('a bad file is reported and the last good configuration stays', async () => {
    const gen = rig.waypoint.configGeneration;
    const file = join(rig.dir, 'manifests', 'config.yaml');
    writeFileSync(file, manifests(rig.a).replace('value: /web}', 'value: /web//broken}'));
    await rig.waypoint.waitForGeneration(gen + 1);
    const st = rig.waypoint.status();
    expect(st.problems.some((p) => p.file === file && p.field === 'spec.rules[0].matches[0].path.value')).toBe(true);
    expect((await request({ address: rig.a.gateway, port: 8080, path: '/web/still' })).status).toBe(200);
    const ready = await request({ address: rig.a.gateway, port: rig.waypoint.adminPort!, path: '/readyz' });
    expect(ready.status).toBe(200);
    await rig.update(manifests(rig.a));
    expect(rig.waypoint.status().problems).toEqual([]);
  });
  it('a Gateway listener added later is bound, one removed is closed', async () => {
    const extra = manifests(rig.a).replace('listeners: [{name: http, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]',
      'listeners: [{name: http, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}, {name: alt, port: 8081, protocol: HTTP}]');
    await rig.update(extra);
    expect((await request({ address: rig.a.gateway, port: 8081, path: '/web/alt' })).status).toBe(200);
    await rig.update(manifests(rig.a));
    await expect(request({ address: rig.a.gateway, port: 8081, path: '/web/alt' })).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe('shutdown', () => {
  it('drains: requests in flight finish, new connections are refused', async () => {
    const pending = request({ address: rig.a.gateway, port: 8080, path: '/web/drain?delay=500ms' });
    await inFlight('/web/drain?delay=500ms');
    const stopping = rig.waypoint.stop(3000);
    await vi.waitFor(() => expect(request({ address: rig.a.gateway, port: 8080, path: '/web/late' })).rejects.toThrow(/ECONNREFUSED/), { timeout: 5000, interval: 10 });
    expect((await pending).status).toBe(200);
    await stopping;
  });
});
