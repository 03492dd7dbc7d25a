/**
 * agent/datapath/sockmap.ts as the agent uses it: local pods from the model, the pod
 * map kept in sync, the switch, errors at the door, and the counters on /metrics.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from '../../lab/index.js';
import { buildModel } from '../../model/model.js';
import type { SourcedObject } from '../../k8s/types.js';
import {
  SM_STATS, Sockmap, encodeLocalPods, localPodsFromModel, registerSockmapMetrics,
} from '../../agent/datapath/sockmap.js';
import { addon } from '../../native/index.js';
import { AgentMetrics } from '../../agent/metrics/registry.js';
import { OBJECT } from './harness.js';

function pod(name: string, ns: string, ips: string[], extra: { node?: string; hostNetwork?: boolean; annotations?: Record<string, string> } = {}) {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: ns, ...(extra.annotations ? { annotations: extra.annotations } : {}) },
    spec: { nodeName: extra.node ?? 'node-a', hostNetwork: extra.hostNetwork ?? false, containers: [{ name: 'c', image: 'x' }] },
    status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) },
  };
}

describe('sockmap module: local pods', () => {
  it('takes the running pods of this node, not host-network ones, off or on (targets) by pod or namespace annotation', () => {
    const objects = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'quiet', annotations: { 'kernway.io/sockmap': 'off' } } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'fast', annotations: { 'kernway.io/sockmap': 'On' } } },
      pod('web', 'default', ['10.244.0.5', 'fd00:244::5']),
      pod('db', 'default', ['10.244.0.6'], { annotations: { 'kernway.io/sockmap': 'off' } }),
      pod('batch', 'quiet', ['10.244.0.7']),
      pod('api', 'default', ['10.244.0.10'], { annotations: { 'kernway.io/sockmap': 'on' } }),
      pod('cache', 'fast', ['10.244.0.11']),
      pod('legacy', 'fast', ['10.244.0.12'], { annotations: { 'kernway.io/sockmap': 'off' } }),
      pod('lone', 'quiet', ['10.244.0.13'], { annotations: { 'kernway.io/sockmap': 'on' } }),
      pod('wp', 'default', ['10.244.0.14']),
      pod('far', 'default', ['10.244.1.9'], { node: 'node-b' }),
      pod('host', 'default', ['192.168.1.10'], { hostNetwork: true }),
      { ...pod('done', 'default', ['10.244.0.8']), status: { phase: 'Succeeded', podIP: '10.244.0.8', podIPs: [{ ip: '10.244.0.8' }] } },
    ];
    const model = buildModel(objects.map((o, index) => ({ object: o as SourcedObject['object'], file: 'm.yaml', index })));
    expect(model.problems).toEqual([]);
    // 10.244.0.14 stands for a kernway waypoint's pod (the agent passes their addresses).
    const pods = localPodsFromModel(model, 'node-a', new Set(['10.244.0.14', '10.244.0.7'])).sort((x, y) => x.ip.localeCompare(y.ip));
    expect(pods).toEqual([
      { ip: '10.244.0.10', sockmapOff: false, target: true },
      { ip: '10.244.0.11', sockmapOff: false, target: true },
      { ip: '10.244.0.12', sockmapOff: true, target: false },
      { ip: '10.244.0.13', sockmapOff: true, target: false },
      { ip: '10.244.0.14', sockmapOff: false, target: true },
      { ip: '10.244.0.5', sockmapOff: false, target: false },
      { ip: '10.244.0.6', sockmapOff: true, target: false },
      { ip: '10.244.0.7', sockmapOff: true, target: false },
      { ip: 'fd00:244::5', sockmapOff: false, target: false },
    ]);
  });

  it('encodes addresses as the kernel keys them and names a bad entry', () => {
    const m = encodeLocalPods([{ ip: '10.0.0.1' }, { ip: '10.0.0.1', sockmapOff: true }, { ip: 'fd00::1' }]);
    expect([...m.keys()]).toEqual(['00000000000000000000ffff0a000001', 'fd000000000000000000000000000001']);
    expect(m.get('00000000000000000000ffff0a000001')!.flags).toBe(1); // "off" wins over a duplicate
    expect(() => encodeLocalPods([{ ip: '10.0.0.1' }, { ip: 'nope' }])).toThrow(/pods\[1\]\.ip/);
  });
});

describe('sockmap module: loaded', () => {
  let lab: Lab;
  let sm: Sockmap;
  beforeAll(async () => {
    lab = await Lab.create({ tag: 'smmod' });
    sm = await Sockmap.load({ cgroupPath: lab.cgroupPath, bpffsDir: lab.bpffsDir, objectPath: OBJECT, enabled: false, capacities: { kw_sm_pods: 16 } });
  });
  afterAll(async () => {
    sm?.close();
    await lab?.destroy();
  });

  it('starts with the switch as asked, and flips it', () => {
    expect(sm.enabled).toBe(false);
    sm.setEnabled(true);
    expect(sm.enabled).toBe(true);
  });

  it('keeps kw_sm_pods equal to the list it is given', () => {
    expect(sm.setLocalPods([{ ip: '10.244.0.2' }, { ip: 'fd00:244::2' }, { ip: '10.244.0.3' }])).toEqual({ added: 3, changed: 0, removed: 0 });
    expect(sm.setLocalPods([{ ip: '10.244.0.2', sockmapOff: true }, { ip: 'fd00:244::2' }, { ip: '10.244.0.4' }])).toEqual({ added: 1, changed: 1, removed: 1 });
    expect(sm.localPods().sort((a, b) => a.ip.localeCompare(b.ip))).toEqual([
      { ip: '10.244.0.2', sockmapOff: true, target: false }, { ip: '10.244.0.4', sockmapOff: false, target: false }, { ip: 'fd00:244::2', sockmapOff: false, target: false },
    ]);
    expect(sm.setLocalPods([{ ip: '10.244.0.2', sockmapOff: true }, { ip: 'fd00:244::2' }, { ip: '10.244.0.4' }])).toEqual({ added: 0, changed: 0, removed: 0 });
    // Opting in is a flag of its own (KW_SM_POD_TARGET).
    expect(sm.setLocalPods([{ ip: '10.244.0.2', sockmapOff: true }, { ip: 'fd00:244::2', target: true }, { ip: '10.244.0.4' }])).toEqual({ added: 0, changed: 1, removed: 0 });
    expect(sm.localPods().find((p) => p.ip === 'fd00:244::2')).toEqual({ ip: 'fd00:244::2', sockmapOff: false, target: true });
  });

  it('follows a model, touching the map only when its local pods changed', () => {
    const objs = (off: boolean) => [pod('w', 'default', ['10.244.0.9'], off ? { annotations: { 'kernway.io/sockmap': 'off' } } : {})];
    const model = (off: boolean) => buildModel(objs(off).map((o, index) => ({ object: o as SourcedObject['object'], file: 'm.yaml', index })));
    expect(sm.syncFromModel(model(false), 'node-a')).toEqual({ added: 1, changed: 0, removed: 3 });
    expect(sm.syncFromModel(model(false), 'node-a')).toBeUndefined();
    expect(sm.syncFromModel(model(true), 'node-a')).toEqual({ added: 0, changed: 1, removed: 0 });
    expect(sm.localPods()).toEqual([{ ip: '10.244.0.9', sockmapOff: true, target: false }]);
    // A waypoint's address (the agent passes them) is a target unless its pod opted out.
    expect(sm.syncFromModel(model(false), 'node-a', new Set(['10.244.0.9']))).toEqual({ added: 0, changed: 1, removed: 0 });
    expect(sm.localPods()).toEqual([{ ip: '10.244.0.9', sockmapOff: false, target: true }]);
    expect(sm.syncFromModel(model(true), 'node-a', new Set(['10.244.0.9']))).toEqual({ added: 0, changed: 1, removed: 0 });
    expect(sm.localPods()).toEqual([{ ip: '10.244.0.9', sockmapOff: true, target: false }]);
  });

  it('says the pod map is full, naming the capacity to raise', () => {
    const many = Array.from({ length: 17 }, (_, i) => ({ ip: `10.244.2.${i + 1}` }));
    expect(() => sm.setLocalPods(many)).toThrow(/kw_sm_pods is full \(16 addresses\): raise capacities\.kw_sm_pods/);
  });

  it('refuses to resize a pinned map, and a cgroup that is not one', async () => {
    await expect(Sockmap.load({ cgroupPath: lab.cgroupPath, bpffsDir: lab.bpffsDir, objectPath: OBJECT, capacities: { kw_sm_hash: 99 } }))
      .rejects.toMatchObject({ code: 'KW_MAP_CAPACITY_CHANGED' });
    await expect(Sockmap.load({ cgroupPath: join(lab.cgroupPath, 'nope'), bpffsDir: lab.bpffsDir, objectPath: OBJECT }))
      .rejects.toMatchObject({ code: 'KW_BAD_CGROUP' });
    await expect(Sockmap.load({ cgroupPath: lab.cgroupPath, bpffsDir: lab.bpffsDir, objectPath: '/nonexistent/sockmap.bpf.o' }))
      .rejects.toMatchObject({ code: 'KW_BPF_OBJECT' });
    // A wrong capacity name is caught before anything is loaded.
    await expect(Sockmap.load({ cgroupPath: lab.cgroupPath, bpffsDir: lab.bpffsDir, objectPath: OBJECT, capacities: { kw_sm_sk: 5 } as never }))
      .rejects.toMatchObject({ code: 'KW_INVALID_ARGUMENT' });
  });

  it('sums the per-CPU counters at scrape time', async () => {
    // Write known per-CPU values into kw_sm_stats: CPU i holds (i + 1) * (index + 1).
    const ncpu = addon().numPossibleCpus();
    SM_STATS.forEach((_, idx) => {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(idx);
      const v = Buffer.alloc(8 * ncpu);
      for (let cpu = 0; cpu < ncpu; cpu++) v.writeBigUInt64LE(BigInt((cpu + 1) * (idx + 1)), 8 * cpu);
      sm.maps.kw_sm_stats.update(key, v);
    });
    const tri = (ncpu * (ncpu + 1)) / 2;
    const s = sm.stats();
    expect(s.redirectedMessages).toBe(tri);
    expect(s.redirectedBytes).toBe(2 * tri);
    expect(s.insertFull).toBe(6 * tri);

    const metrics = new AgentMetrics({ defaultMetrics: false });
    registerSockmapMetrics(metrics, () => ({ stats: sm.stats(), enabled: sm.enabled }));
    const text = await metrics.text();
    expect(text).toContain(`kernway_sockmap_redirected_messages_total ${tri}`);
    expect(text).toContain(`kernway_sockmap_redirected_bytes_total ${2 * tri}`);
    expect(text).toContain(`kernway_sockmap_passed_messages_total{reason="no_peer"} ${3 * tri}`);
    expect(text).toContain(`kernway_sockmap_passed_messages_total{reason="ordering"} ${4 * tri}`);
    expect(text).toContain(`kernway_sockmap_insert_failures_total{reason="full"} ${6 * tri}`);
    expect(text).toContain('kernway_sockmap_enabled 1');

    const st = sm.status();
    const pods = sm.localPods();
    expect(st).toMatchObject({ enabled: true, sockets: 0, capacity: 65536, localPods: pods.length, localPodsOff: pods.filter((p) => p.sockmapOff).length });
    expect(st.localPodsOff).toBe(1);
    expect(st.stats.redirectedBytes).toBe(2 * tri);
  });
});
