/**
 * Issue 19 cases 1, 2, 3 and 9 (agent paths), with the built CLI as a user runs it, in the
 * real kernel: a refused start has attached and pinned nothing; one agent owns a bpffs
 * folder and a cgroup (a second refuses before it writes anything); uninstall checks
 * first and removes only kernway's own pins, saying exactly which.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runKernway as kernway, startAgentProcess } from '../fixtures/cli.js';
import { Lab } from '../../lab/index.js';
import { serviceObject, sliceObject, writeManifest } from '../../agent/demo/manifests.js';
import { adminRequest } from '../../agent/admin/client.js';
import type { KernelService } from '../../agent/datapath/inspect.js';

let lab: Lab;
let root: string;
let dir: string;
const children: ChildProcess[] = [];

/** Programs attached directly to a cgroup, as `bpftool cgroup show` lists them (id, attach type). */
function attached(cgroup: string): Array<{ id: number; attach_type: string }> {
  const out = execFileSync('bpftool', ['cgroup', 'show', cgroup, '-j'], { encoding: 'utf8' }).trim();
  return out === '' ? [] : JSON.parse(out) as Array<{ id: number; attach_type: string }>;
}

/** Every entry under a folder (recursively), or [] when it does not exist. */
function tree(d: string): string[] {
  if (!existsSync(d)) return [];
  return readdirSync(d, { recursive: true }) as string[];
}

const agentArgs = (bpffs: string, extra: string[] = []) => ['agent', '--standalone', dir, '--node-name', 'node-a',
  '--cgroup', lab.cgroupPath, '--bpffs', bpffs, '--metrics-address', '127.0.0.1:0', ...extra];

beforeAll(async () => {
  lab = await Lab.create({ tag: 'hstart' });
  root = mkdtempSync(join(tmpdir(), 'kernway-start-test-'));
  dir = join(root, 'manifests');
  mkdirSync(dir);
  writeManifest(dir, 'web.yaml', [
    serviceObject({ name: 'web', clusterIPs: ['10.96.0.10'], ports: [{ port: 80, targetPort: 8080 }] }),
    sliceObject({ name: 'web-4', service: 'web', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.0.5', nodeName: 'node-a' }] }),
  ]);
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const c of children) if (c.exitCode === null && c.signalCode === null) await new Promise((r) => c.once('exit', r));
  for (const d of readdirSync(lab?.bpffsDir ?? '/nonexistent').map((n) => join(lab.bpffsDir, n))) {
    await kernway(['uninstall', '--cgroup', lab.cgroupPath, '--bpffs', d], { timeoutMs: 20_000 });
  }
  await lab?.destroy();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('a refused start touches nothing (case 1, 9)', () => {
  it('bad paths are refused with their code before anything is attached or pinned', async () => {
    const file = join(root, 'a-file.yaml');
    writeFileSync(file, 'x: 1\n');
    const bpffs = join(lab.bpffsDir, 'refused');
    const cases: Array<[string, string[], RegExp]> = [
      ['a missing manifest directory', ['--standalone', join(root, 'typo')], /KW_MANIFEST_DIR/],
      ['a file instead of a directory', ['--standalone', file], /KW_MANIFEST_DIR/],
      ['a manifest directory under /proc', ['--standalone', '/proc/self'], /KW_MANIFEST_DIR.*proc/],
      ['an admin socket path that is a file', ['--admin-socket', file], /KW_ADMIN_SOCKET_PATH/],
      ['an admin socket path too long for a Unix socket', ['--admin-socket', join(root, 'x'.repeat(120), 'a.sock')], /KW_ADMIN_SOCKET_PATH.*107/],
      ['an admin socket under /proc', ['--admin-socket', '/proc/kernway.sock'], /KW_ADMIN_SOCKET_PATH.*proc/],
      ['a --bpffs folder that is not on bpffs', ['--bpffs', join(root, 'a', 'b', 'c')], /KW_BAD_BPFFS/],
      ['a --cgroup that is not a cgroup', ['--cgroup', root], /KW_BAD_CGROUP/],
    ];
    for (const [what, extra, re] of cases) {
      const args = agentArgs(bpffs, ['--admin-socket', join(root, 'admin.sock')]);
      // The later option of a pair replaces the default given above it.
      for (let i = 0; i < extra.length; i += 2) {
        const at = args.indexOf(extra[i]!);
        args.splice(at, 2, extra[i]!, extra[i + 1]!);
      }
      const r = await kernway(args, { timeoutMs: 20_000 });
      expect(r.killed, what).toBe(false);
      expect(r.code, `${what}: ${r.stderr}`).not.toBe(0);
      expect(r.stderr, what).toMatch(re);
      expect(attached(lab.cgroupPath), what).toEqual([]);
      expect(existsSync(bpffs), `${what}: ${tree(bpffs).join(',')}`).toBe(false);
    }
    // Not even the tree of a --bpffs that is refused.
    expect(existsSync(join(root, 'a'))).toBe(false);
  });
});

describe('one agent per bpffs folder and per cgroup (case 2)', () => {
  const bpffs = () => join(lab.bpffsDir, 'owner');
  let socket: string;

  it('a second agent on the same --bpffs and --admin-socket refuses before it writes anything', async () => {
    socket = join(root, 'owner.sock');
    const first = await startAgentProcess(agentArgs(bpffs()).slice(1, -2), socket);
    children.push(first.child);
    const links = attached(lab.cgroupPath);
    expect(links.length).toBeGreaterThanOrEqual(8);
    const before = await adminRequest<KernelService[]>(socket, '/v1/services');
    writeManifest(dir, 'other.yaml', [serviceObject({ name: 'other', clusterIPs: ['10.96.0.77'], ports: [{ port: 81 }] })]);
    try {
      const second = await kernway(agentArgs(bpffs(), ['--admin-socket', socket]), { timeoutMs: 20_000 });
      expect(second.code).toBe(1);
      expect(second.stderr).toMatch(new RegExp(`KW_BPFFS_IN_USE|pid ${first.child.pid}`));
      expect(second.stderr).toContain(`pid ${first.child.pid}`);
      // Same programs (ids), same maps, the first still running and answering.
      expect(attached(lab.cgroupPath)).toEqual(links);
      const status = await adminRequest<{ state: string }>(socket, '/v1/status');
      expect(status.state).toBe('running');
      // Nothing of the second's manifests reached the maps (only the first's view: it has not re-read yet, or has, both are its own).
      const after = await adminRequest<KernelService[]>(socket, '/v1/services');
      expect(after.filter((s) => s.frontend === '10.96.0.10:80/TCP')).toEqual(before.filter((s) => s.frontend === '10.96.0.10:80/TCP'));

      // Another --bpffs on the same cgroup: refused too, its folder not left behind.
      const other = join(lab.bpffsDir, 'other');
      const third = await kernway(agentArgs(other, ['--admin-socket', join(root, 'third.sock')]), { timeoutMs: 20_000 });
      expect(third.code).toBe(1);
      expect(third.stderr).toMatch(/KW_CGROUP_IN_USE/);
      expect(existsSync(other)).toBe(false);
      expect(attached(lab.cgroupPath)).toEqual(links);

      // uninstall while the agent runs: refused, nothing removed.
      const un = await kernway(['uninstall', '--cgroup', lab.cgroupPath, '--bpffs', bpffs()], { timeoutMs: 20_000 });
      expect(un.code).toBe(1);
      expect(un.stderr).toMatch(/KW_BPFFS_IN_USE/);
      expect(attached(lab.cgroupPath)).toEqual(links);
    } finally {
      rmSync(join(dir, 'other.yaml'), { force: true });
    }
    // The lock dies with its holder: after SIGKILL, a new agent takes over.
    first.child.kill('SIGKILL');
    await first.exited;
    const next = await startAgentProcess(agentArgs(bpffs()).slice(1, -2), join(root, 'next.sock'));
    children.push(next.child);
    next.child.kill('SIGTERM');
    expect(await next.exited).toBe(0);
  });
});

describe('uninstall removes only what kernway pinned (case 3)', () => {
  it('an ordinary folder as --bpffs: refused, nothing deleted', async () => {
    const fake = join(root, 'fake-bpffs');
    mkdirSync(join(fake, 'policy', 'maps'), { recursive: true });
    writeFileSync(join(fake, 'policy', 'maps', 'kw_pol'), 'precious');
    mkdirSync(join(fake, 'maps'));
    writeFileSync(join(fake, 'maps', 'kw_svc'), 'precious');
    const r = await kernway(['uninstall', '--cgroup', lab.cgroupPath, '--bpffs', fake], { timeoutMs: 20_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/KW_BAD_BPFFS/);
    expect(tree(fake).sort()).toEqual(['maps', 'maps/kw_svc', 'policy', 'policy/maps', 'policy/maps/kw_pol']);
    const file = await kernway(['uninstall', '--cgroup', lab.cgroupPath, '--bpffs', join(fake, 'maps', 'kw_svc')], { timeoutMs: 20_000 });
    expect(file.stderr).toMatch(/KW_BAD_BPFFS/);
  });

  it('a wrong --cgroup: refused before anything is detached; then the right one removes exactly kernway\'s pins', async () => {
    const bpffs = join(lab.bpffsDir, 'owner');
    const links = attached(lab.cgroupPath);
    expect(links.length).toBeGreaterThanOrEqual(8);
    // Another tool's map, pinned beside kernway's.
    execFileSync('bpftool', ['map', 'create', join(bpffs, 'maps', 'other_tool'), 'type', 'hash', 'key', '4', 'value', '4', 'entries', '8', 'name', 'other_tool']);
    const wrong = await kernway(['uninstall', '--cgroup', join(lab.cgroupPath, 'node'), '--bpffs', bpffs], { timeoutMs: 20_000 });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/nothing was removed.*KW_PINS_OTHER_CGROUP/);
    expect(attached(lab.cgroupPath)).toEqual(links);

    const r = await kernway(['uninstall', '--cgroup', lab.cgroupPath, '--bpffs', bpffs], { timeoutMs: 20_000 });
    expect(r.code).toBe(0);
    expect(attached(lab.cgroupPath)).toEqual([]);
    const listed = r.stdout.split('\n').filter((l) => /^\s+(detached|unpinned)\s/.test(l)).map((l) => l.trim().split(/\s+/)[1]!);
    expect(r.stdout).toMatch(new RegExp(`detached ${listed.filter((l) => l.includes('links/') || l.includes('tc/')).length} program link\\(s\\)`));
    for (const prog of ['kw_connect4', 'kw_recvmsg6', 'kw_sm_sockops']) expect(listed.some((l) => l.startsWith('links/cg-') && l.endsWith(`/${prog}`)), prog).toBe(true);
    expect(listed.some((l) => l.startsWith('policy/links/cg-') && l.endsWith('/kw_pol_connect4'))).toBe(true);
    expect(listed).toEqual(expect.arrayContaining(['maps/kw_svc', 'maps/kw_sm_hash', 'policy/maps/kw_pol']));
    expect(listed).not.toContain('maps/other_tool');
    expect(r.stdout).toMatch(/left in place \(not kernway's\): maps\/other_tool/);
    expect(tree(bpffs)).toEqual(['maps', 'maps/other_tool']);
    rmSync(join(bpffs, 'maps', 'other_tool'));
  });
});
