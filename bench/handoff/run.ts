/**
 * The cost of the kernel hand-off to the waypoint (issue 13), on one lab node: HTTP
 * p50/p99 of the same client (wrk, one connection) through the kernel redirect
 * (ClusterIP -> connect() redirect -> PROXY header -> waypoint mesh port -> backend) and
 * talking to the waypoint directly (its Gateway listener -> the same backend). Rounds
 * alternate; the ratio redirect / direct is the hand-off's cost. The load is recorded.
 *
 *   node dist/bench/handoff/run.js [--seconds 3] [--rounds 3] [--connections 1] [--remote-waypoint]
 *
 * --remote-waypoint puts the waypoint on a lab remote host (its own netns off the node,
 * reached by pod-IP TCP; the client's socket is then not accelerated).
 * --across-nodes: three lab nodes with an agent each (bench/handoff/nodes.ts): client on
 * node 0, waypoint on node 1, backend on node 2.
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { WRK_SCRIPT, parseWrk } from '../tools.js';
import type { Lab, Pod } from '../../lab/index.js';
import { WEB_VIP } from '../../agent/demo/handoff.js';
import { DIRECT_PORT, HandoffRig, VIP } from './rig.js';
import { NodesRig } from './nodes.js';

interface Row { mode: 'redirect' | 'direct'; round: number; rps: number; p50: number; p99: number; errors: number; load: number }

async function wrk(rig: { lab: Lab; client: Pod }, url: string, headers: string[], seconds: number, connections: number): Promise<ReturnType<typeof parseWrk>> {
  const script = `/tmp/kw-handoff-wrk-${process.pid}.lua`;
  await rig.lab.exec(rig.client, 'sh', ['-c', `cat > ${script}`], { input: WRK_SCRIPT });
  const r = await rig.lab.exec(rig.client, 'wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', script, ...headers.flatMap((h) => ['-H', h]), url],
    { timeoutMs: (seconds + 20) * 1000 });
  await rig.lab.exec(rig.client, 'rm', ['-f', script]);
  return parseWrk(r.stdout);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' }, connections: { type: 'string', default: '1' }, 'remote-waypoint': { type: 'boolean', default: false }, 'across-nodes': { type: 'boolean', default: false } } });
  const seconds = Number(values.seconds), rounds = Number(values.rounds), connections = Number(values.connections);
  const remote = values['remote-waypoint'] === true;
  const nodes = values['across-nodes'] === true;
  const rig = nodes ? await NodesRig.start('hobench') : await HandoffRig.start({ tag: 'hobench', remoteWaypoint: remote });
  const vip = nodes ? WEB_VIP : VIP;
  const wpIp = rig instanceof NodesRig ? rig.pods.wp.ipv4 : rig.wp.ipv4;
  const rows: Row[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      for (const mode of (i % 2 === 0 ? ['redirect', 'direct'] : ['direct', 'redirect']) as Row['mode'][]) {
        // Both reach web-v2 through one HTTPRoute rule: the canary header match, or the Gateway route.
        const s = mode === 'redirect'
          ? await wrk(rig, `http://${vip}/`, ['x-canary: yes'], seconds, connections)
          : await wrk(rig, `http://${wpIp}:${DIRECT_PORT}/`, [], seconds, connections);
        rows.push({ mode, round: i, rps: s.rps, p50: s.p50, p99: s.p99, errors: s.errors, load: loadavg()[0]! });
      }
    }
  } finally {
    await rig.stop();
  }
  const med = (xs: number[]): number => { const a = [...xs].sort((x, y) => x - y); return a[Math.floor(a.length / 2)]!; };
  const of = (m: Row['mode'], k: 'p50' | 'p99' | 'rps'): number => med(rows.filter((r) => r.mode === m).map((r) => r[k]));
  for (const r of rows) console.log(`${r.mode.padEnd(8)} round ${r.round}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} us, p99 ${r.p99} us, errors ${r.errors}, load ${r.load.toFixed(2)}`);
  console.log(JSON.stringify({
    seconds, rounds, connections, waypoint: nodes ? 'across nodes (client, waypoint, backend on nodes 0, 1, 2)' : remote ? 'remote host' : 'same node',
    redirect: { p50: of('redirect', 'p50'), p99: of('redirect', 'p99'), rps: of('redirect', 'rps') },
    direct: { p50: of('direct', 'p50'), p99: of('direct', 'p99'), rps: of('direct', 'rps') },
    ratio: { p50: +(of('redirect', 'p50') / of('direct', 'p50')).toFixed(3), p99: +(of('redirect', 'p99') / of('direct', 'p99')).toFixed(3) },
    load: loadavg().map((x) => +x.toFixed(2)),
  }));
}

main().catch((e: unknown) => { console.error(e); process.exitCode = 1; });
