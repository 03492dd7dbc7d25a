/**
 * Same-node acceleration inside the agent (standalone mode): pods in the manifests
 * become local pods, sending accelerated only to pods that opted in (rule 7), their
 * annotations opt them in and out live, the counters are on /metrics and in the status,
 * and --sockmap off keeps new connections on the stack.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { Lab, type Pod } from '../../lab/index.js';
import { Agent } from '../../agent/agent.js';
import { validateAgentOptions } from '../../agent/options.js';
import { uninstall } from '../../agent/datapath/sock-lb.js';
import { writeManifest } from '../../agent/demo/manifests.js';
import { Server, runClient, waitFor } from './harness.js';

const NODE = 'node-a';
let lab: Lab;
let a: Pod, b: Pod;
let root: string;
let dir: string;
let bpffs: string;
let server: Server;
const agents: Agent[] = [];

function podObject(p: Pod, annotations?: Record<string, string>) {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: p.name, namespace: 'shop', ...(annotations ? { annotations } : {}) },
    spec: { nodeName: NODE, containers: [{ name: 'c', image: 'x' }] },
    status: { phase: 'Running', podIP: p.ipv4, podIPs: [{ ip: p.ipv4 }, { ip: p.ipv6 }] },
  };
}

function newAgent(sockmap?: string): Agent {
  const opts = validateAgentOptions({
    standalone: dir, nodeName: NODE, cgroup: lab.cgroupPath, bpffs, adminSocket: join(root, `admin-${agents.length}.sock`),
    metricsAddress: '127.0.0.1:0', debounceMs: 10, sockmap,
  });
  const agent = new Agent(opts, createLogger('test-agent', 'silent'));
  agents.push(agent);
  return agent;
}

beforeAll(async () => {
  lab = await Lab.create({ tag: 'smagent' });
  a = await lab.addPod('a');
  b = await lab.addPod('b');
  root = mkdtempSync(join(tmpdir(), 'kernway-sockmap-agent-'));
  dir = join(root, 'manifests');
  mkdirSync(dir);
  bpffs = join(lab.bpffsDir, 'agent');
  writeManifest(dir, 'pods.yaml', [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } }, podObject(a), podObject(b)]);
});

afterAll(async () => {
  for (const ag of agents) await ag.drain().catch(() => undefined);
  await server?.stop();
  try { uninstall(bpffs); } catch { /* the lab removes the folder anyway */ }
  await lab?.destroy();
  if (root) rmSync(root, { recursive: true, force: true });
});

const targets = () => [{ host: b.ipv4, port: 7001 }, { host: b.ipv6, port: 7001 }];
const shop = (annotations?: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', ...(annotations ? { annotations } : {}) } });

describe('sockmap in the agent', () => {
  it('adds pods of the manifests, redirects only to pods that opted in, follows the annotations, and reports on /metrics and status', async () => {
    const agent = newAgent();
    await agent.start();
    // The server listens once the programs are attached: a listener that predates them
    // is of unknown blocking mode, and its sockets would stay on the stack (rule 5).
    server = await Server.start(lab, b, '::', [7001]);
    const st = agent.status().sockmap!;
    expect(st).toMatchObject({ enabled: true, localPods: 4, localPodsOff: 0, localPodsTarget: 0 });

    // Two pods that say nothing: never accelerated (rule 7), not even added.
    const res0 = await runClient(lab, a, { targets: targets(), conns: 20, concurrency: 10, min: 1, max: 1 << 20 });
    expect(res0.failures).toEqual([]);
    const s0 = agent.status().sockmap!.stats;
    expect(s0.inserts).toBe(0);
    expect(s0.skippedNotOptedIn).toBe(40);
    expect(await agent.metrics.text()).toMatch(/^kernway_sockmap_not_opted_in_sockets_total 40$/m);

    // The server's pod opts in: what the client sends is redirected, what it receives takes the stack.
    writeManifest(dir, 'pods.yaml', [shop(), podObject(a), podObject(b, { 'kernway.io/sockmap': 'on' })]);
    await waitFor(() => agent.status().sockmap!.localPodsTarget === 2, 'the annotation to reach the pod map');
    const half = await runClient(lab, a, { targets: targets(), conns: 20, concurrency: 10, min: 1, max: 1 << 20 });
    expect(half.failures).toEqual([]);
    const sh = agent.status().sockmap!.stats;
    expect(sh.inserts).toBe(40);
    expect(sh.notOptedIn).toBe(20); // the client's sockets
    expect(sh.targets).toBe(20);    // the server's
    expect(sh.redirectedBytes).toBeGreaterThanOrEqual(0.9 * half.sent);
    expect(sh.redirectedBytes).toBeLessThanOrEqual(half.sent + 20 * 64);
    expect(await agent.metrics.text()).toMatch(/^kernway_sockmap_receivers_total\{result="not_opted_in"\} 20$/m);

    // The namespace opts in: both pods' new sockets may become targets.
    writeManifest(dir, 'pods.yaml', [shop({ 'kernway.io/sockmap': 'on' }), podObject(a), podObject(b)]);
    await waitFor(() => agent.status().sockmap!.localPodsTarget === 4, 'the annotation to reach the pod map');
    const res = await runClient(lab, a, { targets: targets(), conns: 20, concurrency: 10, min: 1, max: 1 << 20 });
    expect(res.failures).toEqual([]);
    const s1 = agent.status().sockmap!.stats;
    expect(s1.inserts).toBe(80);
    expect(s1.notOptedIn).toBe(20);
    expect(s1.redirectedBytes - sh.redirectedBytes).toBeGreaterThanOrEqual(0.9 * (res.sent + res.received));

    const text = await agent.metrics.text();
    expect(text).toMatch(/^kernway_sockmap_redirected_bytes_total [1-9]\d*$/m);
    expect(text).toMatch(/^kernway_sockmap_inserts_total 80$/m);
    expect(text).toMatch(/^kernway_sockmap_enabled 1$/m);

    // The server's pod opts out ("off" wins over the namespace's "on"): the agent picks it up from the manifests.
    writeManifest(dir, 'pods.yaml', [shop({ 'kernway.io/sockmap': 'on' }), podObject(a), podObject(b, { 'kernway.io/sockmap': 'off' })]);
    await waitFor(() => agent.status().sockmap!.localPodsOff === 2, 'the annotation to reach the pod map');
    const res2 = await runClient(lab, a, { targets: targets(), conns: 10, concurrency: 10, min: 1, max: 1 << 20 });
    expect(res2.failures).toEqual([]);
    const s2 = agent.status().sockmap!.stats;
    expect(s2.inserts).toBe(s1.inserts);
    expect(s2.skippedOff - s1.skippedOff).toBe(20);
    await agent.drain();
  });

  it('--sockmap off: new connections take the stack; a restart with it on accelerates again', async () => {
    writeManifest(dir, 'pods.yaml', [shop({ 'kernway.io/sockmap': 'on' }), podObject(a), podObject(b)]);
    const off = newAgent('off');
    await off.start();
    expect(off.status().sockmap!.enabled).toBe(false);
    const s0 = off.status().sockmap!.stats;
    const res = await runClient(lab, a, { targets: targets(), conns: 10, concurrency: 10, min: 1, max: 1 << 20 });
    expect(res.failures).toEqual([]);
    expect(off.status().sockmap!.stats.inserts).toBe(s0.inserts);
    await off.drain();

    const on = newAgent('on');
    await on.start();
    expect(on.status().sockmap!.enabled).toBe(true);
    const res2 = await runClient(lab, a, { targets: targets(), conns: 10, concurrency: 10, min: 1, max: 1 << 20 });
    expect(res2.failures).toEqual([]);
    expect(on.status().sockmap!.stats.inserts - s0.inserts).toBe(20);
    await on.drain();
  });

  it('rejects a bad --sockmap value, naming the option', () => {
    expect(() => newAgent('maybe')).toThrow(/--sockmap: expected on or off/);
  });
});
