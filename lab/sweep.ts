/**
 * Removes what crashed lab runs left behind: cgroups (with the processes still in them),
 * bpffs folders, network namespaces and lab clusters' run folders, named by lab/names.ts,
 * whose owning PID is gone. Only our own prefix is ever touched; a lab whose process still
 * runs is left alone.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CGROUP_PREFIX, NETNS_PREFIX, ownerPid } from './names.js';
import { cgroup2Mount, mountsOfType, pidAlive, run } from './system.js';
import { removeCgroupTree } from './cgroup.js';

export interface SweepReport { cgroups: string[]; bpffs: string[]; netns: string[]; dirs: string[] }

/** Where lab clusters keep their run folders (lab/cluster: <base>/kernway-<tag>-<pid>-<rand>). */
const RUN_DIR_BASES = ['/dev/shm', tmpdir(), '/var/tmp'];

function stale(name: string, prefix: string): boolean {
  if (!name.startsWith(prefix)) return false;
  const pid = ownerPid(name);
  return pid !== undefined && !pidAlive(pid);
}

export async function sweepLeftovers(): Promise<SweepReport> {
  const report: SweepReport = { cgroups: [], bpffs: [], netns: [], dirs: [] };
  const cg = cgroup2Mount();
  for (const name of readdirSync(cg)) {
    if (stale(name, CGROUP_PREFIX)) {
      await removeCgroupTree(join(cg, name));
      report.cgroups.push(name);
    }
  }
  if (mountsOfType('bpf').includes('/sys/fs/bpf')) {
    for (const name of readdirSync('/sys/fs/bpf')) {
      if (stale(name, CGROUP_PREFIX)) {
        rmSync(join('/sys/fs/bpf', name), { recursive: true, force: true });
        report.bpffs.push(name);
      }
    }
  }
  if (existsSync('/var/run/netns')) {
    for (const name of readdirSync('/var/run/netns')) {
      if (stale(name, NETNS_PREFIX)) {
        await run('ip', ['netns', 'del', name], { allowFail: true });
        report.netns.push(name);
      }
    }
  }
  for (const base of new Set(RUN_DIR_BASES)) {
    if (!existsSync(base)) continue;
    for (const name of readdirSync(base)) {
      if (stale(name, CGROUP_PREFIX)) {
        rmSync(join(base, name), { recursive: true, force: true });
        report.dirs.push(join(base, name));
      }
    }
  }
  return report;
}
