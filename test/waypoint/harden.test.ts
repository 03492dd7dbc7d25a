/**
 * Issue 19 cases 6, 7, 10, 12 and 13 for the waypoint, on real sockets: regular
 * expressions matched in linear time (RE2), long route timeouts clamped to what a timer
 * holds, a listener that could not bind reported as such, options refused with their
 * name, and the admin/debug server on loopback by default.
 */
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseManifests, gatewayRoute, request, startRig, type Rig, type RigAddresses } from './fixtures/rig.js';
import { parseWaypointArgs, withLogger } from '../../waypoint/options.js';
import { createLogger } from '../../common/log.js';
import { fullRegex } from '../../waypoint/routing/match.js';
import { regexProblem } from '../../k8s/gateway-api.js';
import { gatewayManifests } from '../../bench/waypoint/manifests.js';

const OCTET = 93;
let rig: Rig;
let blocker: net.Server | undefined;

function manifests(a: RigAddresses, extra = ''): string {
  return baseManifests(a) + gatewayRoute('main', `  - matches: [{path: {type: RegularExpression, value: "/x(a+)+b"}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: RegularExpression, value: "/v[0-9]+/.*"}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /long}}]
    timeouts: {request: 600h, backendRequest: 599h}
    backendRefs: [{name: web, port: 80}]`) + extra;
}

beforeAll(async () => {
  rig = await startRig({ octet: OCTET, backends: { web: 1 }, manifests: (a) => manifests(a) });
}, 30_000);
afterAll(async () => {
  await rig?.close();
  await new Promise<void>((r) => (blocker ? blocker.close(() => r()) : r()));
});

describe('regular expressions: RE2, linear time (case 6)', () => {
  it('the ReDoS pattern and a 33-character path answer at once; /healthz is never blocked', async () => {
    const t0 = Date.now();
    const r = await request({ address: rig.a.gateway, port: 8080, path: `/x${'a'.repeat(33)}`, timeoutMs: 5000 });
    expect(r.status).toBe(404);
    const health = await fetch(`http://${rig.a.gateway}:${rig.waypoint.adminPort}/healthz`, { signal: AbortSignal.timeout(2000) });
    expect(health.status).toBe(200);
    // V8's backtracking took 18 s here; RE2 is linear (bound generous for a loaded machine).
    expect(Date.now() - t0).toBeLessThan(3000);
    expect((await request({ address: rig.a.gateway, port: 8080, path: '/xaaab' })).status).toBe(200);
    expect((await request({ address: rig.a.gateway, port: 8080, path: '/v12/anything' })).status).toBe(200);
  });

  it('RE2 syntax: full match; backreferences and lookaround refused at validation', () => {
    expect(fullRegex('/a|/b').test('/b')).toBe(true);
    expect(fullRegex('/a').test('/ab')).toBe(false);
    expect(regexProblem('(a)\\1')).toMatch(/backreference/);
    expect(regexProblem('(?=a)')).toMatch(/lookaround/);
    expect(regexProblem('a{2,1}')).toMatch(/RE2 syntax/);
  });
});

describe('durations (case 7)', () => {
  it('timeouts.request: 600h does not fire at once (clamped to what a timer holds)', async () => {
    const r = await request({ address: rig.a.gateway, port: 8080, path: '/long' });
    expect(r.status).toBe(200);
    const rule = rig.waypoint.table.routes.length; // the route is in force
    expect(rule).toBeGreaterThan(0);
  });

  it('option durations beyond a timer or the request timeout are refused, naming the option', () => {
    const base = ['--namespace', 'ns', '--manifests', '/tmp'];
    expect(() => parseWaypointArgs([...base, '--header-timeout', '301s'])).toThrow(/--header-timeout: expected a duration of at most 5m/);
    expect(() => parseWaypointArgs([...base, '--drain-timeout', '99999h'])).toThrow(/--drain-timeout: expected a duration of at most/);
  });
});

describe('status says what is true (case 10)', () => {
  it('a listener whose port is taken is Accepted=False PortUnavailable, Programmed=False', async () => {
    blocker = net.createServer();
    await new Promise<void>((r) => blocker!.listen(8081, rig.a.gateway, () => r()));
    await rig.update(manifests(rig.a, `\n---\n${gatewayManifests('gw2', 'ns', 8081).split('---\n')[1]!}`));
    const report = rig.waypoint.status();
    const l = report.gateways.find((g) => g.name === 'gw2')!.listeners[0]!;
    expect(l.conditions.find((c) => c.type === 'Programmed')).toMatchObject({ status: 'False', reason: 'Invalid', message: expect.stringMatching(/EADDRINUSE/) });
    expect(l.conditions.find((c) => c.type === 'Accepted')).toMatchObject({ status: 'False', reason: 'PortUnavailable' });
    // The other Gateway's listener is served, and says so.
    const ok = report.gateways.find((g) => g.name === 'gw')!.listeners[0]!;
    expect(ok.conditions.find((c) => c.type === 'Programmed')).toMatchObject({ status: 'True', message: expect.stringMatching(/listening on/) });
  });
});

describe('options (cases 12, 13)', () => {
  const base = ['--namespace', 'ns', '--manifests', '/tmp'];
  it('the admin/debug server listens on loopback unless asked', () => {
    expect(parseWaypointArgs(base).waypoint.metricsAddress).toEqual({ host: '127.0.0.1', port: 15020 });
    expect(parseWaypointArgs([...base, '--metrics-address', '0.0.0.0:15020']).waypoint.metricsAddress).toEqual({ host: '0.0.0.0', port: 15020 });
  });

  it('bad addresses, repeated options and a folder as access log are refused with the option named', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kw-harden-'));
    try {
      for (const [args, re] of [
        [['--metrics-address', 'foo:80'], /--metrics-address/],
        [['--metrics-address', '[::1:80'], /--metrics-address/],
        [['--metrics-address', '[10.0.0.1]:80'], /--metrics-address/],
        [['--listen-address', 'notanip'], /--listen-address/],
        [['--namespace', 'other'], /more than once/],
        [['--access-log', dir], /--access-log: expected a file path \(this is a directory\)/],
        [['--access-log', '/proc/kernway.log'], /--access-log: .*proc/],
      ] as const) {
        expect(() => parseWaypointArgs([...base, ...args]), args.join(' ')).toThrow(re);
      }
      expect(parseWaypointArgs([...base, '--metrics-address', '[::1]:0']).waypoint.metricsAddress).toEqual({ host: '::1', port: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a metrics port in use is a coded error, not a raw one', async () => {
    const { Waypoint } = await import('../../waypoint/waypoint.js');
    const { ManifestDirSource } = await import('../../waypoint/config/source.js');
    const opts = parseWaypointArgs(['--namespace', 'ns', '--manifests', rig.dir, '--listen-address', rig.a.gateway, '--mesh-port', '0',
      '--metrics-address', `${rig.a.gateway}:${rig.waypoint.adminPort}`, '--access-log', 'off']);
    const log = createLogger('test', 'silent');
    await expect(Waypoint.start(withLogger(opts, log), new ManifestDirSource(join(rig.dir, 'manifests'), { log }))).rejects.toMatchObject({ code: 'KW_METRICS_LISTEN' });
  });
});
