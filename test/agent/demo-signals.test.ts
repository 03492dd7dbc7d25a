/**
 * Issue 19 case 11: `kernway demo` cleans up on any signal, at any moment: no agent left
 * running, no lab cgroup or bpffs folder, no temporary folder (real processes, real lab).
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { KERNWAY_MAIN } from '../fixtures/cli.js';
import { cgroup2Mount } from '../../common/mounts.js';

/** Processes whose command line mentions `needle` (from /proc). */
function processesWith(needle: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try { if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle)) out.push(Number(pid)); } catch { /* gone */ }
  }
  return out;
}

/** Runs the demo, signals it when `when` matches a line it printed (or at once), returns its exit code and output. */
function demoSignalled(sig: NodeJS.Signals, when: RegExp | undefined): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; pid: number }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [KERNWAY_MAIN, 'demo', '--mode', 'node'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let sent = false;
    const timer = setTimeout(() => { c.kill('SIGKILL'); reject(new Error(`demo did not exit after ${sig}: ${out}`)); }, 60_000);
    const send = () => { if (!sent) { sent = true; c.kill(sig); } };
    c.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; if (when && when.test(out)) send(); });
    c.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    if (!when) setTimeout(send, 300);
    c.once('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal, out, pid: c.pid! }); });
  });
}

function leftovers(pid: number): string[] {
  const tag = `kernway-demo-${pid}-`;
  return [
    ...readdirSync(cgroup2Mount()).filter((d) => d.startsWith(tag)).map((d) => `cgroup ${d}`),
    ...(existsSync('/sys/fs/bpf') ? readdirSync('/sys/fs/bpf').filter((d) => d.startsWith(tag)).map((d) => `bpffs ${d}`) : []),
  ];
}

describe('kernway demo on a signal (case 11)', () => {
  it('SIGINT in its first second: nothing left', async () => {
    const before = new Set(readdirSync(tmpdir()).filter((d) => d.startsWith('kernway-demo-')));
    const r = await demoSignalled('SIGINT', undefined);
    // Before the demo installs its handlers nothing exists yet, and SIGINT's default ends it.
    expect(r.code === 130 || r.signal === 'SIGINT').toBe(true);
    expect(leftovers(r.pid)).toEqual([]);
    expect(readdirSync(tmpdir()).filter((d) => d.startsWith('kernway-demo-') && !before.has(d))).toEqual([]);
  });

  it('SIGHUP while the pods are being made: nothing left', async () => {
    const before = new Set(readdirSync(tmpdir()).filter((d) => d.startsWith('kernway-demo-')));
    const r = await demoSignalled('SIGHUP', /a node in miniature/);
    expect(r.code).toBe(129);
    expect(leftovers(r.pid)).toEqual([]);
    expect(readdirSync(tmpdir()).filter((d) => d.startsWith('kernway-demo-') && !before.has(d))).toEqual([]);
  });

  it('SIGTERM once the agent runs: the agent is stopped, nothing left', async () => {
    const r = await demoSignalled('SIGTERM', /agent ready/);
    expect(r.out).toMatch(/SIGTERM: stopping the agent/);
    expect(r.code).toBe(143);
    const dir = /manifests in (\S+):/.exec(r.out)![1]!;
    expect(existsSync(dir)).toBe(false);
    expect(processesWith(dir)).toEqual([]);
    expect(leftovers(r.pid)).toEqual([]);
  });
});
