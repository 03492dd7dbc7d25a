/**
 * Same-node acceleration, with vs. without, in one run on one machine (lab pods):
 *   - sockperf TCP ping-pong pod -> pod and pod -> ClusterIP -> pod: p50 / p99 round trip;
 *   - Node.js ping-pong pod -> pod (an epoll server and client, non-blocking sockets);
 *   - iperf3 single-stream throughput pod -> pod.
 * "without" and "with" alternate round by round (the node-wide switch, kw_sm_cfg, is
 * flipped between rounds; each sockperf/iperf3 run opens new connections), so drift on
 * a shared machine hits both alike; the report gives medians and ratios with/without.
 *
 *   node dist/bench/sockmap/compare.js [--seconds 5] [--rounds 3] [--msg-size 64] [--iperf-seconds 5]
 *     [--sockperf-nonblocked] [--legacy] [--opt-in]
 *
 * sockperf and iperf3 use blocking sockets, which kernway keeps on the stack
 * (docs/sockmap.md, rule 5); the Node.js ping-pong is what event-driven pods do.
 * --sockperf-nonblocked runs sockperf with --nonblocked (it then busy-polls: meaningless
 * on a shared machine). --legacy loads the programs with rules 5 and 6 off (test knob
 * kw_sm_test_break): what kernway did before them, for comparison. Without --opt-in the
 * pods say nothing, as most pods do, and nothing is redirected to them (rule 7: the
 * defaults accelerate nothing between such pods); --opt-in annotates both
 * kernway.io/sockmap: "on".
 *
 * Needs root (a lab), sockperf and iperf3. Prints one JSON line.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Lab, type Pod } from '../../lab/index.js';
import { invokedDirectly } from '../lb/main-guard.js';
import { middle as median, ratio, sockperfLatency as parseSockperf, type Latency } from '../round-stats.js';
import { buildModel } from '../../model/model.js';
import { buildServiceTable } from '../../model/service-table.js';
import type { SourcedObject } from '../../k8s/types.js';
import { ServiceSync } from '../../agent/datapath/service-sync.js';
import { loadSockLb } from '../../agent/datapath/sock-lb.js';
import { Sockmap, type SockmapStats } from '../../agent/datapath/sockmap.js';
import { serviceObject, sliceObject } from '../../agent/demo/manifests.js';

const VIP = '10.96.0.77';
const SOCKPERF_PORT = 11111;
const IPERF_PORT = 5201;
const NODE_PORT = 11112;

/** A Node.js echo server (epoll, non-blocking sockets): what most pods run. */
const NODE_ECHO = `require('node:net').createServer((s) => { s.setNoDelay(true); s.on('data', (d) => s.write(d)); })
  .listen(Number(process.argv[1]), '::', () => console.log('ready'));`;
/** Node.js ping-pong: 64-byte messages for argv[3] seconds; prints p50 and p99 round trips (µs) as JSON. */
const NODE_PING = `
const net = require('node:net');
const [host, port, secs, size] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4])];
const msg = Buffer.alloc(size, 7);
const rtts = [];
const s = net.connect({ host, port, noDelay: true }, () => {
  const end = Date.now() + secs * 1000;
  let got = 0, t0 = process.hrtime.bigint();
  s.on('data', (d) => {
    got += d.length;
    if (got < size) return;
    got -= size;
    rtts.push(Number(process.hrtime.bigint() - t0) / 1000);
    if (Date.now() > end) { s.destroy(); return done(); }
    t0 = process.hrtime.bigint();
    s.write(msg);
  });
  s.write(msg);
});
function done() {
  rtts.sort((a, b) => a - b);
  const q = (p) => rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))];
  console.log(JSON.stringify({ p50: q(0.5), p99: q(0.99), n: rtts.length }));
}`;

export { type Latency, sockperfLatency as parseSockperf } from '../round-stats.js';

function diff(a: SockmapStats, b: SockmapStats): Partial<SockmapStats> {
  return { redirectedMessages: b.redirectedMessages - a.redirectedMessages, redirectedBytes: b.redirectedBytes - a.redirectedBytes,
    passedNoPeer: b.passedNoPeer - a.passedNoPeer, passedOrder: b.passedOrder - a.passedOrder, inserts: b.inserts - a.inserts,
    skippedBlocking: b.skippedBlocking - a.skippedBlocking, targets: b.targets - a.targets, keptOnStack: b.keptOnStack - a.keptOnStack,
    passedNotTarget: b.passedNotTarget - a.passedNotTarget, passedFull: b.passedFull - a.passedFull, handovers: b.handovers - a.handovers,
    notOptedIn: b.notOptedIn - a.notOptedIn };
}

export interface CompareOptions {
  seconds: number; rounds: number; msgSize: number; iperfSeconds: number;
  /** sockperf with --nonblocked (default: blocking sockets). */
  sockperfNonblocked?: boolean;
  /** Rules 5 and 6 off (kernway before them), for comparison. */
  legacy?: boolean;
  /** Both pods opted in (kernway.io/sockmap: "on", rule 7); default: pods that say nothing. */
  optIn?: boolean;
}

export async function sockmapBench(opts: CompareOptions): Promise<Record<string, unknown>> {
  const lab = await Lab.create({ tag: 'benchsm' });
  const undo = lab.destroyOnSignals();
  try {
    const client = await lab.addPod('client');
    const server = await lab.addPod('server');
    const nb = opts.sockperfNonblocked ? ['--nonblocked'] : [];
    const bpffs = join(lab.bpffsDir, 'agent');
    const lb = await loadSockLb({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs });
    const sm = await Sockmap.load({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs, enabled: false, ...(opts.legacy ? { testBreak: 'rx' as const } : {}) });
    try {
      // The servers listen after the programs are attached (rule 5 knows their listeners).
      const servers = [
        lab.spawn(server, process.execPath, ['-e', NODE_ECHO, String(NODE_PORT)]),
        lab.spawn(server, 'sockperf', ['server', '--tcp', '-i', '0.0.0.0', '-p', String(SOCKPERF_PORT), ...nb]),
        lab.spawn(server, 'iperf3', ['-s', '-p', String(IPERF_PORT)]),
      ];
      await new Promise((r) => setTimeout(r, 500));
      if (servers.some((s) => s.exitCode !== null)) throw new Error('sockperf or iperf3 server exited');
      const objs = [
        serviceObject({ name: 'pp', clusterIPs: [VIP], ports: [{ port: SOCKPERF_PORT }] }),
        sliceObject({ name: 'pp-1', service: 'pp', ports: [{ port: SOCKPERF_PORT }], endpoints: [{ ip: server.ipv4 }] }),
      ];
      const model = buildModel(objs.map((object, index) => ({ object: object as SourcedObject['object'], file: 'pp.yaml', index })));
      new ServiceSync(lb.maps).reconcile(buildServiceTable(model, { nodeName: 'bench' }));
      // Default: the pods say nothing, as most do (rule 7: nothing is redirected to them); --opt-in: both annotated kernway.io/sockmap: "on".
      sm.setLocalPods([client, server].flatMap((p: Pod) => [{ ip: p.ipv4, target: opts.optIn === true }, { ip: p.ipv6, target: opts.optIn === true }]));

      const ping = async (host: string): Promise<Latency> => {
        const r = await lab.exec(client, 'sockperf', ['ping-pong', '--tcp', '-i', host, '-p', String(SOCKPERF_PORT), '-t', String(opts.seconds),
          '-m', String(opts.msgSize), '--full-rtt', ...nb], { timeoutMs: (opts.seconds + 30) * 1000 });
        if (r.code !== 0) throw new Error(`sockperf ping-pong to ${host} failed: ${r.stderr || r.stdout}`);
        return parseSockperf(r.stdout + r.stderr);
      };
      const nodePing = async (): Promise<Latency> => {
        const r = await lab.exec(client, process.execPath, ['-e', NODE_PING, server.ipv4, String(NODE_PORT), String(opts.seconds), String(opts.msgSize)],
          { timeoutMs: (opts.seconds + 30) * 1000 });
        if (r.code !== 0) throw new Error(`node ping-pong failed: ${r.stderr || r.stdout}`);
        const j = JSON.parse(r.stdout) as { p50: number; p99: number };
        return { p50: j.p50, p99: j.p99 };
      };
      const iperf = async (): Promise<number> => {
        const r = await lab.exec(client, 'iperf3', ['-c', server.ipv4, '-p', String(IPERF_PORT), '-t', String(opts.iperfSeconds), '-J'],
          { timeoutMs: (opts.iperfSeconds + 30) * 1000 });
        if (r.code !== 0) throw new Error(`iperf3 failed: ${r.stderr || r.stdout}`);
        const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
        return j.end.sum_received.bits_per_second;
      };

      type Side = { direct: Latency[]; vip: Latency[]; node: Latency[]; iperf: number[]; counters: Array<Partial<SockmapStats>> };
      const runs: Record<'with' | 'without', Side> = {
        without: { direct: [], vip: [], node: [], iperf: [], counters: [] },
        with: { direct: [], vip: [], node: [], iperf: [], counters: [] },
      };
      for (let i = 0; i < opts.rounds; i++) {
        for (const side of (i % 2 === 0 ? ['without', 'with'] : ['with', 'without']) as Array<'with' | 'without'>) {
          sm.setEnabled(side === 'with');
          const before = sm.stats();
          runs[side].direct.push(await ping(server.ipv4));
          runs[side].vip.push(await ping(VIP));
          runs[side].node.push(await nodePing());
          runs[side].iperf.push(await iperf());
          runs[side].counters.push(diff(before, sm.stats()));
        }
      }
      const lat = (xs: Latency[]): Latency => ({ p50: median(xs.map((x) => x.p50)), p99: median(xs.map((x) => x.p99)) });
      const w = { direct: lat(runs.with.direct), vip: lat(runs.with.vip), node: lat(runs.with.node), gbps: median(runs.with.iperf) / 1e9 };
      const wo = { direct: lat(runs.without.direct), vip: lat(runs.without.vip), node: lat(runs.without.node), gbps: median(runs.without.iperf) / 1e9 };
      return {
        bench: 'sockmap', unit: 'usec round trip (sockperf), Gbit/s (iperf3)', seconds: opts.seconds, rounds: opts.rounds, msgSize: opts.msgSize,
        sockperf: opts.sockperfNonblocked ? 'nonblocked' : 'blocking', rules: opts.legacy ? 'legacy (rules 5 and 6 off)' : 'default',
        pods: opts.optIn ? 'opted in (kernway.io/sockmap: "on")' : 'not annotated (default)',
        with: w, without: wo,
        ratios: {
          podToPod: { p50: ratio(w.direct.p50, wo.direct.p50), p99: ratio(w.direct.p99, wo.direct.p99) },
          podToClusterIP: { p50: ratio(w.vip.p50, wo.vip.p50), p99: ratio(w.vip.p99, wo.vip.p99) },
          nodePingPong: { p50: ratio(w.node.p50, wo.node.p50), p99: ratio(w.node.p99, wo.node.p99) },
          iperf3Throughput: ratio(w.gbps, wo.gbps),
        },
        targets: { p50: '<= 0.8', p99: '<= 0.85' },
        runs,
      };
    } finally {
      sm.close();
      lb.close();
    }
  } finally {
    undo();
    await lab.destroy();
  }
}

if (invokedDirectly(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' },
      'msg-size': { type: 'string', default: '64' }, 'iperf-seconds': { type: 'string', default: '5' },
      'sockperf-nonblocked': { type: 'boolean', default: false }, legacy: { type: 'boolean', default: false },
      'opt-in': { type: 'boolean', default: false },
    },
  });
  sockmapBench({
    seconds: Number(values.seconds), rounds: Number(values.rounds), msgSize: Number(values['msg-size']), iperfSeconds: Number(values['iperf-seconds']),
    sockperfNonblocked: values['sockperf-nonblocked'], legacy: values.legacy, optIn: values['opt-in'],
  })
    .then((r) => console.log(JSON.stringify(r)), (e: unknown) => { console.error(e); process.exitCode = 1; });
}
