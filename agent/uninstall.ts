/**
 * Removes everything an agent left under its bpffs folder: the policy programs (their
 * pins live in a sub-folder) first, then the load balancer's and the accelerator's links
 * and every remaining pin, then the folder itself.
 */
import { uninstallPolicy } from './datapath/policy.js';
import { uninstall as uninstallSockLb } from './datapath/sock-lb.js';

export interface UninstallReport { detached: string[]; unpinned: string[] }

export function uninstallAgent(bpffsDir: string, cgroupPath?: string): UninstallReport {
  const p = uninstallPolicy(bpffsDir);
  const r = uninstallSockLb(bpffsDir, cgroupPath);
  return { detached: [...p.detached.map((d) => `policy/${d}`), ...r.detached], unpinned: [...p.unpinned.map((u) => `policy/${u}`), ...r.unpinned] };
}
