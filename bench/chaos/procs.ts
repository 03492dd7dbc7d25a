/**
 * The processes bench/chaos drives in its lab, each started as users start them
 * (`node dist/cli/main.js agent|waypoint ...`) and stopped by PID:
 *
 *   ChaosAgent     `kernway agent --standalone` in the lab's node namespace, on the lab cgroup;
 *                  killed, restarted, upgraded by the faults; its maps stay pinned in between.
 *   ChaosWaypoint  `kernway waypoint` in its own pod (one per replica), reached through the
 *                  waypoint Service's ClusterIP; /readyz and /debug/routes read inside the pod.
 *   TrafficClient  bench/chaos/traffic.ts in the client pod; counters on request.
 */
import { closeSync, openSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { KernwayError } from '../../common/errors.js';
import { adminRequest } from '../../agent/admin/client.js';
import type { Lab, Pod } from '../../lab/index.js';
import { run } from '../../lab/system.js';
import { tail } from '../modes.js';
import type { ClientConfig, Counters } from './traffic.js';

export interface ProcEnv { node: string; kernwayMain: string; dir: string }

/** Waits for a condition, polling; fails naming `what` (and the log's tail). */
export async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, logPath?: string, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new KernwayError('KW_BENCH_SETUP', `${what}: not reached in ${timeoutMs} ms${logPath ? `\n${tail(logPath)}` : ''}`);
    await sleep(everyMs);
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Signals a child and waits for it to exit (SIGKILL after timeoutMs). */
export async function stopProcess(child: ChildProcess | undefined, signal: NodeJS.Signals, timeoutMs = 15_000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  await Promise.race([exited(child), sleep(timeoutMs)]);
  if (child.exitCode === null && child.signalCode === null) { child.kill('SIGKILL'); await exited(child); }
}

export interface AgentStatusView {
  state: string;
  generation: number;
  frontends: number;
  problems: Array<{ code: string; file: string; object?: string; field?: string; message: string }>;
  lastReconcile?: { ms: number; error?: string };
  sockmap?: { enabled: boolean; localPods: number; localPodsOff: number; stats: Record<string, number> };
}

export interface KernelServiceView { vip: string; port: number; proto?: string; backends?: string[] }

export class ChaosAgent {
  child: ChildProcess | undefined;
  readonly socket: string;
  readonly log: string;

  constructor(private readonly lab: Lab, private readonly env: ProcEnv, readonly manifests: string, private readonly capacity: string) {
    this.socket = join(env.dir, 'agent.sock');
    this.log = join(env.dir, 'agent.log');
  }

  /** Starts the agent (with `extra` arguments, e.g. another build's BPF object). */
  start(extra: string[] = []): void {
    const kernwayMain = this.env.kernwayMain;
    const out = openSync(this.log, 'a');
    this.child = this.lab.spawn('node', this.env.node, [kernwayMain, 'agent', '--standalone', this.manifests, '--node-name', 'chaos-node',
      '--cgroup', this.lab.cgroupPath, '--bpffs', join(this.lab.bpffsDir, 'agent'), '--admin-socket', this.socket,
      '--metrics-address', '127.0.0.1:0', '--map-capacity', this.capacity, ...extra], { stdio: ['ignore', out, out] });
    closeSync(out);
  }

  get alive(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async status(): Promise<AgentStatusView | undefined> {
    if (!this.alive) return undefined;
    try {
      return await adminRequest<AgentStatusView>(this.socket, '/v1/status', { timeoutMs: 5000 });
    } catch {
      return undefined;
    }
  }

  async services(): Promise<KernelServiceView[]> {
    return adminRequest<KernelServiceView[]>(this.socket, '/v1/services', { timeoutMs: 10_000 });
  }

  /** Waits until the agent runs with `frontends` in its maps and a clean last reconcile. */
  waitReady(frontends: number, timeoutMs = 30_000): Promise<AgentStatusView> {
    return until(`the agent ready with ${frontends} frontends`, timeoutMs, async () => {
      if (!this.alive) throw new KernwayError('KW_BENCH_SETUP', `the agent exited (${this.child?.exitCode ?? this.child?.signalCode})\n${tail(this.log)}`);
      const s = await this.status();
      return s && s.state === 'running' && s.lastReconcile && s.lastReconcile.error === undefined && s.frontends === frontends ? s : undefined;
    }, this.log);
  }

  async stop(signal: NodeJS.Signals): Promise<void> {
    await stopProcess(this.child, signal);
  }
}

export class ChaosWaypoint {
  child: ChildProcess | undefined;
  readonly log: string;

  constructor(private readonly lab: Lab, private readonly env: ProcEnv, readonly pod: Pod, readonly manifests: string, private readonly namespace: string) {
    this.log = join(env.dir, `waypoint-${pod.name}.log`);
  }

  start(): void {
    const out = openSync(this.log, 'a');
    this.child = this.lab.spawn(this.pod, this.env.node, [this.env.kernwayMain, 'waypoint', '--namespace', this.namespace, '--manifests', this.manifests,
      '--listen-address', '0.0.0.0', '--mesh-port', '15019', '--metrics-address', '127.0.0.1:15020', '--access-log', 'off', '--drain-timeout', '10s'],
    { stdio: ['ignore', out, out] });
    closeSync(out);
  }

  get alive(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** GET on the waypoint's admin port, inside its pod. */
  async admin(path: string): Promise<{ code: number; body: string }> {
    const r = await run('nsenter', [`--net=${this.pod.netnsPath}`, '--', 'curl', '-s', '-m', '5', '-o', '-', '-w', '\n%{http_code}', `http://127.0.0.1:15020${path}`], { allowFail: true });
    const i = r.stdout.lastIndexOf('\n');
    return { code: Number(r.stdout.slice(i + 1)) || 0, body: r.stdout.slice(0, Math.max(i, 0)) };
  }

  async routes(): Promise<{ generation: number; problems: AgentStatusView['problems']; services: unknown[] } | undefined> {
    const r = await this.admin('/debug/routes');
    if (r.code !== 200) return undefined;
    try { return JSON.parse(r.body) as { generation: number; problems: AgentStatusView['problems']; services: unknown[] }; } catch { return undefined; }
  }

  waitReady(timeoutMs = 30_000): Promise<true> {
    return until(`waypoint ${this.pod.name} ready`, timeoutMs, async () => {
      if (!this.alive) throw new KernwayError('KW_BENCH_SETUP', `waypoint ${this.pod.name} exited\n${tail(this.log)}`);
      return (await this.admin('/readyz')).code === 200 ? true : undefined;
    }, this.log, 50);
  }

  async stop(signal: NodeJS.Signals): Promise<void> {
    await stopProcess(this.child, signal, 20_000);
  }
}

export class TrafficClient {
  private readonly child: ChildProcess;
  private readonly lines: string[] = [];
  private waiting: ((line: string) => void) | undefined;

  constructor(lab: Lab, env: ProcEnv, pod: Pod, cfg: ClientConfig) {
    const out = openSync(join(env.dir, 'client.log'), 'a');
    this.child = lab.spawn(pod, env.node, [join(env.kernwayMain, '..', '..', 'bench', 'chaos', 'traffic.js'), 'client', JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', out] });
    closeSync(out);
    createInterface({ input: this.child.stdout! }).on('line', (l) => {
      const w = this.waiting;
      this.waiting = undefined;
      if (w) w(l); else this.lines.push(l);
    });
  }

  private ask(cmd: string, timeoutMs: number): Promise<Counters> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new KernwayError('KW_BENCH_TOOL', `the traffic client did not answer "${cmd}" in ${timeoutMs} ms`)), timeoutMs);
      this.waiting = (l) => { clearTimeout(timer); resolve(JSON.parse(l) as Counters); };
      this.child.stdin!.write(`${cmd}\n`);
    });
  }

  snap(): Promise<Counters> {
    return this.ask('snap', 10_000);
  }

  /** Stops the load, lets the streams' bytes come back, returns the last counters. */
  async stop(): Promise<Counters> {
    const c = await this.ask('stop', 15_000);
    await stopProcess(this.child, 'SIGTERM', 3000);
    return c;
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}
