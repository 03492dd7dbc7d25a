/**
 * Building the model from a set of sourced objects: per-object parsing (memoised), then
 * the checks that need more than one object (an EndpointSlice whose Service is missing,
 * a cluster IP used by two Services, the same object twice).
 *
 * Those cross-object problems are reported and the object concerned is left out (or, for
 * a Service without a cluster IP, kept but unreachable); they never reject a whole file.
 */
import { refOf } from './check.js';
import { parseObject } from './objects.js';
import {
  CLUSTER_IP_CONFLICT, DUPLICATE_OBJECT, SERVICE_NAME_LABEL, SERVICE_NOT_FOUND, SERVICE_NO_CLUSTER_IP,
  type EndpointSlice, type Model, type Namespace, type Pod, type Problem, type Service, type SourcedObject,
} from './types.js';

export function buildModel(objects: readonly SourcedObject[]): Model {
  const problems: Problem[] = [];
  const services = new Map<string, Service>();
  const slices = new Map<string, { slice: EndpointSlice; src: SourcedObject }>();
  const pods = new Map<string, Pod>();
  const namespaces = new Map<string, Namespace>();
  const vipOwner = new Map<string, Service>();

  const duplicate = (src: SourcedObject, ref: string, first: { origin: { file: string; index: number } }): void => {
    problems.push({ code: DUPLICATE_OBJECT, file: src.file, object: ref, field: 'metadata.name',
      message: `metadata.name: ${ref} is also defined in ${first.origin.file} (document ${first.origin.index}); that one is used` });
  };

  for (const src of objects) {
    const parsed = parseObject(src);
    for (const p of parsed.problems) problems.push(p);
    const m = parsed.model;
    if (!m) continue;
    switch (m.kind) {
      case 'Service': {
        const s = m.value;
        const first = services.get(s.key);
        if (first) { duplicate(src, `Service ${s.key}`, first); break; }
        let conflict = false;
        for (const [i, ip] of s.clusterIPs.entries()) {
          const owner = vipOwner.get(ip);
          if (owner) {
            const field = s.clusterIPs.length > 1 || i > 0 ? `spec.clusterIPs[${i}]` : 'spec.clusterIP';
            problems.push({ code: CLUSTER_IP_CONFLICT, file: src.file, object: `Service ${s.key}`, field,
              message: `${field}: ${ip} is already the cluster IP of Service ${owner.key} (${owner.origin.file}); this Service is ignored` });
            conflict = true;
          }
        }
        if (conflict) break;
        for (const ip of s.clusterIPs) vipOwner.set(ip, s);
        if (s.clusterIPs.length === 0 && !s.headless && s.type !== 'ExternalName') {
          problems.push({ code: SERVICE_NO_CLUSTER_IP, file: src.file, object: `Service ${s.key}`, field: 'spec.clusterIP',
            message: 'spec.clusterIP: not set, so the Service has no address to balance; without an API server to allocate one, set spec.clusterIP (or "None" for a headless Service)' });
        }
        services.set(s.key, s);
        break;
      }
      case 'EndpointSlice': {
        const first = slices.get(m.value.key);
        if (first) { duplicate(src, `EndpointSlice ${m.value.key}`, first.slice); break; }
        slices.set(m.value.key, { slice: m.value, src });
        break;
      }
      case 'Pod': {
        const first = pods.get(m.value.key);
        if (first) { duplicate(src, `Pod ${m.value.key}`, first); break; }
        pods.set(m.value.key, m.value);
        break;
      }
      case 'Namespace': {
        const first = namespaces.get(m.value.name);
        if (first) { duplicate(src, `Namespace ${m.value.name}`, first); break; }
        namespaces.set(m.value.name, m.value);
        break;
      }
    }
  }

  const slicesByService = new Map<string, EndpointSlice[]>();
  for (const { slice, src } of slices.values()) {
    const svcKey = `${slice.namespace}/${slice.serviceName}`;
    if (!services.has(svcKey)) {
      const field = `metadata.labels[${JSON.stringify(SERVICE_NAME_LABEL)}]`;
      problems.push({ code: SERVICE_NOT_FOUND, file: src.file, object: refOf(src.object, slice.namespace), field,
        message: `${field}: Service ${svcKey} is not defined (in any manifest); the endpoints of this EndpointSlice are not used` });
      continue;
    }
    let list = slicesByService.get(svcKey);
    if (!list) slicesByService.set(svcKey, (list = []));
    list.push(slice);
  }
  for (const list of slicesByService.values()) if (list.length > 1) list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  return { services, slicesByService, pods, namespaces, problems };
}

