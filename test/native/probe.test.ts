/** Feature probes against this kernel, and `kernway probe` (table and --json). */
import { release } from 'node:os';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { formatProbe } from '../../cli/probe.js';
import { main } from '../../cli/main.js';
import { mountsOfType, probe, type Probe } from '../../native/index.js';

/** Kernel version as [major, minor], from uname. */
function kernelVersion(): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release())!;
  return [Number(m[1]), Number(m[2])];
}
const atLeast = (major: number, minor: number): boolean => {
  const [a, b] = kernelVersion();
  return a > major || (a === major && b >= minor);
};

afterEach(() => { vi.restoreAllMocks(); });

describe('probe()', () => {
  it("reports this kernel's features", () => {
    const p = probe();
    expect(p.kernel).toBe(release());
    expect(p.errors).toEqual([]); // tests run as root
    expect(p.libbpf).toMatch(/^v1\./);
    expect(p.cgroup2).toBe(mountsOfType('cgroup2')[0]);
    const bpffs = mountsOfType('bpf');
    expect(p.bpffs).toBe(bpffs.includes('/sys/fs/bpf') ? '/sys/fs/bpf' : bpffs[0]);
    expect(p.tcx).toBe(atLeast(6, 6));
    expect(p.sockmapLink).toBe(atLeast(6, 10));
    // What kernway cannot do without (all far older than any kernel with BTF).
    for (const t of ['sched_cls', 'cgroup_sock_addr', 'sock_ops', 'sk_msg']) expect(p.programTypes[t], t).toBe(true);
    for (const t of ['hash', 'array', 'lru_hash', 'sockhash', 'percpu_array']) expect(p.mapTypes[t], t).toBe(true);
    expect(p.helpers.bpf_msg_redirect_hash).toBe(true);
    expect(p.helpers.bpf_get_socket_cookie).toBe(true);
  });
});

describe('kernway probe', () => {
  async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((s: unknown) => { out.push(String(s)); });
    vi.spyOn(console, 'error').mockImplementation((s: unknown) => { err.push(String(s)); });
    const code = await main(['probe', ...args]);
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  it('prints a table of features', async () => {
    const r = await run([]);
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]).toMatch(/^FEATURE\s+STATUS\s+DETAIL$/);
    expect(r.out).toMatch(new RegExp(`^kernel\\s+${kernelVersion().join('\\.')}\\s+${release().replace(/[.+]/g, '\\$&')}$`, 'm'));
    expect(r.out).toMatch(new RegExp(`^tc attach\\s+${atLeast(6, 6) ? 'tcx' : 'clsact'}\\s`, 'm'));
    expect(r.out).toMatch(/^program sched_cls\s+yes$/m);
  });

  it('prints JSON with --json', async () => {
    const r = await run(['--json']);
    expect(r.code).toBe(0);
    const p = JSON.parse(r.out) as Probe;
    expect(p.kernel).toBe(release());
    expect(p.tcx).toBe(atLeast(6, 6));
    expect(p.programTypes.sk_msg).toBe(true);
  });

  it('refuses an unknown option with exit 2, naming it', async () => {
    const r = await run(['--jsn']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--jsn');
  });

  it('reports a missing bpffs or cgroup2 instead of failing', () => {
    const text = formatProbe({ ...probe(), bpffs: undefined, cgroup2: undefined, errors: ['not running as root'] } as Probe);
    expect(text).toMatch(/^bpffs\s+NO\s+not mounted/m);
    expect(text).toMatch(/^cgroup2\s+NO\s+not mounted/m);
    expect(text).toContain('warning: not running as root');
  });
});
