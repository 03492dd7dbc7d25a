/** Shared helpers of the policy tests: objects from YAML, identities and pods by hand. */
import { parse } from 'yaml';
import { parseObject } from '../../k8s/kinds.js';
import type { AuthorizationPolicy } from '../../k8s/policy-types.js';
import type { Pod, Problem, SourcedObject } from '../../k8s/types.js';

/** An AuthorizationPolicy through the kind registry: its slim form (undefined when invalid or another kind) and its problems. */
export function parsePolicy(src: SourcedObject): { policy: AuthorizationPolicy | undefined; problems: Problem[] } {
  const r = parseObject(src);
  return { policy: r.object?.kind === 'AuthorizationPolicy' ? r.object.value : undefined, problems: r.problems };
}

export function parseYaml(text: string, file = '/m/x.yaml', index = 0): SourcedObject {
  return { object: parse(text) as SourcedObject['object'], file, index };
}

let n = 0;
export function pod(ns: string, name: string, opts: { sa?: string; labels?: Record<string, string>; ips?: string[]; node?: string; phase?: string } = {}): Pod {
  n++;
  return Object.freeze({
    namespace: ns, name, key: `${ns}/${name}`, labels: opts.labels ?? {}, annotations: {}, serviceAccountName: opts.sa ?? 'default',
    hostNetwork: false, podIPs: opts.ips ?? [`10.0.${Math.floor(n / 250)}.${(n % 250) + 1}`], nodeName: opts.node ?? 'node-a',
    phase: opts.phase ?? 'Running', origin: { file: '/m/pods.yaml', index: n },
  });
}
