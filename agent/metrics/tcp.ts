/**
 * L4 traffic metrics with Istio's labels, from the kernel's connection counters
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
 * Counted in the kernel: per CPU, under the key that decides a connection's labels
 * (role, local and remote address, the address:port dialled), bpf/conn_metrics.bpf.c adds
 * each connection's numbers as it opens and closes, histogram buckets included. Nothing
 * reaches this process per connection. Each scrape reads the counters (sync) and adds
 * what each key grew since the previous read to the cell of its labels, resolved then:
 * connections still open are counted as opened, and a key's counts go to the labels of
 * the time they grew (a new resolver first takes what grew under the old one).
 *
 * Bounded: at most maxLabelSets label sets per node; a key of a new label set beyond that
 * is folded into one overflow series (every label "overflow" except reporter), and so are
 * connections whose key found the kernel's map full; kernway_tcp_metrics_overflow_total
 * counts the connections folded (by their opening). The kernel's map stays bounded: keys
 * that have not grown for OPENED_IDLE_MS are deleted from it.
 */
import type { Registry } from 'prom-client';
import { CM_COUNTS_AT, CM_COUNTS_LEN, CM_DURATION_BUCKETS, CM_RTT_BUCKETS, decodeConnKey, sumCounts, type ConnKey } from '../datapath/conn-counts.js';

export type { ConnKey } from '../datapath/conn-counts.js';

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

/** Bounds in seconds; the kernel buckets by the same bounds in µs and ns (bpf/conn_metrics.bpf.c). */
export const RTT_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
export const DURATION_BUCKETS = [0.001, 0.01, 0.1, 1, 10, 60, 600, 3600];
export const OVERFLOW = 'overflow';
const UNKNOWN = 'unknown';
if (RTT_BUCKETS.length !== CM_RTT_BUCKETS || DURATION_BUCKETS.length !== CM_DURATION_BUCKETS) throw new Error('tcp.ts buckets differ from conn-counts.ts');

/** A key of kw_cm_counts that has not grown for this long is deleted from the kernel's map (ms). */
export const OPENED_IDLE_MS = 10 * 60_000;

/** The kernel's counters (agent/datapath/conn-metrics.ts ConnCounts): struct kw_cm_okey keys, per-CPU struct kw_cm_counts values. */
export interface ConnCounts { keys: Buffer[]; values: Buffer[]; unkeyed: { client: Buffer; server: Buffer } | undefined; forget(keys: Buffer[]): void }

class Histo {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) { this.counts = new Float64Array(bounds.length); }
  /** n observations, their bucket counts (not cumulative, bounds.length of them) at d[at], their sum. */
  add(d: Float64Array, at: number, n: number, sum: number): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i]! += d[at + i]!;
    this.sum += sum;
    this.count += n;
  }
}

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

  /** What a key grew by (struct kw_cm_counts, summed over CPUs). Istio's directions: received = source -> destination. */
  add(d: Float64Array, client: boolean): void {
    this.opened += d[0]!;
    this.closed += d[1]!;
    this.received += client ? d[2]! : d[3]!;
    this.sent += client ? d[3]! : d[2]!;
    this.retransmits += d[4]!;
    this.resets += d[5]!;
    this.rtt.add(d, CM_COUNTS_AT.rtt, d[1]!, d[6]! / 1e6);
    this.duration.add(d, CM_COUNTS_AT.duration, d[1]!, d[7]! / 1e9);
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

export interface TcpMetricsOptions {
  /** Label sets per node before folding into the overflow series (default 2000). */
  maxLabelSets?: number;
  /** The kernel's counters now (read at each scrape). */
  counts?: () => ConnCounts | undefined;
  /** The kernel side's own counters: sockets it could not follow (kw_cm_conns full). */
  kernelStats?: () => { notFollowed: number } | undefined;
  /** The clock for forgetting idle keys (tests). */
  now?: () => number;
}

/** What was last read of one key: its totals, and when they last grew. */
interface Seen { totals: Float64Array; at: number }

export class TcpMetrics {
  readonly maxLabelSets: number;
  /** Connections (by their opening) folded into the overflow series. */
  folded = 0;
  private readonly cells = new Map<string, Cell>();
  private overflow: Map<string, Cell> = new Map();
  private resolver: TcpResolver | undefined;
  /** Per key of the kernel's map (latin1 of its bytes). */
  private seen = new Map<string, Seen>();
  private readonly seenUnkeyed = { client: new Float64Array(CM_COUNTS_LEN), server: new Float64Array(CM_COUNTS_LEN) };
  private readonly totals = new Float64Array(CM_COUNTS_LEN);
  private readonly delta = new Float64Array(CM_COUNTS_LEN);

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
    // Registered first: its read of the kernel's counters comes before any series is rendered.
    registry.registerMetric(new CellMetric('kernway_tcp_connections_opened_total',
      'TCP connections established, counted in the kernel (sock_ops), by Istio labels; connections still open are counted.', 'counter', () => {
        this.sync();
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
      'Connections folded into the overflow series: their label set was beyond the cap, or their key found the kernel\'s counters full.',
      'counter', () => [{ labels: {}, value: this.folded }]) as never);
    const kernel = opts.kernelStats;
    registry.registerMetric(new CellMetric('kernway_tcp_metrics_records_lost_total', 'Connection ends (sockets) the kernel could not follow (its table of open connections, kw_cm_conns, was full): counted in no kernway_tcp_* series.',
      'counter', () => [{ labels: {}, value: kernel?.()?.notFollowed ?? 0 }]) as never);
  }

  setResolver(r: TcpResolver): void {
    // What grew so far belongs to the labels it had until now.
    if (this.resolver) this.sync();
    this.resolver = r;
  }

  /** Istio's labels of a key. */
  labelsOf(k: ConnKey): Labels {
    const res = this.resolver;
    const client = k.role === 'client';
    const src = res?.workload(client ? k.local : k.remote);
    const dst = res?.workload(client ? k.remote : k.local);
    const svc = client ? res?.service(k.orig, k.origPort) : res?.serviceOfEndpoint(k.local, k.origPort);
    return {
      reporter: client ? 'source' : 'destination',
      source_workload: src?.name ?? UNKNOWN,
      source_workload_namespace: src?.namespace ?? UNKNOWN,
      destination_service: svc ?? UNKNOWN,
      destination_workload: dst?.name ?? UNKNOWN,
      destination_workload_namespace: dst?.namespace ?? UNKNOWN,
    };
  }

  /**
   * Reads the kernel's counters (opts.counts, or counts) and adds what each key grew
   * since the last read to its cell. baseline: take the values as the starting point
   * without counting them (what a previous agent counted). Keys that have not grown for
   * OPENED_IDLE_MS are deleted from the kernel's map; what the kernel adds to such a key
   * between this read and the delete is lost (a key idle for ten minutes, so rarely).
   */
  sync(counts?: ConnCounts, baseline = false): void {
    const src = counts ?? this.opts.counts?.();
    if (!src) return;
    const now = (this.opts.now ?? Date.now)();
    const idle: Buffer[] = [];
    const present = new Set<string>();
    for (let i = 0; i < src.keys.length; i++) {
      const key = src.keys[i]!;
      const id = key.toString('latin1');
      present.add(id);
      sumCounts(src.values[i]!, this.totals);
      let seen = this.seen.get(id);
      if (!seen) this.seen.set(id, seen = { totals: new Float64Array(CM_COUNTS_LEN), at: now });
      if (!this.grown(seen.totals)) {
        if (now - seen.at >= OPENED_IDLE_MS) idle.push(key);
        continue;
      }
      seen.at = now;
      if (baseline) continue;
      const k = decodeConnKey(key);
      const c = this.cell(this.labelsOf(k), this.delta[0]!);
      c.add(this.delta, k.role === 'client');
    }
    for (const id of this.seen.keys()) if (!present.has(id)) this.seen.delete(id);
    if (idle.length > 0) {
      src.forget(idle);
      for (const k of idle) this.seen.delete(k.toString('latin1'));
    }
    if (src.unkeyed) {
      for (const role of ['client', 'server'] as const) {
        sumCounts(src.unkeyed[role], this.totals);
        if (!this.grown(this.seenUnkeyed[role]) || baseline) continue;
        this.folded += this.delta[0]!;
        this.overflowCell(role === 'client' ? 'source' : 'destination').add(this.delta, role === 'client');
      }
    }
  }

  /** this.delta = this.totals - last (all of totals when one went back: the map was made again); last = totals. Whether anything grew. */
  private grown(last: Float64Array): boolean {
    let back = false;
    for (let i = 0; i < CM_COUNTS_LEN; i++) if (this.totals[i]! < last[i]!) back = true;
    let any = false;
    for (let i = 0; i < CM_COUNTS_LEN; i++) {
      const d = back ? this.totals[i]! : this.totals[i]! - last[i]!;
      this.delta[i] = d;
      if (d > 0) any = true;
      last[i] = this.totals[i]!;
    }
    return any;
  }

  get labelSets(): number {
    return this.cells.size;
  }

  /** The cell of a label set; beyond the cap, the reporter's overflow cell (n connections folded into it). */
  private cell(l: Labels, n: number): Cell {
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

/** What the resolver reads of a model (model/types.ts Model fits). */
export interface ResolverModel {
  pods: ReadonlyMap<string, { podIPs: readonly string[]; hostNetwork: boolean; phase?: string | undefined; name: string; namespace: string; labels: Readonly<Record<string, string>> }>;
  services: ReadonlyMap<string, { name: string; namespace: string; key: string; clusterIPs: readonly string[]; ports: ReadonlyArray<{ port: number; protocol: string }> }>;
  slicesByService: ReadonlyMap<string, ReadonlyArray<{ endpoints: Iterable<{ address: string }>; ports: ReadonlyArray<{ port: number | undefined; protocol: string }> }>>;
}

type Workload = { name: string; namespace: string };

/**
 * Keys (an address, or 'address|port') claimed by owners (a pod's or a Service's key), each
 * with a value; the value of a key is its smallest owner's (so the result does not depend on
 * the order in which owners came and went). One claim is kept as is, several as an array.
 */
class Claims<V> {
  private readonly m = new Map<string, { owner: string; value: V } | Array<{ owner: string; value: V }>>();

  get(key: string): V | undefined {
    const c = this.m.get(key);
    if (c === undefined) return undefined;
    if (!Array.isArray(c)) return c.value;
    let best = c[0]!;
    for (const x of c) if (x.owner < best.owner) best = x;
    return best.value;
  }

  add(key: string, owner: string, value: V): void {
    const c = this.m.get(key);
    if (c === undefined) { this.m.set(key, { owner, value }); return; }
    if (!Array.isArray(c)) {
      if (c.owner === owner) { c.value = value; return; }
      this.m.set(key, [c, { owner, value }]);
      return;
    }
    const same = c.find((x) => x.owner === owner);
    if (same) same.value = value;
    else c.push({ owner, value });
  }

  remove(key: string, owner: string): void {
    const c = this.m.get(key);
    if (c === undefined) return;
    if (!Array.isArray(c)) { if (c.owner === owner) this.m.delete(key); return; }
    const rest = c.filter((x) => x.owner !== owner);
    this.m.set(key, rest.length === 1 ? rest[0]! : rest);
  }

  get size(): number {
    return this.m.size;
  }

  clear(): void {
    this.m.clear();
  }
}

/**
 * Istio's labels from the model: a pod address's workload, a ClusterIP:port's and a backend
 * address:port's Service host. Built from the whole model when first asked (most agents
 * never label a connection between two changes), then kept up to date from each change's
 * keys (update): a Pod change costs its own addresses, a Service or EndpointSlice change its
 * own Service's, never a walk of the model. An address claimed twice (two pods, or a backend
 * of two Services) resolves to the smallest key's ('namespace/name'), as a rebuild would.
 */
export class ModelResolver implements TcpResolver {
  private built = false;
  private readonly byIp = new Claims<Workload>();
  private readonly vips = new Claims<string>();
  private readonly eps = new Claims<string>();
  /** What each pod and Service claimed (to take it back when it changes). */
  private readonly podIps = new Map<string, readonly string[]>();
  private readonly svcKeys = new Map<string, { vips: string[]; eps: string[] }>();

  constructor(
    private readonly model: ResolverModel,
    private readonly workloadOf: (pod: { name: string; namespace: string; labels: Readonly<Record<string, string>> }) => Workload,
    private readonly serviceHost: (namespace: string, name: string) => string,
  ) {}

  workload(ip: string): Workload | undefined {
    this.build();
    return this.byIp.get(ip);
  }

  service(ip: string, port: number): string | undefined {
    this.build();
    return this.vips.get(`${ip}|${port}`);
  }

  serviceOfEndpoint(ip: string, port: number): string | undefined {
    this.build();
    return this.eps.get(`${ip}|${port}`);
  }

  /** Whether the indexes are built (the first question builds them). */
  get isBuilt(): boolean {
    return this.built;
  }

  /**
   * The model changed: the pods and Services named (ModelChange.pods and .services, with
   * removed ones) are read again; undefined: everything (dropped, rebuilt when next asked).
   */
  update(change: { pods: ReadonlySet<string>; services: ReadonlySet<string> } | undefined): void {
    if (!this.built) return;
    if (change === undefined) {
      this.built = false;
      for (const c of [this.byIp, this.vips, this.eps, this.podIps, this.svcKeys]) c.clear();
      return;
    }
    for (const k of change.pods) this.pod(k);
    for (const k of change.services) this.svc(k);
  }

  private build(): void {
    if (this.built) return;
    this.built = true;
    for (const k of this.model.pods.keys()) this.pod(k);
    for (const k of this.model.services.keys()) this.svc(k);
  }

  private pod(key: string): void {
    for (const ip of this.podIps.get(key) ?? []) this.byIp.remove(ip, key);
    this.podIps.delete(key);
    const p = this.model.pods.get(key);
    if (!p || p.hostNetwork || p.phase === 'Succeeded' || p.phase === 'Failed' || p.podIPs.length === 0) return;
    const w = this.workloadOf(p);
    for (const ip of p.podIPs) this.byIp.add(ip, key, w);
    this.podIps.set(key, p.podIPs);
  }

  private svc(key: string): void {
    const had = this.svcKeys.get(key);
    if (had) {
      for (const k of had.vips) this.vips.remove(k, key);
      for (const k of had.eps) this.eps.remove(k, key);
      this.svcKeys.delete(key);
    }
    const s = this.model.services.get(key);
    if (!s) return;
    const host = this.serviceHost(s.namespace, s.name);
    const vips: string[] = [];
    const eps: string[] = [];
    for (const ip of s.clusterIPs) for (const p of s.ports) if (p.protocol === 'TCP') vips.push(`${ip}|${p.port}`);
    for (const sl of this.model.slicesByService.get(key) ?? []) {
      for (const e of sl.endpoints) for (const p of sl.ports) if (p.port !== undefined && p.protocol === 'TCP') eps.push(`${e.address}|${p.port}`);
    }
    for (const k of vips) this.vips.add(k, key, host);
    for (const k of eps) this.eps.add(k, key, host);
    if (vips.length > 0 || eps.length > 0) this.svcKeys.set(key, { vips, eps });
  }
}
