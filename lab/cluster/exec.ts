/** Running a command inside a lab pod's container: its cgroup, network and mount namespaces. */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { KernwayError } from '../../common/errors.js';
import { cgroup2Mount } from '../system.js';
import type { KubeApi } from './kube-api.js';

interface PodStatus { spec: { containers: Array<{ name: string }> }; status?: { containerStatuses?: Array<{ name: string; containerID?: string; state?: { running?: unknown } }> } }

/** The PID of a running container of a pod (the lab kubelet writes containerID kernway-lab://PID). */
export async function containerPid(api: KubeApi, namespace: string, pod: string, container?: string): Promise<number> {
  const p = await api.find<PodStatus>(`/api/v1/namespaces/${namespace}/pods/${pod}`);
  if (!p) throw new KernwayError('KW_LAB_POD', `pod ${namespace}/${pod} not found`);
  const name = container ?? p.spec.containers[0]!.name;
  const cs = p.status?.containerStatuses?.find((c) => c.name === name);
  const m = /^kernway-lab:\/\/(\d+)$/.exec(cs?.containerID ?? '');
  if (!cs?.state?.running || !m) throw new KernwayError('KW_LAB_POD', `container ${name} of pod ${namespace}/${pod} is not running`);
  return Number(m[1]);
}

/** Starts CMD in the container's cgroup, then its network, mount and cgroup namespaces, in its working folder, with its environment. */
export async function execInPod(api: KubeApi, namespace: string, pod: string, container: string | undefined, argv: string[], opts: { stdio?: StdioOptions; env?: NodeJS.ProcessEnv } = {}): Promise<ChildProcess> {
  const pid = await containerPid(api, namespace, pod, container);
  const rel = /^0::(.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, 'utf8'))?.[1];
  if (!rel) throw new KernwayError('KW_LAB_POD', `cannot read the cgroup of process ${pid}`);
  // The container's own environment, as `kubectl exec` gives it.
  const containerEnv = Object.fromEntries(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => {
    const i = kv.indexOf('=');
    return [kv.slice(0, i), kv.slice(i + 1)];
  }));
  const env = { ...containerEnv, ...opts.env, KW_CG: cgroup2Mount() + rel };
  return spawn('sh', ['-c', 'echo $$ > "$KW_CG/cgroup.procs" && exec "$@"', 'sh', 'nsenter', `--target=${pid}`, '--net', '--mount', '--cgroup', '--wd', '--', ...argv], {
    env, stdio: opts.stdio ?? ['pipe', 'pipe', 'pipe'],
  });
}
