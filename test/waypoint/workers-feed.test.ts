/**
 * `kernway waypoint --agent … --workers 2` (a real process) against the agent's feed
 * server (in this process, a real Unix socket): the agent sees one waypoint (the
 * primary's one connection), a change reaches both workers before it is ACKed, and a
 * change a worker refuses is NACKed with its reason while the last good configuration
 * keeps serving on every worker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FeedServer } from '../../agent/feed/server.js';
import { createLogger } from '../../common/log.js';
import type { HTTPRoute } from '../../k8s/gateway-api-types.js';
import { parseObject, stubOf } from '../../k8s/kinds.js';
import type { SourcedObject } from '../../k8s/types.js';
import { parseFeedAddress } from '../../sources/feed/protocol.js';
import { GATEWAY_CLASS, get, nsObjects, until } from '../feed/helpers.js';
import { KERNWAY_MAIN, freePort } from '../fixtures/cli.js';
import { EchoServer } from './fixtures/echo.js';

const log = createLogger('workers-feed-test', process.env.KERNWAY_LOG_LEVEL ?? 'silent');
let dir: string;
let server: FeedServer;
let echo: EchoServer;
let child: ChildProcess | undefined;
let stderr = '';
let admin: number;
let gw: number;
const objects = (path = '/'): SourcedObject[] => nsObjects('team-a', { echoIp: '127.0.0.1', echoPort: echo.port, vip: '10.96.51.1', gatewayPort: gw, path });

interface WorkersReport { configuration: number; workers: { pid?: number; appliedConfiguration: number; requests?: number }[] }
const workers = async (): Promise<WorkersReport> => JSON.parse((await get(admin, '/debug/workers')).body) as WorkersReport;
const acked = (): number | undefined => server.status().waypoints.find((w) => w.namespace === 'team-a')?.ackedVersion;

/** n requests on n connections: their statuses. */
async function burst(n: number, path: string): Promise<number[]> {
  return Promise.all(Array.from({ length: n }, () => get(gw, path).then((r) => r.status)));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kw-workers-feed-'));
  echo = await EchoServer.start({ address: '127.0.0.1', port: 0, pod: 'echo-a', namespace: 'team-a' });
  gw = await freePort();
  admin = await freePort();
  server = new FeedServer({ addresses: [parseFeedAddress('--feed-address', `unix://${join(dir, 'feed.sock')}`)], log, agentId: 'test' });
  server.update([...GATEWAY_CLASS, ...objects()], []);
  await server.start();
});

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await server?.close();
  await echo?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('--workers 2 over the agent feed', () => {
  it('one feed connection for the pod; both workers serve the configuration', async () => {
    child = spawn(process.execPath, [KERNWAY_MAIN, 'waypoint', '--namespace', 'team-a', '--agent', `unix://${join(dir, 'feed.sock')}`, '--workers', '2',
      '--listen-address', '127.0.0.1', '--mesh-port', '0', '--metrics-address', `127.0.0.1:${admin}`, '--access-log', 'off'],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, KERNWAY_LOG_LEVEL: 'info', POD_NAME: 'wp-a' } });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    await until(async () => (await get(admin, '/readyz').catch(() => ({ status: 0 }))).status === 200, 30_000, `ready: ${stderr}`);
    expect(server.status().waypoints).toEqual([expect.objectContaining({ namespace: 'team-a', name: 'wp-a' })]);
    await until(() => acked() === server.index.version, 5000, 'ACK');
    expect((await burst(40, '/hello')).every((s) => s === 200)).toBe(true);
    const w = await workers();
    expect(w.workers.every((x) => (x.requests ?? 0) > 0)).toBe(true);
  }, 60_000);

  it('a change is ACKed once both workers applied it; every connection then routes by it', async () => {
    const oldRoute = objects().find((o) => o.object.kind === 'HTTPRoute')!;
    const newRoute = objects('/v2').find((o) => o.object.kind === 'HTTPRoute')!;
    server.update([newRoute], [oldRoute]);
    const version = server.index.version;
    await until(() => acked() === version, 10_000, 'ACK of the change');
    // ACKed means applied by both workers: no connection may still see the old route.
    expect((await burst(30, '/v2/x')).every((s) => s === 200)).toBe(true);
    expect((await burst(30, '/hello')).every((s) => s === 404)).toBe(true);
    const w = await workers();
    expect(w.workers.every((x) => x.appliedConfiguration === w.configuration)).toBe(true);
  }, 30_000);

  it("a change the workers refuse is NACKed with a worker's reason; the last good configuration serves on both", async () => {
    const good = parseObject(objects('/v2').find((o) => o.object.kind === 'HTTPRoute')!).object!.value as HTTPRoute;
    const bad: HTTPRoute = {
      ...good, meta: { ...good.meta, name: 'bad', key: 'team-a/bad', file: 'bad.yaml', index: 0 },
      rules: [{ ...good.rules[0]!, matches: [{ ...good.rules[0]!.matches[0]!, path: { type: 'RegularExpression', value: '(unclosed' } }] }],
    };
    const badSrc: SourcedObject = { object: stubOf('HTTPRoute', 'bad', 'team-a', bad), file: 'bad.yaml', index: 0 };
    const nacks = server.status().nacks;
    server.update([badSrc], []);
    await until(() => server.status().nacks > nacks, 10_000, 'NACK');
    const wp = server.status().waypoints.find((x) => x.namespace === 'team-a')!;
    expect(wp.lastNack?.reason).toMatch(/^worker [01]: KW_WAYPOINT_CONFIG/);
    expect(server.status().nacks).toBe(nacks + 1);
    expect((await burst(30, '/v2/x')).every((s) => s === 200)).toBe(true);
    server.update([], [badSrc]);
    const version = server.index.version;
    await until(() => acked() === version, 10_000, 'ACK after the fix');
  }, 30_000);
});
