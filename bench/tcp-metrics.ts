/**
 * Cost per connection of the L4 metrics (bpf/conn_metrics.bpf.c, docs/metrics.md): the
 * connection rate with and without the metrics program, through a ClusterIP, with the
 * balancer and the accelerator attached in both configurations (as the agent has them).
 *
 *   node dist/bench/tcp-metrics.js [--seconds 3] [--rounds 4] [--threads 4] [--kernel-only]
 *
 * --kernel-only: the ring buffer is drained but its records are not counted, which
 * leaves the kernel program's cost (and the drain's copy) without the counting.
 *
 * Needs root (a lab), nginx and cc. In a lab: an nginx pod behind a ClusterIP and a
 * client pod on the same node running bench/connrate.c (connect + HTTP/1.0 request +
 * close per cycle). "with" is the program attached and the agent's side draining the
 * ring buffer into the Istio-labelled counters (agent/metrics/tcp.ts) in this process;
 * "without" is the program detached. Rounds alternate (with, without | without, with |
 * ...) so drift on a shared machine hits both. Prints one JSON line: each round's rates,
 * the medians and the ratio with / without (target >= 0.97), and the load average.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
import { ConnMetrics, detachConnMetrics } from '../agent/datapath/conn-metrics.js';
import { TcpMetrics, modelResolver } from '../agent/metrics/tcp.js';
import { serviceHost, workloadOf } from '../model/workload.js';
import { serviceObject, sliceObject } from '../agent/demo/manifests.js';
import { buildConnrate } from './run.js';
import { parseConnrate } from './tools.js';
import { invokedDirectly } from './lb/main-guard.js';
import { middle as median, ratio } from './round-stats.js';

const NODE = 'bench-node';
const VIP = '10.96.0.30';
const PORT = 8080;

export async function tcpMetricsBench(opts: { seconds: number; rounds: number; threads: number; kernelOnly?: boolean }): Promise<Record<string, unknown>> {
  const lab = await Lab.create({ tag: 'benchtcpm' });
  const undo = lab.destroyOnSignals();
  const dir = mkdtempSync(join(tmpdir(), 'kernway-bench-tcpm-'));
  const bpffs = join(lab.bpffsDir, 'agent');
  let conns: ConnMetrics | undefined;
  let lb: Awaited<ReturnType<typeof loadSockLb>> | undefined;
  let sm: Sockmap | undefined;
  try {
    const server = await lab.addPod('server');
    const client = await lab.addPod('client');
    writeFileSync(join(dir, 'nginx.conf'), [
      'worker_processes 1;', `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log;`, 'events { worker_connections 4096; }',
      'http {', '  access_log off;', `  client_body_temp_path ${dir}/body;`, `  proxy_temp_path ${dir}/proxy;`, `  fastcgi_temp_path ${dir}/fcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi;`, `  scgi_temp_path ${dir}/scgi;`,
      `  server { listen ${PORT}; location / { return 200 "ok\\n"; } }`, '}',
    ].join('\n'));
    const nginx = lab.spawn(server, 'nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir, '-g', 'daemon off;']);
    const connrate = await buildConnrate(dir);
    if (nginx.exitCode !== null) throw new Error('nginx exited');

    lb = await loadSockLb({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs });
    sm = await Sockmap.load({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs });
    sm.setLocalPods([{ ip: server.ipv4 }, { ip: client.ipv4 }]);
    const objects = [
      serviceObject({ name: 'web', namespace: 'bench', clusterIPs: [VIP], ports: [{ port: 80, targetPort: PORT }] }),
      sliceObject({ name: 'web-1', namespace: 'bench', service: 'web', ports: [{ port: PORT }], endpoints: [{ ip: server.ipv4, nodeName: NODE }] }),
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'server', namespace: 'bench', labels: { app: 'server' } }, spec: { nodeName: NODE }, status: { phase: 'Running', podIP: server.ipv4 } },
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'client', namespace: 'bench', labels: { app: 'client' } }, spec: { nodeName: NODE }, status: { phase: 'Running', podIP: client.ipv4 } },
    ];
    const model = buildModel(objects.map((o, index) => ({ object: o as SourcedObject['object'], file: 'bench.yaml', index })));
    new ServiceSync(lb.maps).reconcile(buildServiceTable(model, { nodeName: NODE }));
    const tcp = new TcpMetrics(new Registry());
    tcp.setResolver(modelResolver(model, workloadOf, serviceHost));
    let records = 0;

    const run = async (): Promise<number> => {
      const r = await lab.exec(client, connrate, [VIP, '80', String(opts.seconds), String(opts.threads)], { timeoutMs: (opts.seconds + 30) * 1000 });
      if (r.code !== 0) throw new Error(`connrate failed: ${r.stderr || r.stdout}`);
      const s = parseConnrate(r.stdout + r.stderr);
      if (s.errors! > 0) throw new Error(`connrate: ${s.errors} errors`);
      return s.rate!;
    };
    const setWith = async (on: boolean): Promise<void> => {
      if (on && !conns) conns = await ConnMetrics.load({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs, onBatch: (data, count) => { records += count; if (!opts.kernelOnly) tcp.recordBatch(data, count); } });
      if (!on && conns) {
        conns.close();
        conns = undefined;
        detachConnMetrics(bpffs, lab.cgroupPath);
      }
    };
    await run(); // warm-up (nginx, caches), not counted
    const withRates: number[] = [];
    const withoutRates: number[] = [];
    const loads: number[] = [];
    // This process is the agent's side (the drain timer and the counters): its CPU time
    // during the with-rounds, per connection, against the time a connection takes.
    let agentCpuUs = 0;
    let withConns = 0;
    let idleCpuUs = 0;
    let withoutConns = 0;
    for (let i = 0; i < opts.rounds; i++) {
      for (const on of i % 2 === 0 ? [true, false] : [false, true]) {
        await setWith(on);
        loads.push(+loadavg()[0]!.toFixed(2));
        const cpu0 = process.cpuUsage();
        const rate = await run();
        if (on) conns!.drain(); // what is left, counted in this round
        const cpu = process.cpuUsage(cpu0);
        (on ? withRates : withoutRates).push(rate);
        if (on) {
          agentCpuUs += cpu.user + cpu.system;
          withConns += rate * opts.seconds;
        } else {
          idleCpuUs += cpu.user + cpu.system;
          withoutConns += rate * opts.seconds;
        }
      }
    }
    await setWith(false);
    const w = median(withRates);
    const wo = median(withoutRates);
    return {
      seconds: opts.seconds, rounds: opts.rounds, threads: opts.threads, kernelOnly: opts.kernelOnly === true,
      with: withRates.map(Math.round), without: withoutRates.map(Math.round),
      medianWith: Math.round(w), medianWithout: Math.round(wo), ratio: ratio(w, wo),
      perRoundRatios: withRates.map((x, i) => ratio(x, withoutRates[i]!)),
      records, labelSets: tcp.labelSets, loadavg1: loads,
      // The agent's CPU per connection, and what a connection costs at the median rate over 2 cores.
      agentCpuUsPerConn: +(agentCpuUs / Math.max(1, withConns)).toFixed(2),
      // The same process in the without-rounds (starting connrate, timers): what is not the drain.
      idleCpuUsPerConn: +(idleCpuUs / Math.max(1, withoutConns)).toFixed(2), connBudgetUs: +(2e6 / Math.max(1, wo)).toFixed(2),
    };
  } finally {
    conns?.close();
    sm?.close();
    lb?.close();
    try { uninstall(bpffs); } catch { /* the lab removes it */ }
    await lab.destroy();
    undo();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (invokedDirectly(import.meta.url)) {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, rounds: { type: 'string' }, threads: { type: 'string' }, 'kernel-only': { type: 'boolean' } } });
  const r = await tcpMetricsBench({ seconds: Number(values.seconds ?? 3), rounds: Number(values.rounds ?? 4), threads: Number(values.threads ?? 4), kernelOnly: values['kernel-only'] === true });
  console.log(JSON.stringify(r));
}
