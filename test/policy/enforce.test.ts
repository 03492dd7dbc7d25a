/**
 * L4 authorization in the real kernel, with real traffic between lab pods: the policy
 * engine fed from a manifest directory, as the agent runs it. Local clients are refused
 * at connect() (EPERM); a host outside the node is dropped at the pod's tc ingress.
 */
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { command as policiesCommand } from '../../cli/policies.js';
import { AgentMetrics } from '../../agent/metrics/registry.js';
import { registerPolicyMetrics } from '../../agent/datapath/policy-metrics.js';
import { NODE_IPV4, type Pod } from '../../lab/index.js';
import { PolicyLab, type PodClient } from './harness.js';

const DROP_TIMEOUT_MS = 1000; // a dropped SYN: the client gives up after this

function policy(name: string, ns: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec });
}

describe('AuthorizationPolicy enforced in the kernel (lab pods, real traffic)', () => {
  let h: PolicyLab;
  let web: Pod, cli: Pod, oth: Pod, r: Pod;
  let fromCli: PodClient, fromOth: PodClient, fromRemote: PodClient;

  beforeAll(async () => {
    h = await PolicyLab.create();
    web = await h.addPod('web', { namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' } });
    cli = await h.addPod('cli', { namespace: 'front', serviceAccount: 'client' });
    oth = await h.addPod('oth', { namespace: 'front', serviceAccount: 'other' });
    r = await h.lab.addPod('r', { remote: true }); // a host elsewhere: no manifest, identity world
    await h.server(web, [8080, 9090]);
    fromCli = h.client(cli);
    fromOth = h.client(oth);
    fromRemote = h.client(r);
    await h.until('three endpoints attached', () => h.engine.endpoints.list().filter((e) => e.status === 'attached' && e.cgroup).length === 3);
  });
  afterAll(async () => { await h?.destroy(); });

  it('attaches tc to every local pod veth and lets everything through while no policy selects a pod', async () => {
    const eps = h.engine.endpoints.list();
    expect(eps.map((e) => e.ifname).sort()).toEqual([web.hostVeth, cli.hostVeth, oth.hostVeth].sort());
    expect((await fromCli.connect(web.ipv4, 8080)).greeting).toBe('web');
    expect((await fromRemote.connect(web.ipv4, 8080)).greeting).toBe('web');
    expect((await fromRemote.connect(web.ipv6, 9090)).greeting).toBe('web');
    const c = h.counters('shop/web');
    expect(c.packetsIn).toBeGreaterThan(0);
    expect(c.packetsOut).toBeGreaterThan(0);
  });

  it('deny-all in a namespace blocks everything into it: EPERM at connect for local pods, dropped at ingress for a remote host', async () => {
    const before = h.counters('shop/web');
    const cliBefore = h.counters('front/cli');
    h.write('deny-all.json', policy('deny-all', 'shop', {}));
    await h.untilPolicy('shop/deny-all');
    for (const [from, host] of [[fromCli, web.ipv4], [fromOth, web.ipv4], [fromCli, web.ipv6]] as const) {
      const res = await from.connect(host, 8080);
      expect(res).toMatchObject({ ok: false, code: 'EPERM' });
    }
    expect(await fromRemote.connect(web.ipv4, 8080, DROP_TIMEOUT_MS)).toMatchObject({ ok: false, code: 'ETIMEDOUT' });
    expect(await fromRemote.connect(web.ipv6, 8080, DROP_TIMEOUT_MS)).toMatchObject({ ok: false, code: 'ETIMEDOUT' });
    const after = h.counters('shop/web');
    expect(after.drops.policy_denied_connect - before.drops.policy_denied_connect).toBe(3);
    expect(after.drops.policy_denied - before.drops.policy_denied).toBeGreaterThanOrEqual(2); // SYNs (and their retries)
    expect(h.counters('front/cli').refusedOut - cliBefore.refusedOut).toBe(2);
    // The node itself (kubelet probes) gets through: its addresses are identity host.
    expect(h.engine.nodeAddresses()).toContain(NODE_IPV4);
    expect((await h.client('node').connect(web.ipv4, 8080)).greeting).toBe('web');
    // The other direction is open: front has no policy.
    await h.server(cli, [7070]);
    expect((await h.client(web).connect(cli.ipv4, 7070)).greeting).toBe('cli');
  });

  it('an ALLOW by service account then lets exactly that client in', async () => {
    h.write('allow-client.json', policy('allow-client', 'shop', {
      selector: { matchLabels: { app: 'web' } },
      rules: [{ from: [{ source: { serviceAccounts: ['front/client'] } }] }],
    }));
    await h.untilPolicy('shop/allow-client');
    expect((await fromCli.connect(web.ipv4, 8080)).greeting).toBe('web');
    expect((await fromCli.connect(web.ipv6, 9090)).greeting).toBe('web');
    expect(await fromOth.connect(web.ipv4, 8080)).toMatchObject({ ok: false, code: 'EPERM' });
    expect(await fromRemote.connect(web.ipv4, 8080, DROP_TIMEOUT_MS)).toMatchObject({ ok: false, code: 'ETIMEDOUT' });
  });

  it('a DENY for one namespace overrides the ALLOW', async () => {
    h.write('deny-front.json', policy('deny-front', 'shop', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['front'] } }] }] }));
    await h.untilPolicy('shop/deny-front');
    expect(await fromCli.connect(web.ipv4, 8080)).toMatchObject({ ok: false, code: 'EPERM' });
    h.remove('deny-front.json');
    await h.untilPolicy('shop/deny-front', false);
    expect((await fromCli.connect(web.ipv4, 8080)).greeting).toBe('web');
  });

  it('honours ports and ipBlocks', async () => {
    h.write('allow-client.json', policy('allow-client', 'shop', {
      selector: { matchLabels: { app: 'web' } },
      rules: [
        { from: [{ source: { serviceAccounts: ['front/client'] } }], to: [{ operation: { ports: ['8080'] } }] },
        { from: [{ source: { ipBlocks: [`${r.ipv4}/32`, `${r.ipv6}/128`] } }], to: [{ operation: { ports: ['9090'] } }] },
      ],
    }));
    await h.until('the port rule applied', () => h.engine.report().workloads.some((w) => w.namespace === 'shop' && w.entries >= 3));
    expect((await fromCli.connect(web.ipv4, 8080)).greeting).toBe('web');
    expect(await fromCli.connect(web.ipv4, 9090)).toMatchObject({ ok: false, code: 'EPERM' });
    expect((await fromRemote.connect(web.ipv4, 9090)).greeting).toBe('web');
    expect((await fromRemote.connect(web.ipv6, 9090)).greeting).toBe('web');
    expect(await fromRemote.connect(web.ipv4, 8080, DROP_TIMEOUT_MS)).toMatchObject({ ok: false, code: 'ETIMEDOUT' });
  });

  it('a policy change applies to the next connection; an established one carries on', async () => {
    expect((await fromCli.hold('kept', web.ipv4, 8080)).greeting).toBe('web');
    h.write('deny-front.json', policy('deny-front', 'shop', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['front'] } }] }] }));
    await h.untilPolicy('shop/deny-front');
    expect(await fromCli.connect(web.ipv4, 8080)).toMatchObject({ ok: false, code: 'EPERM' });
    expect(await fromCli.ping('kept', 'still there')).toMatchObject({ ok: true, reply: 'web still there' });
    await fromCli.close('kept');
    h.remove('deny-front.json');
    await h.untilPolicy('shop/deny-front', false);
  });

  it('rejects bad policies naming the file and the field, and keeps the others working', async () => {
    const bad: [string, Record<string, unknown>, RegExp][] = [
      ['bad-field.json', { rules: [{ from: [{ source: { namespace: ['front'] } }] }] }, /spec\.rules\[0\]\.from\[0\]\.source\.namespace: unknown field/],
      ['bad-cidr.json', { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/40'] } }] }] }, /ipBlocks\[0\]: prefix length/],
      ['bad-port.json', { rules: [{ to: [{ operation: { ports: ['99999'] } }] }] }, /to\[0\]\.operation\.ports\[0\]: must be a port number/],
    ];
    for (const [file, spec] of bad) h.write(file, policy(file.replace('.json', ''), 'shop', { action: 'DENY', ...spec }));
    await h.until('three problems reported', () => h.policyProblems().length >= 3);
    for (const [file, , re] of bad) {
      const p = h.policyProblems().find((x) => x.file.endsWith(file));
      expect(p, file).toBeDefined();
      expect(p!.object).toBe(`AuthorizationPolicy shop/${file.replace('.json', '')}`);
      expect(`${p!.field}: ${p!.message}`).toMatch(re);
    }
    // None of them is in force (each would deny), the good ones still are.
    expect(h.engine.report().policies.map((p) => p.key).sort()).toEqual(['shop/allow-client', 'shop/deny-all']);
    expect((await fromCli.connect(web.ipv4, 8080)).greeting).toBe('web');
    expect(await fromOth.connect(web.ipv4, 8080)).toMatchObject({ ok: false, code: 'EPERM' });
    for (const [file] of bad) h.remove(file);
    await h.until('problems resolved', () => h.policyProblems().length === 0);
  });

  it('fails safe on an L7 rule without a waypoint, says so, and counts the refusals apart', async () => {
    h.write('allow-get.json', policy('allow-get', 'shop', {
      selector: { matchLabels: { app: 'web' } },
      rules: [{ from: [{ source: { serviceAccounts: ['front/other'] } }], to: [{ operation: { methods: ['GET'] } }] }],
    }));
    await h.untilPolicy('shop/allow-get');
    const st = h.engine.report().policies.find((p) => p.key === 'shop/allow-get')!;
    expect(st.enforcement).toBe('not-enforceable');
    expect(st.message).toMatch(/operation\.methods: L7 fields need a waypoint/);
    expect(h.engine.problems().some((p) => p.code === 'KW_POLICY_L7_NOT_ENFORCEABLE' && p.object === 'AuthorizationPolicy shop/allow-get')).toBe(true);
    const before = h.counters('shop/web');
    expect(await fromOth.connect(web.ipv4, 8080)).toMatchObject({ ok: false, code: 'EPERM' });
    expect(h.counters('shop/web').drops.policy_l7_unenforceable_connect - before.drops.policy_l7_unenforceable_connect).toBe(1);
    h.remove('allow-get.json');
    await h.untilPolicy('shop/allow-get', false);
  });

  it('enforces on a pod added later, without a restart, whether its veth comes after its manifest or before', async () => {
    // Manifest first, veth later (the kubelet's usual order): the veth is found by `ip monitor`.
    const predicted = `10.244.0.${[...h.lab.pods.values()].filter((p) => !p.remote).length + 2}`;
    const t0 = performance.now();
    h.write('pod-late.json', h.podManifest('late', [predicted], { namespace: 'shop', serviceAccount: 'late', labels: { app: 'late' } }));
    await h.until('the late pod known', () => h.engine.endpoints.list().some((e) => e.key === 'shop/late'));
    const tManifest = performance.now();
    const late = await h.lab.addPod('late');
    expect(late.ipv4).toBe(predicted);
    const tVeth = performance.now();
    await h.until('the late pod attached', () => h.engine.endpoints.list().some((e) => e.key === 'shop/late' && e.status === 'attached' && e.cgroup !== undefined));
    const tAttached = performance.now();
    // Veth first, manifest later.
    const late2 = await h.lab.addPod('late2');
    const t1 = performance.now();
    h.write('pod-late2.json', h.podManifest('late2', [late2.ipv4, late2.ipv6], { namespace: 'shop', serviceAccount: 'late', labels: { app: 'late' } }));
    await h.until('the late2 pod attached', () => h.engine.endpoints.list().some((e) => e.key === 'shop/late2' && e.status === 'attached'));
    const t2 = performance.now();
    console.log(`pod pick-up: veth after manifest ${(tAttached - tVeth).toFixed(1)} ms after the veth appeared (manifest seen in ${(tManifest - t0).toFixed(1)} ms); ` +
      `manifest after veth ${(t2 - t1).toFixed(1)} ms from writing the manifest`);

    await h.server(late, [8080]);
    await h.server(late2, [8080]);
    expect(await fromCli.connect(late.ipv4, 8080)).toMatchObject({ ok: false, code: 'EPERM' });
    const before = h.counters('shop/late2');
    expect(await fromRemote.connect(late2.ipv4, 8080, DROP_TIMEOUT_MS)).toMatchObject({ ok: false, code: 'ETIMEDOUT' });
    expect(h.counters('shop/late2').drops.policy_denied - before.drops.policy_denied).toBeGreaterThanOrEqual(1);
    // And a pod going away is detached.
    h.remove('pod-late2.json');
    await h.until('late2 detached', () => !h.engine.endpoints.list().some((e) => e.key === 'shop/late2'));
  });

  it('reports each workload\'s effective policy and counters', () => {
    const rep = h.engine.report();
    const w = rep.workloads.find((x) => x.namespace === 'shop' && x.labels.app === 'web')!;
    expect(w.mode).toBe('allow-listed');
    expect(w.policies.map((p) => p.key).sort()).toEqual(['shop/allow-client', 'shop/deny-all']);
    expect(w.pods[0]!.endpoint!.ifname).toBe(web.hostVeth);
    expect(w.pods[0]!.counters!.drops.policy_denied_connect).toBeGreaterThan(0);
    expect(rep.workloads.find((x) => x.namespace === 'front')!.mode).toBe('open');
    expect(rep.drops.policy_denied).toBeGreaterThan(0);
  });

  it('exports bounded metrics read from the kernel at scrape time', async () => {
    const m = new AgentMetrics({ defaultMetrics: false });
    registerPolicyMetrics(m, () => h.engine);
    const text = await m.text();
    const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
    const drops = h.engine.report().drops;
    expect(value(/^kernway_policy_denied_total\{reason="policy_denied"\} (\d+)$/m)).toBe(drops.policy_denied);
    expect(value(/^kernway_policy_denied_total\{reason="policy_denied_connect"\} (\d+)$/m)).toBe(drops.policy_denied_connect);
    expect(value(/^kernway_pod_packets_total\{direction="in"\} (\d+)$/m)).toBeGreaterThan(0);
    expect(value(/^kernway_policy_endpoints\{status="attached"\} (\d+)$/m)).toBe(h.engine.endpoints.list().filter((e) => e.status === 'attached').length);
    expect(value(/^kernway_policy_objects\{kind="policies"\} (\d+)$/m)).toBe(2);
    expect(text).not.toMatch(/10\.244\./); // no addresses in labels
  });

  it('shows the report with `kernway policies` (table and --json) from the agent\'s admin socket', async () => {
    const sock = join(tmpdir(), `kernway-policy-admin-${process.pid}.sock`);
    const srv = createServer((req, res) => {
      if (req.url === '/v1/policies') { res.setHeader('content-type', 'application/json'); res.end(JSON.stringify(h.engine.report())); return; }
      res.statusCode = 404;
      res.end('not found');
    });
    await new Promise<void>((resolve) => srv.listen(sock, resolve));
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      expect(await policiesCommand.run(['--admin-socket', sock])).toBe(0);
      const text = log.mock.calls.map((c) => String(c[0])).join('\n');
      expect(text).toMatch(/shop sa=web app=web\s+\d+\s+allow-listed\s+shop\/allow-client\(ALLOW\) shop\/deny-all\(ALLOW\)/);
      expect(text).toMatch(new RegExp(`shop/web\\s+${web.hostVeth}\\s+attached\\s+\\d+`));
      expect(text).not.toContain('front sa=client'); // open workloads only with --all
      log.mockClear();
      expect(await policiesCommand.run(['--json', '--admin-socket', sock])).toBe(0);
      const json = JSON.parse(String(log.mock.calls[0]![0])) as { workloads: Array<{ namespace: string; mode: string }> };
      expect(json.workloads.find((w) => w.namespace === 'front')!.mode).toBe('open');
    } finally {
      log.mockRestore();
      srv.close();
    }
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      expect(await policiesCommand.run(['--admin-socket', sock])).toBe(1);
      expect(String(err.mock.calls[0]![0])).toMatch(/cannot reach the kernway agent at .*Is `kernway agent` running\?.*KW_AGENT_UNREACHABLE/);
    } finally {
      err.mockRestore();
    }
  });
});
