/**
 * Processes of the waypoint benchmark: Debian's nginx (as the echo backend, and as the
 * proxy it is compared with) started with our own config, pid and log paths in a temp
 * folder, listening on loopback only; the waypoint as `node dist/cli/main.js waypoint`;
 * all pinned to CPUs with taskset and stopped by PID.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';

export interface Proc { name: string; pid: number; child: ChildProcess | undefined; stop(): Promise<void> }

/** Wait until something accepts TCP connections on address:port. */
export async function waitPort(address: string, port: number, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: address, port }, () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} is not listening on ${address}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

async function stopPid(pid: number, signal: NodeJS.Signals, timeoutMs = 5000): Promise<void> {
  if (!alive(pid)) return;
  try { process.kill(pid, signal); } catch { return; }
  const deadline = Date.now() + timeoutMs;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
}

/** nginx with a config of ours (one worker, pinned), daemon off; stopped by its PID. */
export async function startNginx(name: string, dir: string, cpu: number, httpBlock: string, listen: { address: string; port: number }): Promise<Proc> {
  const conf = join(dir, `${name}.conf`);
  const pidFile = join(dir, `${name}.pid`);
  writeFileSync(conf, `daemon off;
worker_processes 1;
worker_cpu_affinity ${(1 << cpu).toString(2)};
pid ${pidFile};
error_log ${join(dir, `${name}.error.log`)} warn;
events { worker_connections 4096; multi_accept on; }
http {
  client_body_temp_path ${dir}/${name}-body;
  proxy_temp_path ${dir}/${name}-proxy;
  fastcgi_temp_path ${dir}/${name}-fastcgi;
  uwsgi_temp_path ${dir}/${name}-uwsgi;
  scgi_temp_path ${dir}/${name}-scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
${httpBlock}
}
`);
  const t = spawnSync('nginx', ['-t', '-c', conf, '-p', dir], { encoding: 'utf8' });
  if (t.status !== 0) throw new Error(`nginx -t failed for ${conf}: ${t.stderr}`);
  const child = spawn('taskset', ['-c', String(cpu), 'nginx', '-c', conf, '-p', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  await waitPort(listen.address, listen.port, `nginx ${name} (${err.trim()})`);
  const masterPid = Number(readFileSync(pidFile, 'utf8').trim());
  return {
    name, pid: masterPid, child,
    async stop() {
      // SIGQUIT: graceful; the master (our child, through taskset's exec) takes its worker down.
      await stopPid(masterPid, 'SIGQUIT');
      if (child.exitCode === null) await new Promise<void>((r) => { child.once('exit', () => r()); setTimeout(r, 2000); });
    },
  };
}

/**
 * Node.js flags the waypoint runs with: none, as the generated waypoint Deployment runs it
 * (no NODE_OPTIONS). `--node-flags=--max-semi-space-size=2` measures the memory-saving
 * setting docs/waypoint.md (Memory) describes: 6–30 MiB less under load, 20 % (HTTP/1.1) and
 * 10 % (h2c) more CPU per request and young-generation pauses in the one-connection p99 (idle
 * after load, the waypoint gives its young generation back by itself: waypoint/idle-memory.ts).
 */
export const WAYPOINT_NODE_FLAGS: readonly string[] = [];
/** The smaller young generation the memory phase also measures. */
export const SMALL_YOUNG_GENERATION: readonly string[] = ['--max-semi-space-size=2'];

/** `node [flags] dist/cli/main.js waypoint ...`, pinned. */
export async function startWaypoint(mainJs: string, cpu: number, args: string[], ready: { address: string; port: number }, log: string, nodeFlags: readonly string[] = WAYPOINT_NODE_FLAGS): Promise<Proc> {
  if (!existsSync(mainJs)) throw new Error(`${mainJs} not found: build first (make build, or npx tsc -p tsconfig.json)`);
  const { openSync, closeSync } = await import('node:fs');
  const fd = openSync(log, 'a');
  const child = spawn('taskset', ['-c', String(cpu), process.execPath, ...nodeFlags, mainJs, 'waypoint', ...args], { stdio: ['ignore', fd, fd],
    // MALLOC_ARENA_MAX=2 as the waypoint's Deployment sets it (agent/cluster/waypoint-manifests.ts).
    env: { ...process.env, KERNWAY_LOG_LEVEL: 'warn', MALLOC_ARENA_MAX: '2' } });
  closeSync(fd);
  try {
    await waitPort(ready.address, ready.port, `kernway waypoint (log: ${log})`);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return {
    name: 'waypoint', pid: child.pid!, child,
    async stop() {
      await stopPid(child.pid!, 'SIGTERM');
    },
  };
}

/** Resident memory of a process (VmRSS), in bytes. */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Run a load tool pinned to a CPU; resolves with its output. */
export function runTool(cpu: number, cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('taskset', ['-c', String(cpu), cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${cmd} did not finish in ${timeoutMs} ms`)); }, timeoutMs);
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, out }); });
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}
