/**
 * Helpers of the sockmap tests: a lab with local pods and a remote host, the traffic
 * server and client fixtures (test/fixtures/sockmap-*.mjs) run in pods, and the
 * acceleration loaded on the lab's cgroup.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Lab, type Pod, type Target } from '../../lab/index.js';
import { Sockmap, type SockmapOptions, type SockmapStats } from '../../agent/datapath/sockmap.js';

export const SERVER = fileURLToPath(new URL('../fixtures/sockmap-server.mjs', import.meta.url));
export const CLIENT = fileURLToPath(new URL('../fixtures/sockmap-client.mjs', import.meta.url));
export const OBJECT = fileURLToPath(new URL('../../build/bpf/sockmap.bpf.o', import.meta.url));

export interface ClientSummary {
  ok: number;
  failed: number;
  errors: Record<string, number>;
  sent: number;
  received: number;
  outcomes: Record<string, number>;
  failures: Array<Record<string, unknown>>;
}

export interface Job {
  targets: Array<{ host: string; port: number }>;
  conns?: number;
  concurrency?: number;
  min?: number;
  max?: number;
  mode?: 'normal' | 'halfclose' | 'echo' | 'rst' | 'peerclose' | 'peerrst';
  readDelayMs?: number;
  serverDelayMs?: number;
  chunkMax?: number;
  tinyCount?: number;
  timeoutMs?: number;
  peerReads?: number;
  holdMs?: number;
  /** Echo mode: send right after the header, without waiting for the server's greeting. */
  eager?: boolean;
}

/** A running sockmap-server: ready, and collecting the JSON lines it reports. */
export class Server {
  readonly events: Array<Record<string, unknown>> = [];
  private stderr = '';
  private constructor(readonly child: ChildProcess) {}

  static async start(lab: Lab, pod: Target, host: string, ports: number[]): Promise<Server> {
    const child = lab.spawn(pod, process.execPath, [SERVER, host, ...ports.map(String)]);
    const s = new Server(child);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { s.stderr += d; });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start; stderr: ${s.stderr}`)), 10_000);
      createInterface({ input: child.stdout! }).on('line', (l) => {
        if (l === 'ready') { clearTimeout(timer); resolve(); return; }
        try { s.events.push(JSON.parse(l) as Record<string, unknown>); } catch { /* not ours */ }
      });
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}); stderr: ${s.stderr}`)); });
    });
    return s;
  }

  /** Waits until `n` events of a kind were reported. */
  async waitEvents(event: string, n: number, timeoutMs = 20_000): Promise<Array<Record<string, unknown>>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = this.events.filter((e) => e.event === event);
      if (got.length >= n || Date.now() > deadline) return got;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Kills the server and waits for it to be gone (so that its cgroup can be removed). */
  async stop(): Promise<void> {
    await stopChild(this.child);
  }
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

/** Polls `cond` until it holds; fails naming `what` after timeoutMs. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Runs a client job in a pod; resolves with its summary. */
export async function runClient(lab: Lab, pod: Target, job: Job, timeoutMs = 120_000): Promise<ClientSummary> {
  const res = await lab.exec(pod, process.execPath, [CLIENT, JSON.stringify(job)], { timeoutMs });
  const line = res.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as ClientSummary;
  } catch {
    throw new Error(`client exited ${res.code} without a summary; stdout: ${res.stdout.slice(-500)} stderr: ${res.stderr.slice(-2000)}`);
  }
}

/** Starts a client job without waiting (for restarts in the middle). */
export function startClient(lab: Lab, pod: Target, job: Job, timeoutMs = 120_000): Promise<ClientSummary> {
  return runClient(lab, pod, job, timeoutMs);
}

/** The local pods for the acceleration, opted in (kernway.io/sockmap: "on", rule 7) unless `target` is false. */
export function localPodsOf(...pods: Pod[]): Array<{ ip: string; target: boolean }> {
  return pods.flatMap((p) => [{ ip: p.ipv4, target: true }, { ip: p.ipv6, target: true }]);
}

/** The local pods as the agent's defaults see pods that say nothing: never redirect targets (rule 7). */
export function defaultPodsOf(...pods: Pod[]): Array<{ ip: string; target: boolean }> {
  return pods.flatMap((p) => [{ ip: p.ipv4, target: false }, { ip: p.ipv6, target: false }]);
}

export async function loadSockmap(lab: Lab, opts: Omit<SockmapOptions, 'cgroupPath' | 'bpffsDir' | 'objectPath' | 'log'> = {}): Promise<Sockmap> {
  return Sockmap.load({ cgroupPath: lab.cgroupPath, bpffsDir: lab.bpffsDir, objectPath: OBJECT, ...opts });
}

/** Counter increases between two readings. */
export function delta(before: SockmapStats, after: SockmapStats): SockmapStats {
  const out = { ...after };
  for (const k of Object.keys(out) as Array<keyof SockmapStats>) out[k] = after[k] - before[k];
  return out;
}

/** Where a pod's server listens on `port`, over IPv4 and over IPv6 (a job's `targets`). */
export function dualStack(pod: Pod, port: number): Array<{ host: string; port: number }> {
  return [{ host: pod.ipv4, port }, { host: pod.ipv6, port }];
}

/** The rig most sockmap tests share: pods a and b, accelerated, and a server in b on port 7001. */
export interface PairRig {
  lab: Lab;
  a: Pod;
  b: Pod;
  sm: Sockmap;
  server: Server;
  targets: Array<{ host: string; port: number }>;
}

/** Builds a PairRig in a new lab (the sockmap loaded before the server starts); removes what it made if a step fails. */
export async function startPairRig(tag: string, opts: Parameters<typeof loadSockmap>[1] = {}): Promise<PairRig> {
  const lab = await Lab.create({ tag });
  let sm: Sockmap | undefined;
  try {
    const a = await lab.addPod('a');
    const b = await lab.addPod('b');
    sm = await loadSockmap(lab, opts);
    sm.setLocalPods(localPodsOf(a, b));
    const server = await Server.start(lab, b, '::', [7001]);
    return { lab, a, b, sm, server, targets: dualStack(b, 7001) };
  } catch (err) {
    await stopRig({ sm, lab });
    throw err;
  }
}

/** Stops the servers, closes the sockmap and destroys the lab: whichever of them exist. */
export async function stopRig(r: { server?: Server; servers?: Server[]; sm?: Sockmap; lab?: Lab }): Promise<void> {
  await r.server?.stop();
  for (const s of r.servers ?? []) await s.stop();
  r.sm?.close();
  await r.lab?.destroy();
}
