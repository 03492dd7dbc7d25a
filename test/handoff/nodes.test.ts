/**
 * The hand-off across nodes (issue 13): three lab nodes (each its own node namespace,
 * cgroup and bpffs folder, joined by links with routes to each other's pod addresses),
 * one real `kernway agent` per node on the same standalone manifests (each with its own
 * --node-name), the client on node 0, `kernway waypoint` on node 1, the backends on node 2.
 * Plain curl in the client pod dials the ClusterIP; node 0's kernel hands the connection
 * to the waypoint pod on node 1 (plain pod-IP TCP) with the PROXY header; the waypoint
 * routes to the backends on node 2.
 */
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, type Pod } from '../../lab/index.js';
import { adminRequest } from '../../agent/admin/client.js';
import { writeManifest } from '../../agent/demo/manifests.js';
import { PLAIN_WEB_VIP, WAYPOINT_METRICS, WEB_VIP, answeredBy, curlMany, handoffObjects, waypointArgs, type HandoffPods } from '../../agent/demo/handoff.js';
import type { WaypointFrontend, WpStats } from '../../agent/datapath/waypoint-sync.js';
import { KERNWAY_MAIN, startAgentProcess, type AgentProcess } from '../fixtures/cli.js';
import { HTTP_ECHO } from '../../bench/handoff/rig.js';

const labs: Lab[] = [];
const agents: AgentProcess[] = [];
const procs: ChildProcess[] = [];
let dir = '';
let pods: HandoffPods;
let waypointOut = '';

const nodeOf = (p: Pod): string => `node-${labs.find((l) => l.pods.get(p.name) === p)!.node}`;
const labOf = (p: Pod): Lab => labs.find((l) => l.pods.get(p.name) === p)!;

interface Status { waypoints?: { frontends: WaypointFrontend[]; stats: WpStats } }
const status = (i: number): Promise<Status> => adminRequest<Status>(agents[i]!.socket, '/v1/status', { timeoutMs: 10_000 });

async function until(what: string, f: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try { if (await f()) return; } catch { /* not yet */ }
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms\n${waypointOut.slice(-2000)}\n${agents.map((a) => a.stderr().slice(-1000)).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function curl(p: Pod, args: string[]): Promise<{ code: number; out: string; err: string; ms: number }> {
  const t0 = Date.now();
  const r = await labOf(p).exec(p, 'curl', ['-s', '--max-time', '5', ...args], { timeoutMs: 30_000 });
  return { code: r.code, out: r.stdout, err: r.stderr, ms: Date.now() - t0 };
}

const wpFrontend = async (i: number): Promise<WaypointFrontend | undefined> => (await status(i)).waypoints?.frontends.find((f) => f.frontend === `${WEB_VIP}:80`);

beforeAll(async () => {
  for (const node of [0, 1, 2]) labs.push(await Lab.create({ tag: 'handoffn', node }));
  await Lab.link(labs[0]!, labs[1]!);
  await Lab.link(labs[1]!, labs[2]!);
  await Lab.link(labs[0]!, labs[2]!);
  pods = { client: await labs[0]!.addPod('client'), wp: await labs[1]!.addPod('wp'), v1: await labs[2]!.addPod('web-v1'), v2: await labs[2]!.addPod('web-v2') };
  for (const p of [pods.v1, pods.v2]) procs.push(labs[2]!.spawn(p, process.execPath, [HTTP_ECHO, '8080'], { env: { ...process.env, POD_NAME: p.name } }));
  dir = mkdtempSync(join(tmpdir(), 'kw-handoffn-'));
  writeManifest(dir, 'mesh.yaml', handoffObjects(nodeOf, pods));
  for (const l of labs) {
    agents.push(await startAgentProcess(['--standalone', dir, '--node-name', `node-${l.node}`, '--cgroup', l.cgroupPath, '--bpffs', join(l.bpffsDir, 'agent')],
      join(dir, `admin-${l.node}.sock`), 60_000));
  }
  const wp = labs[1]!.spawn(pods.wp, process.execPath, [KERNWAY_MAIN, ...waypointArgs(dir)], { env: { ...process.env, KERNWAY_LOG_LEVEL: 'warn' } });
  procs.push(wp);
  wp.stdout!.setEncoding('utf8').on('data', (d: string) => { waypointOut += d; });
  wp.stderr!.setEncoding('utf8').on('data', (d: string) => { waypointOut += d; });
  await until('waypoint ready', async () => (await curl(pods.wp, ['-f', '-o', '/dev/null', `http://${WAYPOINT_METRICS}/readyz`])).code === 0, 60_000);
  // The backends on node 2, reached from the waypoint on node 1 (pod CIDR routes over the links).
  for (const p of [pods.v1, pods.v2]) await until(`backend ${p.name} from node 1`, async () => (await curl(pods.wp, ['-f', '-o', '/dev/null', `http://${p.ipv4}:8080/healthz`])).code === 0);
  await until('node 0 hands shop/web:80 to the waypoint pod on node 1', async () => (await wpFrontend(0))?.pods.includes(pods.wp.ipv4) === true);
}, 240_000);

afterAll(async () => {
  for (const c of [...procs, ...agents.map((a) => a.child)]) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const l of labs) await l.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('hand-off across nodes: client (node 0) -> ClusterIP -> kernel redirect -> waypoint (node 1) -> backends (node 2)', () => {
  it('three nodes, each with its own agent, cgroup and bpffs folder; pod addresses by node', () => {
    expect(new Set(labs.map((l) => l.cgroupPath)).size).toBe(3);
    expect(new Set(labs.map((l) => l.bpffsDir)).size).toBe(3);
    expect([pods.client.ipv4, pods.wp.ipv4, pods.v1.ipv4]).toEqual(['10.244.0.2', '10.244.2.2', '10.244.4.2']);
  });

  it('HTTP/1.1: the header match of the HTTPRoute; the access log names the client pod on node 0 by its address', async () => {
    const r = await curl(pods.client, ['-H', 'x-canary: yes', ...curlMany(`http://${WEB_VIP}/x`, 3)]);
    expect(r.code, r.err + waypointOut).toBe(0);
    expect(answeredBy(r.out)).toEqual({ 'web-v2': 3 });
    await until('access log line', async () => waypointOut.includes('"path":"/x2"'));
    const line = waypointOut.split('\n').find((l) => l.includes('"path":"/x2"'))!;
    expect(line).toContain(`"sourceAddress":"${pods.client.ipv4}"`);
    expect(line).toContain('"source":"demo/client');
    expect(line).toContain('"parent":"shop/web:80"');
    expect(line).toContain(`"upstream":"${pods.v2.ipv4}:8080"`);
  });

  it('HTTP/1.1: the weighted split holds (80/20 within ±12 points over 100 requests)', async () => {
    const r = await curl(pods.client, curlMany(`http://${WEB_VIP}/w`, 100));
    expect(r.code, r.err).toBe(0);
    const c = answeredBy(r.out);
    expect((c['web-v1'] ?? 0) + (c['web-v2'] ?? 0)).toBe(100);
    expect(c['web-v1']).toBeGreaterThanOrEqual(68);
    expect(c['web-v1']).toBeLessThanOrEqual(92);
  });

  it('h2c (prior knowledge) through the waypoint on the other node', async () => {
    const r = await curl(pods.client, ['--http2-prior-knowledge', '-H', 'x-canary: yes', `http://${WEB_VIP}/h2`, '-w', '\n%{http_version}']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('"pod":"web-v2"');
    expect(r.out.trim().endsWith('2')).toBe(true);
  });

  it('a Service of a namespace without the label is balanced in node 0\'s kernel to node 2 (no route applied, no access log line)', async () => {
    const r = await curl(pods.client, ['-H', 'x-canary: yes', '-H', 'connection: close', ...curlMany(`http://${PLAIN_WEB_VIP}/plain`, 20)]);
    expect(r.code, r.err).toBe(0);
    const c = answeredBy(r.out);
    expect((c['web-v1'] ?? 0) + (c['web-v2'] ?? 0)).toBe(20);
    expect(c['web-v1'] ?? 0).toBeGreaterThan(0);
    expect(waypointOut).not.toContain('"path":"/plain');
  });

  it('node 0 counted the redirects and wrote a header on each (stack-only sockets: the waypoint is not a local pod)', async () => {
    const s = (await status(0)).waypoints!.stats;
    expect(s.redirected).toBeGreaterThanOrEqual(3);
    expect(s.headersWritten).toBe(s.redirected);
    expect(s.headerFailed).toBe(0);
    expect(s.hashFailed).toBe(0);
    // Node 2 redirected nothing: its pods made no connection to a ClusterIP.
    expect((await status(2)).waypoints!.stats.redirected).toBe(0);
  });

  it('a direct connect() to the remote waypoint\'s mesh port is refused with EPERM, on the client\'s node and on the backends\' node', async () => {
    const script = `const s=require('net').connect(15019,'${pods.wp.ipv4}',()=>{console.log('connected');s.destroy()});s.on('error',e=>console.log(e.code))`;
    for (const [i, p] of [[0, pods.client], [2, pods.v1]] as const) {
      const before = (await status(i)).waypoints!.stats.meshDenied;
      const r = await labOf(p).exec(p, process.execPath, ['-e', script], { timeoutMs: 20_000 });
      expect(r.stdout.trim(), `from node ${i}: ${r.stderr}`).toBe('EPERM');
      expect((await status(i)).waypoints!.stats.meshDenied).toBe(before + 1);
    }
  });

  it('no ready waypoint pod: node 0 refuses at once (ECONNREFUSED, counted); when it is back, new connections use it', async () => {
    const all = handoffObjects(nodeOf, pods);
    const isWpPod = (o: Record<string, unknown>): boolean => o.kind === 'Pod' && (o.metadata as { name: string }).name === 'wp';
    const before = (await status(0)).waypoints!.stats.refused;
    writeManifest(dir, 'mesh.yaml', all.filter((o) => !isWpPod(o)));
    await until('node 0 without a waypoint pod', async () => (await wpFrontend(0))?.pods.length === 0);
    const r = await curl(pods.client, [`http://${WEB_VIP}/down`]);
    expect(r.code).toBe(7); // curl: failed to connect
    expect(r.ms).toBeLessThan(2000);
    expect((await status(0)).waypoints!.stats.refused).toBe(before + 1);
    writeManifest(dir, 'mesh.yaml', all);
    await until('node 0 with the waypoint pod again', async () => (await wpFrontend(0))?.pods.includes(pods.wp.ipv4) === true);
    const back = await curl(pods.client, ['-H', 'x-canary: yes', `http://${WEB_VIP}/back`]);
    expect(back.code, back.err).toBe(0);
    expect(back.out).toContain('"pod":"web-v2"');
  });
});
