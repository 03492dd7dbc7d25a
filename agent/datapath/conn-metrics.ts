/**
 * L4 connection counters from the kernel (bpf/conn_metrics.bpf.c, docs/metrics.md): a
 * sock_ops program of its own on the agent's cgroup counts each connection in the kernel,
 * per CPU, under the key that decides its labels (kw_cm_counts): opened at establishment;
 * closed, bytes each way (sockmap-carried bytes included), duration, smoothed RTT,
 * retransmissions and resets at TCP_CLOSE. Nothing crosses to the agent per connection:
 * agent/metrics/tcp.ts reads the counters when /metrics is scraped (counts()).
 *
 * Pins (the layout of sock-lb.ts): maps/kw_cm_{counts,unkeyed,conns,stats},
 * links/cg-<ino>/kw_cm_sockops and links/cg-<ino>/kw_cm_close (the close hook, a BTF
 * tracepoint program on sock:inet_sock_set_state).
 * The program reads the balancer's kw_revnat (what the client dialled) and the
 * accelerator's kw_sm_io/kw_sm_sk/kw_sm_rx (redirected bytes) through their pins: it
 * never writes them, and never replaces them (a pinned map of another layout makes
 * the metrics unavailable, not the map migrated).
 */
import { join } from 'node:path';
import type { Logger } from '../../common/log.js';
import { projectRoot } from '../../common/version.js';
import type { BpfMap, BpfProgram } from '../../native/index.js';
import { detachPin } from './pins.js';
import { CM_COUNTS_AT, CM_COUNTS_SIZE, CM_DURATION_BUCKETS, CM_OKEY_SIZE, CM_RTT_BUCKETS } from './conn-counts.js';
import { scalar, struct, type MapLayout } from './layout.js';
import { checkSubsystem, type LoadedSubsystem, type SubsystemSpec } from './loader.js';
import { pinLayout } from './sock-lb.js';
import { SOCKMAP_MAP_NAMES } from './sockmap.js';


export const CM_PROGRAM = 'kw_cm_sockops';
/** The close hook (tp_btf sock:inet_sock_set_state, machine-wide; pinned beside the sock_ops link). */
export const CM_CLOSE_PROGRAM = 'kw_cm_close';
export const CM_MAP_NAMES = ['kw_cm_counts', 'kw_cm_unkeyed', 'kw_cm_conns', 'kw_cm_stats'] as const;
/** The other subsystems' maps the program reads (its object declares them: they are reused by pin). */
const SHARED_MAPS = ['kw_revnat', ...SOCKMAP_MAP_NAMES] as const;

/** struct kw_cm_okey (the key of kw_cm_counts). */
export const KW_CM_OKEY = struct('kw_cm_okey', CM_OKEY_SIZE, { local: [0, 16], remote: [16, 16], orig: [32, 16], oport: [48, 2], role: [50, 1], pad: [51, 5] });
/** struct kw_cm_counts (per CPU, the value of kw_cm_counts and kw_cm_unkeyed). */
export const KW_CM_COUNTS = struct('kw_cm_counts', CM_COUNTS_SIZE, {
  opened: [0, 8], closed: [8, 8], sent: [16, 8], received: [24, 8], retrans: [32, 8], resets: [40, 8], rtt_sum_us: [48, 8], duration_sum_ns: [56, 8],
  rtt: [8 * CM_COUNTS_AT.rtt, 8 * CM_RTT_BUCKETS], duration: [8 * CM_COUNTS_AT.duration, 8 * CM_DURATION_BUCKETS],
});
export const CM_LAYOUTS: Readonly<Record<string, MapLayout>> = {
  kw_cm_stats: { key: scalar(4), value: scalar(8) },
  kw_cm_counts: { key: KW_CM_OKEY, value: KW_CM_COUNTS, readOnly: true },
  kw_cm_unkeyed: { key: scalar(4), value: KW_CM_COUNTS, readOnly: true },
};

/** kw_cm_stats' slots (KW_CM_STAT_* in bpf/conn_metrics.bpf.c). */
const STAT_NOT_FOLLOWED = 1;

/**
 * The kernel's counters now: kw_cm_counts' keys (struct kw_cm_okey) and values (every
 * CPU's struct kw_cm_counts), the unkeyed counters of client and server sockets (the map
 * was full), and forget(keys), which deletes keys (agent/metrics/tcp.ts deletes the ones
 * that stopped growing long ago).
 */
export interface ConnCounts { keys: Buffer[]; values: Buffer[]; unkeyed: { client: Buffer; server: Buffer } | undefined; forget(keys: Buffer[]): void }

export interface ConnMetricsOptions {
  cgroupPath: string;
  bpffsDir: string;
  objectPath?: string;
  log?: Logger;
  /**
   * false: the sock_ops program only, for a second cgroup of a node whose first already
   * has the close hook with the same maps (the paired benchmark). The hook is
   * machine-wide; a second one would only run twice. Default true.
   */
  closeHook?: boolean;
}

export function defaultConnMetricsObjectPath(): string {
  return join(projectRoot(), 'build', 'bpf', 'conn_metrics.bpf.o');
}

/** The kernel side's own counters. */
export interface ConnMetricsStats {
  /** Sockets not followed: kw_cm_conns was full (counted nowhere else). */
  notFollowed: number;
}

export class ConnMetrics {
  private closed = false;
  /**
   * The counters as they were before this agent attached its program: what a previous
   * agent already counted (agent/agent.ts takes it as the starting point, not as new counts).
   */
  readonly countsAtLoad: ConnCounts;

  private constructor(private readonly sub: LoadedSubsystem) {
    this.countsAtLoad = this.counts();
  }

  static spec(opts: Pick<ConnMetricsOptions, 'cgroupPath' | 'bpffsDir' | 'objectPath' | 'log' | 'closeHook'>): SubsystemSpec {
    const layout = pinLayout(opts.bpffsDir, opts.cgroupPath);
    return {
      what: 'the connection metrics',
      objects: [{ path: opts.objectPath ?? defaultConnMetricsObjectPath() }],
      mapsDir: layout.maps,
      maps: [...CM_MAP_NAMES, ...SHARED_MAPS],
      layouts: CM_LAYOUTS,
      codec: 'agent/datapath/conn-metrics.ts',
      // The shared maps keep the capacity they were pinned with (--map-capacity); socket storage has none.
      sized: SHARED_MAPS.filter((n) => n !== 'kw_sm_sk' && n !== 'kw_sm_io'),
      // Socket storage cannot be copied; the other subsystems' maps are never ours to replace.
      keep: [...SHARED_MAPS],
      linksDir: layout.cgroupLinks!,
      links: [
        // The close hook first: every socket followed has its close seen. (A raw tracepoint
        // link cannot be updated: the new one replaces the pin, both run for a moment, and
        // a connection is counted closed once whichever runs.)
        ...(opts.closeHook === false ? [] : [{ program: CM_CLOSE_PROGRAM, attach: (p: BpfProgram) => p.attachRawTracepoint(), swap: 'replace' as const }]),
        // cgroup links run every program attached: this one runs after the accelerator's.
        { program: CM_PROGRAM, attach: (p: BpfProgram) => p.attachCgroup(opts.cgroupPath, 'sock_ops') },
      ],
      ...(opts.log ? { log: opts.log } : {}),
    };
  }

  static async load(opts: ConnMetricsOptions): Promise<ConnMetrics> {
    const sub = await checkSubsystem(ConnMetrics.spec(opts)).load();
    try {
      const cm = new ConnMetrics(sub); // reads the counters before the program is (re)attached
      const r = sub.attach();
      opts.log?.info({ cgroup: opts.cgroupPath, reusedMaps: sub.reusedMaps, updatedLinks: r.updated, createdLinks: r.created }, 'connection metrics attached');
      return cm;
    } catch (e) {
      sub.close();
      throw e;
    }
  }

  stats(): ConnMetricsStats {
    const m: BpfMap = this.sub.map('kw_cm_stats');
    const k = Buffer.alloc(4);
    k.writeUInt32LE(STAT_NOT_FOLLOWED);
    const v = this.closed ? undefined : m.lookup(k);
    let n = 0n;
    if (v) for (let o = 0; o + 8 <= v.length; o += 8) n += v.readBigUInt64LE(o);
    return { notFollowed: Number(n) };
  }

  /** The counters now (one batch lookup of kw_cm_counts, two lookups of kw_cm_unkeyed; read when /metrics is scraped). */
  counts(): ConnCounts {
    if (this.closed) return { keys: [], values: [], unkeyed: undefined, forget: () => undefined };
    const m = this.sub.map('kw_cm_counts');
    const u = this.sub.map('kw_cm_unkeyed');
    const { keys, values } = m.batchLookup();
    const at = (i: number): Buffer => { const k = Buffer.alloc(4); k.writeUInt32LE(i); return u.lookup(k) ?? Buffer.alloc(0); };
    return { keys, values, unkeyed: { client: at(0), server: at(1) }, forget: (ks) => { if (!this.closed && ks.length > 0) m.batchDelete(ks); } };
  }

  /** Closes our descriptors; the program stays attached (pinned link) and keeps counting. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sub.close();
  }
}

/**
 * Detaches the connection metrics programs of the cgroup (sock_ops and the close hook)
 * and removes their link pins (the maps stay pinned). For benchmarks comparing with and
 * without; the agent itself leaves them attached, and `kernway uninstall` removes
 * everything. True when the sock_ops program was attached.
 */
export function detachConnMetrics(bpffsDir: string, cgroupPath: string): boolean {
  const dir = pinLayout(bpffsDir, cgroupPath).cgroupLinks!;
  let had = false;
  // (A tracepoint link cannot be detached: it goes with its pin, its last reference.)
  for (const name of [CM_PROGRAM, CM_CLOSE_PROGRAM]) if (detachPin(join(dir, name)) && name === CM_PROGRAM) had = true;
  return had;
}
