/**
 * L4 metrics from the kernel (bpf/conn_metrics.bpf.c, agent/metrics/tcp.ts), in the real
 * kernel with the real agent: a client pod dials a Service's ClusterIP, the balancer
 * sends it to a backend pod, the sockmap carries most bytes past the TCP stack, and the
 * kernway_tcp_* series say who talked to whom, through which Service, how many
 * connections (exactly) and how many bytes each way (within the protocol's framing).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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
import { OPENED_IDLE_MS, TcpMetrics, type OpenedCounts, type TcpRecord } from '../../agent/metrics/tcp.js';
import { CM_AT, CM_EVENT_SIZE, CM_OKEY_AT, CM_OKEY_SIZE } from '../../agent/datapath/conn-record.js';
import { encodeAddr } from '../../agent/datapath/addr.js';
import { Server, runClient, startClient } from '../sockmap/harness.js';

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
    metadata: { name: `${app}-7d9f8c6b5-${p.name}`, namespace: 'shop', labels: { app } },
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

const SRC = { reporter: 'source', source_workload: 'shopper', source_workload_namespace: 'shop', destination_service: HOST, destination_workload: 'web', destination_workload_namespace: 'shop' };
const DST = { ...SRC, reporter: 'destination' };

async function closedBoth(n: number): Promise<string> {
  let text = '';
  for (let i = 0; i < 200; i++) {
    agent!.drainConnRecords();
    text = await agent!.metrics.text();
    const s = samples(text, 'kernway_tcp_connections_closed_total', SRC)[0] ?? 0;
    const d = samples(text, 'kernway_tcp_connections_closed_total', DST)[0] ?? 0;
    if (s >= n && d >= n) return text;
    await new Promise((r) => setTimeout(r, 50)); // polling the agent's drain (every 100 ms), up to 10 s
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
    expect(text).toMatch(/^kernway_tcp_metrics_records_lost_total 0$/m);
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
      open = await agent!.metrics.text(); // a scrape: no drain, no closed record yet
      if ([SRC, DST].every((l, k) => (samples(open, 'kernway_tcp_connections_opened_total', l)[0] ?? 0) - o0[k]! >= 6)) break;
      await new Promise((r) => setTimeout(r, 50)); // polling the scrape, up to 3 s (the connections stay open 4 s)
    }
    [SRC, DST].forEach((l, k) => {
      expect(one(open, 'kernway_tcp_connections_opened_total', l) - o0[k]!).toBe(6);
      expect(one(open, 'kernway_tcp_connections_closed_total', l) - c0[k]!).toBe(0);
    });
    expect((await job).ok).toBe(6);
    const text = await closedBoth(c0[0]! + 6);
    [SRC, DST].forEach((l, k) => {
      expect(one(text, 'kernway_tcp_connections_closed_total', l) - c0[k]!).toBe(6);
      expect(one(text, 'kernway_tcp_connections_opened_total', l) - o0[k]!).toBe(6);
    });
  });
});

describe('opened connections from the kernel\'s counters', () => {
  const CPUS = 3;
  /** A key of kw_cm_opened as bpf/conn_metrics.bpf.c writes it. */
  const okey = (role: 'client' | 'server', local: string, remote: string, orig: string, port: number): Buffer => {
    const k = Buffer.alloc(CM_OKEY_SIZE);
    encodeAddr(local).copy(k, CM_OKEY_AT.local);
    encodeAddr(remote).copy(k, CM_OKEY_AT.remote);
    encodeAddr(orig).copy(k, CM_OKEY_AT.orig);
    k.writeUInt16BE(port, CM_OKEY_AT.oport);
    k[CM_OKEY_AT.role] = role === 'client' ? 1 : 2;
    return k;
  };
  /** A fake kw_cm_opened: per key, one count per CPU. */
  class FakeOpened {
    readonly counts = new Map<string, { key: Buffer; perCpu: number[] }>();
    forgotten: Buffer[] = [];
    add(key: Buffer, cpu: number, n: number): void {
      const id = key.toString('hex');
      const e = this.counts.get(id) ?? { key, perCpu: new Array<number>(CPUS).fill(0) };
      e.perCpu[cpu]! += n;
      this.counts.set(id, e);
    }
    read(): OpenedCounts {
      const es = [...this.counts.values()];
      return {
        keys: es.map((e) => e.key),
        values: es.map((e) => { const v = Buffer.alloc(8 * CPUS); e.perCpu.forEach((n, i) => v.writeBigUInt64LE(BigInt(n), 8 * i)); return v; }),
        forget: (ks) => { for (const k of ks) { this.forgotten.push(k); this.counts.delete(k.toString('hex')); } },
      };
    }
  }
  const resolver = (names: Record<string, string>) => ({
    workload: (ip: string) => (names[ip] ? { name: names[ip]!, namespace: 'ns' } : undefined),
    service: (_ip: string, port: number) => `s${port}.ns.svc.cluster.local`, serviceOfEndpoint: (_ip: string, port: number) => `e${port}.ns.svc.cluster.local`,
  });
  const opened = (text: string, match: Record<string, string>): number => one(text, 'kernway_tcp_connections_opened_total', match);

  it('adds what each key grew since the last scrape (summed over CPUs), to the labels of the time it grew', async () => {
    const fake = new FakeOpened();
    let clock = 0;
    const reg = new Registry();
    const stats = { lost: 0, openFullClient: 0, openFullServer: 0 };
    const m = new TcpMetrics(reg, { maxLabelSets: 3, opened: () => fake.read(), kernelStats: () => stats, now: () => clock });
    m.setResolver(resolver({ '10.0.0.1': 'a', '10.0.1.1': 'web' }));
    const cli = okey('client', '10.0.0.1', '10.0.1.1', '10.96.0.1', 80);
    const srv = okey('server', '10.0.1.1', '10.0.0.1', '10.0.1.1', 8080);
    // A previous agent counted 7: the starting point, not new opens.
    fake.add(cli, 0, 7);
    m.syncOpened(fake.read(), true);
    fake.add(cli, 0, 2);
    fake.add(cli, 2, 3);
    fake.add(srv, 1, 4);
    let text = await reg.metrics();
    expect(opened(text, { reporter: 'source', source_workload: 'a', destination_workload: 'web', destination_service: 's80.ns.svc.cluster.local' })).toBe(5);
    expect(opened(text, { reporter: 'destination', source_workload: 'a', destination_workload: 'web', destination_service: 'e8080.ns.svc.cluster.local' })).toBe(4);
    // Another scrape without new opens adds nothing.
    text = await reg.metrics();
    expect(opened(text, { reporter: 'source', source_workload: 'a' })).toBe(5);
    // The address now belongs to another workload: what grew before the change stays with a, the rest goes to b.
    fake.add(cli, 1, 1);
    m.setResolver(resolver({ '10.0.0.1': 'b', '10.0.1.1': 'web' }));
    fake.add(cli, 1, 2);
    text = await reg.metrics();
    expect(opened(text, { reporter: 'source', source_workload: 'a' })).toBe(6);
    expect(opened(text, { reporter: 'source', source_workload: 'b' })).toBe(2);
    expect(text).toMatch(/^kernway_tcp_metrics_label_sets 3$/m);
    // Beyond the cap (3 label sets): folded into the overflow series and counted; so are opens the kernel could not key (its map full).
    fake.add(okey('client', '10.0.0.9', '10.0.1.1', '10.96.0.1', 80), 0, 4);
    stats.openFullClient = 5;
    stats.openFullServer = 1;
    text = await reg.metrics();
    expect(opened(text, { reporter: 'source', source_workload: 'overflow' })).toBe(9);
    expect(opened(text, { reporter: 'destination', source_workload: 'overflow' })).toBe(1);
    expect(text).toMatch(/^kernway_tcp_metrics_overflow_total 10$/m);
    expect(fake.forgotten).toHaveLength(0);
    // Keys that did not grow for OPENED_IDLE_MS are deleted from the kernel's map; their counts stay.
    clock += OPENED_IDLE_MS;
    fake.add(srv, 0, 1);
    text = await reg.metrics();
    expect(fake.forgotten.map((k) => k[CM_OKEY_AT.role])).toEqual([1, 1]);
    expect(opened(text, { reporter: 'source', source_workload: 'b' })).toBe(2);
    expect(opened(text, { reporter: 'destination', source_workload: 'overflow' })).toBe(2); // the server key, now b's: a 4th label set
    // A forgotten key that comes back counts from zero.
    fake.add(cli, 0, 1);
    text = await reg.metrics();
    expect(opened(text, { reporter: 'source', source_workload: 'b' })).toBe(3);
  });
});

describe('the cap on label sets', () => {
  const rec = (i: number): TcpRecord => ({
    event: 'closed', role: 'client', local: `10.0.0.${i}`, localPort: 1000, remote: '10.0.1.1', remotePort: 80, orig: '10.0.1.1', origPort: 80,
    durationNs: 1e6, bytesSent: 10, bytesReceived: 20, srttUs: 100, retransmits: 1, reset: false,
  });

  it('folds label sets beyond the cap into one overflow series and counts what was folded', async () => {
    const registry = new Registry();
    const m = new TcpMetrics(registry, { maxLabelSets: 2 });
    m.setResolver({ workload: (ip) => ({ name: `w${ip.split('.')[3]}`, namespace: 'ns' }), service: () => 'svc.ns.svc.cluster.local', serviceOfEndpoint: () => undefined });
    m.record([rec(1), rec(2), rec(3), rec(4), rec(4), rec(1)]);
    const text = await registry.metrics();
    expect(m.labelSets).toBe(2);
    expect(m.folded).toBe(3);
    expect(one(text, 'kernway_tcp_connections_closed_total', { source_workload: 'w1' })).toBe(2);
    expect(one(text, 'kernway_tcp_connections_closed_total', { source_workload: 'overflow', destination_service: 'overflow' })).toBe(3);
    expect(one(text, 'kernway_tcp_received_bytes_total', { source_workload: 'overflow' })).toBe(30);
    expect(text).toMatch(/^kernway_tcp_metrics_overflow_total 3$/m);
    expect(text).toMatch(/^kernway_tcp_metrics_label_sets 2$/m);
    expect(samples(text, 'kernway_tcp_connections_closed_total', {})).toHaveLength(3);
  });

  /** The records as bpf/conn_metrics.bpf.c writes them into the ring buffer. */
  const raw = (recs: TcpRecord[]): Buffer => {
    const b = Buffer.alloc(recs.length * CM_EVENT_SIZE);
    recs.forEach((r, i) => {
      const o = i * CM_EVENT_SIZE;
      b.writeBigUInt64LE(BigInt(r.durationNs), o + CM_AT.duration);
      b.writeBigUInt64LE(BigInt(r.bytesSent), o + CM_AT.sent);
      b.writeBigUInt64LE(BigInt(r.bytesReceived), o + CM_AT.received);
      encodeAddr(r.local).copy(b, o + CM_AT.local);
      encodeAddr(r.remote).copy(b, o + CM_AT.remote);
      encodeAddr(r.orig).copy(b, o + CM_AT.orig);
      b.writeUInt16BE(r.localPort, o + CM_AT.lport);
      b.writeUInt16BE(r.remotePort, o + CM_AT.rport);
      b.writeUInt16BE(r.origPort, o + CM_AT.oport);
      b[o + CM_AT.event] = r.event === 'opened' ? 1 : 2;
      b[o + CM_AT.role] = r.role === 'client' ? 1 : 2;
      b.writeUInt32LE(r.srttUs, o + CM_AT.srtt);
      b.writeUInt32LE(r.retransmits, o + CM_AT.retrans);
      b[o + CM_AT.reset] = r.reset ? 1 : 0;
    });
    return b;
  };

  it('counts records read in place from the ring buffer exactly as decoded ones (cap, IPv6, both roles, new resolver)', async () => {
    const recs: TcpRecord[] = [
      rec(1), rec(2), { ...rec(1), event: 'opened', bytesSent: 0, bytesReceived: 0 }, { ...rec(3), reset: true, bytesSent: 2 ** 40 + 7 },
      { ...rec(1), role: 'server', local: '10.0.1.1', localPort: 80, remote: '10.0.0.1', orig: '10.0.1.1', origPort: 80 },
      { ...rec(1), orig: '10.0.1.2', origPort: 81 }, { ...rec(1), local: 'fd00::1', remote: 'fd00::2', orig: 'fd00::2' }, rec(4), rec(2), rec(1),
    ];
    const resolvers = [
      { workload: (ip: string) => ({ name: `w${ip.split(/[.:]/).at(-1)}`, namespace: 'ns' }), service: (_ip: string, port: number) => `s${port}.ns.svc.cluster.local`,
        serviceOfEndpoint: (_ip: string, port: number) => `e${port}.ns.svc.cluster.local` },
      { workload: () => ({ name: 'later', namespace: 'ns2' }), service: () => undefined, serviceOfEndpoint: () => undefined },
    ];
    const a = new Registry();
    const b = new Registry();
    const ma = new TcpMetrics(a, { maxLabelSets: 5 });
    const mb = new TcpMetrics(b, { maxLabelSets: 5 });
    for (const r of resolvers) {
      ma.setResolver(r);
      mb.setResolver(r);
      ma.record([...recs, ...recs]);
      mb.recordBatch(raw(recs), recs.length);
      mb.recordBatch(raw(recs), recs.length);
    }
    expect(mb.folded).toBeGreaterThan(0);
    expect(mb.folded).toBe(ma.folded);
    expect(await b.metrics()).toBe(await a.metrics());
    expect(one(await b.metrics(), 'kernway_tcp_connections_opened_total', { source_workload: 'w1', destination_service: 's80.ns.svc.cluster.local' })).toBe(2);
  });

  it('labels what it cannot resolve "unknown", as Istio does', () => {
    const m = new TcpMetrics(new Registry());
    expect(m.labelsOf({ ...rec(9), role: 'server' })).toEqual({
      reporter: 'destination', source_workload: 'unknown', source_workload_namespace: 'unknown', destination_service: 'unknown',
      destination_workload: 'unknown', destination_workload_namespace: 'unknown',
    });
  });
});
