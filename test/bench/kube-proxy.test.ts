/**
 * The kube-proxy ruleset generator: kube-proxy's chain names and rule structure, checked
 * against names every Kubernetes node has; then installed with one iptables-restore in a
 * lab's node namespace, where it must DNAT pod -> ClusterIP connections to the endpoints
 * with kube-proxy's statistic split, and leave the machine's own iptables alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { Lab, type Pod } from '../../lab/index.js';
import { run } from '../../lab/system.js';
import { base32, endpointChainName, kubeProxyRules, probability, serviceChainName, servicePortName } from '../../bench/kube-proxy.js';
import { TARGET_VIP, benchServices, type BenchService } from '../../bench/services.js';
import { iptablesRestore } from '../../bench/modes.js';

const svc = (name: string, ip: string, port: number, endpoints: string[], portName = 'http'): BenchService => ({
  namespace: 'default', name, clusterIP: ip, endpoints, ports: [{ name: portName, port, targetPort: 8080, protocol: 'TCP' }],
});

describe('kube-proxy iptables rules: structure', () => {
  it('chain hashes are those kube-proxy gives well-known Services', () => {
    // As seen on any kubeadm cluster (iptables-save -t nat).
    expect(serviceChainName('default/kubernetes:https', 'tcp')).toBe('KUBE-SVC-NPX46M4PTMTKRN6Y');
    expect(serviceChainName('kube-system/kube-dns:dns', 'udp')).toBe('KUBE-SVC-TCOU7JCQXEZGVUNU');
    expect(serviceChainName('kube-system/kube-dns:dns-tcp', 'tcp')).toBe('KUBE-SVC-ERIFXISQEP7F7OF4');
    expect(serviceChainName('kube-system/kube-dns:metrics', 'tcp')).toBe('KUBE-SVC-JD5MR3NA4I4DYORP');
    expect(servicePortName('ns', 'svc', '')).toBe('ns/svc');
    expect(base32(Buffer.from('foobar'))).toBe('MZXW6YTBOI======');
    expect(endpointChainName('default/web:http', 'tcp', '10.0.0.1:8080')).toMatch(/^KUBE-SEP-[A-Z2-7]{16}$/);
  });

  it('KUBE-SERVICES -> KUBE-SVC (statistic 1/n, 1/(n-1), last unconditional) -> KUBE-SEP (masquerade mark, DNAT)', () => {
    const r = kubeProxyRules([svc('web', '10.96.0.20', 80, ['10.244.0.5', '10.244.0.6', '10.244.0.7'])], { clusterCIDR: '10.244.0.0/16' });
    const lines = r.text.split('\n');
    const svcChain = serviceChainName('default/web:http', 'tcp');
    const seps = ['10.244.0.5', '10.244.0.6', '10.244.0.7'].map((ip) => endpointChainName('default/web:http', 'tcp', `${ip}:8080`));
    expect(lines).toContain(`-A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20 --dport 80 -j ${svcChain}`);
    expect(lines).toContain(`-A ${svcChain} -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ`);
    const svcRules = lines.filter((l) => l.startsWith(`-A ${svcChain} `) && !l.includes('KUBE-MARK-MASQ'));
    expect(svcRules).toEqual([
      `-A ${svcChain} -m comment --comment "default/web:http -> 10.244.0.5:8080" -m statistic --mode random --probability 0.3333333333 -j ${seps[0]}`,
      `-A ${svcChain} -m comment --comment "default/web:http -> 10.244.0.6:8080" -m statistic --mode random --probability 0.5000000000 -j ${seps[1]}`,
      `-A ${svcChain} -m comment --comment "default/web:http -> 10.244.0.7:8080" -j ${seps[2]}`,
    ]);
    expect(lines).toContain(`-A ${seps[0]} -m comment --comment "default/web:http" -s 10.244.0.5 -j KUBE-MARK-MASQ`);
    expect(lines).toContain(`-A ${seps[0]} -m comment --comment "default/web:http" -m tcp -p tcp -j DNAT --to-destination 10.244.0.5:8080`);
    // Hooks from the built-in chains, the masquerade machinery, NODEPORTS last in KUBE-SERVICES.
    expect(lines).toContain('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES');
    expect(lines).toContain('-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES');
    expect(lines).toContain('-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000');
    expect(lines).toContain('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully');
    const ks = lines.filter((l) => l.startsWith('-A KUBE-SERVICES '));
    expect(ks[ks.length - 1]).toMatch(/-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS$/);
    // Every chain used is declared once, in the table that uses it.
    const nat = r.text.slice(r.text.indexOf('*nat'));
    for (const c of [svcChain, ...seps, 'KUBE-MARK-MASQ']) expect(nat.split('\n').filter((l) => l === `:${c} - [0:0]`)).toHaveLength(1);
    expect(probability(7)).toBe('0.1428571429');
  });

  it('above 1,000 endpoints, per-endpoint comments go (kube-proxy large cluster mode); rules grow with the Services', () => {
    const small = kubeProxyRules(benchServices(10, '10.244.0.3'), { clusterCIDR: '10.244.0.0/16' });
    const big = kubeProxyRules(benchServices(1000, '10.244.0.3'), { clusterCIDR: '10.244.0.0/16' });
    expect(small.largeClusterMode).toBe(false);
    expect(big.largeClusterMode).toBe(true);
    expect(big.text).not.toMatch(/-A KUBE-SEP-\S+ -m comment/);
    expect(big.text).toMatch(/-A KUBE-SERVICES -m comment --comment "bench\/target:sockperf cluster IP"/);
    // 999 Services with 2 endpoints, the target with 5 ports and 1: KUBE-SERVICES + SVC masq + SVC jumps + 2 per SEP.
    expect(big.natRules - small.natRules).toBe((999 - 9) * (1 + 1 + 2 + 2 * 2));
  });

  it('the target Service sits in the middle of KUBE-SERVICES, as it would on average in Go map order', () => {
    const r = kubeProxyRules(benchServices(101, '10.244.0.3'), { clusterCIDR: '10.244.0.0/16' });
    const ks = r.text.split('\n').filter((l) => l.startsWith('-A KUBE-SERVICES '));
    const at = ks.findIndex((l) => l.includes(TARGET_VIP));
    expect(at).toBe(50);
  });
});

const BACKEND = `
const net = require('node:net');
net.createServer((c) => c.end(process.argv[1])).listen(8080, '0.0.0.0', () => console.log('ready'));
`;
const CLIENT = `
const net = require('node:net');
const n = Number(process.argv[2]); const counts = {}; let done = 0;
const one = () => { const c = net.connect(80, process.argv[1]); let got = '';
  c.on('data', (d) => { got += d; }); c.on('error', (e) => { console.error(e.code); process.exit(3); });
  c.on('close', () => { counts[got] = (counts[got] ?? 0) + 1; if (++done === n) console.log(JSON.stringify(counts)); else one(); }); };
one();
`;

describe('kube-proxy iptables rules: in a lab node namespace (iptables-nft)', () => {
  let lab: Lab;
  let client: Pod;
  const backends: Pod[] = [];
  const procs: ChildProcess[] = [];
  let rootBefore = '';

  beforeAll(async () => {
    rootBefore = (await run('iptables-save', [])).stdout.replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, '');
    lab = await Lab.create({ tag: 'testkp' });
    client = await lab.addPod('client');
    for (const name of ['b1', 'b2', 'b3']) {
      const p = await lab.addPod(name);
      backends.push(p);
      const child = lab.spawn(p, process.execPath, ['-e', BACKEND, name]);
      procs.push(child);
      await new Promise<void>((resolve, reject) => {
        child.stdout!.once('data', () => resolve());
        child.once('exit', (c) => reject(new Error(`backend ${name} exited ${c}`)));
      });
    }
  });
  afterAll(async () => { await lab?.destroy(); });

  it('installs 1,000 Services in one iptables-restore, balances pod -> ClusterIP over 3 endpoints, and the root namespace is untouched', async () => {
    const others = benchServices(1000, '10.244.0.250').filter((s) => s.name !== 'target');
    const services = [...others.slice(0, 500), svc('three', '10.96.0.30', 80, backends.map((b) => b.ipv4)), ...others.slice(500)];
    const rules = kubeProxyRules(services, { clusterCIDR: '10.244.0.0/16' });
    await iptablesRestore(lab.nodeNsPath, rules.text);
    const saved = (await run('nsenter', [`--net=${lab.nodeNsPath}`, '--', 'iptables-save', '-t', 'nat'])).stdout;
    // One rule per Service port, and the jump to KUBE-NODEPORTS.
    expect(saved.split('\n').filter((l) => l.startsWith('-A KUBE-SERVICES ')).length).toBe(1001);
    expect(saved).toContain('--probability 0.33333333');

    const res = await lab.exec(client, process.execPath, ['-e', CLIENT, '10.96.0.30', '90'], { timeoutMs: 30_000 });
    expect(res.stderr).toBe('');
    const counts = JSON.parse(res.stdout) as Record<string, number>;
    expect(Object.keys(counts).sort()).toEqual(['b1', 'b2', 'b3']);
    for (const k of ['b1', 'b2', 'b3']) expect(counts[k]).toBeGreaterThanOrEqual(10);

    const rootAfter = (await run('iptables-save', [])).stdout.replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, '');
    expect(rootAfter).toBe(rootBefore);
    expect(rootAfter).not.toMatch(/KUBE-SVC|kernway/i);
  });
});
