/**
 * A real `kernway agent --feed-address unix:///…` and real `kernway waypoint --agent …`
 * processes over a real Unix socket: the configuration arrives, changes arrive, the agent
 * is killed and restarted in the middle of traffic without a failed request, /readyz is
 * not ready before the first configuration, and a waypoint pod of namespace A cannot
 * obtain namespace B's slice (SO_PEERCRED → its cgroup → its Pod in the model).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from '../../lab/index.js';
import { createCgroup, removeCgroupTree } from '../../lab/cgroup.js';
import type { StatusReport } from '../../cli/status.js';
import { KERNWAY_MAIN, freePort, runKernway, startAgentProcess, type AgentProcess } from '../fixtures/cli.js';
import { EchoServer } from '../waypoint/fixtures/echo.js';
import { until } from './helpers.js';

let lab: Lab;
let root: string;
let manifests: string;
let agent: AgentProcess | undefined;
let echo: EchoServer;
let podCgroupRoot: string;
const children: ChildProcess[] = [];
const podUid = randomUUID();
let gwPort: number;
/**
 * The agent refuses loopback endpoints: the echo backend listens on this machine's own
 * non-loopback address (connections to it stay on the machine, through lo).
 */
const hostAddress = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)!.address;

function agentArgs(): string[] {
  return ['--standalone', manifests, '--node-name', 'node-a', '--cgroup', lab.cgroupPath, '--bpffs', join(lab.bpffsDir, 'agent'), '--feed-address', `unix://${join(root, 'feed.sock')}`];
}

function writeNamespace(ns: string, path: string, gatewayPort: number, vip: string): void {
  writeFileSync(join(manifests, `${ns}.yaml`), [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: ns }, spec: { gatewayClassName: 'kernway', listeners: [{ name: 'http', port: gatewayPort, protocol: 'HTTP' }] } },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'route', namespace: ns }, spec: { parentRefs: [{ name: 'gw' }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: path } }], backendRefs: [{ name: 'echo', port: 80 }] }] } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: ns }, spec: { clusterIP: vip, ports: [{ port: 80, targetPort: echo.port }] } },
    { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'echo-1', namespace: ns, labels: { 'kubernetes.io/service-name': 'echo' } }, addressType: 'IPv4', ports: [{ port: echo.port, protocol: 'TCP' }], endpoints: [{ addresses: [hostAddress], conditions: { ready: true } }] },
  ].map((o) => stringify(o)).join('---\n'));
}

interface WaypointProcess { child: ChildProcess; admin: string; stderr: () => string }

/** `kernway waypoint --agent`; `cgroup`: the process moves itself there before it starts (a pod's container). */
async function startWaypoint(ns: string, opts: { cgroup?: string; agent?: string; gatewayListen?: string } = {}): Promise<WaypointProcess> {
  const adminPort = await freePort();
  const args = [KERNWAY_MAIN, 'waypoint', '--namespace', ns, '--agent', opts.agent ?? `unix://${join(root, 'feed.sock')}`, '--listen-address', opts.gatewayListen ?? '127.0.0.1',
    '--mesh-port', '0', '--metrics-address', `127.0.0.1:${adminPort}`, '--access-log', 'off'];
  const child = opts.cgroup
    ? spawn('/bin/sh', ['-c', `echo $$ > ${opts.cgroup}/cgroup.procs && exec "$0" "$@"`, process.execPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
  return { child, admin: `http://127.0.0.1:${adminPort}`, stderr: () => err };
}

async function readyz(w: WaypointProcess): Promise<{ status: number; body: string }> {
  try {
    const r = await fetch(`${w.admin}/readyz`);
    return { status: r.status, body: await r.text() };
  } catch {
    return { status: 0, body: '' };
  }
}

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode!)); }).on('error', reject);
  });
}

async function status(): Promise<StatusReport> {
  const r = await runKernway(['status', '--json', '--admin-socket', join(root, 'admin.sock')]);
  return JSON.parse(r.stdout) as StatusReport;
}

async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  c.kill('SIGKILL');
  await new Promise((r) => c.once('exit', r));
}

beforeAll(async () => {
  lab = await Lab.create({ tag: 'feed' });
  root = mkdtempSync(join(tmpdir(), 'kw-agent-feed-'));
  manifests = join(root, 'manifests');
  mkdirSync(manifests);
  echo = await EchoServer.start({ address: hostAddress, port: 0, pod: 'echo', namespace: 'team-a' });
  gwPort = await freePort();
  writeFileSync(join(manifests, 'class.yaml'), stringify({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'kernway' }, spec: { controllerName: 'kernway.io/gateway-controller' } }));
  writeNamespace('team-a', '/', gwPort, '10.96.70.1');
  writeNamespace('team-b', '/', await freePort(), '10.96.70.2');
  // The waypoint pod of team-a, as the model knows it (uid = its cgroup's pod uid).
  writeFileSync(join(manifests, 'pods.yaml'), stringify({
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'waypoint-a', namespace: 'team-a', uid: podUid, labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } },
    spec: { serviceAccountName: 'waypoint', containers: [{ name: 'waypoint', image: 'kernway' }] }, status: { phase: 'Running', podIP: '10.244.0.9' },
  }));
  podCgroupRoot = join(lab.cgroupPath, '..', `kernway-feedpods-${process.pid}`);
  createCgroup(podCgroupRoot);
  createCgroup(join(podCgroupRoot, `pod${podUid}`));
  createCgroup(join(podCgroupRoot, `pod${podUid}`, 'waypoint'));
  agent = await startAgentProcess(agentArgs(), join(root, 'admin.sock'), 45_000);
}, 90_000);

afterAll(async () => {
  for (const c of children) await stop(c);
  if (agent) await stop(agent.child);
  if (podCgroupRoot && existsSync(podCgroupRoot)) await removeCgroupTree(podCgroupRoot);
  await runKernway(['uninstall', '--cgroup', lab.cgroupPath, '--bpffs', join(lab.bpffsDir, 'agent')]);
  await lab?.destroy();
  await echo?.close();
  if (root) rmSync(root, { recursive: true, force: true });
}, 60_000);

describe('kernway waypoint --agent with a real agent', () => {
  let wp: WaypointProcess;

  it('a waypoint whose agent is not there is not ready, and its config age grows', async () => {
    const lonely = await startWaypoint('team-a', { agent: `unix://${join(root, 'nobody.sock')}`, gatewayListen: '127.0.0.2' });
    await until(async () => (await readyz(lonely)).status === 503, 15_000, 'readyz 503');
    expect((await readyz(lonely)).body).toContain('no configuration yet');
    const metrics = await (await fetch(`${lonely.admin}/metrics`)).text();
    expect(Number(/^kernway_waypoint_config_age_seconds (\S+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    await stop(lonely.child);
  }, 30_000);

  it('receives its configuration from the agent and serves it', async () => {
    wp = await startWaypoint('team-a');
    await until(async () => (await readyz(wp)).status === 200, 20_000, 'waypoint ready');
    expect(await get(gwPort, '/x')).toBe(200);
    const st = await status();
    expect(st.feed?.waypoints).toEqual([expect.objectContaining({ namespace: 'team-a', peer: expect.stringContaining('host process') })]);
    const table = await runKernway(['status', '--admin-socket', join(root, 'admin.sock')]);
    expect(table.stdout).toMatch(/waypoint feed on unix:\/\/.*1 waypoint\(s\) connected, 0 NACK/);
    const metrics = await (await fetch(`${wp.admin}/metrics`)).text();
    expect(/^kernway_waypoint_config_age_seconds (\S+)/m.exec(metrics)?.[1]).toBe('0');
  }, 40_000);

  it('a change of the manifests reaches the waypoint', async () => {
    writeNamespace('team-a', '/v2', gwPort, '10.96.70.1');
    await until(async () => (await get(gwPort, '/x')) === 404, 10_000, 'old path gone');
    expect(await get(gwPort, '/v2/x')).toBe(200);
    writeNamespace('team-a', '/', gwPort, '10.96.70.1');
    await until(async () => (await get(gwPort, '/x')) === 200, 10_000, 'path back');
  }, 30_000);

  it('the agent killed and restarted in the middle of traffic: no request fails, the waypoint resumes from a fresh snapshot', async () => {
    let sent = 0, failed = 0, running = true;
    const errors: string[] = [];
    const loop = (async () => {
      while (running) {
        sent++;
        try {
          const s = await get(gwPort, '/x');
          if (s !== 200) { failed++; errors.push(String(s)); }
        } catch (e) { failed++; errors.push((e as Error).message); }
      }
    })();
    await until(() => sent > 20, 5000, 'traffic');
    agent!.child.kill('SIGKILL');
    await agent!.exited;
    const during = sent;
    await until(() => sent > during + 50, 10_000, 'traffic while the agent is down');
    const metrics = await (await fetch(`${wp.admin}/metrics`)).text();
    expect(Number(/^kernway_waypoint_config_age_seconds (\S+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    agent = await startAgentProcess(agentArgs(), join(root, 'admin.sock'), 45_000);
    await until(async () => (await status()).feed?.waypoints.some((w) => w.namespace === 'team-a' && w.ackedVersion > 0) === true, 30_000, 'waypoint back on the restarted agent');
    const after = sent;
    await until(() => sent > after + 20, 5000, 'traffic after');
    running = false;
    await loop;
    expect({ failed, errors: errors.slice(0, 3) }).toEqual({ failed: 0, errors: [] });
    expect(sent).toBeGreaterThan(100);
    expect(wp.stderr()).toMatch(/stream to the agent ended/);
    // A change after the restart arrives too.
    writeNamespace('team-a', '/v3', gwPort, '10.96.70.1');
    await until(async () => (await get(gwPort, '/v3/x')) === 200, 10_000, 'change after restart');
    writeNamespace('team-a', '/', gwPort, '10.96.70.1');
  }, 150_000);

  it("a waypoint pod of namespace A cannot obtain namespace B's slice; it gets its own", async () => {
    const denied0 = (await status()).feed!.denied;
    const sneaky = await startWaypoint('team-b', { cgroup: join(podCgroupRoot, `pod${podUid}`, 'waypoint'), gatewayListen: '127.0.0.3' });
    await until(async () => (await status()).feed!.denied > denied0, 15_000, 'refusal');
    // The agent counts the refusal before the waypoint has read it and logged it.
    await until(() => /PERMISSION_DENIED/.test(sneaky.stderr()), 15_000, 'the refusal in the waypoint\'s log');
    expect(sneaky.stderr()).toMatch(/pod team-a\/waypoint-a; it may not read namespace team-b/);
    expect((await readyz(sneaky)).status).toBe(503);
    expect((await status()).feed!.waypoints.some((w) => w.namespace === 'team-b')).toBe(false);
    await stop(sneaky.child);
    const own = await startWaypoint('team-a', { cgroup: join(podCgroupRoot, `pod${podUid}`, 'waypoint'), gatewayListen: '127.0.0.3' });
    await until(async () => (await readyz(own)).status === 200, 20_000, 'own namespace served');
    expect((await status()).feed!.waypoints.find((w) => w.peer.includes('pod team-a/waypoint-a'))).toBeDefined();
    await stop(own.child);
  }, 60_000);
});
