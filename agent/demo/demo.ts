/**
 * `kernway demo`: the socket load balancer on one machine, end to end.
 *
 * Builds a lab (a node namespace, four pods, a cgroup), starts echo backends in three
 * pods, writes standalone manifests for a Service, runs `kernway agent` on them, and
 * from the client pod shows connections to the ClusterIP spread over the backends;
 * then hands the HTTP port of a Service whose namespace uses a waypoint to `kernway
 * waypoint` (plain curl, an HTTPRoute canary, the access log and metrics: handoff.ts) next
 * to a Service balanced in the kernel; then removes a backend and shows the spread change,
 * prints what the kernel's maps hold and a few lines of /metrics, and removes everything
 * it made.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { KernwayError } from '../../common/errors.js';
import { projectRoot } from '../../common/version.js';
import { Lab, type Pod } from '../../lab/index.js';
import { freePort } from '../../lab/system.js';
import { adminRequest } from '../admin/client.js';
import type { KernelService } from '../datapath/inspect.js';
import { serviceObject, sliceObject, writeManifest } from './manifests.js';
import { PLAIN_WEB_VIP, WAYPOINT_METRICS, WEB_VIP, accessLines, answeredBy, curlMany, handoffObjects, waypointArgs, type HandoffPods } from './handoff.js';

const VIP = '10.96.0.10';
const NODE_NAME = 'demo-node';
const CONNECTIONS = 300;

type Say = (line: string) => void;

function fixture(name: string): string {
  return join(projectRoot(), 'test', 'fixtures', name);
}

function waitLine(child: ChildProcess, match: (l: string) => boolean, what: string, ms = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => { rl.close(); reject(new KernwayError('KW_DEMO', `${what}: nothing within ${ms} ms`)); }, ms);
    rl.on('line', (l) => { if (match(l)) { clearTimeout(timer); rl.close(); resolve(l); } });
    child.once('exit', (code) => { clearTimeout(timer); reject(new KernwayError('KW_DEMO', `${what}: exited with ${code}`)); });
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch { /* not yet */ }
    if (Date.now() > end) throw new KernwayError('KW_DEMO', `${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function bar(n: number, total: number): string {
  return '#'.repeat(Math.round((40 * n) / Math.max(total, 1)));
}

function manifests(dir: string, backends: Pod[]): void {
  writeManifest(dir, 'echo.yaml', [
    serviceObject({ name: 'echo', namespace: 'demo', clusterIPs: [VIP], ports: [{ name: 'tcp', port: 80, targetPort: 'echo' }] }),
    sliceObject({
      name: 'echo-abc12', namespace: 'demo', service: 'echo', ports: [{ name: 'tcp', port: 8080 }],
      endpoints: backends.map((p) => ({ ip: p.ipv4, nodeName: NODE_NAME })),
    }),
  ]);
}

export async function runDemo(say: Say = (l) => console.log(l)): Promise<void> {
  const t0 = Date.now();
  const main = fileURLToPath(new URL('../../cli/main.js', import.meta.url));
  // Any signal, at any moment (even while the lab is being made): the agent is killed,
  // the lab and the temporary folder removed, then the process exits (130 / 143 / 129).
  const made: { lab?: Lab; creating?: Promise<Lab>; dir?: string } = {};
  let agent: ChildProcess | undefined;
  let waypoint: ChildProcess | undefined;
  const cleanup = async (): Promise<void> => {
    for (const c of [agent, waypoint]) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    const l = made.lab ?? (await made.creating?.catch(() => undefined));
    await l?.destroy();
    if (made.dir) rmSync(made.dir, { recursive: true, force: true });
  };
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (signalled) return;
    signalled = true;
    say(`== ${sig}: stopping the agent, removing the lab`);
    void cleanup().finally(() => process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGHUP' ? 1 : 15)));
  };
  const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const sig of SIGNALS) process.on(sig, onSignal);
  const undoSignals = (): void => { for (const sig of SIGNALS) process.off(sig, onSignal); };
  const dir = (made.dir = mkdtempSync(join(tmpdir(), 'kernway-demo-')));
  made.creating = Lab.create({ tag: 'demo' });
  const lab = (made.lab = await made.creating);
  const bpffs = join(lab.bpffsDir, 'agent');
  try {
    say(`== a node in miniature: namespace ${lab.nodeNs}, cgroup ${lab.cgroupPath}`);
    const client = await lab.addPod('client');
    const backends = [await lab.addPod('echo-1'), await lab.addPod('echo-2'), await lab.addPod('echo-3')];
    for (const p of [client, ...backends]) say(`   pod ${p.name.padEnd(7)} ${p.ipv4}`);
    await Promise.all(backends.map(async (p) => {
      const child = lab.spawn(p, process.execPath, [fixture('echo-server.mjs'), p.name, '8080', '5353']);
      await waitLine(child, (l) => l === 'ready', `echo server in ${p.name}`);
    }));
    say(`== echo servers listen on :8080 in ${backends.map((p) => p.name).join(', ')}`);
    const hp: HandoffPods = { client, wp: await lab.addPod('wp'), v1: await lab.addPod('web-v1'), v2: await lab.addPod('web-v2') };
    for (const p of [hp.wp, hp.v1, hp.v2]) say(`   pod ${p.name.padEnd(7)} ${p.ipv4}`);
    await Promise.all([hp.v1, hp.v2].map(async (p) => {
      const child = lab.spawn(p, process.execPath, [fixture('http-echo.mjs'), '8080'], { env: { ...process.env, POD_NAME: p.name } });
      await waitLine(child, (l) => l.startsWith('listening'), `HTTP server in ${p.name}`);
    }));
    say(`== HTTP servers listen on :8080 in ${hp.v1.name}, ${hp.v2.name} (they answer with their pod's name)`);

    manifests(dir, backends);
    writeManifest(dir, 'mesh.yaml', handoffObjects(NODE_NAME, hp));
    say(`== manifests in ${dir}: Service demo/echo ${VIP}:80 -> targetPort "echo" (8080), EndpointSlice with 3 endpoints`);
    say(`   mesh.yaml: namespace shop labelled kernway.io/use-waypoint: wp; Gateway shop/wp (gatewayClassName kernway-waypoint, listener mesh 15019/kernway.io/mesh);`);
    say(`   Service shop/web ${WEB_VIP}:80 (port "http") with HTTPRoute canary: x-canary: yes -> web-v2, otherwise web-v1 80 / web-v2 20;`);
    say(`   Service demo/web ${PLAIN_WEB_VIP}:80 on the same pods, in a namespace without the label`);
    const metricsPort = await freePort();
    const adminSocket = join(dir, 'admin.sock');
    const agentArgs = ['agent', '--standalone', dir, '--node-name', NODE_NAME, '--cgroup', lab.cgroupPath, '--bpffs', bpffs,
      '--admin-socket', adminSocket, '--metrics-address', `127.0.0.1:${metricsPort}`];
    say(`== kernway ${agentArgs.join(' ')}`);
    agent = spawn(process.execPath, [main, ...agentArgs], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, KERNWAY_LOG_LEVEL: 'warn' } });
    let agentErr = '';
    agent.stderr!.setEncoding('utf8').on('data', (d: string) => { agentErr += d; });
    const metricsUrl = `http://127.0.0.1:${metricsPort}`;
    await until('agent ready', async () => {
      if (agent!.exitCode !== null) throw new KernwayError('KW_DEMO', `the agent exited (${agent!.exitCode}): ${agentErr}`);
      return (await fetch(`${metricsUrl}/readyz`)).ok ? true : undefined;
      // Loading the agent's modules (client-node among them) alone takes seconds on a loaded machine.
    }, 30_000).catch((e: Error) => { throw new KernwayError('KW_DEMO', `${e.message}\n${agentErr}`); });
    say('   agent ready: programs attached to the lab cgroup, maps pinned under ' + bpffs);
    say(`== kernway ${waypointArgs(dir).join(' ')}   (in pod wp)`);
    let waypointOut = '';
    waypoint = lab.spawn(hp.wp, process.execPath, [main, ...waypointArgs(dir)], { env: { ...process.env, KERNWAY_LOG_LEVEL: 'warn' } });
    waypoint.stdout!.setEncoding('utf8').on('data', (d: string) => { waypointOut += d; });
    waypoint.stderr!.setEncoding('utf8').on('data', (d: string) => { waypointOut += d; });
    const inPod = async (p: Pod, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => lab.exec(p, 'curl', ['-s', '--max-time', '5', ...args], { timeoutMs: 30_000 });
    await until('waypoint ready', async () => {
      if (waypoint!.exitCode !== null) throw new KernwayError('KW_DEMO', `the waypoint exited (${waypoint!.exitCode}): ${waypointOut}`);
      return (await inPod(hp.wp, ['-f', '-o', '/dev/null', `http://${WAYPOINT_METRICS}/readyz`])).code === 0 ? true : undefined;
    }, 30_000).catch((e: Error) => { throw new KernwayError('KW_DEMO', `${e.message}\n${waypointOut}`); });
    say('   waypoint ready: mesh port 15019 in pod wp');

    const lb = lab.spawn(client, process.execPath, [fixture('lb-client.mjs')]);
    const rl = createInterface({ input: lb.stdout! });
    const answers: Array<(v: Record<string, unknown>) => void> = [];
    rl.on('line', (l) => answers.shift()?.(JSON.parse(l) as Record<string, unknown>));
    const ask = (cmd: Record<string, unknown>): Promise<Record<string, unknown>> =>
      new Promise((resolve) => { answers.push(resolve); lb.stdin!.write(JSON.stringify(cmd) + '\n'); });

    const spread = async (title: string): Promise<void> => {
      const r = (await ask({ op: 'tcp', host: VIP, port: 80, n: CONNECTIONS, concurrency: 16 })) as { counts: Record<string, number>; errors: Record<string, number> };
      say(`== ${title}: ${CONNECTIONS} connections from pod client to ${VIP}:80`);
      for (const name of Object.keys(r.counts).sort()) say(`   ${name.padEnd(7)} ${String(r.counts[name]).padStart(4)} ${bar(r.counts[name]!, CONNECTIONS)}`);
      for (const [code, n] of Object.entries(r.errors)) say(`   error ${code}: ${n}`);
    };
    const peer = (await ask({ op: 'peer', host: VIP, port: 80 })) as { remoteAddress: string; remotePort: number; greeting: string };
    say(`== one connection: answered by ${peer.greeting}; getpeername() says ${peer.remoteAddress}:${peer.remotePort}`);
    await spread('spread over 3 backends');

    const services = async (): Promise<string> => {
      const child = spawn(process.execPath, [main, 'services', '--admin-socket', adminSocket], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
      child.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d; });
      await new Promise((r) => child.once('close', r));
      return out.trimEnd();
    };
    say(`== the hand-off: plain curl in pod client to http://${WEB_VIP}/ (the kernel sends the connection to the waypoint)`);
    const canary = await inPod(client, ['-H', 'x-canary: yes', ...curlMany(`http://${WEB_VIP}/canary`, 3)]);
    if (canary.code !== 0) throw new KernwayError('KW_DEMO', `curl through the waypoint failed (${canary.code}): ${canary.stderr}\n${waypointOut}`);
    say(`   curl -H 'x-canary: yes' (3 requests): ${JSON.stringify(answeredBy(canary.stdout))}   the header match`);
    const split = await inPod(client, curlMany(`http://${WEB_VIP}/split`, 100));
    const counts = answeredBy(split.stdout);
    say(`   curl without the header (100 requests, one connection): the weighted split 80/20`);
    for (const name of Object.keys(counts).sort()) say(`   ${name.padEnd(7)} ${String(counts[name]).padStart(4)} ${bar(counts[name]!, 100)}`);
    const plain = await inPod(client, ['-H', 'x-canary: yes', '-H', 'connection: close', ...curlMany(`http://${PLAIN_WEB_VIP}/plain`, 20)]);
    say(`== next to it, Service demo/web ${PLAIN_WEB_VIP}:80 (no waypoint): curl -H 'x-canary: yes', 20 connections balanced in the kernel, no route applied`);
    say(`   ${JSON.stringify(answeredBy(plain.stdout))}`);
    // The access log is flushed every second.
    await until('the access log', async () => (accessLines(waypointOut).some((l) => l.includes('/split99')) ? true : undefined), 10_000)
      .catch(() => undefined);
    const logged = accessLines(waypointOut);
    say(`== the waypoint's access log (${logged.length} lines; none for demo/web), three of them:`);
    for (const l of [logged[0], logged.find((l) => l.includes('web-v1')), logged.find((l) => l.includes('/split') && l.includes('web-v2'))]) if (l) say(`   ${l}`);
    const wpMetrics = await inPod(hp.wp, [`http://${WAYPOINT_METRICS}/metrics`]);
    say(`== the waypoint's metrics (http://${WAYPOINT_METRICS}/metrics in pod wp)`);
    for (const l of wpMetrics.stdout.split('\n').filter((l) => /^(kernway_waypoint_requests_total|istio_requests_total)\{/.test(l)).slice(0, 6)) say(`   ${l}`);

    say('== kernway services (read from the kernel maps)');
    for (const l of (await services()).split('\n')) say(`   ${l}`);

    const t1 = performance.now();
    manifests(dir, [backends[0]!, backends[2]!]);
    say(`== echo-2 removed from the EndpointSlice (file rewritten)`);
    const dropped = (list: KernelService[]): boolean => !list.some((s) => s.backends.some((b) => b.startsWith(`${backends[1]!.ipv4}:`)));
    await until('the kernel to drop echo-2', async () => (dropped(await adminRequest<KernelService[]>(adminSocket, '/v1/services', { timeoutMs: 1000 })) ? true : undefined));
    say(`   the maps changed ${(performance.now() - t1).toFixed(0)} ms after the file was written`);
    await spread('spread over the 2 remaining backends');

    const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
    say('== a few lines of /metrics');
    const keep = /^kernway_(lb_connections_(balanced|refused)_total|bpf_map_entries\{map="kw_(svc|backend|slot)"|reconcile_duration_seconds_(count|sum)|lb_frontends)/;
    for (const l of metrics.split('\n').filter((l) => keep.test(l)).slice(0, 12)) say(`   ${l}`);

    lb.stdin!.end();
    waypoint.kill('SIGTERM');
    agent.kill('SIGTERM');
    await new Promise((r) => (agent!.exitCode !== null ? r(null) : agent!.once('exit', r)));
    say('== agent stopped with SIGTERM (programs stay attached until uninstall)');
    const args = ['uninstall', '--cgroup', lab.cgroupPath, '--bpffs', bpffs];
    const u = spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    u.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    await new Promise((r) => u.once('close', r));
    say(`== kernway ${args.join(' ')}`);
    say(`   ${out.trim()}`);
  } finally {
    if (!signalled) {
      await cleanup();
      undoSignals();
    }
  }
  say(`== lab removed; done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
