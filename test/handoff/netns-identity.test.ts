/**
 * Local pods known at connect() by their network namespace (issue 13): pods WITHOUT the
 * kernway.io/cgroup annotation (so no kw_cgrp entry: kernway cannot tell them apart by
 * cgroup) are still refused at connect() with EPERM, at once, by the policy — the agent
 * found each pod's namespace among the processes of its cgroup tree and wrote its cookie
 * to kw_netns. The annotation path still works when the namespace is unknown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pod } from '../../lab/index.js';
import { PolicyLab, type PodClient } from '../policy/harness.js';

const DROP_TIMEOUT_MS = 1000;

function policy(name: string, ns: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec });
}

/** A pod manifest without the kernway.io/cgroup annotation. */
function bare(name: string, p: Pod, ns: string, sa: string): string {
  return JSON.stringify({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns },
    spec: { nodeName: 'lab-node', serviceAccountName: sa },
    status: { phase: 'Running', podIP: p.ipv4, podIPs: [{ ip: p.ipv4 }, { ip: p.ipv6 }] },
  });
}

describe('local pods known by their network namespace at connect()', () => {
  let h: PolicyLab;
  let web: Pod, good: Pod, bad: Pod, ann: Pod;
  let fromGood: PodClient, fromBad: PodClient, fromAnn: PodClient;

  beforeAll(async () => {
    h = await PolicyLab.create();
    web = await h.addPod('web', { namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' } });
    ann = await h.addPod('ann', { namespace: 'front', serviceAccount: 'other' }); // annotated: the cgroup path
    good = await h.lab.addPod('good');
    bad = await h.lab.addPod('bad');
    h.write('pod-good.json', bare('good', good, 'front', 'client'));
    h.write('pod-bad.json', bare('bad', bad, 'front', 'other'));
    await h.server(web, [8080]);
    fromGood = h.client(good);
    fromBad = h.client(bad);
    fromAnn = h.client(ann);
    h.write('deny-all.json', policy('deny-all', 'shop', {}));
    h.write('allow.json', policy('allow', 'shop', { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { serviceAccounts: ['front/client'] } }] }] }));
    await h.untilPolicy('shop/allow');
    await h.until('every pod attached, its network namespace found', () => {
      const eps = h.engine.endpoints.list();
      return eps.length === 4 && eps.every((e) => e.status === 'attached' && e.netns !== undefined);
    });
  }, 60_000);
  afterAll(async () => { await h?.destroy(); });

  it('pods without the annotation have no cgroup but a network namespace each (distinct cookies)', () => {
    const eps = new Map(h.engine.endpoints.list().map((e) => [e.key, e]));
    expect(eps.get('front/good')!.cgroup).toBeUndefined();
    expect(eps.get('front/bad')!.cgroup).toBeUndefined();
    expect(eps.get('front/ann')!.cgroup).toBeDefined();
    expect(new Set([...eps.values()].map((e) => e.netns)).size).toBe(4);
    expect(h.engine.datapath.maps.kw_netns.batchLookup().keys).toHaveLength(4);
  });

  it('the policy applies at connect(): the denied pod gets EPERM at once (not a dropped SYN), the allowed one connects', async () => {
    const before = h.counters('front/bad').refusedOut;
    const denied = await fromBad.connect(web.ipv4, 8080, DROP_TIMEOUT_MS);
    expect(denied).toMatchObject({ ok: false, code: 'EPERM' });
    expect(await fromBad.connect(web.ipv6, 8080, DROP_TIMEOUT_MS)).toMatchObject({ ok: false, code: 'EPERM' });
    expect(h.counters('front/bad').refusedOut - before).toBe(2); // counted against the calling pod: it was identified
    expect((await fromGood.connect(web.ipv4, 8080)).greeting).toBe('web');
    expect((await fromGood.connect(web.ipv6, 8080)).greeting).toBe('web');
  });

  it('the kernway.io/cgroup annotation still identifies a pod whose namespace is not in kw_netns', async () => {
    expect(await fromAnn.connect(web.ipv4, 8080, DROP_TIMEOUT_MS)).toMatchObject({ ok: false, code: 'EPERM' });
    const ep = h.engine.endpoints.list().find((e) => e.key === 'front/ann')!;
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(BigInt(ep.netns!));
    expect(h.engine.datapath.maps.kw_netns.delete(key)).toBe(true);
    const before = h.counters('front/ann').refusedOut;
    expect(await fromAnn.connect(web.ipv4, 8080, DROP_TIMEOUT_MS)).toMatchObject({ ok: false, code: 'EPERM' });
    expect(h.counters('front/ann').refusedOut - before).toBe(1);
    // Without either (the bad pod's namespace entry removed too), the caller is no known pod at
    // connect(): its SYN is dropped at the destination's tc instead (a timeout).
    const bep = h.engine.endpoints.list().find((e) => e.key === 'front/bad')!;
    key.writeBigUInt64LE(BigInt(bep.netns!));
    expect(h.engine.datapath.maps.kw_netns.delete(key)).toBe(true);
    expect(await fromBad.connect(web.ipv4, 8080, DROP_TIMEOUT_MS)).toMatchObject({ ok: false, code: 'ETIMEDOUT' });
  });
});
