/**
 * The feed's server and the waypoint's feed source together in one process, over a real
 * Unix socket: snapshot, deltas, namespace slices (with a ReferenceGrant), a NACK with its
 * reason while the last good configuration serves, and coalescing for a waypoint that
 * does not read.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { renderStatus, type StatusReport } from '../../cli/status.js';
import { FeedServer } from '../../agent/feed/server.js';
import { stubOf } from '../../k8s/kinds.js';
import type { HTTPRoute } from '../../k8s/gateway-api-types.js';
import { parseObject } from '../../k8s/kinds.js';
import type { SourcedObject } from '../../k8s/types.js';
import { feedService } from '../../sources/feed/service.js';
import { parseFeedAddress, type FeedUpdate } from '../../sources/feed/protocol.js';
import { AgentFeedSource } from '../../waypoint/config/source.js';
import { DEFAULT_LIMITS, Waypoint } from '../../waypoint/waypoint.js';
import { EchoServer } from '../waypoint/fixtures/echo.js';
import { objectsFrom } from '../waypoint/helpers.js';
import { GATEWAY_CLASS, get, nsObjects, until } from './helpers.js';

const log = createLogger('feed-test', process.env.KERNWAY_LOG_LEVEL ?? 'silent');
let dir: string;
let server: FeedServer;
let echoA: EchoServer;
let echoB: EchoServer;
const waypoints: Waypoint[] = [];
const base = 18600 + (process.pid % 200) * 4;
const objectsA = (): SourcedObject[] => nsObjects('team-a', { echoIp: '127.0.0.1', echoPort: echoA.port, vip: '10.96.50.1', gatewayPort: base });
const objectsB = (): SourcedObject[] => nsObjects('team-b', { echoIp: '127.0.0.1', echoPort: echoB.port, vip: '10.96.50.2', gatewayPort: base + 1 });

async function startWaypoint(ns: string, socket = join(dir, 'feed.sock')): Promise<Waypoint> {
  const w = await Waypoint.start({
    namespace: ns, listenAddress: '127.0.0.1', meshPort: 0, metricsAddress: { host: '127.0.0.1', port: 0 }, accessLog: 'off',
    limits: DEFAULT_LIMITS, upstream: { connectTimeoutMs: 2000, idleTimeoutMs: 10_000, maxIdlePerEndpoint: 8 }, drainTimeoutMs: 100, log, processMetrics: false,
  }, new AgentFeedSource({ address: parseFeedAddress('--agent', `unix://${socket}`), namespace: ns, name: `wp-${ns}`, log, backoff: { initialMs: 50, maxMs: 200 } }));
  waypoints.push(w);
  return w;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kw-feed-'));
  echoA = await EchoServer.start({ address: '127.0.0.1', port: 0, pod: 'echo-a', namespace: 'team-a' });
  echoB = await EchoServer.start({ address: '127.0.0.1', port: 0, pod: 'echo-b', namespace: 'team-b' });
  server = new FeedServer({ addresses: [parseFeedAddress('--feed-address', `unix://${join(dir, 'feed.sock')}`)], log, agentId: 'test' });
  server.update([...GATEWAY_CLASS, ...objectsA(), ...objectsB()], []);
  await server.start();
});

afterAll(async () => {
  for (const w of waypoints) await w.stop(0);
  await server?.close();
  await echoA?.close();
  await echoB?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('feed over a Unix socket, in one process', () => {
  it('serves the socket with mode 0600', () => {
    expect(statSync(join(dir, 'feed.sock')).mode & 0o777).toBe(0o600);
  });

  it('a waypoint receives its namespace slice only, and serves it', async () => {
    const w = await startWaypoint('team-a');
    expect(w.readiness().ready).toBe(true);
    const routes = w.table.routes.map((r) => `${r.namespace}/${r.name}`);
    expect(routes).toEqual(['team-a/route']);
    const st = server.status().waypoints.find((x) => x.namespace === 'team-a')!;
    expect(st.peer).toContain('host process');
    // Nothing of team-b's but its Namespace and (identity only) Pods.
    const keys = [...server.index.slice('team-a')];
    expect(keys.some((k) => k.includes('team-b/'))).toBe(false);
    const r = await get(base, '/hello');
    expect(r.status).toBe(200);
    await until(() => st.ackedVersion === server.index.version || server.status().waypoints[0]!.ackedVersion === server.index.version, 5000, 'ack');
  });

  it('changes arrive as deltas; a removed route disappears', async () => {
    const w = waypoints[0]!;
    const before = w.configGeneration;
    const old = objectsA();
    const changed = nsObjects('team-a', { echoIp: '127.0.0.1', echoPort: echoA.port, vip: '10.96.50.1', gatewayPort: base, path: '/v2' });
    // Same origins: the old route out, the new one in.
    const oldRoute = old.find((o) => o.object.kind === 'HTTPRoute')!;
    const newRoute = changed.find((o) => o.object.kind === 'HTTPRoute')!;
    server.update([newRoute], [oldRoute]);
    await w.waitForGeneration(before + 1);
    expect((await get(base, '/hello')).status).toBe(404);
    expect((await get(base, '/v2/x')).status).toBe(200);
    server.update([], [newRoute]);
    await w.waitForGeneration(before + 2);
    expect(w.table.routes).toEqual([]);
    server.update([oldRoute], []);
    await w.waitForGeneration(before + 3);
  });

  it('a route that the waypoint cannot apply is NACKed with its reason; the last good config serves', async () => {
    const w = waypoints[0]!;
    const good = parseObject(objectsA().find((o) => o.object.kind === 'HTTPRoute')!).object!.value as HTTPRoute;
    // As a newer (or broken) agent would send it: a regular expression this waypoint's RE2 refuses.
    const bad: HTTPRoute = {
      ...good, meta: { ...good.meta, name: 'bad', key: 'team-a/bad', file: 'bad.yaml', index: 0 },
      rules: [{ ...good.rules[0]!, matches: [{ ...good.rules[0]!.matches[0]!, path: { type: 'RegularExpression', value: '(unclosed' } }] }],
    };
    const badSrc: SourcedObject = { object: stubOf('HTTPRoute', 'bad', 'team-a', bad), file: 'bad.yaml', index: 0 };
    const nacks = server.status().nacks;
    const generation = w.configGeneration;
    server.update([badSrc], []);
    await until(() => server.status().nacks > nacks, 5000, 'NACK');
    const st = server.status();
    const wp = st.waypoints.find((x) => x.namespace === 'team-a')!;
    expect(wp.lastNack?.reason).toMatch(/KW_WAYPOINT_CONFIG/);
    expect(wp.lastNack?.reason).toMatch(/unclosed|missing/i);
    expect(st.recentNacks.at(-1)).toMatchObject({ namespace: 'team-a', version: server.index.version });
    expect(w.configGeneration).toBe(generation);
    expect((await get(base, '/hello')).status).toBe(200);
    // `kernway status` shows it.
    const shown = renderStatus({ state: 'running', nodeName: 'n', cgroup: '/c', bpffs: '/b', generation: 1, frontends: 0, problems: [], reusedMaps: false, feed: server.status() } as StatusReport);
    expect(shown).toMatch(/recent NACKs/);
    expect(shown).toMatch(/team-a\s+wp-team-a\s+\d+\s+KW_WAYPOINT_CONFIG/);
    // The fix arrives: applied and ACKed.
    server.update([], [badSrc]);
    await until(() => server.status().waypoints.find((x) => x.namespace === 'team-a')!.ackedVersion === server.index.version, 5000, 'ACK after fix');
    expect((await get(base, '/hello')).status).toBe(200);
  });

  it('an object the waypoint cannot decode is NACKed with KW_FEED_DECODE', async () => {
    const nacks = server.status().nacks;
    // A Pod whose slim form lacks podIPs (what a newer agent's different shape would look like).
    const pod = stubOf('Pod', 'odd', 'team-a', { namespace: 'team-a', name: 'odd', key: 'team-a/odd', labels: {}, annotations: {}, serviceAccountName: 'default', hostNetwork: false, origin: { file: 'odd.yaml', index: 0 } } as never);
    const src = { object: pod, file: 'odd.yaml', index: 0 };
    server.update([src], []);
    await until(() => server.status().nacks > nacks, 5000, 'NACK');
    expect(server.status().recentNacks.at(-1)!.reason).toMatch(/KW_FEED_DECODE.*podIPs/);
    server.update([], [src]);
    await until(() => server.status().waypoints.find((x) => x.namespace === 'team-a')!.ackedVersion === server.index.version, 5000, 'ACK');
  });

  it('a backend in another namespace comes with the ReferenceGrant that allows it', async () => {
    const cross = objectsFrom(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-b, namespace: team-a}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /b}}]
    backendRefs: [{name: echo, namespace: team-b, port: 80}]
`, 'cross.yaml');
    const grant = objectsFrom(`
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-a, namespace: team-b}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: team-a}]
  to: [{group: '', kind: Service}]
`, 'grant.yaml');
    const w = waypoints[0]!;
    server.update(cross, []);
    await until(() => w.table.routes.some((r) => r.name === 'to-b'), 5000, 'route to-b');
    expect((await get(base, '/b')).status).toBe(500);
    expect([...server.index.slice('team-a')].some((k) => k.startsWith('Service team-b/echo'))).toBe(false);
    server.update(grant, []);
    await until(async () => (await get(base, '/b')).status === 200, 5000, 'cross-namespace backend');
    expect([...server.index.slice('team-a')].some((k) => k.startsWith('Service team-b/echo'))).toBe(true);
    server.update([], grant);
    await until(async () => (await get(base, '/b')).status === 500, 5000, 'grant withdrawn');
    expect([...server.index.slice('team-a')].some((k) => k.startsWith('Service team-b/echo'))).toBe(false);
    server.update([], cross);
  });

  it('a waypoint that does not read costs the agent a set of keys, not a queue of updates', async () => {
    const { Client } = feedService();
    const client = new Client(`unix://${join(dir, 'feed.sock')}`, grpc.credentials.createInsecure());
    const call = (client as unknown as { Stream(): grpc.ClientDuplexStream<unknown, FeedUpdate> }).Stream();
    const got: FeedUpdate[] = [];
    call.on('data', (u: FeedUpdate) => got.push(u));
    call.on('error', () => undefined);
    call.write({ hello: { namespace: 'team-b', name: 'slow' } });
    await until(() => got.length === 1, 5000, 'snapshot');
    call.pause();
    // 3,000 changes of one namespace's objects (each a new 2 KiB annotation on 30 Services).
    const svcs = (i: number): SourcedObject[] => Array.from({ length: 30 }, (_, j) => objectsFrom(`
apiVersion: v1
kind: Service
metadata: {name: s${j}, namespace: team-b, annotations: {note: "${String(i).padStart(2048, 'x')}"}}
spec: {clusterIP: 10.96.60.${j + 1}, ports: [{port: 80}]}
`, `svc-${j}.yaml`)[0]!);
    let prev: SourcedObject[] = [];
    for (let i = 0; i < 100; i++) {
      const next = svcs(i);
      server.update(next, prev);
      prev = next;
    }
    const slow = server.status().waypoints.find((x) => x.name === 'slow')!;
    // Pending is bounded by the slice (at most one key per object), whatever the number of updates.
    expect(slow.pendingKeys).toBeLessThanOrEqual([...server.index.slice('team-b')].length);
    call.resume();
    await until(() => got.some((u) => u.upserted.some((r) => r.key.startsWith('Service team-b/s29') && r.object.toString().includes('99'))), 10_000, 'the latest state');
    // Far fewer messages than changes: coalesced.
    expect(got.length).toBeLessThan(20);
    call.cancel();
    client.close();
    server.update([], prev);
  });
});
