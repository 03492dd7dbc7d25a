/** What the Kubernetes API source keeps of a Pod (sources/kube-source.ts slimPod): this node's pods more than others. */
import { describe, expect, it } from 'vitest';
import { slimPod } from '../../sources/kube-source.js';
import type { K8sObject } from '../../k8s/types.js';

const pod = (node: string) => ({
  apiVersion: 'v1', kind: 'Pod',
  metadata: { name: 'web-7d9f-abcde', namespace: 'shop', uid: '3f1c2a4e-8b7d-4e6f-9a1b-2c3d4e5f6a7b', resourceVersion: '42', labels: { app: 'web', 'pod-template-hash': '7d9f' },
    annotations: { 'kernway.io/sockmap': 'on', 'kubectl.kubernetes.io/restartedAt': '2026-12-05T00:00:00Z' }, managedFields: [{ manager: 'kubectl' }] },
  spec: { nodeName: node, serviceAccountName: 'web', containers: [{ name: 'app', image: 'app:1' }] },
  status: { phase: 'Running', podIP: '10.1.0.5', podIPs: [{ ip: '10.1.0.5' }], conditions: [{ type: 'Ready', status: 'True' }] },
}) as unknown as K8sObject;

describe('slimPod', () => {
  it("this node's pods keep their uid and annotations; others only identity, addresses and kernway.io annotations", () => {
    const identity = { name: 'web-7d9f-abcde', namespace: 'shop', labels: { app: 'web', 'pod-template-hash': '7d9f' } };
    const spec = { serviceAccountName: 'web' };
    const status = { phase: 'Running', podIP: '10.1.0.5', podIPs: [{ ip: '10.1.0.5' }] };
    expect(slimPod(pod('n1'), 'n1')).toEqual({ apiVersion: 'v1', kind: 'Pod',
      metadata: { ...identity, uid: '3f1c2a4e-8b7d-4e6f-9a1b-2c3d4e5f6a7b', annotations: { 'kernway.io/sockmap': 'on', 'kubectl.kubernetes.io/restartedAt': '2026-12-05T00:00:00Z' } },
      spec: { ...spec, nodeName: 'n1' }, status });
    expect(slimPod(pod('n2'), 'n1')).toEqual({ apiVersion: 'v1', kind: 'Pod',
      metadata: { ...identity, annotations: { 'kernway.io/sockmap': 'on' } }, spec: { ...spec, nodeName: 'n2' }, status });
  });
});
