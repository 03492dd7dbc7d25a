/**
 * A burst of Pods as the API server delivers it, in batches: what the agent's policy side
 * spends per batch on identities, compiled policies and this node's pods (no kernel: the
 * map writes are in bench/kube-api.ts's end-to-end figure), incremental (only the pods of
 * the batch) against the whole set per batch, in one run.
 *
 *   node dist/bench/pods-incremental.js [--pods 10000] [--batch 50] [--identities 10000] [--baseline DIST]
 *
 * --identities: distinct (labels) identities among the pods (10000: one per pod, the worst
 * case; 100: Deployments of 100 pods). --baseline DIST: the whole-set rounds run on another
 * build's modules (the dist/ of a checkout before incremental pod handling), else on this
 * build's (IdentityAllocator.assign and a compile without a delta).
 * Prints one JSON line per mode with `uptime`'s load.
 */
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseObject } from '../k8s/kinds.js';
import type { AuthorizationPolicy, Identity } from '../k8s/policy-types.js';
import type { Namespace, Pod } from '../k8s/types.js';
import { IdentityAllocator } from '../model/identity.js';
import { PodSubset } from '../model/workload.js';
import { PolicyCompiler } from '../agent/datapath/policy-compile.js';
import { localPodsFromModel } from '../agent/datapath/sockmap.js';
import { percentile } from './stats.js';

const { values } = parseArgs({ options: {
  pods: { type: 'string', default: '10000' }, batch: { type: 'string', default: '50' },
  identities: { type: 'string', default: '10000' }, baseline: { type: 'string' },
} });
const PODS = Number(values.pods);
const BATCH = Number(values.batch);
const IDENTITIES = Number(values.identities);
const NODE = 'node-1';
const load = (): string => loadavg().map((x) => x.toFixed(1)).join(' ');

function policy(ns: string, name: string, spec: unknown): AuthorizationPolicy {
  const r = parseObject({ object: { apiVersion: 'kernway.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec } as never, file: `/m/${name}.yaml`, index: 0 });
  if (r.object?.kind !== 'AuthorizationPolicy') throw new Error(r.problems.map((p) => p.message).join('; '));
  return r.object.value;
}
const policies = [
  policy('bench', 'deny-all', {}),
  policy('bench', 'allow-front', { rules: [{ from: [{ source: { namespaces: ['front'] } }], to: [{ operation: { ports: ['8080'] } }] }] }),
  policy('bench', 'allow-monitoring', { selector: { matchLabels: { tier: 'web' } }, rules: [{ from: [{ source: { serviceAccounts: ['monitoring/prometheus'] } }] }] }),
];

function podOf(i: number): Pod {
  return Object.freeze({
    namespace: 'bench', name: `pod-${i}`, key: `bench/pod-${i}`, labels: { app: `svc-${i % IDENTITIES}`, tier: i % 2 ? 'web' : 'db', 'pod-template-hash': 'abcdef1234' },
    annotations: {}, serviceAccountName: 'default', hostNetwork: false, nodeName: i % 100 === 0 ? NODE : `node-${2 + (i % 99)}`,
    podIPs: [`10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`], phase: 'Running', origin: { file: 'api', index: 0 },
  });
}

interface Compiler { compile(input: { identities: ReadonlyMap<number, Identity>; policies: readonly AuthorizationPolicy[] }, delta?: unknown): { destinations: ReadonlyMap<number, unknown> } }
interface Modules {
  Allocator: new () => { assign(pods: Iterable<Pod>): { identities: ReadonlyMap<number, Identity> } };
  Compiler: new () => Compiler;
  local: (model: { pods: ReadonlyMap<string, Pod>; namespaces: ReadonlyMap<string, Namespace> }, node: string) => unknown[];
}

async function modules(dist: string | undefined): Promise<Modules> {
  if (!dist) return { Allocator: IdentityAllocator, Compiler: PolicyCompiler as unknown as Modules['Compiler'], local: localPodsFromModel };
  const d = resolve(dist);
  const id = await import(join(d, 'model', 'identity.js')) as { IdentityAllocator: Modules['Allocator'] };
  const pc = await import(join(d, 'agent', 'datapath', 'policy-compile.js')) as { PolicyCompiler: Modules['Compiler'] };
  // localPodsFromModel did not change (what changed is that the agent hands it this node's pods only).
  return { Allocator: id.IdentityAllocator, Compiler: pc.PolicyCompiler, local: localPodsFromModel };
}

function report(mode: string, per: number[], total: number, extra: Record<string, unknown>): void {
  const s = [...per].sort((a, b) => a - b);
  console.log(JSON.stringify({ what: 'pods-incremental', mode, pods: PODS, batch: BATCH, identities: Math.min(IDENTITIES, PODS), batches: per.length,
    totalMs: Math.round(total), perBatchP50ms: +percentile(s, 50).toFixed(2), lastBatchMs: +per[per.length - 1]!.toFixed(2), ...extra, load: load() }));
}

async function main(): Promise<void> {
  const namespaces = new Map<string, Namespace>([['bench', { name: 'bench', labels: {}, annotations: {}, origin: { file: 'api', index: 0 } }]]);
  const all = Array.from({ length: PODS }, (_, i) => podOf(i));

  // Whole set per batch (what every batch cost before).
  {
    const m = await modules(values.baseline);
    const alloc = new m.Allocator();
    const compiler = new m.Compiler();
    const pods = new Map<string, Pod>();
    const per: number[] = [];
    const t0 = performance.now();
    let local = 0;
    for (let b = 0; b < PODS; b += BATCH) {
      const t = performance.now();
      for (const p of all.slice(b, b + BATCH)) pods.set(p.key, p);
      const a = alloc.assign(pods.values());
      compiler.compile({ identities: a.identities, policies });
      local = m.local({ pods, namespaces }, NODE).length;
      per.push(performance.now() - t);
    }
    report(values.baseline ? `whole set per batch (${values.baseline})` : 'whole set per batch', per, performance.now() - t0, { localPods: local });
  }
  // Only the batch's pods.
  {
    const alloc = new IdentityAllocator();
    const compiler = new PolicyCompiler();
    const subset = new PodSubset((p) => p.nodeName === NODE);
    const pods = new Map<string, Pod>();
    const per: number[] = [];
    const t0 = performance.now();
    let local = 0;
    for (let b = 0; b < PODS; b += BATCH) {
      const t = performance.now();
      const batch = all.slice(b, b + BATCH);
      for (const p of batch) pods.set(p.key, p);
      const keys = batch.map((p) => p.key);
      const delta = alloc.update(pods, keys);
      compiler.compile({ identities: alloc.current.identities, policies }, delta);
      if (subset.update(pods, keys) || b === 0) local = localPodsFromModel({ pods: subset.pods, namespaces }, NODE).length;
      per.push(performance.now() - t);
    }
    report('incremental', per, performance.now() - t0, { localPods: local });
  }
}

main().catch((e: unknown) => { console.error(e); process.exit(1); });
