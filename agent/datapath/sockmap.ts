/**
 * Same-node socket acceleration (bpf/sockmap.bpf.c, docs/sockmap.md): loading and
 * attaching it, restart-safe, the local-pod map, the node-wide switch and the counters.
 *
 * Pins, under the agent's bpffs folder (the layout of sock-lb.ts):
 *   <bpffs>/maps/kw_sm_*                      the maps; a restarted agent reuses them
 *   <bpffs>/links/cg-<ino>/kw_sm_sockops      the cgroup sock_ops link
 *   <bpffs>/links/cg-<ino>/kw_sm_msg          the sk_msg link on kw_sm_hash
 *
 * Stopping the agent closes its file descriptors only: the links keep the programs
 * attached, the maps keep the accelerated sockets, and those sockets keep the program
 * they were added with. The next agent reuses the maps (kw_sm_hash must never be
 * replaced: freeing it would drop every socket's unread redirected bytes) and swaps
 * each link to its new program with one bpf_link_update().
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { KernwayError, InvalidArgumentError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { projectRoot } from '../../common/version.js';
import { BpfError, type BpfMap } from '../../native/index.js';
import type { AgentMetrics } from '../metrics/registry.js';
import type { Model } from '../../model/types.js';
import { ADDR_SIZE, encodeAddr, familyOf, readAddr } from './addr.js';
import { scalar, struct, type MapLayout } from './layout.js';
import { planMap } from './plan.js';
import { checkSubsystem, type AttachResult, type LoadedSubsystem, type SubsystemPlan, type SubsystemSpec } from './loader.js';
import { pinLayout } from './sock-lb.js';
import { WP_LAYOUTS, WP_SHARED_MAPS } from './waypoint-sync.js';

export const SOCKMAP_MAP_NAMES = [
  'kw_sm_hash', 'kw_sm_sk', 'kw_sm_io', 'kw_sm_rx', 'kw_sm_ck', 'kw_sm_listen', 'kw_sm_pods', 'kw_sm_cfg', 'kw_sm_handover', 'kw_sm_stats',
] as const;
export type SockmapMapName = (typeof SOCKMAP_MAP_NAMES)[number];
/** Maps whose size the agent may choose (first start only: pinned maps keep theirs). */
export type SockmapCapacities = Partial<Record<'kw_sm_hash' | 'kw_sm_pods' | 'kw_sm_handover', number>>;
const SIZED_MAPS = ['kw_sm_hash', 'kw_sm_pods', 'kw_sm_handover'] as const;

export const SOCKOPS_PROGRAM = 'kw_sm_sockops';
export const SK_MSG_PROGRAM = 'kw_sm_msg';
/**
 * The receive-side program (rules 5 and 6 of bpf/include/sockmap.h): a machine-wide raw
 * tracepoint link (sock:sock_recv_length) acting only on sockets in this agent's kw_sm_ck.
 */
export const RECV_PROGRAM = 'kw_sm_recv_prog';

/**
 * The annotation on a pod or a namespace: "off" turns acceleration off for its pods; "on"
 * lets their sockets receive redirected bytes (rule 7 of bpf/include/sockmap.h: a pod
 * that says nothing only sends accelerated, to pods that opted in).
 */
export const SOCKMAP_ANNOTATION = 'kernway.io/sockmap';

/** struct kw_sm_pod.flags */
export const SM_POD_OFF = 1 << 0;
export const SM_POD_TARGET = 1 << 1;

/**
 * The structs of bpf/include/sockmap.h TypeScript encodes, checked field by field against
 * the object's BTF at load (agent/datapath/layout.ts); the other maps only the programs read.
 */
export const KW_SM_POD = struct('kw_sm_pod', 4, { flags: [0, 4] });
export const KW_SM_CFG = struct('kw_sm_cfg', 4, { enabled: [0, 4] });
export const SM_LAYOUTS: Readonly<Record<string, MapLayout>> = {
  kw_sm_pods: { key: struct('kw_addr', ADDR_SIZE, { w: [0, ADDR_SIZE] }), value: KW_SM_POD },
  kw_sm_cfg: { key: scalar(4), value: KW_SM_CFG },
  kw_sm_stats: { key: scalar(4), value: scalar(8) },
};

/** The counters of bpf/include/sockmap.h (KW_SM_STAT_*), in index order. */
export const SM_STATS = [
  'redirectedMessages', 'redirectedBytes', 'passedNoPeer', 'passedOrder',
  'inserts', 'insertFull', 'insertErrors', 'handovers', 'skippedOff',
  'skippedBlocking', 'passedNotTarget', 'passedFull', 'targets', 'keptOnStack', 'skippedNotOptedIn', 'notOptedIn', 'headerOnlyOut',
] as const;
export type SockmapStats = Record<(typeof SM_STATS)[number], number>;

export interface LocalPod {
  /** An address of a pod running on this node (IPv4 or IPv6). */
  ip: string;
  /** The pod or its namespace is annotated kernway.io/sockmap: "off". */
  sockmapOff?: boolean;
  /**
   * Its sockets may receive redirected bytes (rule 7): the pod or its namespace is
   * annotated kernway.io/sockmap: "on", or the pod is a kernway waypoint.
   */
  target?: boolean;
}

export interface SockmapOptions {
  /** The cgroup (v2) whose sockets are accelerated; inherited by its descendants. */
  cgroupPath: string;
  /** A folder on a bpffs mount, owned by this agent. */
  bpffsDir: string;
  objectPath?: string;
  /** max_entries per map (first start; a pinned map keeps its own, a different value is an error). */
  capacities?: SockmapCapacities;
  /** The node-wide switch after loading (default true). */
  enabled?: boolean;
  /** Tests only: every direction's first message misses its peer (kw_sm_test_first_miss). */
  testFirstMiss?: boolean;
  /** Tests only: break rule 3 ('order'), rule 4 ('unhash') or rules 5 and 6 ('rx') on purpose (kw_sm_test_break). */
  testBreak?: 'order' | 'unhash' | 'rx';
  log?: Logger;
}

const TEST_BREAKS = { order: 1, unhash: 2, rx: 3 } as const;
const PER_SOCKET_MAPS: readonly string[] = ['kw_sm_rx', 'kw_sm_ck'];

export function defaultSockmapObjectPath(): string {
  return join(projectRoot(), 'build', 'bpf', 'sockmap.bpf.o');
}

/** Map entries of the local pods: address key (hex) -> flags. Duplicates add their flags ("off" wins in the kernel). */
export function encodeLocalPods(pods: readonly LocalPod[]): Map<string, { key: Buffer; flags: number }> {
  const out = new Map<string, { key: Buffer; flags: number }>();
  pods.forEach((p, i) => {
    if (typeof p?.ip !== 'string' || familyOf(p.ip) === undefined) throw new InvalidArgumentError(`pods[${i}].ip`, 'an IPv4 or IPv6 address', p?.ip);
    const key = encodeAddr(p.ip);
    const hex = key.toString('hex');
    const flags = (p.sockmapOff ? SM_POD_OFF : 0) | (p.target ? SM_POD_TARGET : 0) | (out.get(hex)?.flags ?? 0);
    out.set(hex, { key, flags });
  });
  return out;
}

/**
 * The local pods of a model: pods on `nodeName` (not host-network, not finished: a
 * finished pod's address may already be another pod's) with their addresses, off when
 * the pod or its namespace says kernway.io/sockmap: "off", targets (rule 7) when one of
 * them says "on" (and none "off") or the address is one of `waypointIPs` (kernway's own
 * waypoints, whose reads are known: non-blocking recvmsg, never splice).
 */
export function localPodsFromModel(model: Pick<Model, 'pods' | 'namespaces'>, nodeName: string, waypointIPs?: ReadonlySet<string>): LocalPod[] {
  const out: LocalPod[] = [];
  for (const pod of model.pods.values()) {
    if (pod.nodeName !== nodeName || pod.hostNetwork || pod.phase === 'Succeeded' || pod.phase === 'Failed') continue;
    const own = pod.annotations[SOCKMAP_ANNOTATION];
    const ns = model.namespaces.get(pod.namespace)?.annotations[SOCKMAP_ANNOTATION];
    const off = isValue(own, 'off') || isValue(ns, 'off');
    const on = !off && (isValue(own, 'on') || isValue(ns, 'on'));
    for (const ip of pod.podIPs) out.push({ ip, sockmapOff: off, target: on || (!off && waypointIPs?.has(ip) === true) });
  }
  return out;
}

function isValue(v: string | undefined, want: string): boolean {
  return v !== undefined && v.trim().toLowerCase() === want;
}

/** Sums a per-CPU u64 value (8 bytes per possible CPU). */
function sumPerCpu(b: Buffer): number {
  let n = 0n;
  for (let o = 0; o + 8 <= b.length; o += 8) n += b.readBigUInt64LE(o);
  return Number(n);
}

/** Reads the counters from kw_sm_stats (opened from a loaded object or from its pin). */
export function readSockmapStats(stats: BpfMap): SockmapStats {
  const out = {} as SockmapStats;
  const key = Buffer.alloc(4);
  SM_STATS.forEach((name, i) => {
    key.writeUInt32LE(i);
    const v = stats.lookup(key);
    out[name] = v ? sumPerCpu(v) : 0;
  });
  return out;
}

export interface PodSyncResult { added: number; changed: number; removed: number }

/** What `kernway status` shows of the acceleration. */
export interface SockmapStatus {
  enabled: boolean;
  /** Accelerated sockets now (two per connection) and the sockhash's capacity. */
  sockets: number;
  capacity: number;
  /** Local pod addresses known, how many of them opted out, and how many may receive redirected bytes (rule 7). */
  localPods: number;
  localPodsOff: number;
  localPodsTarget: number;
  stats: SockmapStats;
}

export class Sockmap {
  readonly maps: Readonly<Record<SockmapMapName, BpfMap>>;
  /** True when the maps were adopted from pins (a restart). */
  readonly reusedMaps: boolean;
  /** Links updated in place (restart) and links created (first start). */
  readonly updatedLinks: string[] = [];
  readonly createdLinks: string[] = [];
  private readonly sub: LoadedSubsystem;
  private closed = false;
  private podsSig: string | undefined;

  private constructor(sub: LoadedSubsystem) {
    this.sub = sub;
    this.maps = Object.fromEntries(SOCKMAP_MAP_NAMES.map((n) => [n, sub.map(n)])) as Record<SockmapMapName, BpfMap>;
    this.reusedMaps = sub.reusedMaps;
  }

  /** The accelerator as the loader sees it (agent/datapath/loader.ts). */
  static spec(opts: SockmapOptions): SubsystemSpec {
    const layout = pinLayout(opts.bpffsDir, opts.cgroupPath);
    return {
      what: 'sockmap acceleration',
      objects: [{
        path: opts.objectPath ?? defaultSockmapObjectPath(),
        rodata: {
          kw_sm_test_first_miss: opts.testFirstMiss ? 1 : 0,
          kw_sm_test_break: opts.testBreak === undefined ? 0 : TEST_BREAKS[opts.testBreak],
        },
      }],
      mapsDir: layout.maps,
      // kw_wp_sk and kw_wp_stats: the waypoint hand-off's, shared with the load balancer (bpf/include/waypoint.h).
      maps: [...SOCKMAP_MAP_NAMES, ...WP_SHARED_MAPS],
      layouts: { ...SM_LAYOUTS, kw_wp_stats: WP_LAYOUTS.kw_wp_stats! },
      codec: 'agent/datapath/sockmap.ts',
      capacities: opts.capacities ?? {},
      sized: SIZED_MAPS,
      // kw_sm_rx and kw_sm_ck have an entry per socket of kw_sm_hash: new ones follow its size.
      follow: Object.fromEntries(PER_SOCKET_MAPS.map((n) => [n, 'kw_sm_hash'])),
      // Replacing the sockhash would drop every socket's unread redirected bytes; socket storage cannot be copied.
      keep: ['kw_sm_hash', 'kw_sm_sk', 'kw_sm_io', 'kw_wp_sk'],
      capacityHint: 'replacing kw_sm_hash would cut every accelerated connection',
      linksDir: layout.cgroupLinks!,
      links: [
        // The receive side first: a socket is classified from its first read on.
        { program: RECV_PROGRAM, attach: (p) => p.attachRawTracepoint(), swap: 'replace' },
        // sk_msg before sock_ops: a socket added to the map always finds a verdict program.
        // (Without sockmap links, kernel < 6.10, the sk_msg program is attached to the map
        // itself and stays there as long as the pinned map lives; attaching again replaces it.)
        { program: SK_MSG_PROGRAM, attach: (p, sub) => p.attachSkMsg(sub.map('kw_sm_hash')) },
        { program: SOCKOPS_PROGRAM, attach: (p) => p.attachCgroup(opts.cgroupPath, 'sock_ops') },
      ],
      ...(opts.log ? { log: opts.log } : {}),
    };
  }

  /**
   * Everything checked before the kernel is touched: the cgroup, capacities, layouts vs
   * BTF, the pinned maps (reused, or migrated when a new build changed one: kw_sm_stats
   * with more counters keeps the old ones).
   */
  static check(opts: SockmapOptions): SubsystemPlan {
    let isDir = false;
    try { isDir = statSync(opts.cgroupPath).isDirectory(); } catch { /* reported below */ }
    if (!isDir) throw new KernwayError('KW_BAD_CGROUP', `--cgroup ${opts.cgroupPath} is not a cgroup directory`);
    return checkSubsystem(Sockmap.spec(opts));
  }

  /** Loads the programs (reusing pinned maps), sets the switch, attaches or updates the links. */
  static async load(opts: SockmapOptions): Promise<Sockmap> {
    const sub = await Sockmap.check(opts).load();
    let sm: Sockmap;
    let r: AttachResult;
    try {
      sm = new Sockmap(sub);
      // The switch first, so that a first start with --sockmap=off never accelerates.
      sm.setEnabled(opts.enabled ?? true);
      r = sub.attach();
    } catch (e) {
      sub.close();
      throw e;
    }
    sm.updatedLinks.push(...r.updated);
    sm.createdLinks.push(...r.created);
    opts.log?.info({
      cgroup: opts.cgroupPath, bpffs: opts.bpffsDir, reusedMaps: sub.reusedMaps, migratedMaps: sub.migrated,
      updatedLinks: r.updated, createdLinks: r.created, enabled: opts.enabled ?? true,
    }, 'sockmap acceleration attached');
    return sm;
  }

  /** The node-wide switch: off, no new connection is accelerated; established ones carry on. */
  setEnabled(on: boolean): void {
    const v = Buffer.alloc(4);
    v.writeUInt32LE(on ? 1 : 0);
    this.maps.kw_sm_cfg.update(Buffer.alloc(4), v);
  }

  get enabled(): boolean {
    return (this.maps.kw_sm_cfg.lookup(Buffer.alloc(4))?.readUInt32LE(0) ?? 0) !== 0;
  }

  /**
   * Makes kw_sm_pods hold exactly these pods. Only new connections are affected: a
   * removed or opted-out pod's established connections stay accelerated until closed.
   */
  setLocalPods(pods: readonly LocalPod[]): PodSyncResult {
    this.podsSig = undefined;
    const want = new Map<string, number>();
    for (const [hex, { flags }] of encodeLocalPods(pods)) want.set(hex, flags);
    const map = this.maps.kw_sm_pods;
    const have = new Map<string, number>();
    for (const [k, v] of map.entries()) have.set(k.toString('hex'), v.readUInt32LE(KW_SM_POD.at.flags));
    const plan = planMap(have, want);
    const result: PodSyncResult = { added: 0, changed: 0, removed: 0 };
    for (const { key, value, added } of plan.upserts) {
      const v = Buffer.alloc(KW_SM_POD.size);
      v.writeUInt32LE(value, KW_SM_POD.at.flags);
      try {
        map.update(Buffer.from(key, 'hex'), v);
      } catch (e) {
        if (e instanceof BpfError && e.code === 'E2BIG') {
          throw new KernwayError('KW_MAP_FULL', `kw_sm_pods is full (${map.info().maxEntries} addresses): raise capacities.kw_sm_pods`, undefined, { cause: e });
        }
        throw e;
      }
      if (added) result.added++;
      else result.changed++;
    }
    for (const key of plan.removals) if (map.delete(Buffer.from(key, 'hex'))) result.removed++;
    return result;
  }

  /**
   * Makes kw_sm_pods follow a model's local pods (localPodsFromModel); a model whose
   * local pods did not change since the last call costs no map access (undefined).
   */
  syncFromModel(model: Pick<Model, 'pods' | 'namespaces'>, nodeName: string, waypointIPs?: ReadonlySet<string>): PodSyncResult | undefined {
    const pods = localPodsFromModel(model, nodeName, waypointIPs);
    const sig = pods.map((p) => `${p.ip}${p.sockmapOff ? '!' : ''}${p.target ? '+' : ''}`).sort().join(',');
    if (sig === this.podsSig) return undefined;
    const r = this.setLocalPods(pods);
    this.podsSig = sig;
    return r;
  }

  /** The local pods in the kernel map. */
  localPods(): LocalPod[] {
    return [...this.maps.kw_sm_pods.entries()].map(([k, v]) => {
      const f = v.readUInt32LE(KW_SM_POD.at.flags);
      return { ip: readAddr(k), sockmapOff: (f & SM_POD_OFF) !== 0, target: (f & SM_POD_TARGET) !== 0 };
    });
  }

  stats(): SockmapStats {
    return readSockmapStats(this.maps.kw_sm_stats);
  }

  /** Sockets in kw_sm_hash now (iterates the map: for status and tests, not per scrape). */
  socketCount(): number {
    let n = 0;
    for (const _ of this.maps.kw_sm_hash.keys()) n++;
    return n;
  }

  status(): SockmapStatus {
    const pods = this.localPods();
    return {
      enabled: this.enabled, sockets: this.socketCount(), capacity: this.maps.kw_sm_hash.info().maxEntries,
      localPods: pods.length, localPodsOff: pods.filter((p) => p.sockmapOff).length,
      localPodsTarget: pods.filter((p) => p.target && !p.sockmapOff).length, stats: this.stats(),
    };
  }

  /** Closes our file descriptors; programs stay attached and maps pinned. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sub.close();
  }
}

/**
 * Registers the sockmap counters on the agent's metrics (agent/metrics/registry.ts);
 * read() is called at scrape time, once per scrape for all of them (undefined:
 * acceleration not loaded, nothing reported).
 */
export function registerSockmapMetrics(
  m: Pick<AgentMetrics, 'counterAtScrape' | 'gaugeAtScrape'>,
  read: () => { stats: SockmapStats; enabled: boolean } | undefined,
): void {
  let snap: { stats: SockmapStats; enabled: boolean } | undefined;
  let taken = 0;
  // One kernel read per scrape, shared by the metrics below (a read that throws is
  // counted by AgentMetrics and leaves the metrics out of that scrape).
  const get = (): typeof snap => {
    const now = Date.now();
    if (now - taken > 100) { snap = undefined; taken = now; snap = read(); }
    return snap;
  };
  const counter = (name: string, help: string, samples: (s: SockmapStats) => Array<{ labels?: Record<string, string>; value: number }>, labelNames: string[] = []): void => {
    m.counterAtScrape({ name, help, labelNames, read: () => { const s = get(); return s ? samples(s.stats) : []; } });
  };
  counter('kernway_sockmap_redirected_messages_total', 'Messages moved straight to the peer socket (same-node acceleration).',
    (s) => [{ value: s.redirectedMessages }]);
  counter('kernway_sockmap_redirected_bytes_total', 'Bytes moved straight to the peer socket.', (s) => [{ value: s.redirectedBytes }]);
  counter('kernway_sockmap_passed_messages_total',
    'Messages of accelerated sockets sent through the TCP/IP stack, by reason: no_peer (the peer socket was not in the sockhash), ordering (kept on the stack so the stream stays in order), ' +
    'not_target (the peer socket is not read in a way redirected bytes serve exactly, or not read yet), receiver_full (the peer has as many unread redirected bytes as its buffers hold).',
    (s) => [
      { labels: { reason: 'no_peer' }, value: s.passedNoPeer }, { labels: { reason: 'ordering' }, value: s.passedOrder },
      { labels: { reason: 'not_target' }, value: s.passedNotTarget }, { labels: { reason: 'receiver_full' }, value: s.passedFull },
    ], ['reason']);
  counter('kernway_sockmap_inserts_total', 'Sockets added to the sockhash.', (s) => [{ value: s.inserts }]);
  counter('kernway_sockmap_insert_failures_total', 'Sockets not accelerated because the sockhash was full (reason full) or another error (reason error).',
    (s) => [{ labels: { reason: 'full' }, value: s.insertFull }, { labels: { reason: 'error' }, value: s.insertErrors }], ['reason']);
  counter('kernway_sockmap_handovers_total', 'Directions switched from the stack to redirection once the peer had read every earlier byte.',
    (s) => [{ value: s.handovers }]);
  counter('kernway_sockmap_skipped_sockets_total', 'Pod-to-pod sockets (two per connection) not accelerated because acceleration was off (agent flag or annotation).',
    (s) => [{ value: s.skippedOff }]);
  counter('kernway_sockmap_not_opted_in_sockets_total',
    'Pod-to-pod sockets not accelerated because neither pod opted in (kernway.io/sockmap: "on") nor is a waypoint: nothing could be redirected to either end.',
    (s) => [{ value: s.skippedNotOptedIn }]);
  counter('kernway_sockmap_header_only_released_total',
    'Sockets the waypoint hand-off had added to the sockhash only to write their PROXY header, taken out once it was written (their reads are plain TCP again).',
    (s) => [{ value: s.headerOnlyOut }]);
  counter('kernway_sockmap_blocking_sockets_total',
    'Pod-to-pod sockets not accelerated because their owner reads blocking (a blocking socket at connect, a blocking or unknown listener).',
    (s) => [{ value: s.skippedBlocking }]);
  counter('kernway_sockmap_receivers_total',
    'Accelerated sockets by how their owner reads them: target (non-blocking recvmsg, redirected bytes served exactly), stack (splice, blocking, MSG_PEEK, MSG_WAITALL or SO_RCVLOWAT: kept on the stack) ' +
    'or not_opted_in (its pod is neither annotated kernway.io/sockmap: "on" nor a waypoint: never a target).',
    (s) => [
      { labels: { result: 'target' }, value: s.targets }, { labels: { result: 'stack' }, value: s.keptOnStack },
      { labels: { result: 'not_opted_in' }, value: s.notOptedIn },
    ], ['result']);
  m.gaugeAtScrape({
    name: 'kernway_sockmap_enabled', help: '1 when new same-node connections are accelerated.',
    read: () => [{ value: get()?.enabled ? 1 : 0 }],
  });
}
