/**
 * `kernway agent`, `services` and `uninstall` as a user runs them (the built CLI in
 * dist/, as `make test` builds it): options checked at the door, SIGTERM leaves the
 * programs attached and the maps pinned, a second SIGTERM forces, uninstall removes all.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KERNWAY_MAIN as MAIN, runKernway as kernway, startAgentProcess, type AgentProcess } from '../fixtures/cli.js';
import { Lab, type Pod } from '../../lab/index.js';
import { serviceObject, sliceObject, writeManifest } from '../../agent/demo/manifests.js';
import { Client, startEcho, type Counts } from '../fixtures/lb-harness.js';

let lab: Lab;
let root: string;
let dir: string;
let bpffs: string;
let pods: Pod[];
let client: Client;
const children: ChildProcess[] = [];

async function startAgent(name: string): Promise<AgentProcess> {
  const a = await startAgentProcess(['--standalone', dir, '--node-name', 'node-a', '--cgroup', lab.cgroupPath, '--bpffs', bpffs], join(root, `${name}.sock`));
  children.push(a.child);
  return a;
}

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (make build, or npx tsc -p tsconfig.json)`);
  lab = await Lab.create({ tag: 'lbcli' });
  const c = await lab.addPod('c');
  pods = [await lab.addPod('b1'), await lab.addPod('b2')];
  await Promise.all(pods.map((p) => startEcho(lab, p, p.name, 8080, 5353)));
  client = new Client(lab, c);
  root = mkdtempSync(join(tmpdir(), 'kernway-cli-test-'));
  dir = join(root, 'manifests');
  mkdirSync(dir);
  bpffs = join(lab.bpffsDir, 'agent');
  writeManifest(dir, 'web.yaml', [
    serviceObject({ name: 'web', clusterIPs: ['10.96.0.10', 'fd00:10:96::10'], ports: [{ port: 80, targetPort: 8080 }] }),
    sliceObject({ name: 'web-4', service: 'web', ports: [{ port: 8080 }], endpoints: pods.map((p) => ({ ip: p.ipv4, nodeName: 'node-a' })) }),
    sliceObject({ name: 'web-6', service: 'web', addressType: 'IPv6', ports: [{ port: 8080 }], endpoints: pods.map((p) => ({ ip: p.ipv6, nodeName: 'node-a' })) }),
  ]);
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  client?.close();
  if (bpffs && existsSync(bpffs)) await kernway(['uninstall', '--cgroup', lab.cgroupPath, '--bpffs', bpffs]);
  await lab?.destroy();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('the kernway CLI', () => {
  it('refuses bad options at the door, naming the option', async () => {
    const bad = [
      [['--node-name', 'Not_A_Node'], /--node-name/],
      [['--metrics-address', 'nowhere'], /--metrics-address/],
      [['--cgroup', 'relative/path'], /--cgroup/],
      [['--bogus'], /bogus/],
    ] as const;
    for (const [extra, re] of bad) {
      const r = await kernway(['agent', '--standalone', dir, '--node-name', 'n', '--bpffs', bpffs, ...extra]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(re);
    }
  });

  it('SIGTERM leaves traffic flowing; services reads the pins; uninstall removes everything', async () => {
    const a = await startAgent('a1');
    const list = await kernway(['services', '--admin-socket', a.socket, '--json']);
    expect(list.code).toBe(0);
    const services = JSON.parse(list.stdout) as Array<{ frontend: string; backends: string[] }>;
    expect(services.map((s) => s.frontend)).toEqual(['10.96.0.10:80/TCP', '[fd00:10:96::10]:80/TCP']);
    expect(services[1]!.backends).toEqual(pods.map((p) => `[${p.ipv6}]:8080`));

    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    for (const vip of ['10.96.0.10', 'fd00:10:96::10']) {
      const r = await client.send<Counts>({ op: 'tcp', host: vip, port: 80, n: 40 });
      expect(r.errors).toEqual({});
      expect(Object.keys(r.counts).sort()).toEqual(['b1', 'b2']);
    }
    const pinned = await kernway(['services', '--bpffs', bpffs]);
    expect(pinned.code).toBe(0);
    expect(pinned.stdout).toContain('10.96.0.10:80/TCP');
    const gone = await kernway(['services', '--admin-socket', a.socket]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/KW_AGENT_UNREACHABLE/);

    // A second agent over the same pins; two SIGTERMs in a row force it out.
    const b = await startAgent('a2');
    b.child.kill('SIGTERM');
    b.child.kill('SIGTERM');
    expect([0, 1]).toContain(await b.exited);

    const u = await kernway(['uninstall', '--cgroup', lab.cgroupPath, '--bpffs', bpffs]);
    expect(u.code).toBe(0);
    expect(u.stdout).toMatch(/detached \d+ program link\(s\) and removed \d+ pinned map\(s\)/);
    expect(Number(/detached (\d+)/.exec(u.stdout)![1])).toBeGreaterThanOrEqual(8);
    expect(existsSync(bpffs)).toBe(false);
    const r = await client.send<{ results: Array<{ code: string }> }>({ op: 'refused', host: '10.96.0.10', port: 80, n: 1 });
    expect(['OK', 'ECONNREFUSED']).not.toContain(r.results[0]!.code);
    const again = await kernway(['uninstall', '--cgroup', lab.cgroupPath, '--bpffs', bpffs]);
    expect(again.stdout).toMatch(/nothing to remove/);
  });
});
