/**
 * BackendTrafficPolicy in the waypoint, with real backends that fail on command (slow,
 * 5xx, reset, refuse): circuit breaker overflow exactly at the limits, outlier ejection
 * and return on schedule, fault percentages within a stated tolerance, local rate limits
 * within ±10% per client, 429/503 counted and flagged in the access log, retries with a
 * budget, and nothing rejected by a policy that does not apply.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { baseManifests, request, startRig, type Reply, type Rig, type RigAddresses } from './fixtures/rig.js';

const OCTET = 96;
let rig: Rig;

const route = (name: string, prefix: string, backend: string): string => `
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: ns}
spec:
  parentRefs: [{name: gw, namespace: ns}]
  rules: [{matches: [{path: {type: PathPrefix, value: ${prefix}}}], backendRefs: [{name: ${backend}, port: 80}]}]`;

const policy = (name: string, target: string, spec: string, kind: 'Service' | 'HTTPRoute' = 'Service'): string => `
---
apiVersion: kernway.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: ${name}, namespace: ns}
spec:
  targetRefs: [{group: "${kind === 'Service' ? '' : 'gateway.networking.k8s.io'}", kind: ${kind}, name: ${target}}]
${spec}`;

function manifests(a: RigAddresses): string {
  return baseManifests(a, 'ns', { annotations: { odlr: 'least-request' } }) +
    route('cbp', '/cbp', 'cbp') + route('cbc', '/cbc', 'cbc') + route('plain', '/plain', 'plain') +
    route('od', '/od', 'od') + route('odc', '/odc', 'odc') + route('odlr', '/odlr', 'odlr') + route('odr', '/odr', 'odr') +
    route('fi', '/fi', 'fi') + route('fg', '/fg', 'fg') + route('fd', '/fd', 'fd') +
    route('rl', '/rl', 'rl') + route('rl-free', '/free', 'rl') +
    route('rt', '/rt', 'rt') + route('rtb', '/rtb', 'rtb') + route('to', '/to', 'to') + route('pt', '/pt', 'pt') +
    policy('cbp', 'cbp', '  circuitBreaker: {maxParallelRequests: 3}') +
    policy('cbc', 'cbc', '  circuitBreaker: {maxConnections: 2, maxPendingRequests: 1, maxRequestsPerConnection: 2}') +
    policy('od', 'od', '  healthCheck: {passive: {consecutive5XxErrors: 2, interval: 10s, baseEjectionTime: 1s, maxEjectionPercent: 30}}') +
    policy('odlr', 'odlr', '  healthCheck: {passive: {consecutive5XxErrors: 2, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}}') +
    policy('odr', 'odr', '  healthCheck: {passive: {splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2, consecutive5XxErrors: 0, baseEjectionTime: 30s, maxEjectionPercent: 50}}') +
    policy('odc', 'odc', '  healthCheck: {passive: {consecutiveGatewayErrors: 1, consecutive5XxErrors: 0, baseEjectionTime: 30s, maxEjectionPercent: 50}}') +
    policy('fi', 'fi', '  faultInjection: {abort: {httpStatus: 503, percentage: 30}}') +
    policy('fg', 'fg', '  faultInjection: {abort: {grpcStatus: 14}}') +
    policy('fd', 'fd', '  faultInjection: {delay: {fixedDelay: 60ms, percentage: 40}}') +
    policy('rl', 'rl', `  rateLimit:
    type: Local
    local:
      rules:
      - clientSelectors: [{headers: [{name: x-user, type: Distinct}]}]
        limit: {requests: 20, unit: Second}`, 'HTTPRoute') +
    policy('rt', 'rt', '  retry: {numRetries: 2, retryOn: {triggers: [retriable-status-codes], httpStatusCodes: [503]}, perRetry: {backOff: {baseInterval: 1ms}}}') +
    policy('rtb', 'rtb', '  retry: {numRetries: 2, retryOn: {triggers: [retriable-status-codes], httpStatusCodes: [503]}, budget: {percent: 0, minRetryConcurrency: 0}}') +
    policy('to', 'to', '  timeout: {http: {requestTimeout: 200ms, connectionIdleTimeout: 150ms}}\n  tcpKeepalive: {idleTime: 7s}') +
    policy('pt', 'pt', '  retry: {numRetries: 1, retryOn: {triggers: [gateway-error]}, perRetry: {timeout: 150ms, backOff: {baseInterval: 1ms}}}');
}

beforeAll(async () => {
  rig = await startRig({
    octet: OCTET,
    backends: { cbp: 1, cbc: 1, plain: 1, od: 3, odc: 2, odlr: 3, odr: 2, fi: 1, fg: 1, fd: 1, rl: 1, rt: 2, rtb: 1, to: 1, pt: 2 },
    manifests,
  });
}, 60_000);
afterAll(async () => { await rig?.close(); });

const get = (path: string, headers: Record<string, string> = {}): Promise<Reply> => request({ address: rig.a.gateway, port: 8080, path, headers });

function metricValue(text: string, labels: Record<string, string>): number {
  const lines = text.split('\n').filter((l) => !l.startsWith('#') && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
  return lines.reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}
const metric = (name: string): Promise<string> => rig.waypoint.metrics.registry.getSingleMetricAsString(name);

function accessLog(): Record<string, unknown>[] {
  rig.waypoint['accessLog'].flush();
  return readFileSync(rig.accessLogFile, 'utf8').trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('circuit breaker', () => {
  it('maxParallelRequests: the limit passes, the next is 503 at once with x-envoy-overloaded, counted and flagged UO', async () => {
    const echo = rig.echoes.cbp![0]!;
    echo.delayMs = 400;
    try {
      const held = [1, 2, 3].map((i) => get(`/cbp/held-${i}`));
      await vi.waitFor(() => { if (echo.received.filter((r) => r.path.startsWith('/cbp/held-')).length < 3) throw new Error('not all in flight yet'); }, { timeout: 10_000, interval: 5 });
      const t0 = performance.now();
      const over = await get('/cbp/over');
      const tookMs = performance.now() - t0;
      expect(over.status).toBe(503);
      expect(over.headers['x-envoy-overloaded']).toBe('true');
      expect(over.headers['x-kernway-overflow']).toBe('maxParallelRequests');
      expect(tookMs).toBeLessThan(350); // answered before any held request ended (they take 400 ms)
      expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200, 200]);
      expect(echo.received.some((r) => r.path === '/cbp/over')).toBe(false);
      // Freed: the next passes.
      expect((await get('/cbp/after')).status).toBe(200);
    } finally { echo.delayMs = 0; }
    expect(metricValue(await metric('kernway_waypoint_overflow_total'), { destination_service: 'ns/cbp', limit: 'maxParallelRequests' })).toBe(1);
    await vi.waitFor(() => {
      const rec = accessLog().find((l) => l.path === '/cbp/over');
      expect(rec).toMatchObject({ status: 503, responseFlags: 'UO', reason: 'overflow' });
    }, { timeout: 5000, interval: 20 });
  });

  it('maxConnections + maxPendingRequests: two in use, one waits, the fourth is 503 at once; maxRequestsPerConnection closes connections', async () => {
    const echo = rig.echoes.cbc![0]!;
    echo.delayMs = 300;
    try {
      const a = [get('/cbc/a1'), get('/cbc/a2')];
      await vi.waitFor(() => { if (echo.received.filter((r) => r.path.startsWith('/cbc/a')).length < 2) throw new Error('not in flight yet'); }, { timeout: 10_000, interval: 5 });
      const queued = get('/cbc/queued');
      await vi.waitFor(async () => { expect(metricValue(await metric('kernway_waypoint_pending_requests'), { destination_service: 'ns/cbc' })).toBe(1); }, { timeout: 10_000, interval: 5 });
      expect(echo.received.some((r) => r.path === '/cbc/queued')).toBe(false);
      const over = await get('/cbc/over');
      expect(over.status).toBe(503);
      expect(over.headers['x-kernway-overflow']).toBe('maxPendingRequests');
      const t0 = performance.now();
      expect((await Promise.all(a)).map((r) => r.status)).toEqual([200, 200]);
      const q = await queued;
      expect(q.status).toBe(200);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(250); // it waited for a connection, then took its own 300 ms
    } finally { echo.delayMs = 0; }
    expect(metricValue(await metric('kernway_waypoint_overflow_total'), { destination_service: 'ns/cbc', limit: 'maxPendingRequests' })).toBe(1);
    // maxRequestsPerConnection 2: six sequential requests need three backend connections (a Service without policy needs one).
    const before = echo.connections;
    for (let i = 0; i < 6; i++) expect((await get(`/cbc/seq-${i}`)).status).toBe(200);
    expect(echo.connections - before).toBeGreaterThanOrEqual(3);
    const plain = rig.echoes.plain![0]!;
    const p0 = plain.connections;
    for (let i = 0; i < 6; i++) expect((await get(`/plain/seq-${i}`)).status).toBe(200);
    expect(plain.connections - p0).toBeLessThanOrEqual(1);
  });

  it('a Service without a policy is not limited by another Service\'s circuit breaker', async () => {
    const echo = rig.echoes.plain![0]!;
    echo.delayMs = 200;
    try {
      const all = await Promise.all(Array.from({ length: 12 }, (_, i) => get(`/plain/c-${i}`)));
      expect(all.every((r) => r.status === 200)).toBe(true);
    } finally { echo.delayMs = 0; }
  });
});

describe('outlier detection (healthCheck.passive)', () => {
  it('ejects an endpoint after consecutive 5xx, skips it (round robin), brings it back after baseEjectionTime, then twice as long; maxEjectionPercent holds the second failing one in', async () => {
    const [e0, e1] = rig.echoes.od!;
    e0!.failWith = 500;
    const n0 = (): number => e0!.received.length;
    try {
      // Round robin over 3: e0 gets every third request; its second 500 ejects it.
      // The ejection happens inside the waypoint while it answers the request that saw the
      // second 500: its time lies after that request was sent, so measure from there.
      let t = 0;
      let ejectedAt = 0;
      while (n0() < 2 && t++ < 30) { ejectedAt = performance.now(); await get('/od/x'); }
      expect(n0()).toBe(2);
      expect(metricValue(await metric('kernway_waypoint_outlier_ejections_total'), { destination_service: 'ns/od' })).toBe(1);
      expect(metricValue(await metric('kernway_waypoint_outlier_ejected_endpoints'), { destination_service: 'ns/od' })).toBe(1);
      // While out: 30 requests, none to e0, all answered 200.
      const during = await Promise.all(Array.from({ length: 30 }, () => get('/od/during')));
      expect(during.every((r) => r.status === 200)).toBe(true);
      expect(n0()).toBe(2);
      // Back after 1 s (baseEjectionTime × 1).
      while (n0() === 2) await get('/od/poll');
      const back1 = performance.now() - ejectedAt;
      expect(back1).toBeGreaterThanOrEqual(1000);
      expect(back1).toBeLessThan(1800);
      // Still failing: ejected again after two more 500s, this time for 2 s.
      let ejected2 = 0;
      while (n0() < 4) { ejected2 = performance.now(); await get('/od/x2'); }
      while (n0() === 4) await get('/od/poll2');
      const back2 = performance.now() - ejected2;
      expect(back2).toBeGreaterThanOrEqual(2000);
      expect(back2).toBeLessThan(2800);
      // maxEjectionPercent 30 of 3 endpoints: with e0 out, a failing e1 stays in.
      while (n0() < 6) await get('/od/x3');
      e1!.failWith = 500;
      const n1 = e1!.received.length;
      for (let i = 0; i < 12; i++) await get('/od/both');
      expect(e1!.received.length - n1).toBeGreaterThanOrEqual(4);
      expect(metricValue(await metric('kernway_waypoint_outlier_ejected_endpoints'), { destination_service: 'ns/od' })).toBe(1);
    } finally { e0!.failWith = undefined; e1!.failWith = undefined; }
  }, 30_000);

  it('least-request skips ejected endpoints too', async () => {
    const [e0] = rig.echoes.odlr!;
    e0!.failWith = 502;
    try {
      let t = 0;
      while (e0!.received.length < 2 && t++ < 60) await get('/odlr/x');
      expect(e0!.received.length).toBe(2);
      const all = await Promise.all(Array.from({ length: 40 }, () => get('/odlr/during')));
      expect(all.every((r) => r.status === 200)).toBe(true);
      expect(e0!.received.length).toBe(2);
    } finally { e0!.failWith = undefined; }
  });

  it('a refusing endpoint (connect failure) counts as a gateway error: ejected at once, never tried again', async () => {
    await rig.echoes.odc![0]!.close(); // connections to it are refused from now on
    const connectErrors = async (): Promise<number> => metricValue(await metric('kernway_waypoint_upstream_errors_total'), { destination_service: 'ns/odc', kind: 'connect' });
    for (let i = 0; i < 4; i++) expect((await get('/odc/x')).status).toBe(200); // the refused try goes on to the other endpoint
    expect(await connectErrors()).toBe(1);
    expect(metricValue(await metric('kernway_waypoint_outlier_ejections_total'), { destination_service: 'ns/odc' })).toBe(1);
    for (let i = 0; i < 20; i++) expect((await get('/odc/y')).status).toBe(200);
    expect(await connectErrors()).toBe(1);
  });

  it('local-origin failures (resets) eject when split', async () => {
    const [e0] = rig.echoes.odr!;
    e0!.reset = true;
    try {
      let t = 0;
      // Resets answer 502 to the caller; two in a row eject e0.
      while (e0!.received.length < 2 && t++ < 20) await get('/odr/x');
      expect(e0!.received.length).toBe(2);
      const all = await Promise.all(Array.from({ length: 10 }, () => get('/odr/during')));
      expect(all.every((r) => r.status === 200)).toBe(true);
      expect(e0!.received.length).toBe(2);
      expect(metricValue(await metric('kernway_waypoint_outlier_ejections_total'), { destination_service: 'ns/odr' })).toBe(1);
    } finally { e0!.reset = false; }
  });
});

describe('fault injection', () => {
  it('aborts 30% with 503 (within 5 standard deviations over 600 requests), flagged FI and counted; the backend never sees them', async () => {
    const N = 600;
    const echo = rig.echoes.fi![0]!;
    const before = echo.received.length;
    let aborted = 0;
    for (let i = 0; i < N; i += 30) {
      const batch = await Promise.all(Array.from({ length: 30 }, () => get('/fi/x')));
      for (const r of batch) {
        if (r.status === 503) { aborted++; expect(r.body).toBe('fault filter abort\n'); } else expect(r.status).toBe(200);
      }
    }
    const sd = Math.sqrt(N * 0.3 * 0.7); // 11.2
    expect(Math.abs(aborted - N * 0.3)).toBeLessThan(5 * sd);
    expect(echo.received.length - before).toBe(N - aborted);
    expect(metricValue(await metric('kernway_waypoint_faults_injected_total'), { destination_service: 'ns/fi', kind: 'abort' })).toBe(aborted);
    await vi.waitFor(() => { expect(accessLog().filter((l) => l.path === '/fi/x' && l.responseFlags === 'FI').length).toBe(aborted); }, { timeout: 5000, interval: 50 });
  });

  it('grpcStatus aborts answer a gRPC status', async () => {
    const r = await get('/fg/x', { 'content-type': 'application/grpc' });
    expect(r.status).toBe(200);
    expect(r.headers['grpc-status']).toBe('14');
    expect(r.headers['content-type']).toBe('application/grpc');
  });

  it('delays 40% by 60 ms (within 5 standard deviations over 200 requests), flagged DI', async () => {
    const N = 200;
    const times: number[] = [];
    for (let i = 0; i < N; i += 25) {
      await Promise.all(Array.from({ length: 25 }, async () => {
        const t0 = performance.now();
        expect((await get('/fd/x')).status).toBe(200);
        times.push(performance.now() - t0);
      }));
    }
    const delayed = metricValue(await metric('kernway_waypoint_faults_injected_total'), { destination_service: 'ns/fd', kind: 'delay' });
    expect(Math.abs(delayed - N * 0.4)).toBeLessThan(5 * Math.sqrt(N * 0.4 * 0.6));
    // At least as many requests took 60 ms or more as were delayed.
    expect(times.filter((t) => t >= 60).length).toBeGreaterThanOrEqual(delayed);
    await vi.waitFor(() => { expect(accessLog().filter((l) => l.path === '/fd/x' && l.responseFlags === 'DI').length).toBe(delayed); }, { timeout: 5000, interval: 50 });
  });
});

describe('local rate limit', () => {
  it('per distinct client: each gets 20/s within ±10%, 429 with retry-after, flagged RL and counted; other clients and other routes are not limited', async () => {
    // Three connections per client, as fast as they go, for `ms`.
    const run = async (user: string, ms: number): Promise<{ ok: number; limited: number; elapsed: number; lastLimitedSent: number; last429: Reply | undefined }> => {
      let ok = 0, limited = 0;
      let last429: Reply | undefined;
      let lastLimitedSent = 0;
      const t0 = performance.now();
      let n = 0;
      await Promise.all([0, 1, 2].map(async () => {
        while (performance.now() - t0 < ms && n++ < 20_000) {
          const sent = performance.now() - t0;
          const r = await get('/rl/x', { 'x-user': user });
          if (r.status === 200) ok++;
          else { expect(r.status).toBe(429); limited++; last429 = r; lastLimitedSent = Math.max(lastLimitedSent, sent); }
        }
      }));
      return { ok, limited, elapsed: performance.now() - t0, lastLimitedSent, last429 };
    };
    // Two clients at once, 2.5 s each: each should get its own 20 (the bucket) + 20/s.
    const [alice, bob] = await Promise.all([run('alice', 2500), run('bob', 2500)]);
    for (const c of [alice, bob]) {
      expect(c.limited).toBeGreaterThan(0);
      // At most the bucket and 20/s over the whole run (the waypoint's window is inside the
      // client's); at least the bucket and 20/s up to the last refusal (the bucket was empty
      // then): on a loaded machine the client may stop asking faster than 20/s before the end.
      expect(c.ok).toBeLessThanOrEqual(1.1 * (20 + (20 * c.elapsed) / 1000));
      expect(c.ok).toBeGreaterThanOrEqual(0.9 * (20 + (20 * c.lastLimitedSent) / 1000));
      expect(c.last429!.headers['retry-after']).toBe('1');
    }
    // A request without x-user is outside the Distinct rule: never limited. Another route to the same Service neither.
    const free = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? get('/rl/anon') : get('/free/x', { 'x-user': 'alice' }))));
    expect(free.every((r) => r.status === 200)).toBe(true);
    const limited = alice.limited + bob.limited;
    expect(metricValue(await metric('kernway_waypoint_rate_limited_total'), { destination_service: 'ns/rl', policy: 'ns/rl' })).toBe(limited);
    await vi.waitFor(() => { expect(accessLog().filter((l) => l.path === '/rl/x' && l.status === 429 && l.responseFlags === 'RL').length).toBe(limited); }, { timeout: 5000, interval: 50 });
  }, 20_000);
});

describe('retries and timeouts', () => {
  it('retries 503 twice (3 tries), then answers with flag URX', async () => {
    for (const e of rig.echoes.rt!) e.failWith = 503;
    try {
      const r = await get('/rt/x');
      expect(r.status).toBe(503);
      const total = rig.echoes.rt!.reduce((s, e) => s + e.received.filter((x) => x.path === '/rt/x').length, 0);
      expect(total).toBe(3);
      await vi.waitFor(() => { expect(accessLog().find((l) => l.path === '/rt/x')).toMatchObject({ status: 503, responseFlags: 'URX', attempts: 3 }); }, { timeout: 5000, interval: 20 });
      // A retry that then succeeds.
      rig.echoes.rt![1]!.failWith = undefined;
      rig.echoes.rt![0]!.failWith = 503;
      const rs = await Promise.all(Array.from({ length: 6 }, () => get('/rt/y')));
      expect(rs.every((x) => x.status === 200)).toBe(true);
    } finally { for (const e of rig.echoes.rt!) e.failWith = undefined; }
  });

  it('a retry budget of 0% sends no retry, counted as retryBudget overflow', async () => {
    const e = rig.echoes.rtb![0]!;
    e.failWith = 503;
    try {
      expect((await get('/rtb/x')).status).toBe(503);
      expect(e.received.filter((x) => x.path === '/rtb/x').length).toBe(1);
      expect(metricValue(await metric('kernway_waypoint_overflow_total'), { destination_service: 'ns/rtb', limit: 'retryBudget' })).toBe(1);
    } finally { e.failWith = undefined; }
  });

  it('timeout.http.requestTimeout answers 504 in time', async () => {
    const t0 = performance.now();
    const r = await get('/to/x?delay=2s');
    expect(r.status).toBe(504);
    expect(performance.now() - t0).toBeLessThan(1500);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
  });

  it('timeout.http.requestTimeout covers the response body: one that outlasts it is reset, logged as backend_timeout', async () => {
    const t0 = performance.now();
    await expect(get('/to/body?bodydelay=2s')).rejects.toThrow();
    expect(performance.now() - t0).toBeLessThan(1500);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
    await vi.waitFor(() => { expect(accessLog().find((l) => l.path === '/to/body')).toMatchObject({ status: 200, reason: 'backend_timeout' }); }, { timeout: 5000, interval: 20 });
    // The next request on the route is answered as usual.
    expect((await get('/to/after')).status).toBe(200);
  });

  it('perRetry.timeout: a try that outlasts it is abandoned and retried on the other endpoint; both too slow is 504 with flag URX', async () => {
    const [slow, fast] = rig.echoes.pt!;
    slow!.delayMs = 3000;
    try {
      for (let i = 0; i < 4; i++) {
        const t0 = performance.now();
        const r = await get(`/pt/ok${i}`);
        expect(r.status).toBe(200);
        expect(performance.now() - t0).toBeLessThan(1500);
      }
      // Round robin sent some first tries to the slow one: they timed out after 150 ms and went to the other.
      await vi.waitFor(() => {
        const retried = accessLog().filter((l) => String(l.path).startsWith('/pt/ok') && l.attempts === 2);
        expect(retried.length).toBeGreaterThan(0);
        for (const l of retried) expect(l).toMatchObject({ status: 200, upstream: `${fast!.opts.address}:8080` });
      }, { timeout: 5000, interval: 20 });
      fast!.delayMs = 3000;
      const t0 = performance.now();
      expect((await get('/pt/both')).status).toBe(504);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
      expect(performance.now() - t0).toBeLessThan(1500);
      await vi.waitFor(() => { expect(accessLog().find((l) => l.path === '/pt/both')).toMatchObject({ status: 504, attempts: 2, responseFlags: 'URX' }); }, { timeout: 5000, interval: 20 });
    } finally { slow!.delayMs = 0; fast!.delayMs = 0; }
  });

  it('connectionIdleTimeout closes idle backend connections; tcpKeepalive sets keep-alive on them', async () => {
    const echo = rig.echoes.to![0]!;
    expect((await get('/to/a')).status).toBe(200);
    // The pooled connection has TCP keep-alive with the policy's idle time (ss shows its timer).
    const ss = execFileSync('ss', ['-tnoH', 'state', 'established', 'dst', `${echo.opts.address}:8080`], { encoding: 'utf8' });
    // ss shows the time left as 6.812ms for 6.8 s (its unit text varies); the kernel's default would show 119min.
    const m = /timer:\(keepalive,([0-9.]+)(ms|sec),0\)/.exec(ss);
    expect(m, ss).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(7);
    const c0 = echo.connections;
    // Idle past 150 ms (the sleep is the subject): the next request needs a new connection.
    await new Promise((r) => setTimeout(r, 400));
    expect((await get('/to/b')).status).toBe(200);
    expect(echo.connections).toBe(c0 + 1);
    // Back to back, it reuses the connection.
    expect((await get('/to/c')).status).toBe(200);
    expect(echo.connections).toBe(c0 + 1);
  });
});
