/** Where the machine keeps its cgroup2 and bpffs mounts: read from /proc/mounts, never assumed. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { InvalidArgumentError, KernwayError } from './errors.js';

/** Mount points of a filesystem type, from /proc/mounts. */
export function mountsOfType(type: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === type && f[1] !== undefined)
    .map((f) => f[1]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/** The cgroup2 mount point (e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified). */
export function cgroup2Mount(): string {
  const m = mountsOfType('cgroup2')[0];
  if (!m) throw new KernwayError('KW_NO_CGROUP2', 'no cgroup2 filesystem is mounted (see /proc/mounts); kernway needs cgroup v2');
  return m;
}

/** Mounts bpffs at `path` (default /sys/fs/bpf) unless one is mounted there; returns the mount point. */
export function ensureBpffs(path = '/sys/fs/bpf'): string {
  if (typeof path !== 'string' || !isAbsolute(path)) throw new InvalidArgumentError('path', 'an absolute path', path);
  if (mountsOfType('bpf').includes(path)) return path;
  try {
    mkdirSync(path, { recursive: true });
    execFileSync('mount', ['-t', 'bpf', 'bpf', path], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new KernwayError('KW_BPFFS_MOUNT', `cannot mount bpffs at ${path}: ${stderr || (e as Error).message} (needs root)`, { path });
  }
  return path;
}
