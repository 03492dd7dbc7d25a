/**
 * Restart safety: while the agent is down, the pinned tc links and connect() programs keep
 * enforcing the last policy; a new agent adopts the pinned links and maps (same endpoint
 * ids, same identities, no moment without a program) and carries on.
 */
import { existsSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pod } from '../../lab/index.js';
import { policyPins, uninstallPolicy } from '../../agent/datapath/policy.js';
import { PolicyLab, type PodClient } from './harness.js';
import { run } from '../../lab/system.js';

const policy = (name: string, ns: string, spec: Record<string, unknown>): string =>
  JSON.stringify({ apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec });

describe('policy engine restart', () => {
  let h: PolicyLab;
  let web: Pod, cli: Pod, r: Pod;
  let fromCli: PodClient, fromRemote: PodClient;

  beforeAll(async () => {
    h = await PolicyLab.create();
    web = await h.addPod('web', { namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' } });
    cli = await h.addPod('cli', { namespace: 'front', serviceAccount: 'client' });
    r = await h.lab.addPod('r', { remote: true });
    await h.server(web, [8080]);
    fromCli = h.client(cli);
    fromRemote = h.client(r);
    h.write('deny-all.json', policy('deny-all', 'shop', {}));
    h.write('allow.json', policy('allow', 'shop', { rules: [{ from: [{ source: { ipBlocks: [`${r.ipv4}/32`] } }] }] }));
    await h.until('two endpoints attached and two policies', () =>
      h.engine.endpoints.list().filter((e) => e.status === 'attached' && e.cgroup).length === 2 && h.engine.report().policies.length === 2);
  });
  afterAll(async () => { await h?.destroy(); });

  it('keeps enforcing while the agent is down, and a new agent adopts the pins', async () => {
    const before = h.engine.report();
    const webBefore = before.workloads.find((w) => w.namespace === 'shop')!;
    const epBefore = h.engine.endpoints.list().map((e) => [e.key, e.epId, e.ifindex]).sort();
    const countersBefore = h.counters('shop/web');
    const start = await h.stopEngine();

    // Down: same verdicts, from the pinned programs and maps.
    expect(await fromCli.connect(web.ipv4, 8080)).toMatchObject({ ok: false, code: 'EPERM' });
    expect((await fromRemote.connect(web.ipv4, 8080)).greeting).toBe('web');
    expect(readdirSync(policyPins(h.lab.bpffsDir).tc).sort()).toHaveLength(4);

    // Link events reach the new agent before its first pod list (it must not drop what it will adopt).
    const engine = await start(async () => {
      await run('ip', ['-n', h.lab.nodeNs, 'link', 'add', 'kwpoltmp0', 'type', 'veth', 'peer', 'name', 'kwpoltmp1']);
      await run('ip', ['-n', h.lab.nodeNs, 'link', 'del', 'kwpoltmp0']);
      // The pause is the subject: the link events are queued before the agent's first pod list.
      await new Promise((r) => setTimeout(r, 100));
    });
    await engine.settled();
    const eps = engine.endpoints.list();
    expect(eps.map((e) => [e.key, e.epId, e.ifindex]).sort()).toEqual(epBefore);
    expect(eps.every((e) => e.status === 'attached')).toBe(true);
    const webAfter = engine.report().workloads.find((w) => w.namespace === 'shop')!;
    expect(webAfter.id).toBe(webBefore.id); // identities seeded from the pinned address map
    expect(readdirSync(policyPins(h.lab.bpffsDir).tc)).toHaveLength(4); // adopted, not doubled
    // Counters carry on (same endpoint id, same per-CPU slot).
    expect(h.counters('shop/web').drops.policy_denied_connect).toBeGreaterThan(countersBefore.drops.policy_denied_connect);

    // And the new agent applies changes.
    h.write('allow.json', policy('allow', 'shop', { rules: [{ from: [{ source: { namespaces: ['front'] } }] }] }));
    await h.until('the new allow', () => engine.report().workloads.find((w) => w.namespace === 'shop')!.entries === 1 &&
      engine.report().totals.cidrs === 0);
    expect((await fromCli.connect(web.ipv4, 8080)).greeting).toBe('web');
    expect(await fromRemote.connect(web.ipv4, 8080, 1000)).toMatchObject({ ok: false, code: 'ETIMEDOUT' });
  });

  it('uninstall detaches everything and removes the pins', async () => {
    await h.engine.close();
    const res = uninstallPolicy(h.lab.bpffsDir);
    expect(res.detached.length).toBe(6); // 2 connect links + 2 tc links per pod
    expect(res.unpinned.sort()).toEqual(['kw_cgrp', 'kw_cidr', 'kw_ep_stats', 'kw_ident', 'kw_lxc', 'kw_netns', 'kw_pdst', 'kw_pol', 'kw_wp_mesh']);
    expect(existsSync(policyPins(h.lab.bpffsDir).root)).toBe(false);
    // Nothing enforces any more.
    expect((await fromCli.connect(web.ipv4, 8080)).greeting).toBe('web');
    expect((await fromRemote.connect(web.ipv4, 8080)).greeting).toBe('web');
    // The harness must not detach again.
    h.engine = undefined as never;
  });
});
