/**
 * Removes what an agent pinned under its bpffs folder, and only that: the policy programs
 * (their pins live in a sub-folder), the load balancer's and the accelerator's links and
 * maps, then the folders when empty. Everything is checked before anything is removed
 * (agent/datapath/pins.ts): the folder is on bpffs, no agent holds it (agent/datapath/lock.ts),
 * and the links are --cgroup's. Pins of other names stay and are listed in `left`.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { policyPins, uninstallPolicy } from './datapath/policy.js';
import { CONNECT_PROGRAMS } from './datapath/policy.js';
import { checkBpffsFolder, checkCgroupLinks } from './datapath/pins.js';
import { OWN_LINKS, pinLayout, uninstall as uninstallSockLb } from './datapath/sock-lb.js';
import { OwnerLock } from './datapath/lock.js';

/** Pins removed, as paths relative to the bpffs folder; `left`: entries that are not kernway's. */
export interface UninstallReport { detached: string[]; unpinned: string[]; left: string[] }

export interface UninstallOptions {
  /** The caller holds the folder's owner lock (the agent removing what a failed start attached). */
  lockHeld?: boolean;
}

export function uninstallAgent(bpffsDir: string, cgroupPath?: string, opts: UninstallOptions = {}): UninstallReport {
  const report: UninstallReport = { detached: [], unpinned: [], left: [] };
  if (!existsSync(bpffsDir)) return report;
  checkBpffsFolder(bpffsDir);
  const lock = opts.lockHeld ? undefined : OwnerLock.take(bpffsDir, '--bpffs', 'KW_BPFFS_IN_USE');
  try {
    if (cgroupPath !== undefined) {
      checkCgroupLinks(pinLayout(bpffsDir).links, cgroupPath, OWN_LINKS);
      checkCgroupLinks(policyPins(bpffsDir).links, cgroupPath, new Set(CONNECT_PROGRAMS.map(([p]) => p)));
    }
    const p = uninstallPolicy(bpffsDir, cgroupPath);
    const r = uninstallSockLb(bpffsDir, cgroupPath);
    report.detached.push(...p.detached.map((d) => `policy/${d}`), ...r.detached.map((d) => `links/${d}`));
    report.unpinned.push(...p.unpinned.map((u) => `policy/maps/${u}`), ...r.unpinned.map((u) => `maps/${u}`));
  } finally {
    lock?.release();
  }
  if (existsSync(bpffsDir)) report.left = listTree(bpffsDir).map((f) => relative(bpffsDir, f));
  return report;
}

function listTree(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) { const sub = listTree(p); out.push(...(sub.length > 0 ? sub : [p + '/'])); } else out.push(p);
  }
  return out;
}
