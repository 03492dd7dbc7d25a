/**
 * More Service ports than kw_svc holds: the agent names the problem (KW_MAP_FULL), keeps
 * every frontend it had (and keeps applying their changes), installs new ones until the
 * map is full, and is whole again once Services go.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { Lab, type Pod } from '../../lab/index.js';
import { Agent } from '../../agent/agent.js';
import { validateAgentOptions } from '../../agent/options.js';
import { uninstallAgent } from '../../agent/uninstall.js';
import { serviceObject, sliceObject, writeManifest } from '../../agent/demo/manifests.js';
import { Client, startEcho, type Counts } from '../fixtures/lb-harness.js';

const NODE = 'node-a';
let lab: Lab;
let root: string;
let dir: string;
let bpffs: string;
let pods: Pod[];
let client: Client;
let agent: Agent | undefined;

async function until<T>(what: string, fn: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function svc(name: string, vip: string, backends: Pod[] | string[]) {
  return [
    serviceObject({ name, namespace: 'shop', clusterIPs: [vip], ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
    sliceObject({ name: `${name}-x1`, namespace: 'shop', service: name, ports: [{ name: 'http', port: 8080 }],
      endpoints: backends.map((p) => ({ ip: typeof p === 'string' ? p : p.ipv4, nodeName: NODE })) }),
  ];
}

beforeAll(async () => {
  lab = await Lab.create({ tag: 'mapfull' });
  const c = await lab.addPod('c');
  pods = [await lab.addPod('b1'), await lab.addPod('b2')];
  await Promise.all(pods.map((p) => startEcho(lab, p, p.name, 8080, 5353)));
  client = new Client(lab, c);
  root = mkdtempSync(join(tmpdir(), 'kernway-mapfull-test-'));
  dir = join(root, 'manifests');
  mkdirSync(dir);
  bpffs = join(lab.bpffsDir, 'agent');
});

afterAll(async () => {
  await agent?.drain().catch(() => undefined);
  client?.close();
  try { if (bpffs) uninstallAgent(bpffs); } catch { /* the lab removes the folder anyway */ }
  await lab?.destroy();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('a full kw_svc', () => {
  it('keeps what is there, adds what fits, names the rest, and recovers', async () => {
    writeManifest(dir, 'web.yaml', svc('web', '10.96.0.10', [pods[0]!]));
    agent = new Agent(validateAgentOptions({
      standalone: dir, nodeName: NODE, cgroup: lab.cgroupPath, bpffs, adminSocket: join(root, 'admin.sock'),
      metricsAddress: '127.0.0.1:0', debounceMs: 10, capacities: { kw_svc: 4, kw_svc_stats: 4 },
    }), createLogger('test-agent', 'silent'));
    await agent.start();
    expect(agent.ready).toBe(true);

    // Six more Services, four places: web stays, three of the six go in, three are named.
    writeManifest(dir, 'fill.yaml', Array.from({ length: 6 }, (_, k) => svc(`fill-${k}`, `10.96.1.${k + 1}`, [`10.245.0.${k + 1}`])).flat());
    const a = agent;
    const st = await until('KW_MAP_FULL reported', () => a.status().problems.find((p) => p.code === 'KW_MAP_FULL') ? a.status() : undefined);
    expect(st.frontends).toBe(4);
    expect(st.problems.find((p) => p.code === 'KW_MAP_FULL')!.message).toMatch(/^3 Service ports do not fit map kw_svc \(4 installed\): shop\/fill-\d:80\/TCP/);
    expect(a.ready).toBe(false);
    expect(a.services().find((s) => s.frontend === '10.96.0.10:80/TCP')?.backends).toEqual([`${pods[0]!.ipv4}:8080`]);
    let r = await client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 20 });
    expect(r).toEqual({ counts: { b1: 20 }, errors: {} });

    // Changes to what is installed still apply while the map is full.
    writeManifest(dir, 'web.yaml', svc('web', '10.96.0.10', pods));
    await until('web has two backends', () => (a.services().find((s) => s.frontend === '10.96.0.10:80/TCP')?.backends.length === 2 ? true : undefined));
    r = await client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 40 });
    expect(r.errors).toEqual({});
    expect(Object.keys(r.counts).sort()).toEqual(['b1', 'b2']);
    expect(a.status().frontends).toBe(4);

    // Fewer Services: whole again.
    writeManifest(dir, 'fill.yaml', svc('fill-0', '10.96.1.1', ['10.245.0.1']));
    await until('ready again', () => (a.ready ? true : undefined));
    expect(a.status().problems).toEqual([]);
    expect(a.services().map((s) => s.frontend).sort()).toEqual(['10.96.0.10:80/TCP', '10.96.1.1:80/TCP']);

    // A swap on a full map: every installed fill Service goes and as many others come. New
    // frontends are written before old ones go, so the agent removes first (whatever order
    // the table iterates in), and nothing is left out.
    const fill = (ks: number[]): void => { writeManifest(dir, 'fill.yaml', ks.map((k) => svc(`fill-${k}`, `10.96.1.${k + 1}`, [`10.245.0.${k + 1}`])).flat()); };
    fill([0, 1, 2]);
    await until('full and ready', () => (a.ready && a.status().frontends === 4 ? true : undefined));
    fill([3, 4, 5]);
    await until('the swap applied', () => (a.services().some((s) => s.frontend === '10.96.1.6:80/TCP') ? true : undefined));
    await until('ready after the swap', () => (a.ready ? true : undefined));
    expect(a.status().problems).toEqual([]);
    expect(a.services().map((s) => s.frontend).sort()).toEqual(['10.96.0.10:80/TCP', '10.96.1.4:80/TCP', '10.96.1.5:80/TCP', '10.96.1.6:80/TCP']);
    r = await client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 20 });
    expect(r.errors).toEqual({});
  });
});
