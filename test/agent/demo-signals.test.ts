/**
 * `kernway demo --mode node` run to its end (the kernel spread, the hand-off to the
 * waypoint next to a Service balanced in the kernel: issue 13), and issue 19 case 11: it
 * cleans up on any signal, at any moment: no agent left running, no lab cgroup or bpffs
 * folder, no temporary folder (real processes, real lab).
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

/** The count of a pod in the demo's bars (`   web-v1    81 ####`). */
function barCount(out: string, name: string): number {
  return Number(new RegExp(`^   ${name} +(\\d+) #`, 'm').exec(out)?.[1] ?? 'NaN');
}

describe('kernway demo --mode node, to its end', () => {
  it('shows the kernel spread, and the hand-off: curl through the waypoint (header match, weighted split), access log, metrics, a Service without a waypoint beside it', async () => {
    const c = spawn(process.execPath, [KERNWAY_MAIN, 'demo', '--mode', 'node'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    c.stderr!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const code = await new Promise<number | null>((resolve) => c.once('exit', resolve));
    expect(code, out).toBe(0);
    expect(out).toMatch(/spread over 3 backends/);
    // The header match: every request with x-canary: yes answered by web-v2, through the waypoint.
    expect(out).toMatch(/curl -H 'x-canary: yes' \(3 requests\): \{"web-v2":3\}/);
    // The weighted split (80/20) over 100 requests, within ±12 points.
    const v1 = barCount(out, 'web-v1');
    const v2 = barCount(out, 'web-v2');
    expect(v1 + v2, out).toBe(100);
    expect(v1).toBeGreaterThanOrEqual(68);
    expect(v1).toBeLessThanOrEqual(92);
    // The Service of a namespace without the label: 20 connections balanced in the kernel, the route not applied (both pods answer).
    const plain = JSON.parse(/no route applied\n {3}(\{.*\})/.exec(out)![1]!) as Record<string, number>;
    expect((plain['web-v1'] ?? 0) + (plain['web-v2'] ?? 0)).toBe(20);
    expect(plain['web-v1'] ?? 0).toBeGreaterThan(0);
    // The access log names the client pod (demo/client) and the Service parent; no line for demo/web.
    const access = out.split('\n').filter((l) => l.startsWith('   {"method"'));
    expect(access.length, out).toBeGreaterThanOrEqual(2);
    for (const l of access) expect(l).toMatch(/"source":"demo\/client[^"]*"/);
    expect(out).not.toMatch(/"path":"\/plain/);
    expect(out).toMatch(/kernway_waypoint_requests_total\{[^\n]*destination_service="shop\/web-v2"[^\n]*source_workload="demo\/client[^\n]*\} [1-9]/);
    // kernway services shows the HTTP port handed to the waypoint.
    const wpIp = /pod wp +(\S+)/.exec(out)![1]!;
    expect(out).toMatch(new RegExp(`10\\.96\\.0\\.30:80/TCP +shop/web:http +random +\\S+ +${wpIp.replace(/\./g, '\\.')}:15019 `));
    expect(out).toMatch(/lab removed; done/);
  }, 180_000);
});

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
