/**
 * Local pods known by their network namespace: every container runtime gives each pod
 * one, and a BPF program sees it as a cookie (bpf_get_netns_cookie()), whatever cgroup
 * the pod's processes are in. The agent finds the namespace of a pod address among the
 * processes of its cgroup tree (the node's pods): /proc/PID/ns/net, the namespace's
 * addresses from /proc/PID/net (IPv4 local routes, IPv6 interface addresses), and its
 * cookie from a socket made there (native netnsCookie, SO_NETNS_COOKIE).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { netnsCookie } from '../../native/index.js';
import { canonicalAddr } from './addr.js';

/** PIDs of every process in the cgroup tree at `path`. */
function cgroupPids(path: string, out: number[] = []): number[] {
  let entries;
  try { entries = readdirSync(path, { withFileTypes: true }); } catch { return out; }
  try {
    for (const l of readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n')) if (l) out.push(Number(l));
  } catch { /* removed meanwhile */ }
  for (const e of entries) if (e.isDirectory()) cgroupPids(join(path, e.name), out);
  return out;
}

/** The addresses of the network namespace process `pid` is in. */
export function netnsAddresses(pid: number): string[] {
  const out: string[] = [];
  try {
    // fib_trie lists each local IPv4 address as '|-- A.B.C.D' followed by '/32 host LOCAL'.
    const lines = readFileSync(`/proc/${pid}/net/fib_trie`, 'utf8').split('\n');
    for (let i = 1; i < lines.length; i++) {
      if (!lines[i]!.includes('/32 host LOCAL')) continue;
      const m = /\|--\s+([0-9.]+)/.exec(lines[i - 1]!);
      if (m) out.push(m[1]!);
    }
  } catch { /* no IPv4, or gone */ }
  try {
    for (const l of readFileSync(`/proc/${pid}/net/if_inet6`, 'utf8').split('\n')) {
      const hex = l.split(/\s+/)[0];
      if (hex?.length === 32) out.push(canonicalAddr(hex.match(/.{4}/g)!.join(':')));
    }
  } catch { /* no IPv6, or gone */ }
  return out;
}

/**
 * Cookies of the network namespaces holding `ips`, among the processes of the cgroup
 * tree at `cgroupPath`: address -> cookie. Addresses not found (no process yet) are absent.
 */
export function netnsCookiesOf(cgroupPath: string, ips: Iterable<string>): Map<string, bigint> {
  const want = new Set([...ips].map(canonicalAddr));
  const found = new Map<string, bigint>();
  if (want.size === 0) return found;
  const seen = new Set<number>();
  for (const pid of cgroupPids(cgroupPath)) {
    if (found.size === want.size) break;
    let ino: number;
    try { ino = statSync(`/proc/${pid}/ns/net`).ino; } catch { continue; }
    if (seen.has(ino)) continue;
    seen.add(ino);
    const mine = netnsAddresses(pid).filter((a) => want.has(a) && !found.has(a));
    if (mine.length === 0) continue;
    let cookie: bigint;
    try { cookie = netnsCookie(`/proc/${pid}/ns/net`); } catch { continue; }
    for (const a of mine) found.set(a, cookie);
  }
  return found;
}
