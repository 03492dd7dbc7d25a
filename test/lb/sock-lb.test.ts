/**
 * The socket load balancer in the real kernel: programs attached to a lab cgroup, maps
 * written by the datapath (ServiceSync) from manifests, real sockets in lab pods.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, type Pod } from '../../lab/index.js';
import { run } from '../../lab/system.js';
import { buildModel } from '../../model/model.js';
import { buildServiceTable } from '../../model/service-table.js';
import type { SourcedObject } from '../../k8s/types.js';
import { ServiceSync } from '../../agent/datapath/service-sync.js';
import { loadSockLb, type SockLb } from '../../agent/datapath/sock-lb.js';
import { serviceObject, sliceObject, type EndpointSpec } from '../../agent/demo/manifests.js';
import { Client, startEcho, type Counts } from '../fixtures/lb-harness.js';

const NODE = 'node-a';
let lab: Lab;
let lb: SockLb;
let sync: ServiceSync;
let client: Client;
let pods: Pod[];
let objects: Record<string, Record<string, unknown>[]>;

/** Applies the current manifests (by name) to the maps, as the agent would. */
function apply(): ReturnType<ServiceSync['reconcile']> {
  const srcs: SourcedObject[] = Object.entries(objects).flatMap(([file, objs]) =>
    objs.map((o, index) => ({ object: o as SourcedObject['object'], file, index })));
  const model = buildModel(srcs);
  expect(model.problems).toEqual([]);
  return sync.reconcile(buildServiceTable(model, { nodeName: NODE }));
}

/** Client addresses on the client pod (sockets bind to them), routed back to it from the node. */
async function addClientAddresses(srcs: string[], route: string): Promise<void> {
  const c = lab.pod('c');
  await run('ip', ['-n', c.netns, '-batch', '-'], { input: srcs.map((s) => `addr add ${s}/32 dev lo`).join('\n') + '\n' });
  // Via the pod's address: one neighbour entry for all, not one per client address.
  await run('ip', ['-n', lab.nodeNs, 'route', 'replace', route, 'via', c.ipv4, 'dev', c.hostVeth]);
}

const eps = (list: Array<[Pod, number?]>, v6 = false): EndpointSpec[] =>
  list.map(([p]) => ({ ip: v6 ? p.ipv6 : p.ipv4, nodeName: NODE }));

/** A Service and its slice; ports http (TCP 80 -> 8080) and dns (UDP 53 -> 5353). */
function webService(name: string, vip: string, backends: Pod[], opts: { v6?: boolean; algorithm?: 'maglev'; affinity?: number; port2?: boolean } = {}) {
  return [
    serviceObject({
      name, clusterIPs: [vip], algorithm: opts.algorithm, affinityTimeoutSeconds: opts.affinity,
      ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'dns', port: 53, targetPort: 'dns', protocol: 'UDP' }],
    }),
    sliceObject({
      name: `${name}-1`, service: name, addressType: opts.v6 ? 'IPv6' : 'IPv4',
      ports: [{ name: 'http', port: 8080 }, { name: 'dns', port: 5353, protocol: 'UDP' }],
      endpoints: eps(backends.map((p) => [p]), opts.v6),
    }),
  ];
}

beforeAll(async () => {
  lab = await Lab.create({ tag: 'lb' });
  const c = await lab.addPod('c');
  pods = [await lab.addPod('b1'), await lab.addPod('b2'), await lab.addPod('b3')];
  await Promise.all(pods.flatMap((p) => [startEcho(lab, p, `${p.name}:8080`, 8080, 5353), startEcho(lab, p, `${p.name}:8081`, 8081, 5354)]));
  lb = await loadSockLb({ cgroupPath: lab.cgroupPath, bpffsDir: join(lab.bpffsDir, 'agent') });
  sync = new ServiceSync(lb.maps);
  client = new Client(lab, c);
  objects = {
    'web.yaml': webService('web', '10.96.0.10', pods),
    'web6.yaml': webService('web6', 'fd00:96::10', pods, { v6: true }),
    'empty.yaml': [serviceObject({ name: 'empty', clusterIPs: ['10.96.0.20'], ports: [{ name: 't', port: 80 }, { name: 'u', port: 81, protocol: 'UDP' }] })],
  };
  apply();
});

afterAll(async () => {
  client?.close();
  lb?.close();
  await lab?.destroy();
});

describe('socket load balancing in the kernel', () => {
  it('TCP to a ClusterIP reaches a backend; getpeername() shows the ClusterIP:port (IPv4 and IPv6)', async () => {
    for (const vip of ['10.96.0.10', 'fd00:96::10']) {
      const r = await client.send<{ remoteAddress: string; remotePort: number; greeting: string; error?: string }>({ op: 'peer', host: vip, port: 80 });
      expect(r.error).toBeUndefined();
      expect(r.greeting).toMatch(/^b[123]:8080$/);
      expect(r.remoteAddress).toBe(vip);
      expect(r.remotePort).toBe(80);
    }
  });

  it('UDP request/response to a ClusterIP, connected and unconnected: the reply comes from the ClusterIP:port (IPv4 and IPv6)', async () => {
    for (const vip of ['10.96.0.10', 'fd00:96::10']) {
      const r = await client.send<{ connected: { remoteAddress: string; remotePort: number; from: { address: string; port: number }; reply: string }; unconnected: { from: { address: string; port: number }; reply: string }; error?: string }>({ op: 'udp-peer', host: vip, port: 53 });
      expect(r.error).toBeUndefined();
      expect(r.connected.reply).toMatch(/^b[123]:8080 connected$/);
      expect(r.connected.remoteAddress).toBe(vip);
      expect(r.connected.remotePort).toBe(53);
      expect(r.connected.from).toEqual({ address: vip, port: 53 });
      expect(r.unconnected.reply).toMatch(/^b[123]:8080 unconnected$/);
      expect(r.unconnected.from).toEqual({ address: vip, port: 53 });
    }
  });

  it('spreads 3,000 connections over three equal backends, each within 5 points of its third', async () => {
    const r = await client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 3000, concurrency: 64 });
    expect(r.errors).toEqual({});
    expect(Object.keys(r.counts).sort()).toEqual(['b1:8080', 'b2:8080', 'b3:8080']);
    // "Within ±5%" read as ±5 points of the total: uniform random choices have a standard
    // deviation of 0.86 points here, so a relative ±5% (±1.7 points) would fail by chance.
    for (const n of Object.values(r.counts)) expect(Math.abs(n / 3000 - 1 / 3)).toBeLessThanOrEqual(0.05);
  });

  it('a Service without usable endpoint fails connect() with ECONNREFUSED at once (TCP and UDP)', async () => {
    const tcp = await client.send<{ results: Array<{ code: string; ms: number }> }>({ op: 'refused', host: '10.96.0.20', port: 80, n: 5 });
    for (const x of tcp.results) {
      expect(x.code).toBe('ECONNREFUSED');
      expect(x.ms).toBeLessThan(1000); // never a hang, even on a busy machine
    }
    // Typically well under a millisecond; the median keeps a descheduled client from failing it.
    const ms = tcp.results.map((x) => x.ms).sort((a, b) => a - b);
    expect(ms[2]!).toBeLessThan(10);
    const udp = await client.send<{ results: Array<{ code: string; ms: number }> }>({ op: 'refused', host: '10.96.0.20', port: 81, n: 2, proto: 'udp' });
    for (const x of udp.results) expect(x.code).toBe('ECONNREFUSED');
  });

  it('removing a backend: no new connection reaches it, a connection already open to it keeps working', async () => {
    // Hold connections until one lands on b2.
    let held = -1;
    for (let i = 0; i < 30 && held < 0; i++) {
      const r = await client.send<{ greeting: string }>({ op: 'hold', id: i, host: '10.96.0.10', port: 80 });
      if (r.greeting === 'b2:8080') held = i;
      else await client.send({ op: 'close', id: i });
    }
    expect(held).toBeGreaterThanOrEqual(0);
    objects['web.yaml'] = webService('web', '10.96.0.10', [pods[0]!, pods[2]!]);
    const res = apply();
    expect(res.changed).toBe(2); // the TCP and the UDP port of web
    const r = await client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 300 });
    expect(r.errors).toEqual({});
    expect(Object.keys(r.counts).sort()).toEqual(['b1:8080', 'b3:8080']);
    expect(await client.send({ op: 'ping', id: held, line: 'still there?' })).toEqual({ reply: 'b2:8080 still there?' });
    await client.send({ op: 'close', id: held });
    objects['web.yaml'] = webService('web', '10.96.0.10', pods);
    apply();
  });

  it('an update never shows a half-written service: connections during 100 switches all reach a backend', async () => {
    const a = webService('flip', '10.96.0.50', [pods[0]!, pods[1]!]);
    const b = webService('flip', '10.96.0.50', [pods[2]!]);
    objects['flip.yaml'] = a;
    apply();
    const load = client.send<Counts>({ op: 'tcp', host: '10.96.0.50', port: 80, n: 2000, concurrency: 16 });
    let flips = 0;
    let settled = false;
    void load.finally(() => { settled = true; });
    while (!settled && flips < 100) {
      objects['flip.yaml'] = flips % 2 === 0 ? b : a;
      apply();
      flips++;
      await new Promise((r) => setTimeout(r, 5));
    }
    const r = await load;
    expect(flips).toBeGreaterThan(10);
    expect(r.errors).toEqual({});
    expect(Object.values(r.counts).reduce((x, y) => x + y, 0)).toBe(2000);
    delete objects['flip.yaml'];
    apply();
  });

  it('Maglev: a client keeps its backend; removing one of 5 backends moves at most 25% of 1,000 clients', async () => {
    const srcs = Array.from({ length: 1000 }, (_, i) => `10.245.${Math.floor(i / 250)}.${(i % 250) + 1}`);
    await addClientAddresses(srcs, '10.245.0.0/22');
    const five: Array<[Pod, number]> = [[pods[0]!, 8080], [pods[0]!, 8081], [pods[1]!, 8080], [pods[1]!, 8081], [pods[2]!, 8080]];
    const maglev = (backends: Array<[Pod, number]>) => [
      serviceObject({ name: 'mag', clusterIPs: ['10.96.0.30'], algorithm: 'maglev', ports: [{ port: 80, targetPort: 8080 }] }),
      ...backends.map(([p, port], i) => sliceObject({ name: `mag-${i}`, service: 'mag', ports: [{ port }], endpoints: [{ ip: p.ipv4, nodeName: NODE }] })),
    ];
    objects['mag.yaml'] = maglev(five);
    apply();
    const first = await client.send<{ bySrc: Record<string, string> }>({ op: 'clients', proto: 'tcp', host: '10.96.0.30', port: 80, srcs });
    const again = await client.send<{ bySrc: Record<string, string> }>({ op: 'clients', proto: 'tcp', host: '10.96.0.30', port: 80, srcs });
    const names = new Set(Object.values(first.bySrc));
    expect([...names].sort()).toEqual(['b1:8080', 'b1:8081', 'b2:8080', 'b2:8081', 'b3:8080']);
    expect(again.bySrc).toEqual(first.bySrc);

    objects['mag.yaml'] = maglev(five.filter(([p, port]) => !(p === pods[1] && port === 8081)));
    apply();
    const after = await client.send<{ bySrc: Record<string, string> }>({ op: 'clients', proto: 'tcp', host: '10.96.0.30', port: 80, srcs });
    let moved = 0;
    for (const s of srcs) {
      expect(after.bySrc[s]).not.toBe('b2:8081');
      expect(after.bySrc[s]!.startsWith('!')).toBe(false);
      if (after.bySrc[s] !== first.bySrc[s]) moved++;
    }
    expect(moved / srcs.length).toBeLessThanOrEqual(0.25);
    // Those of the removed backend had to move: about a fifth.
    expect(moved / srcs.length).toBeGreaterThan(0.1);
    delete objects['mag.yaml'];
    apply();
  });

  it('ClientIP session affinity holds within its timeout and lapses after it', async () => {
    objects['aff.yaml'] = [
      serviceObject({ name: 'aff', clusterIPs: ['10.96.0.40'], affinityTimeoutSeconds: 2, ports: [{ port: 80, targetPort: 8080 }] }),
      sliceObject({ name: 'aff-1', service: 'aff', ports: [{ port: 8080 }], endpoints: eps(pods.map((p) => [p])) }),
    ];
    apply();
    // 30 clients: sockets bound to 30 source addresses of the client pod.
    const srcs = Array.from({ length: 30 }, (_, i) => `10.246.0.${i + 1}`);
    await addClientAddresses(srcs, '10.246.0.0/24');
    const round = () => client.send<{ bySrc: Record<string, string> }>({ op: 'clients', proto: 'tcp', host: '10.96.0.40', port: 80, srcs });
    const first = await round();
    for (let i = 0; i < 4; i++) expect((await round()).bySrc).toEqual(first.bySrc);
    // Without affinity, 30 clients x 5 rounds over 3 backends would never all stay put.
    // The pause is the subject: the 2 s affinity timeout must lapse (nothing to poll for).
    await new Promise((r) => setTimeout(r, 2300));
    const later = await round();
    const changed = srcs.filter((s) => later.bySrc[s] !== first.bySrc[s]).length;
    // Each client is balanced afresh: about 2/3 change backend (fewer than 30% has odds < 1e-4).
    expect(changed).toBeGreaterThanOrEqual(9);
    delete objects['aff.yaml'];
    apply();
  });

  it('a process outside the lab cgroup is not balanced', async () => {
    // The node namespace answers on the ClusterIP itself: only an unbalanced socket gets there.
    await run('ip', ['-n', lab.nodeNs, 'addr', 'add', '10.96.0.10/32', 'dev', 'lo']);
    await startEcho(lab, 'node', 'node-itself', 80, 53);
    const inside = new Client(lab, 'node');
    const outside = new Client(lab, 'node', { cgroup: false });
    try {
      const a = await inside.send<{ greeting: string }>({ op: 'peer', host: '10.96.0.10', port: 80 });
      expect(a.greeting).toMatch(/^b[123]:8080$/);
      const b = await outside.send<{ greeting: string }>({ op: 'peer', host: '10.96.0.10', port: 80 });
      expect(b.greeting).toBe('node-itself');
    } finally {
      inside.close();
      outside.close();
    }
  });

  it('a restarted datapath adopts the maps: nothing to write, traffic never stops, links swapped in place', async () => {
    const again = new ServiceSync(lb.maps);
    expect(again.size).toBe(sync.size);
    const srcs: SourcedObject[] = Object.entries(objects).flatMap(([file, objs]) => objs.map((o, index) => ({ object: o as SourcedObject['object'], file, index })));
    const r = again.reconcile(buildServiceTable(buildModel(srcs), { nodeName: NODE }));
    expect(r.writes + r.deletes).toBe(0);
    expect(r.created + r.changed + r.removed).toBe(0);
    // A second load over the same pins: maps reused, the pinned links updated, not re-created.
    const load = client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 500, concurrency: 8 });
    const second = await loadSockLb({ cgroupPath: lab.cgroupPath, bpffsDir: join(lab.bpffsDir, 'agent') });
    try {
      expect(second.reusedMaps).toBe(true);
      expect(second.createdLinks).toEqual([]);
      expect(second.updatedLinks.length).toBe(8);
      const r2 = await load;
      expect(r2.errors).toEqual({});
      const after = await client.send<{ greeting: string }>({ op: 'peer', host: '10.96.0.10', port: 80 });
      expect(after.greeting).toMatch(/^b[123]:8080$/);
    } finally {
      second.close();
    }
  });
});
