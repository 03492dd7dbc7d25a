/**
 * Names of lab objects. Every name carries the creating process's PID so that a sweep can
 * tell leftovers of a crashed run (PID gone) from a lab another test is using right now.
 *   cgroup:  <cgroup2>/kernway-<tag>-<pid>-<rand>
 *   bpffs:   /sys/fs/bpf/kernway-<tag>-<pid>-<rand>
 *   netns:   kw-<pid>-<rand>-<pod>   (and kw-<pid>-<rand>-node)
 */
export const CGROUP_PREFIX = 'kernway-';
export const NETNS_PREFIX = 'kw-';

const CGROUP_RE = /^kernway-[a-z0-9]+-(\d+)-[a-z0-9]+$/;
const NETNS_RE = /^kw-(\d+)-[a-z0-9]+-[a-z0-9-]+$/;

export function runId(): string {
  return `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
}

/** The PID that owns a lab object named by this scheme, or undefined if not ours. */
export function ownerPid(name: string): number | undefined {
  const m = CGROUP_RE.exec(name) ?? NETNS_RE.exec(name);
  return m ? Number(m[1]) : undefined;
}

export function validTag(tag: string): boolean {
  return /^[a-z0-9]{1,12}$/.test(tag);
}

export function validPodName(name: string): boolean {
  return /^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/.test(name);
}
