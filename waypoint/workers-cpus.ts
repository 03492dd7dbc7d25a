/**
 * `--workers auto`: how many CPUs this process may use, as Istio sizes a proxy's
 * concurrency from its CPU limit: the CPUs of its affinity mask, bounded by the CPU quota
 * of its cgroup and every ancestor (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` /
 * `cpu.cfs_period_us`), rounded up, at least 1. A container with `limits.cpu: 1500m` on a
 * 16-CPU node gets 2.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { posix } from 'node:path';
import { mountsOfType } from '../common/mounts.js';

export interface CpuSources {
  /** CPUs of the affinity mask (default: os.availableParallelism(), which reads sched_getaffinity). */
  affinity?: number;
  /** Where cgroup2 and the v1 hierarchies are mounted (default: cgroup2 where /proc/mounts says, e.g. /sys/fs/cgroup/unified on a hybrid host; v1 under /sys/fs/cgroup). */
  cgroupRoot?: string;
  /** The text of /proc/self/cgroup (default: read). */
  selfCgroup?: string;
}

function read(path: string): string | undefined {
  try { return readFileSync(path, 'utf8'); } catch { return undefined; }
}

/** The folders from `path` up to the hierarchy's root ('/a/b' → ['/a/b', '/a', '/']). */
function upwards(path: string): string[] {
  const out: string[] = [];
  let p = posix.normalize(path.startsWith('/') ? path : `/${path}`);
  for (;;) {
    out.push(p);
    if (p === '/') return out;
    p = posix.dirname(p);
  }
}

/** The smallest CPU quota (in CPUs, fractional) of the cgroup `path` and its ancestors; undefined: none. */
function quotaOf(root: string, path: string, v2: boolean): number | undefined {
  let min: number | undefined;
  for (const dir of upwards(path)) {
    let cpus: number | undefined;
    if (v2) {
      const text = read(posix.join(root, dir, 'cpu.max'))?.trim();
      const m = text ? /^(\d+|max)\s+(\d+)$/.exec(text) : null;
      if (m && m[1] !== 'max' && Number(m[2]) > 0) cpus = Number(m[1]) / Number(m[2]);
    } else {
      const quota = Number(read(posix.join(root, dir, 'cpu.cfs_quota_us'))?.trim());
      const period = Number(read(posix.join(root, dir, 'cpu.cfs_period_us'))?.trim());
      if (quota > 0 && period > 0) cpus = quota / period;
    }
    if (cpus !== undefined && (min === undefined || cpus < min)) min = cpus;
  }
  return min;
}

/** The CPU quota of this process's cgroups, in CPUs (fractional); undefined when there is none or it cannot be read. */
export function cgroupCpuQuota(src: CpuSources = {}): number | undefined {
  const root = src.cgroupRoot ?? '/sys/fs/cgroup';
  const root2 = src.cgroupRoot ?? mountsOfType('cgroup2')[0] ?? root;
  const text = src.selfCgroup ?? read('/proc/self/cgroup') ?? '';
  let min: number | undefined;
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    let q: number | undefined;
    if (m[1] === '0' && m[2] === '') q = quotaOf(root2, m[3]!, true);
    else if (m[2]!.split(',').includes('cpu')) q = quotaOf(posix.join(root, m[2]!), m[3]!, false);
    if (q !== undefined && (min === undefined || q < min)) min = q;
  }
  return min;
}

/** `--workers auto`: min(affinity CPUs, ceil(cgroup quota)), at least 1. */
export function usableCpus(src: CpuSources = {}): number {
  const affinity = src.affinity ?? availableParallelism();
  const quota = cgroupCpuQuota(src);
  const n = quota === undefined ? affinity : Math.min(affinity, Math.ceil(quota - 1e-9));
  return Math.max(1, n);
}
