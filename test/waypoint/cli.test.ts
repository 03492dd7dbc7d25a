/**
 * The commands: `kernway waypoint` as a real process (started, serving, draining on
 * SIGTERM), `kernway routes` from a running waypoint and from manifests, and option
 * errors that name the option.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../cli/main.js';
import { gatewayManifests } from '../../bench/waypoint/manifests.js';
import { parseWaypointArgs } from '../../waypoint/options.js';
import { joinNegativeValues } from '../../common/args.js';
import { KERNWAY_MAIN } from '../fixtures/cli.js';
import { EchoServer } from './fixtures/echo.js';
import { request, rigAddresses } from './fixtures/rig.js';

const a = rigAddresses(92, { web: 1 });
const ADMIN_PORT = 20000 + (process.pid % 10000);

function manifests(): string {
  return `${gatewayManifests('gw', 'ns', 18080)}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec: {clusterIP: 10.96.7.1, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: ns, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [${a.pods.web![0]}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: good, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{path: {value: /b}}], backendRefs: [{name: missing, port: 80}]}]
`;
}

async function capture(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...x: unknown[]) => { out.push(x.join(' ')); });
  const error = vi.spyOn(console, 'error').mockImplementation((...x: unknown[]) => { err.push(x.join(' ')); });
  try {
    const code = await main(argv);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

let dir: string;
let echo: EchoServer;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kw-waypoint-cli-'));
  writeFileSync(join(dir, 'all.yaml'), manifests());
  echo = await EchoServer.start({ address: a.pods.web![0]!, port: 8080, pod: 'web-abc-def', namespace: 'ns' });
});
afterAll(async () => {
  await echo?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('kernway waypoint (a process)', () => {
  let child: ChildProcess | undefined;
  afterAll(() => { if (child && child.exitCode === null) child.kill('SIGKILL'); });

  it('starts, serves, reports through kernway routes, and drains on SIGTERM (its buffered access log written)', async () => {
    const accessLog = join(dir, 'access.log');
    child = spawn(process.execPath, [KERNWAY_MAIN, 'waypoint', '--namespace', 'ns', '--manifests', dir,
      '--listen-address', a.gateway, '--mesh-port', '0', '--metrics-address', `${a.gateway}:${ADMIN_PORT}`, '--access-log', accessLog],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KERNWAY_LOG_LEVEL: 'info' } });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));

    const deadline = Date.now() + 30_000;
    for (;;) {
      const ok = await request({ address: a.gateway, port: ADMIN_PORT, path: '/readyz', timeoutMs: 1000 }).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`waypoint did not become ready: ${stderr}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const r = await request({ address: a.gateway, port: 18080, path: '/hello' });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ path: '/hello', pod: 'web-abc-def' });
    expect((await request({ address: a.gateway, port: 18080, path: '/b' })).status).toBe(500);

    const routes = await capture(['routes', '--admin', `${a.gateway}:${ADMIN_PORT}`]);
    expect(routes.code).toBe(0);
    expect(routes.out).toContain('HTTPRoute ns/good');
    expect(routes.out).toMatch(/HTTPRoute ns\/broken[\s\S]*ResolvedRefs=False {2}BackendNotFound: Service ns\/missing not found/);

    // Requests just before SIGTERM: their lines are still in the 64 KiB buffer.
    for (let i = 0; i < 20; i++) expect((await request({ address: a.gateway, port: 18080, path: `/last/${i}` })).status).toBe(200);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toContain('draining');
    const paths = readFileSync(accessLog, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { path: string }).path);
    expect(paths).toEqual(['/hello', '/b', ...Array.from({ length: 20 }, (_, i) => `/last/${i}`)]);
  }, 60_000);
});

describe('kernway routes', () => {
  it('computes the report from manifests (--json)', async () => {
    const r = await capture(['routes', '--manifests', dir, '--namespace', 'ns', '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as { routes: { name: string; parents: { conditions: { type: string; status: string; reason: string }[] }[] }[]; gateways: { listeners: { attachedRoutes: number }[] }[] };
    const broken = report.routes.find((x) => x.name === 'broken')!;
    expect(broken.parents[0]!.conditions).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'ResolvedRefs', status: 'False', reason: 'BackendNotFound' })]));
    expect(report.gateways[0]!.listeners[0]!.attachedRoutes).toBe(2);
  });
  it('says clearly when no waypoint answers', async () => {
    const r = await capture(['routes', '--admin', `${a.outside}:9`]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/no waypoint listening on .*:9/);
  });
  it('refuses contradictory options', async () => {
    expect((await capture(['routes', '--namespace', 'ns'])).code).toBe(2);
    expect((await capture(['routes', '--manifests', dir])).err).toMatch(/--namespace/);
  });
});

describe('kernway waypoint options', () => {
  it('name the option in errors', () => {
    expect(() => parseWaypointArgs(['--manifests', 'd'])).toThrow(/--namespace/);
    expect(() => parseWaypointArgs(['--namespace', 'Bad_NS', '--manifests', 'd'])).toThrow(/--namespace/);
    expect(() => parseWaypointArgs(['--namespace', 'ns'])).toThrow(/--manifests/);
    expect(() => parseWaypointArgs(['--namespace', 'ns', '--manifests', 'd', '--mesh-port', '70000'])).toThrow(/--mesh-port/);
    expect(() => parseWaypointArgs(['--namespace', 'ns', '--manifests', 'd', '--listen-address', 'localhost'])).toThrow(/--listen-address/);
    expect(() => parseWaypointArgs(['--namespace', 'ns', '--manifests', 'd', '--metrics-address', 'nope'])).toThrow(/--metrics-address/);
    expect(() => parseWaypointArgs(['--namespace', 'ns', '--manifests', 'd', '--header-timeout', '10'])).toThrow(/--header-timeout/);
    expect(() => parseWaypointArgs(['--namespace', 'ns', '--manifests', 'd', '--bogus'])).toThrow(/bogus/);
    // a negative number reaches the option's validator (not parseArgs' truncated "ambiguous")
    expect(() => parseWaypointArgs(['--namespace', 'ns', '--manifests', 'd', '--mesh-port', '-1'])).toThrow('--mesh-port: expected a port from 0 to 65535, got "-1"');
    expect(() => parseWaypointArgs(['--namespace', 'ns', '--manifests', 'd', '--drain-timeout', '-5s'])).toThrow(/--drain-timeout: .*got "-5s"/);
  });
  it('joinNegativeValues joins only a negative number after a string option', () => {
    const opts = { n: { type: 'string' }, b: { type: 'boolean' } } as const;
    expect(joinNegativeValues(['--n', '-3', '--b', '-1'], opts)).toEqual(['--n=-3', '--b', '-1']);
    expect(joinNegativeValues(['--n', '-x', '--', '--n', '-3'], opts)).toEqual(['--n', '-x', '--', '--n', '-3']);
    expect(joinNegativeValues(['--n=-3'], opts)).toEqual(['--n=-3']);
  });
  it('exit 2 with the usage for bad options, 1 when the manifest directory is missing', async () => {
    const bad = await capture(['waypoint', '--namespace', 'ns']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--manifests[\s\S]*usage: kernway waypoint/);
    const missing = await capture(['waypoint', '--namespace', 'ns', '--manifests', join(dir, 'nope'), '--listen-address', a.gateway, '--mesh-port', '0', '--metrics-address', 'off', '--access-log', 'off']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/nope/);
  });
});
