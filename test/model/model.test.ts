/** Cross-object checks of buildModel: reported with file, object and field; the object left out, never the file. */
import { describe, expect, it } from 'vitest';
import { buildModel, ModelBuilder } from '../../model/model.js';
import { buildServiceTable, ServiceTableBuilder } from '../../model/service-table.js';
import type { SourcedObject } from '../../k8s/types.js';
import type { Model } from '../../model/types.js';
import { service, slice, src } from './fixtures.js';

describe('buildModel', () => {
  it('an EndpointSlice for a missing Service is reported naming file, object and label field, and is not used', () => {
    const m = buildModel([src(service('web'), 'svc.yaml'), src(slice('api-1', 'api', ['10.0.0.1']), 'slices/api.yaml'), src(slice('web-1', 'web', ['10.0.0.2']), 'slices/web.yaml')]);
    expect(m.problems).toEqual([{
      code: 'KW_SERVICE_NOT_FOUND', file: 'slices/api.yaml', object: 'EndpointSlice default/api-1',
      field: 'metadata.labels["kubernetes.io/service-name"]',
      message: 'metadata.labels["kubernetes.io/service-name"]: Service default/api is not defined (in any manifest); the endpoints of this EndpointSlice are not used',
    }]);
    expect([...m.services.keys()]).toEqual(['default/web']);
  });

  it('a cluster IP used by two Services: the second is reported and left out', () => {
    const m = buildModel([src(service('a', { ip: '10.96.0.1' }), 'a.yaml'), src(service('b', { ip: '10.96.0.1' }), 'b.yaml')]);
    expect(m.problems).toHaveLength(1);
    expect(m.problems[0]).toMatchObject({ code: 'KW_CLUSTER_IP_CONFLICT', file: 'b.yaml', object: 'Service default/b', field: 'spec.clusterIP' });
    expect(m.problems[0]!.message).toMatch(/already the cluster IP of Service default\/a \(a\.yaml\)/);
    expect([...m.services.keys()]).toEqual(['default/a']);
  });

  it('a Service without a cluster IP is reported (nothing allocates one in standalone mode) but kept', () => {
    const m = buildModel([src(service('web', { ip: '' }), 'web.yaml')]);
    expect(m.problems).toMatchObject([{ code: 'KW_SERVICE_NO_CLUSTER_IP', file: 'web.yaml', object: 'Service default/web', field: 'spec.clusterIP' }]);
    expect(m.services.has('default/web')).toBe(true);
  });

  it('a mistyped kind in an apiVersion kernway reads is reported with a hint; other kinds and groups stay silent', () => {
    const typo = { ...service('web'), kind: 'Servicee' };
    const lower = { ...service('api'), kind: 'service' };
    const route = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HttpRoute', metadata: { name: 'r', namespace: 'ns' } };
    const own = { apiVersion: 'kernway.io/v1alpha1', kind: 'Frobnicator', metadata: { name: 'f', namespace: 'ns' } };
    const silent = [
      { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' } },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg' } },
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'g' } },
      { apiVersion: 'gateway.networking.k8s.io/v1alpha2', kind: 'TCPRoute', metadata: { name: 't' } },
      { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n' } },
      { apiVersion: 'example.com/v1', kind: 'Servicee', metadata: { name: 'x' } },
    ];
    const m = buildModel([src(typo, 'web.yaml'), src(lower, 'api.yaml'), src(route, 'r.yaml'), src(own, 'own.yaml'), ...silent.map((o) => src(o, 'other.yaml'))]);
    expect(m.problems).toHaveLength(4);
    expect(m.problems).toMatchObject([
      { code: 'KW_MANIFEST_UNKNOWN_KIND', file: 'web.yaml', object: 'Servicee default/web', field: 'kind' },
      { code: 'KW_MANIFEST_UNKNOWN_KIND', file: 'api.yaml', field: 'kind' },
      { code: 'KW_MANIFEST_UNKNOWN_KIND', file: 'r.yaml', object: 'HttpRoute ns/r' },
      { code: 'KW_MANIFEST_UNKNOWN_KIND', file: 'own.yaml' },
    ]);
    expect(m.problems[0]!.message).toMatch(/^document \d+: kind "Servicee" is not a kind kernway reads in v1 \(it reads Namespace, Service, Pod\); did you mean Service\?/);
    expect(m.problems[1]!.message).toMatch(/did you mean Service\?/);
    expect(m.problems[2]!.message).toMatch(/did you mean HTTPRoute\?/);
    expect(m.problems[3]!.message).not.toMatch(/did you mean/);
    expect(m.services.size).toBe(0);
  });

  it('the same object twice: the first is used, the second reported', () => {
    const m = buildModel([src(service('web', { ip: '10.96.0.1' }), 'a.yaml'), src(service('web', { ip: '10.96.0.2' }), 'b.yaml')]);
    expect(m.problems).toMatchObject([{ code: 'KW_DUPLICATE_OBJECT', file: 'b.yaml', object: 'Service default/web', field: 'metadata.name' }]);
    expect(m.services.get('default/web')?.clusterIPs).toEqual(['10.96.0.1']);
  });

  it('objects that fail validation are reported and left out (for sources that did not validate)', () => {
    const m = buildModel([src(service('web', { ports: [{ port: 0 }] }), 'web.yaml'), src(service('ok', { ip: '10.96.0.2' }), 'ok.yaml')]);
    expect(m.problems).toMatchObject([{ code: 'KW_INVALID_FIELD', file: 'web.yaml', field: 'spec.ports[0].port' }]);
    expect([...m.services.keys()]).toEqual(['default/ok']);
  });

  it('groups slices by Service, sorted by slice name, and keeps pods and namespaces', () => {
    const m = buildModel([
      src(slice('web-b', 'web', ['10.0.0.2'])), src(service('web')), src(slice('web-a', 'web', ['10.0.0.1'])),
      src({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'shop' }, status: { podIP: '10.0.0.1' } }),
      src({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } }),
    ]);
    expect(m.problems).toEqual([]);
    expect(m.slicesByService.get('default/web')?.map((s) => s.name)).toEqual(['web-a', 'web-b']);
    expect(m.pods.get('shop/p')?.podIPs).toEqual(['10.0.0.1']);
    expect(m.namespaces.has('shop')).toBe(true);
  });
});

/** The model as plain data, to compare an incrementally built model with a full build. */
function plain(m: Model): unknown {
  const sortP = (ps: unknown[]) => ps.map((p) => JSON.stringify(p)).sort();
  return {
    services: [...m.services.entries()].sort(),
    slices: [...m.slicesByService.entries()].sort().map(([k, l]) => [k, l.map((s) => s.key)]),
    pods: [...m.pods.keys()].sort(),
    namespaces: [...m.namespaces.keys()].sort(),
    problems: sortP(m.problems),
  };
}

describe('ModelBuilder (incremental)', () => {
  it('a Service whose cluster IP conflict goes away comes into use, and its slices with it', () => {
    const a = src(service('a', { ip: '10.96.0.1' }), 'a.yaml');
    const b = src(service('b', { ip: '10.96.0.1' }), 'b.yaml');
    const bSlice = src(slice('b-1', 'b', ['10.0.0.1']), 'b.yaml');
    const mb = new ModelBuilder();
    let ch = mb.reset([a, b, bSlice]);
    expect([...ch.model.services.keys()]).toEqual(['default/a']);
    expect(ch.model.problems.map((p) => p.code).sort()).toEqual(['KW_CLUSTER_IP_CONFLICT', 'KW_SERVICE_NOT_FOUND']);
    expect(ch.model.problems.find((p) => p.code === 'KW_SERVICE_NOT_FOUND')?.message).toMatch(/not in use/);
    ch = mb.apply({ added: [], removed: [a] });
    expect([...ch.model.services.keys()]).toEqual(['default/b']);
    expect([...ch.services].sort()).toEqual(['default/a', 'default/b']);
    expect(ch.model.problems).toEqual([]);
  });

  it('matches a full build after any sequence of changes (random, seeded)', () => {
    let seed = 42;
    const rand = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    const files = ['a.yaml', 'b.yaml', 'c.yaml'];
    const make = (): SourcedObject => {
      const file = files[rand(3)]!;
      const k = rand(6);
      switch (rand(4)) {
        case 0: return src(service(`s${k}`, { ip: `10.96.0.${rand(4) + 1}`, itp: rand(2) ? 'Local' : 'Cluster' }), file);
        case 1: return src(service(`s${k}`, { ip: rand(5) === 0 ? '' : `10.96.0.${rand(4) + 1}` }), file);
        case 2: return src(slice(`s${k}-${rand(2)}`, `s${rand(6)}`, [`10.0.0.${rand(5)}`, { ip: `10.0.1.${rand(5)}`, node: rand(2) ? 'n1' : 'n2', ready: rand(2) === 0 }]), file);
        default: return rand(2) ? src({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `p${k}` } }, file) : src({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns${k}` } }, file);
      }
    };
    const mb = new ModelBuilder();
    const tb = new ServiceTableBuilder({ nodeName: 'n1' });
    let current: SourcedObject[] = [];
    tb.update(mb.reset(current).model);
    for (let step = 0; step < 300; step++) {
      const removed: SourcedObject[] = [];
      const added: SourcedObject[] = [];
      for (let i = rand(3); i > 0 && current.length > 0; i--) removed.push(...current.splice(rand(current.length), 1));
      for (let i = rand(4); i > 0; i--) added.push(make());
      current = current.concat(added);
      const ch = mb.apply({ added, removed });
      const before = new Map(tb.table);
      const changed = tb.update(ch.model, ch.services);
      const full = buildModel(current);
      expect(plain(ch.model), `step ${step}`).toEqual(plain(full));
      const fullTable = buildServiceTable(full, { nodeName: 'n1' });
      expect([...tb.table.entries()].sort(), `step ${step}`).toEqual([...fullTable.entries()].sort());
      // Exactly the entries reported changed differ (by identity) from before.
      for (const k of new Set([...before.keys(), ...tb.table.keys()])) {
        expect(before.get(k) !== tb.table.get(k), `step ${step} ${k}`).toBe(changed.has(k));
      }
    }
  });
});

describe('the model\'s and the service table\'s maps (KeyedTables) against plain Maps', () => {
  it('hold what plain Maps fed the same changes hold, change after change, through growth and shrinkage', () => {
    let x = 7; // xorshift32: every bit varies (an LCG's low bits cycle)
    const rand = (n: number) => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x % n; };
    const mb = new ModelBuilder();
    const tb = new ServiceTableBuilder({ nodeName: 'n1' });
    const services = new Map<string, unknown>();
    const slices = new Map<string, unknown>();
    const table = new Map<string, unknown>();
    const live = new Map<string, SourcedObject>(); // by kind/name
    let peak = 0;
    const same = (step: number): void => {
      for (const [m, o] of [[mb.model.services, services], [mb.model.slicesByService, slices], [tb.table, table]] as const) {
        expect(m.size, `step ${step}`).toBe(o.size);
        const got = [...(m as ReadonlyMap<string, unknown>)].map(([k, v]) => [k, JSON.stringify(v)]).sort();
        expect(got, `step ${step}`).toEqual([...o].map(([k, v]) => [k, JSON.stringify(v)]).sort());
      }
    };
    for (let step = 0; step < 1500; step++) {
      // Up to ~600 Services: grow for 900 steps, then mostly remove.
      const removing = step > 900 ? 0.97 : 0.2;
      const added: SourcedObject[] = [];
      const removed: SourcedObject[] = [];
      for (let i = 0; i < 3; i++) {
        const k = rand(600);
        const isSlice = rand(2) === 0;
        const id = `${isSlice ? 'slice' : 'svc'}/${k}`;
        const old = live.get(id);
        if (old && !removed.includes(old)) { removed.push(old); live.delete(id); }
        if (rand(100) / 100 < removing) continue;
        const o = isSlice
          ? src(slice(`s${k}-${rand(2)}`, `s${k}`, [`10.0.${rand(3)}.${rand(200) + 1}`]), `f${k}.yaml`)
          : src(service(`s${k}`, { ip: `10.96.${rand(3)}.${k % 250 + 1}` }), `f${k}.yaml`); // some cluster IPs shared: conflicts
        if (isSlice && [...live.values(), ...added].some((x) => x.object.metadata.name === o.object.metadata.name)) continue;
        added.push(o);
        live.set(id, o);
      }
      const ch = mb.apply({ added, removed });
      for (const k of ch.services) {
        const svc = ch.model.services.get(k);
        if (svc) services.set(k, svc); else services.delete(k);
      }
      // Slices change with their Service's key in `services` (ModelChange.services names both).
      for (const k of ch.services) {
        const l = ch.model.slicesByService.get(k);
        if (l) slices.set(k, l); else slices.delete(k);
      }
      for (const k of tb.update(ch.model, ch.services)) {
        const e = tb.table.get(k);
        if (e) table.set(k, e); else table.delete(k);
      }
      peak = Math.max(peak, services.size);
      if (step % 50 === 0 || step > 1400) same(step);
    }
    same(1500);
    expect(peak).toBeGreaterThan(250); // grown well past a few slots
    expect(services.size).toBeLessThan(peak / 2); // and shrunk
  });
});

describe('Model.slicesByService', () => {
  it('reads as lists (get, iteration, forEach) whether a Service has one slice or several, after removals too', () => {
    const b = new ModelBuilder();
    const a1 = src(slice('a-1', 'a', ['10.0.0.1']), 'a1.yaml');
    const a2 = src(slice('a-2', 'a', ['10.0.0.2']), 'a2.yaml');
    const c1 = src(slice('c-1', 'c', ['10.0.0.3']), 'c1.yaml');
    b.apply({ added: [src(service('a'), 'a.yaml'), src(service('c', { ip: '10.96.0.20' }), 'c.yaml'), a1, a2, c1], removed: [] });
    const m = b.model.slicesByService;
    expect(m.get('default/a')?.map((s) => s.name)).toEqual(['a-1', 'a-2']);
    expect(m.get('default/c')?.map((s) => s.name)).toEqual(['c-1']);
    expect(m.get('default/none')).toBeUndefined();
    const viaEntries = Object.fromEntries([...m].map(([k, l]) => [k, l.map((s) => s.name)]));
    expect(viaEntries).toEqual({ 'default/a': ['a-1', 'a-2'], 'default/c': ['c-1'] });
    expect([...m.values()].map((l) => l.length).sort()).toEqual([1, 2]);
    const viaForEach: string[] = [];
    m.forEach((l, k) => viaForEach.push(`${k}=${l.length}`));
    expect(viaForEach.sort()).toEqual(['default/a=2', 'default/c=1']);
    b.apply({ added: [], removed: [a2] });
    expect(m.get('default/a')?.map((s) => s.name)).toEqual(['a-1']);
    expect(Array.isArray(m.get('default/a'))).toBe(true);
  });
});

describe('ModelBuilder: Services\' candidates kept by the model\'s own map', () => {
  it('a cluster IP conflict is resolved the same way, in use and out of use, back and forth', () => {
    const a = src(service('a', { ip: '10.96.0.1' }), 'a.yaml');
    const b = src(service('b', { ip: '10.96.0.1' }), 'b.yaml');
    const b2 = src(service('b', { ip: '10.96.0.2' }), 'b.yaml');
    const dupA = src(service('a', { ip: '10.96.0.3' }), 'z.yaml');
    const mb = new ModelBuilder();
    const conflicts = (): string[] => mb.model.problems.filter((p) => p.code === 'KW_CLUSTER_IP_CONFLICT').map((p) => p.object ?? '');
    mb.reset([b]);
    expect([...mb.model.services.keys()]).toEqual(['default/b']);
    // a comes first by origin: it owns the cluster IP, b goes out of use.
    let ch = mb.apply({ added: [a], removed: [] });
    expect([...ch.services].sort()).toEqual(['default/a', 'default/b']);
    expect([...mb.model.services.keys()]).toEqual(['default/a']);
    expect(conflicts()).toEqual(['Service default/b']);
    // A duplicate of a, later by origin: reported, a stays.
    mb.apply({ added: [dupA], removed: [] });
    expect(mb.model.services.get('default/a')?.clusterIPs).toEqual(['10.96.0.1']);
    expect(mb.model.problems.filter((p) => p.code === 'KW_DUPLICATE_OBJECT').map((p) => p.file)).toEqual(['z.yaml']);
    // b moves to another cluster IP: in use again.
    ch = mb.apply({ added: [b2], removed: [b] });
    expect([...ch.services]).toEqual(['default/b']);
    expect([...mb.model.services.keys()].sort()).toEqual(['default/a', 'default/b']);
    expect(conflicts()).toEqual([]);
    // a removed: its duplicate takes over.
    mb.apply({ added: [], removed: [a] });
    expect(mb.model.services.get('default/a')?.clusterIPs).toEqual(['10.96.0.3']);
    expect(mb.model.problems).toEqual([]);
    // Back: b's old address and a's first object; a owns 10.96.0.1 again.
    mb.apply({ added: [a, b], removed: [b2] });
    expect(mb.model.services.get('default/a')?.clusterIPs).toEqual(['10.96.0.1']);
    expect([...mb.model.services.keys()]).toEqual(['default/a']);
    expect(conflicts()).toEqual(['Service default/b']);
    // Every step agrees with a build from scratch.
    expect(plain(mb.model)).toEqual(plain(buildModel([dupA, a, b])));
  });
});

describe('ModelBuilder: EndpointSlices\' candidates kept by slicesByService when the name says the Service', () => {
  const held = (mb: ModelBuilder): number => (mb as unknown as { sliceCands: { one: Map<string, unknown> } }).sliceCands.one.size;
  it('holds only slices whose name does not say their Service; duplicates and relabelled slices resolve as from scratch', () => {
    const svcA = src(service('a', { ip: '10.96.0.1' }), 'a.yaml');
    const svcB = src(service('b', { ip: '10.96.0.2' }), 'b.yaml');
    const named = src(slice('a-x1y2z', 'a', ['10.0.0.1']), 'a.yaml'); // as the EndpointSlice controller names them
    const same = src(slice('b', 'b', ['10.0.0.2']), 'b.yaml'); // the Service's own name
    const other = src(slice('zzz', 'a', ['10.0.0.3']), 'c.yaml'); // says nothing
    const mb = new ModelBuilder();
    mb.reset([svcA, svcB, named, same, other]);
    expect(held(mb)).toBe(1);
    expect(mb.model.slicesByService.get('default/a')!.map((s) => s.name)).toEqual(['a-x1y2z', 'zzz']);
    // A duplicate of a-x1y2z labelled for b, later by origin: reported, the first stays in force.
    const dup = src(slice('a-x1y2z', 'b', ['10.0.0.9']), 'd.yaml');
    mb.apply({ added: [dup], removed: [] });
    expect(mb.model.problems.map((p) => [p.code, p.file])).toEqual([['KW_DUPLICATE_OBJECT', 'd.yaml']]);
    expect(mb.model.slicesByService.get('default/b')!.map((s) => s.name)).toEqual(['b']);
    // The first removed: the duplicate comes into force under b.
    mb.apply({ added: [], removed: [named] });
    expect(mb.model.slicesByService.get('default/b')!.map((s) => s.name).sort()).toEqual(['a-x1y2z', 'b']);
    expect(mb.model.problems).toEqual([]);
    expect(held(mb)).toBe(2); // a-x1y2z in force under b: its name does not say so
    // Relabelled back to a (a changed object: the old one removed, the new one added).
    const back = src(slice('a-x1y2z', 'a', ['10.0.0.4']), 'a.yaml');
    mb.apply({ added: [back], removed: [dup] });
    expect(held(mb)).toBe(1);
    expect(plain(mb.model)).toEqual(plain(buildModel([svcA, svcB, same, other, back])));
    mb.apply({ added: [], removed: [back, same, other] });
    expect(held(mb)).toBe(0);
    expect(mb.model.slicesByService.size).toBe(0);
  });
});
