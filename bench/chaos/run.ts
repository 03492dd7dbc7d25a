/**
 * bench/chaos: restarts, upgrades and faults under load, with figures.
 *
 *   node dist/bench/chaos/run.js [--quick] [--seed N] [--fuzz-seconds S] [--hold-seconds S]
 *                                [--faults a,b,...] [--upgrade-object FILE.bpf.o] [--json FILE]
 *
 * One lab (lab/index.ts): a node namespace running the real `kernway agent`, a client pod,
 * a server pod, and two waypoint pods running the real `kernway waypoint`. The client
 * keeps three kinds of load running the whole time (bench/chaos/traffic.ts): new
 * connections at a steady rate to a ClusterIP balanced in the kernel, long-lived
 * same-node streams (sockmap) whose every byte is checked, and HTTP requests through the
 * waypoint Service's ClusterIP. Each fault is injected in turn; the counters before and
 * after it (plus a hold period of load) give its row in the table. See docs/chaos.md.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidArgumentError, KernwayError, errorMessage } from '../../common/errors.js';
import { projectRoot } from '../../common/version.js';
import { Lab, type Pod } from '../../lab/index.js';
import { podManifests, waitListening } from '../modes.js';
import { serviceManifests, TARGET_NAMESPACE, type BenchService } from '../services.js';
import { invokedDirectly } from '../lb/main-guard.js';
import { BREAKING_KINDS, MUTATION_KINDS, Rng, mutate } from './mutate.js';
import { ChaosAgent, ChaosWaypoint, TrafficClient, until, type ProcEnv } from './procs.js';
import type { ClientConfig, Counters, Failure } from './traffic.js';

export const FAULT_NAMES = ['baseline', 'agent-sigkill', 'agent-sigterm', 'agent-upgrade', 'waypoint-restart', 'waypoint-roll', 'map-capacity', 'manifest-fuzz'] as const;
export type FaultName = typeof FAULT_NAMES[number];

export const FAULT_TITLES: Record<FaultName, string> = {
  'baseline': 'no fault (the load alone)',
  'agent-sigkill': 'agent killed (SIGKILL) and started again',
  'agent-sigterm': 'agent stopped (SIGTERM) and started again',
  'agent-upgrade': 'agent upgraded to a build whose maps changed layout',
  'waypoint-restart': 'waypoint restarted (1 replica: new one ready, old one out of the endpoints, drained)',
  'waypoint-roll': 'two waypoint replicas rolled one at a time (out of the endpoints, drained, restarted, back)',
  'map-capacity': 'more Services than kw_svc holds, then back',
  'manifest-fuzz': 'mutated manifests fed to the agent and the waypoint',
};

export interface ChaosOptions {
  seed: number;
  /** Seconds of load kept running after each fault has been injected and recovered. */
  holdSeconds: number;
  fuzzSeconds: number;
  faults: readonly FaultName[];
  /** Load rates. */
  connPerSecond: number;
  streams: number;
  streamBytesPerSecond: number;
  httpConnections: number;
  httpPerSecond: number;
  /** kw_svc capacity of the agent's maps (the map-capacity fault goes beyond it). */
  svcCapacity: number;
  /** A BPF object whose maps changed layout, for agent-upgrade (`kernway agent --bpf-object`); missing: not run. */
  upgradeObject?: string;
  log?: (line: string) => void;
}

export const QUICK: Omit<ChaosOptions, 'seed' | 'faults'> = {
  holdSeconds: 1, fuzzSeconds: 4, connPerSecond: 100, streams: 2, streamBytesPerSecond: 2 << 20, httpConnections: 2, httpPerSecond: 100, svcCapacity: 64,
};
export const FULL: Omit<ChaosOptions, 'seed' | 'faults'> = {
  holdSeconds: 5, fuzzSeconds: 120, connPerSecond: 200, streams: 4, streamBytesPerSecond: 4 << 20, httpConnections: 4, httpPerSecond: 300, svcCapacity: 256,
};

export interface FaultResult {
  fault: FaultName;
  title: string;
  /** False when the fault could not be injected here (the reason is in notes). */
  ran: boolean;
  /** slow: succeeded after more than a second; maxMs: the slowest that succeeded. */
  conn: { attempted: number; failed: number; slow: number; maxMs: number };
  bytes: { sent: number; corrupted: number; lost: number; streamsBroken: number };
  http: { sent: number; failed: number; retried: number; byStatus: Record<string, number> };
  /** From the injection to the component serving again (ms). */
  recoverMs: number | undefined;
  /** Targets met: 0 failed connections, 0 corrupted or lost bytes, 0 failed HTTP requests. */
  met: boolean;
  notes: string[];
  failures: Failure[];
}

export interface ChaosReport { seed: number; options: ChaosOptions; results: FaultResult[]; startedAt: string; seconds: number }

// ---------------------------------------------------------------- the cluster

const ECHO_VIP = '10.96.0.30';
const WAYPOINT_VIP = '10.96.0.20';
const PORTS = { oneShot: 9000, echo: 9001, http: 8080, mesh: 15019 } as const;

function echoService(server: Pod): BenchService {
  return {
    namespace: TARGET_NAMESPACE, name: 'echo', clusterIP: ECHO_VIP, endpoints: [server.ipv4],
    ports: [
      { name: 'oneshot', port: PORTS.oneShot, targetPort: PORTS.oneShot, protocol: 'TCP' },
      { name: 'stream', port: PORTS.echo, targetPort: PORTS.echo, protocol: 'TCP' },
      { name: 'http', port: PORTS.http, targetPort: PORTS.http, protocol: 'TCP', appProtocol: 'http' },
    ],
  };
}

function waypointService(endpoints: string[]): BenchService {
  return {
    namespace: TARGET_NAMESPACE, name: 'waypoint', clusterIP: WAYPOINT_VIP, endpoints,
    ports: [{ name: 'mesh', port: PORTS.mesh, targetPort: PORTS.mesh, protocol: 'TCP' }],
  };
}

/** Frontends the agent holds in the steady state: echo's three ports and the waypoint's one. */
const BASE_FRONTENDS = 4;

/** Services that exist only to fill the maps (endpoints never contacted). */
function fillerServices(n: number, namespace = 'fill'): BenchService[] {
  return Array.from({ length: n }, (_, k) => ({
    namespace, name: `svc-${k}`, clusterIP: `10.97.${Math.floor(k / 250)}.${1 + (k % 250)}`,
    endpoints: [`10.245.${Math.floor(k / 250)}.${1 + (k % 250)}`],
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' as const }],
  }));
}

/** The waypoint's view: the echo Service, its slice, and a route for it (a mesh parent). */
function waypointManifests(server: Pod, namespace: string, vip: string, name: string): Record<string, unknown> {
  const svc = serviceManifests([{ ...echoService(server), namespace, name, clusterIP: vip }]);
  return {
    apiVersion: 'v1', kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } },
      ...(svc.items as unknown[]),
      {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: `${name}-route`, namespace },
        spec: { parentRefs: [{ group: '', kind: 'Service', name, port: PORTS.http }], rules: [{ backendRefs: [{ name, port: PORTS.http }] }] },
      },
    ],
  };
}

/** Lines of a log file matching `re`. */
function logLines(path: string, re: RegExp): string[] {
  try { return readFileSync(path, 'utf8').split('\n').filter((l) => re.test(l)); } catch { return []; }
}

/** The test build of the balancer with a field added to a pinned map's value (docs/upgrade.md). */
export const UPGRADE_OBJECT = join(projectRoot(), 'build', 'bpf', 'test', 'sock_lb_v2.bpf.o');

function writeAtomic(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

// ---------------------------------------------------------------- the run

function delta(a: Counters, b: Counters): Pick<FaultResult, 'conn' | 'bytes' | 'http' | 'failures'> {
  const byStatus: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.http.byStatus)) {
    const d = v - (a.http.byStatus[k] ?? 0);
    if (d > 0) byStatus[k] = d;
  }
  return {
    conn: { attempted: b.conn.attempted - a.conn.attempted, failed: b.conn.failed - a.conn.failed, slow: b.conn.slow - a.conn.slow, maxMs: b.conn.maxMs },
    bytes: { sent: b.stream.sent - a.stream.sent, corrupted: b.stream.corrupted - a.stream.corrupted, lost: b.stream.lost - a.stream.lost, streamsBroken: b.stream.broken - a.stream.broken },
    http: { sent: b.http.sent - a.http.sent, failed: b.http.failed - a.http.failed, retried: b.http.retried - a.http.retried, byStatus },
    failures: b.failures.filter((f) => f.t > a.t),
  };
}

interface World {
  lab: Lab;
  env: ProcEnv;
  client: Pod;
  server: Pod;
  agent: ChaosAgent;
  waypoints: ChaosWaypoint[];
  agentDir: string;
  waypointDir: string;
  /** Waypoint pods in the waypoint Service's endpoints. */
  inService: Set<ChaosWaypoint>;
  opts: ChaosOptions;
  say: (line: string) => void;
}

/** Writes the agent's Services file with the waypoint endpoints in service, waits until the agent applied it. */
async function setWaypointEndpoints(w: World, members: ChaosWaypoint[]): Promise<void> {
  if (members.length === w.inService.size && members.every((m) => w.inService.has(m))) return;
  const before = (await w.agent.status())?.generation ?? 0;
  w.inService = new Set(members);
  writeAtomic(join(w.agentDir, 'services.json'), JSON.stringify(serviceManifests([echoService(w.server), waypointService(members.map((m) => m.pod.ipv4))])));
  await until('the agent applied the waypoint endpoints', 15_000, async () => {
    const s = await w.agent.status();
    return s && s.generation > before && s.lastReconcile?.error === undefined ? true : undefined;
  }, w.agent.log);
}

/** violated: the fault's own check failed (e.g. a map entry changed while full). */
type Action = (w: World) => Promise<{ recoverMs?: number; notes?: string[]; ran?: boolean; violated?: boolean }>;

/** Set-up a fault needs before its figures start (not counted). */
const PREPARE: Partial<Record<FaultName, (w: World) => Promise<void>>> = {
  async 'waypoint-roll'(w) {
    for (const r of w.waypoints) if (!r.alive) { r.start(); await r.waitReady(); }
    await setWaypointEndpoints(w, w.waypoints);
  },
};

const ACTIONS: Record<FaultName, Action> = {
  async 'baseline'() {
    return {};
  },

  async 'agent-sigkill'(w) {
    const t0 = Date.now();
    await w.agent.stop('SIGKILL');
    w.agent.start();
    const s = await w.agent.waitReady(BASE_FRONTENDS);
    return { recoverMs: Date.now() - t0, notes: [`restarted agent adopted ${s.frontends} frontends`] };
  },

  async 'agent-sigterm'(w) {
    const t0 = Date.now();
    await w.agent.stop('SIGTERM');
    const stopped = Date.now() - t0;
    w.agent.start();
    await w.agent.waitReady(BASE_FRONTENDS);
    return { recoverMs: Date.now() - t0, notes: [`drained and exited in ${stopped} ms`] };
  },

  async 'agent-upgrade'(w) {
    const object = w.opts.upgradeObject;
    if (!object || !existsSync(object)) {
      return { ran: false, notes: [`not run: no BPF object with a changed map layout at ${object ?? '(none given)'} (make build makes build/bpf/test/sock_lb_v2.bpf.o once the loader's migration is in; docs/upgrade.md)`] };
    }
    // As docs/upgrade.md: SIGTERM (programs and maps stay), start on the same bpffs with the new object.
    const t0 = Date.now();
    await w.agent.stop('SIGTERM');
    w.agent.start(['--bpf-object', object]);
    await w.agent.waitReady(BASE_FRONTENDS);
    const recoverMs = Date.now() - t0;
    const migrated = logLines(w.agent.log, /map layout changed|migrat/i).length;
    // And back to this build (a downgrade is an upgrade the other way).
    const t1 = Date.now();
    await w.agent.stop('SIGTERM');
    w.agent.start();
    await w.agent.waitReady(BASE_FRONTENDS);
    return { recoverMs, notes: [`upgraded to ${basename(object)} in ${recoverMs} ms, back in ${Date.now() - t1} ms; ${migrated} log lines about the migration`] };
  },

  async 'waypoint-restart'(w) {
    // As a Deployment of one replica restarts (maxSurge 1): the new pod first, then the old one leaves the endpoints, then SIGTERM.
    const [old] = [...w.inService];
    const next = w.waypoints.find((x) => x !== old)!;
    const t0 = Date.now();
    next.start();
    await next.waitReady();
    await setWaypointEndpoints(w, [next]);
    const recoverMs = Date.now() - t0;
    const t1 = Date.now();
    await old!.stop('SIGTERM');
    return { recoverMs, notes: [`${next.pod.name} ready and in service after ${recoverMs} ms; ${old!.pod.name} drained in ${Date.now() - t1} ms`] };
  },

  async 'waypoint-roll'(w) {
    const notes: string[] = [];
    const t0 = Date.now();
    for (const r of w.waypoints) {
      const others = w.waypoints.filter((x) => x !== r && w.inService.has(x));
      if (others.length === 0) throw new KernwayError('KW_BENCH_SETUP', 'waypoint-roll needs the other replica in service');
      await setWaypointEndpoints(w, others);
      const t1 = Date.now();
      await r.stop('SIGTERM');
      const drained = Date.now() - t1;
      r.start();
      await r.waitReady();
      await setWaypointEndpoints(w, [...others, r]);
      notes.push(`${r.pod.name}: drained in ${drained} ms, back in ${Date.now() - t1} ms`);
    }
    return { recoverMs: Date.now() - t0, notes };
  },

  async 'map-capacity'(w) {
    const before = await w.agent.services();
    const cap = w.opts.svcCapacity;
    const extra = cap + 20 - BASE_FRONTENDS;
    const fill = join(w.agentDir, 'fill.json');
    const t0 = Date.now();
    writeAtomic(fill, JSON.stringify(serviceManifests(fillerServices(extra))));
    const full = await until('the agent reported the full map', 30_000, async () => {
      const s = await w.agent.status();
      return s?.problems.find((p) => p.code === 'KW_MAP_FULL') ? s : undefined;
    }, w.agent.log);
    const reportedMs = Date.now() - t0;
    const during = await w.agent.services();
    const notes = [`${BASE_FRONTENDS + extra} Service ports for kw_svc of ${cap}: reported in ${reportedMs} ms, ${full.frontends} installed`,
      `problem: ${full.problems.find((p) => p.code === 'KW_MAP_FULL')!.message.slice(0, 160)}`];
    const key = (s: { vip: string; port: number; backends?: string[] }): string => `${s.vip}:${s.port}->${(s.backends ?? []).join(',')}`;
    const kept = before.map(key).filter((k) => !during.map(key).includes(k));
    notes.push(kept.length === 0 ? 'every frontend that was there kept its backends' : `CHANGED while full: ${kept.join('; ')}`);
    if (full.frontends !== Math.min(cap, BASE_FRONTENDS + extra)) notes.push(`kept ${full.frontends} frontends, ${cap} fit`);
    unlinkSync(fill);
    const t1 = Date.now();
    await w.agent.waitReady(BASE_FRONTENDS);
    notes.push(`back to ${BASE_FRONTENDS} frontends ${Date.now() - t1} ms after the file was removed`);
    return { recoverMs: Date.now() - t0, notes, violated: kept.length > 0 || full.frontends !== Math.min(cap, BASE_FRONTENDS + extra) };
  },

  async 'manifest-fuzz'(w) {
    return fuzz(w);
  },
};

interface FuzzTarget {
  who: 'agent' | 'waypoint';
  file: string;
  /** The file's content in force; a breaking mutation must leave it in force. */
  good: string;
  /** In force for traffic: only mutations meant to break it. */
  live: boolean;
}

/** Mutated manifests for a bounded time; after each one, the process must be alive and the problem named. */
async function fuzz(w: World): Promise<{ recoverMs?: number; notes: string[]; violated: boolean }> {
  const r = new Rng(w.opts.seed);
  const decoy = fillerServices(3, 'decoy');
  const targets: FuzzTarget[] = [
    { who: 'agent', file: join(w.agentDir, 'services.json'), good: readFileSync(join(w.agentDir, 'services.json'), 'utf8'), live: true },
    { who: 'agent', file: join(w.agentDir, 'pods.json'), good: readFileSync(join(w.agentDir, 'pods.json'), 'utf8'), live: true },
    { who: 'agent', file: join(w.agentDir, 'decoy.json'), good: JSON.stringify(serviceManifests(decoy)), live: false },
    { who: 'waypoint', file: join(w.waypointDir, 'waypoint.json'), good: readFileSync(join(w.waypointDir, 'waypoint.json'), 'utf8'), live: true },
    { who: 'waypoint', file: join(w.waypointDir, 'decoy.json'), good: JSON.stringify(waypointManifests(w.server, TARGET_NAMESPACE, '10.96.0.99', 'decoy')), live: false },
  ];
  const wps = [...w.inService];
  const agentBefore = await w.agent.services();
  // The decoys in force before the first mutation (else a mutation's judge could see their generation).
  const wpGens = await Promise.all(wps.map(async (x) => (await x.routes())?.generation ?? 0));
  for (const t of targets) if (!t.live) writeAtomic(t.file, t.good);
  await w.agent.waitReady(BASE_FRONTENDS + decoy.length);
  await Promise.all(wps.map((x, i) => until(`waypoint ${x.pod.name} read the decoy`, 15_000, async () => ((await x.routes())?.generation ?? 0) > wpGens[i]! ? true : undefined, x.log, 50)));
  const counts: Record<Verdict, number> = { named: 0, accepted: 0, ignored: 0, unseen: 0 };
  const byKind: Record<string, number> = {};
  const unnamedBreaking: string[] = [];
  const ignored: string[] = [];
  const deadline = Date.now() + w.opts.fuzzSeconds * 1000;
  let n = 0;
  while (Date.now() < deadline) {
    const t = r.pick(targets);
    const m = mutate(r, t.good, t.live ? BREAKING_KINDS : MUTATION_KINDS);
    n++;
    byKind[m.kind] = (byKind[m.kind] ?? 0) + 1;
    const tj = Date.now();
    const verdict = await applyAndJudge(w, t, m.text, wps);
    if (process.env.KW_CHAOS_VERBOSE) w.say(`  mutation ${n}: ${t.who} ${basename(t.file)} ${m.kind} ${m.path.slice(0, 60)} -> ${verdict} in ${Date.now() - tj} ms`);
    counts[verdict] = (counts[verdict] ?? 0) + 1;
    if (verdict !== 'named' && t.live && (m.kind === 'truncate' || m.kind === 'garbage')) unnamedBreaking.push(`${basename(t.file)} ${m.kind} ${m.path}: ${verdict}`);
    if (verdict === 'accepted' && t.live) unnamedBreaking.push(`${t.who} accepted ${m.kind} at ${m.path} in ${basename(t.file)} and changed what is in force`);
    if (verdict === 'ignored' && ignored.length < 5) ignored.push(`${t.who}: ${m.kind} at ${m.path} in ${basename(t.file)}`);
    if (!w.agent.alive) throw new KernwayError('KW_BENCH_TOOL', `the agent died after mutation ${n} (${m.kind} ${m.path} in ${t.file})`);
    for (const x of wps) if (!x.alive) throw new KernwayError('KW_BENCH_TOOL', `waypoint ${x.pod.name} died after mutation ${n} (${m.kind} ${m.path} in ${t.file})`);
    // Back to the good content (a live file) so the next mutation starts from it.
    if (t.live || r.next() < 0.3) await applyAndJudge(w, t, t.good, wps);
  }
  const t0 = Date.now();
  for (const t of targets) if (!t.live) unlinkSync(t.file);
  await w.agent.waitReady(BASE_FRONTENDS);
  const recoverMs = Date.now() - t0;
  const agentAfter = await w.agent.services();
  const same = JSON.stringify(agentAfter.map((s) => [s.vip, s.port, s.backends])) === JSON.stringify(agentBefore.map((s) => [s.vip, s.port, s.backends]));
  const notes = [
    `${n} mutations in ${w.opts.fuzzSeconds} s (${Object.entries(byKind).map(([k, v]) => `${k} ${v}`).join(', ')}): ${counts.named} named as problems, ${counts.accepted} accepted as valid (what is in force changed), ${counts.ignored} ignored (valid to kernway, nothing in force changed), ${counts.unseen} not seen within 3 s`,
    `agent and ${wps.length} waypoint(s) alive; agent's maps ${same ? 'as before' : 'CHANGED'} after the good files came back`,
  ];
  if (ignored.length > 0) notes.push(`ignored, e.g.: ${ignored.join('; ')}`);
  if (unnamedBreaking.length > 0) notes.push(`NOT NAMED (${unnamedBreaking.length}): ${unnamedBreaking.slice(0, 5).join('; ')}`);
  return { recoverMs, notes, violated: !same || unnamedBreaking.length > 0 };
}

/** Writes one file and judges what its process made of it: a problem naming the file, accepted, or nothing seen. */
/** What a process has in force (no generation, no problems): equal before and after means nothing changed. */
async function agentInForce(w: World): Promise<string> {
  const [svcs, st] = await Promise.all([w.agent.services().catch(() => []), w.agent.status()]);
  return JSON.stringify([svcs.map((x) => [x.vip, x.port, x.backends]), st?.sockmap?.localPods, st?.sockmap?.localPodsOff]);
}

async function waypointInForce(x: ChaosWaypoint): Promise<string> {
  const r = await x.routes();
  if (!r) return '';
  return JSON.stringify({ ...r, generation: undefined, problems: undefined });
}

type Verdict = 'named' | 'accepted' | 'ignored' | 'unseen';

/**
 * Writes one file and judges what its process made of it: a problem naming the file
 * (named), taken as valid and changing what is in force (accepted), taken as valid with
 * nothing in force changed (ignored: e.g. a field kernway does not read), or nothing seen.
 */
async function applyAndJudge(w: World, t: FuzzTarget, text: string, wps: ChaosWaypoint[]): Promise<Verdict> {
  const name = basename(t.file);
  const names = (ps: Array<{ file: string }> | undefined): boolean => (ps ?? []).some((p) => p.file === t.file || basename(p.file) === name);
  if (t.who === 'agent') {
    const inForce = t.live ? await agentInForce(w) : '';
    const before = (await w.agent.status())?.generation ?? 0;
    writeAtomic(t.file, text);
    try {
      const s = await until('agent', 3000, async () => {
        const st = await w.agent.status();
        return st && st.generation > before ? st : undefined;
      });
      if (names(s.problems)) return 'named';
      // Another change may have made that generation: look once more.
      await sleep(300);
      if (names((await w.agent.status())?.problems)) return 'named';
      return t.live && (await agentInForce(w)) === inForce ? 'ignored' : 'accepted';
    } catch {
      // Unchanged content (the same problem again) makes no new generation.
      return names((await w.agent.status())?.problems) ? 'named' : 'unseen';
    }
  }
  const inForce = await Promise.all(wps.map((x) => (t.live ? waypointInForce(x) : '')));
  const gens = await Promise.all(wps.map(async (x) => (await x.routes())?.generation ?? 0));
  writeAtomic(t.file, text);
  const verdicts = await Promise.all(wps.map(async (x, i): Promise<Verdict> => {
    try {
      const rt = await until('waypoint', 3000, async () => {
        const v = await x.routes();
        return v && v.generation > gens[i]! ? v : undefined;
      }, undefined, 50);
      if (names(rt.problems)) return 'named';
      await sleep(300);
      if (names((await x.routes())?.problems)) return 'named';
      return t.live && (await waypointInForce(x)) === inForce[i] ? 'ignored' : 'accepted';
    } catch {
      // Unchanged problems make no new configuration.
      return names((await x.routes())?.problems) ? 'named' : 'unseen';
    }
  }));
  for (const v of ['unseen', 'accepted', 'ignored'] as const) if (verdicts.includes(v)) return v;
  return 'named';
}

async function setup(opts: ChaosOptions, dir: string, say: (l: string) => void): Promise<World> {
  const env: ProcEnv = { node: process.execPath, kernwayMain: join(projectRoot(), 'dist', 'cli', 'main.js'), dir };
  const lab = await Lab.create({ tag: 'chaos' });
  try {
    const client = await lab.addPod('client');
    const server = await lab.addPod('server');
    const wpa = await lab.addPod('wpa');
    const wpb = await lab.addPod('wpb');
    const traffic = join(projectRoot(), 'dist', 'bench', 'chaos', 'traffic.js');

    const agentDir = join(dir, 'agent-manifests');
    const waypointDir = join(dir, 'waypoint-manifests');
    mkdirSync(agentDir);
    mkdirSync(waypointDir);
    // The namespace opts in to same-node acceleration (docs/sockmap.md, rule 7), so that the
    // streams and one-shot connections exercise the accelerator across every fault.
    const pods = podManifests([client, server, wpa, wpb], 'chaos-node') as { items: Array<{ kind: string; metadata: Record<string, unknown> }> };
    for (const it of pods.items) if (it.kind === 'Namespace') it.metadata.annotations = { 'kernway.io/sockmap': 'on' };
    writeFileSync(join(agentDir, 'pods.json'), JSON.stringify(pods));
    writeFileSync(join(waypointDir, 'waypoint.json'), JSON.stringify(waypointManifests(server, TARGET_NAMESPACE, ECHO_VIP, 'echo')));
    const agent = new ChaosAgent(lab, env, agentDir, `kw_svc=${opts.svcCapacity},kw_svc_stats=${opts.svcCapacity}`);
    const waypoints = [new ChaosWaypoint(lab, env, wpa, waypointDir, TARGET_NAMESPACE), new ChaosWaypoint(lab, env, wpb, waypointDir, TARGET_NAMESPACE)];
    writeFileSync(join(agentDir, 'services.json'), JSON.stringify(serviceManifests([echoService(server), waypointService([wpa.ipv4])])));
    agent.start();
    waypoints[0]!.start();
    await agent.waitReady(BASE_FRONTENDS);
    // The apps start after the agent, as on a node where kernway runs before the pods: the
    // accelerator learns a listener's mode when it listens (docs/sockmap.md).
    lab.spawn(server, env.node, [traffic, 'server', JSON.stringify({ oneShotPort: PORTS.oneShot, echoPort: PORTS.echo, httpPort: PORTS.http })], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitListening(server.netnsPath, [PORTS.oneShot, PORTS.echo, PORTS.http], 'the server pod', 15_000);
    await waypoints[0]!.waitReady();
    say(`lab ${lab.id}: agent and waypoint ${wpa.name} ready`);
    return { lab, env, client, server, agent, waypoints, agentDir, waypointDir, inService: new Set([waypoints[0]!]), opts, say };
  } catch (e) {
    await lab.destroy();
    throw e;
  }
}

/** Runs the faults in order under load; returns one result per fault. */
export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const say = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), `kernway-chaos-${process.pid}-`));
  const w = await setup(opts, dir, say);
  const undo = w.lab.destroyOnSignals();
  let client: TrafficClient | undefined;
  const results: FaultResult[] = [];
  try {
    const cfg: ClientConfig = {
      seed: opts.seed,
      conn: { host: ECHO_VIP, port: PORTS.oneShot, perSecond: opts.connPerSecond, timeoutMs: 10_000 },
      streams: { host: ECHO_VIP, port: PORTS.echo, count: opts.streams, bytesPerSecond: opts.streamBytesPerSecond, windowBytes: 256 << 10, greeting: true },
      http: { host: WAYPOINT_VIP, port: PORTS.mesh, source: w.client.ipv4, target: { address: ECHO_VIP, port: PORTS.http }, connections: opts.httpConnections, perSecond: opts.httpPerSecond, timeoutMs: 10_000 },
    };
    const load = new TrafficClient(w.lab, w.env, w.client, cfg);
    client = load;
    // Warm up: every kind of load has gone through once before the first fault.
    await until('the load running', 15_000, async () => {
      const c = await load.snap();
      return c.conn.ok > 0 && c.stream.received > 0 && c.http.ok > 0 ? c : undefined;
    }, join(dir, 'client.log'));
    const phases: Array<{ fault: FaultName; a: Counters; b: Counters; r: Awaited<ReturnType<Action>> }> = [];
    for (const fault of opts.faults) {
      say(`fault ${fault}: ${FAULT_TITLES[fault]}`);
      await PREPARE[fault]?.(w);
      const a = await load.snap();
      const sm0 = (await w.agent.status())?.sockmap?.stats;
      let r: Awaited<ReturnType<Action>>;
      try {
        r = await ACTIONS[fault](w);
      } catch (e) {
        r = { notes: [`FAILED: ${errorMessage(e).split('\n')[0]}`], violated: true };
        say(`  ${errorMessage(e)}`);
      }
      await sleep(opts.holdSeconds * 1000);
      // Evidence the streams took the accelerator: the kernel's redirected-bytes counter moved.
      const sm1 = (await w.agent.status())?.sockmap?.stats;
      if (sm0 && sm1) {
        const moved = Object.entries(sm1).filter(([k, v]) => k !== 'redirectedBytes' && v !== (sm0[k] ?? 0)).map(([k, v]) => `${k} +${v - (sm0[k] ?? 0)}`);
        (r.notes ??= []).push(`sockmap redirected ${(((sm1.redirectedBytes ?? 0) - (sm0.redirectedBytes ?? 0)) / (1 << 20)).toFixed(1)} MiB${moved.length ? ` (${moved.join(', ')})` : ''}`);
      }
      const last = fault === opts.faults[opts.faults.length - 1];
      const b = last ? await load.stop() : await load.snap();
      if (last) client = undefined;
      phases.push({ fault, a, b, r });
      say(`  ${formatRow(result(fault, a, b, b, r))}`);
    }
    // A connection or request belongs to the fault during which it started (it may fail later).
    const final = phases[phases.length - 1]?.b;
    for (const p of phases) results.push(result(p.fault, p.a, p.b, final!, p.r));
  } finally {
    client?.kill();
    await w.agent.stop('SIGTERM');
    for (const x of w.waypoints) await x.stop('SIGTERM');
    await w.lab.destroy();
    undo();
    rmSync(dir, { recursive: true, force: true });
  }
  return { seed: opts.seed, options: { ...opts, log: undefined }, results, startedAt: new Date(started).toISOString(), seconds: Math.round((Date.now() - started) / 100) / 10 };
}

/** One fault's figures: counters between a and b; failures (from `all`) by when their connection or request started. */
function result(fault: FaultName, a: Counters, b: Counters, all: Counters, r: Awaited<ReturnType<Action>>): FaultResult {
  const d = delta(a, b);
  const mine = all.failures.filter((f) => f.start >= a.t && f.start < b.t);
  d.conn.failed = mine.filter((f) => f.kind === 'conn').length;
  const http = mine.filter((f) => f.kind === 'http');
  d.http.failed = http.length;
  d.http.byStatus = {};
  for (const f of http) d.http.byStatus[f.code ?? '?'] = (d.http.byStatus[f.code ?? '?'] ?? 0) + 1;
  d.failures = mine.concat(d.failures.filter((f) => f.kind === 'stream'));
  const ran = r.ran !== false;
  return {
    fault, title: FAULT_TITLES[fault], ran, ...d, recoverMs: r.recoverMs, notes: r.notes ?? [],
    met: ran && r.violated !== true && d.conn.failed === 0 && d.bytes.corrupted === 0 && d.bytes.lost === 0 && d.bytes.streamsBroken === 0 && d.http.failed === 0,
  };
}

// ---------------------------------------------------------------- the table

function formatRow(r: FaultResult): string {
  const status = Object.entries(r.http.byStatus).map(([k, v]) => `${k}:${v}`).join(' ');
  return `${r.fault}: conns ${r.conn.attempted}/${r.conn.failed} bytes ${r.bytes.sent}/${r.bytes.corrupted} http ${r.http.sent}/${r.http.failed}${status ? ` (${status})` : ''} recover ${r.recoverMs ?? '-'} ms ${r.met ? 'ok' : r.ran ? 'MISSED' : 'not run'}`;
}

function mb(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${n} B`;
}

/** The report as a Markdown table, then the notes per fault. */
export function formatTable(rep: ChaosReport): string {
  const head = '| fault | connections attempted / failed (slow > 1 s, slowest) | stream bytes sent / corrupted / lost (streams broken) | HTTP sent / failed (by status) / retried | recover | targets |';
  const rows = rep.results.map((r) => {
    const st = Object.entries(r.http.byStatus).map(([k, v]) => `${k}: ${v}`).join(', ');
    return `| ${r.fault} | ${r.conn.attempted} / ${r.conn.failed} (${r.conn.slow}, ${r.conn.maxMs} ms) | ${mb(r.bytes.sent)} / ${r.bytes.corrupted} / ${r.bytes.lost} (${r.bytes.streamsBroken}) | ${r.http.sent} / ${r.http.failed}${st ? ` (${st})` : ''} / ${r.http.retried} | ${r.recoverMs === undefined ? '-' : `${r.recoverMs} ms`} | ${r.met ? 'met' : r.ran ? '**missed**' : 'not run'} |`;
  });
  const notes = rep.results.flatMap((r) => [
    `- **${r.fault}** — ${r.title}.`,
    ...r.notes.map((n) => `  - ${n}`),
    ...(r.failures.length > 0 ? [`  - failures (first 5 of ${r.failures.length}): ${r.failures.slice(0, 5).map((f) => `${f.kind} ${f.why}`).join('; ')}`] : []),
  ]);
  return [`seed ${rep.seed}, ${rep.seconds} s`, '', head, '|---|---|---|---|---|---|', ...rows, '', ...notes, ''].join('\n');
}

// ---------------------------------------------------------------- command line

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, strict: true, allowPositionals: false,
    options: {
      quick: { type: 'boolean' }, seed: { type: 'string' }, 'fuzz-seconds': { type: 'string' }, 'hold-seconds': { type: 'string' },
      faults: { type: 'string' }, json: { type: 'string' }, 'upgrade-object': { type: 'string' },
    },
  });
  const base = values.quick ? QUICK : FULL;
  const num = (name: string, v: string | undefined, dflt: number): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`--${name}`, 'a number >= 0', v);
    return n;
  };
  const faults = (values.faults ?? FAULT_NAMES.join(',')).split(',').map((f) => f.trim());
  for (const f of faults) if (!(FAULT_NAMES as readonly string[]).includes(f)) throw new InvalidArgumentError('--faults', `names from ${FAULT_NAMES.join(', ')}`, f);
  const rep = await runChaos({
    ...base,
    seed: num('seed', values.seed, 1),
    fuzzSeconds: num('fuzz-seconds', values['fuzz-seconds'], base.fuzzSeconds),
    holdSeconds: num('hold-seconds', values['hold-seconds'], base.holdSeconds),
    faults: faults as FaultName[],
    upgradeObject: values['upgrade-object'] ?? UPGRADE_OBJECT,
  });
  process.stdout.write(formatTable(rep));
  if (values.json) writeFileSync(values.json, JSON.stringify(rep, null, 2));
  return rep.results.every((r) => r.met || !r.ran) ? 0 : 1;
}

if (invokedDirectly(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e: unknown) => {
    console.error(`bench/chaos: ${errorMessage(e)}`);
    process.exit(2);
  });
}
