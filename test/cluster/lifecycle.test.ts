/**
 * The lab cluster's life cycle: a failed start removes what it made; `kernway lab up`,
 * `lab exec` and `lab down` as a person uses them, and a crashed lab swept by `lab down`.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KUBE_BINARIES, kubeBin, kubeBinDir } from '../../lab/cluster/bin.js';
import { Cluster } from '../../lab/cluster/index.js';
import { waitFor } from '../../lab/cluster/proc.js';
import { cgroup2Mount, pidAlive, run } from '../../lab/system.js';
import { runKernway } from '../fixtures/cli.js';

function leftovers(pid: number): string[] {
  const netns = existsSync('/var/run/netns') ? readdirSync('/var/run/netns').filter((n) => n.startsWith(`kw-${pid}-`)) : [];
  const cgroups = readdirSync(cgroup2Mount()).filter((n) => new RegExp(`^kernway-[a-z0-9]+-${pid}-`).test(n));
  const bpffs = existsSync('/sys/fs/bpf') ? readdirSync('/sys/fs/bpf').filter((n) => new RegExp(`^kernway-[a-z0-9]+-${pid}-`).test(n)) : [];
  const dirs = ['/dev/shm', tmpdir(), '/var/tmp'].filter((b) => existsSync(b)).flatMap((b) => readdirSync(b).filter((n) => new RegExp(`^kernway-[a-z0-9]+-${pid}-`).test(n)).map((n) => join(b, n)));
  return [...netns, ...cgroups, ...bpffs, ...dirs];
}

describe('lab cluster life cycle', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'kw-cluster-lifecycle-'));
  afterAll(() => { rmSync(scratch, { recursive: true, force: true }); });

  it('removes everything it made when a control-plane process fails at start, and says which', async () => {
    const fake = join(scratch, 'kube', 'bin');
    mkdirSync(fake, { recursive: true });
    for (const b of KUBE_BINARIES) if (b !== 'kube-apiserver') symlinkSync(join(kubeBinDir(), b), join(fake, b));
    writeFileSync(join(fake, 'kube-apiserver'), '#!/bin/sh\necho "apiserver: broken on purpose" >&2\nexit 3\n', { mode: 0o755 });
    const saved = process.env.KERNWAY_KUBE_DIR;
    process.env.KERNWAY_KUBE_DIR = join(scratch, 'kube');
    try {
      const err = await Cluster.start({ tag: 'test', nodes: 1 }).then(() => undefined, (e: unknown) => e as { code: string; message: string });
      expect(err?.code).toBe('KW_LAB_START');
      expect(err?.message).toContain('kube-apiserver exited (3)');
      expect(err?.message).toContain('broken on purpose');
    } finally {
      if (saved === undefined) delete process.env.KERNWAY_KUBE_DIR;
      else process.env.KERNWAY_KUBE_DIR = saved;
    }
    expect(leftovers(process.pid)).toEqual([]);
  }, 60_000);

  it('kernway lab up prints the kubeconfig, lab exec runs in a pod, and lab down sweeps a crashed lab', async () => {
    const state = join(scratch, 'state', 'lab.json');
    process.env.KERNWAY_LAB_STATE = state;
    let servePid = 0;
    try {
      const up = await runKernway(['lab', 'up', '--nodes', '1']);
      expect(up.stderr).toBe('');
      expect(up.code).toBe(0);
      const kubeconfig = /^export KUBECONFIG=(\S+)$/m.exec(up.stdout)?.[1];
      expect(kubeconfig).toBeDefined();
      servePid = (JSON.parse(readFileSync(state, 'utf8')) as { pid: number }).pid;
      expect(pidAlive(servePid)).toBe(true);
      const kubectl = (args: string[], input?: string) => run(kubeBin('kubectl'), [`--kubeconfig=${kubeconfig}`, `--cache-dir=${join(scratch, 'kubectl')}`, ...args], { input });
      expect((await kubectl(['get', 'nodes', '-o', 'name'])).stdout.trim()).toBe('node/node-1');
      await kubectl(['apply', '-f', '-'], JSON.stringify({
        apiVersion: 'v1', kind: 'Pod', metadata: { name: 'shell', namespace: 'default' },
        spec: { containers: [{ name: 'main', image: 'none', command: ['sleep', '3600'], env: [{ name: 'GREETING', value: 'hi' }] }] },
      }));
      const uid = await waitFor('the shell pod to run', async () => {
        const p = JSON.parse((await kubectl(['get', 'pod', 'shell', '-o', 'json'])).stdout) as { metadata: { uid: string }; status: { phase: string } };
        return p.status.phase === 'Running' ? p.metadata.uid : undefined;
      }, 60_000, 100);
      const ex = await runKernway(['lab', 'exec', 'shell', '--', 'sh', '-c', 'cat /proc/self/cgroup; echo $GREETING; ip -o -4 addr show dev eth0']);
      expect(ex.code).toBe(0);
      expect(ex.stdout).toContain(`/kubepods/besteffort/pod${uid}/main`);
      expect(ex.stdout).toContain('hi');
      expect(ex.stdout).toMatch(/eth0 +inet 10\.244\.1\.\d+\/32/);
      const bad = await runKernway(['lab', 'exec', 'nope', '--', 'true']);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('KW_LAB_POD');
      // A crash: the owner dies without cleaning up. Its processes, namespaces, cgroups,
      // bpffs folder and run folder stay until `lab down` sweeps them by prefix and PID.
      process.kill(servePid, 'SIGKILL');
      await waitFor('the lab owner to die', () => !pidAlive(servePid), 10_000, 20);
      expect(leftovers(servePid).length).toBeGreaterThan(3);
      const down = await runKernway(['lab', 'down']);
      expect(down.code).toBe(0);
      expect(down.stdout).toMatch(/no lab cluster running; swept \d+ leftover/);
      expect(leftovers(servePid)).toEqual([]);
    } finally {
      if (servePid && pidAlive(servePid)) await runKernway(['lab', 'down']);
      delete process.env.KERNWAY_LAB_STATE;
    }
  }, 240_000);
});
