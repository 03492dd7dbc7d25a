/**
 * Where the machine keeps its cgroup2 and bpffs mounts, and small process helpers the
 * lab uses. Read from /proc/mounts, never assumed.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { KernwayError } from '../common/errors.js';

export function mountsOfType(type: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === type)
    .map((f) => f[1]!.replace(/\\040/g, ' '));
}

/** The cgroup2 mount point (e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified). */
export function cgroup2Mount(): string {
  const m = mountsOfType('cgroup2')[0];
  if (!m) throw new KernwayError('KW_NO_CGROUP2', 'no cgroup2 filesystem is mounted (see /proc/mounts); kernway needs cgroup v2');
  return m;
}

/** The bpffs mount at /sys/fs/bpf, mounting it when nothing is mounted there. */
export async function ensureBpffs(mountPoint = '/sys/fs/bpf'): Promise<string> {
  if (mountsOfType('bpf').includes(mountPoint)) return mountPoint;
  await run('mount', ['-t', 'bpf', 'bpf', mountPoint]);
  return mountPoint;
}

export interface RunResult { code: number; stdout: string; stderr: string }

/** Runs a command to completion; rejects with its stderr when it fails (unless allowFail). */
export function run(cmd: string, args: string[], opts: { input?: string; allowFail?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      if (err && !opts.allowFail) {
        reject(new KernwayError('KW_LAB_COMMAND', `${cmd} ${args.join(' ')} failed (exit ${code}): ${stderr.trim() || err.message}`));
        return;
      }
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
