/** The elected agent's status merge and the waypoint controller's drift check, without an API server. */
import { describe, expect, it } from 'vitest';
import { mergeRouteParents, withTransitionTimes } from '../../agent/cluster/status-writer.js';
import { covers } from '../../agent/cluster/waypoints.js';
import { microTime } from '../../agent/cluster/lease.js';
import { mayAffectStatus, statusPathsOf } from '../../agent/cluster/controller.js';
import { slimObject } from '../../k8s/kinds.js';
import type { K8sObject, SourcedObject } from '../../k8s/types.js';

const ref = { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'shop', name: 'edge', sectionName: undefined, port: undefined };
const accepted = (status: 'True' | 'False') => ({ type: 'Accepted', status, reason: status === 'True' ? 'Accepted' : 'NoMatchingParent', message: '', observedGeneration: 2 });

describe('status merge', () => {
  it('keeps other controllers\' parents, replaces kernway\'s, and drops kernway\'s stale ones', () => {
    const theirs = { parentRef: { name: 'theirs' }, controllerName: 'example.com/x', conditions: [] };
    const staleOurs = { parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'shop', name: 'old' }, controllerName: 'kernway.io/gateway-controller', conditions: [] };
    const out = mergeRouteParents([theirs, staleOurs], [{ parentRef: ref, controllerName: 'kernway.io/gateway-controller', conditions: [accepted('True')] }], 'T1');
    expect(out).toHaveLength(2);
    expect(out[0]).toBe(theirs);
    expect(out[1]).toEqual({ parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', namespace: 'shop', name: 'edge' }, controllerName: 'kernway.io/gateway-controller', conditions: [{ ...accepted('True'), lastTransitionTime: 'T1' }] });
    expect(mergeRouteParents([theirs, staleOurs], [], 'T1')).toEqual([theirs]);
  });

  it('keeps lastTransitionTime while a condition\'s status is unchanged, and moves it when it changes', () => {
    const before = [{ ...accepted('True'), lastTransitionTime: 'T0' }];
    expect(withTransitionTimes([accepted('True')], before, 'T1')[0]!.lastTransitionTime).toBe('T0');
    expect(withTransitionTimes([accepted('False')], before, 'T1')[0]!.lastTransitionTime).toBe('T1');
    expect(withTransitionTimes([accepted('True')], undefined, 'T1')[0]!.lastTransitionTime).toBe('T1');
  });

  it('finds kernway\'s previous entry for a parentRef the API server filled in (defaults spelled out)', () => {
    const was = { parentRef: { name: 'edge', namespace: 'shop' }, controllerName: 'kernway.io/gateway-controller', conditions: [{ ...accepted('True'), lastTransitionTime: 'T0' }] };
    const out = mergeRouteParents([was], [{ parentRef: ref, controllerName: 'kernway.io/gateway-controller', conditions: [accepted('True')] }], 'T1');
    expect(out[0]!.conditions[0].lastTransitionTime).toBe('T0');
  });
});

describe('waypoint drift check (covers)', () => {
  it('accepts what the API server adds, refuses a changed or missing managed field', () => {
    const want = { replicas: 1, template: { spec: { containers: [{ name: 'waypoint', args: ['waypoint'] }] } } };
    expect(covers({ replicas: 1, strategy: {}, template: { spec: { dnsPolicy: 'ClusterFirst', containers: [{ name: 'waypoint', args: ['waypoint'], imagePullPolicy: 'IfNotPresent' }] } } }, want)).toBe(true);
    expect(covers({ replicas: 0, template: { spec: { containers: [{ name: 'waypoint', args: ['waypoint'] }] } } }, want)).toBe(false);
    expect(covers({ replicas: 1, template: { spec: { containers: [{ name: 'waypoint', args: ['waypoint', '--x'] }] } } }, want)).toBe(false);
    expect(covers({ replicas: 1 }, want)).toBe(false);
  });
});

describe('Lease MicroTime', () => {
  it('has microseconds, as the API server expects', () => {
    expect(microTime(Date.parse('2026-12-05T06:00:00.123Z'))).toBe('2026-12-05T06:00:00.123000Z');
  });
});

describe('which changes can affect what the elected agent writes (mayAffectStatus)', () => {
  // As the sources deliver them: stubs (slimObject), the object's JSON dropped.
  const stub = (o: Record<string, unknown>): SourcedObject => {
    const src = { object: o as unknown as K8sObject, file: 'f', index: 0 };
    return { ...src, object: slimObject(src) };
  };
  const pod = (name: string, labels: Record<string, string>) => stub({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', labels },
    spec: { nodeName: 'n1' }, status: { phase: 'Running', podIP: '10.1.0.5', podIPs: [{ ip: '10.1.0.5' }] } });
  const slice = stub({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4', ports: [{ port: 8080 }], endpoints: [{ addresses: ['10.1.0.5'] }] });
  const service = stub({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.5', ports: [{ port: 80 }] } });
  const route = stub({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'shop' }, spec: { parentRefs: [{ name: 'edge' }] } });

  it('EndpointSlices and pods other than waypoints\' cannot; Services, routes and waypoint pods can (added or deleted)', () => {
    expect(mayAffectStatus({ upserted: [slice, pod('app-1', { app: 'web' })], deleted: [slice] })).toBe(false);
    expect(mayAffectStatus({ upserted: [], deleted: [] })).toBe(false);
    expect(mayAffectStatus({ upserted: [slice, service], deleted: [] })).toBe(true);
    expect(mayAffectStatus({ upserted: [route], deleted: [] })).toBe(true);
    expect(mayAffectStatus({ upserted: [], deleted: [route] })).toBe(true);
    const waypoint = pod('waypoint-abc', { 'gateway.networking.k8s.io/gateway-name': 'waypoint' });
    expect(mayAffectStatus({ upserted: [waypoint], deleted: [] })).toBe(true);
    expect(mayAffectStatus({ upserted: [slice], deleted: [waypoint] })).toBe(true);
  });

  it('the objects of a batch the status writer reads again: those whose status it writes, by their API path', () => {
    const gateway = stub({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'shop' }, spec: { gatewayClassName: 'kernway', listeners: [] } });
    const gatewayClass = stub({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'kernway' }, spec: { controllerName: 'kernway.io/gateway-controller' } });
    expect(statusPathsOf({ upserted: [slice, service, route, pod('app-1', {}), gateway, gatewayClass] })).toEqual([
      '/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/r',
      '/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/edge',
      '/apis/gateway.networking.k8s.io/v1/gatewayclasses/kernway',
    ]);
    expect(statusPathsOf({ upserted: [slice, service] })).toEqual([]);
  });
});
