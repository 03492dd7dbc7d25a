/**
 * TCP request/response latency through a ClusterIP vs. straight to the backend, in one
 * run (sockperf ping-pong, pod to pod in a lab). The socket load balancer works once,
 * at connect(); after that the packets are those of a direct connection, so the ratio
 * should be ~1.
 *
 *   node dist/bench/lb/latency.js [--seconds 5] [--rounds 3] [--msg-size 64]
 *
 * Needs root (a lab) and sockperf. Prints one JSON line with p50/p99 per path and the ratios.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Lab } from '../../lab/index.js';
import { invokedDirectly } from './main-guard.js';
import { middle as median } from '../round-stats.js';
import { buildModel } from '../../model/model.js';
import { buildServiceTable } from '../../model/service-table.js';
import type { SourcedObject } from '../../k8s/types.js';
import { ServiceSync } from '../../agent/datapath/service-sync.js';
import { loadSockLb } from '../../agent/datapath/sock-lb.js';
import { serviceObject, sliceObject } from '../../agent/demo/manifests.js';

const VIP = '10.96.0.99';
const PORT = 11111;

interface Percentiles { p50: number; p99: number; avg: number }

/** sockperf's summary lines: "---> percentile 50.000 =    12.345" (usec) and "avg-latency=..." */
function parseSockperf(out: string): Percentiles {
  const pct = (p: string): number => {
    const m = new RegExp(`percentile ${p.replace('.', '\\.')}\\d* =\\s+([\\d.]+)`).exec(out);
    if (!m) throw new Error(`sockperf output has no percentile ${p}:\n${out}`);
    return Number(m[1]);
  };
  const avg = /avg-(?:lat|rtt)=\s*([\d.]+)/.exec(out);
  return { p50: pct('50.0'), p99: pct('99.0'), avg: avg ? Number(avg[1]) : NaN };
}

export async function latencyBench(opts: { seconds: number; rounds: number; msgSize: number }): Promise<Record<string, unknown>> {
  const lab = await Lab.create({ tag: 'benchlat' });
  const undo = lab.destroyOnSignals();
  try {
    const client = await lab.addPod('client');
    const server = await lab.addPod('server');
    const srv = lab.spawn(server, 'sockperf', ['server', '--tcp', '-i', '0.0.0.0', '-p', String(PORT)]);
    await new Promise((r) => setTimeout(r, 300));
    if (srv.exitCode !== null) throw new Error('sockperf server exited');
    const lb = await loadSockLb({ cgroupPath: lab.cgroupPath, bpffsDir: join(lab.bpffsDir, 'agent') });
    try {
      const objs = [
        serviceObject({ name: 'lat', clusterIPs: [VIP], ports: [{ port: PORT }] }),
        sliceObject({ name: 'lat-1', service: 'lat', ports: [{ port: PORT }], endpoints: [{ ip: server.ipv4 }] }),
      ];
      const model = buildModel(objs.map((object, index) => ({ object: object as SourcedObject['object'], file: 'lat.yaml', index })));
      new ServiceSync(lb.maps).reconcile(buildServiceTable(model, { nodeName: 'bench' }));
      const ping = async (host: string): Promise<Percentiles> => {
        const r = await lab.exec(client, 'sockperf', ['ping-pong', '--tcp', '-i', host, '-p', String(PORT), '-t', String(opts.seconds),
          '-m', String(opts.msgSize), '--full-rtt'], { timeoutMs: (opts.seconds + 30) * 1000 });
        if (r.code !== 0) throw new Error(`sockperf ping-pong to ${host} failed: ${r.stderr || r.stdout}`);
        return parseSockperf(r.stdout + r.stderr);
      };
      const vip: Percentiles[] = [];
      const direct: Percentiles[] = [];
      // Alternate the two paths so drift on a shared machine hits both alike.
      for (let i = 0; i < opts.rounds; i++) {
        direct.push(await ping(server.ipv4));
        vip.push(await ping(VIP));
      }
      const summary = (xs: Percentiles[]) => ({ p50: median(xs.map((x) => x.p50)), p99: median(xs.map((x) => x.p99)) });
      const v = summary(vip);
      const d = summary(direct);
      return {
        bench: 'lb-latency', unit: 'usec (round trip)', seconds: opts.seconds, rounds: opts.rounds, msgSize: opts.msgSize,
        clusterIP: v, direct: d, ratioP50: +(v.p50 / d.p50).toFixed(3), ratioP99: +(v.p99 / d.p99).toFixed(3), runs: { vip, direct },
      };
    } finally {
      lb.close();
    }
  } finally {
    undo();
    await lab.destroy();
  }
}

if (invokedDirectly(import.meta.url)) {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, 'msg-size': { type: 'string', default: '64' } } });
  latencyBench({ seconds: Number(values.seconds), rounds: Number(values.rounds), msgSize: Number(values['msg-size']) })
    .then((r) => console.log(JSON.stringify(r)), (e: unknown) => { console.error(e); process.exitCode = 1; });
}
