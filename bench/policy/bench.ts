/**
 * Connection rate and request/response latency to a pod protected by L4 policy, with 0
 * vs 1,000 AuthorizationPolicies in the cluster (docs/policy.md, "Cost").
 *
 *   node dist/bench/policy/bench.js [--seconds 5] [--rounds 3] [--policies 1000] [--identities 1000] [--connections 8]
 *
 * Needs root (a lab), nginx, wrk and sockperf. In a lab: a server pod (nginx and a
 * sockperf server), a client pod on the same node (checked at connect() and at the
 * server's tc ingress) and a host elsewhere (checked at tc ingress only). The policy
 * engine is attached in both configurations; only the policies differ:
 *   - 0:     no policy at all (the server is open: one map lookup per connection);
 *   - 1,000: deny-all + an ALLOW for the client's service account + an ALLOW for the
 *            remote host's /32 + a DENY by ipBlock and namespace on the server's
 *            namespace, and 996 policies for other workloads (selectors, namespaces,
 *            service accounts, ipBlocks, ports), over --identities synthetic pods.
 * Measured per configuration, rounds alternating so drift on a shared machine hits both:
 *   - wrk with "Connection: close" (a new TCP connection per request): connections/s and
 *     latency p50/p99, from the local client and from the remote host;
 *   - sockperf ping-pong over one connection: round-trip p50/p99.
 * Prints one JSON line with medians and the ratios 1000-policy / 0-policy (latency) and
 * 0-policy / 1000-policy (rate); the target is <= 1.05 for each.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Lab, type Pod as LabPod } from '../../lab/index.js';
import { PolicyEngine } from '../../agent/datapath/policy-engine.js';
import type { Pod } from '../../k8s/types.js';
import { parseAuthorizationPolicy } from '../../k8s/policy.js';
import type { AuthorizationPolicy } from '../../k8s/policy-types.js';
import { invokedDirectly } from '../lb/main-guard.js';
import { middle as median, ratio, sockperfLatency as parseSockperf, type Latency } from '../round-stats.js';
import { encodeLxcVal, encodeU32 } from '../../agent/datapath/policy-codec.js';
import { addrBytes } from '../../k8s/cidr.js';

const HTTP_PORT = 8080;
const SOCKPERF_PORT = 11111;
const NODE = 'bench-node';

interface WrkResult extends Latency { rps: number; errors: number }

function modelPod(ns: string, name: string, sa: string, labels: Record<string, string>, ip: string, node: string, cgroup?: string): Pod {
  const annotations: Record<string, string> = cgroup ? { 'kernway.io/cgroup': cgroup } : {};
  return Object.freeze({
    namespace: ns, name, key: `${ns}/${name}`, labels, annotations, serviceAccountName: sa,
    hostNetwork: false, podIPs: [ip], nodeName: node, phase: 'Running', origin: { file: 'bench', index: 0 },
  });
}

function policy(ns: string, name: string, spec: Record<string, unknown>): AuthorizationPolicy {
  const r = parseAuthorizationPolicy({ object: { apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec }, file: 'bench', index: 0 });
  if (!r.object) throw new Error(r.problems.map((p) => p.message).join('; '));
  return r.object.value;
}

/** The cluster: synthetic pods (other nodes) with distinct identities, and the policies. */
export function benchCluster(n: { policies: number; identities: number }, server: LabPod, client: LabPod, remote: LabPod): { pods: Pod[]; policies: AuthorizationPolicy[] } {
  const pods: Pod[] = [
    modelPod('bench', 'server', 'server', { app: 'server' }, server.ipv4, NODE, `pod-${server.name}`),
    modelPod('clients', 'client', 'client', { app: 'client' }, client.ipv4, NODE, `pod-${client.name}`),
  ];
  for (let i = 0; i < n.identities; i++) {
    pods.push(modelPod(`ns-${i % 200}`, `p-${i}`, `sa-${i % 7}`, { app: `app-${i}`, tier: `t${i % 3}` }, `10.250.${Math.floor(i / 250)}.${(i % 250) + 1}`, 'other-node'));
  }
  const policies: AuthorizationPolicy[] = [
    policy('bench', 'deny-all', {}),
    policy('bench', 'allow-client', { selector: { matchLabels: { app: 'server' } }, rules: [
      { from: [{ source: { serviceAccounts: ['clients/client'] } }], to: [{ operation: { ports: [String(HTTP_PORT), String(SOCKPERF_PORT)] } }] },
    ] }),
    policy('bench', 'allow-remote', { selector: { matchLabels: { app: 'server' } }, rules: [
      { from: [{ source: { ipBlocks: [`${remote.ipv4}/32`] } }], to: [{ operation: { ports: [String(HTTP_PORT), String(SOCKPERF_PORT)] } }] },
    ] }),
    policy('bench', 'deny-bad', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['192.0.2.0/24'] } }, { source: { namespaces: ['evil', 'ns-13'] } }] }] }),
  ];
  for (let i = policies.length; i < n.policies; i++) {
    const ns = `ns-${i % 200}`;
    const kind = i % 4;
    const spec: Record<string, unknown> =
      kind === 0 ? { selector: { matchLabels: { app: `app-${i % n.identities}` } }, rules: [{ from: [{ source: { namespaces: [`ns-${(i + 1) % 200}`] } }], to: [{ operation: { ports: [String(80 + (i % 50))] } }] }] }
        : kind === 1 ? { selector: { matchLabels: { tier: `t${i % 3}` } }, rules: [{ from: [{ source: { ipBlocks: [`10.${100 + Math.floor(i / 250)}.${i % 250}.0/24`] } }] }] }
          : kind === 2 ? { action: 'DENY', selector: { matchLabels: { app: `app-${(i * 7) % n.identities}` } }, rules: [{ from: [{ source: { serviceAccounts: [`ns-${(i + 3) % 200}/sa-${i % 7}`] } }] }] }
            : { selector: { matchLabels: { app: `app-${(i * 3) % n.identities}` } }, rules: [{ from: [{ source: { namespaces: ['clients'], ipBlocks: ['10.244.0.0/16'] } }], to: [{ operation: { ports: ['443', '8443'] } }] }] };
    policies.push(policy(ns, `p-${i}`, spec));
  }
  return { pods, policies };
}

function parseWrk(out: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
    if (!m) throw new Error(`wrk output has no ${p}% latency:\n${out}`);
    const v = Number(m[1]);
    return m[2] === 'us' ? v : m[2] === 'ms' ? v * 1000 : v * 1e6;
  };
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  if (!rps) throw new Error(`wrk output has no Requests/sec:\n${out}`);
  return { rps: Number(rps[1]), p50: pct('50'), p99: pct('99'), errors: errs ? Number(errs[1]) + Number(errs[4]) : 0 };
}

export async function policyBench(opts: { seconds: number; rounds: number; policies: number; identities: number; connections: number }): Promise<Record<string, unknown>> {
  const lab = await Lab.create({ tag: 'benchpol' });
  const undo = lab.destroyOnSignals();
  const dir = mkdtempSync(join(tmpdir(), 'kernway-bench-policy-'));
  let engine: PolicyEngine | undefined;
  try {
    const server = await lab.addPod('server');
    const client = await lab.addPod('client');
    const remote = await lab.addPod('remote', { remote: true });
    writeFileSync(join(dir, 'nginx.conf'), [
      'worker_processes 1;', `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log;`,
      'events { worker_connections 4096; }',
      'http {', '  access_log off;', `  client_body_temp_path ${dir}/body;`, `  proxy_temp_path ${dir}/proxy;`, `  fastcgi_temp_path ${dir}/fcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi;`, `  scgi_temp_path ${dir}/scgi;`,
      `  server { listen ${HTTP_PORT}; listen [::]:${HTTP_PORT}; location / { return 200 "ok\\n"; } }`, '}',
    ].join('\n'));
    const nginx = lab.spawn(server, 'nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir, '-g', 'daemon off;']);
    const sockperf = lab.spawn(server, 'sockperf', ['server', '--tcp', '-i', '0.0.0.0', '-p', String(SOCKPERF_PORT)]);
    await new Promise((r) => setTimeout(r, 500));
    if (nginx.exitCode !== null) throw new Error('nginx exited');
    if (sockperf.exitCode !== null) throw new Error('sockperf server exited');

    engine = await PolicyEngine.start({ nodeName: NODE, cgroupPath: lab.cgroupPath, bpffsDir: lab.bpffsDir, netns: lab.nodeNsPath });
    const cluster = benchCluster({ policies: opts.policies, identities: opts.identities }, server, client, remote);
    engine.update({ pods: cluster.pods, policies: [] });
    await engine.settled();
    const applyFull = engine.update({ policies: cluster.policies });
    const apply = { policies: cluster.policies.length, identities: applyFull.identities, tables: applyFull.tables, entries: applyFull.entries, ms: applyFull.ms };

    const wrk = async (from: LabPod): Promise<WrkResult> => {
      const r = await lab.exec(from, 'wrk', ['-t', '1', '-c', String(opts.connections), '-d', `${opts.seconds}s`, '--latency', '-H', 'Connection: close',
        `http://${server.ipv4}:${HTTP_PORT}/`], { timeoutMs: (opts.seconds + 30) * 1000 });
      if (r.code !== 0) throw new Error(`wrk failed: ${r.stderr || r.stdout}`);
      return parseWrk(r.stdout);
    };
    const ping = async (): Promise<Latency> => {
      const r = await lab.exec(client, 'sockperf', ['ping-pong', '--tcp', '-i', server.ipv4, '-p', String(SOCKPERF_PORT), '-t', String(opts.seconds), '-m', '64'],
        { timeoutMs: (opts.seconds + 30) * 1000 });
      if (r.code !== 0) throw new Error(`sockperf ping-pong failed: ${r.stderr || r.stdout}`);
      return parseSockperf(r.stdout + r.stderr);
    };
    // The kernel's own cost of one check: the tc program on a SYN (BPF_PROG_TEST_RUN, mean
    // of many runs), with the packet "on" a veth standing for the server's (loopback here).
    const serverId = engine.report().workloads.find((w) => w.namespace === 'bench')!.id;
    const syn = (src: string): Buffer => {
      const b = Buffer.alloc(54);
      b.writeUInt16BE(0x0800, 12);
      b[14] = 0x45; b.writeUInt16BE(40, 16); b[22] = 64; b[23] = 6;
      addrBytes(src)!.copy(b, 26, 12, 16);
      addrBytes(server.ipv4)!.copy(b, 30, 12, 16);
      b.writeUInt16BE(40000, 34); b.writeUInt16BE(HTTP_PORT, 36); b[46] = 0x50; b[47] = 0x02;
      return b;
    };
    const synCost = (): { client: number; remote: number; verdicts: number[] } => {
      const dp = engine!.datapath;
      dp.maps.kw_lxc.update(encodeU32(1), encodeLxcVal({ epId: 0, id: serverId }));
      const run = (data: Buffer): { durationNs: number; retval: number } => {
        for (let attempt = 0; ; attempt++) {
          try {
            return dp.toPod.testRun({ data, repeat: 50_000 });
          } catch (e) {
            if ((e as { code?: string }).code !== 'EINTR' || attempt >= 5) throw e; // a signal cut the run short: again
          }
        }
      };
      try {
        const c = run(syn(client.ipv4));
        const r = run(syn(remote.ipv4));
        return { client: c.durationNs, remote: r.durationNs, verdicts: [c.retval | 0, r.retval | 0] };
      } finally {
        dp.maps.kw_lxc.delete(encodeU32(1));
      }
    };
    const synNs: Record<'0' | 'n', Array<{ client: number; remote: number; verdicts: number[] }>> = { 0: [], n: [] };

    const runs: Record<'0' | 'n', { local: WrkResult[]; remote: WrkResult[]; pingpong: Latency[] }> = {
      0: { local: [], remote: [], pingpong: [] }, n: { local: [], remote: [], pingpong: [] },
    };
    for (let i = 0; i < opts.rounds; i++) {
      for (const cfg of (i % 2 === 0 ? ['0', 'n'] : ['n', '0']) as Array<'0' | 'n'>) {
        engine.update({ policies: cfg === '0' ? [] : cluster.policies });
        const check = await lab.exec(client, 'bash', ['-c', `exec 3<>/dev/tcp/${server.ipv4}/${HTTP_PORT} && echo ok`], { timeoutMs: 5000 });
        if (!check.stdout.includes('ok')) throw new Error(`the client cannot reach the server with ${cfg === '0' ? 0 : opts.policies} policies: ${check.stderr}`);
        synNs[cfg].push(synCost());
        runs[cfg].local.push(await wrk(client));
        runs[cfg].remote.push(await wrk(remote));
        runs[cfg].pingpong.push(await ping());
      }
    }
    const sum = (xs: WrkResult[]) => ({ rps: median(xs.map((x) => x.rps)), p50: median(xs.map((x) => x.p50)), p99: median(xs.map((x) => x.p99)), errors: xs.reduce((a, x) => a + x.errors, 0) });
    const lat = (xs: Latency[]) => ({ p50: median(xs.map((x) => x.p50)), p99: median(xs.map((x) => x.p99)) });
    const r0 = { local: sum(runs[0].local), remote: sum(runs[0].remote), pingpong: lat(runs[0].pingpong) };
    const rn = { local: sum(runs.n.local), remote: sum(runs.n.remote), pingpong: lat(runs.n.pingpong) };
    const counters = engine.endpoints.counters().get('bench/server');
    return {
      bench: 'policy', unit: 'connections/s; latency usec', seconds: opts.seconds, rounds: opts.rounds, connections: opts.connections, apply,
      synCheckNs: {
        zero: { client: median(synNs[0].map((x) => x.client)), remote: median(synNs[0].map((x) => x.remote)) },
        many: { client: median(synNs.n.map((x) => x.client)), remote: median(synNs.n.map((x) => x.remote)) },
        verdicts: { zero: synNs[0][0]?.verdicts, many: synNs.n[0]?.verdicts },
      },
      zero: r0, many: rn,
      ratios: {
        localRate: ratio(r0.local.rps, rn.local.rps), localP50: ratio(rn.local.p50, r0.local.p50), localP99: ratio(rn.local.p99, r0.local.p99),
        remoteRate: ratio(r0.remote.rps, rn.remote.rps), remoteP50: ratio(rn.remote.p50, r0.remote.p50), remoteP99: ratio(rn.remote.p99, r0.remote.p99),
        pingpongP50: ratio(rn.pingpong.p50, r0.pingpong.p50), pingpongP99: ratio(rn.pingpong.p99, r0.pingpong.p99),
      },
      serverDrops: counters?.drops,
    };
  } finally {
    if (engine) {
      await engine.endpoints.detachAll().catch(() => {});
      await engine.close().catch(() => {});
    }
    undo();
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (invokedDirectly(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' },
      policies: { type: 'string', default: '1000' }, identities: { type: 'string', default: '1000' }, connections: { type: 'string', default: '8' },
    },
  });
  policyBench({
    seconds: Number(values.seconds), rounds: Number(values.rounds), policies: Number(values.policies),
    identities: Number(values.identities), connections: Number(values.connections),
  }).then(
    (r) => { console.log(JSON.stringify(r)); },
    (e: unknown) => { console.error(`bench/policy: ${(e as Error).message}`); process.exitCode = 1; },
  );
}
