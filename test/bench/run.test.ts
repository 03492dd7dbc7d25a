/**
 * A tiny real run of the harness (two modes, two Service counts, two rounds, one second
 * per measurement): results.json is well formed (every raw sample, per-round ratios to
 * the baselines, scaling, targets), report.md and the SVG charts are written, and the
 * run leaves nothing behind. Then the `kernway bench` command itself: its options are
 * checked at the door, and Ctrl-C in the middle of a run cleans everything up.
 * No assertion here is about speed.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KERNWAY_MAIN as MAIN } from '../fixtures/cli.js';
import { createLogger } from '../../common/log.js';
import { cgroup2Mount, run } from '../../lab/system.js';
import { ownerPid } from '../../lab/names.js';
import { defaultOptions, roundOrder, runBench, serviceOrder, sweepScratch, type BenchResults } from '../../bench/run.js';
import { writeReport } from '../../bench/report.js';
import { workload } from '../../bench/workloads.js';


/** Lab objects (netns, cgroups, bpffs folders) and scratch folders a bench process (by PID) owns. */
async function leftovers(pid: number): Promise<string[]> {
  const mine = (n: string): boolean => ownerPid(n) === pid;
  const ns = (await run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!).filter(mine);
  const cg = readdirSync(cgroup2Mount()).filter(mine);
  const pins = existsSync('/sys/fs/bpf') ? readdirSync('/sys/fs/bpf').filter(mine) : [];
  // A lab cluster's run folder (the iptables mode).
  const shm = existsSync('/dev/shm') ? readdirSync('/dev/shm').filter(mine) : [];
  const tmp = readdirSync(tmpdir()).filter((n) => n.startsWith(`kernway-bench-${pid}-`) || n.startsWith(`kernway-sidecar-${pid}-`));
  return [...ns, ...cg, ...pins, ...shm, ...tmp];
}

describe('bench run', () => {
  const out = mkdtempSync(join(tmpdir(), `kernway-test-benchout-${process.pid}-`));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('sweeps the scratch folders of killed runs only', () => {
    const dir = mkdtempSync(join(tmpdir(), `kernway-test-sweep-${process.pid}-`));
    try {
      for (const n of ['kernway-bench-999999999-aB3dE6', `kernway-sidecar-${process.pid}-xY7zW1`, 'kernway-bench-AbCdEf', 'kernway-bench-999999999-aB3dE6x']) mkdirSync(join(dir, n));
      expect(sweepScratch(dir)).toEqual(['kernway-bench-999999999-aB3dE6']);
      expect(readdirSync(dir).sort()).toEqual(['kernway-bench-999999999-aB3dE6x', 'kernway-bench-AbCdEf', `kernway-sidecar-${process.pid}-xY7zW1`]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rotates the order of the modes from round to round, and walks the Service counts up then down', () => {
    expect([0, 1, 2, 3].map((r) => roundOrder(['a', 'b', 'c'], r).join(''))).toEqual(['abc', 'bca', 'cab', 'abc']);
    expect([0, 1, 2].map((r) => serviceOrder([10, 1000, 10_000], r))).toEqual([[10, 1000, 10_000], [10_000, 1000, 10], [10, 1000, 10_000]]);
  });

  it('a tiny run writes a well-formed results.json, report.md and charts, and leaves nothing behind', async () => {
    const opts = { ...defaultOptions(true), modes: ['direct' as const, 'iptables' as const], services: [3, 50], rounds: 2, seconds: 1, workloads: ['conn-rate' as const, 'http1' as const] };
    const lines: string[] = [];
    const results = await runBench(opts, { log: createLogger('test-bench', 'warn'), progress: (l) => lines.push(l) });
    const files = writeReport(out, results);
    expect(await leftovers(process.pid)).toEqual([]);

    const r = JSON.parse(readFileSync(files.json, 'utf8')) as BenchResults;
    expect(r.options.modes).toEqual(['direct', 'iptables']);
    expect(r.machine.iptables).toMatch(/iptables v1\.\d+\.\d+/);
    expect(r.machine.loadAverageBefore).toHaveLength(3);
    // Every (services, round, workload, mode) measured once, with every metric of the workload.
    expect(r.samples).toHaveLength(2 * 2 * 2 * 2);
    for (const s of r.samples) {
      expect(s.error, `${s.mode} ${s.workload}: ${s.error}`).toBeUndefined();
      for (const m of workload(s.workload).metrics) expect(Number.isFinite(s.values![m.key]), `${s.mode} ${s.workload} ${m.key}`).toBe(true);
      expect(s.values!['errors']).toBe(0);
    }
    // Both modes took each position once per workload and service count.
    for (const n of [3, 50]) expect(new Set(r.samples.filter((s) => s.services === n && s.workload === 'http1' && s.mode === 'direct').map((s) => s.order))).toEqual(new Set([0, 1]));
    // HTTP paths were warmed up first, apart from the samples.
    expect(r.warmup.map((s) => `${s.workload}/${s.mode}`).sort()).toEqual(['http1/direct', 'http1/iptables']);
    // kube-proxy rules were installed for each count as the rounds walked them (3, 50 | 50, 3).
    expect(r.configure.filter((c) => c.mode === 'iptables').map((c) => c.services)).toEqual([3, 50, 3]);
    expect(r.samples.map((s) => s.services)).toEqual([...Array(4).fill(3), ...Array(8).fill(50), ...Array(4).fill(3)]);

    const a = r.analysis!;
    const rate = a.ratios.find((x) => x.services === 50 && x.workload === 'conn-rate' && x.metric === 'rate' && x.mode === 'iptables' && x.baseline === 'direct')!;
    expect(rate.ratio.rounds).toHaveLength(2);
    // The ratio is computed within each round from that round's samples.
    const per = (mode: string, round: number): number => r.samples.find((s) => s.services === 50 && s.workload === 'conn-rate' && s.mode === mode && s.round === round)!.values!['rate']!;
    expect(rate.ratio.rounds[1]).toBeCloseTo(per('iptables', 1) / per('direct', 1), 3);
    expect(a.ratios.some((x) => x.mode === 'direct')).toBe(false);
    expect(a.scaling.find((x) => x.workload === 'conn-rate' && x.mode === 'iptables' && x.services === 50 && x.from === 3)).toBeDefined();
    expect(a.targets.length).toBeGreaterThanOrEqual(6);
    expect(a.targets.every((t) => t.met === null)).toBe(true); // ebpf, sidecar and waypoint were not in this run
    expect(r.evidence['iptables']).toHaveProperty('dnatPacketsSinceLastInstall');

    const report = readFileSync(files.report, 'utf8');
    expect(report).toContain('## Targets');
    expect(report).toContain('## 50 Services');
    expect(report).toContain('| iptables / direct |');
    expect(report).toContain('not measured');
    expect(files.charts.length).toBeGreaterThanOrEqual(3);
    for (const c of files.charts) {
      const svg = readFileSync(c, 'utf8');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(svg.trim().endsWith('</svg>')).toBe(true);
      expect(svg).not.toContain('NaN');
    }
    expect(lines.some((l) => l.includes('installing 50 Services in mode iptables'))).toBe(true);
  }, 300_000); // the iptables mode starts a lab cluster (kube-proxy)
});

describe('kernway bench command', () => {
  it('checks its options at the door, naming the option', async () => {
    for (const [args, msg] of [
      [['--modes', 'ebpf,nope'], /--modes: expected items from direct, ebpf, iptables, sidecar, waypoint, got "nope"/],
      [['--services', '10,abc'], /--services: expected an integer from 1 to 60000, got "abc"/],
      [['--rounds', '0'], /--rounds: expected an integer from 1 to 100/],
      [['--rounds', '-2'], /--rounds: expected an integer from 1 to 100, got "-2"/],
      [['--frobnicate'], /Unknown option '--frobnicate'/],
    ] as const) {
      const r = await run(process.execPath, [MAIN, 'bench', ...args], { allowFail: true });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
  });

  it('Ctrl-C in the middle of a run removes everything it created', async () => {
    const rootBefore = (await run('iptables-save', [])).stdout.replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, '');
    const outDir = mkdtempSync(join(tmpdir(), `kernway-test-benchint-${process.pid}-`));
    const child = spawn(process.execPath, [MAIN, 'bench', '--modes', 'direct,iptables,sidecar', '--services', '10', '--rounds', '20', '--workloads', 'conn-rate', '--out', outDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let text = '';
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => { text += d; if (text.includes('round 2/20')) resolve(); });
        child.once('exit', (c) => reject(new Error(`bench exited (${c}) before round 2: ${text}`)));
      });
      expect(await leftovers(child.pid!)).not.toEqual([]);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      child.kill('SIGINT');
      expect(await exited).toBe(130);
      expect(await leftovers(child.pid!)).toEqual([]);
      const rootAfter = (await run('iptables-save', [])).stdout.replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, '');
      expect(rootAfter).toBe(rootBefore);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(outDir, { recursive: true, force: true });
    }
  }, 180_000); // the iptables mode starts a lab cluster (kube-proxy)
});
