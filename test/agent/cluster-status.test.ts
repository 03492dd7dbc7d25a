/** The elected agent's status merge and the waypoint controller's drift check, without an API server. */
import { describe, expect, it } from 'vitest';
import { mergeRouteParents, withTransitionTimes } from '../../agent/cluster/status-writer.js';
import { covers } from '../../agent/cluster/waypoints.js';
import { microTime } from '../../agent/cluster/lease.js';

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
