/** Helpers for tests against a lab cluster (lab/cluster): manifests, polling, pods. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../common/version.js';
import type { Cluster } from '../../lab/cluster/index.js';
import { waitFor } from '../../lab/cluster/proc.js';
import { execInPod } from '../../lab/cluster/exec.js';

export const HTTP_ECHO = join(projectRoot(), 'test', 'fixtures', 'http-echo.mjs');
export const NODE = process.execPath;

export interface PodJson {
  metadata: { name: string; namespace: string; uid: string; deletionTimestamp?: string; labels?: Record<string, string> };
  spec: { nodeName?: string };
  status: {
    phase?: string; podIP?: string; hostIP?: string;
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{ name: string; ready: boolean; restartCount: number; containerID?: string; state: Record<string, unknown> }>;
  };
}

export async function apply(cluster: Cluster, manifest: unknown): Promise<void> {
  const docs = Array.isArray(manifest) ? manifest : [manifest];
  await cluster.kubectl(['apply', '-f', '-'], { input: docs.map((d) => JSON.stringify(d)).join('\n') });
}

export async function podsWith(cluster: Cluster, selector: string, ns = 'default'): Promise<PodJson[]> {
  const list = await cluster.api.get<{ items: PodJson[] }>(`/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(selector)}`);
  return list.items;
}

export const isReady = (p: PodJson): boolean => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true && !p.metadata.deletionTimestamp;

export async function waitReady(cluster: Cluster, selector: string, count: number, timeoutMs = 90_000): Promise<PodJson[]> {
  return waitFor(`${count} Ready pod(s) ${selector}`, async () => {
    const pods = (await podsWith(cluster, selector)).filter(isReady);
    return pods.length === count ? pods : undefined;
  }, timeoutMs, 100);
}

export function pidOf(p: PodJson, container?: string): number {
  const cs = container ? p.status.containerStatuses?.find((c) => c.name === container) : p.status.containerStatuses?.[0];
  return Number(/kernway-lab:\/\/(\d+)/.exec(cs?.containerID ?? '')?.[1] ?? NaN);
}

export function environOf(pid: number): Record<string, string> {
  return Object.fromEntries(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => {
    const i = kv.indexOf('=');
    return [kv.slice(0, i), kv.slice(i + 1)];
  }));
}

/** Runs a command in a pod (its cgroup, netns and mount namespace); resolves with exit code and output. */
export async function podExec(cluster: Cluster, pod: string, argv: string[], ns = 'default', timeoutMs = 20_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = await execInPod(cluster.api, ns, pod, undefined, argv);
  child.stdin?.end();
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${argv.join(' ')} in ${pod} timed out; ${stderr}`)); }, timeoutMs);
    child.once('close', (code) => { clearTimeout(timer); resolve({ code: code ?? 1, stdout, stderr }); });
  });
}

/** A node -e script that does N HTTP GETs to URL and prints each answer's body, one per line. */
export const HTTP_GETS = `
const http = require('node:http');
const [url, n] = process.argv.slice(1);
(async () => { for (let i = 0; i < Number(n); i++) {
  const body = await new Promise((res, rej) => http.get(url, { agent: false, timeout: 3000 }, (r) => { let b = ''; r.on('data', (d) => b += d); r.on('end', () => res(b)); }).on('error', rej).on('timeout', function () { this.destroy(new Error('timeout')); }));
  console.log(body);
} })().catch((e) => { console.error(e.message); process.exit(3); });
`;

/** Output a lab container wrote (the lab kubelet appends it to <dir>/<node>/logs/<ns>_<pod>_<container>.log). */
export function containerLog(cluster: Cluster, node: string, pod: string, container: string, ns = 'default'): string {
  try {
    return readFileSync(join(cluster.dir, node, 'logs', `${ns}_${pod}_${container}.log`), 'utf8');
  } catch {
    return '';
  }
}
