/**
 * The lab cluster against a real API server: one cluster (2 nodes, kube-proxy in iptables
 * mode in each) shared by the tests of this file, stopped after them (also on failure).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, KUBERNETES_SERVICE_IP } from '../../lab/cluster/index.js';
import { waitFor } from '../../lab/cluster/proc.js';
import { run } from '../../lab/system.js';
import { pidAlive } from '../../lab/system.js';
import { HTTP_ECHO, HTTP_GETS, NODE, apply, containerLog, environOf, isReady, pidOf, podExec, podsWith, waitReady, type PodJson } from './helpers.js';

const echoDeployment = {
  apiVersion: 'apps/v1', kind: 'Deployment',
  metadata: { name: 'echo', namespace: 'default' },
  spec: {
    replicas: 3,
    selector: { matchLabels: { app: 'echo' } },
    template: {
      metadata: { labels: { app: 'echo' } },
      spec: {
        terminationGracePeriodSeconds: 10,
        containers: [{
          name: 'echo', image: 'none', command: [NODE, HTTP_ECHO, '8080'],
          ports: [{ name: 'http', containerPort: 8080 }],
          env: [
            { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
            { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
            { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
          ],
          readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1 },
          livenessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 2 },
        }],
      },
    },
  },
};

describe('lab cluster', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await Cluster.start({ tag: 'test', nodes: 2, kubeProxy: true });
    console.log(`lab cluster started in ${cluster.timings.total} ms`, cluster.timings);
  }, 240_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 60_000);

  it('registers each lab node with its address, pod CIDR and a renewed Lease; kubectl answers', async () => {
    const nodes = await cluster.api.get<{ items: Array<{ metadata: { name: string }; spec: { podCIDR: string }; status: { addresses: Array<{ type: string; address: string }> } }> }>('/api/v1/nodes');
    expect(nodes.items.map((n) => n.metadata.name).sort()).toEqual(['node-1', 'node-2']);
    for (const n of nodes.items) {
      const lab = cluster.node(n.metadata.name);
      expect(n.spec.podCIDR).toBe(lab.podCidr);
      expect(n.status.addresses).toContainEqual({ type: 'InternalIP', address: lab.ip });
      const lease = await cluster.api.get<{ spec: { renewTime: string; holderIdentity: string } }>(`/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${n.metadata.name}`);
      expect(lease.spec.holderIdentity).toBe(n.metadata.name);
      expect(Date.now() - Date.parse(lease.spec.renewTime)).toBeLessThan(30_000);
    }
    const out = await cluster.kubectl(['get', 'nodes', '-o', 'name']);
    expect(out.stdout.trim().split('\n').sort()).toEqual(['node/node-1', 'node/node-2']);
    // The `kubernetes` Service's endpoints name the API server where nodes and pods reach it.
    const ep = await cluster.api.get<{ subsets: Array<{ addresses: Array<{ ip: string }>; ports: Array<{ port: number }> }> }>('/api/v1/namespaces/default/endpoints/kubernetes');
    expect(ep.subsets[0]!.addresses[0]!.ip).toBe('10.250.0.1');
    expect(ep.subsets[0]!.ports[0]!.port).toBe(6443);
  });

  let echoPods: PodJson[] = [];
  it('runs a Deployment of 3 echo servers as processes that become Ready through their probe; the EndpointSlice lists them', async () => {
    const t0 = performance.now();
    await apply(cluster, echoDeployment);
    const first = await waitFor('a first Ready echo pod', async () => (await podsWith(cluster, 'app=echo')).some(isReady), 90_000, 50);
    const firstReadyMs = performance.now() - t0;
    echoPods = await waitReady(cluster, 'app=echo', 3);
    console.log(`kubectl apply → first pod Ready ${Math.round(firstReadyMs)} ms, all 3 Ready ${Math.round(performance.now() - t0)} ms`);
    expect(first).toBe(true);
    for (const p of echoPods) {
      expect(['node-1', 'node-2']).toContain(p.spec.nodeName);
      const node = cluster.node(p.spec.nodeName!);
      expect(p.status.hostIP).toBe(node.ip);
      expect(p.status.podIP!.startsWith(node.podCidr.replace(/0\/24$/, ''))).toBe(true);
      const pid = pidOf(p);
      expect(pidAlive(pid)).toBe(true);
      // The process runs in kubelet's cgroupfs layout under the node's cgroup.
      const cg = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      expect(cg).toContain(`${node.cgroupPath.split('/').slice(-2).join('/')}/kubepods/besteffort/pod${p.metadata.uid}/echo`);
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain(HTTP_ECHO);
      const env = environOf(pid);
      expect(env.POD_NAME).toBe(p.metadata.name);
      expect(env.NODE_NAME).toBe(p.spec.nodeName);
      expect(env.POD_IP).toBe(p.status.podIP);
    }
    const ips = echoPods.map((p) => p.status.podIP).sort();
    await waitFor('the EndpointSlice to list the 3 ready pods', async () => {
      const slices = await cluster.api.get<{ items: Array<{ endpoints?: Array<{ addresses: string[]; conditions: { ready?: boolean } }> }> }>(
        '/apis/discovery.k8s.io/v1beta1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Decho');
      const ready = slices.items.flatMap((s) => s.endpoints ?? []).filter((e) => e.conditions.ready).flatMap((e) => e.addresses).sort();
      return JSON.stringify(ready) === JSON.stringify(ips);
    }, 30_000, 100).catch(async () => {
      // The Service is made in the next step; make it here if this test runs alone.
      throw new Error('no EndpointSlice for echo');
    });
  }, 150_000);

  beforeAll(async () => {
    // The Service exists from the start so its EndpointSlice follows the pods.
    await apply(cluster, {
      apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: 'default' },
      spec: { selector: { app: 'echo' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
    });
    // A client that is not a backend (a backend calling its own Service would hairpin).
    await apply(cluster, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'client', namespace: 'default', labels: { app: 'client' } },
      spec: { nodeName: 'node-1', containers: [{ name: 'main', image: 'none', command: ['sleep', '3600'] }] },
    });
  });

  it('answers on the Service ClusterIP through kube-proxy (iptables) in the lab nodes, across nodes', async () => {
    const svc = await cluster.api.get<{ spec: { clusterIP: string } }>('/api/v1/namespaces/default/services/echo');
    const ip = svc.spec.clusterIP;
    expect(ip.startsWith('10.96.')).toBe(true);
    for (const node of cluster.nodes) {
      await waitFor(`kube-proxy's rules for ${ip} in ${node.name}`, async () => {
        const rules = await run('nsenter', [`--net=${node.netnsPath}`, '--', 'iptables-save', '-t', 'nat']);
        const dnat = rules.stdout.split('\n').filter((l) => l.startsWith('-A KUBE-SEP-') && l.includes('default/echo:http') && l.includes('-j DNAT'));
        return rules.stdout.includes(`-d ${ip}/32`) && dnat.length === 3;
      }, 30_000, 200);
    }
    await waitReady(cluster, 'app=client', 1);
    const res = await podExec(cluster, 'client', [NODE, '-e', HTTP_GETS, `http://${ip}/hello`, '30'], 'default', 60_000);
    expect(res.stderr, res.stdout).toBe('');
    const answers = res.stdout.trim().split('\n').map((l) => JSON.parse(l) as { pod: string; node: string; path: string });
    expect(answers).toHaveLength(30);
    const names = new Set(echoPods.map((p) => p.metadata.name));
    for (const a of answers) {
      expect(names.has(a.pod)).toBe(true);
      expect(a.path).toBe('/hello');
    }
    // 30 random picks among 3 backends on both nodes: every backend answers (p(miss) < 1e-5).
    expect(new Set(answers.map((a) => a.pod)).size).toBe(3);
    // The root namespace's iptables are not touched.
    const root = await run('iptables-save', ['-t', 'nat'], { allowFail: true });
    expect(root.stdout).not.toContain(ip);
  }, 120_000);

  it('gives a pod the env, token and volumes its manifest asks for; the token passes a TokenReview; in-cluster config works', async () => {
    await apply(cluster, [
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'kw-config', namespace: 'default' }, data: { greeting: 'hello', 'mode.conf': 'fast\n' } },
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'kw-secret', namespace: 'default' }, stringData: { password: 's3cret' } },
      {
        apiVersion: 'v1', kind: 'Pod', metadata: { name: 'envpod', namespace: 'default', labels: { app: 'envpod', tier: 'test' } },
        spec: {
          nodeName: 'node-2',
          containers: [{
            name: 'main', image: 'none', command: ['sleep', '3600'],
            env: [
              { name: 'MY_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              { name: 'MY_NS', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
              { name: 'MY_NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
              { name: 'MY_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
              { name: 'MY_HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
              { name: 'MY_TIER', valueFrom: { fieldRef: { fieldPath: "metadata.labels['tier']" } } },
              { name: 'GREETING', valueFrom: { configMapKeyRef: { name: 'kw-config', key: 'greeting' } } },
              { name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'kw-secret', key: 'password' } } },
              { name: 'COMBINED', value: '$(MY_NAME)@$(MY_NODE)' },
            ],
            volumeMounts: [
              { name: 'token', mountPath: '/var/run/secrets/tokens', readOnly: true },
              { name: 'config', mountPath: '/etc/kw-config' },
              { name: 'secret', mountPath: '/etc/kw-secret', readOnly: true },
            ],
          }],
          volumes: [
            { name: 'token', projected: { sources: [{ serviceAccountToken: { path: 'kw-token', audience: 'kernway-test', expirationSeconds: 3600 } }] } },
            { name: 'config', configMap: { name: 'kw-config' } },
            { name: 'secret', secret: { secretName: 'kw-secret' } },
          ],
        },
      },
    ]);
    const [pod] = await waitReady(cluster, 'app=envpod', 1);
    const env = environOf(pidOf(pod!));
    expect(env).toMatchObject({
      MY_NAME: 'envpod', MY_NS: 'default', MY_NODE: 'node-2', MY_IP: pod!.status.podIP, MY_HOST_IP: cluster.node('node-2').ip,
      MY_TIER: 'test', GREETING: 'hello', PASSWORD: 's3cret', COMBINED: 'envpod@node-2',
      KUBERNETES_SERVICE_HOST: KUBERNETES_SERVICE_IP, KUBERNETES_SERVICE_PORT: '443',
    });
    const files = await podExec(cluster, 'envpod', ['sh', '-c', 'cat /etc/kw-config/mode.conf /etc/kw-secret/password; echo; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; touch /var/run/secrets/tokens/x 2>/dev/null || echo read-only']);
    expect(files.stdout).toBe('fast\ns3cret\ndefault\nread-only\n');
    // The mounts live in the pod's own mount namespace only.
    expect(existsSync('/etc/kw-config')).toBe(false);
    expect(existsSync('/var/run/secrets/tokens')).toBe(false);
    const token = (await podExec(cluster, 'envpod', ['cat', '/var/run/secrets/tokens/kw-token'])).stdout;
    expect(token.split('.')).toHaveLength(3);
    const review = await cluster.api.post<{ status: { authenticated?: boolean; user?: { username: string; extra?: Record<string, string[]> }; audiences?: string[] } }>(
      '/apis/authentication.k8s.io/v1/tokenreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['kernway-test'] } });
    expect(review.status.authenticated).toBe(true);
    expect(review.status.user!.username).toBe('system:serviceaccount:default:default');
    expect(review.status.audiences).toEqual(['kernway-test']);
    expect(review.status.user!.extra!['authentication.kubernetes.io/pod-name']).toEqual(['envpod']);
    // In-cluster configuration: the ServiceAccount token and CA at the usual place, the API
    // server through the `kubernetes` Service (kube-proxy).
    const inCluster = await podExec(cluster, 'envpod', [NODE, '-e', `
      const fs = require('node:fs'); const d = '/var/run/secrets/kubernetes.io/serviceaccount/';
      require('node:https').get({ host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT, path: '/api',
        ca: fs.readFileSync(d + 'ca.crt'), headers: { authorization: 'Bearer ' + fs.readFileSync(d + 'token', 'utf8') } },
        (r) => { let b = ''; r.on('data', (c) => b += c); r.on('end', () => console.log(r.statusCode, JSON.parse(b).kind)); }).on('error', (e) => console.log(e.message));
    `], 'default', 30_000);
    expect(inCluster.stdout.trim()).toBe('200 APIVersions');
  }, 120_000);

  it('terminates a deleted pod gracefully (SIGTERM, drain, exit) and removes its namespace and cgroup', async () => {
    const victim = echoPods[1]!;
    const pid = pidOf(victim);
    const cg = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    expect(pidAlive(pid)).toBe(true);
    await cluster.kubectl(['delete', 'pod', victim.metadata.name, '--wait=false']);
    await waitFor('the deleted pod\'s process to end', () => !pidAlive(pid), 30_000, 50);
    await waitFor('the deleted pod to be gone', async () => !(await cluster.api.find(`/api/v1/namespaces/default/pods/${victim.metadata.name}`)), 30_000, 100);
    const log = containerLog(cluster, victim.spec.nodeName!, victim.metadata.name, 'echo');
    expect(log).toContain('SIGTERM received');
    expect(log).toContain('exiting after drain');
    const rel = /0::(\S+)/.exec(cg)![1]!;
    expect(existsSync(join(cluster.cgroupPath, '..', rel.replace(/\/echo$/, '')))).toBe(false);
    // The Deployment replaces it.
    await waitReady(cluster, 'app=echo', 3);
  }, 90_000);

  it('runs one DaemonSet pod per node, host-network, with the node\'s own cgroup and bpffs at the usual paths', async () => {
    await apply(cluster, {
      apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'agent', namespace: 'default' },
      spec: {
        selector: { matchLabels: { app: 'agent' } },
        template: {
          metadata: { labels: { app: 'agent' } },
          spec: {
            hostNetwork: true,
            containers: [{
              name: 'agent', image: 'none',
              command: ['sh', '-c', 'grep -E " (cgroup2|bpf) " /proc/self/mounts; ls /sys/fs/cgroup; echo ---; exec sleep 3600'],
              readinessProbe: { exec: { command: ['test', '-d', '/sys/fs/cgroup/kubepods'] }, periodSeconds: 1 },
              volumeMounts: [{ name: 'cgroup', mountPath: '/sys/fs/cgroup' }, { name: 'bpf', mountPath: '/sys/fs/bpf' }],
            }],
            volumes: [{ name: 'cgroup', hostPath: { path: '/sys/fs/cgroup' } }, { name: 'bpf', hostPath: { path: '/sys/fs/bpf' } }],
          },
        },
      },
    });
    const pods = await waitReady(cluster, 'app=agent', 2);
    expect(pods.map((p) => p.spec.nodeName).sort()).toEqual(['node-1', 'node-2']);
    for (const p of pods) {
      const node = cluster.node(p.spec.nodeName!);
      expect(p.status.podIP).toBe(node.ip);
      const log = await waitFor('the agent pod\'s output', () => {
        const l = containerLog(cluster, node.name, p.metadata.name, 'agent');
        return l.includes('---') ? l : undefined;
      }, 10_000, 50);
      const lines = log.split('---')[0]!.trim().split('\n');
      const mounts = lines.filter((l) => / (cgroup2|bpf) /.test(l));
      const listing = lines.filter((l) => !/ (cgroup2|bpf) /.test(l));
      // Only the node's own cgroup (cgroup2) and bpffs folder are mounted; the machine's are gone.
      expect(mounts.map((l) => l.split(' ').slice(1, 3).join(' ')).sort()).toEqual(['/sys/fs/bpf bpf', '/sys/fs/cgroup cgroup2']);
      expect(listing).toContain('kubepods');
      expect(listing).toContain('system');
      expect(listing.some((l) => l.startsWith('kernway-'))).toBe(false);
      // Its sockets are the node's: the process is in the node's network namespace.
      const netns = await run('ip', ['netns', 'identify', String(pidOf(p))]);
      expect(netns.stdout.trim()).toBe(node.netns);
    }
  }, 90_000);

  it('reports fields it does not support as Warning events on the pod', async () => {
    await apply(cluster, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'unsupported', namespace: 'default' },
      spec: {
        containers: [{ name: 'main', image: 'none', command: ['sleep', '3600'], lifecycle: { preStop: { exec: { command: ['true'] } } } }],
        volumes: [{ name: 'data', nfs: { server: '10.0.0.1', path: '/exports' } }],
      },
    });
    const events = await waitFor('Unsupported events', async () => {
      const list = await cluster.api.get<{ items: Array<{ reason: string; message: string; type: string }> }>(
        '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dunsupported');
      const u = list.items.filter((e) => e.reason === 'Unsupported');
      return u.length >= 2 ? u : undefined;
    }, 30_000, 100);
    expect(events.every((e) => e.type === 'Warning')).toBe(true);
    expect(events.map((e) => e.message).join('\n')).toMatch(/lifecycle hooks are not run[\s\S]*|nfs is not supported/);
  }, 60_000);
});
