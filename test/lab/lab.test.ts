import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Lab, NODE_IPV4, type Pod } from '../../lab/index.js';
import { ownerPid } from '../../lab/names.js';
import { sweepLeftovers } from '../../lab/sweep.js';
import { cgroup2Mount, run } from '../../lab/system.js';

const TCP_ECHO = `
const net = require('node:net');
const s = net.createServer((c) => c.pipe(c)).listen(Number(process.argv[1]), '::', () => console.log('listening'));
`;
const TCP_CLIENT = `
const net = require('node:net');
const c = net.connect({ host: process.argv[1], port: Number(process.argv[2]) }, () => c.end('hello'));
let got = ''; c.on('data', (d) => { got += d; }); c.on('close', () => { console.log(got + ' ' + c.localAddress); });
c.on('error', (e) => { console.error(e.code); process.exit(3); });
`;

function waitForLine(child: import('node:child_process').ChildProcess, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => { buf += d; if (buf.includes(text)) resolve(); });
    child.once('exit', (code) => reject(new Error(`exited ${code} before printing ${text}`)));
  });
}

describe('lab', () => {
  let lab: Lab;
  let a: Pod, b: Pod, r: Pod;
  beforeAll(async () => {
    lab = await Lab.create({ tag: 'test' });
    a = await lab.addPod('a');
    b = await lab.addPod('b');
    r = await lab.addPod('r', { remote: true });
  });
  afterAll(async () => { await lab?.destroy(); });

  it('names everything after its run and owning PID', () => {
    expect(lab.cgroupPath.startsWith(cgroup2Mount() + '/kernway-test-')).toBe(true);
    expect(ownerPid(lab.nodeNs)).toBe(process.pid);
    expect(ownerPid(lab.cgroupPath.split('/').pop()!)).toBe(process.pid);
    expect(existsSync(lab.bpffsDir)).toBe(true);
    expect(a.ipv4).not.toBe(b.ipv4);
    expect(r.ipv4.startsWith('10.244.1.')).toBe(true);
  });

  it('runs a pod process inside the pod cgroup and netns', async () => {
    const res = await lab.exec(a, 'sh', ['-c', 'cat /proc/self/cgroup; ip -j addr show dev eth0']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`0::${a.cgroupPath.slice(cgroup2Mount().length)}`);
    expect(res.stdout).toContain(a.ipv4);
    const host = await lab.exec('host', 'cat', ['/proc/self/cgroup'], { cgroup: false });
    expect(host.stdout).not.toContain('kernway-');
  });

  it('routes TCP over IPv4 and IPv6 between pods, the node and a remote host', async () => {
    const server = lab.spawn(b, process.execPath, ['-e', TCP_ECHO, '7000']);
    await waitForLine(server, 'listening');
    for (const [from, host] of [[a, b.ipv4], [a, b.ipv6], [r, b.ipv4], ['node', b.ipv4]] as const) {
      const res = await lab.exec(from, process.execPath, ['-e', TCP_CLIENT, host, '7000'], { timeoutMs: 10_000 });
      expect(res.stderr).toBe('');
      expect(res.stdout).toMatch(/^hello /);
    }
    const fromNode = await lab.exec('node', 'ping', ['-c1', '-W2', a.ipv4]);
    expect(fromNode.code).toBe(0);
    const toNode = await lab.exec(a, 'ping', ['-c1', '-W2', NODE_IPV4]);
    expect(toNode.code).toBe(0);
  });

  it('leaves the root namespace alone: no pod address or veth there', async () => {
    const links = await run('ip', ['-j', 'link', 'show']);
    const names = (JSON.parse(links.stdout) as Array<{ ifname: string }>).map((l) => l.ifname);
    expect(names).not.toContain(a.hostVeth);
    const addrs = await run('ip', ['addr', 'show']);
    expect(addrs.stdout).not.toContain(a.ipv4 + '/');
  });

  it('removes a pod with its processes, cgroup and namespace', async () => {
    const c = await lab.addPod('c');
    const sleeper = lab.spawn(c, 'sleep', ['30']);
    await vi.waitFor(() => expect(readFileSync(join(c.cgroupPath, 'cgroup.procs'), 'utf8').trim()).not.toBe(''), { timeout: 10_000, interval: 10 });
    await lab.removePod('c');
    await new Promise((r) => sleeper.exitCode !== null || sleeper.signalCode !== null ? r(null) : sleeper.once('exit', r));
    expect(sleeper.signalCode ?? sleeper.exitCode).not.toBeNull();
    expect(existsSync(c.cgroupPath)).toBe(false);
    expect(existsSync(c.netnsPath)).toBe(false);
  });
});

describe('lab teardown and sweep', () => {
  it('destroy removes the cgroup, namespaces and bpffs folder, also with processes running', async () => {
    const lab = await Lab.create({ tag: 'test' });
    const p = await lab.addPod('x');
    lab.spawn(p, 'sleep', ['30']);
    lab.spawn('node', 'sleep', ['30']);
    await lab.destroy();
    await lab.destroy(); // idempotent
    expect(existsSync(lab.cgroupPath)).toBe(false);
    expect(existsSync(lab.bpffsDir)).toBe(false);
    expect(existsSync(lab.nodeNsPath)).toBe(false);
    expect(existsSync(p.netnsPath)).toBe(false);
  });

  it('sweeps leftovers of a crashed run (dead owner PID) and nothing else', async () => {
    // Leftovers as a crashed run leaves them: named after a PID that no longer runs.
    const { spawnSync } = await import('node:child_process');
    const deadPid = spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim();
    const name = `${deadPid}-dead1`;
    const cg = `${cgroup2Mount()}/kernway-test-${name}`;
    const bpf = `/sys/fs/bpf/kernway-test-${name}`;
    const ns = `kw-${name}-node`;
    const mine = await Lab.create({ tag: 'test' });
    try {
      await run('mkdir', ['-p', `${cg}/pod-z`, bpf]);
      await run('ip', ['netns', 'add', ns]);
      const report = await sweepLeftovers();
      expect(report.cgroups).toContain(`kernway-test-${name}`);
      expect(report.bpffs).toContain(`kernway-test-${name}`);
      expect(report.netns).toContain(ns);
      expect(existsSync(cg)).toBe(false);
      expect(existsSync(bpf)).toBe(false);
      expect(readdirSync('/var/run/netns')).not.toContain(ns);
      // The live lab of this process is untouched.
      expect(existsSync(mine.cgroupPath)).toBe(true);
      expect(existsSync(mine.nodeNsPath)).toBe(true);
      expect(existsSync(mine.bpffsDir)).toBe(true);
    } finally {
      await run('ip', ['netns', 'del', ns], { allowFail: true });
      await run('rm', ['-rf', bpf], { allowFail: true });
      await run('sh', ['-c', `rmdir ${cg}/pod-z ${cg} 2>/dev/null || true`]);
      await mine.destroy();
    }
  });
});
