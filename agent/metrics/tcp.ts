/**
 * L4 traffic metrics with Istio's labels, from the kernel's connection records
 * (agent/datapath/conn-metrics.ts): per label set, connections opened and closed, bytes
 * each way, smoothed RTT and duration histograms, retransmissions and resets.
 *
 * Labels (as Istio's ztunnel): reporter ("source" for the connecting socket, "destination"
 * for the accepted one: a connection between two pods of this node is reported twice,
 * once by each end, as two ztunnels would), source_workload, source_workload_namespace,
 * destination_service (the Service host of the ClusterIP dialled, or "unknown"),
 * destination_workload, destination_workload_namespace. Byte directions follow Istio:
 * kernway_tcp_received_bytes_total counts what the source sent to the destination
 * (the request direction), kernway_tcp_sent_bytes_total what the destination sent back.
 *
 * Bounded: at most maxLabelSets label sets per node; a record of a new label set beyond
 * that is folded into one overflow series (every label "overflow" except reporter) and
 * counted in kernway_tcp_metrics_overflow_total.
 *
 * The connection path never waits for this: the records are counted into plain
 * numbers, rendered when /metrics is scraped. The drain reads the kernel's records in
 * place (recordBatch: no object or string per record); a record's cell is found by
 * numbers (IPv4 addresses, port, role), its labels resolved once per distinct key.
 * Opened connections are not records: the kernel counts them per CPU under the key that
 * decides their labels (kw_cm_opened); each scrape reads those counters and adds what
 * each key grew since the last read to the key's cell (syncOpened), so connections still
 * open at a scrape are counted, and a key's counts go to the labels of the time they grew.
 */
import type { Registry } from 'prom-client';
import { CM_AT, CM_EVENT_SIZE, decodeConnRecords, decodeOpenedKey, type ConnRecord } from '../datapath/conn-record.js';

/** What a connection record must say (agent/datapath/conn-metrics.ts decodes them from the kernel). */
export type TcpRecord = Omit<ConnRecord, 'cookie' | 'redirectedSent' | 'redirectedReceived'>;

export interface TcpResolver {
  /** The workload of a pod address. */
  workload(ip: string): { name: string; namespace: string } | undefined;
  /** The Service host (name.ns.svc.cluster.local) of a ClusterIP:port. */
  service(ip: string, port: number): string | undefined;
  /** The Service host of a backend address:port (the server side, which never sees the ClusterIP). */
  serviceOfEndpoint(ip: string, port: number): string | undefined;
}

export const TCP_LABELS = [
  'reporter', 'source_workload', 'source_workload_namespace', 'destination_service', 'destination_workload', 'destination_workload_namespace',
] as const;
type Labels = Record<(typeof TCP_LABELS)[number], string>;

export const RTT_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
export const DURATION_BUCKETS = [0.001, 0.01, 0.1, 1, 10, 60, 600, 3600];
export const OVERFLOW = 'overflow';
const UNKNOWN = 'unknown';

class Cell {
  opened = 0;
  closed = 0;
  sent = 0;
  received = 0;
  retransmits = 0;
  resets = 0;
  readonly rtt = new Histo(RTT_BUCKETS);
  readonly duration = new Histo(DURATION_BUCKETS);
  constructor(readonly labels: Labels) {}
}

class Histo {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) { this.counts = new Float64Array(bounds.length); }
  observe(v: number): void {
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]!) i++;
    if (i < this.bounds.length) this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

interface Value { metricName?: string; labels: Record<string, string | number>; value: number }

/** A metric for prom-client's registry whose values are read from the cells at scrape time. */
class CellMetric {
  readonly aggregator = 'sum' as const;
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'gauge' | 'histogram', private readonly values: () => Value[]) {}
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Value[] }> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() });
  }
  reset(): void { /* counters never go back */ }
}

/** The kernel's opened counters (agent/datapath/conn-metrics.ts OpenedCounts): struct kw_cm_okey keys, per-CPU __u64 values. */
export interface OpenedCounts { keys: Buffer[]; values: Buffer[]; forget(keys: Buffer[]): void }

/** A key of kw_cm_opened that has not grown for this long is deleted from the map (ms). */
export const OPENED_IDLE_MS = 10 * 60_000;

export interface TcpMetricsOptions {
  /** Label sets per node before folding into the overflow series (default 2000). */
  maxLabelSets?: number;
  /**
   * The kernel side's counters at scrape time: records lost when the ring buffer was
   * full, connections opened whose key found the opened counters full (by role).
   */
  kernelStats?: () => { lost: number; openFullClient?: number; openFullServer?: number } | undefined;
  /** The kernel's opened counters now (read at each scrape). */
  opened?: () => OpenedCounts | undefined;
  /** The clock for forgetting idle keys (tests). */
  now?: () => number;
}

export class TcpMetrics {
  readonly maxLabelSets: number;
  /** Records folded into the overflow series. */
  folded = 0;
  private readonly cells = new Map<string, Cell>();
  private overflow: Map<string, Cell> = new Map();
  private resolver: TcpResolver | undefined;
  /**
   * Cells by the numbers that decide a record's labels (IPv4 records): local address ->
   * remote address -> role·2^48 + dialled address·2^16 + dialled port. Cleared with the resolver.
   */
  private byAddr = new Map<number, Map<number, Map<number, Cell>>>();
  /** Per key of the opened counters (latin1 of its bytes): the total last read and when it last grew. */
  private openedSeen = new Map<string, { total: number; at: number }>();
  /** The opened counts the kernel could not key (map full), by reporter, as last read. */
  private openFullSeen = { source: 0, destination: 0 };

  constructor(registry: Registry, private readonly opts: TcpMetricsOptions = {}) {
    this.maxLabelSets = opts.maxLabelSets ?? 2000;
    const all = (): Cell[] => [...this.cells.values(), ...this.overflow.values()];
    const counter = (name: string, help: string, pick: (c: Cell) => number): void => {
      registry.registerMetric(new CellMetric(name, help, 'counter', () => all().map((c) => ({ labels: c.labels, value: pick(c) }))) as never);
    };
    const histogram = (name: string, help: string, pick: (c: Cell) => Histo): void => {
      registry.registerMetric(new CellMetric(name, help, 'histogram', () => all().flatMap((c) => {
        const h = pick(c);
        const out: Value[] = [];
        let acc = 0;
        h.bounds.forEach((b, i) => { acc += h.counts[i]!; out.push({ metricName: `${name}_bucket`, labels: { ...c.labels, le: b }, value: acc }); });
        out.push({ metricName: `${name}_bucket`, labels: { ...c.labels, le: '+Inf' }, value: h.count });
        out.push({ metricName: `${name}_sum`, labels: c.labels, value: h.sum });
        out.push({ metricName: `${name}_count`, labels: c.labels, value: h.count });
        return out;
      })) as never);
    };
    // Registered first: its read of the kernel's opened counters comes before the other series are rendered.
    registry.registerMetric(new CellMetric('kernway_tcp_connections_opened_total',
      'TCP connections established, seen in the kernel (sock_ops), by Istio labels; connections still open are counted.', 'counter', () => {
        this.syncOpened();
        return all().map((c) => ({ labels: c.labels, value: c.opened }));
      }) as never);
    counter('kernway_tcp_connections_closed_total', 'TCP connections closed, by Istio labels.', (c) => c.closed);
    counter('kernway_tcp_received_bytes_total',
      'Bytes the source sent to the destination (the request direction, as Istio counts it) over closed connections, including bytes the sockmap carried past the TCP stack.',
      (c) => c.received);
    counter('kernway_tcp_sent_bytes_total',
      'Bytes the destination sent to the source (the response direction, as Istio counts it) over closed connections, including bytes the sockmap carried.', (c) => c.sent);
    counter('kernway_tcp_retransmits_total', 'Segments retransmitted by the reporting end, over closed connections.', (c) => c.retransmits);
    counter('kernway_tcp_resets_total', 'Closed connections that ended with a reset (sent or received by the reporting end).', (c) => c.resets);
    histogram('kernway_tcp_rtt_seconds', 'Smoothed round-trip time of the reporting end when the connection closed.', (c) => c.rtt);
    histogram('kernway_tcp_connection_duration_seconds', 'Time from establishment to close.', (c) => c.duration);
    registry.registerMetric(new CellMetric('kernway_tcp_metrics_label_sets', `Label sets of the kernway_tcp_* metrics on this node (at most ${this.maxLabelSets}, then folded into the overflow series).`,
      'gauge', () => [{ labels: {}, value: this.cells.size }]) as never);
    registry.registerMetric(new CellMetric('kernway_tcp_metrics_overflow_total',
      'Connection records and opened connections folded into the overflow series because the label sets (or the kernel\'s opened counters) were at their cap.',
      'counter', () => [{ labels: {}, value: this.folded }]) as never);
    const kernel = opts.kernelStats;
    registry.registerMetric(new CellMetric('kernway_tcp_metrics_records_lost_total', 'Connection records the kernel could not write because the ring buffer was full (the agent drains it every 100 ms).',
      'counter', () => [{ labels: {}, value: kernel?.()?.lost ?? 0 }]) as never);
  }

  setResolver(r: TcpResolver): void {
    // Opens counted so far belong to the labels they had until now.
    if (this.resolver) this.syncOpened();
    this.resolver = r;
    this.byAddr = new Map();
  }

  /**
   * Reads the kernel's opened counters (opts.opened, or counts) and adds what each key
   * grew since the last read to its cell. baseline: take the values as the starting
   * point without counting them (what a previous agent counted). Keys that have not grown
   * for OPENED_IDLE_MS are deleted from the kernel's map, which stays bounded; an open
   * counted by the kernel between that read and the delete is lost (after ten idle minutes).
   */
  syncOpened(counts?: OpenedCounts, baseline = false): void {
    const src = counts ?? this.opts.opened?.();
    const now = (this.opts.now ?? Date.now)();
    if (src) {
      const idle: Buffer[] = [];
      const present = new Set<string>();
      for (let i = 0; i < src.keys.length; i++) {
        const key = src.keys[i]!;
        const v = src.values[i]!;
        let total = 0;
        for (let o = 0; o + 8 <= v.length; o += 8) total += v.readUInt32LE(o) + v.readUInt32LE(o + 4) * 2 ** 32;
        const id = key.toString('latin1');
        present.add(id);
        const seen = this.openedSeen.get(id);
        // A total below the last read: the map was created again (uninstall); all of it is new.
        const grown = seen && total >= seen.total ? total - seen.total : total;
        if (!seen) this.openedSeen.set(id, { total, at: now });
        else if (grown > 0) { seen.total = total; seen.at = now; }
        else if (now - seen.at >= OPENED_IDLE_MS) idle.push(key);
        if (grown > 0 && !baseline) {
          const k = decodeOpenedKey(key);
          this.cell(this.labelsOf({ ...k, localPort: k.origPort }), grown).opened += grown;
        }
      }
      for (const id of this.openedSeen.keys()) if (!present.has(id)) this.openedSeen.delete(id);
      if (idle.length > 0) {
        src.forget(idle);
        for (const k of idle) this.openedSeen.delete(k.toString('latin1'));
      }
    }
    const st = this.opts.kernelStats?.();
    if (st) {
      for (const [reporter, total] of [['source', st.openFullClient ?? 0], ['destination', st.openFullServer ?? 0]] as const) {
        const grown = total >= this.openFullSeen[reporter] ? total - this.openFullSeen[reporter] : total;
        this.openFullSeen[reporter] = total;
        if (grown > 0 && !baseline) {
          this.folded += grown;
          this.overflowCell(reporter).opened += grown;
        }
      }
    }
  }

  /** Istio's labels of a record (or of an opened counter's key: the same fields). */
  labelsOf(r: Pick<TcpRecord, 'role' | 'local' | 'localPort' | 'remote' | 'orig' | 'origPort'>): Labels {
    const res = this.resolver;
    const client = r.role === 'client';
    const src = res?.workload(client ? r.local : r.remote);
    const dst = res?.workload(client ? r.remote : r.local);
    const svc = client ? res?.service(r.orig, r.origPort) : res?.serviceOfEndpoint(r.local, r.localPort);
    return {
      reporter: client ? 'source' : 'destination',
      source_workload: src?.name ?? UNKNOWN,
      source_workload_namespace: src?.namespace ?? UNKNOWN,
      destination_service: svc ?? UNKNOWN,
      destination_workload: dst?.name ?? UNKNOWN,
      destination_workload_namespace: dst?.namespace ?? UNKNOWN,
    };
  }

  record(records: readonly TcpRecord[]): void {
    for (const r of records) {
      const c = this.cell(this.labelsOf(r));
      if (r.event === 'opened') c.opened++;
      else closed(c, r.role === 'client', r.bytesSent, r.bytesReceived, r.retransmits, r.reset, r.srttUs, r.durationNs);
    }
  }

  /**
   * count records of struct kw_cm_event (agent/datapath/conn-record.ts) as the ring buffer
   * hands them over, read in place: what record() does, without an object per record.
   */
  recordBatch(data: Buffer, count: number): void {
    const dv = new DataView(data.buffer, data.byteOffset, count * CM_EVENT_SIZE);
    for (let i = 0, o = 0; i < count; i++, o += CM_EVENT_SIZE) {
      const client = data[o + CM_AT.role] === 1;
      const c = this.cellAt(data, dv, o, client);
      if (data[o + CM_AT.event] === 1) {
        c.opened++;
        continue;
      }
      closed(c, client, u64(dv, o + CM_AT.sent), u64(dv, o + CM_AT.received), dv.getUint32(o + CM_AT.retrans, true),
        data[o + CM_AT.reset] === 1, dv.getUint32(o + CM_AT.srtt, true), u64(dv, o + CM_AT.duration));
    }
  }

  /** The cell of the record at o: by numbers when its addresses are IPv4, else through its decoded labels. */
  private cellAt(data: Buffer, dv: DataView, o: number, client: boolean): Cell {
    if (!mappedV4(dv, o + CM_AT.local) || !mappedV4(dv, o + CM_AT.remote) || !mappedV4(dv, o + CM_AT.orig)) {
      return this.cell(this.labelsOf(decodeConnRecords(data.subarray(o, o + CM_EVENT_SIZE), 1)[0]!));
    }
    const local = dv.getUint32(o + CM_AT.local + 12);
    const remote = dv.getUint32(o + CM_AT.remote + 12);
    // What decides the service: the address:port dialled (client), the own address:port (server).
    const dialled = client
      ? 2 ** 48 + dv.getUint32(o + CM_AT.orig + 12) * 65536 + dv.getUint16(o + CM_AT.oport)
      : 2 * 2 ** 48 + local * 65536 + dv.getUint16(o + CM_AT.lport);
    let byRemote = this.byAddr.get(local);
    if (!byRemote) this.byAddr.set(local, byRemote = new Map());
    let byDialled = byRemote.get(remote);
    if (!byDialled) byRemote.set(remote, byDialled = new Map());
    const hit = byDialled.get(dialled);
    if (hit) return hit;
    const folded = this.folded;
    const c = this.cell(this.labelsOf(decodeConnRecords(data.subarray(o, o + CM_EVENT_SIZE), 1)[0]!));
    // The overflow cell is not remembered: each record folded into it is counted in folded.
    if (this.folded === folded) byDialled.set(dialled, c);
    return c;
  }

  get labelSets(): number {
    return this.cells.size;
  }

  /** The cell of a label set; beyond the cap, the reporter's overflow cell (n records folded into it). */
  private cell(l: Labels, n = 1): Cell {
    const key = `${l.reporter}\0${l.source_workload}\0${l.source_workload_namespace}\0${l.destination_service}\0${l.destination_workload}\0${l.destination_workload_namespace}`;
    let c = this.cells.get(key);
    if (c) return c;
    if (this.cells.size < this.maxLabelSets) {
      c = new Cell(l);
      this.cells.set(key, c);
      return c;
    }
    this.folded += n;
    return this.overflowCell(l.reporter);
  }

  private overflowCell(reporter: string): Cell {
    let o = this.overflow.get(reporter);
    if (!o) {
      o = new Cell({ reporter, source_workload: OVERFLOW, source_workload_namespace: OVERFLOW, destination_service: OVERFLOW,
        destination_workload: OVERFLOW, destination_workload_namespace: OVERFLOW });
      this.overflow.set(reporter, o);
    }
    return o;
  }
}

/** A closed record's values into its cell. Istio's directions: received = source -> destination, sent = destination -> source. */
function closed(c: Cell, client: boolean, bytesSent: number, bytesReceived: number, retransmits: number, reset: boolean, srttUs: number, durationNs: number): void {
  c.closed++;
  if (client) {
    c.received += bytesSent;
    c.sent += bytesReceived;
  } else {
    c.received += bytesReceived;
    c.sent += bytesSent;
  }
  c.retransmits += retransmits;
  if (reset) c.resets++;
  c.rtt.observe(srttUs / 1e6);
  c.duration.observe(durationNs / 1e9);
}

function u64(dv: DataView, at: number): number {
  return dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 2 ** 32;
}

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d, as the kernel's records hold IPv4) at. */
function mappedV4(dv: DataView, at: number): boolean {
  return dv.getUint32(at) === 0 && dv.getUint32(at + 4) === 0 && dv.getUint32(at + 8) === 0xffff;
}

/** A resolver over a model's pods and Services (the agent builds one per snapshot). */
export function modelResolver(
  model: { pods: ReadonlyMap<string, { podIPs: readonly string[]; hostNetwork: boolean; phase?: string | undefined; name: string; namespace: string; labels: Readonly<Record<string, string>> }>;
    services: ReadonlyMap<string, { name: string; namespace: string; key: string; clusterIPs: readonly string[]; ports: ReadonlyArray<{ port: number; protocol: string }> }>;
    slicesByService: ReadonlyMap<string, ReadonlyArray<{ endpoints: ReadonlyArray<{ address: string }>; ports: ReadonlyArray<{ port: number | undefined; protocol: string }> }>> },
  workloadOf: (pod: { name: string; namespace: string; labels: Readonly<Record<string, string>> }) => { name: string; namespace: string },
  serviceHost: (namespace: string, name: string) => string,
): TcpResolver {
  const byIp = new Map<string, { name: string; namespace: string }>();
  for (const p of model.pods.values()) {
    if (p.hostNetwork || p.phase === 'Succeeded' || p.phase === 'Failed') continue;
    const w = workloadOf(p);
    for (const ip of p.podIPs) byIp.set(ip, w);
  }
  const vips = new Map<string, string>();
  const eps = new Map<string, string>();
  for (const s of model.services.values()) {
    const host = serviceHost(s.namespace, s.name);
    for (const ip of s.clusterIPs) for (const p of s.ports) if (p.protocol === 'TCP') vips.set(`${ip}|${p.port}`, host);
    for (const sl of model.slicesByService.get(s.key) ?? []) {
      for (const e of sl.endpoints) for (const p of sl.ports) if (p.port !== undefined && p.protocol === 'TCP' && !eps.has(`${e.address}|${p.port}`)) eps.set(`${e.address}|${p.port}`, host);
    }
  }
  return {
    workload: (ip) => byIp.get(ip),
    service: (ip, port) => vips.get(`${ip}|${port}`),
    serviceOfEndpoint: (ip, port) => eps.get(`${ip}|${port}`),
  };
}
