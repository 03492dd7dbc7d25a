/**
 * The TCP metrics' resolver (agent/metrics/tcp.ts ModelResolver) kept up to date from the
 * model's change sets gives what a rebuild from the whole model gives, and what a plain scan
 * of the model gives, over a random sequence of Pod, Service and EndpointSlice changes
 * (shared addresses included: two pods of one address, a backend of two Services).
 */
import { describe, expect, it } from 'vitest';
import { ModelBuilder } from '../../model/model.js';
import type { K8sObject, SourcedObject } from '../../k8s/types.js';
import { ModelResolver, type ResolverModel, type TcpResolver } from '../../agent/metrics/tcp.js';
import { serviceHost, workloadOf } from '../../model/workload.js';
import { mulberry32 } from '../../bench/waypoint/fuzz-inputs.js';

const NS = ['a', 'b'];
const podIp = (i: number): string => `10.1.0.${i}`;
const vip = (i: number): string => `10.96.0.${i}`;

/** A plain scan of the model, with the resolver's rule for an address claimed twice: the smallest key's. */
function scan(model: ResolverModel): TcpResolver {
  const pick = <V>(cands: Array<[string, V]>): V | undefined => cands.sort((x, y) => (x[0] < y[0] ? -1 : 1))[0]?.[1];
  return {
    workload: (ip) => pick([...model.pods.entries()].filter(([, p]) => !p.hostNetwork && p.phase !== 'Succeeded' && p.phase !== 'Failed' && p.podIPs.includes(ip)).map(([k, p]) => [k, workloadOf(p)])),
    service: (ip, port) => pick([...model.services.entries()].filter(([, s]) => s.clusterIPs.includes(ip) && s.ports.some((p) => p.protocol === 'TCP' && p.port === port)).map(([k, s]) => [k, serviceHost(s.namespace, s.name)])),
    serviceOfEndpoint: (ip, port) => pick([...model.services.entries()].filter(([k]) => (model.slicesByService.get(k) ?? [])
      .some((sl) => [...sl.endpoints].some((e) => e.address === ip) && sl.ports.some((p) => p.protocol === 'TCP' && p.port === port))).map(([k, s]) => [k, serviceHost(s.namespace, s.name)])),
  };
}

describe('TCP metrics resolver, incremental', () => {
  it('equals a rebuild and a plain scan after every change of a random sequence', () => {
    const rand = mulberry32(14);
    const int = (n: number): number => Math.floor(rand() * n);
    const live = new Map<string, SourcedObject>();
    const builder = new ModelBuilder();
    let incremental: ModelResolver | undefined;
    const src = (object: Record<string, unknown>): SourcedObject => ({ object: object as unknown as K8sObject, file: 'random.yaml', index: 0 });

    const randomObject = (): SourcedObject => {
      const ns = NS[int(NS.length)]!;
      switch (int(3)) {
        case 0: {
          const name = `p${int(12)}`;
          const phase = ['Running', 'Running', 'Pending', 'Succeeded'][int(4)];
          return src({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns, labels: { app: `app${int(3)}`, 'pod-template-hash': 'h1' } },
            spec: { nodeName: 'n1', ...(int(8) === 0 ? { hostNetwork: true } : {}) }, status: { phase, podIP: podIp(int(10)), podIPs: [{ ip: podIp(int(10)) }] } });
        }
        case 1: {
          const name = `s${int(6)}`;
          return src({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns },
            spec: { clusterIP: vip(int(30)), ports: [{ name: 'http', port: 80 + int(2), protocol: int(5) === 0 ? 'UDP' : 'TCP' }] } });
        }
        default: {
          const svc = `s${int(6)}`;
          return src({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `${svc}-${int(2)}`, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
            addressType: 'IPv4', ports: [{ name: 'http', port: 8080 + int(2), protocol: 'TCP' }],
            endpoints: Array.from({ length: 1 + int(3) }, () => ({ addresses: [podIp(int(10))], conditions: { ready: true } })) });
        }
      }
    };
    const keyOf = (s: SourcedObject): string => `${s.object.kind}/${s.object.metadata.namespace}/${s.object.metadata.name}`;

    let compared = 0;
    for (let step = 0; step < 400; step++) {
      const added: SourcedObject[] = [];
      const removed: SourcedObject[] = [];
      for (let n = 1 + int(3); n > 0; n--) {
        const o = randomObject();
        const k = keyOf(o);
        const old = live.get(k);
        if (old && removed.includes(old)) continue;
        if (old) removed.push(old);
        if (old && int(3) === 0) { live.delete(k); continue; } // a removal
        if (added.some((a) => keyOf(a) === k)) continue;
        added.push(o);
        live.set(k, o);
      }
      const change = builder.apply({ added, removed });
      const model = change.model;
      if (!incremental) incremental = new ModelResolver(model, workloadOf, serviceHost);
      incremental.update({ pods: change.pods, services: change.services });
      // Built after a few changes (as the agent's, at its first question), then incremental.
      if (step === 20) incremental.workload('');
      if (step < 20) continue;
      expect(incremental.isBuilt).toBe(true);
      const rebuilt = new ModelResolver(model, workloadOf, serviceHost);
      const plain = scan(model);
      for (let i = 0; i < 10; i++) {
        expect(incremental.workload(podIp(i)), `step ${step} workload ${podIp(i)}`).toEqual(rebuilt.workload(podIp(i)));
        expect(incremental.workload(podIp(i))).toEqual(plain.workload(podIp(i)));
        for (const port of [8080, 8081]) {
          expect(incremental.serviceOfEndpoint(podIp(i), port), `step ${step} endpoint ${podIp(i)}:${port}`).toBe(rebuilt.serviceOfEndpoint(podIp(i), port));
          expect(incremental.serviceOfEndpoint(podIp(i), port)).toBe(plain.serviceOfEndpoint(podIp(i), port));
        }
      }
      for (let i = 0; i < 30; i++) {
        for (const port of [80, 81]) {
          expect(incremental.service(vip(i), port), `step ${step} vip ${vip(i)}:${port}`).toBe(rebuilt.service(vip(i), port));
          expect(incremental.service(vip(i), port)).toBe(plain.service(vip(i), port));
        }
      }
      compared++;
    }
    expect(compared).toBe(380);
    // The sequence did exercise what it is meant to: shared addresses resolved.
    const model = builder.apply({ added: [], removed: [] }).model;
    expect(model.pods.size).toBeGreaterThan(3);
    expect(model.services.size).toBeGreaterThan(3);
  });

  it('a change before the first question costs nothing; undefined (everything) drops the indexes until asked again', () => {
    const builder = new ModelBuilder();
    const change = builder.apply({ added: [{ object: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.9', ports: [{ port: 80 }] } } as unknown as K8sObject, file: 'f', index: 0 }], removed: [] });
    const r = new ModelResolver(change.model, workloadOf, serviceHost);
    r.update({ pods: change.pods, services: change.services });
    expect(r.isBuilt).toBe(false);
    expect(r.service('10.96.0.9', 80)).toBe(serviceHost('shop', 'web'));
    expect(r.isBuilt).toBe(true);
    r.update(undefined);
    expect(r.isBuilt).toBe(false);
    expect(r.service('10.96.0.9', 80)).toBe(serviceHost('shop', 'web'));
  });
});
