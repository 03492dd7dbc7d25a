/**
 * L4 connection records from the kernel (bpf/conn_metrics.bpf.c, docs/metrics.md): a
 * sock_ops program of its own on the agent's cgroup counts each connection at
 * establishment in per-CPU counters keyed by what decides its labels (kw_cm_opened,
 * read when /metrics is scraped) and writes one "closed" record at TCP_CLOSE (bytes
 * each way, sockmap-carried bytes included, duration, smoothed RTT, retransmissions,
 * reset) into a ring buffer; the agent drains it on a timer. Both go to
 * agent/metrics/tcp.ts.
 *
 * Pins (the layout of sock-lb.ts): maps/kw_cm_{events,sk,stats,opened}, links/cg-<ino>/kw_cm_sockops.
 * The program reads the balancer's kw_revnat (what the client dialled) and the
 * accelerator's kw_sm_io/kw_sm_sk/kw_sm_rx (redirected bytes) through their pins: it
 * never writes them, and never replaces them (a pinned map of another layout makes
 * the metrics unavailable, not the map migrated).
 */
import { join } from 'node:path';
import type { Logger } from '../../common/log.js';
import { errorMessage } from '../../common/errors.js';
import { projectRoot } from '../../common/version.js';
import { existsSync, rmSync } from 'node:fs';
import { BpfLink, BpfRingBuffer, type BpfMap } from '../../native/index.js';
import { decodeConnRecords, CM_EVENT_SIZE, CM_OKEY_SIZE, type ConnRecord } from './conn-record.js';
import { scalar, struct, type MapLayout } from './layout.js';
import { checkSubsystem, type LoadedSubsystem, type SubsystemSpec } from './loader.js';
import { pinLayout } from './sock-lb.js';
import { SOCKMAP_MAP_NAMES } from './sockmap.js';

export { CM_EVENT_SIZE, CM_OKEY_SIZE, decodeConnRecords, decodeOpenedKey, type ConnRecord } from './conn-record.js';

export const CM_PROGRAM = 'kw_cm_sockops';
export const CM_MAP_NAMES = ['kw_cm_events', 'kw_cm_sk', 'kw_cm_stats', 'kw_cm_opened'] as const;
/** The other subsystems' maps the program reads (its object declares them: they are reused by pin). */
const SHARED_MAPS = ['kw_revnat', ...SOCKMAP_MAP_NAMES] as const;

/** struct kw_cm_okey (the key of kw_cm_opened). */
export const KW_CM_OKEY = struct('kw_cm_okey', CM_OKEY_SIZE, { local: [0, 16], remote: [16, 16], orig: [32, 16], oport: [48, 2], role: [50, 1], pad: [51, 5] });
export const CM_LAYOUTS: Readonly<Record<string, MapLayout>> = {
  kw_cm_stats: { key: scalar(4), value: scalar(8) },
  kw_cm_opened: { key: KW_CM_OKEY, value: scalar(8), readOnly: true },
};

/** kw_cm_stats' slots (KW_CM_STAT_* in bpf/conn_metrics.bpf.c). */
const STAT = { lost: 0, notFollowed: 1, openFullClient: 2, openFullServer: 3 } as const;

/**
 * The opened counters as read from kw_cm_opened: one key (struct kw_cm_okey) and one
 * value (every CPU's __u64) per entry; forget deletes keys (agent/metrics/tcp.ts
 * deletes the ones that stopped growing long ago).
 */
export interface OpenedCounts { keys: Buffer[]; values: Buffer[]; forget(keys: Buffer[]): void }

export interface ConnMetricsOptions {
  cgroupPath: string;
  bpffsDir: string;
  objectPath?: string;
  /** Called with each batch of records drained, decoded into objects (tests, tools). */
  onRecords?: (records: ConnRecord[]) => void;
  /**
   * Called with each batch as the kernel wrote it: count records of CM_EVENT_SIZE bytes
   * in data (agent/metrics/tcp.ts reads them in place, no object per record). Takes
   * precedence over onRecords.
   */
  onBatch?: (data: Buffer, count: number) => void;
  /** How often the ring buffer is drained, ms (default 100). */
  drainMs?: number;
  log?: Logger;
}

export function defaultConnMetricsObjectPath(): string {
  return join(projectRoot(), 'build', 'bpf', 'conn_metrics.bpf.o');
}

/** The kernel side's own counters. */
export interface ConnMetricsStats {
  lost: number; notFollowed: number; skipped: number;
  /** Connections opened whose key found kw_cm_opened full, by role (counted into the overflow series). */
  openFullClient: number; openFullServer: number;
}

export class ConnMetrics {
  private readonly ring: BpfRingBuffer;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private skippedRecords = 0;
  /**
   * kw_cm_opened as it was before this agent attached its program: what a previous
   * agent already counted (agent/agent.ts takes it as the starting point, not as new opens).
   */
  readonly openedAtLoad: OpenedCounts;

  private constructor(private readonly sub: LoadedSubsystem, private readonly opts: ConnMetricsOptions) {
    this.openedAtLoad = this.opened();
    this.ring = BpfRingBuffer.open(sub.map('kw_cm_events'), CM_EVENT_SIZE);
    this.timer = setInterval(() => this.drain(), opts.drainMs ?? 100);
    this.timer.unref();
  }

  static spec(opts: Pick<ConnMetricsOptions, 'cgroupPath' | 'bpffsDir' | 'objectPath' | 'log'>): SubsystemSpec {
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
      keep: ['kw_cm_sk', 'kw_cm_events', ...SHARED_MAPS],
      linksDir: layout.cgroupLinks!,
      // cgroup links run every program attached: this one runs after the accelerator's.
      links: [{ program: CM_PROGRAM, attach: (p) => p.attachCgroup(opts.cgroupPath, 'sock_ops') }],
      ...(opts.log ? { log: opts.log } : {}),
    };
  }

  static async load(opts: ConnMetricsOptions): Promise<ConnMetrics> {
    const sub = await checkSubsystem(ConnMetrics.spec(opts)).load();
    try {
      const cm = new ConnMetrics(sub, opts); // reads kw_cm_opened before the program is (re)attached
      const r = sub.attach();
      opts.log?.info({ cgroup: opts.cgroupPath, reusedMaps: sub.reusedMaps, updatedLinks: r.updated, createdLinks: r.created }, 'connection metrics attached');
      return cm;
    } catch (e) {
      sub.close();
      throw e;
    }
  }

  /** Drains the ring buffer now (the timer does it every drainMs); returns how many records. */
  drain(): number {
    if (this.closed) return 0;
    try {
      const { data, count } = this.ring.consume();
      this.skippedRecords = this.ring.skipped;
      if (count > 0) {
        if (this.opts.onBatch) this.opts.onBatch(data, count);
        else this.opts.onRecords?.(decodeConnRecords(data, count));
      }
      return count;
    } catch (e) {
      this.opts.log?.error({ err: errorMessage(e) }, 'connection metrics: draining the ring buffer failed');
      return 0;
    }
  }

  stats(): ConnMetricsStats {
    const m: BpfMap = this.sub.map('kw_cm_stats');
    const read = (i: number): number => {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(i);
      const v = m.lookup(k);
      let n = 0n;
      if (v) for (let o = 0; o + 8 <= v.length; o += 8) n += v.readBigUInt64LE(o);
      return Number(n);
    };
    return { lost: read(STAT.lost), notFollowed: read(STAT.notFollowed), skipped: this.skippedRecords,
      openFullClient: read(STAT.openFullClient), openFullServer: read(STAT.openFullServer) };
  }

  /** kw_cm_opened now (one batch lookup; read when /metrics is scraped). */
  opened(): OpenedCounts {
    const m = this.sub.map('kw_cm_opened');
    const { keys, values } = this.closed ? { keys: [], values: [] } : m.batchLookup();
    return { keys, values, forget: (ks) => { if (!this.closed && ks.length > 0) m.batchDelete(ks); } };
  }

  /** Drains what is left and closes our descriptors; the program stays attached (pinned link). */
  close(): void {
    if (this.closed) return;
    this.drain();
    this.closed = true;
    clearInterval(this.timer);
    this.ring.close();
    this.sub.close();
  }
}

/**
 * Detaches the connection metrics program from the cgroup and removes its link pin
 * (the maps stay pinned). For benchmarks comparing with and without; the agent itself
 * leaves it attached, and `kernway uninstall` removes everything.
 */
export function detachConnMetrics(bpffsDir: string, cgroupPath: string): boolean {
  const pin = join(pinLayout(bpffsDir, cgroupPath).cgroupLinks!, CM_PROGRAM);
  if (!existsSync(pin)) return false;
  const link = BpfLink.openPinned(pin);
  try { link.detach(); } finally { link.close(); }
  rmSync(pin, { force: true });
  return true;
}
