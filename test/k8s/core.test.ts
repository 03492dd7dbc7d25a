/** Checking and normalising single objects: defaults, and errors that name file, object and field. */
import { describe, expect, it } from 'vitest';
import { KINDS, parseObject, slimObject, slimSourced, slimVersioned, stubKey, stubOf, validateObject } from '../../k8s/kinds.js';
import type { EndpointSlice, Problem, SourcedObject } from '../../k8s/types.js';
import { service, slice, src } from '../model/fixtures.js';

function problems(o: SourcedObject['object'], file = 'svc.yaml'): Problem[] {
  return validateObject(src(o, file));
}
function only(o: SourcedObject['object'], file = 'svc.yaml'): Problem {
  const ps = problems(o, file);
  expect(ps).toHaveLength(1);
  return ps[0]!;
}

describe('Service', () => {
  it('normalises with Kubernetes defaults', () => {
    const p = parseObject(src({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { clusterIP: '10.96.0.1', ports: [{ port: 80 }] } }, 'a.yaml'));
    expect(p.problems).toEqual([]);
    expect(p.object?.kind).toBe('Service');
    expect(p.object?.value).toMatchObject({
      namespace: 'default', name: 'web', key: 'default/web', type: 'ClusterIP', clusterIPs: ['10.96.0.1'], headless: false,
      ports: [{ name: '', port: 80, targetPort: 80, protocol: 'TCP' }],
      affinity: null, internalTrafficPolicy: 'Cluster', algorithm: 'random', origin: { file: 'a.yaml' },
    });
  });

  it('reads targetPort numbers given as strings, and names', () => {
    const p = parseObject(src(service('web', { ports: [{ name: 'a', port: 80, targetPort: '8080' }, { name: 'b', port: 81, targetPort: 'http-alt' }] })));
    expect(p.problems).toEqual([]);
    const ports = (p.object?.value as { ports: unknown[] }).ports;
    expect(ports).toEqual([{ name: 'a', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'b', port: 81, targetPort: 'http-alt', protocol: 'TCP' }]);
  });

  it('canonicalises IPv6 cluster IPs', () => {
    const p = parseObject(src(service('web', { ip: ['FD00:0:0::10', '10.96.0.10'] })));
    expect(p.problems).toEqual([]);
    expect((p.object?.value as { clusterIPs: string[] }).clusterIPs).toEqual(['fd00::10', '10.96.0.10']);
  });

  const badPorts: [string, unknown, RegExp][] = [
    ['zero', 0, /spec\.ports\[1\]\.port: must be an integer from 1 to 65535, got number 0/],
    ['too large', 70000, /spec\.ports\[1\]\.port: must be an integer from 1 to 65535, got number 70000/],
    ['a string', 'http', /spec\.ports\[1\]\.port: must be an integer from 1 to 65535, got "http"/],
    ['a fraction', 80.5, /spec\.ports\[1\]\.port: must be an integer/],
    ['missing', undefined, /spec\.ports\[1\]\.port: is required/],
  ];
  for (const [what, port, msg] of badPorts) {
    it(`a bad port (${what}) names file, object and field`, () => {
      const p = only(service('web', { ns: 'shop', ports: [{ name: 'ok', port: 80 }, { name: 'bad', port }] }), 'manifests/web.yaml');
      expect(p).toMatchObject({ code: 'KW_INVALID_FIELD', file: 'manifests/web.yaml', object: 'Service shop/web', field: 'spec.ports[1].port' });
      expect(p.message).toMatch(msg);
    });
  }

  const badFields: [string, SourcedObject['object'], string, RegExp][] = [
    ['bad targetPort number', service('web', { ports: [{ port: 80, targetPort: 0x10000 }] }), 'spec.ports[0].targetPort', /1 to 65535/],
    ['bad targetPort name', service('web', { ports: [{ port: 80, targetPort: 'Not_A_Name' }] }), 'spec.ports[0].targetPort', /port name/],
    ['bad protocol', service('web', { ports: [{ port: 80, protocol: 'ICMP' }] }), 'spec.ports[0].protocol', /"TCP", "UDP", "SCTP"/],
    ['unnamed port among several', service('web', { ports: [{ name: 'a', port: 80 }, { port: 81 }] }), 'spec.ports[1].name', /more than one port/],
    ['duplicate port name', service('web', { ports: [{ name: 'a', port: 80 }, { name: 'a', port: 81 }] }), 'spec.ports[1].name', /duplicate port name "a"/],
    ['duplicate port/protocol', service('web', { ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80 }] }), 'spec.ports[1].port', /duplicate port 80\/TCP/],
    ['no ports', service('web', { ports: [] }), 'spec.ports', /at least one port/],
    ['bad cluster IP', service('web', { ip: '10.96.0.300' }), 'spec.clusterIP', /IPv4 or IPv6 address/],
    ['clusterIPs[0] differs from clusterIP', service('web', { extra: { clusterIP: '10.96.0.1', clusterIPs: ['10.96.0.2'] } }), 'spec.clusterIPs[0]', /must equal spec.clusterIP/],
    ['two IPv4 cluster IPs', service('web', { ip: ['10.96.0.1', '10.96.0.2'] }), 'spec.clusterIPs[1]', /other IP family/],
    ['bad type', service('web', { type: 'Magic' }), 'spec.type', /"ClusterIP"/],
    ['affinity timeout 0', service('web', { affinity: 0 }), 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', /1 to 86400/],
    ['affinity timeout over a day', service('web', { affinity: 86401 }), 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', /1 to 86400/],
    ['bad sessionAffinity', { ...service('web'), spec: { clusterIP: '10.96.0.1', ports: [{ port: 80 }], sessionAffinity: 'Cookie' } }, 'spec.sessionAffinity', /"None", "ClientIP"/],
    ['bad internalTrafficPolicy', service('web', { itp: 'Node' }), 'spec.internalTrafficPolicy', /"Cluster", "Local"/],
    ['bad lb algorithm', service('web', { algorithm: 'round-robin' }), 'metadata.annotations["kernway.io/lb-algorithm"]', /"random", "maglev"/],
    ['bad name', service('Web_1'), 'metadata.name', /DNS-1035/],
    ['bad namespace', service('web', { ns: 'Shop' }), 'metadata.namespace', /DNS label/],
    ['missing spec', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' } }, 'spec', /is missing/],
    ['spec not a mapping', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: [1] }, 'spec', /must be a mapping/],
    ['label not a string', { ...service('web'), metadata: { name: 'web', labels: { app: 3 } } } as SourcedObject['object'], 'metadata.labels["app"]', /must be a string/],
  ];
  for (const [what, obj, field, msg] of badFields) {
    it(`rejects ${what} at ${field}`, () => {
      const ps = problems(obj);
      expect(ps.map((p) => p.field)).toContain(field);
      const p = ps.find((x) => x.field === field)!;
      expect(p.code).toBe('KW_INVALID_FIELD');
      expect(p.file).toBe('svc.yaml');
      expect(p.object).toMatch(/^Service /);
      expect(p.message.startsWith(`${field}: `)).toBe(true);
      expect(p.message).toMatch(msg);
    });
  }

  it('accepts headless Services without ports and ExternalName without cluster IP', () => {
    expect(problems(service('h', { ip: 'None', ports: [] }))).toEqual([]);
    expect(problems(service('e', { ip: '', type: 'ExternalName', ports: [], extra: { externalName: 'x.example.com' } }))).toEqual([]);
  });

  it('reports every problem of an object at once', () => {
    const ps = problems(service('web', { ports: [{ name: 'a', port: 0 }, { name: 'b', port: 81, protocol: 'XTP' }], itp: 'Nope' }));
    expect(ps.map((p) => p.field).sort()).toEqual(['spec.internalTrafficPolicy', 'spec.ports[0].port', 'spec.ports[1].protocol']);
  });
});

describe('EndpointSlice', () => {
  it('applies the condition defaults (ready, serving unset = true; terminating unset = false)', () => {
    const p = parseObject(src(slice('web-1', 'web', [{ ip: '10.0.0.1' }, { ip: '10.0.0.2', ready: false, terminating: true }])));
    expect(p.problems).toEqual([]);
    expect(p.object?.value).toMatchObject({
      key: 'default/web-1', serviceKey: 'default/web', addressType: 'IPv4',
      ports: [{ name: '', port: 8080, protocol: 'TCP' }],
    });
    expect(p.object?.value).not.toHaveProperty('serviceName'); // the Service's key alone (a string per slice less)
    expect([...(p.object?.value as EndpointSlice).endpoints]).toEqual([
      { address: '10.0.0.1', ready: true, serving: true, terminating: false, nodeName: undefined },
      { address: '10.0.0.2', ready: false, serving: true, terminating: true, nodeName: undefined },
    ]);
  });

  const bad: [string, SourcedObject['object'], string, RegExp][] = [
    ['missing service-name label', { ...slice('s', 'web', ['10.0.0.1']), metadata: { name: 's' } }, 'metadata.labels["kubernetes.io/service-name"]', /is missing/],
    ['missing addressType', { ...slice('s', 'web', ['10.0.0.1']), addressType: undefined }, 'addressType', /is missing/],
    ['bad address', slice('s', 'web', ['10.0.0.256']), 'endpoints[0].addresses[0]', /IPv4 address/],
    ['address of the wrong family', slice('s', 'web', ['fd00::1'], undefined, { addressType: 'IPv4' }), 'endpoints[0].addresses[0]', /addressType/],
    ['ready not a boolean', { ...slice('s', 'web', []), endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: 'yes' } }] }, 'endpoints[0].conditions.ready', /true or false/],
    ['no addresses', { ...slice('s', 'web', []), endpoints: [{ addresses: [] }] }, 'endpoints[0].addresses', /at least one/],
    ['bad port', slice('s', 'web', ['10.0.0.1'], [{ name: 'http', port: -1 }]), 'ports[0].port', /1 to 65535/],
    ['duplicate port name', slice('s', 'web', ['10.0.0.1'], [{ name: 'http', port: 1 }, { name: 'http', port: 2 }]), 'ports[1].name', /duplicate/],
  ];
  for (const [what, obj, field, msg] of bad) {
    it(`rejects ${what} at ${field}`, () => {
      const ps = problems(obj, 'slices.yaml');
      const p = ps.find((x) => x.field === field);
      expect(p, JSON.stringify(ps)).toBeDefined();
      expect(p).toMatchObject({ code: 'KW_INVALID_FIELD', file: 'slices.yaml', object: 'EndpointSlice default/s' });
      expect(p!.message).toMatch(msg);
    });
  }
});

describe('Pod and Namespace', () => {
  it('normalises a Pod', () => {
    const p = parseObject(src({
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-0', namespace: 'shop', uid: 'u1', labels: { app: 'web' } },
      spec: { nodeName: 'node-a', serviceAccountName: 'web' },
      status: { podIP: '10.0.0.1', podIPs: [{ ip: '10.0.0.1' }, { ip: 'fd00::0:1' }], phase: 'Running' },
    }));
    expect(p.problems).toEqual([]);
    expect(p.object?.value).toMatchObject({ key: 'shop/web-0', uid: 'u1', nodeName: 'node-a', serviceAccountName: 'web', podIPs: ['10.0.0.1', 'fd00::1'], phase: 'Running', hostNetwork: false, labels: { app: 'web' } });
  });

  it('defaults the service account and accepts a Pod without status', () => {
    const p = parseObject(src({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: {} }));
    expect(p.object?.value).toMatchObject({ serviceAccountName: 'default', podIPs: [] });
  });

  it('rejects a bad pod IP', () => {
    const p = only({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, status: { podIP: 'nope' } }, 'pods.yaml');
    expect(p).toMatchObject({ file: 'pods.yaml', object: 'Pod default/p', field: 'status.podIP' });
  });

  it('rejects names and namespaces of another type than string (found by bench/chaos), never coercing them', () => {
    for (const name of [12345, 3.5, true, ['web-0'], null]) {
      const p = only({ apiVersion: 'v1', kind: 'Pod', metadata: { name: name as unknown as string }, spec: {} }, 'pods.json');
      expect(p).toMatchObject({ file: 'pods.json', field: 'metadata.name' });
    }
    const ns = only({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 7 as unknown as string }, spec: {} }, 'pods.json');
    expect(ns).toMatchObject({ field: 'metadata.namespace' });
  });

  it('normalises a Namespace and rejects a namespaced one', () => {
    const ok = parseObject(src({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', annotations: { 'kernway.io/sockmap': 'off' } } }));
    expect(ok.object?.value).toMatchObject({ name: 'shop', annotations: { 'kernway.io/sockmap': 'off' } });
    const bad = only({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', namespace: 'x' } });
    expect(bad).toMatchObject({ object: 'Namespace shop', field: 'metadata.namespace' });
  });
});

describe('other kinds', () => {
  it('are not kernway\'s business: no object, no problem', () => {
    for (const o of [
      { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: 42 },
      { apiVersion: 'serving.knative.dev/v1', kind: 'Service', metadata: { name: 'k' } },
      { apiVersion: 'gateway.networking.k8s.io/v1alpha1', kind: 'HTTPRoute', metadata: { name: 'r' } },
    ]) {
      const p = parseObject(src(o));
      expect(p).toEqual({ object: undefined, problems: [] });
    }
  });
});

describe('memoisation', () => {
  it('returns the same model object for the same raw object', () => {
    const s = src(service('web'));
    expect(parseObject(s).object?.value).toBe(parseObject({ ...s }).object?.value);
    expect(parseObject(src(service('web'))).object?.value).not.toBe(parseObject(s).object?.value);
  });
});

describe('stubs (what a source keeps: slimObject, stubOf)', () => {
  it('stand for the parsed object: same slim value, name, namespace, and JSON as a raw object of that identity', () => {
    const raw = src(service('web-frontend-service', { ns: 'team-a' }));
    const value = parseObject(raw).object!.value;
    const stub = slimObject(raw);
    expect(stub.metadata).toEqual({ name: 'web-frontend-service', namespace: 'team-a' });
    expect(stub.metadata.name).toBe((value as { name: string }).name); // one string, not a copy per layer
    expect(JSON.parse(JSON.stringify(stub))).toEqual({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web-frontend-service', namespace: 'team-a' } });
    const again = { object: stub, file: 'other.yaml', index: 7 };
    expect(parseObject(again).object).toEqual({ kind: 'Service', value });
    expect(parseObject(again).object!.value).toBe(value);
    expect(validateObject(again)).toEqual([]);
  });

  it('keep the problems of an invalid object, and nothing for a kind not read; no namespace when the raw had none', () => {
    const bad = src(service('web', { ports: [{ port: 0 }] }));
    const stub = slimObject(bad);
    expect(validateObject({ object: stub, file: 'x', index: 0 }).map((p) => p.field)).toEqual(validateObject(bad).map((p) => p.field));
    expect(parseObject({ object: stub, file: 'x', index: 0 }).object).toBeUndefined();
    const cm = slimObject(src({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } }));
    expect(cm.metadata).toEqual({ name: 'c' });
    expect(parseObject({ object: cm, file: 'x', index: 0 })).toEqual({ object: undefined, problems: [] });
  });

  it('slimSourced: a stub that is its own sourced object (file, index, object: itself), with a plain stub\'s parse and JSON', () => {
    const raw = { ...src(service('web', { ns: 'team-a' })), file: 'a/svc.yaml', index: 3 };
    const value = parseObject(raw).object!.value;
    const loc = slimSourced(raw);
    expect(loc.object).toBe(loc);
    expect([loc.file, loc.index]).toEqual(['a/svc.yaml', 3]);
    expect(parseObject(loc).object!.value).toBe(value);
    expect(loc.object.metadata).toEqual({ name: 'web', namespace: 'team-a' });
    expect(JSON.parse(JSON.stringify(loc.object))).toEqual({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'team-a' } });
    const bad = slimSourced({ ...src(service('web', { ports: [{ port: 0 }] })), file: 'b.yaml', index: 0 });
    expect(validateObject(bad).map((p) => p.field)).toEqual(['spec.ports[0].port']);
  });

  it('stubOf maps to the value it was given', () => {
    const value = parseObject(src(service('api', { ns: 'b' }))).object!.value;
    const stub = stubOf('Service', 'api', 'b', value);
    expect(stub.apiVersion).toBe('v1');
    expect(stub.metadata).toEqual({ name: 'api', namespace: 'b' });
    expect(parseObject({ object: stub, file: 'f', index: 0 }).object!.value).toBe(value);
  });
});

describe('stubs: type and identity held once', () => {
  it('read apiVersion, kind, name and namespace as a raw object\'s, whether the slim value holds them or not, for every kind', () => {
    const route = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'team-a' }, spec: { parentRefs: [{ name: 'gw' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] } };
    const cases: Array<SourcedObject['object']> = [
      service('web', { ns: 'team-a' }),
      slice('web-abc', 'web', ['10.0.0.1']),
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a' } },
      route,
      service('bad', { ports: [{ port: 0 }] }), // problems: the stub keeps its identity itself
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', namespace: 'x' } }, // a kind not read
      { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }, // not in the registry
    ];
    for (const raw of cases) {
      const plain = JSON.parse(JSON.stringify(raw)) as { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };
      const { name, namespace } = plain.metadata; // a stub keeps the identity, not labels
      const want = { apiVersion: plain.apiVersion, kind: plain.kind, metadata: namespace === undefined ? { name } : { name, namespace } };
      for (const stub of [slimObject(src(raw)), slimSourced({ ...src(raw), file: 'f.yaml', index: 2 }).object, slimVersioned(src(raw), { file: 'l', index: 0 }, '7').object]) {
        expect([stub.apiVersion, stub.kind, stub.metadata]).toEqual([want.apiVersion, want.kind, want.metadata]);
        expect(JSON.parse(JSON.stringify(stub))).toEqual(want);
      }
    }
  });

  it('give their key (namespace/name, or the name) from the slim value for every kind of the registry, from the stub for others', () => {
    const gw = 'gateway.networking.k8s.io/v1';
    const valid: Array<SourcedObject['object']> = [
      service('web', { ns: 'team-a' }),
      slice('web-abc', 'web', ['10.0.0.1']),
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p-1', namespace: 'team-a' }, spec: { nodeName: 'n1' }, status: { podIP: '10.1.0.5' } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a' } },
      { apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'allow', namespace: 'team-a' }, spec: {} },
      { apiVersion: 'kernway.io/v1alpha1', kind: 'BackendTrafficPolicy', metadata: { name: 'btp', namespace: 'team-a' }, spec: { targetRefs: [{ group: '', kind: 'Service', name: 'web' }] } },
      { apiVersion: gw, kind: 'GatewayClass', metadata: { name: 'kernway' }, spec: { controllerName: 'kernway.io/gateway-controller' } },
      { apiVersion: gw, kind: 'Gateway', metadata: { name: 'gw', namespace: 'team-a' }, spec: { gatewayClassName: 'kernway', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } },
      { apiVersion: gw, kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'team-a' }, spec: { parentRefs: [{ name: 'gw' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] } },
      { apiVersion: 'gateway.networking.k8s.io/v1beta1', kind: 'ReferenceGrant', metadata: { name: 'g', namespace: 'team-a' },
        spec: { from: [{ group: gw.split('/')[0], kind: 'HTTPRoute', namespace: 'team-b' }], to: [{ group: '', kind: 'Service' }] } },
    ];
    expect(new Set(valid.map((o) => o.kind))).toEqual(new Set(KINDS.map((k) => k.kind)));
    const others: Array<SourcedObject['object']> = [
      service('bad', { ports: [{ port: 0 }] }), // problems
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', namespace: 'x' } }, // a kind not read
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'n' } },
    ];
    for (const raw of [...valid, ...others]) {
      const want = raw.metadata.namespace === undefined ? raw.metadata.name : `${raw.metadata.namespace}/${raw.metadata.name}`;
      const r = src(raw);
      if (valid.includes(raw)) expect(validateObject(r)).toEqual([]);
      for (const stub of [slimObject(src(raw)), slimSourced(src(raw)), slimVersioned(src(raw), { file: 'l', index: 0 }, 7)]) expect(stubKey(stub)).toBe(want);
    }
    expect(stubKey({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'raw' } })).toBeUndefined();
  });

  it('slimVersioned: stubs read from one place hold it through their class (no file or index field), each its own resourceVersion', () => {
    const at = { file: 'https://127.0.0.1:6443', index: 0 };
    const a = slimVersioned(src(service('a')), at, 11);
    const b = slimVersioned(src(service('b')), at, '12x');
    const c = slimVersioned(src(slice('c-1', 'c', ['10.0.0.1'])), at, 13);
    const elsewhere = slimVersioned(src(service('d')), { file: 'https://10.0.0.1:6443', index: 0 }, 14);
    for (const [stub, rv] of [[a, 11], [b, '12x'], [c, 13]] as const) {
      expect([stub.file, stub.index, stub.rv, stub.object]).toEqual([at.file, 0, rv, stub]);
      expect(Object.keys(stub)).toEqual(['rv']);
    }
    expect(Object.getPrototypeOf(a)).toBe(Object.getPrototypeOf(b));
    expect([elsewhere.file, elsewhere.index, elsewhere.rv]).toEqual(['https://10.0.0.1:6443', 0, 14]);
    expect(parseObject(a).object?.value).toMatchObject({ key: 'default/a' });
    expect(JSON.parse(JSON.stringify(a))).toEqual({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'a', namespace: 'default' } });
    // A kind not read, or a place of many: the place as fields.
    const other = slimVersioned(src({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'm', namespace: 'x' } }), at, 15);
    expect([other.file, other.index, other.rv]).toEqual([at.file, 0, 15]);
    expect(Object.keys(other)).toEqual(expect.arrayContaining(['file', 'index', 'rv']));
  });

  it('a stub\'s apiVersion or kind assigned becomes its own, others of its kind unchanged', () => {
    const a = slimObject(src(service('a')));
    const b = slimObject(src(service('b')));
    a.apiVersion = 'v2';
    expect(a.apiVersion).toBe('v2');
    expect(Object.keys(a)).toContain('apiVersion');
    expect(b.apiVersion).toBe('v1');
    expect(JSON.parse(JSON.stringify(a)).apiVersion).toBe('v2');
  });
});
