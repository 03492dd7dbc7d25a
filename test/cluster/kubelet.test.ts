/**
 * The lab kubelet's container lifecycle and what a DaemonSet written for a real cluster
 * needs, against a real API server: one lab node, no kube-proxy (as when kernway is the
 * service proxy). Liveness restarts with back-off, SIGKILL after the grace period, the
 * image → entrypoint map (kernway's image runs this checkout's CLI), the cgroup namespace
 * rooted at the node's cgroup, and in-cluster configuration as the agent reads it
 * (sources/kube-config.ts: the ServiceAccount's token file and CA, KUBERNETES_SERVICE_HOST/PORT).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot, version } from '../../common/version.js';
import { Cluster, CP_IP, API_PORT } from '../../lab/cluster/index.js';
import { imageEntrypoint, labHostPath } from '../../lab/cluster/kubelet.js';
import { waitFor } from '../../lab/cluster/proc.js';
import { pidAlive } from '../../lab/system.js';
import { NODE, apply, containerLog, isReady, pidOf, podExec, podsWith, waitReady, type PodJson } from './helpers.js';

type StatusPod = PodJson & {
  status: PodJson['status'] & {
    containerStatuses?: Array<{ name: string; ready: boolean; restartCount: number; containerID?: string; state: Record<string, any>; lastState?: Record<string, any> }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  };
};

const getPod = (cluster: Cluster, name: string): Promise<StatusPod | undefined> => cluster.api.find<StatusPod>(`/api/v1/namespaces/default/pods/${name}`);

describe('imageEntrypoint', () => {
  const images = { kernway: ['node', 'main.js'], 'registry.local:5000/team/echo': ['echo-server'] };
  it('maps an image by repository or by its last path segment, ignoring tag and digest', () => {
    expect(imageEntrypoint('kernway', images)).toEqual(['node', 'main.js']);
    expect(imageEntrypoint('ghcr.io/kernway/kernway:v0.3.1', images)).toEqual(['node', 'main.js']);
    expect(imageEntrypoint('kernway@sha256:0123', images)).toEqual(['node', 'main.js']);
    expect(imageEntrypoint('registry.local:5000/team/echo:1', images)).toEqual(['echo-server']);
    expect(imageEntrypoint('registry.local:5000/team/echo', images)).toEqual(['echo-server']);
    expect(imageEntrypoint('other/echo', images)).toBeUndefined();
    expect(imageEntrypoint('kernway-operator:1', images)).toBeUndefined();
    expect(imageEntrypoint('toString', images)).toBeUndefined();
    expect(imageEntrypoint(undefined, images)).toBeUndefined();
  });
});

describe('labHostPath', () => {
  const node = { cgroup2Mount: '/sys/fs/cgroup/unified', cgroupPath: '/sys/fs/cgroup/unified/kernway-x/node-1', bpffsDir: '/sys/fs/bpf/kernway-x/node-1', nodeRoot: '/dev/shm/kernway-x/node-1/root', extra: ['/work/kernway'] };
  it('binds cgroup and bpffs paths to the node\'s own, hiding the machine\'s mounts', () => {
    for (const p of ['/sys/fs/cgroup', '/sys/fs/cgroup/', '/sys/fs/cgroup/unified']) expect(labHostPath(p, node)).toEqual({ src: node.cgroupPath, hides: '/sys/fs/cgroup' });
    expect(labHostPath('/sys/fs/cgroup/kubepods', node)).toEqual({ src: `${node.cgroupPath}/kubepods`, hides: '/sys/fs/cgroup' });
    expect(labHostPath('/sys/fs/cgroup/unified/kubepods', node)).toEqual({ src: `${node.cgroupPath}/kubepods`, hides: '/sys/fs/cgroup' });
    expect(labHostPath('/sys/fs/bpf', node)).toEqual({ src: node.bpffsDir, hides: '/sys/fs/bpf' });
    expect(labHostPath('/sys/fs/bpf/kernway', node)).toEqual({ src: `${node.bpffsDir}/kernway`, hides: '/sys/fs/bpf' });
    // No way out through `..`.
    expect(labHostPath('/sys/fs/cgroup/../cgroup/..', node)).toEqual({ src: '/sys/fs' });
    expect(labHostPath('/sys/fs/cgroup/kubepods/../../cgroup', node)).toEqual({ src: node.cgroupPath, hides: '/sys/fs/cgroup' });
  });
  it('keeps the machine\'s system trees and moves state folders into the node\'s root', () => {
    for (const p of ['/proc', '/lib/modules', '/dev/net/tun', '/usr/bin', '/sys/kernel/debug', '/work/kernway/dist']) expect(labHostPath(p, node)).toEqual({ src: p });
    expect(labHostPath('/run/kernway', node)).toEqual({ src: `${node.nodeRoot}/run/kernway` });
    expect(labHostPath('/var/run/kernway', node)).toEqual({ src: `${node.nodeRoot}/run/kernway` });
    expect(labHostPath('/var/lib/kernway', node)).toEqual({ src: `${node.nodeRoot}/var/lib/kernway` });
    expect(labHostPath('/etc/cni/net.d', node)).toEqual({ src: `${node.nodeRoot}/etc/cni/net.d` });
    expect(labHostPath('/', node)).toEqual({ src: node.nodeRoot });
    expect(labHostPath('/workspace', node)).toEqual({ src: `${node.nodeRoot}/workspace` });
  });
});

describe('lab kubelet', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await Cluster.start({ tag: 'kubelet', nodes: 1 });
  }, 240_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 60_000);

  it('restarts a container whose liveness probe fails, with a growing back-off, and reports restartCount, CrashLoopBackOff and lastState', async () => {
    await apply(cluster, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'unlive', namespace: 'default', labels: { app: 'unlive' } },
      spec: {
        containers: [{
          name: 'main', image: 'none', command: ['sleep', '3600'],
          // Nothing listens on port 9: every probe fails.
          livenessProbe: { tcpSocket: { port: 9 }, periodSeconds: 1, failureThreshold: 2 },
        }],
      },
    });
    // When restartCount first reaches each value, and every PID the container ran as.
    const reachedAt = new Map<number, number>();
    const pids = new Set<number>();
    const states = new Set<string>();
    let last: StatusPod | undefined;
    await waitFor('3 restarts', async () => {
      last = await getPod(cluster, 'unlive');
      const cs = last?.status.containerStatuses?.[0];
      if (!cs) return false;
      if (!reachedAt.has(cs.restartCount)) reachedAt.set(cs.restartCount, performance.now());
      for (const k of Object.keys(cs.state)) states.add(k === 'waiting' ? `waiting:${cs.state.waiting.reason}` : k);
      const pid = pidOf(last!);
      if (pid) pids.add(pid);
      return cs.restartCount >= 3;
    }, 60_000, 50);
    const cs = last!.status.containerStatuses![0]!;
    // Killed by the kubelet (SIGKILL: 128 + 9), not exited by itself.
    expect(cs.lastState?.terminated).toMatchObject({ exitCode: 137, reason: 'Error', signal: 9 });
    expect(states).toContain('running');
    expect(states).toContain('waiting:CrashLoopBackOff');
    expect(pids.size).toBeGreaterThanOrEqual(3);
    expect(last!.status.phase).toBe('Running');
    // Back-off 1 s, 2 s, 4 s (each run lasts ~2 probe periods): the gap between restarts grows.
    const gap1 = reachedAt.get(2)! - reachedAt.get(1)!;
    const gap2 = reachedAt.get(3)! - reachedAt.get(2)!;
    expect(gap2, `gaps ${Math.round(gap1)} ms then ${Math.round(gap2)} ms`).toBeGreaterThan(gap1 + 1000);
    const events = await cluster.api.get<{ items: Array<{ reason: string; type: string }> }>(
      '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dunlive');
    expect(events.items.filter((e) => e.reason === 'Unhealthy' && e.type === 'Warning').length).toBeGreaterThanOrEqual(3);
    await cluster.kubectl(['delete', 'pod', 'unlive', '--grace-period=0', '--wait=false']);
  }, 90_000);

  it('does not restart a container under restartPolicy Never: the pod fails after its liveness probe kills it', async () => {
    await apply(cluster, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'unlive-never', namespace: 'default' },
      spec: {
        restartPolicy: 'Never',
        containers: [{ name: 'main', image: 'none', command: ['sleep', '3600'], livenessProbe: { tcpSocket: { port: 9 }, periodSeconds: 1, failureThreshold: 1 } }],
      },
    });
    const pod = await waitFor('the pod to fail', async () => {
      const p = await getPod(cluster, 'unlive-never');
      return p?.status.phase === 'Failed' ? p : undefined;
    }, 30_000, 100);
    const cs = pod.status.containerStatuses![0]!;
    expect(cs.restartCount).toBe(0);
    expect(cs.state.terminated).toMatchObject({ exitCode: 137 });
    await cluster.kubectl(['delete', 'pod', 'unlive-never', '--grace-period=0', '--wait=false']);
  }, 60_000);

  it('restarts a failed container under restartPolicy OnFailure, and not once it succeeds: the pod Succeeds', async () => {
    await apply(cluster, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'onfailure', namespace: 'default' },
      spec: {
        restartPolicy: 'OnFailure',
        containers: [{
          // Fails on its first run, succeeds on the second (the emptyDir outlives a restart).
          name: 'main', image: 'none', command: ['sh', '-c', 'test -f /mnt/data/ran && exit 0; touch /mnt/data/ran; exit 1'],
          volumeMounts: [{ name: 'data', mountPath: '/mnt/data' }],
        }],
        volumes: [{ name: 'data', emptyDir: {} }],
      },
    });
    const pod = await waitFor('the pod to succeed', async () => {
      const p = await getPod(cluster, 'onfailure');
      return p?.status.phase === 'Succeeded' || p?.status.phase === 'Failed' ? p : undefined;
    }, 30_000, 100);
    expect(pod.status.phase).toBe('Succeeded');
    const cs = pod.status.containerStatuses![0]!;
    expect(cs.restartCount).toBe(1);
    expect(cs.state.terminated).toMatchObject({ exitCode: 0, reason: 'Completed' });
    expect(cs.lastState?.terminated).toMatchObject({ exitCode: 1, reason: 'Error' });
    await cluster.kubectl(['delete', 'pod', 'onfailure', '--grace-period=0', '--wait=false']);
    // A mount point the lab cannot make (a new folder under /) is reported, not left to a silent crash loop.
    await apply(cluster, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'toplevel', namespace: 'default' },
      spec: { containers: [{ name: 'main', image: 'none', command: ['sleep', '60'], volumeMounts: [{ name: 'd', mountPath: '/kw-no-such-top/x' }] }], volumes: [{ name: 'd', emptyDir: {} }] },
    });
    const ev = await waitFor('an Unsupported event about the mount point', async () => {
      const list = await cluster.api.get<{ items: Array<{ reason: string; message: string }> }>('/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dtoplevel');
      return list.items.find((e) => e.reason === 'Unsupported');
    }, 30_000, 100);
    expect(ev.message).toContain('/kw-no-such-top');
    await cluster.kubectl(['delete', 'pod', 'toplevel', '--grace-period=0', '--wait=false']);
  }, 60_000);

  it('sends SIGTERM on deletion and SIGKILL once terminationGracePeriodSeconds have passed', async () => {
    await apply(cluster, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'stubborn', namespace: 'default', labels: { app: 'stubborn' } },
      spec: {
        terminationGracePeriodSeconds: 2,
        containers: [{
          name: 'main', image: 'none',
          command: [NODE, '-e', "process.on('SIGTERM', () => console.log('SIGTERM ignored')); console.log('up'); setInterval(() => {}, 1000);"],
        }],
      },
    });
    const [pod] = await waitReady(cluster, 'app=stubborn', 1);
    const pid = pidOf(pod!);
    await waitFor('the container to be up', () => containerLog(cluster, 'node-1', 'stubborn', 'main').includes('up'), 10_000, 50);
    const t0 = performance.now();
    await cluster.kubectl(['delete', 'pod', 'stubborn', '--wait=false']);
    await waitFor('SIGTERM to arrive', () => containerLog(cluster, 'node-1', 'stubborn', 'main').includes('SIGTERM ignored'), 10_000, 20);
    // It survived SIGTERM…
    expect(pidAlive(pid)).toBe(true);
    await waitFor('the process to end', () => !pidAlive(pid), 20_000, 20);
    // …until the grace period was over (2 s after the deletion, not before).
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1900);
    await waitFor('the pod to be gone', async () => !(await getPod(cluster, 'stubborn')), 20_000, 100);
    const kubeletLog = readFileSync(join(cluster.dir, 'logs', 'node-1-kubelet.log'), 'utf8').split('\n')
      .filter((l) => l.includes('"container exited"') && l.includes('default/stubborn'));
    expect(kubeletLog.map((l) => (JSON.parse(l) as { signal: string }).signal)).toEqual(['SIGKILL']);
  }, 60_000);

  it('runs kernway\'s image as this checkout\'s CLI with the pod\'s args ($(VAR) expanded)', async () => {
    await apply(cluster, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'kw-image', namespace: 'default' },
      spec: {
        restartPolicy: 'Never',
        containers: [{
          name: 'kernway', image: 'ghcr.io/kernway/kernway:latest', args: ['version', '$(EXTRA)'],
          env: [{ name: 'EXTRA', value: 'ignored-arg' }],
        }],
      },
    });
    const pod = await waitFor('the kernway container to finish', async () => {
      const p = await getPod(cluster, 'kw-image');
      return p?.status.phase === 'Succeeded' || p?.status.phase === 'Failed' ? p : undefined;
    }, 30_000, 100);
    const log = containerLog(cluster, 'node-1', 'kw-image', 'kernway');
    expect(pod.status.phase, log).toBe('Succeeded');
    expect(log).toContain(`kernway ${version()}`);
    // A container with neither command nor a mapped image cannot start, and says why.
    await apply(cluster, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'unmapped', namespace: 'default' },
      spec: { containers: [{ name: 'main', image: 'nginx:1.25' }] },
    });
    const waiting = await waitFor('CreateContainerConfigError', async () => {
      const w = (await getPod(cluster, 'unmapped'))?.status.containerStatuses?.[0]?.state.waiting;
      return w?.reason === 'CreateContainerConfigError' ? w : undefined;
    }, 30_000, 100);
    expect(waiting.message).toContain('nginx:1.25');
    await cluster.kubectl(['delete', 'pod', 'kw-image', 'unmapped', '--grace-period=0', '--wait=false']);
  }, 60_000);

  it('roots a pod\'s cgroup namespace at the node\'s cgroup: /proc/self/cgroup and a fresh cgroup2 mount see the node, never the machine', async () => {
    await apply(cluster, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'cgview', namespace: 'default', labels: { app: 'cgview' } },
      spec: {
        containers: [{
          name: 'main', image: 'none',
          command: ['sh', '-c', 'cat /proc/self/cgroup | grep "^0::"; mount -t cgroup2 none /mnt/cg && ls /mnt/cg; echo $$$$ > /var/run/kw-lab-test/pid; echo ---; exec sleep 3600'],
          volumeMounts: [{ name: 'cg', mountPath: '/mnt/cg' }, { name: 'state', mountPath: '/var/run/kw-lab-test' }],
        }],
        volumes: [{ name: 'cg', emptyDir: {} }, { name: 'state', hostPath: { path: '/var/run/kw-lab-test', type: 'DirectoryOrCreate' } }],
      },
    });
    const [pod] = await waitReady(cluster, 'app=cgview', 1);
    const log = await waitFor('the pod\'s output', () => {
      const l = containerLog(cluster, 'node-1', 'cgview', 'main');
      return l.includes('---') ? l : undefined;
    }, 10_000, 50);
    const lines = log.split('---')[0]!.trim().split('\n');
    expect(lines[0]).toBe(`0::/kubepods/besteffort/pod${pod!.metadata.uid}/main`);
    expect(lines.slice(1)).toContain('kubepods');
    expect(lines.slice(1)).toContain('system');
    expect(lines.slice(1).some((l) => l.startsWith('kernway-'))).toBe(false);
    // A hostPath state folder is the node's own, not the machine's.
    expect(readFileSync(join(cluster.dir, 'node-1', 'root', 'run', 'kw-lab-test', 'pid'), 'utf8').trim()).toMatch(/^\d+$/);
    expect(existsSync('/var/run/kw-lab-test')).toBe(false);
    // The machine still sees the full path (its own cgroup namespace), as execInPod needs.
    const host = readFileSync(`/proc/${pidOf(pod!)}/cgroup`, 'utf8');
    expect(host).toMatch(new RegExp(`^0::/.+/node-1/kubepods/besteffort/pod${pod!.metadata.uid}/main$`, 'm'));
    // An exec in the pod shares the view.
    const ex = await podExec(cluster, 'cgview', ['sh', '-c', 'grep "^0::" /proc/self/cgroup']);
    expect(ex.stdout.trim()).toBe(`0::/kubepods/besteffort/pod${pod!.metadata.uid}/main`);
    await cluster.kubectl(['delete', 'pod', 'cgview', '--grace-period=0', '--wait=false']);
  }, 60_000);

  it('gives a hostNetwork pod in-cluster configuration that the agent loads (the API server direct, as a DaemonSet that is the service proxy sets it)', async () => {
    await apply(cluster, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'incluster', namespace: 'default', labels: { app: 'incluster' } },
      spec: {
        hostNetwork: true,
        containers: [{
          name: 'main', image: 'none', command: ['sleep', '3600'], workingDir: projectRoot(),
          env: [
            { name: 'KUBERNETES_SERVICE_HOST', value: CP_IP },
            { name: 'KUBERNETES_SERVICE_PORT', value: String(API_PORT) },
            { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
            { name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
            { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
          ],
        }],
      },
    });
    const [pod] = await waitReady(cluster, 'app=incluster', 1);
    expect(pod!.status.podIP).toBe(cluster.node('node-1').ip);
    // What `kernway agent` does without --kubeconfig (sources/kube-config.ts, the agent's own
    // client): no KUBECONFIG, no ~/.kube/config, so the pod's in-cluster configuration.
    const module = pathToFileURL(join(projectRoot(), 'dist', 'sources', 'kube-config.js')).href;
    const script = `
      import { KubeClient, loadKubeConfig } from ${JSON.stringify(module)};
      const loaded = loadKubeConfig();
      const v = await new KubeClient(loaded).get('/api/v1');
      console.log(JSON.stringify({ origin: loaded.origin, server: loaded.server, user: loaded.config.getCurrentUser().name, groupVersion: v.groupVersion,
        env: [process.env.NODE_NAME, process.env.HOST_IP, process.env.POD_IP] }));`;
    const res = await podExec(cluster, 'incluster', [NODE, '--input-type=module', '-e', script], 'default', 30_000);
    expect(res.stderr).toBe('');
    const out = JSON.parse(res.stdout) as { origin: string; server: string; user: string; groupVersion: string; env: string[] };
    expect(out.origin).toBe('in-cluster');
    expect(out.server).toBe(`https://${CP_IP}:${API_PORT}`);
    expect(out.user).toBe('inClusterUser');
    expect(out.groupVersion).toBe('v1');
    const ip = cluster.node('node-1').ip;
    expect(out.env).toEqual(['node-1', ip, ip]);
    // The ServiceAccount files are the pod's own: namespace and the cluster's CA.
    const ca = await podExec(cluster, 'incluster', ['cat', '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt']);
    expect(ca.stdout).toBe(readFileSync(join(cluster.dir, 'pki', 'ca.crt'), 'utf8'));
    expect((await podsWith(cluster, 'app=incluster')).filter(isReady)).toHaveLength(1);
    await cluster.kubectl(['delete', 'pod', 'incluster', '--grace-period=0', '--wait=false']);
  }, 60_000);
});
