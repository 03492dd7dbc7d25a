/**
 * The policy connect() check behind the socket load balancer: a client dials a ClusterIP,
 * the balancer's connect program (attached first) sends it to the backend pod, and the
 * policy program (attached after) checks that pod's policy: EPERM at once when denied.
 * Both share the agent's bpffs folder (maps/ and links/ for the balancer, policy/ here).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pod } from '../../lab/index.js';
import { loadSockLb, type SockLb } from '../../agent/datapath/sock-lb.js';
import { ServiceSync } from '../../agent/datapath/service-sync.js';
import { buildServiceTable } from '../../model/service-table.js';
import { serviceObject, sliceObject } from '../../agent/demo/manifests.js';
import { PolicyLab, NODE_NAME, type PodClient } from './harness.js';

const VIP = '10.96.0.50';

describe('policy behind the socket load balancer', () => {
  let h: PolicyLab;
  let lb: SockLb | undefined;
  let web: Pod, cli: Pod;
  let fromCli: PodClient;
  let synced = 0;

  beforeAll(async () => {
    let sync: ServiceSync | undefined;
    h = await PolicyLab.create({}, async (lab) => {
      lb = await loadSockLb({ cgroupPath: lab.cgroupPath, bpffsDir: lab.bpffsDir });
      sync = new ServiceSync(lb.maps);
    }, (s) => {
      sync!.reconcile(buildServiceTable(s.model, { nodeName: NODE_NAME }));
      synced++;
    });
    web = await h.addPod('web', { namespace: 'shop', serviceAccount: 'web', labels: { app: 'web' } });
    cli = await h.addPod('cli', { namespace: 'front', serviceAccount: 'client' });
    h.write('svc.json', JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [
      serviceObject({ name: 'web', namespace: 'shop', clusterIPs: [VIP], ports: [{ port: 80, targetPort: 8080 }] }),
      sliceObject({ name: 'web-1', namespace: 'shop', service: 'web', ports: [{ port: 8080 }], endpoints: [{ ip: web.ipv4 }] }),
    ] }));
    await h.server(web, [8080]);
    fromCli = h.client(cli);
    await h.until('endpoints attached', () => h.engine.endpoints.list().filter((e) => e.status === 'attached' && e.cgroup).length === 2);
  });
  afterAll(async () => {
    await h?.destroy();
    lb?.close();
  });

  it('balances to the backend, then refuses at connect() when the backend\'s policy denies the client', async () => {
    await h.until('the Service synced', () => synced > 0 && h.engine.report().totals.identities === 2);
    expect((await fromCli.connect(VIP, 80)).greeting).toBe('web');
    h.write('deny.json', JSON.stringify({ apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-front', namespace: 'shop' },
      spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['front'] } }], to: [{ operation: { ports: ['8080'] } }] }] } }));
    await h.untilPolicy('shop/deny-front');
    const before = h.counters('shop/web');
    // The rule names the pod's port (8080), not the Service's (80): the check sees the backend.
    expect(await fromCli.connect(VIP, 80)).toMatchObject({ ok: false, code: 'EPERM' });
    expect(h.counters('shop/web').drops.policy_denied_connect - before.drops.policy_denied_connect).toBe(1);
  });
});
