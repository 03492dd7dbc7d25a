/**
 * Kernel feature probes (what `kernway probe` prints) and the bpffs mount. Probes load
 * tiny programs and create scratch maps, so they need CAP_BPF (root); without it every
 * BPF feature reads as missing and `errors` says why.
 */
import { existsSync } from 'node:fs';
import { release } from 'node:os';
import { mountsOfType } from '../common/mounts.js';
import { addon } from './load.js';

export interface Probe {
  kernel: string;
  libbpf: string;
  btf: boolean;
  /** cgroup v2 mount point, when mounted. */
  cgroup2?: string;
  /** bpffs mount point (the first; /sys/fs/bpf preferred), when mounted. */
  bpffs?: string;
  /** tcx links (kernel 6.6+): tc programs attach as links; else clsact filters. */
  tcx: boolean;
  /** sockmap links (kernel 6.10+): sk_msg attaches as a link; else BPF_PROG_ATTACH. */
  sockmapLink: boolean;
  programTypes: Record<string, boolean>;
  mapTypes: Record<string, boolean>;
  /** Helper name -> available in the program type kernway calls it from. */
  helpers: Record<string, boolean>;
  /** Why probes could not run (not root, addon missing), if any. */
  errors: string[];
}

/** What kernway needs, by libbpf's names. */
export const PROBED_PROGRAM_TYPES = ['sched_cls', 'cgroup_sock_addr', 'sock_ops', 'sk_msg', 'sk_skb', 'cgroup_skb', 'cgroup_sock', 'xdp'] as const;
export const PROBED_MAP_TYPES = [
  'hash', 'array', 'percpu_hash', 'percpu_array', 'lru_hash', 'lru_percpu_hash', 'lpm_trie', 'sockhash', 'sockmap',
  'hash_of_maps', 'array_of_maps', 'ringbuf', 'sk_storage',
] as const;
/** [helper, program type it is probed in]. */
export const PROBED_HELPERS: ReadonlyArray<readonly [string, string]> = [
  ['bpf_get_socket_cookie', 'cgroup_sock_addr'],
  ['bpf_get_netns_cookie', 'cgroup_sock_addr'],
  ['bpf_get_current_cgroup_id', 'cgroup_sock_addr'],
  ['bpf_sk_storage_get', 'cgroup_sock_addr'],
  ['bpf_sock_hash_update', 'sock_ops'],
  ['bpf_msg_redirect_hash', 'sk_msg'],
  ['bpf_redirect_peer', 'sched_cls'],
  ['bpf_skb_store_bytes', 'sched_cls'],
  ['bpf_l4_csum_replace', 'sched_cls'],
  ['bpf_skb_cgroup_id', 'sched_cls'],
  ['bpf_ringbuf_output', 'sched_cls'],
  ['bpf_ktime_get_ns', 'sched_cls'],
  ['bpf_get_prandom_u32', 'sched_cls'],
];

export function probe(): Probe {
  const cgroup2 = mountsOfType('cgroup2')[0];
  const bpffsMounts = mountsOfType('bpf');
  const bpffs = bpffsMounts.includes('/sys/fs/bpf') ? '/sys/fs/bpf' : bpffsMounts[0];
  const p: Probe = {
    kernel: release(),
    libbpf: '',
    btf: existsSync('/sys/kernel/btf/vmlinux'),
    tcx: false,
    sockmapLink: false,
    programTypes: {},
    mapTypes: {},
    helpers: {},
    errors: [],
  };
  if (cgroup2 !== undefined) p.cgroup2 = cgroup2;
  if (bpffs !== undefined) p.bpffs = bpffs;
  if (process.getuid?.() !== 0) p.errors.push('not running as root: BPF probes need CAP_BPF and read as missing');
  let raw;
  try {
    raw = addon();
  } catch (e) {
    p.errors.push((e as Error).message);
    return p;
  }
  p.libbpf = raw.libbpfVersion();
  for (const t of PROBED_PROGRAM_TYPES) p.programTypes[t] = raw.probeProgType(t) === true;
  for (const t of PROBED_MAP_TYPES) p.mapTypes[t] = raw.probeMapType(t) === true;
  for (const [h, t] of PROBED_HELPERS) p.helpers[h] = raw.probeHelper(t, h) === true;
  p.tcx = raw.probeTcx();
  p.sockmapLink = raw.probeSockmapLink();
  return p;
}

/**
 * The cookie of a network namespace (a path such as /proc/PID/ns/net; '' for the
 * caller's), as bpf_get_netns_cookie() sees it in a program (Linux 5.14+).
 */
export function netnsCookie(path: string): bigint {
  return addon().netnsCookie(path);
}

/**
 * Gives the pages glibc's malloc keeps after free() back to the kernel (malloc_trim(0)):
 * a long-lived process calls it after a burst such as its first sync (docs/agent-model.md).
 * Whether anything was released; false on a libc without it.
 */
export function mallocTrim(): boolean {
  return addon().mallocTrim();
}
