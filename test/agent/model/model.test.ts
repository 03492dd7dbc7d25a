/** Cross-object checks of buildModel: reported with file, object and field; the object left out, never the file. */
import { describe, expect, it } from 'vitest';
import { buildModel } from '../../../agent/model/model.js';
import { service, slice, src } from './fixtures.js';

describe('buildModel', () => {
  it('an EndpointSlice for a missing Service is reported naming file, object and label field, and is not used', () => {
    const m = buildModel([src(service('web'), 'svc.yaml'), src(slice('api-1', 'api', ['10.0.0.1']), 'slices/api.yaml'), src(slice('web-1', 'web', ['10.0.0.2']), 'slices/web.yaml')]);
    expect(m.problems).toEqual([{
      code: 'KW_SERVICE_NOT_FOUND', file: 'slices/api.yaml', object: 'EndpointSlice default/api-1',
      field: 'metadata.labels["kubernetes.io/service-name"]',
      message: 'metadata.labels["kubernetes.io/service-name"]: Service default/api is not defined (in any manifest); the endpoints of this EndpointSlice are not used',
    }]);
    expect([...m.slicesByService.keys()]).toEqual(['default/web']);
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
