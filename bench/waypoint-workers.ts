/**
 * `kernway waypoint --workers N`: throughput and CPU per request with N data-path
 * processes against one, in one run, alternating (round r measures every N in turn), on
 * the same nginx backend (pinned to --backend-cpu), wrk with many connections. The
 * waypoint and wrk are not pinned: with --workers 2 the waypoint may use every CPU the
 * machine has, which is the point. CPU per request counts the primary and every worker.
 * The machine's load (uptime) is recorded before and after: on a shared machine the
 * numbers are noise unless it is quiet.
 *
 *   node dist/bench/waypoint-workers.js [--seconds 5] [--rounds 3] [--connections 64]
 *     [--workers 1,2] [--backend-cpu 1] [--wrk-threads 2] [--out DIR]
 *
 * Not part of the test suite: it measures, it does not assert.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import http from 'node:http';
import { projectRoot } from '../common/version.js';
import { TICKS_PER_SECOND, processTicks, ticksBetween } from './cpu.js';
import { parseWrk, WRK_SCRIPT } from './tools.js';
import { backendManifests, gatewayManifests } from './waypoint/manifests.js';
import { WAYPOINT_NODE_FLAGS, startNginx, waitPort, type Proc } from './waypoint/procs.js';

const ADDR = '127.94.0.1';
const BACKEND = { address: '127.94.0.10', port: 18281 };
const PORT = 18283;
const ADMIN = 18290;

function manifests(): string {
  return `${gatewayManifests('bench', 'bench', PORT)}${backendManifests({ name: 'echo', namespace: 'bench', gateway: 'bench', clusterIP: '10.96.94.1', endpoint: BACKEND.address, targetPort: BACKEND.port })}`;
}

/** Requests served per worker (/debug/workers; one process: its request counter). */
async function perWorker(): Promise<number[]> {
  const w = await get('/debug/workers');
  if (w.status === 200) return ((JSON.parse(w.body) as { workers: { requests?: number }[] }).workers).map((x) => x.requests ?? 0);
  const m = await get('/metrics');
  let n = 0;
  for (const line of m.body.split('\n')) if (line.startsWith('kernway_waypoint_requests_total{')) n += Number(line.slice(line.lastIndexOf(' ') + 1));
  return [n];
}

function get(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: ADDR, port: ADMIN, path, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => { body += d; }).on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

/** The process and its children (the workers). */
function tree(pid: number): number[] {
  let kids: number[] = [];
  try { kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '').map(Number); } catch { /* gone */ }
  return [pid, ...kids];
}

function rssMiB(pids: readonly number[]): number {
  let kb = 0;
  for (const pid of pids) {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    kb += m ? Number(m[1]) : 0;
  }
  return kb / 1024;
}

async function startWaypoint(workers: number, dir: string): Promise<{ child: ChildProcess; stop(): Promise<void> }> {
  const fd = (await import('node:fs')).openSync(join(dir, `waypoint-${workers}.log`), 'a');
  const child = spawn(process.execPath, [...WAYPOINT_NODE_FLAGS, join(projectRoot(), 'dist', 'cli', 'main.js'), 'waypoint', '--namespace', 'bench', '--manifests', join(dir, 'manifests'),
    '--listen-address', ADDR, '--mesh-port', '0', '--metrics-address', `${ADDR}:${ADMIN}`, '--access-log', join(dir, 'access.log'), '--workers', String(workers)],
  { stdio: ['ignore', fd, fd], env: { ...process.env, KERNWAY_LOG_LEVEL: 'warn' } });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await get('/readyz').then((r) => r.status === 200, () => false);
    if (ok) break;
    if (Date.now() > deadline || child.exitCode !== null) { child.kill('SIGKILL'); throw new Error(`waypoint --workers ${workers} did not become ready (log in ${dir})`); }
    await new Promise((r) => setTimeout(r, 100));
  }
  await waitPort(ADDR, PORT, 'waypoint');
  return {
    child,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) { resolve(); return; }
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.once('exit', () => { clearTimeout(t); resolve(); });
      child.kill('SIGTERM');
    }),
  };
}

interface Run { round: number; workers: number; rps: number; p50: number; p99: number; cpuUsPerRequest: number; cpuCores: number; rssMiB: number; split: number[]; load1: number }

async function wrk(o: { connections: number; threads: number }, dir: string, seconds: number): Promise<Record<string, number>> {
  const script = join(dir, 'wrk.lua');
  writeFileSync(script, WRK_SCRIPT);
  // Not pinned: the CPUs are shared.
  const r = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
    const c = spawn('wrk', [`-t${o.threads}`, `-c${o.connections}`, `-d${seconds}s`, '--latency', '-s', script, `http://${ADDR}:${PORT}/`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    c.stdout!.on('data', (d: Buffer) => { text += d.toString(); });
    c.stderr!.on('data', (d: Buffer) => { text += d.toString(); });
    const t = setTimeout(() => c.kill('SIGKILL'), (seconds + 30) * 1000);
    c.once('exit', (code) => { clearTimeout(t); resolve({ code, out: text }); });
    c.once('error', reject);
  });
  if (r.code !== 0) throw new Error(`wrk failed: ${r.out}`);
  return parseWrk(r.out);
}

function med(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' }, rounds: { type: 'string' }, connections: { type: 'string' }, workers: { type: 'string' },
      'backend-cpu': { type: 'string' }, 'wrk-threads': { type: 'string' }, out: { type: 'string' },
    },
  });
  const seconds = Number(values.seconds ?? 5);
  const rounds = Number(values.rounds ?? 3);
  const counts = (values.workers ?? '1,2').split(',').map(Number);
  const o = { connections: Number(values.connections ?? 64), threads: Number(values['wrk-threads'] ?? 2) };
  const scratch = mkdtempSync(join(tmpdir(), 'kw-bench-workers-'));
  const out = values.out ?? join(projectRoot(), '.bench-out', `waypoint-workers-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(out, { recursive: true });
  mkdirSync(join(scratch, 'manifests'));
  writeFileSync(join(scratch, 'manifests', 'bench.yaml'), manifests());
  const loadBefore = loadavg();
  const runs: Run[] = [];
  let backend: Proc | undefined;
  try {
    backend = await startNginx('backend', scratch, Number(values['backend-cpu'] ?? 1), `  access_log off;
  server {
    listen ${BACKEND.address}:${BACKEND.port} reuseport backlog=4096;
    location / { default_type text/plain; return 200 "$request_method $request_uri\\n"; }
  }`, BACKEND);
    for (let round = 0; round < rounds; round++) {
      for (const workers of counts) {
        const wp = await startWaypoint(workers, scratch);
        try {
          await wrk(o, scratch, 2);
          const pids = tree(wp.child.pid!);
          const before = await perWorker();
          const c0 = processTicks(pids);
          const t0 = performance.now();
          const s = await wrk(o, scratch, seconds);
          const wall = (performance.now() - t0) / 1000;
          const cpu = ticksBetween(c0, processTicks(pids)) / TICKS_PER_SECOND;
          const after = await perWorker();
          const split = after.map((n, i) => n - (before[i] ?? 0));
          const requests = s.rps! * seconds;
          const run: Run = {
            round, workers, rps: s.rps!, p50: s.p50 ?? Number.NaN, p99: s.p99 ?? Number.NaN, cpuUsPerRequest: (cpu * 1e6) / requests,
            cpuCores: cpu / wall, rssMiB: rssMiB(pids), split, load1: loadavg()[0]!,
          };
          runs.push(run);
          console.log(JSON.stringify(run));
        } finally {
          await wp.stop();
        }
      }
    }
  } finally {
    await backend?.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
  const loadAfter = loadavg();
  const lines = [
    `# waypoint --workers (${new Date().toISOString()})`, '',
    `load average before: ${loadBefore.map((x) => x.toFixed(2)).join(' ')}; after: ${loadAfter.map((x) => x.toFixed(2)).join(' ')}; CPUs: ${(await import('node:os')).availableParallelism()}`,
    `wrk -t${o.threads} -c${o.connections}, ${seconds} s, ${rounds} rounds (medians); backend nginx pinned to CPU ${values['backend-cpu'] ?? 1}; waypoint and wrk not pinned`, '',
    '| workers | req/s | p50 µs | p99 µs | CPU µs/request | CPU cores used | RSS MiB (all processes) |', '|---|---|---|---|---|---|---|',
  ];
  const base = runs.filter((r) => r.workers === counts[0]);
  for (const n of counts) {
    const rs = runs.filter((r) => r.workers === n);
    lines.push(`| ${n} | ${med(rs.map((r) => r.rps)).toFixed(0)} | ${med(rs.map((r) => r.p50)).toFixed(0)} | ${med(rs.map((r) => r.p99)).toFixed(0)} | ${med(rs.map((r) => r.cpuUsPerRequest)).toFixed(1)} | ${med(rs.map((r) => r.cpuCores)).toFixed(2)} | ${med(rs.map((r) => r.rssMiB)).toFixed(0)} |`);
  }
  lines.push('', `ratios to --workers ${counts[0]}, per round (same round, back to back):`);
  for (const n of counts.slice(1)) {
    const rs = runs.filter((r) => r.workers === n);
    const rps = rs.map((r) => r.rps / base.find((b) => b.round === r.round)!.rps);
    const cpu = rs.map((r) => r.cpuUsPerRequest / base.find((b) => b.round === r.round)!.cpuUsPerRequest);
    lines.push(`- --workers ${n}: throughput ×${rps.map((x) => x.toFixed(2)).join(', ×')} (median ×${med(rps).toFixed(2)}); CPU per request ×${cpu.map((x) => x.toFixed(2)).join(', ×')} (median ×${med(cpu).toFixed(2)}); requests per worker ${rs.map((r) => r.split.join('/')).join('; ')}`);
  }
  const report = lines.join('\n');
  writeFileSync(join(out, 'report.md'), `${report}\n`);
  writeFileSync(join(out, 'results.json'), JSON.stringify({ loadBefore, loadAfter, runs }, null, 2));
  console.log(report);
}

main().catch((e: unknown) => { console.error(e); process.exitCode = 1; });
