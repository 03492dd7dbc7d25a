/**
 * `kernway waypoint --workers N|auto`: the option checked at the door, `auto` from the
 * affinity and the cgroup's CPU quota, and a real waypoint process with 2 workers:
 * connections spread by the kernel over both workers (SO_REUSEPORT), one /metrics that
 * adds them up, a configuration change reaching every worker, a worker killed and
 * restarted (logged, counted, the sums kept), SIGTERM draining all of them with every
 * access log line written.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendManifests, gatewayManifests } from '../../bench/waypoint/manifests.js';
import { hasReusePort, parseWaypointArgs } from '../../waypoint/options.js';
import { cgroupCpuQuota, usableCpus } from '../../waypoint/workers-cpus.js';
import { KERNWAY_MAIN, runKernway } from '../fixtures/cli.js';
import { EchoServer } from './fixtures/echo.js';
import { request, rigAddresses } from './fixtures/rig.js';

const OCTET = 86;
const a = rigAddresses(OCTET, { web: 1, next: 1 });
const PORT = 18080;

describe('--workers N|auto', () => {
  const args = (w: string): string[] => ['--namespace', 'ns', '--manifests', 'd', '--workers', w];
  it('defaults to 1 (one process) and takes a count or auto', () => {
    expect(parseWaypointArgs(['--namespace', 'ns', '--manifests', 'd']).workers).toBe(1);
    expect(parseWaypointArgs(args('3')).workers).toBe(3);
    expect(parseWaypointArgs(args('auto')).workers).toBe(usableCpus());
    expect(usableCpus()).toBeGreaterThanOrEqual(1);
  });
  it('refuses anything else with a coded error naming the option', () => {
    for (const bad of ['0', '-1', '1.5', 'two', '', '257', 'auto2']) {
      let err: unknown;
      try { parseWaypointArgs(args(bad)); } catch (e) { err = e; }
      expect(err, bad).toMatchObject({ code: 'KW_INVALID_ARGUMENT' });
      expect((err as Error).message, bad).toMatch(/^--workers: expected a number of processes from 1 to 256, or auto/);
    }
  });

  it('more than 1 needs listen()\'s reusePort (Node.js 22.12+)', () => {
    expect(hasReusePort('20.20.2')).toBe(false);
    expect(hasReusePort('22.11.0')).toBe(false);
    expect(hasReusePort('22.12.0')).toBe(true);
    expect(hasReusePort('23.0.0')).toBe(false);
    expect(hasReusePort('23.1.0')).toBe(true);
    expect(hasReusePort('24.0.0')).toBe(true);
  });

  describe('auto: the CPUs this process may use', () => {
    let root: string;
    beforeAll(() => { root = mkdtempSync(join(tmpdir(), 'kw-workers-cg-')); });
    afterAll(() => rmSync(root, { recursive: true, force: true }));
    const cg = (dir: string, file: string, text: string): void => { mkdirSync(join(root, dir), { recursive: true }); writeFileSync(join(root, dir, file), text); };

    it('cgroup v2: the smallest cpu.max of the cgroup and its ancestors, rounded up, within the affinity', () => {
      cg('kubepods/pod1/c1', 'cpu.max', 'max 100000\n');
      cg('kubepods/pod1', 'cpu.max', '150000 100000\n');
      cg('kubepods', 'cpu.max', '800000 100000\n');
      const self = '0::/kubepods/pod1/c1\n';
      expect(cgroupCpuQuota({ cgroupRoot: root, selfCgroup: self })).toBeCloseTo(1.5);
      expect(usableCpus({ affinity: 16, cgroupRoot: root, selfCgroup: self })).toBe(2);
      expect(usableCpus({ affinity: 1, cgroupRoot: root, selfCgroup: self })).toBe(1);
      // No quota anywhere: the affinity.
      expect(usableCpus({ affinity: 6, cgroupRoot: root, selfCgroup: '0::/other\n' })).toBe(6);
      // A tiny quota still gives one worker.
      cg('tiny', 'cpu.max', '10000 100000\n');
      expect(usableCpus({ affinity: 4, cgroupRoot: root, selfCgroup: '0::/tiny\n' })).toBe(1);
    });
    it('cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us', () => {
      cg('cpu,cpuacct/docker/x', 'cpu.cfs_quota_us', '250000\n');
      cg('cpu,cpuacct/docker/x', 'cpu.cfs_period_us', '100000\n');
      expect(usableCpus({ affinity: 8, cgroupRoot: root, selfCgroup: '4:cpu,cpuacct:/docker/x\n1:name=systemd:/docker/x\n' })).toBe(3);
    });
  });
});

function manifests(extra = ''): string {
  return `${gatewayManifests('gw', 'ns', PORT)}${backendManifests({ name: 'web', namespace: 'ns', gateway: 'gw', clusterIP: '10.96.7.1', endpoint: a.pods.web![0]!, targetPort: 8080 })}${extra}`;
}

const NEXT = backendManifests({ name: 'next', namespace: 'ns', gateway: 'gw', clusterIP: '10.96.7.2', endpoint: a.pods.next![0]!, targetPort: 8080, pathPrefix: '/next' });

interface WorkersReport { primary: number; configuration: number; workers: { index: number; pid?: number; running: boolean; ready: boolean; appliedConfiguration: number; restarts: number; requests?: number }[] }

/** The sum of a metric's samples (all label sets) in Prometheus text. */
function sumOf(text: string, name: string): number {
  let n = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) n += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return n;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

describe('kernway waypoint --workers 2 (a real process)', () => {
  let dir: string;
  let echoes: EchoServer[] = [];
  let child: ChildProcess | undefined;
  let stderr = '';
  let stdout = '';
  let admin: number;
  const pids: number[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kw-waypoint-workers-'));
    mkdirSync(join(dir, 'm'));
    writeFileSync(join(dir, 'm', 'all.yaml'), manifests());
    echoes = [
      await EchoServer.start({ address: a.pods.web![0]!, port: 8080, pod: 'web-abc-def', namespace: 'ns' }),
      await EchoServer.start({ address: a.pods.next![0]!, port: 8080, pod: 'next-abc-def', namespace: 'ns' }),
    ];
    admin = 21000 + (process.pid % 9000);
  });
  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    // Workers of a primary killed above see their IPC channel close and drain; kill any left.
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await Promise.all(echoes.map((e) => e.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (path: string): ReturnType<typeof request> => request({ address: a.gateway, port: admin, path, timeoutMs: 6000 });
  const workers = async (): Promise<WorkersReport> => (await get('/debug/workers')).json as unknown as WorkersReport;
  const metrics = async (): Promise<string> => (await get('/metrics')).body;

  /** K requests, each on its own connection, `concurrency` at a time; the statuses. */
  async function load(k: number, path: (i: number) => string, concurrency = 16): Promise<number[]> {
    const statuses: number[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < k) {
        const i = next++;
        statuses[i] = (await request({ address: a.gateway, port: PORT, path: path(i) })).status;
      }
    }));
    return statuses;
  }

  it('starts a primary and 2 workers; the kernel spreads K connections over both; /metrics counts exactly K', async () => {
    const accessLog = join(dir, 'access.log');
    child = spawn(process.execPath, [KERNWAY_MAIN, 'waypoint', '--namespace', 'ns', '--manifests', join(dir, 'm'), '--workers', '2',
      '--listen-address', a.gateway, '--mesh-port', '0', '--metrics-address', `${a.gateway}:${admin}`, '--access-log', accessLog, '--drain-timeout', '5s'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KERNWAY_LOG_LEVEL: 'info' } });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    await until('ready', async () => ((await get('/readyz')).status === 200 ? true : undefined), 30_000).catch((e: Error) => { throw new Error(`${e.message}: ${stderr}${stdout}`); });

    const w = await workers();
    expect(w.primary).toBe(child.pid);
    expect(w.workers).toHaveLength(2);
    const [p0, p1] = w.workers.map((x) => x.pid!);
    expect(new Set([p0, p1, child.pid]).size).toBe(3);
    pids.push(p0!, p1!);
    expect(w.workers.every((x) => x.running && x.ready && x.appliedConfiguration === w.configuration)).toBe(true);

    const K = 300;
    const statuses = await load(K, (i) => `/k/${i}`);
    expect(statuses.filter((s) => s === 200)).toHaveLength(K);
    const served = (await workers()).workers.map((x) => x.requests ?? 0);
    // Both workers took connections (with 300 connections, one getting none is 2^-299).
    expect(served[0]).toBeGreaterThan(0);
    expect(served[1]).toBeGreaterThan(0);
    expect(served[0]! + served[1]!).toBe(K);

    const text = await metrics();
    expect(sumOf(text, 'kernway_waypoint_requests_total')).toBe(K);
    expect(sumOf(text, 'kernway_waypoint_request_duration_seconds_count')).toBe(K);
    expect(text).toMatch(/kernway_waypoint_request_duration_seconds_bucket\{le="\+Inf",route="ns\/web",destination_service="ns\/web"\} 300|kernway_waypoint_request_duration_seconds_bucket\{route="ns\/web",destination_service="ns\/web",le="\+Inf"\} 300/);
    expect(sumOf(text, 'kernway_waypoint_workers')).toBe(2);
    expect(sumOf(text, 'kernway_waypoint_worker_restarts_total')).toBe(0);
    // One series per metric: process memory is the primary's and the workers' added up.
    expect(text.match(/^kernway_waypoint_process_resident_memory_bytes /gm)).toHaveLength(1);
    expect(sumOf(text, 'kernway_waypoint_process_resident_memory_bytes')).toBeGreaterThan(3 * 20 * 1024 * 1024);
    expect(text.match(/^# TYPE kernway_waypoint_requests_total counter$/gm)).toHaveLength(1);
    // The configuration gauges are not added up.
    expect(sumOf(text, 'kernway_waypoint_config_generation')).toBe(1);

    // /debug/routes (kernway routes) from a worker, with every worker's generation.
    const routes = (await get('/debug/routes')).json as { routes: { name: string }[]; workers: { pid: number }[] };
    expect(routes.routes.map((r) => r.name)).toEqual(['web']);
    expect(routes.workers.map((x) => x.pid)).toEqual([p0, p1]);
  }, 90_000);

  it('a configuration change reaches every worker before /debug/workers says so; every connection then routes by it', async () => {
    const before = (await workers()).configuration;
    writeFileSync(join(dir, 'm', 'all.yaml'), manifests(NEXT));
    await until('both workers on the new configuration', async () => {
      const w = await workers();
      return w.configuration > before && w.workers.every((x) => x.appliedConfiguration === w.configuration) ? true : undefined;
    });
    expect((await get('/readyz')).status).toBe(200);
    const statuses = await load(60, (i) => `/next/${i}`);
    expect(statuses.filter((s) => s === 200)).toHaveLength(60);
    const text = await metrics();
    expect(text).toMatch(/kernway_waypoint_requests_total\{[^}]*route="ns\/next"[^}]*\} 60/);
    const served = (await workers()).workers.map((x) => x.requests ?? 0);
    expect(served[0]! + served[1]!).toBe(360);
  }, 60_000);

  it('a killed worker is restarted (logged with its code, counted); the sums never go back', async () => {
    const w = await workers();
    const victim = w.workers[1]!.pid!;
    const total = sumOf(await metrics(), 'kernway_waypoint_requests_total');
    expect(total).toBe(360);
    // SIGKILL loses what a worker has buffered: wait for the lines of the requests so far (flushed each second).
    await until('360 access log lines', async () => (readFileSync(join(dir, 'access.log'), 'utf8').trim().split('\n').length === 360 ? true : undefined));
    process.kill(victim, 'SIGKILL');
    const after = await until('worker 1 restarted', async () => {
      const x = await workers();
      const pid = x.workers[1]!.pid;
      return pid !== undefined && pid !== victim && x.workers[1]!.ready && x.workers[1]!.appliedConfiguration === x.configuration ? x : undefined;
    });
    pids.push(after.workers[1]!.pid!);
    expect(after.workers[1]!.restarts).toBe(1);
    expect(after.workers[0]!.pid).toBe(w.workers[0]!.pid);
    await until('ready again', async () => ((await get('/readyz')).status === 200 ? true : undefined));
    const line = stderr.split('\n').find((l) => l.includes('KW_WAYPOINT_WORKER_EXIT'));
    expect(line, stderr).toBeDefined();
    expect(JSON.parse(line!)).toMatchObject({ code: 'KW_WAYPOINT_WORKER_EXIT', worker: 1, pid: victim, signal: 'SIGKILL' });

    const statuses = await load(40, (i) => `/again/${i}`);
    expect(statuses.filter((s) => s === 200)).toHaveLength(40);
    const text = await metrics();
    expect(sumOf(text, 'kernway_waypoint_worker_restarts_total')).toBe(1);
    // The dead worker's counters stay in the sum (as of the last scrape, which was just before the kill).
    expect(sumOf(text, 'kernway_waypoint_requests_total')).toBe(400);
    expect(sumOf(text, 'kernway_waypoint_request_duration_seconds_count')).toBe(400);
  }, 60_000);

  it('a port the workers cannot bind: exit 1 naming it (KW_WAYPOINT_LISTEN), no process left', async () => {
    const held = net.createServer();
    await new Promise<void>((r) => held.listen({ host: a.gateway, port: 0, exclusive: true }, r));
    const port = (held.address() as net.AddressInfo).port;
    const m = join(dir, 'busy');
    mkdirSync(m);
    writeFileSync(join(m, 'all.yaml'), manifests());
    try {
      const r = await runKernway(['waypoint', '--namespace', 'ns', '--manifests', m, '--workers', '2', '--listen-address', a.gateway, '--mesh-port', String(port), '--metrics-address', 'off', '--access-log', 'off'], { timeoutMs: 30_000 });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`worker [01]: mesh port ${a.gateway.replace(/\./g, '\\.')}:${port}: EADDRINUSE.*\\[KW_WAYPOINT_LISTEN\\]`));
      // The workers carry the same arguments: none is left.
      const left = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => { try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(m); } catch { return false; } });
      expect(left).toEqual([]);
    } finally {
      held.close();
    }
  }, 60_000);

  it('SIGTERM drains every worker; every request has its access log line', async () => {
    const live = (await workers()).workers.map((x) => x.pid!);
    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    child!.kill('SIGTERM');
    expect(await exited, stderr.slice(-3000)).toBe(0);
    for (const pid of live) expect(alive(pid), `worker ${pid}`).toBe(false);
    const lines = readFileSync(join(dir, 'access.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { path: string; status: number });
    expect(lines).toHaveLength(400);
    const paths = new Set(lines.map((l) => l.path));
    for (let i = 0; i < 300; i++) expect(paths.has(`/k/${i}`)).toBe(true);
    for (let i = 0; i < 40; i++) expect(paths.has(`/again/${i}`)).toBe(true);
  }, 60_000);
});
