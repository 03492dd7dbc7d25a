/**
 * kube-proxy's backend selection, as a table: each case is a set of objects, a node name,
 * and the expected service table (VIP:port/proto -> backends).
 */
import { describe, expect, it } from 'vitest';
import { buildModel } from '../../model/model.js';
import { buildServiceTable, ServiceTableBuilder, type ServiceTable } from '../../model/service-table.js';
import { service, slice, src } from './fixtures.js';
import type { SourcedObject } from '../../k8s/types.js';

function table(objects: SourcedObject['object'][], nodeName = 'node-a'): ServiceTable {
  return buildServiceTable(buildModel(objects.map((o) => src(o))), { nodeName });
}
/** The table as { key: ['ip:port', ...] }. */
function backends(t: ServiceTable): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, e] of t) out[k] = e.backends.map((b) => (b.ip.includes(':') ? `[${b.ip}]:${b.port}` : `${b.ip}:${b.port}`));
  return out;
}

interface Case { name: string; objects: SourcedObject['object'][]; node?: string; want: Record<string, string[]> }

const cases: Case[] = [
  {
    name: 'only ready endpoints are used',
    objects: [service('web'), slice('web-1', 'web', [{ ip: '10.0.0.1', ready: true }, { ip: '10.0.0.2', ready: false }])],
    want: { '10.96.0.1:80/TCP': ['10.0.0.1:8080'] },
  },
  {
    name: 'ready unset means ready (Kubernetes default)',
    objects: [service('web'), slice('web-1', 'web', ['10.0.0.1', '10.0.0.2'])],
    want: { '10.96.0.1:80/TCP': ['10.0.0.1:8080', '10.0.0.2:8080'] },
  },
  {
    name: 'none ready: serving-and-terminating endpoints are the fallback',
    objects: [service('web'), slice('web-1', 'web', [
      { ip: '10.0.0.1', ready: false, serving: true, terminating: true },
      { ip: '10.0.0.2', ready: false, serving: false, terminating: true },
      { ip: '10.0.0.3', ready: false },
      { ip: '10.0.0.4', ready: false, terminating: true }, // serving unset means true (kube-proxy)
    ])],
    want: { '10.96.0.1:80/TCP': ['10.0.0.1:8080', '10.0.0.4:8080'] },
  },
  {
    name: 'some ready: terminating endpoints are not used',
    objects: [service('web'), slice('web-1', 'web', [{ ip: '10.0.0.1', ready: false, serving: true, terminating: true }, { ip: '10.0.0.2' }])],
    want: { '10.96.0.1:80/TCP': ['10.0.0.2:8080'] },
  },
  {
    name: 'no usable endpoint: the entry exists with no backend (connect is refused)',
    objects: [service('web'), slice('web-1', 'web', [{ ip: '10.0.0.1', ready: false }])],
    want: { '10.96.0.1:80/TCP': [] },
  },
  {
    name: 'no EndpointSlice at all: the entry exists with no backend',
    objects: [service('web')],
    want: { '10.96.0.1:80/TCP': [] },
  },
  {
    name: 'internalTrafficPolicy Cluster: endpoints of every node',
    objects: [service('web'), slice('web-1', 'web', [{ ip: '10.0.0.1', node: 'node-a' }, { ip: '10.0.0.2', node: 'node-b' }])],
    want: { '10.96.0.1:80/TCP': ['10.0.0.1:8080', '10.0.0.2:8080'] },
  },
  {
    name: 'internalTrafficPolicy Local: only this node\'s endpoints',
    objects: [service('web', { itp: 'Local' }), slice('web-1', 'web', [{ ip: '10.0.0.1', node: 'node-a' }, { ip: '10.0.0.2', node: 'node-b' }, { ip: '10.0.0.3' }])],
    want: { '10.96.0.1:80/TCP': ['10.0.0.1:8080'] },
  },
  {
    name: 'internalTrafficPolicy Local: none on this node means no backend, even with remote ready ones',
    objects: [service('web', { itp: 'Local' }), slice('web-1', 'web', [{ ip: '10.0.0.2', node: 'node-b' }])],
    want: { '10.96.0.1:80/TCP': [] },
  },
  {
    name: 'internalTrafficPolicy Local: the terminating fallback is decided among local endpoints',
    objects: [service('web', { itp: 'Local' }), slice('web-1', 'web', [
      { ip: '10.0.0.1', node: 'node-a', ready: false, serving: true, terminating: true },
      { ip: '10.0.0.2', node: 'node-b' },
    ])],
    want: { '10.96.0.1:80/TCP': ['10.0.0.1:8080'] },
  },
  {
    name: 'internalTrafficPolicy Local on another node name',
    node: 'node-b',
    objects: [service('web', { itp: 'Local' }), slice('web-1', 'web', [{ ip: '10.0.0.1', node: 'node-a' }, { ip: '10.0.0.2', node: 'node-b' }])],
    want: { '10.96.0.1:80/TCP': ['10.0.0.2:8080'] },
  },
  {
    name: 'named targetPort resolves through each slice\'s ports (different numbers per slice)',
    objects: [
      service('web', { ports: [{ name: 'http', port: 80, targetPort: 'web' }] }),
      slice('web-1', 'web', ['10.0.0.1'], [{ name: 'http', port: 8080 }]),
      slice('web-2', 'web', ['10.0.0.2'], [{ name: 'http', port: 9090 }]),
    ],
    want: { '10.96.0.1:80/TCP': ['10.0.0.1:8080', '10.0.0.2:9090'] },
  },
  {
    name: 'several ports: each Service port matched to the slice port of its name',
    objects: [
      service('dns', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }, { name: 'metrics', port: 9153, targetPort: 'metrics' }] }),
      slice('dns-1', 'dns', ['10.0.0.1', '10.0.0.2'], [{ name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'dns-tcp', port: 5353, protocol: 'TCP' }, { name: 'metrics', port: 9154 }]),
    ],
    want: {
      '10.96.0.1:53/UDP': ['10.0.0.1:5353', '10.0.0.2:5353'],
      '10.96.0.1:53/TCP': ['10.0.0.1:5353', '10.0.0.2:5353'],
      '10.96.0.1:9153/TCP': ['10.0.0.1:9154', '10.0.0.2:9154'],
    },
  },
  {
    name: 'a slice port matches by name and protocol: a TCP port does not serve a UDP Service port',
    objects: [service('dns', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }), slice('dns-1', 'dns', ['10.0.0.1'], [{ name: 'dns', port: 53, protocol: 'TCP' }])],
    want: { '10.96.0.1:53/UDP': [] },
  },
  {
    name: 'a slice port without a number ("all ports") is skipped',
    objects: [service('web'), slice('web-1', 'web', ['10.0.0.1'], [{ name: '' }])],
    want: { '10.96.0.1:80/TCP': [] },
  },
  {
    name: 'SCTP ports are carried',
    objects: [service('s', { ports: [{ port: 3868, protocol: 'SCTP' }] }), slice('s-1', 's', ['10.0.0.1'], [{ port: 3868, protocol: 'SCTP' }])],
    want: { '10.96.0.1:3868/SCTP': ['10.0.0.1:3868'] },
  },
  {
    name: 'headless and ExternalName Services have no entry',
    objects: [
      service('headless', { ip: 'None' }), slice('headless-1', 'headless', ['10.0.0.1']),
      service('ext', { ip: '10.96.0.7', type: 'ExternalName', extra: { externalName: 'example.com' } }), slice('ext-1', 'ext', ['10.0.0.2']),
    ],
    want: {},
  },
  {
    name: 'NodePort and LoadBalancer Services are balanced on their cluster IP',
    objects: [
      service('np', { ip: '10.96.0.2', type: 'NodePort' }), slice('np-1', 'np', ['10.0.0.1']),
      service('lb', { ip: '10.96.0.3', type: 'LoadBalancer' }), slice('lb-1', 'lb', ['10.0.0.2']),
    ],
    want: { '10.96.0.2:80/TCP': ['10.0.0.1:8080'], '10.96.0.3:80/TCP': ['10.0.0.2:8080'] },
  },
  {
    name: 'dual-stack: each cluster IP gets the endpoints of its own family',
    objects: [
      service('web', { ip: ['10.96.0.5', 'FD00::0005'] }),
      slice('web-v4', 'web', ['10.0.0.1']),
      slice('web-v6', 'web', ['fd00:10::1', 'fd00:10:0::2']),
    ],
    want: { '10.96.0.5:80/TCP': ['10.0.0.1:8080'], '[fd00::5]:80/TCP': ['[fd00:10::1]:8080', '[fd00:10::2]:8080'] },
  },
  {
    name: 'the same endpoint in two slices is used once',
    objects: [service('web'), slice('web-1', 'web', ['10.0.0.1', '10.0.0.2']), slice('web-2', 'web', ['10.0.0.2', '10.0.0.3'])],
    want: { '10.96.0.1:80/TCP': ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080'] },
  },
  {
    name: 'the same address twice in one slice is used once',
    objects: [service('web'), slice('web-1', 'web', ['10.0.0.1', '10.0.0.2', '10.0.0.1'])],
    want: { '10.96.0.1:80/TCP': ['10.0.0.1:8080', '10.0.0.2:8080'] },
  },
  {
    name: 'a terminating endpoint in one slice and ready ones in another: only the ready ones',
    objects: [service('web'), slice('web-1', 'web', [{ ip: '10.0.0.1', ready: false, serving: true, terminating: true }]), slice('web-2', 'web', ['10.0.0.2'])],
    want: { '10.96.0.1:80/TCP': ['10.0.0.2:8080'] },
  },
  {
    name: 'slices belong to the Service of their own namespace',
    objects: [
      service('web', { ns: 'a', ip: '10.96.0.1' }), service('web', { ns: 'b', ip: '10.96.0.2' }),
      slice('web-1', 'web', ['10.0.0.1'], undefined, { ns: 'a' }), slice('web-1', 'web', ['10.0.0.2'], undefined, { ns: 'b' }),
    ],
    want: { '10.96.0.1:80/TCP': ['10.0.0.1:8080'], '10.96.0.2:80/TCP': ['10.0.0.2:8080'] },
  },
  {
    name: 'FQDN slices are ignored',
    objects: [service('web'), { ...slice('web-1', 'web', []), addressType: 'FQDN', endpoints: [{ addresses: ['db.example.com'] }] }],
    want: { '10.96.0.1:80/TCP': [] },
  },
];

describe('service table: kube-proxy semantics', () => {
  for (const c of cases) {
    it(c.name, () => {
      expect(backends(table(c.objects, c.node))).toEqual(c.want);
    });
  }
});

describe('service table: entry fields', () => {
  it('carries algorithm, affinity, service name, port name and node names', () => {
    const t = table([
      service('web', { ports: [{ name: 'http', port: 80, targetPort: 8080 }], algorithm: 'maglev', affinity: 60 }),
      slice('web-1', 'web', [{ ip: '10.0.0.1', node: 'node-b' }], [{ name: 'http', port: 8080 }]),
      service('api', { ip: '10.96.0.9', affinity: 'default' }),
      service('plain', { ip: '10.96.0.10' }),
    ]);
    const web = t.get('10.96.0.1:80/TCP')!;
    expect({ ...web, backends: [...web.backends] }).toEqual({
      key: '10.96.0.1:80/TCP', vip: '10.96.0.1', family: 'IPv4', port: 80, proto: 'TCP',
      backends: [{ ip: '10.0.0.1', port: 8080, nodeName: 'node-b' }],
      algorithm: 'maglev', affinity: { timeoutSeconds: 60 }, service: 'default/web', portName: 'http', terminatingFallback: false,
    });
    expect(t.get('10.96.0.9:80/TCP')?.affinity).toEqual({ timeoutSeconds: 10800 });
    expect(t.get('10.96.0.10:80/TCP')?.affinity).toBeNull();
    expect(t.get('10.96.0.10:80/TCP')?.algorithm).toBe('random');
  });

  it('marks the serving-and-terminating fallback', () => {
    const t = table([service('web'), slice('web-1', 'web', [{ ip: '10.0.0.1', ready: false, serving: true, terminating: true }])]);
    expect(t.get('10.96.0.1:80/TCP')?.terminatingFallback).toBe(true);
  });

  it('rejects a missing node name', () => {
    expect(() => buildServiceTable(buildModel([]), { nodeName: '' })).toThrow(/nodeName/);
  });
});

describe('service table: incremental rebuild', () => {
  it('keeps the entry objects of Services whose objects did not change, recomputes the others', () => {
    const a = src(service('a', { ip: '10.96.0.1' }));
    const aSlice = src(slice('a-1', 'a', ['10.0.0.1']));
    const b = src(service('b', { ip: '10.96.0.2' }));
    const bSlice1 = src(slice('b-1', 'b', ['10.0.0.2']));
    const tb = new ServiceTableBuilder({ nodeName: 'n' });
    tb.update(buildModel([a, aSlice, b, bSlice1]));
    const t1 = new Map(tb.table);
    // b's slice changes (a new raw object, as a re-read file gives); a's objects are the same.
    // A model built anew from them: the builder sees the same Service and slices for a.
    const bSlice2 = src(slice('b-1', 'b', ['10.0.0.3']));
    const changed = tb.update(buildModel([a, aSlice, b, bSlice2]));
    const t2 = tb.table;
    expect([...changed]).toEqual(['10.96.0.2:80/TCP']);
    expect(t2.get('10.96.0.1:80/TCP')).toBe(t1.get('10.96.0.1:80/TCP'));
    expect(t2.get('10.96.0.2:80/TCP')).not.toBe(t1.get('10.96.0.2:80/TCP'));
    expect([...t2.get('10.96.0.2:80/TCP')!.backends]).toEqual([{ ip: '10.0.0.3', port: 8080 }]);
    // Another node name: computed anew, equal.
    const t3 = buildServiceTable(buildModel([a, aSlice, b, bSlice2]), { nodeName: 'other' });
    expect(t3.get('10.96.0.1:80/TCP')).not.toBe(t2.get('10.96.0.1:80/TCP'));
    expect(t3.get('10.96.0.1:80/TCP')).toEqual(t2.get('10.96.0.1:80/TCP'));
  });

  it('a Service named in an update but unchanged, or changed in a way its entries do not show, keeps its entry objects; one entry or several', () => {
    const a = src(service('a', { ip: '10.96.0.1' }));
    const aSlice = src(slice('a-1', 'a', ['10.0.0.1']));
    const two = src(service('two', { ip: '10.96.0.2', ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'dns', port: 53, protocol: 'UDP' }] }));
    const twoSlice = src(slice('two-1', 'two', ['10.0.0.2'], [{ name: 'http', port: 8080 }, { name: 'dns', port: 53, protocol: 'UDP' }]));
    const tb = new ServiceTableBuilder({ nodeName: 'n' });
    expect(tb.update(buildModel([a, aSlice, two, twoSlice])).size).toBe(3);
    const t1 = new Map(tb.table);
    expect(tb.update(buildModel([a, aSlice, two, twoSlice]), ['default/a', 'default/two']).size).toBe(0);
    // a: a new raw object (a re-read file), another lb algorithm set to its default: a new Service object, equal entries.
    const a2 = src(service('a', { ip: '10.96.0.1', algorithm: 'random' }));
    // two: the UDP port's endpoint changes, the TCP one's does not.
    const twoSlice2 = src(slice('two-1', 'two', ['10.0.0.2'], [{ name: 'http', port: 8080 }, { name: 'dns', port: 5353, protocol: 'UDP' }]));
    const changed = tb.update(buildModel([a2, aSlice, two, twoSlice2]), ['default/a', 'default/two']);
    expect([...changed]).toEqual(['10.96.0.2:53/UDP']);
    for (const k of ['10.96.0.1:80/TCP', '10.96.0.2:80/TCP']) expect(tb.table.get(k)).toBe(t1.get(k));
    expect([...tb.table.get('10.96.0.2:53/UDP')!.backends]).toEqual([{ ip: '10.0.0.2', port: 5353 }]);
    // Removed: its entries leave the table.
    expect([...tb.update(buildModel([aSlice, two, twoSlice2]), ['default/a'])]).toEqual(['10.96.0.1:80/TCP']);
    expect([...tb.table.keys()].sort()).toEqual(['10.96.0.2:53/UDP', '10.96.0.2:80/TCP']);
  });

  it('a slice removed from a Service is seen', () => {
    const a = src(service('a'));
    const s1 = src(slice('a-1', 'a', ['10.0.0.1']));
    const s2 = src(slice('a-2', 'a', ['10.0.0.2']));
    expect(backends(buildServiceTable(buildModel([a, s1, s2]), { nodeName: 'n' }))['10.96.0.1:80/TCP']).toEqual(['10.0.0.1:8080', '10.0.0.2:8080']);
    expect(backends(buildServiceTable(buildModel([a, s2]), { nodeName: 'n' }))['10.96.0.1:80/TCP']).toEqual(['10.0.0.2:8080']);
  });
});

describe('service table: a Service\'s entries found without a map per Service', () => {
  const keysOf = (tb: ServiceTableBuilder): string[] => [...tb.table.keys()].sort();
  it('a Service that changes cluster IP, ports or is removed leaves no entry behind, also after its entries were kept', () => {
    const tb = new ServiceTableBuilder({ nodeName: 'n' });
    const p = (port: number) => ({ name: `p${port}`, port, targetPort: port });
    const slc = src(slice('a-1', 'a', ['10.0.0.1'], [{ name: 'p80', port: 80 }, { name: 'p81', port: 81 }, { name: 'p82', port: 82 }]));
    const v1 = src(service('a', { ip: '10.96.0.1', ports: [p(80), p(81)] }));
    tb.update(buildModel([v1, slc]));
    const e80 = tb.table.get('10.96.0.1:80/TCP');
    // v2: one port more; the two entries that did not change stay the same objects.
    const v2 = src(service('a', { ip: '10.96.0.1', ports: [p(80), p(81), p(82)] }));
    expect([...tb.update(buildModel([v2, slc]), ['default/a'])]).toEqual(['10.96.0.1:82/TCP']);
    expect(tb.table.get('10.96.0.1:80/TCP')).toBe(e80);
    // v3: two ports fewer.
    const v3 = src(service('a', { ip: '10.96.0.1', ports: [p(80)] }));
    expect([...tb.update(buildModel([v3, slc]), ['default/a'])].sort()).toEqual(['10.96.0.1:81/TCP', '10.96.0.1:82/TCP']);
    expect(keysOf(tb)).toEqual(['10.96.0.1:80/TCP']);
    // v4: another cluster IP: none of its keys holds an entry of it any more.
    const v4 = src(service('a', { ip: '10.96.0.9', ports: [p(80)] }));
    expect([...tb.update(buildModel([v4, slc]), ['default/a'])].sort()).toEqual(['10.96.0.1:80/TCP', '10.96.0.9:80/TCP']);
    expect(keysOf(tb)).toEqual(['10.96.0.9:80/TCP']);
    // Removed.
    expect([...tb.update(buildModel([slc]), ['default/a'])]).toEqual(['10.96.0.9:80/TCP']);
    expect(tb.table.size).toBe(0);
  });

  it('a cluster IP passed from one Service to another in one update is the new owner\'s, whichever is recomputed first', () => {
    for (const order of [['default/a', 'default/b'], ['default/b', 'default/a']]) {
      const a = src(service('a', { ip: '10.96.0.1' }), 'a.yaml');
      const b = src(service('b', { ip: '10.96.0.1' }), 'b.yaml');
      const aSlice = src(slice('a-1', 'a', ['10.0.0.1']));
      const bSlice = src(slice('b-1', 'b', ['10.0.0.2']));
      const tb = new ServiceTableBuilder({ nodeName: 'n' });
      tb.update(buildModel([a, b, aSlice, bSlice]));
      expect(tb.table.get('10.96.0.1:80/TCP')?.service).toBe('default/a');
      expect([...tb.update(buildModel([b, aSlice, bSlice]), order)]).toEqual(['10.96.0.1:80/TCP']);
      expect(tb.table.get('10.96.0.1:80/TCP')?.service).toBe('default/b');
      expect([...tb.table.get('10.96.0.1:80/TCP')!.backends]).toEqual([{ ip: '10.0.0.2', port: 8080 }]);
      expect(tb.table.size).toBe(1);
      // A whole update afterwards finds nothing to do.
      expect(tb.update(buildModel([b, aSlice, bSlice])).size).toBe(0);
    }
  });
});
