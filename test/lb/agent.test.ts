/**
 * The agent in standalone mode, in the real kernel: manifests in a directory become
 * balanced connections; changes apply live; bad manifests are reported (file, field)
 * while the last good state keeps working; a stopped agent leaves traffic flowing and a
 * restarted one adopts the maps; uninstall removes everything.
 */
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { Lab, type Pod } from '../../lab/index.js';
import { Agent } from '../../agent/agent.js';
import { validateAgentOptions } from '../../agent/options.js';
import { openPinnedMaps, SOCK_LB_PROGRAMS } from '../../agent/datapath/sock-lb.js';
import { uninstallAgent } from '../../agent/uninstall.js';
import { readKernelServices, type KernelService } from '../../agent/datapath/inspect.js';
import { adminRequest } from '../../agent/admin/client.js';
import { formatServices } from '../../cli/services.js';
import { serviceObject, sliceObject, writeManifest } from '../../agent/demo/manifests.js';
import { Client, startEcho, type Counts } from '../fixtures/lb-harness.js';

const NODE = 'node-a';
let lab: Lab;
let dir: string;
let bpffs: string;
let pods: Pod[];
let client: Client;
const agents: Agent[] = [];

function newAgent(): Agent {
  const opts = validateAgentOptions({
    standalone: dir, nodeName: NODE, cgroup: lab.cgroupPath, bpffs, adminSocket: join(dir, '..', `admin-${agents.length}.sock`),
    metricsAddress: '127.0.0.1:0', debounceMs: 10,
  });
  const a = new Agent(opts, createLogger('test-agent', 'silent'));
  agents.push(a);
  return a;
}

async function until<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function web(backends: Pod[]) {
  return [
    serviceObject({ name: 'web', namespace: 'shop', clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80, targetPort: 'http' }] }),
    sliceObject({ name: 'web-x1', namespace: 'shop', service: 'web', ports: [{ name: 'http', port: 8080 }],
      endpoints: backends.map((p) => ({ ip: p.ipv4, nodeName: NODE })) }),
  ];
}

const backendsOf = (a: Agent, frontend: string): string[] | undefined => a.services().find((s) => s.frontend === frontend)?.backends;

beforeAll(async () => {
  lab = await Lab.create({ tag: 'lbagent' });
  const c = await lab.addPod('c');
  pods = [await lab.addPod('b1'), await lab.addPod('b2'), await lab.addPod('b3')];
  await Promise.all(pods.map((p) => startEcho(lab, p, p.name, 8080, 5353)));
  client = new Client(lab, c);
  const root = mkdtempSync(join(tmpdir(), 'kernway-agent-test-'));
  dir = join(root, 'manifests');
  (await import('node:fs')).mkdirSync(dir);
  bpffs = join(lab.bpffsDir, 'agent');
  writeManifest(dir, 'web.yaml', web(pods));
});

afterAll(async () => {
  for (const a of agents) await a.drain().catch(() => undefined);
  client?.close();
  try { if (bpffs) uninstallAgent(bpffs); } catch { /* the lab removes the folder anyway */ }
  await lab?.destroy();
  if (dir) rmSync(join(dir, '..'), { recursive: true, force: true });
});

describe('kernway agent --standalone', () => {
  let agent: Agent;

  it('balances the Services of the manifest directory, as the kernel maps show', async () => {
    agent = newAgent();
    await agent.start();
    expect(agent.ready).toBe(true);
    expect(agent.services()).toMatchObject([{ frontend: '10.96.0.10:80/TCP', service: 'shop/web', portName: 'http', algorithm: 'random',
      backends: pods.map((p) => `${p.ipv4}:8080`).sort() }]);
    const r = await client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 60 });
    expect(r.errors).toEqual({});
    expect(Object.keys(r.counts).sort()).toEqual(['b1', 'b2', 'b3']);
    const counters = agent.counters();
    expect(counters.find((c) => c.service === 'shop/web')?.balanced).toBeGreaterThanOrEqual(60);
  });

  it('serves /metrics, /healthz, /readyz and the admin API (0600) with what the kernel holds', async () => {
    const { port } = agent.metricsAddress()!;
    const base = `http://127.0.0.1:${port}`;
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const text = await (await fetch(`${base}/metrics`)).text();
    const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
    expect(value(/^kernway_lb_connections_balanced_total\{service="shop\/web"\} (\d+)$/m)).toBeGreaterThanOrEqual(60);
    expect(value(/^kernway_bpf_map_entries\{map="kw_svc"\} (\d+)$/m)).toBe(1);
    expect(value(/^kernway_bpf_map_entries\{map="kw_backend"\} (\d+)$/m)).toBe(3);
    expect(value(/^kernway_bpf_map_max_entries\{map="kw_svc"\} (\d+)$/m)).toBe(65536);
    expect(value(/^kernway_reconcile_duration_seconds_count\{trigger="start"\} (\d+)$/m)).toBe(1);
    expect(text).toMatch(/^# HELP kernway_lb_connections_refused_total /m);
    // Each scrape reads the kernel's counters anew (one read shared by both families of a scrape; the family written in parts).
    const before = value(/^kernway_lb_connections_balanced_total\{service="shop\/web"\} (\d+)$/m);
    expect((await client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 10 })).errors).toEqual({});
    const [a, b] = await Promise.all([1, 2].map(async () => (await fetch(`${base}/metrics`)).text()));
    for (const t of [a!, b!]) expect(Number(/^kernway_lb_connections_balanced_total\{service="shop\/web"\} (\d+)$/m.exec(t)?.[1])).toBeGreaterThanOrEqual(before + 10);
    expect((await client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 5 })).errors).toEqual({});
    const after = await (await fetch(`${base}/metrics`)).text();
    expect(Number(/^kernway_lb_connections_balanced_total\{service="shop\/web"\} (\d+)$/m.exec(after)?.[1])).toBeGreaterThanOrEqual(before + 15);

    const socket = agent.opts.adminSocket;
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const viaAdmin = await adminRequest<KernelService[]>(socket, '/v1/services');
    expect(viaAdmin).toEqual(agent.services());
    const table = formatServices(viaAdmin);
    expect(table.split('\n')[0]).toMatch(/^FRONTEND\s+SERVICE\s+ALGORITHM\s+BACKENDS\s+BALANCED\s+REFUSED$/);
    expect(table).toContain('10.96.0.10:80/TCP');
    expect(table).toContain('shop/web:http');
    for (const p of pods) expect(table).toContain(`${p.ipv4}:8080`);
    // The same, read from the pins without the agent.
    const maps = openPinnedMaps(bpffs);
    try {
      expect(readKernelServices(maps).map((s) => s.backends)).toEqual(viaAdmin.map((s) => s.backends));
    } finally {
      for (const m of Object.values(maps)) m.close?.();
    }
  });

  it('applies a changed EndpointSlice live', async () => {
    writeManifest(dir, 'web.yaml', web([pods[0]!, pods[2]!]));
    await until('b2 gone from the maps', () => backendsOf(agent, '10.96.0.10:80/TCP')?.length === 2 || undefined);
    const r = await client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 60 });
    expect(Object.keys(r.counts).sort()).toEqual(['b1', 'b3']);
  });

  it('bad manifests: a clear problem naming the file and field, the agent keeps running with the last good state', async () => {
    const good = backendsOf(agent, '10.96.0.10:80/TCP');
    // A malformed YAML file: its previous content (web) stays in force.
    writeFileSync(join(dir, 'web.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: web\n  ports: [\n');
    // A Service with a bad port, in a file of its own.
    writeManifest(dir, 'bad-port.yaml', [serviceObject({ name: 'bad', namespace: 'shop', clusterIPs: ['10.96.0.11'], ports: [{ port: 70000 }] })]);
    // An EndpointSlice for a Service nobody defined.
    writeManifest(dir, 'orphan.yaml', [sliceObject({ name: 'ghost-1', namespace: 'shop', service: 'ghost', ports: [{ port: 80 }], endpoints: [{ ip: '10.244.0.99' }] })]);
    const problems = await until('three problems reported', () => {
      const p = agent.status().problems;
      return p.length >= 3 ? p : undefined;
    });
    const byFile = (f: string) => problems.find((p) => p.file.endsWith(f));
    expect(byFile('web.yaml')).toMatchObject({ code: expect.stringMatching(/^KW_/) });
    expect(byFile('web.yaml')!.message).toMatch(/web\.yaml|line|YAML|flow/i);
    expect(byFile('bad-port.yaml')).toMatchObject({ object: 'Service shop/bad', field: 'spec.ports[0].port' });
    expect(byFile('bad-port.yaml')!.message).toMatch(/70000/);
    expect(byFile('orphan.yaml')).toMatchObject({ object: 'EndpointSlice shop/ghost-1' });
    expect(byFile('orphan.yaml')!.message).toMatch(/shop\/ghost/);
    expect(agent.status().state).toBe('running');
    expect(backendsOf(agent, '10.96.0.10:80/TCP')).toEqual(good);
    expect(backendsOf(agent, '10.96.0.11:70000/TCP')).toBeUndefined();
    const r = await client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 30 });
    expect(r.errors).toEqual({});
    // Fixed files are taken again.
    rmSync(join(dir, 'bad-port.yaml'));
    rmSync(join(dir, 'orphan.yaml'));
    writeManifest(dir, 'web.yaml', web(pods));
    await until('problems resolved', () => (agent.status().problems.length === 0 && backendsOf(agent, '10.96.0.10:80/TCP')?.length === 3) || undefined);
  });

  it('a Service whose endpoints all go refuses connections at once, and takes them back', async () => {
    writeManifest(dir, 'web.yaml', web([]));
    await until('no backend', () => backendsOf(agent, '10.96.0.10:80/TCP')?.length === 0 || undefined);
    const r = await client.send<{ results: Array<{ code: string; ms: number }> }>({ op: 'refused', host: '10.96.0.10', port: 80, n: 3 });
    for (const x of r.results) expect(x.code).toBe('ECONNREFUSED');
    expect(agent.counters().find((c) => c.service === 'shop/web')?.refused).toBeGreaterThanOrEqual(3);
    writeManifest(dir, 'web.yaml', web(pods));
    await until('backends back', () => backendsOf(agent, '10.96.0.10:80/TCP')?.length === 3 || undefined);
  });

  it('a stopped agent leaves traffic flowing; a new one adopts the maps without rewriting them', async () => {
    const before = agent.services();
    await agent.drain();
    const during = await client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 60 });
    expect(during.errors).toEqual({});
    expect(Object.keys(during.counts).sort()).toEqual(['b1', 'b2', 'b3']);
    const second = newAgent();
    let firstResult: { writes: number; deletes: number } | undefined;
    second.onReconcile((ev) => { firstResult ??= ev.result; });
    await second.start();
    expect(second.status().reusedMaps).toBe(true);
    expect(firstResult).toMatchObject({ writes: 0, deletes: 0 });
    expect(second.services().map((s) => s.backends)).toEqual(before.map((s) => s.backends));
    agent = second;
  });

  it('uninstall detaches the programs and removes the pins: the ClusterIP is no longer balanced', async () => {
    await agent.drain();
    const r = uninstallAgent(bpffs, lab.cgroupPath);
    // Ours (the eight socket load balancer links) and whatever else the agent linked there.
    for (const [prog] of SOCK_LB_PROGRAMS) expect(r.detached.some((d) => d.endsWith(`/${prog}`))).toBe(true);
    expect(r.unpinned).toEqual(expect.arrayContaining(['kw_svc', 'kw_slot', 'kw_backend', 'kw_maglev', 'kw_svc_stats', 'kw_affinity', 'kw_revnat'].map((m) => `maps/${m}`)));
    expect(existsSync(bpffs)).toBe(false);
    const after = await client.send<{ results: Array<{ code: string }> }>({ op: 'refused', host: '10.96.0.10', port: 80, n: 1 });
    // Nothing routes 10.96.0.10 in the pod: without the program the connect goes nowhere.
    expect(after.results[0]!.code).not.toBe('OK');
    expect(after.results[0]!.code).not.toBe('ECONNREFUSED');
  });
});
