/**
 * Acceleration composed with socket load balancing: a client that dials a ClusterIP is
 * connected (cgroup/connect4/6) to a backend pod before the handshake, so at
 * establishment its socket's peer is the backend and the two ends find each other.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, type Pod } from '../../lab/index.js';
import { buildModel } from '../../model/model.js';
import { buildServiceTable } from '../../model/service-table.js';
import type { SourcedObject } from '../../k8s/types.js';
import { ServiceSync } from '../../agent/datapath/service-sync.js';
import { loadSockLb, type SockLb } from '../../agent/datapath/sock-lb.js';
import { Sockmap } from '../../agent/datapath/sockmap.js';
import { serviceObject, sliceObject } from '../../agent/demo/manifests.js';
import { OBJECT, Server, delta, localPodsOf, runClient } from './harness.js';

const NODE = 'node-a';
let lab: Lab;
let client: Pod;
let backends: Pod[];
let lb: SockLb;
let sm: Sockmap;
let servers: Server[] = [];

beforeAll(async () => {
  lab = await Lab.create({ tag: 'smsvc' });
  client = await lab.addPod('c');
  backends = [await lab.addPod('b1'), await lab.addPod('b2')];
  // One bpffs folder for both, as the agent has it.
  const bpffs = join(lab.bpffsDir, 'agent');
  lb = await loadSockLb({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs });
  sm = await Sockmap.load({ cgroupPath: lab.cgroupPath, bpffsDir: bpffs, objectPath: OBJECT });
  sm.setLocalPods(localPodsOf(client, ...backends));
  const objects: Array<Record<string, unknown>> = [];
  for (const [name, vip, v6] of [['web', '10.96.0.10', false], ['web6', 'fd00:96::10', true]] as const) {
    objects.push(
      serviceObject({ name, clusterIPs: [vip], ports: [{ name: 'http', port: 80, targetPort: 'http' }] }),
      sliceObject({
        name: `${name}-1`, service: name, addressType: v6 ? 'IPv6' : 'IPv4', ports: [{ name: 'http', port: 8080 }],
        endpoints: backends.map((p) => ({ ip: v6 ? p.ipv6 : p.ipv4, nodeName: NODE })),
      }),
    );
  }
  const srcs: SourcedObject[] = objects.map((o, index) => ({ object: o as SourcedObject['object'], file: 'svc.yaml', index }));
  const model = buildModel(srcs);
  expect(model.problems).toEqual([]);
  new ServiceSync(lb.maps).reconcile(buildServiceTable(model, { nodeName: NODE }));
  servers = await Promise.all(backends.map((p) => Server.start(lab, p, '::', [8080])));
});

afterAll(async () => {
  for (const s of servers) await s.stop();
  sm?.close();
  lb?.close();
  await lab?.destroy();
});

describe('sockmap: through a ClusterIP', () => {
  it('pod -> ClusterIP -> pod: the client socket is paired with the backend socket it was connected to', async () => {
    const before = sm.stats();
    const res = await runClient(lab, client, {
      targets: [{ host: '10.96.0.10', port: 80 }, { host: 'fd00:96::10', port: 80 }], conns: 100, concurrency: 50, min: 1, max: 1 << 20,
    });
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(100);
    const d = delta(before, sm.stats());
    expect(d.inserts).toBe(200);
    expect(d.redirectedBytes).toBeGreaterThanOrEqual(0.9 * (res.sent + res.received));
  });
});
