/**
 * Loading and attaching the socket load balancer (bpf/sock_lb.bpf.c), restart-safe.
 *
 * Pins, under the agent's bpffs folder:
 *   <bpffs>/maps/kw_*                  the maps; a restarted agent reuses them as they are
 *   <bpffs>/links/cg-<id>/kw_connect4  one cgroup link per program, <id> the cgroup's inode
 *
 * Stopping the agent closes its file descriptors only: the pinned links keep the
 * programs attached and the pinned maps keep their entries, so traffic keeps flowing.
 * The next agent loads the new programs, reusing the pinned maps, and swaps each
 * pinned link to its new program with one bpf_link_update() (no moment without a
 * program). `uninstall()` detaches the links and removes kernway's own pins.
 */
import { existsSync, mkdirSync, readdirSync, statSync, statfsSync } from 'node:fs';
import { release as osRelease } from 'node:os';
import { join } from 'node:path';
import { KernwayError, errorMessage, type ErrorCode } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { projectRoot } from '../../common/version.js';
import { BpfMap, probe, type CgroupAttachType } from '../../native/index.js';
import { LB_LAYOUTS } from './codec.js';
import { checkBpffsFolder, checkCgroupLinks, detachCgroupLinks, removeEmptyDir, unpinOwnMaps } from './pins.js';
import { LB_MAP_NAMES, type LbCapacities, type LbMapName, type LbMaps } from './lb-maps.js';
import { checkSubsystem, type AttachResult, type LoadedSubsystem, type SubsystemPlan, type SubsystemSpec } from './loader.js';
import { WP_LAYOUTS, WP_MAP_NAMES, type WpMapName } from './waypoint-sync.js';

export const SOCK_LB_PROGRAMS: ReadonlyArray<readonly [string, CgroupAttachType]> = [
  ['kw_connect4', 'connect4'], ['kw_connect6', 'connect6'],
  ['kw_sendmsg4', 'sendmsg4'], ['kw_sendmsg6', 'sendmsg6'],
  ['kw_recvmsg4', 'recvmsg4'], ['kw_recvmsg6', 'recvmsg6'],
  ['kw_getpeername4', 'getpeername4'], ['kw_getpeername6', 'getpeername6'],
];

const BPF_FS_MAGIC = 0xcafe4a11;
const CGROUP2_SUPER_MAGIC = 0x63677270;

export function defaultObjectPath(): string {
  return join(projectRoot(), 'build', 'bpf', 'sock_lb.bpf.o');
}

export interface SockLbOptions {
  /** The cgroup (v2) whose processes are balanced; programs are inherited by its descendants. */
  cgroupPath: string;
  /** A folder on a bpffs mount, owned by this agent. */
  bpffsDir: string;
  objectPath?: string;
  /** max_entries per map. Pinned maps keep theirs: a different value is an error. */
  capacities?: LbCapacities;
  /** rodata tunables (kw_cfg_*). */
  tunables?: Record<string, number>;
  log?: Logger;
}

export interface SockLb {
  maps: LbMaps;
  /** The waypoint hand-off's maps (agent/datapath/waypoint-sync.ts). */
  wpMaps: Record<WpMapName, BpfMap>;
  /** True when the maps were adopted from pins (a restart), false when created now. */
  reusedMaps: boolean;
  /** Maps an upgrade changed the layout of: their entries were moved into new maps (docs/upgrade.md). */
  migratedMaps: string[];
  /** Program names whose pinned link was updated (restart) or created (first start). */
  updatedLinks: string[];
  createdLinks: string[];
  /** Closes our file descriptors; programs stay attached and maps pinned. */
  close(): void;
}

export function pinLayout(bpffsDir: string, cgroupPath?: string): { maps: string; links: string; cgroupLinks: string | undefined } {
  const links = join(bpffsDir, 'links');
  return {
    maps: join(bpffsDir, 'maps'),
    links,
    cgroupLinks: cgroupPath === undefined ? undefined : join(links, `cg-${statSync(cgroupPath).ino}`),
  };
}

function checkFs(path: string, magic: number, what: string, code: ErrorCode): void {
  let type: number;
  try {
    type = statfsSync(path).type;
  } catch (e) {
    throw new KernwayError(code, `${what} ${path}: ${errorMessage(e)}`);
  }
  if (type !== magic) throw new KernwayError(code, `${what} ${path} is not on a ${magic === BPF_FS_MAGIC ? 'bpf' : 'cgroup2'} filesystem`);
}

/** Validates the cgroup and bpffs folder (creating the folder); the pin folders are made at load. */
function checkPins(opts: SockLbOptions): { maps: string; links: string; cgroupLinks: string } {
  checkFs(opts.cgroupPath, CGROUP2_SUPER_MAGIC, '--cgroup', 'KW_BAD_CGROUP');
  if (!statSync(opts.cgroupPath).isDirectory()) throw new KernwayError('KW_BAD_CGROUP', `--cgroup ${opts.cgroupPath} is not a cgroup directory`);
  mkdirSync(opts.bpffsDir, { recursive: true });
  checkFs(opts.bpffsDir, BPF_FS_MAGIC, '--bpffs', 'KW_BAD_BPFFS');
  const layout = pinLayout(opts.bpffsDir, opts.cgroupPath);
  const mine = layout.cgroupLinks!.split('/').pop()!;
  const others = existsSync(layout.links)
    ? readdirSync(layout.links).filter((d) => d !== mine && readdirSync(join(layout.links, d)).length > 0)
    : [];
  if (others.length > 0) {
    throw new KernwayError('KW_PINS_OTHER_CGROUP',
      `${opts.bpffsDir} holds programs attached to another cgroup (${others.join(', ')}, by inode); ` +
      `run \`kernway uninstall --bpffs ${opts.bpffsDir}\` first, or give this cgroup its own --bpffs folder`);
  }
  return layout as { maps: string; links: string; cgroupLinks: string };
}

/** Linux 5.18: bpf_set_retval() in cgroup sock_addr programs (ECONNREFUSED at connect()). */
export const MIN_KERNEL: readonly [number, number] = [5, 18];

/** Fails with a clear message when the kernel lacks what the programs need. */
export function checkKernel(release = osRelease()): void {
  const m = /^(\d+)\.(\d+)/.exec(release);
  const [maj, min] = m ? [Number(m[1]), Number(m[2])] : [0, 0];
  if (maj < MIN_KERNEL[0] || (maj === MIN_KERNEL[0] && min < MIN_KERNEL[1])) {
    throw new KernwayError('KW_KERNEL_TOO_OLD',
      `socket load balancing needs Linux ${MIN_KERNEL.join('.')} or newer (bpf_set_retval in cgroup connect/sendmsg programs, ` +
      `to fail connect() with ECONNREFUSED when a Service has no endpoint); this kernel is ${release}`);
  }
  const p = probe();
  if (p.programTypes.cgroup_sock_addr === false) {
    throw new KernwayError('KW_KERNEL_FEATURE', 'this kernel cannot load cgroup sock_addr programs (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, Linux 4.17+, CONFIG_CGROUP_BPF)');
  }
}

/** The load balancer as the loader sees it (agent/datapath/loader.ts). */
export function sockLbSpec(opts: SockLbOptions, layout: { maps: string; cgroupLinks: string }): SubsystemSpec {
  return {
    what: 'the socket load balancer',
    objects: [{ path: opts.objectPath ?? defaultObjectPath(), rodata: opts.tunables ?? {} }],
    mapsDir: layout.maps,
    maps: [...LB_MAP_NAMES, ...WP_MAP_NAMES],
    layouts: { ...LB_LAYOUTS, ...WP_LAYOUTS },
    // Socket storage cannot be copied into a new map: the sockets redirected to a waypoint keep theirs.
    keep: ['kw_wp_sk'],
    sized: [...LB_MAP_NAMES, 'kw_wp_svc', 'kw_wp_guard', 'kw_wp_exempt', 'kw_wp_stats'],
    codec: 'agent/datapath/codec.ts',
    capacities: opts.capacities ?? {},
    linksDir: layout.cgroupLinks,
    links: SOCK_LB_PROGRAMS.map(([program, type]) => ({ program, attach: (p) => p.attachCgroup(opts.cgroupPath, type) })),
    explainLoad: (e, log) => /set_retval|unknown func/.test(e.verifierLog ?? '')
      ? new KernwayError('KW_KERNEL_FEATURE', `this kernel refuses a helper the socket load balancer needs (bpf_set_retval in cgroup sock_addr programs needs Linux 5.18+)${log}`, undefined, { cause: e })
      : undefined,
    ...(opts.log ? { log: opts.log } : {}),
  };
}

/**
 * Everything checked before the kernel is touched: kernel version and features, the
 * cgroup and bpffs folder, capacities, struct layouts against the object's BTF, the
 * pinned maps (reused, or migrated on an upgrade). `plan.load()` then loads.
 */
export function checkSockLb(opts: SockLbOptions): SubsystemPlan {
  checkKernel();
  const layout = checkPins(opts);
  return checkSubsystem(sockLbSpec(opts, layout));
}

export async function loadSockLb(opts: SockLbOptions): Promise<SockLb> {
  const plan = checkSockLb(opts);
  const sub = await plan.load();
  let attached: AttachResult;
  try {
    attached = sub.attach();
  } catch (e) {
    sub.close();
    throw e;
  }
  opts.log?.info({
    cgroup: opts.cgroupPath, bpffs: opts.bpffsDir, reusedMaps: sub.reusedMaps, migratedMaps: sub.migrated,
    updatedLinks: attached.updated.length, createdLinks: attached.created.length,
  }, 'socket load balancer attached');
  return {
    maps: lbMaps(sub), wpMaps: Object.fromEntries(WP_MAP_NAMES.map((n) => [n, sub.map(n)])) as Record<WpMapName, BpfMap>, reusedMaps: sub.reusedMaps, migratedMaps: [...sub.migrated],
    updatedLinks: attached.updated, createdLinks: attached.created, close: () => sub.close(),
  };
}

function lbMaps(sub: LoadedSubsystem): LbMaps {
  return Object.fromEntries(LB_MAP_NAMES.map((n) => [n, sub.map(n)])) as unknown as LbMaps;
}

/** Opens the pinned maps without loading anything (for `kernway services` without an agent). */
export function openPinnedMaps(bpffsDir: string): LbMaps {
  const dir = pinLayout(bpffsDir).maps;
  const out: Partial<Record<LbMapName, BpfMap>> = {};
  try {
    for (const name of LB_MAP_NAMES) out[name] = BpfMap.openPinned(join(dir, name));
  } catch (e) {
    for (const m of Object.values(out)) m.close();
    throw new KernwayError('KW_NO_PINNED_MAPS', `no kernway maps pinned under ${dir}: ${errorMessage(e)}`, undefined, { cause: e });
  }
  return out as LbMaps;
}

export interface UninstallResult { detached: string[]; unpinned: string[] }

/**
 * Detaches the load balancer's and the accelerator's cgroup links pinned under bpffsDir and
 * removes their pins and the maps of their names (agent/datapath/pins.ts rules: checked
 * first, own names only). With cgroupPath, refuses when the links are another cgroup's.
 */
export function uninstall(bpffsDir: string, cgroupPath?: string): UninstallResult {
  const result: UninstallResult = { detached: [], unpinned: [] };
  if (!existsSync(bpffsDir)) return result;
  checkBpffsFolder(bpffsDir);
  const layout = pinLayout(bpffsDir);
  if (cgroupPath !== undefined) checkCgroupLinks(layout.links, cgroupPath, OWN_LINKS);
  result.detached = detachCgroupLinks(layout.links, OWN_LINKS, cgroupPath);
  result.unpinned = unpinOwnMaps(layout.maps, OWN_MAPS);
  removeEmptyDir(bpffsDir);
  return result;
}

/** The names the balancer and the accelerator pin under links/cg-<id>/ and maps/. */
export const OWN_LINKS: ReadonlySet<string> = new Set([...SOCK_LB_PROGRAMS.map(([p]) => p), 'kw_sm_msg', 'kw_sm_sockops', 'kw_sm_recv_prog', 'kw_cm_sockops', 'kw_cm_close']);
export const OWN_MAPS: ReadonlySet<string> = new Set([
  ...LB_MAP_NAMES, ...WP_MAP_NAMES, 'kw_sm_hash', 'kw_sm_sk', 'kw_sm_io', 'kw_sm_rx', 'kw_sm_ck', 'kw_sm_listen', 'kw_sm_pods', 'kw_sm_cfg', 'kw_sm_handover', 'kw_sm_stats',
  'kw_cm_counts', 'kw_cm_unkeyed', 'kw_cm_conns', 'kw_cm_stats',
  'kw_cm_sk', 'kw_cm_events', 'kw_cm_opened', // (earlier versions: the per-socket record in socket storage; the last two before kw_cm_counts)
]);
