/** Shared helpers of the policy tests: objects from YAML, identities and pods by hand. */
import { parse } from 'yaml';
import type { Pod, SourcedObject } from '../../k8s/types.js';

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
