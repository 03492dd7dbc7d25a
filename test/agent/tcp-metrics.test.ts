/**
 * L4 metrics from the kernel (bpf/conn_metrics.bpf.c, agent/metrics/tcp.ts), in the real
 * kernel with the real agent: a client pod dials a Service's ClusterIP, the balancer
 * sends it to a backend pod, the sockmap carries most bytes past the TCP stack, and the
 * kernway_tcp_* series say who talked to whom, through which Service, how many
 * connections (exactly) and how many bytes each way (within the protocol's framing).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { Lab, type Pod } from '../../lab/index.js';
import { Agent } from '../../agent/agent.js';
import { validateAgentOptions } from '../../agent/options.js';
import { uninstall } from '../../agent/datapath/sock-lb.js';
import { serviceObject, sliceObject, writeManifest } from '../../agent/demo/manifests.js';
import { DURATION_BUCKETS, OPENED_IDLE_MS, RTT_BUCKETS, TcpMetrics, type ConnCounts } from '../../agent/metrics/tcp.js';
import { CM_COUNTS_AT, CM_COUNTS_LEN, CM_COUNTS_SIZE, CM_OKEY_AT, CM_OKEY_SIZE } from '../../agent/datapath/conn-counts.js';
import { encodeAddr } from '../../agent/datapath/addr.js';
import { Server, runClient, startClient } from '../sockmap/harness.js';
import { BpfMap } from '../../native/index.js';

const NODE = 'node-a';
const VIP = '10.96.0.20';
const HOST = 'web.shop.svc.cluster.local';
/**
 * The test protocol's framing per connection: client -> server a 32-byte header and a
 * 32-byte digest, server -> client a greeting byte, a 32-byte digest and a verdict byte.
 * TCP's counters add at most the SYN and the FIN (one sequence number each).
 */
const FRAMING_UP = 64;
const FRAMING_DOWN = 34;
const SYN_FIN = 2;
let lab: Lab;
let client: Pod, backend: Pod;
let root: string;
let dir: string;
let bpffs: string;
let server: Server | undefined;
let agent: Agent | undefined;

function pod(p: Pod, app: string) {
  return {
    apiVersion: 'v1', kind: 'Pod',
    // Opted in to receiving redirected bytes (docs/sockmap.md rule 7), so the sockmap carries most of them.
    metadata: { name: `${app}-7d9f8c6b5-${p.name}`, namespace: 'shop', labels: { app }, annotations: { 'kernway.io/sockmap': 'on' } },
    spec: { nodeName: NODE, containers: [{ name: 'c', image: 'x' }] },
    status: { phase: 'Running', podIP: p.ipv4, podIPs: [{ ip: p.ipv4 }, { ip: p.ipv6 }] },
  };
}

/** Samples of a metric in exposition text whose labels include `match`. */
function samples(text: string, name: string, match: Record<string, string>): number[] {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const labels = Object.fromEntries([...line.slice(name.length + 1, line.lastIndexOf('}')).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(match).every(([k, v]) => labels[k] === v)) out.push(Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}
const one = (text: string, name: string, match: Record<string, string>): number => {
  const s = samples(text, name, match);
  expect(s, `${name} ${JSON.stringify(match)}`).toHaveLength(1);
  return s[0]!;
};

beforeAll(async () => {
  lab = await Lab.create({ tag: 'tcpm' });
  client = await lab.addPod('c');
  backend = await lab.addPod('b');
  root = mkdtempSync(join(tmpdir(), 'kernway-tcp-metrics-'));
  dir = join(root, 'manifests');
  mkdirSync(dir);
  bpffs = join(lab.bpffsDir, 'agent');
  writeManifest(dir, 'objects.yaml', [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } },
    pod(client, 'shopper'), pod(backend, 'web'),
    serviceObject({ name: 'web', namespace: 'shop', clusterIPs: [VIP], ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
    sliceObject({ name: 'web-1', namespace: 'shop', service: 'web', ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip: backend.ipv4, nodeName: NODE }] }),
  ]);
  const opts = validateAgentOptions({
    standalone: dir, nodeName: NODE, cgroup: lab.cgroupPath, bpffs, adminSocket: join(root, 'admin.sock'), metricsAddress: '127.0.0.1:0', debounceMs: 10,
  });
  agent = new Agent(opts, createLogger('test-agent', 'silent'));
  await agent.start();
  // Listening after the programs are attached, so the sockmap accelerates its sockets (docs/sockmap.md rule 5).
  server = await Server.start(lab, backend, '::', [8080]);
});

afterAll(async () => {
  await agent?.drain().catch(() => undefined);
  await server?.stop();
  try { uninstall(bpffs); } catch { /* the lab removes the folder anyway */ }
  await lab?.destroy();
  if (root) rmSync(root, { recursive: true, force: true });
});

/** Entries of the kernel's table of followed sockets (kw_cm_conns, by socket cookie). */
function followedSockets(): number {
  const m = BpfMap.openPinned(join(bpffs, 'maps', 'kw_cm_conns'));
  try { return m.batchLookup().keys.length; } finally { m.close(); }
}

const SRC = { reporter: 'source', source_workload: 'shopper', source_workload_namespace: 'shop', destination_service: HOST, destination_workload: 'web', destination_workload_namespace: 'shop' };
const DST = { ...SRC, reporter: 'destination' };

async function closedBoth(n: number): Promise<string> {
  let text = '';
  for (let i = 0; i < 200; i++) {
    text = await agent!.metrics.text(); // a scrape reads the kernel's counters
    const s = samples(text, 'kernway_tcp_connections_closed_total', SRC)[0] ?? 0;
    const d = samples(text, 'kernway_tcp_connections_closed_total', DST)[0] ?? 0;
    if (s >= n && d >= n) return text;
    await new Promise((r) => setTimeout(r, 50)); // polling the scrape until both ends have closed, up to 10 s
  }
  return text;
}

describe('L4 metrics from the kernel', () => {
  it('counts connections exactly and bytes each way (sockmap-carried bytes included) between the two workloads, through the ClusterIP', async () => {
    const sm0 = agent!.status().sockmap!.stats.redirectedBytes;
    const res = await runClient(lab, client, { targets: [{ host: VIP, port: 80 }], conns: 30, concurrency: 10, min: 1, max: 256 << 10 });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(30);
    const text = await closedBoth(30);
    // Most bytes took the sockmap, past TCP's own counters: the metric must still see them.
    const redirected = agent!.status().sockmap!.stats.redirectedBytes - sm0;
    expect(redirected).toBeGreaterThan(0.8 * (res.sent + res.received));

    for (const labels of [SRC, DST]) {
      expect(one(text, 'kernway_tcp_connections_opened_total', labels)).toBe(30);
      expect(one(text, 'kernway_tcp_connections_closed_total', labels)).toBe(30);
      const received = one(text, 'kernway_tcp_received_bytes_total', labels); // source -> destination
      const sent = one(text, 'kernway_tcp_sent_bytes_total', labels); // destination -> source
      expect(received).toBeGreaterThanOrEqual(res.sent + 30 * FRAMING_UP);
      expect(received).toBeLessThanOrEqual(res.sent + 30 * (FRAMING_UP + SYN_FIN));
      expect(sent).toBeGreaterThanOrEqual(res.received + 30 * FRAMING_DOWN);
      expect(sent).toBeLessThanOrEqual(res.received + 30 * (FRAMING_DOWN + SYN_FIN));
      expect(one(text, 'kernway_tcp_rtt_seconds_count', labels)).toBe(30);
      // Smoothed RTT over a veth pair on one machine: above 0, far below a second.
      const rttSum = one(text, 'kernway_tcp_rtt_seconds_sum', labels);
      expect(rttSum).toBeGreaterThan(0);
      expect(rttSum / 30).toBeLessThan(0.5);
      expect(one(text, 'kernway_tcp_connection_duration_seconds_count', labels)).toBe(30);
      expect(one(text, 'kernway_tcp_retransmits_total', labels)).toBeGreaterThanOrEqual(0);
      expect(one(text, 'kernway_tcp_resets_total', labels)).toBe(0);
    }
    expect(text).toMatch(/^kernway_tcp_metrics_records_lost_total 0$/m); // connections not followed
    expect(text).toMatch(/^kernway_tcp_metrics_overflow_total 0$/m);
  });

  it('counts resets: a client that aborts its connections', async () => {
    const before = await agent!.metrics.text();
    const r0 = samples(before, 'kernway_tcp_resets_total', SRC)[0] ?? 0;
    const c0 = samples(before, 'kernway_tcp_connections_closed_total', SRC)[0] ?? 0;
    const res = await runClient(lab, client, { targets: [{ host: VIP, port: 80 }], conns: 5, concurrency: 5, min: 1000, max: 1000, mode: 'rst' });
    expect(res.ok).toBe(5);
    const text = await closedBoth(c0 + 5);
    expect(one(text, 'kernway_tcp_connections_closed_total', SRC) - c0).toBe(5);
    expect(one(text, 'kernway_tcp_resets_total', SRC) - r0).toBe(5);
  });
  it('counts connections still open at a scrape as opened (the kernel\'s per-CPU counters), and each exactly once when they close', async () => {
    const before = await agent!.metrics.text();
    const o0 = [SRC, DST].map((l) => samples(before, 'kernway_tcp_connections_opened_total', l)[0] ?? 0);
    const c0 = [SRC, DST].map((l) => samples(before, 'kernway_tcp_connections_closed_total', l)[0] ?? 0);
    // 6 connections held open for 4 s after their bytes are sent, then aborted.
    const job = startClient(lab, client, { targets: [{ host: VIP, port: 80 }], conns: 6, concurrency: 6, min: 100, max: 100, mode: 'rst', holdMs: 4000 });
    let open = '';
    for (let i = 0; i < 60; i++) {
      open = await agent!.metrics.text(); // a scrape, while the connections are open
      if ([SRC, DST].every((l, k) => (samples(open, 'kernway_tcp_connections_opened_total', l)[0] ?? 0) - o0[k]! >= 6)) break;
      await new Promise((r) => setTimeout(r, 50)); // polling the scrape, up to 3 s (the connections stay open 4 s)
    }
    [SRC, DST].forEach((l, k) => {
      expect(one(open, 'kernway_tcp_connections_opened_total', l) - o0[k]!).toBe(6);
      expect(one(open, 'kernway_tcp_connections_closed_total', l) - c0[k]!).toBe(0);
    });
    // The kernel's table of open connections holds both ends of each (and nothing of the closed ones before).
    expect(followedSockets()).toBe(12);
    expect((await job).ok).toBe(6);
    const text = await closedBoth(c0[0]! + 6);
    [SRC, DST].forEach((l, k) => {
      expect(one(text, 'kernway_tcp_connections_closed_total', l) - c0[k]!).toBe(6);
      expect(one(text, 'kernway_tcp_connections_opened_total', l) - o0[k]!).toBe(6);
    });
    expect(followedSockets()).toBe(0); // each entry deleted at its socket's close: nothing left behind
  });
});

describe('across an agent restart', () => {
  it('a restarted agent keeps the kernel\'s counters, does not report again what its predecessor reported, and counts what comes next', async () => {
    const before = await agent!.metrics.text();
    expect(samples(before, 'kernway_tcp_connections_closed_total', SRC)[0]).toBeGreaterThan(0);
    await agent!.drain(); // the programs stay attached, the maps pinned
    agent = new Agent(validateAgentOptions({
      standalone: dir, nodeName: NODE, cgroup: lab.cgroupPath, bpffs, adminSocket: join(root, 'admin2.sock'), metricsAddress: '127.0.0.1:0', debounceMs: 10,
    }), createLogger('test-agent-2', 'silent'));
    await agent.start();
    const fresh = await agent.metrics.text();
    for (const name of ['kernway_tcp_connections_opened_total', 'kernway_tcp_connections_closed_total']) expect(samples(fresh, name, SRC)[0] ?? 0).toBe(0);
    const res = await runClient(lab, client, { targets: [{ host: VIP, port: 80 }], conns: 4, concurrency: 4, min: 1, max: 1000 });
    expect(res.ok).toBe(4);
    const text = await closedBoth(4);
    for (const labels of [SRC, DST]) {
      expect(one(text, 'kernway_tcp_connections_opened_total', labels)).toBe(4);
      expect(one(text, 'kernway_tcp_connections_closed_total', labels)).toBe(4);
    }
  });
});

describe('kernway uninstall', () => {
  it('detaches both programs: the sock_ops one of the cgroup and the machine-wide close hook', async () => {
    await agent!.drain(); // the programs stay attached, the maps pinned
    agent = undefined;
    const r = uninstall(bpffs);
    const mine = (name: string): string[] => r.detached.filter((d) => d.endsWith(`/${name}`));
    expect(mine('kw_cm_sockops')).toHaveLength(1);
    expect(mine('kw_cm_close')).toHaveLength(1);
    expect(r.unpinned).toEqual(expect.arrayContaining(['kw_cm_counts', 'kw_cm_conns']));
    expect(existsSync(join(bpffs, 'links'))).toBe(false);
  });
});

/*
 * The agent's side alone, against counters laid out as bpf/conn_metrics.bpf.c keeps them
 * (struct kw_cm_okey keys, per-CPU struct kw_cm_counts values).
 */
const CPUS = 3;
/** A key of kw_cm_counts. */
const okey = (role: 'client' | 'server', local: string, remote: string, orig: string, port: number): Buffer => {
  const k = Buffer.alloc(CM_OKEY_SIZE);
  encodeAddr(local).copy(k, CM_OKEY_AT.local);
  encodeAddr(remote).copy(k, CM_OKEY_AT.remote);
  encodeAddr(orig).copy(k, CM_OKEY_AT.orig);
  k.writeUInt16BE(port, CM_OKEY_AT.oport);
  k[CM_OKEY_AT.role] = role === 'client' ? 1 : 2;
  return k;
};
const bucket = (bounds: readonly number[], v: number): number => { let i = 0; while (i < bounds.length && v > bounds[i]!) i++; return i; };

/** A fake kw_cm_counts (and kw_cm_unkeyed): per key, one struct per CPU. */
class FakeCounts {
  readonly entries = new Map<string, { key: Buffer; cpus: Float64Array[] }>();
  readonly unkeyedCpus = { client: cpus(), server: cpus() };
  forgotten: Buffer[] = [];
  private at(key: Buffer | 'client' | 'server', cpu: number): Float64Array {
    if (typeof key === 'string') return this.unkeyedCpus[key][cpu]!;
    const id = key.toString('hex');
    const e = this.entries.get(id) ?? { key, cpus: cpus() };
    this.entries.set(id, e);
    return e.cpus[cpu]!;
  }
  open(key: Buffer | 'client' | 'server', cpu: number, n = 1): void {
    this.at(key, cpu)[0]! += n;
  }
  /** One connection closed, as the program counts it: bytes this socket sent and received, RTT, duration. */
  close(key: Buffer | 'client' | 'server', cpu: number, c: { sent: number; received: number; rttUs: number; durationNs: number; retrans?: number; reset?: boolean }): void {
    const v = this.at(key, cpu);
    v[1]! += 1; v[2]! += c.sent; v[3]! += c.received; v[4]! += c.retrans ?? 0; v[5]! += c.reset ? 1 : 0; v[6]! += c.rttUs; v[7]! += c.durationNs;
    const r = bucket(RTT_BUCKETS, c.rttUs / 1e6);
    if (r < RTT_BUCKETS.length) v[CM_COUNTS_AT.rtt + r]! += 1;
    const d = bucket(DURATION_BUCKETS, c.durationNs / 1e9);
    if (d < DURATION_BUCKETS.length) v[CM_COUNTS_AT.duration + d]! += 1;
  }
  read(): ConnCounts {
    const es = [...this.entries.values()];
    return {
      keys: es.map((e) => e.key), values: es.map((e) => encode(e.cpus)),
      unkeyed: { client: encode(this.unkeyedCpus.client), server: encode(this.unkeyedCpus.server) },
      forget: (ks) => { for (const k of ks) { this.forgotten.push(k); this.entries.delete(k.toString('hex')); } },
    };
  }
}
function cpus(): Float64Array[] {
  return Array.from({ length: CPUS }, () => new Float64Array(CM_COUNTS_LEN));
}
function encode(perCpu: Float64Array[]): Buffer {
  const b = Buffer.alloc(CPUS * CM_COUNTS_SIZE);
  perCpu.forEach((v, c) => v.forEach((n, i) => b.writeBigUInt64LE(BigInt(n), c * CM_COUNTS_SIZE + 8 * i)));
  return b;
}
const resolver = (names: Record<string, string>) => ({
  workload: (ip: string) => (names[ip] ? { name: names[ip]!, namespace: 'ns' } : undefined),
  service: (_ip: string, port: number) => `s${port}.ns.svc.cluster.local`, serviceOfEndpoint: (_ip: string, port: number) => `e${port}.ns.svc.cluster.local`,
});
const opened = (text: string, match: Record<string, string>): number => one(text, 'kernway_tcp_connections_opened_total', match);

describe('the kernel\'s counters into the series', () => {
  it('adds what each key grew since the last scrape (summed over CPUs), to the labels of the time it grew', async () => {
    const fake = new FakeCounts();
    let clock = 0;
    const reg = new Registry();
    const m = new TcpMetrics(reg, { maxLabelSets: 3, counts: () => fake.read(), now: () => clock });
    m.setResolver(resolver({ '10.0.0.1': 'a', '10.0.1.1': 'web' }));
    const cli = okey('client', '10.0.0.1', '10.0.1.1', '10.96.0.1', 80);
    const srv = okey('server', '10.0.1.1', '10.0.0.1', '10.0.1.1', 8080);
    // A previous agent counted 7: the starting point, not new opens.
    fake.open(cli, 0, 7);
    m.sync(fake.read(), true);
    fake.open(cli, 0, 2);
    fake.open(cli, 2, 3);
    fake.open(srv, 1, 4);
    let text = await reg.metrics();
    expect(opened(text, { reporter: 'source', source_workload: 'a', destination_workload: 'web', destination_service: 's80.ns.svc.cluster.local' })).toBe(5);
    expect(opened(text, { reporter: 'destination', source_workload: 'a', destination_workload: 'web', destination_service: 'e8080.ns.svc.cluster.local' })).toBe(4);
    expect(one(text, 'kernway_tcp_connections_closed_total', { reporter: 'source', source_workload: 'a' })).toBe(0);
    // Another scrape without new opens adds nothing.
    text = await reg.metrics();
    expect(opened(text, { reporter: 'source', source_workload: 'a' })).toBe(5);
    // The address now belongs to another workload: what grew before the change stays with a, the rest goes to b.
    fake.open(cli, 1, 1);
    m.setResolver(resolver({ '10.0.0.1': 'b', '10.0.1.1': 'web' }));
    fake.open(cli, 1, 2);
    text = await reg.metrics();
    expect(opened(text, { reporter: 'source', source_workload: 'a' })).toBe(6);
    expect(opened(text, { reporter: 'source', source_workload: 'b' })).toBe(2);
    expect(text).toMatch(/^kernway_tcp_metrics_label_sets 3$/m);
    // Beyond the cap (3 label sets): folded into the overflow series and counted; so are connections the kernel could not key (its map full).
    fake.open(okey('client', '10.0.0.9', '10.0.1.1', '10.96.0.1', 80), 0, 4);
    fake.open('client', 1, 5);
    fake.close('client', 1, { sent: 10, received: 20, rttUs: 100, durationNs: 1e6 });
    fake.open('server', 0, 1);
    text = await reg.metrics();
    expect(opened(text, { reporter: 'source', source_workload: 'overflow' })).toBe(9);
    expect(one(text, 'kernway_tcp_received_bytes_total', { reporter: 'source', source_workload: 'overflow' })).toBe(10);
    expect(opened(text, { reporter: 'destination', source_workload: 'overflow' })).toBe(1);
    expect(text).toMatch(/^kernway_tcp_metrics_overflow_total 10$/m);
    expect(fake.forgotten).toHaveLength(0);
    // Keys that did not grow for OPENED_IDLE_MS are deleted from the kernel's map; their counts stay.
    clock += OPENED_IDLE_MS;
    fake.open(srv, 0, 1);
    text = await reg.metrics();
    expect(fake.forgotten.map((k) => k[CM_OKEY_AT.role])).toEqual([1, 1]);
    expect(opened(text, { reporter: 'source', source_workload: 'b' })).toBe(2);
    expect(opened(text, { reporter: 'destination', source_workload: 'overflow' })).toBe(2); // the server key, now b's: a 4th label set
    // A forgotten key that comes back (a connection opened before it closes now) counts from zero.
    fake.close(cli, 2, { sent: 1, received: 2, rttUs: 100, durationNs: 1e6 });
    text = await reg.metrics();
    expect(opened(text, { reporter: 'source', source_workload: 'b' })).toBe(2);
    expect(one(text, 'kernway_tcp_connections_closed_total', { reporter: 'source', source_workload: 'b' })).toBe(1);
  });

  it('closed connections: bytes in Istio\'s directions for each reporter, resets, retransmits, RTT and duration histograms; IPv6 keys', async () => {
    const fake = new FakeCounts();
    const reg = new Registry();
    const m = new TcpMetrics(reg, { counts: () => fake.read(), kernelStats: () => ({ notFollowed: 3 }) });
    m.setResolver(resolver({ '10.0.0.1': 'a', '10.0.1.1': 'web', 'fd00::1': 'a6', 'fd00::2': 'web6' }));
    const cli = okey('client', '10.0.0.1', '10.0.1.1', '10.96.0.1', 80);
    const srv = okey('server', '10.0.1.1', '10.0.0.1', '10.0.1.1', 8080);
    fake.open(cli, 0, 2);
    fake.close(cli, 0, { sent: 100, received: 2 ** 40 + 7, rttUs: 40, durationNs: 5e5, retrans: 2 }); // 64-bit counts
    fake.close(cli, 1, { sent: 50, received: 5, rttUs: 3_000_000, durationNs: 2e10, reset: true }); // beyond the last bounds: +Inf only
    fake.close(srv, 2, { sent: 5, received: 50, rttUs: 250, durationNs: 1e6 });
    fake.close(okey('client', 'fd00::1', 'fd00::2', 'fd00::2', 443), 0, { sent: 1, received: 1, rttUs: 1, durationNs: 1 });
    const text = await reg.metrics();
    const src = { reporter: 'source', source_workload: 'a', destination_workload: 'web' };
    expect(one(text, 'kernway_tcp_received_bytes_total', src)).toBe(150); // what the source (this client socket) sent
    expect(one(text, 'kernway_tcp_sent_bytes_total', src)).toBe(2 ** 40 + 12);
    expect(one(text, 'kernway_tcp_received_bytes_total', { ...src, reporter: 'destination' })).toBe(50); // what the server socket received
    expect(one(text, 'kernway_tcp_sent_bytes_total', { ...src, reporter: 'destination' })).toBe(5);
    expect(one(text, 'kernway_tcp_resets_total', src)).toBe(1);
    expect(one(text, 'kernway_tcp_retransmits_total', src)).toBe(2);
    expect(one(text, 'kernway_tcp_rtt_seconds_bucket', { ...src, le: '0.00005' })).toBe(1);
    expect(one(text, 'kernway_tcp_rtt_seconds_bucket', { ...src, le: '1' })).toBe(1);
    expect(one(text, 'kernway_tcp_rtt_seconds_bucket', { ...src, le: '+Inf' })).toBe(2);
    expect(one(text, 'kernway_tcp_rtt_seconds_sum', src)).toBeCloseTo(3.00004, 9);
    expect(one(text, 'kernway_tcp_connection_duration_seconds_bucket', { ...src, le: '0.001' })).toBe(1);
    expect(one(text, 'kernway_tcp_connection_duration_seconds_bucket', { ...src, le: '60' })).toBe(2);
    expect(one(text, 'kernway_tcp_connection_duration_seconds_count', src)).toBe(2);
    expect(one(text, 'kernway_tcp_rtt_seconds_bucket', { reporter: 'destination', le: '0.00025' })).toBe(1);
    expect(one(text, 'kernway_tcp_rtt_seconds_bucket', { reporter: 'destination', le: '0.0001' })).toBe(0);
    expect(one(text, 'kernway_tcp_connections_closed_total', { source_workload: 'a6', destination_workload: 'web6', destination_service: 's443.ns.svc.cluster.local' })).toBe(1);
    expect(text).toMatch(/^kernway_tcp_metrics_records_lost_total 3$/m);
  });

  it('labels what it cannot resolve "unknown", as Istio does', () => {
    const m = new TcpMetrics(new Registry());
    expect(m.labelsOf({ role: 'server', local: '10.0.0.9', remote: '10.0.1.1', orig: '10.0.0.9', origPort: 80 })).toEqual({
      reporter: 'destination', source_workload: 'unknown', source_workload_namespace: 'unknown', destination_service: 'unknown',
      destination_workload: 'unknown', destination_workload_namespace: 'unknown',
    });
  });
});
