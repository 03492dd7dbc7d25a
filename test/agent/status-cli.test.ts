/**
 * `kernway status` against a real agent process: state, reconcile, problems, maps and the
 * sockmap counters, as a table and as JSON; a clear error when no agent listens.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KERNWAY_MAIN as MAIN, runKernway as kernway } from '../fixtures/cli.js';
import { Lab } from '../../lab/index.js';
import { serviceObject, sliceObject, writeManifest } from '../../agent/demo/manifests.js';
import { renderStatus, type StatusReport } from '../../cli/status.js';

let lab: Lab;
let root: string;
let dir: string;
let bpffs: string;
let socket: string;
let agent: ChildProcess | undefined;

async function statusJson(): Promise<StatusReport> {
  const r = await kernway(['status', '--json', '--admin-socket', socket]);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as StatusReport;
}

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (make build)`);
  lab = await Lab.create({ tag: 'status' });
  const pod = await lab.addPod('b1');
  root = mkdtempSync(join(tmpdir(), 'kernway-status-test-'));
  dir = join(root, 'manifests');
  mkdirSync(dir);
  bpffs = join(lab.bpffsDir, 'agent');
  socket = join(root, 'admin.sock');
  writeManifest(dir, 'web.yaml', [
    serviceObject({ name: 'web', clusterIPs: ['10.96.0.10'], ports: [{ port: 80, targetPort: 8080 }] }),
    sliceObject({ name: 'web-4', service: 'web', ports: [{ port: 8080 }], endpoints: [{ ip: pod.ipv4, nodeName: 'node-a' }] }),
  ]);
  agent = spawn(process.execPath, [MAIN, 'agent', '--standalone', dir, '--node-name', 'node-a', '--cgroup', lab.cgroupPath,
    '--bpffs', bpffs, '--admin-socket', socket, '--metrics-address', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  agent.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const end = Date.now() + 15_000;
  while (!err.includes('agent running')) {
    if (agent.exitCode !== null) throw new Error(`agent exited ${agent.exitCode}: ${err}`);
    if (Date.now() > end) throw new Error(`agent not running: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
});

afterAll(async () => {
  if (agent && agent.exitCode === null) {
    agent.kill('SIGTERM');
    await new Promise((r) => agent!.once('exit', r));
  }
  if (bpffs && existsSync(bpffs)) await kernway(['uninstall', '--cgroup', lab.cgroupPath, '--bpffs', bpffs]);
  await lab?.destroy();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('kernway status', () => {
  it('shows the running agent, its maps and the sockmap counters', async () => {
    const st = await statusJson();
    expect(st.state).toBe('running');
    expect(st.nodeName).toBe('node-a');
    expect(st.frontends).toBe(1);
    expect(st.lastReconcile?.error).toBeUndefined();
    expect(st.maps?.find((m) => m.name === 'kw_svc')?.entries).toBe(1);
    expect(st.sockmap?.enabled).toBe(true);
    expect(typeof st.sockmap?.stats).toBe('object');
    const table = await kernway(['status', '--admin-socket', socket]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/state\s+running/);
    expect(table.stdout).toMatch(/service ports balanced\s+1/);
    expect(table.stdout).toContain('same-node acceleration (sockmap): on');
  });

  it('lists a bad manifest with its file and field while the last good state stays', async () => {
    writeFileSync(join(dir, 'bad.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: default}\nspec: {clusterIP: 10.96.0.11, ports: [{port: 70000}]}\n');
    let st = await statusJson();
    const end = Date.now() + 10_000;
    while (st.problems.length === 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
      st = await statusJson();
    }
    expect(st.problems[0]).toMatchObject({ file: expect.stringContaining('bad.yaml'), field: 'spec.ports[0].port' });
    expect(st.frontends).toBe(1);
    const table = await kernway(['status', '--admin-socket', socket]);
    expect(table.stdout).toContain('1 manifest problem(s)');
    expect(table.stdout).toContain('spec.ports[0].port');
  });

  it("shows how the API server is read (an API source's status: HTTP/2 or HTTP/1.1, JSON)", () => {
    const api = { server: 'https://10.0.0.1:6443', config: 'in-cluster' as const, synced: true, kinds: [] };
    const base = { state: 'running' as const, nodeName: 'n', cgroup: '/c', bpffs: '/b', generation: 1, frontends: 0, problems: [], reusedMaps: false };
    expect(renderStatus({ ...base, api: { ...api, protocol: 'HTTP/2, JSON' } })).toMatch(/API server +https:\/\/10\.0\.0\.1:6443: connected \(HTTP\/2, JSON\)\n/);
    expect(renderStatus({ ...base, api })).toMatch(/API server +https:\/\/10\.0\.0\.1:6443: connected\n/);
  });

  it('says which socket it tried when no agent listens', async () => {
    const r = await kernway(['status', '--admin-socket', join(root, 'nothing.sock')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('nothing.sock');
    expect(r.stderr).toContain('KW_AGENT_UNREACHABLE');
  });
});
