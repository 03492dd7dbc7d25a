/**
 * Cost per connection of the L4 metrics (bpf/conn_metrics.bpf.c, docs/metrics.md): the
 * connection rate with and without the metrics program, through a ClusterIP, with the
 * balancer and the accelerator attached in both configurations (as the agent has them).
 *
 *   node dist/bench/tcp-metrics.js [--seconds 3] [--rounds 4] [--threads 4] [--kernel-only] [--objects a.o,b.o]
 *   node dist/bench/tcp-metrics.js --paired [--seconds 2 --rounds 10 | --slice-ms 250 --seconds 30 --block 8] [--objects a.o,b.o]
 *
 * (--paired: the pairs at once, see pairedTcpMetricsBench; with --slice-ms the
 * configurations turn over the pairs every slice, slicedTcpMetricsBench: the method
 * docs/metrics.md reports. An object built with -DKW_CM_SELF_TIME adds the programs'
 * own time per connection.)
 *
 * Needs root (a lab), nginx and cc. In a lab: an nginx pod behind a ClusterIP and a
 * client pod on the same node running bench/connrate.c (connect + HTTP/1.0 request +
 * close per cycle). "with" is the program attached, and this process the agent's side:
 * after each round it reads the kernel's counters into the Istio-labelled series
 * (agent/metrics/tcp.ts), as a scrape does (--kernel-only: it does not). "without" is
 * the program detached. --objects: several builds of the program, each a configuration
 * of its own (to compare two versions in one run). Rounds rotate the order of the
 * configurations so drift on a shared machine hits them all. Prints one JSON line: each
 * round's rates, the medians and the ratio with / without (target >= 0.97), per-round
 * ratios, the CPU time of the lab's cgroup per connection (client, server and the
 * kernel's work for them, BPF programs included: less sensitive to the machine's load
 * than the rate), this process's CPU per connection, and the load average.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { Lab } from '../lab/index.js';
import { buildModel } from '../model/model.js';
import { buildServiceTable } from '../model/service-table.js';
import type { SourcedObject } from '../k8s/types.js';
import { ServiceSync } from '../agent/datapath/service-sync.js';
import { loadSockLb, uninstall } from '../agent/datapath/sock-lb.js';
import { Sockmap } from '../agent/datapath/sockmap.js';
import { CM_PROGRAM, ConnMetrics, detachConnMetrics } from '../agent/datapath/conn-metrics.js';
import { checkSubsystem, type LoadedSubsystem } from '../agent/datapath/loader.js';
import { ModelResolver, TcpMetrics } from '../agent/metrics/tcp.js';
import { serviceHost, workloadOf } from '../model/workload.js';
import { serviceObject, sliceObject } from '../agent/demo/manifests.js';
import { buildConnrate } from './run.js';
import { parseConnrate } from './tools.js';
import { invokedDirectly } from './lb/main-guard.js';
import { middle as median, ratio } from './round-stats.js';

const NODE = 'bench-node';
const VIP = '10.96.0.30';
const PORT = 8080;

/** nginx answering 200 on PORT, its files in d. */
function writeNginxConf(d: string): void {
  writeFileSync(join(d, 'nginx.conf'), [
    'worker_processes 1;', `pid ${d}/nginx.pid;`, `error_log ${d}/error.log;`, 'events { worker_connections 4096; }',
    'http {', '  access_log off;', `  client_body_temp_path ${d}/body;`, `  proxy_temp_path ${d}/proxy;`, `  fastcgi_temp_path ${d}/fcgi;`,
    `  uwsgi_temp_path ${d}/uwsgi;`, `  scgi_temp_path ${d}/scgi;`,
    `  server { listen ${PORT}; location / { return 200 "ok\\n"; } }`, '}',
  ].join('\n'));
}

export async function tcpMetricsBench(opts: { seconds: number; rounds: number; threads: number; kernelOnly?: boolean; objects?: string[] }): Promise<Record<string, unknown>> {
  const lab = await Lab.create({ tag: 'benchtcpm' });
  const undo = lab.destroyOnSignals();
  const dir = mkdtempSync(join(tmpdir(), 'kernway-bench-tcpm-'));
  const bpffs = join(lab.bpffsDir, 'agent');
  let conns: ConnMetrics | undefined;
  let before: { close(): void } | undefined; // an object built before the close hook
  let lb: Awaited<ReturnType<typeof loadSockLb>> | undefined;
  let sm: Sockmap | undefined;
  try {
    const server = await lab.addPod('server');
    const client = await lab.addPod('client');
    writeNginxConf(dir);
    const nginx = lab.spawn(server, 'nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir, '-g', 'daemon off;']);
    const connrate = await buildConnrate(dir);
    if (nginx.exitCode !== null) throw new Error('nginx exited');

    lb = await loadSockLb({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs });
    sm = await Sockmap.load({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs });
    sm.setLocalPods([{ ip: server.ipv4, target: true }, { ip: client.ipv4, target: true }]); // opted in (docs/sockmap.md rule 7)
    const objects = [
      serviceObject({ name: 'web', namespace: 'bench', clusterIPs: [VIP], ports: [{ port: 80, targetPort: PORT }] }),
      sliceObject({ name: 'web-1', namespace: 'bench', service: 'web', ports: [{ port: PORT }], endpoints: [{ ip: server.ipv4, nodeName: NODE }] }),
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'server', namespace: 'bench', labels: { app: 'server' } }, spec: { nodeName: NODE }, status: { phase: 'Running', podIP: server.ipv4 } },
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'client', namespace: 'bench', labels: { app: 'client' } }, spec: { nodeName: NODE }, status: { phase: 'Running', podIP: client.ipv4 } },
    ];
    const model = buildModel(objects.map((o, index) => ({ object: o as SourcedObject['object'], file: 'bench.yaml', index })));
    new ServiceSync(lb.maps).reconcile(buildServiceTable(model, { nodeName: NODE }));
    const tcp = new TcpMetrics(new Registry());
    tcp.setResolver(new ModelResolver(model, workloadOf, serviceHost));

    const run = async (): Promise<number> => {
      const r = await lab.exec(client, connrate, [VIP, '80', String(opts.seconds), String(opts.threads)], { timeoutMs: (opts.seconds + 30) * 1000 });
      if (r.code !== 0) throw new Error(`connrate failed: ${r.stderr || r.stdout}`);
      const s = parseConnrate(r.stdout + r.stderr);
      if (s.errors! > 0) throw new Error(`connrate: ${s.errors} errors`);
      return s.rate!;
    };
    // The configurations: without (the program detached), then each object attached.
    const programs = opts.objects?.length ? opts.objects : [undefined];
    let attached: number | undefined;
    const set = async (cfg: number): Promise<void> => {
      if (attached === cfg) return;
      if (conns || before) {
        conns?.close();
        before?.close();
        conns = before = undefined;
        detachConnMetrics(bpffs, lab.cgroupPath);
      }
      attached = cfg;
      if (cfg === 0) return;
      const objectPath = programs[cfg - 1];
      if (objectPath && isBeforeCloseHook(objectPath)) {
        before = await loadBeforeCloseHook(objectPath, lab.cgroupPath, bpffs); // not scraped: the kernel's side only
        return;
      }
      conns = await ConnMetrics.load({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs, ...(objectPath ? { objectPath } : {}) });
      tcp.sync(conns.countsAtLoad, true);
    };
    await run(); // warm-up (nginx, caches), not counted
    const configs = programs.length + 1;
    const rates: number[][] = Array.from({ length: configs }, () => []);
    const cpuUs = new Array<number>(configs).fill(0);
    const connsOf = new Array<number>(configs).fill(0);
    const loads: number[] = [];
    // CPU time of the lab's cgroup (client, server, and the kernel's work done on their
    // behalf, BPF programs included) per connection: unlike the rate, it hardly depends on
    // how busy the rest of the machine is.
    const cgroupCpuUs = (): number => Number(/^usage_usec (\d+)$/m.exec(readFileSync(join(lab.cgroupPath, 'cpu.stat'), 'utf8'))![1]);
    const labCpu: number[][] = Array.from({ length: configs }, () => []);
    // Rounds rotate the order (0 1 2 | 1 2 0 | ..., reversed every other round) so drift on
    // a shared machine hits every configuration alike. This process is the agent's side
    // (the drain timer and the counters): its CPU time per connection is reported.
    for (let i = 0; i < opts.rounds; i++) {
      const order = Array.from({ length: configs }, (_, k) => (k + i) % configs);
      if (i % 2 === 1) order.reverse();
      for (const cfg of order) {
        await set(cfg);
        loads.push(+loadavg()[0]!.toFixed(2));
        const cpu0 = process.cpuUsage();
        const cg0 = cgroupCpuUs();
        const rate = await run();
        const cg = cgroupCpuUs() - cg0;
        if (conns && !opts.kernelOnly) tcp.sync(conns.counts()); // a scrape
        const cpu = process.cpuUsage(cpu0);
        rates[cfg]!.push(rate);
        labCpu[cfg]!.push(cg / Math.max(1, rate * opts.seconds));
        cpuUs[cfg]! += cpu.user + cpu.system;
        connsOf[cfg]! += rate * opts.seconds;
      }
    }
    await set(0);
    const wo = median(rates[0]!);
    const perObject = programs.map((o, k) => {
      const rs = rates[k + 1]!;
      const perRound = rs.map((x, i) => ratio(x, rates[0]![i]!));
      return {
        object: o ?? 'default', with: rs.map(Math.round), medianWith: Math.round(median(rs)), ratio: ratio(median(rs), wo),
        perRoundRatios: perRound, medianRoundRatio: median(perRound), roundRatioRange: [Math.min(...perRound), Math.max(...perRound)],
        // The agent's CPU per connection (the drain and the counting, plus what the without-rounds spend).
        agentCpuUsPerConn: +(cpuUs[k + 1]! / Math.max(1, connsOf[k + 1]!)).toFixed(2),
        labCpuUsPerConn: +median(labCpu[k + 1]!).toFixed(2), labCpuRange: range(labCpu[k + 1]!),
        // Kernel and workload CPU per connection with the program, over without (median of rounds).
        labCpuRatio: median(labCpu[k + 1]!.map((x, i) => ratio(x, labCpu[0]![i]!))),
        labCpuRatioRange: range(labCpu[k + 1]!.map((x, i) => ratio(x, labCpu[0]![i]!))),
      };
    });
    return {
      seconds: opts.seconds, rounds: opts.rounds, threads: opts.threads, kernelOnly: opts.kernelOnly === true,
      without: rates[0]!.map(Math.round), medianWithout: Math.round(wo),
      labCpuUsPerConnWithout: +median(labCpu[0]!).toFixed(2), labCpuRangeWithout: range(labCpu[0]!),
      ...(perObject.length === 1 ? perObject[0] : { objects: perObject }),
      labelSets: tcp.labelSets, loadavg1: loads,
      // The same process in the without-rounds (starting connrate, timers): what is not the drain.
      idleCpuUsPerConn: +(cpuUs[0]! / Math.max(1, connsOf[0]!)).toFixed(2),
      // What a connection costs at the median rate over 2 cores.
      connBudgetUs: +(2e6 / Math.max(1, wo)).toFixed(2),
    };
  } finally {
    conns?.close();
    before?.close();
    await teardown(lab, undo, dir, bpffs, [sm, lb]);
  }
}

// The addon's types, as the loader hands them out (only agent/datapath imports the addon).
type BpfProgram = ReturnType<LoadedSubsystem['program']>;
type BpfMap = ReturnType<LoadedSubsystem['map']>;
type BpfLink = ReturnType<BpfProgram['attachCgroup']>;

/** A lab pod. */
type Pod = Awaited<ReturnType<Lab['addPod']>>;
/** One client/server pair: an nginx pod behind its own ClusterIP, and a client pod. */
interface Pair { client: Pod; server: Pod; vip: string }

/**
 * n client/server pairs in the lab, each nginx behind its own ClusterIP, with the
 * balancer and the accelerator attached to the lab's cgroup (every pod opted in to
 * the sockmap), and the metrics' resolver over them.
 */
async function startPairs(lab: Lab, n: number, dir: string, bpffs: string): Promise<{ pairs: Pair[]; lb: Awaited<ReturnType<typeof loadSockLb>>; sm: Sockmap; tcp: TcpMetrics }> {
  const pairs: Pair[] = [];
  const objects: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const server = await lab.addPod(`server${i}`);
    const client = await lab.addPod(`client${i}`);
    const d = join(dir, `nginx${i}`);
    mkdirSync(d);
    writeNginxConf(d);
    const nginx = lab.spawn(server, 'nginx', ['-c', join(d, 'nginx.conf'), '-p', d, '-g', 'daemon off;']);
    if (nginx.exitCode !== null) throw new Error('nginx exited');
    const vip = `10.96.0.${50 + i}`;
    pairs.push({ client, server, vip });
    objects.push(
      serviceObject({ name: `web${i}`, namespace: 'bench', clusterIPs: [vip], ports: [{ port: 80, targetPort: PORT }] }),
      sliceObject({ name: `web${i}-1`, namespace: 'bench', service: `web${i}`, ports: [{ port: PORT }], endpoints: [{ ip: server.ipv4, nodeName: NODE }] }),
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: `server${i}`, namespace: 'bench', labels: { app: `server${i}` } }, spec: { nodeName: NODE }, status: { phase: 'Running', podIP: server.ipv4 } },
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: `client${i}`, namespace: 'bench', labels: { app: `client${i}` } }, spec: { nodeName: NODE }, status: { phase: 'Running', podIP: client.ipv4 } },
    );
  }
  const lb = await loadSockLb({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs });
  const sm = await Sockmap.load({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs });
  sm.setLocalPods(pairs.flatMap((p) => [{ ip: p.server.ipv4, target: true }, { ip: p.client.ipv4, target: true }]));
  const model = buildModel(objects.map((o, index) => ({ object: o as SourcedObject['object'], file: 'bench.yaml', index })));
  new ServiceSync(lb.maps).reconcile(buildServiceTable(model, { nodeName: NODE }));
  const tcp = new TcpMetrics(new Registry());
  tcp.setResolver(new ModelResolver(model, workloadOf, serviceHost));
  return { pairs, lb, sm, tcp };
}

/** CPU time of a pair's two pods so far (their cgroups' usage_usec). */
const pairCpuUs = (p: Pair): number => [p.client, p.server].reduce((a, pod) =>
  a + Number(/^usage_usec (\d+)$/m.exec(readFileSync(join(pod.cgroupPath, 'cpu.stat'), 'utf8'))![1]), 0);

/**
 * --paired: one client/server pair per configuration (without the program, and each
 * object of --objects, default the build's), all running at the same time, each through
 * its own ClusterIP; the configurations rotate over the pairs from round to round, so
 * every configuration shares every moment of the machine's load with "without", and
 * what differs between the pairs cancels over the rotation. Per round and configuration:
 * the connection rate and the CPU time of the pair's two pods per connection (their
 * cgroups' usage_usec: client, server and the kernel's work done on their behalf, BPF
 * programs included), each over "without" in the same round; the medians over rounds
 * (with the interquartile range and the extremes) are the result. (The balancer and
 * the accelerator are attached to the lab's cgroup, for every pair.) The close hook is
 * machine-wide: it runs for the sockets of every pair, those of "without" included (one
 * early return per state change, one failed storage lookup per close), so the paired
 * ratios leave that part out; the sequential mode (without --paired) includes it.
 * An object built before the close hook (bpf/conn_metrics.bpf.c with kw_cm_sk and the
 * state callbacks) is loaded as it was, to compare before and after in one run.
 */
export async function pairedTcpMetricsBench(opts: { seconds: number; rounds: number; threads: number; objects?: string[] }): Promise<Record<string, unknown>> {
  const lab = await Lab.create({ tag: 'benchtcpmp' });
  const undo = lab.destroyOnSignals();
  const dir = mkdtempSync(join(tmpdir(), 'kernway-bench-tcpm-'));
  const bpffs = join(lab.bpffsDir, 'agent');
  const programs: Array<string | undefined> = opts.objects?.length ? opts.objects : [undefined];
  const configs = programs.length + 1; // 0: without
  let attached: Array<{ close(): void }> = [];
  let lb: Awaited<ReturnType<typeof loadSockLb>> | undefined;
  let sm: Sockmap | undefined;
  const pairs: Pair[] = [];
  const detach = (): void => {
    for (const c of attached) c.close();
    attached = [];
    for (const p of pairs) for (const pod of [p.client, p.server]) detachConnMetrics(bpffs, pod.cgroupPath);
  };
  try {
    const connrate = await buildConnrate(dir);
    const rig = await startPairs(lab, configs, dir, bpffs);
    lb = rig.lb;
    sm = rig.sm;
    pairs.push(...rig.pairs);
    const tcp = rig.tcp;
    const runAll = async (): Promise<number[]> => Promise.all(pairs.map(async (p) => {
      const r = await lab.exec(p.client, connrate, [p.vip, '80', String(opts.seconds), String(opts.threads)], { timeoutMs: (opts.seconds + 30) * 1000 });
      if (r.code !== 0) throw new Error(`connrate failed: ${r.stderr || r.stdout}`);
      const st = parseConnrate(r.stdout + r.stderr);
      if (st.errors! > 0) throw new Error(`connrate: ${st.errors} errors`);
      return st.rate!;
    }));
    const cpuOf = pairCpuUs;
    /** Attaches configuration cfg (> 0) to a pair's pods: the close hook once, with the client's. */
    const attach = async (cfg: number, p: Pair): Promise<void> => {
      const objectPath = programs[cfg - 1];
      for (const pod of [p.client, p.server]) {
        if (objectPath && isBeforeCloseHook(objectPath)) attached.push(await loadBeforeCloseHook(objectPath, pod.cgroupPath, bpffs));
        else attached.push(await ConnMetrics.load({ cgroupPath: pod.cgroupPath, bpffsDir: bpffs, closeHook: pod === p.client, ...(objectPath ? { objectPath } : {}) }));
      }
    };
    await runAll(); // warm-up
    const rates: number[][] = Array.from({ length: configs }, () => []);
    const cpus: number[][] = Array.from({ length: configs }, () => []);
    const loads: number[] = [];
    for (let i = 0; i < opts.rounds; i++) {
      const cfgOf = pairs.map((_, k) => (k + i) % configs); // pair k runs configuration cfgOf[k]
      for (let k = 0; k < configs; k++) if (cfgOf[k]! > 0) await attach(cfgOf[k]!, pairs[k]!);
      const scrapeFrom = attached.find((c): c is ConnMetrics => c instanceof ConnMetrics);
      if (scrapeFrom) tcp.sync(scrapeFrom.counts(), true);
      loads.push(+loadavg()[0]!.toFixed(2));
      const cpu0 = pairs.map(cpuOf);
      const r = await runAll();
      const cpu = pairs.map((p, k) => (cpuOf(p) - cpu0[k]!) / Math.max(1, r[k]! * opts.seconds));
      if (scrapeFrom) tcp.sync(scrapeFrom.counts()); // a scrape (the pods' programs share the maps)
      detach();
      for (let k = 0; k < configs; k++) {
        rates[cfgOf[k]!]!.push(r[k]!);
        cpus[cfgOf[k]!]!.push(cpu[k]!);
      }
    }
    const perObject = programs.map((o, j) => {
      const c = j + 1;
      const rr = rates[c]!.map((x, i) => ratio(x, rates[0]![i]!));
      const cr = cpus[c]!.map((x, i) => ratio(x, cpus[0]![i]!));
      // By the pair the configuration ran on (what differs between the pairs, not the program).
      const byPair = Array.from({ length: configs }, (_, k) => {
        const xs = cr.filter((_, i) => (c - (i % configs) + configs) % configs === k); // rounds where pair k ran it
        return xs.length ? median2(xs) : null;
      });
      return {
        object: o ?? 'default',
        // Rate of the pair with the program over the pair without, in the same round.
        perRoundRatios: rr, medianRatio: median2(rr), ratioIqr: iqr(rr), ratioRange: range(rr),
        geometricMeanRatio: +Math.exp(rr.reduce((a, x) => a + Math.log(x), 0) / rr.length).toFixed(3),
        // CPU time of the pair's pods per connection, with over without (the kernel's work for them included).
        perRoundCpuRatios: cr, medianCpuRatio: median2(cr), cpuRatioIqr: iqr(cr), cpuRatioRange: range(cr),
        // The mean of the middle half of the rounds' ratios: steadier than the median when most rounds agree.
        cpuRatioIqm: iqm(cr),
        cpuRatioByPair: byPair,
        cpuUsPerConn: +median2(cpus[c]!).toFixed(2),
        // What the program adds per connection, in CPU microseconds (median of the rounds' differences).
        addedCpuUsPerConn: +median2(cpus[c]!.map((x, i) => x - cpus[0]![i]!)).toFixed(2),
      };
    });
    return {
      paired: true, seconds: opts.seconds, rounds: opts.rounds, threads: opts.threads, pairs: configs,
      medianRateWithout: Math.round(median2(rates[0]!)), cpuUsPerConnWithout: +median2(cpus[0]!).toFixed(2),
      ...(perObject.length === 1 ? perObject[0] : { objects: perObject }),
      labelSets: tcp.labelSets, loadavg1: loads, loadavg1Range: range(loads),
    };
  } finally {
    try { detach(); } catch { /* the lab removes it */ }
    await teardown(lab, undo, dir, bpffs, [sm, lb]);
  }
}

/**
 * --paired --slice-ms N: the pairs (one per configuration, as --paired) run connrate
 * without a break for --seconds, and the configurations move to the next pair every
 * N ms: the sock_ops program is detached from one pair's pods and attached to the next
 * pair's (a link each, the programs loaded once; the close hook of an object that has
 * one stays attached throughout, machine-wide). At each turn the pairs' CPU time
 * (their cgroups) and connection counts (connrate's COUNTFILE) are read: each slice
 * gives every configuration its CPU per connection and its rate next to "without" at
 * the same moments, and the turns cancel what differs between the pairs within a
 * second, not a round. The result: the pooled ratios (a configuration's CPU over its
 * connections across all slices, over the same for "without"; its connections over
 * "without"'s), and the spread of the same ratios over blocks of slices (--block).
 */
export async function slicedTcpMetricsBench(opts: { seconds: number; sliceMs: number; block: number; threads: number; objects?: string[] }): Promise<Record<string, unknown>> {
  const lab = await Lab.create({ tag: 'benchtcpms' });
  const undo = lab.destroyOnSignals();
  const dir = mkdtempSync(join(tmpdir(), 'kernway-bench-tcpm-'));
  const bpffs = join(lab.bpffsDir, 'agent');
  const programs: Array<string | undefined> = opts.objects?.length ? opts.objects : [undefined];
  const configs = programs.length + 1; // 0: without
  const loaded: Array<{ close(): void }> = [];
  let links: BpfLink[] = [];
  let rig: Awaited<ReturnType<typeof startPairs>> | undefined;
  const unlink = (): void => {
    for (const l of links) { l.detach(); l.close(); }
    links = [];
  };
  try {
    const connrate = await buildConnrate(dir);
    rig = await startPairs(lab, configs, dir, bpffs);
    const pairs = rig.pairs;
    // Each object's sock_ops program, loaded once (its close hook, if it has one, attached now).
    const sockops: BpfProgram[] = [];
    const timed: Array<BpfMap | undefined> = []; // kw_cm_time of a -DKW_CM_SELF_TIME build
    for (const objectPath of programs) {
      const before = objectPath !== undefined && isBeforeCloseHook(objectPath);
      const spec = ConnMetrics.spec({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs, closeHook: !before, ...(objectPath ? { objectPath } : {}) });
      const rename = (n: string): string => (before && n === 'kw_cm_conns' ? 'kw_cm_sk' : n);
      const sub = await checkSubsystem({ ...spec, maps: spec.maps.map(rename), keep: before ? [...(spec.keep ?? []), 'kw_cm_sk'] : spec.keep, links: (spec.links ?? []).filter((l) => l.program !== CM_PROGRAM) }).load();
      loaded.push(sub);
      sub.attach();
      sockops.push(sub.program(CM_PROGRAM));
      timed.push(sub.objects[0]!.maps().includes('kw_cm_time') ? sub.map('kw_cm_time') : undefined);
    }
    const counts = pairs.map((_, k) => join(dir, `count${k}`));
    const readCount = (k: number): number => { try { return Number(readFileSync(counts[k]!).readBigUInt64LE(0)); } catch { return 0; } };
    const slices = Math.max(configs, Math.floor((opts.seconds * 1000) / opts.sliceMs));
    const runs = pairs.map((p, k) => lab.exec(p.client, connrate, [p.vip, '80', String(opts.seconds + 2), String(opts.threads), counts[k]!], { timeoutMs: (opts.seconds + 40) * 1000 }));
    // Per configuration and slice: CPU µs and connections of the pair that ran it.
    const cpu: number[][] = Array.from({ length: configs }, () => []);
    const conns: number[][] = Array.from({ length: configs }, () => []);
    const loads: number[] = [];
    await new Promise((r) => setTimeout(r, 1000)); // connrate started on every pair (and a warm-up)
    let cpu0 = pairs.map(pairCpuUs);
    let n0 = pairs.map((_, k) => readCount(k));
    for (let i = 0; i < slices; i++) {
      const cfgOf = pairs.map((_, k) => (k + i) % configs); // pair k runs configuration cfgOf[k]
      unlink();
      for (let k = 0; k < configs; k++) {
        const c = cfgOf[k]!;
        if (c === 0) continue;
        for (const pod of [pairs[k]!.client, pairs[k]!.server]) links.push(sockops[c - 1]!.attachCgroup(pod.cgroupPath, 'sock_ops'));
      }
      // The turn's own work lands in the slice before: the counters are read after it.
      const c1 = pairs.map(pairCpuUs);
      const n1 = pairs.map((_, k) => readCount(k));
      if (i > 0) {
        const prev = pairs.map((_, k) => (k + i - 1) % configs);
        for (let k = 0; k < configs; k++) {
          cpu[prev[k]!]!.push(c1[k]! - cpu0[k]!);
          conns[prev[k]!]!.push(n1[k]! - n0[k]!);
        }
      }
      cpu0 = c1;
      n0 = n1;
      if (i % 8 === 0) loads.push(+loadavg()[0]!.toFixed(2));
      await new Promise((r) => setTimeout(r, opts.sliceMs)); // the slice
    }
    unlink();
    for (const r of await Promise.all(runs)) if (r.code !== 0) throw new Error(`connrate failed: ${r.stderr || r.stdout}`);
    const sum = (xs: number[]): number => xs.reduce((a, x) => a + x, 0);
    const n = cpu[0]!.length;
    const blocks = Math.floor(n / opts.block);
    const perObject = programs.map((o, j) => {
      const c = j + 1;
      const perBlock = (f: (from: number, to: number) => number): number[] => Array.from({ length: blocks }, (_, b) => f(b * opts.block, (b + 1) * opts.block));
      const cpuRatio = (from: number, to: number): number => ratio(sum(cpu[c]!.slice(from, to)) / sum(conns[c]!.slice(from, to)), sum(cpu[0]!.slice(from, to)) / sum(conns[0]!.slice(from, to)));
      const rateRatio = (from: number, to: number): number => ratio(sum(conns[c]!.slice(from, to)), sum(conns[0]!.slice(from, to)));
      const cb = perBlock(cpuRatio);
      const rb = perBlock(rateRatio);
      return {
        object: o ?? 'default',
        // Its connections over "without"'s, in the same slices (the same time each).
        rateRatio: rateRatio(0, n), rateRatioBlocks: { median: median2(rb), iqr: iqr(rb), range: range(rb) },
        // Its pair's CPU per connection over "without"'s, pooled over the slices.
        cpuRatio: cpuRatio(0, n), cpuRatioBlocks: { median: median2(cb), iqr: iqr(cb), range: range(cb), iqm: iqm(cb) },
        cpuUsPerConn: +(sum(cpu[c]!) / sum(conns[c]!)).toFixed(2),
        addedCpuUsPerConn: +(sum(cpu[c]!) / sum(conns[c]!) - sum(cpu[0]!) / sum(conns[0]!)).toFixed(2),
        ...(timed[j] ? { selfTime: selfTime(timed[j]!, sum(conns[c]!), conns.reduce((a, x) => a + sum(x), 0)) } : {}),
      };
    });
    return {
      sliced: true, seconds: opts.seconds, sliceMs: opts.sliceMs, slices: n, block: opts.block, blocks, threads: opts.threads, pairs: configs,
      rateWithout: Math.round(sum(conns[0]!) / ((n * opts.sliceMs) / 1000)), cpuUsPerConnWithout: +(sum(cpu[0]!) / sum(conns[0]!)).toFixed(2),
      ...(perObject.length === 1 ? perObject[0] : { objects: perObject }),
      loadavg1: loads, loadavg1Range: range(loads),
    };
  } finally {
    try { unlink(); } catch { /* the lab removes it */ }
    for (const l of loaded) l.close();
    for (const p of rig?.pairs ?? []) for (const pod of [p.client, p.server]) try { detachConnMetrics(bpffs, pod.cgroupPath); } catch { /* the lab removes it */ }
    try { detachConnMetrics(bpffs, lab.cgroupPath); } catch { /* the lab removes it */ }
    await teardown(lab, undo, dir, bpffs, [rig?.sm, rig?.lb]);
  }
}

/**
 * What a -DKW_CM_SELF_TIME build's kw_cm_time says (bpf/conn_metrics.bpf.c): per kind of
 * run, the runs and the mean nanoseconds (the clock reads subtracted), and per
 * connection: what the followed connections cost (sock_ops at establishment and every
 * other op, the counted close) and what every TCP connection of the machine costs (the
 * close hook's early returns). Over `followed` connections of the configuration and
 * `all` of the run.
 */
function selfTime(m: BpfMap, followed: number, all: number): Record<string, unknown> {
  const slots = ['otherOp', 'active', 'passive', 'notClose', 'unfollowed', 'close', 'empty'];
  const got = slots.map((_, i) => {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(i);
    const v = m.lookup(k) ?? Buffer.alloc(0);
    let ns = 0n, runs = 0n;
    for (let o = 0; o + 16 <= v.length; o += 16) { ns += v.readBigUInt64LE(o); runs += v.readBigUInt64LE(o + 8); }
    return { ns: Number(ns), runs: Number(runs) };
  });
  const clock = got[6]!.runs ? got[6]!.ns / got[6]!.runs : 0;
  const net = (i: number): number => Math.max(0, got[i]!.ns - got[i]!.runs * clock);
  const per = Object.fromEntries(slots.slice(0, 6).map((n, i) => [n, { runs: got[i]!.runs, meanNs: got[i]!.runs ? +(net(i) / got[i]!.runs).toFixed(1) : 0 }]));
  return {
    clockReadNs: +clock.toFixed(1), per,
    // The followed connections: both sockets' sock_ops runs and closes.
    followedNsPerConn: +((net(0) + net(1) + net(2) + net(5)) / Math.max(1, followed)).toFixed(1),
    // Every connection of the run (followed or not): the close hook's other runs.
    everyNsPerConn: +((net(3) + net(4)) / Math.max(1, all)).toFixed(1),
  };
}

/**
 * Loads an object built before the close hook (maps kw_cm_{counts,unkeyed,sk,stats}, the
 * sock_ops program alone, closes seen through state callbacks) on a cgroup, as that
 * version's agent did: the "before" of a before/after comparison.
 */
async function loadBeforeCloseHook(objectPath: string, cgroupPath: string, bpffsDir: string): Promise<{ close(): void }> {
  const spec = ConnMetrics.spec({ cgroupPath, bpffsDir, objectPath, closeHook: false });
  const rename = (n: string): string => (n === 'kw_cm_conns' ? 'kw_cm_sk' : n);
  const sub = await checkSubsystem({ ...spec, maps: spec.maps.map(rename), keep: [...(spec.keep ?? []), 'kw_cm_sk'] }).load();
  try {
    sub.attach();
  } catch (e) {
    sub.close();
    throw e;
  }
  return sub;
}

/** An object built before the close hook: it has no tp_btf program. */
const isBeforeCloseHook = (objectPath: string): boolean => !readFileSync(objectPath).includes('tp_btf/inet_sock_set_state');

/** The median (the mean of the two middle values for an even count). */
function median2(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return +(s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2).toFixed(3);
}

/** The interquartile mean: the mean of the values between the first and third quartiles (a quarter dropped at each end). */
function iqm(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const q = Math.floor(s.length / 4);
  const mid = s.slice(q, s.length - q);
  return +(mid.reduce((a, x) => a + x, 0) / mid.length).toFixed(3);
}

/** The first and third quartiles (nearest rank). */
function iqr(xs: number[]): [number, number] {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return [+at(0.25).toFixed(3), +at(0.75).toFixed(3)];
}

/** Closes the balancer and the accelerator, removes the pins, the lab and the folder. */
async function teardown(lab: Lab, undo: () => void, dir: string, bpffs: string, open: Array<{ close(): void } | undefined>): Promise<void> {
  for (const o of open) o?.close();
  try { uninstall(bpffs); } catch { /* the lab removes it */ }
  await lab.destroy();
  undo();
  rmSync(dir, { recursive: true, force: true });
}

const range = (xs: number[]): [number, number] => [+Math.min(...xs).toFixed(2), +Math.max(...xs).toFixed(2)];

if (invokedDirectly(import.meta.url)) {
  const { values } = parseArgs({ options: {
    seconds: { type: 'string' }, rounds: { type: 'string' }, threads: { type: 'string' }, 'kernel-only': { type: 'boolean' }, objects: { type: 'string' }, paired: { type: 'boolean' },
    'slice-ms': { type: 'string' }, block: { type: 'string' },
  } });
  if (values.paired && values['slice-ms']) {
    const r = await slicedTcpMetricsBench({ seconds: Number(values.seconds ?? 30), sliceMs: Number(values['slice-ms']), block: Number(values.block ?? 8), threads: Number(values.threads ?? 2),
      ...(values.objects ? { objects: values.objects.split(',') } : {}) });
    console.log(JSON.stringify(r));
    process.exit(0);
  }
  if (values.paired) {
    const r = await pairedTcpMetricsBench({ seconds: Number(values.seconds ?? 2), rounds: Number(values.rounds ?? 10), threads: Number(values.threads ?? 2),
      ...(values.objects ? { objects: values.objects.split(',') } : {}) });
    console.log(JSON.stringify(r));
    process.exit(0);
  }
  const r = await tcpMetricsBench({ seconds: Number(values.seconds ?? 3), rounds: Number(values.rounds ?? 4), threads: Number(values.threads ?? 4), kernelOnly: values['kernel-only'] === true,
    ...(values.objects ? { objects: values.objects.split(',') } : {}) });
  console.log(JSON.stringify(r));
}
