/**
 * The lab kubelet: a kubelet for lab nodes, not a container runtime. One process per
 * node, running in the node's network namespace (started by lab/cluster/index.ts as
 * `kernway lab kubelet CONFIG`). It registers the Node (addresses, pod CIDR, capacity,
 * Ready), renews its Lease, watches the Pods bound to it and runs each container's
 * command as a process in the pod's network namespace, cgroup
 * (<node>/kubepods[/<qos>]/pod<uid>/<container>, as kubelet's cgroupfs driver names it)
 * and a private mount namespace with the pod's volumes; probes, restarts, graceful
 * termination, and the pod's status written back. What it does not support is reported
 * on the pod as a Warning event. See docs/lab.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createConnection } from 'node:net';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { projectRoot } from '../../common/version.js';
import { createCgroup, removeCgroupTree } from '../cgroup.js';
import { pidAlive, run } from '../system.js';
import { KubeApi, KubeApiError, credentialsFromKubeconfig, type KubeObject } from './kube-api.js';
import { KUBERNETES_SERVICE_IP, POD_GATEWAY } from './network.js';

export interface KubeletConfig {
  nodeName: string;
  nodeIp: string;
  podCidr: string;
  /** The node's network namespace name (the kubelet runs in it). */
  netns: string;
  cgroupPath: string;
  bpffsDir: string;
  kubeconfig: string;
  /** The node's folder in the run folder: pods' volumes and logs. */
  dir: string;
  cgroup2Mount: string;
  apiHost: string;
  apiPort: number;
  /**
   * Image → entrypoint: what a container without `command` runs (its `args` follow, as
   * an image's ENTRYPOINT and CMD). Keys are an image repository without tag or digest
   * (`ghcr.io/x/kernway`) or its last path segment (`kernway`). See imageEntrypoint.
   */
  images?: Record<string, string[]>;
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Probe {
  exec?: { command?: string[] };
  httpGet?: { path?: string; port: number | string; host?: string; scheme?: string; httpHeaders?: Array<{ name: string; value: string }> };
  tcpSocket?: { port: number | string; host?: string };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

interface Container {
  name: string;
  command?: string[];
  args?: string[];
  workingDir?: string;
  env?: Array<{ name: string; value?: string; valueFrom?: Json }>;
  envFrom?: Array<{ prefix?: string; configMapRef?: { name: string; optional?: boolean }; secretRef?: { name: string; optional?: boolean } }>;
  ports?: Array<{ name?: string; containerPort: number; hostPort?: number }>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; subPath?: string }>;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: Json;
  resources?: Json;
  securityContext?: Json;
}

interface PodObject extends KubeObject {
  spec: {
    nodeName: string;
    containers: Container[];
    initContainers?: Container[];
    volumes?: Array<Json & { name: string }>;
    restartPolicy?: 'Always' | 'OnFailure' | 'Never';
    hostNetwork?: boolean;
    terminationGracePeriodSeconds?: number;
    serviceAccountName?: string;
    enableServiceLinks?: boolean;
    [k: string]: unknown;
  };
  status?: Json;
}

interface ContainerRun {
  spec: Container;
  cgroup: string;
  child?: ChildProcess;
  pid?: number;
  restarts: number;
  startedAt?: string;
  ready: boolean;
  started: boolean;
  lastState?: Json;
  state: Json;
  /** Consecutive probe results. */
  readiness: { ok: number; fail: number };
  liveness: { ok: number; fail: number };
  timers: NodeJS.Timeout[];
  restartTimer?: NodeJS.Timeout;
  backoffMs: number;
  stopping: boolean;
  log: string;
}

interface PodRun {
  uid: string;
  pod: PodObject;
  key: string;
  netns: string;
  hostVeth: string;
  podIp: string;
  cgroup: string;
  dir: string;
  containers: Map<string, ContainerRun>;
  terminating: boolean;
  removed: boolean;
  startTime: string;
  statusTimer?: NodeJS.Timeout;
  ipIndex: number;
  env: Record<string, string>;
}

const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const microNow = (): string => new Date().toISOString().replace(/Z$/, '000Z');

/** kubelet's `$(VAR)` expansion in command, args and env values; `$$(VAR)` escapes. */
export function expandVars(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$';
    return name !== undefined && name in env ? env[name]! : m;
  });
}

/** kubelet's cgroupfs name for a pod: kubepods/pod<uid>, kubepods/burstable/pod<uid> or kubepods/besteffort/pod<uid>. */
export function podCgroupName(uid: string, qosClass: string | undefined): string {
  const q = (qosClass ?? 'BestEffort').toLowerCase();
  return q === 'guaranteed' ? join('kubepods', `pod${uid}`) : join('kubepods', q, `pod${uid}`);
}

/**
 * The entrypoint an image stands for in the lab (there are no images): the map's entry
 * for the image's repository (tag and digest stripped), else for its last path segment;
 * undefined when the image is not mapped.
 */
export function imageEntrypoint(image: string | undefined, images: Record<string, string[]> | undefined): string[] | undefined {
  if (!image || !images) return undefined;
  let repo = image.replace(/@.*$/, '');
  const slash = repo.lastIndexOf('/');
  const colon = repo.lastIndexOf(':');
  if (colon > slash) repo = repo.slice(0, colon);
  const own = (k: string): string[] | undefined => (Object.hasOwn(images, k) ? images[k] : undefined);
  return own(repo) ?? own(repo.slice(repo.lastIndexOf('/') + 1));
}

/** Machine folders a hostPath reaches as they are (read-mostly system trees; /sys minus its cgroup and bpffs mounts). */
export const MACHINE_HOST_PATHS = ['/proc', '/sys', '/dev', '/lib', '/lib64', '/usr', '/bin', '/sbin', '/boot'];

/**
 * Where a pod's `hostPath` points on this machine, so that a DaemonSet written for a real
 * node runs unchanged and stays inside its lab node:
 * - the cgroup2 mount, /sys/fs/cgroup and anything below them → the node's own cgroup
 *   (the machine's cgroup mounts are hidden in the pod: `hides`);
 * - /sys/fs/bpf and below → the node's bpffs folder (the machine's bpffs hidden);
 * - the machine's system trees (MACHINE_HOST_PATHS) and `extra` folders → themselves;
 * - anything else (/run, /var/run, /var/lib, /etc, /tmp, /opt, …) → the same path under
 *   the node's root folder `nodeRoot`, so two nodes' agents never share state or sockets
 *   (/var/run is /run there, as on a real node).
 */
export function labHostPath(path: string, node: { cgroup2Mount: string; cgroupPath: string; bpffsDir: string; nodeRoot: string; extra?: string[] }): { src: string; hides?: string } {
  const p = posix.normalize(`/${path}`).replace(/\/+$/, '') || '/';
  const under = (root: string): string | undefined => (p === root ? '' : p.startsWith(`${root}/`) ? p.slice(root.length + 1) : undefined);
  let rel = under(node.cgroup2Mount) ?? under('/sys/fs/cgroup');
  if (rel !== undefined) return { src: rel ? join(node.cgroupPath, rel) : node.cgroupPath, hides: '/sys/fs/cgroup' };
  rel = under('/sys/fs/bpf');
  if (rel !== undefined) return { src: rel ? join(node.bpffsDir, rel) : node.bpffsDir, hides: '/sys/fs/bpf' };
  if ([...MACHINE_HOST_PATHS, ...(node.extra ?? [])].some((m) => under(m) !== undefined)) return { src: p };
  const own = under('/var/run');
  return { src: own !== undefined ? join(node.nodeRoot, 'run', own) : p === '/' ? node.nodeRoot : join(node.nodeRoot, p) };
}

const MOUNT_FN = String.raw`
kw_mount() {
  src=$1; dst=$2; ro=$3
  if [ ! -e "$dst" ]; then
    a=$(dirname "$dst"); while [ ! -e "$a" ]; do a=$(dirname "$a"); done
    ra=$(realpath "$a")
    inside=''
    for r in $KW_ROOTS; do case "$ra/" in "$r"/*) inside=1;; esac; done
    if [ -z "$inside" ]; then
      # Make the mount point in an overlay of its nearest existing parent (this namespace only).
      if [ "$ra" = / ]; then echo "lab kubelet: cannot make mount point $dst" >&2; exit 125; fi
      KW_N=$((KW_N+1)); mkdir -p "$KW_OV/u$KW_N" "$KW_OV/w$KW_N"
      mount -t overlay kw-mountpoint -o "lowerdir=$ra,upperdir=$KW_OV/u$KW_N,workdir=$KW_OV/w$KW_N" "$ra" || exit 125
      KW_ROOTS="$KW_ROOTS $ra"
    fi
    if [ -d "$src" ]; then mkdir -p "$dst"; else mkdir -p "$(dirname "$dst")" && touch "$dst"; fi
  fi
  mount --bind "$src" "$dst" || exit 125
  if [ -n "$ro" ]; then mount -o remount,bind,ro "$dst" || exit 125; fi
}
KW_N=0; KW_ROOTS=''
`;

const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

export class LabKubelet {
  private readonly api: KubeApi;
  private readonly pods = new Map<string, PodRun>();
  private readonly usedIps = new Set<number>();
  private timers: NodeJS.Timeout[] = [];
  private stopInformer: (() => void) | undefined;
  private readonly cpuCount = String(cpus().length);
  private readonly memory = `${Math.floor(totalmem() / 1024)}Ki`;
  private stopping = false;
  private podCounter = 0;

  constructor(readonly cfg: KubeletConfig, readonly log: (msg: string, extra?: Json) => void = (m, e) => console.log(JSON.stringify({ time: Date.now(), node: cfg.nodeName, msg: m, ...e }))) {
    this.api = new KubeApi(credentialsFromKubeconfig(cfg.kubeconfig));
  }

  async start(): Promise<void> {
    await this.registerNode();
    await this.renewLease();
    await this.postNodeStatus();
    this.timers.push(setInterval(() => { void this.renewLease().catch((e) => this.log('lease renewal failed', { err: String(e) })); }, 10_000));
    this.timers.push(setInterval(() => { void this.postNodeStatus().catch((e) => this.log('node status failed', { err: String(e) })); }, 10_000));
    mkdirSync(join(this.cfg.dir, 'pods'), { recursive: true });
    mkdirSync(join(this.cfg.dir, 'logs'), { recursive: true });
    this.stopInformer = this.api.informer<PodObject>('/api/v1/pods', `fieldSelector=${encodeURIComponent(`spec.nodeName=${this.cfg.nodeName}`)}`, (ev) => {
      if (ev.type === 'DELETED') void this.podGone(ev.object);
      else void this.podSeen(ev.object);
    }, (e) => this.log('pod watch failed, retrying', { err: String(e) }));
  }

  // ---- Node ----

  private async registerNode(): Promise<void> {
    const body = {
      apiVersion: 'v1', kind: 'Node',
      metadata: {
        name: this.cfg.nodeName,
        labels: { 'kubernetes.io/hostname': this.cfg.nodeName, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', 'kernway.io/lab-node': 'true' },
      },
      spec: { podCIDR: this.cfg.podCidr, podCIDRs: [this.cfg.podCidr] },
    };
    try {
      await this.api.post('/api/v1/nodes', body);
    } catch (e) {
      if (!(e instanceof KubeApiError && e.status === 409)) throw e;
    }
  }

  private async renewLease(): Promise<void> {
    const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${this.cfg.nodeName}`;
    const spec = { holderIdentity: this.cfg.nodeName, leaseDurationSeconds: 40, renewTime: microNow() };
    const existing = await this.api.find(path);
    if (existing) await this.api.mergePatch(path, { spec });
    else {
      const node = await this.api.get(`/api/v1/nodes/${this.cfg.nodeName}`);
      await this.api.post('/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', {
        apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
        metadata: { name: this.cfg.nodeName, ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: this.cfg.nodeName, uid: node.metadata.uid }] },
        spec,
      });
    }
  }

  private async postNodeStatus(): Promise<void> {
    const t = now();
    const cond = (type: string, status: string, reason: string, message: string): Json => ({ type, status, reason, message, lastHeartbeatTime: t, lastTransitionTime: this.startedAt });
    const capacity = { cpu: this.cpuCount, memory: this.memory, pods: '110', 'ephemeral-storage': '10Gi' };
    await this.api.strategicPatch(`/api/v1/nodes/${this.cfg.nodeName}/status`, {
      status: {
        capacity, allocatable: capacity,
        addresses: [{ type: 'InternalIP', address: this.cfg.nodeIp }, { type: 'Hostname', address: this.cfg.nodeName }],
        conditions: [
          cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'lab kubelet'),
          cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'lab kubelet'),
          cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'lab kubelet'),
          cond('Ready', 'True', 'KubeletReady', 'kernway lab kubelet is posting ready status'),
        ],
        daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
        nodeInfo: {
          machineID: '', systemUUID: '', bootID: '', kernelVersion: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
          osImage: 'kernway lab', containerRuntimeVersion: 'kernway-lab://1', kubeletVersion: 'v1.20.2', kubeProxyVersion: 'v1.20.2',
          operatingSystem: 'linux', architecture: 'amd64',
        },
      },
    });
  }

  private readonly startedAt = now();

  // ---- Pods ----

  private podSeen(pod: PodObject): void {
    const uid = pod.metadata.uid!;
    const existing = this.pods.get(uid);
    if (existing) {
      existing.pod = pod;
      if (pod.metadata.deletionTimestamp && !existing.terminating) void this.terminate(existing, this.graceOf(pod));
      return;
    }
    const phase = pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') return;
    if (pod.metadata.deletionTimestamp) {
      // Never started here (e.g. after a kubelet restart): nothing to stop.
      void this.finalDelete(pod);
      return;
    }
    void this.startPod(pod).catch(async (e) => {
      this.log('pod start failed, retrying in 2 s', { pod: pod.metadata.name, err: String(e) });
      void this.event(pod, 'Warning', 'FailedCreatePodSandBox', `lab kubelet: ${String((e as Error).message ?? e)}`);
      // Undo the partial start and try again, as a kubelet does (e.g. a Secret not yet
      // readable: the Node authorizer learns a new pod's references a moment after binding).
      const r = this.pods.get(uid);
      if (r) await this.terminate(r, 0, false).catch(() => undefined);
      setTimeout(() => {
        if (this.stopping) return;
        void this.api.find<PodObject>(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`).then((latest) => {
          if (latest && latest.metadata.uid === uid && !latest.metadata.deletionTimestamp && !this.pods.has(uid)) this.podSeen(latest);
        }, () => undefined);
      }, 2000);
    });
  }

  private async podGone(pod: PodObject): Promise<void> {
    const run = this.pods.get(pod.metadata.uid!);
    if (!run) return;
    if (!run.terminating) await this.terminate(run, 0, false);
  }

  private graceOf(pod: PodObject): number {
    return pod.metadata.deletionGracePeriodSeconds ?? pod.spec.terminationGracePeriodSeconds ?? 30;
  }

  private async event(pod: PodObject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const t = now();
    try {
      await this.api.post(`/api/v1/namespaces/${pod.metadata.namespace}/events`, {
        apiVersion: 'v1', kind: 'Event',
        metadata: { generateName: `${pod.metadata.name}.`, namespace: pod.metadata.namespace },
        involvedObject: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata.name, namespace: pod.metadata.namespace, uid: pod.metadata.uid },
        reason, message, type, count: 1, firstTimestamp: t, lastTimestamp: t,
        source: { component: 'kernway-lab-kubelet', host: this.cfg.nodeName },
      });
    } catch (e) {
      this.log('event failed', { err: String(e) });
    }
  }

  /** Fields this kubelet does not implement, as one message per field path. */
  unsupported(pod: PodObject): string[] {
    const out: string[] = [];
    const s = pod.spec;
    if (s.initContainers?.length) out.push('spec.initContainers are not run');
    if ((s as Json).ephemeralContainers?.length) out.push('spec.ephemeralContainers are not run');
    if ((s as Json).dnsConfig) out.push('spec.dnsConfig is ignored (pods use the machine\'s resolver)');
    if ((s as Json).securityContext && Object.keys((s as Json).securityContext).length) out.push('spec.securityContext is ignored (processes run as root)');
    for (const c of s.containers) {
      const at = `spec.containers[${c.name}]`;
      if (c.lifecycle) out.push(`${at}.lifecycle hooks are not run`);
      if (c.startupProbe) out.push(`${at}.startupProbe is not run (treated as passed)`);
      if (c.resources?.limits && Object.keys(c.resources.limits).length) out.push(`${at}.resources.limits are not enforced`);
      if (c.securityContext) {
        for (const k of Object.keys(c.securityContext)) if (!['privileged', 'capabilities', 'allowPrivilegeEscalation', 'readOnlyRootFilesystem'].includes(k)) out.push(`${at}.securityContext.${k} is ignored`);
      }
      for (const p of c.ports ?? []) if (p.hostPort && !s.hostNetwork) out.push(`${at}.ports[${p.containerPort}].hostPort is not mapped`);
      for (const e of c.env ?? []) if (e.valueFrom?.resourceFieldRef) out.push(`${at}.env[${e.name}].valueFrom.resourceFieldRef is not supported (left unset)`);
      for (const m of c.volumeMounts ?? []) {
        const top = `/${m.mountPath.split('/').filter(Boolean)[0] ?? ''}`;
        if (top !== '/' && !existsSync(top)) out.push(`${at}.volumeMounts[${m.name}].mountPath ${m.mountPath} needs a new top-level folder ${top}, which the lab cannot make (the machine's / is not changed): the container cannot start; mount it under an existing folder (e.g. /mnt${m.mountPath})`);
      }
    }
    const known = ['hostPath', 'configMap', 'secret', 'projected', 'emptyDir', 'downwardAPI'];
    for (const v of s.volumes ?? []) {
      const kind = Object.keys(v).find((k) => k !== 'name');
      if (kind && !known.includes(kind)) out.push(`spec.volumes[${v.name}].${kind} is not supported (the volume is left empty)`);
    }
    return out;
  }

  private allocateIp(): number {
    for (let i = 2; i < 255; i++) {
      if (!this.usedIps.has(i)) { this.usedIps.add(i); return i; }
    }
    throw new Error(`no free address in ${this.cfg.podCidr}`);
  }

  private async startPod(pod: PodObject): Promise<void> {
    const uid = pod.metadata.uid!;
    const hostNetwork = pod.spec.hostNetwork === true;
    const prefix = this.cfg.podCidr.split('.').slice(0, 3).join('.');
    const ipIndex = hostNetwork ? 0 : this.allocateIp();
    const k = ++this.podCounter;
    const r: PodRun = {
      uid, pod, key: `${pod.metadata.namespace}/${pod.metadata.name}`,
      netns: hostNetwork ? this.cfg.netns : `${this.cfg.netns}-p${k}`,
      hostVeth: hostNetwork ? '' : `kwp${k}`,
      podIp: hostNetwork ? this.cfg.nodeIp : `${prefix}.${ipIndex}`,
      cgroup: join(this.cfg.cgroupPath, podCgroupName(uid, pod.status?.qosClass)),
      dir: join(this.cfg.dir, 'pods', uid),
      containers: new Map(), terminating: false, removed: false, startTime: now(), ipIndex, env: {},
    };
    this.pods.set(uid, r);
    this.log('starting pod', { pod: r.key, ip: r.podIp, netns: r.netns });
    for (const msg of this.unsupported(pod)) await this.event(pod, 'Warning', 'Unsupported', `lab kubelet: ${msg}`);
    mkdirSync(r.dir, { recursive: true });
    mkdirSync(r.cgroup, { recursive: true });
    if (!hostNetwork) await this.makePodNetwork(r);
    if (r.removed) return;
    const volumes = await this.prepareVolumes(r);
    for (const c of pod.spec.containers) {
      const cg = join(r.cgroup, c.name);
      if (!existsSync(cg)) createCgroup(cg);
      const cr: ContainerRun = {
        spec: c, cgroup: cg, restarts: 0, ready: false, started: false, state: { waiting: { reason: 'ContainerCreating' } },
        readiness: { ok: 0, fail: 0 }, liveness: { ok: 0, fail: 0 }, timers: [], backoffMs: 1000, stopping: false,
        log: join(this.cfg.dir, 'logs', `${pod.metadata.namespace}_${pod.metadata.name}_${c.name}.log`),
      };
      r.containers.set(c.name, cr);
    }
    this.scheduleStatus(r);
    for (const cr of r.containers.values()) {
      if (r.terminating) break;
      try {
        const env = await this.containerEnv(r, cr.spec);
        this.runContainer(r, cr, env, volumes);
      } catch (e) {
        cr.state = { waiting: { reason: 'CreateContainerConfigError', message: String((e as Error).message ?? e) } };
        await this.event(pod, 'Warning', 'Failed', `lab kubelet: container ${cr.spec.name}: ${String((e as Error).message ?? e)}`);
      }
    }
    this.scheduleStatus(r);
  }

  private async makePodNetwork(r: PodRun): Promise<void> {
    await run('ip', ['netns', 'add', r.netns]);
    await run('ip', ['-batch', '-'], {
      input: [
        `link add ${r.hostVeth} type veth peer name eth0 netns ${r.netns}`,
        `link set ${r.hostVeth} up`,
        `route add ${r.podIp}/32 dev ${r.hostVeth}`,
      ].join('\n') + '\n',
    });
    await run('ip', ['-n', r.netns, '-batch', '-'], {
      input: [
        'link set lo up',
        `addr add ${r.podIp}/32 dev eth0`,
        'link set eth0 up',
        `route add ${POD_GATEWAY} dev eth0 scope link`,
        `route add default via ${POD_GATEWAY} dev eth0`,
      ].join('\n') + '\n',
    });
    await run('sysctl', ['-q', '-w', `net.ipv4.conf.${r.hostVeth}.proxy_arp=1`]);
  }

  // ---- Volumes ----

  private async getRef(ns: string, kind: 'configmaps' | 'secrets', name: string, optional?: boolean): Promise<Json | undefined> {
    const obj = await this.api.find<Json>(`/api/v1/namespaces/${ns}/${kind}/${name}`);
    if (!obj && !optional) throw new Error(`${kind === 'configmaps' ? 'ConfigMap' : 'Secret'} ${ns}/${name} not found`);
    return obj;
  }

  private writeFiles(dir: string, data: Record<string, Buffer>, items: Array<{ key: string; path: string }> | undefined): void {
    mkdirSync(dir, { recursive: true });
    const entries = items ? items.filter((i) => i.key in data).map((i) => [i.path, data[i.key]!] as const) : Object.entries(data);
    for (const [path, content] of entries) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), content, { mode: 0o644 });
    }
  }

  private objData(obj: Json | undefined, secret: boolean): Record<string, Buffer> {
    const out: Record<string, Buffer> = {};
    if (!obj) return out;
    for (const [k, v] of Object.entries((obj.data ?? {}) as Record<string, string>)) out[k] = secret ? Buffer.from(v, 'base64') : Buffer.from(v);
    for (const [k, v] of Object.entries((obj.binaryData ?? {}) as Record<string, string>)) out[k] = Buffer.from(v, 'base64');
    return out;
  }

  private fieldValue(r: PodRun, fieldPath: string): string {
    const p = r.pod;
    const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
    if (m) return (p.metadata[m[1] as 'labels' | 'annotations'] ?? {})[m[2]!] ?? '';
    switch (fieldPath) {
      case 'metadata.name': return p.metadata.name;
      case 'metadata.namespace': return p.metadata.namespace ?? 'default';
      case 'metadata.uid': return p.metadata.uid ?? '';
      case 'spec.nodeName': return this.cfg.nodeName;
      case 'spec.serviceAccountName': return p.spec.serviceAccountName ?? 'default';
      case 'status.podIP': return r.podIp;
      case 'status.podIPs': return r.podIp;
      case 'status.hostIP': return this.cfg.nodeIp;
      case 'metadata.labels': return Object.entries(p.metadata.labels ?? {}).map(([k, v]) => `${k}="${v}"`).join('\n');
      case 'metadata.annotations': return Object.entries(p.metadata.annotations ?? {}).map(([k, v]) => `${k}="${v}"`).join('\n');
      default: throw new Error(`fieldRef ${fieldPath} is not supported`);
    }
  }

  /** A hostPath as this node sees it (labHostPath). */
  hostPathSource(path: string): { src: string; hides?: string } {
    return labHostPath(path, { cgroup2Mount: this.cfg.cgroup2Mount, cgroupPath: this.cfg.cgroupPath, bpffsDir: this.cfg.bpffsDir, nodeRoot: join(this.cfg.dir, 'root'), extra: [projectRoot()] });
  }

  private async tokenFor(r: PodRun, audience: string | undefined, expirationSeconds: number | undefined): Promise<string> {
    const sa = r.pod.spec.serviceAccountName ?? 'default';
    const res = await this.api.post<Json>(`/api/v1/namespaces/${r.pod.metadata.namespace}/serviceaccounts/${sa}/token`, {
      apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest',
      spec: {
        audiences: audience ? [audience] : [],
        expirationSeconds: Math.max(600, expirationSeconds ?? 3600),
        boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: r.pod.metadata.name, uid: r.uid },
      },
    });
    return res.status.token as string;
  }

  /** Materialises the pod's volumes; answers name → { path on the machine, what it hides }. */
  private async prepareVolumes(r: PodRun): Promise<Map<string, { src: string; hides?: string }>> {
    const out = new Map<string, { src: string; hides?: string }>();
    const ns = r.pod.metadata.namespace ?? 'default';
    for (const v of r.pod.spec.volumes ?? []) {
      const dir = join(r.dir, 'volumes', v.name);
      if (v.hostPath) {
        const hp = this.hostPathSource(v.hostPath.path as string);
        const type = (v.hostPath.type ?? '') as string;
        if (!existsSync(hp.src)) {
          // The node's own folders start empty: make what the pod expects there.
          if (type === 'FileOrCreate') { mkdirSync(dirname(hp.src), { recursive: true }); writeFileSync(hp.src, ''); }
          else if (['', 'Directory', 'DirectoryOrCreate'].includes(type) && hp.src.startsWith(`${this.cfg.dir}/`)) mkdirSync(hp.src, { recursive: true });
          else if (type === 'DirectoryOrCreate') mkdirSync(hp.src, { recursive: true });
          else throw new Error(`hostPath ${v.hostPath.path} (volume ${v.name}) does not exist on the node (${hp.src})`);
        }
        out.set(v.name, hp);
      } else if (v.configMap) {
        this.writeFiles(dir, this.objData(await this.getRef(ns, 'configmaps', v.configMap.name, v.configMap.optional), false), v.configMap.items);
        out.set(v.name, { src: dir });
      } else if (v.secret) {
        this.writeFiles(dir, this.objData(await this.getRef(ns, 'secrets', v.secret.secretName, v.secret.optional), true), v.secret.items);
        out.set(v.name, { src: dir });
      } else if (v.downwardAPI) {
        const data: Record<string, Buffer> = {};
        for (const item of v.downwardAPI.items ?? []) if (item.fieldRef) data[item.path] = Buffer.from(this.fieldValue(r, item.fieldRef.fieldPath));
        this.writeFiles(dir, data, undefined);
        out.set(v.name, { src: dir });
      } else if (v.projected) {
        mkdirSync(dir, { recursive: true });
        for (const s of v.projected.sources ?? []) {
          if (s.serviceAccountToken) {
            this.writeFiles(dir, { [s.serviceAccountToken.path]: Buffer.from(await this.tokenFor(r, s.serviceAccountToken.audience, s.serviceAccountToken.expirationSeconds)) }, undefined);
          } else if (s.configMap) {
            this.writeFiles(dir, this.objData(await this.getRef(ns, 'configmaps', s.configMap.name, s.configMap.optional), false), s.configMap.items);
          } else if (s.secret) {
            this.writeFiles(dir, this.objData(await this.getRef(ns, 'secrets', s.secret.name, s.secret.optional), true), s.secret.items);
          } else if (s.downwardAPI) {
            const data: Record<string, Buffer> = {};
            for (const item of s.downwardAPI.items ?? []) if (item.fieldRef) data[item.path] = Buffer.from(this.fieldValue(r, item.fieldRef.fieldPath));
            this.writeFiles(dir, data, undefined);
          }
        }
        out.set(v.name, { src: dir });
      } else {
        mkdirSync(dir, { recursive: true }); // emptyDir, and unsupported kinds (reported) stay empty
        out.set(v.name, { src: dir });
      }
    }
    return out;
  }

  // ---- Containers ----

  private async containerEnv(r: PodRun, c: Container): Promise<Record<string, string>> {
    const ns = r.pod.metadata.namespace ?? 'default';
    const env: Record<string, string> = {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOSTNAME: r.pod.spec.hostNetwork ? this.cfg.nodeName : r.pod.metadata.name,
      HOME: '/root',
      KUBERNETES_SERVICE_HOST: KUBERNETES_SERVICE_IP,
      KUBERNETES_SERVICE_PORT: '443',
      KUBERNETES_SERVICE_PORT_HTTPS: '443',
      KUBERNETES_PORT: `tcp://${KUBERNETES_SERVICE_IP}:443`,
      KUBERNETES_PORT_443_TCP: `tcp://${KUBERNETES_SERVICE_IP}:443`,
      KUBERNETES_PORT_443_TCP_PROTO: 'tcp',
      KUBERNETES_PORT_443_TCP_PORT: '443',
      KUBERNETES_PORT_443_TCP_ADDR: KUBERNETES_SERVICE_IP,
    };
    for (const from of c.envFrom ?? []) {
      const ref = from.configMapRef ?? from.secretRef;
      if (!ref) continue;
      const obj = await this.getRef(ns, from.configMapRef ? 'configmaps' : 'secrets', ref.name, ref.optional);
      for (const [k, v] of Object.entries(this.objData(obj, !from.configMapRef))) env[`${from.prefix ?? ''}${k}`] = v.toString();
    }
    for (const e of c.env ?? []) {
      if (e.valueFrom) {
        const vf = e.valueFrom;
        if (vf.fieldRef) env[e.name] = this.fieldValue(r, vf.fieldRef.fieldPath);
        else if (vf.configMapKeyRef || vf.secretKeyRef) {
          const ref = vf.configMapKeyRef ?? vf.secretKeyRef;
          const data = this.objData(await this.getRef(ns, vf.configMapKeyRef ? 'configmaps' : 'secrets', ref.name, ref.optional), !vf.configMapKeyRef);
          if (ref.key in data) env[e.name] = data[ref.key]!.toString();
          else if (!ref.optional) throw new Error(`key ${ref.key} not found in ${ref.name} (env ${e.name})`);
        }
      } else {
        env[e.name] = expandVars(e.value ?? '', env);
      }
    }
    return env;
  }

  private runContainer(r: PodRun, cr: ContainerRun, env: Record<string, string>, volumes: Map<string, { src: string; hides?: string }>): void {
    const c = cr.spec;
    const image = (c as Json).image as string | undefined;
    const entry = c.command?.length ? c.command : imageEntrypoint(image, this.cfg.images);
    if (!entry?.length) {
      const message = `the lab kubelet runs no images: set command (a program on the machine), or run the lab with an entrypoint for image ${image ?? '(none)'}`;
      cr.state = { waiting: { reason: 'CreateContainerConfigError', message } };
      void this.event(r.pod, 'Warning', 'Failed', `lab kubelet: container ${c.name}: ${message}`);
      this.scheduleStatus(r);
      return;
    }
    const argv = [...entry, ...(c.args ?? [])].map((a) => expandVars(a, env));
    const ov = join(r.dir, 'overlay', c.name);
    // First into the container's cgroup (the path as the machine's mount shows it, before
    // the pod's mount namespace hides that mount); the cgroup namespace is already rooted
    // at the node's cgroup (see below).
    const lines = ['echo $$ > "$KW_CG/cgroup.procs" || exit 125', MOUNT_FN];
    const hides = new Set<string>();
    const binds: string[] = [];
    for (const [i, m] of (c.volumeMounts ?? []).entries()) {
      const v = volumes.get(m.name);
      if (!v) continue;
      let src = m.subPath ? join(v.src, m.subPath) : v.src;
      if (v.hides) {
        // The machine's cgroup or bpffs mounts are taken away in the pod's mount namespace,
        // so only the node's own folder is reachable: bind it aside first, hide, then mount.
        lines.push(`mkdir -p "$KW_OV/s${i}" && mount --bind ${shq(src)} "$KW_OV/s${i}" || exit 125`);
        src = `$KW_OV/s${i}`;
        hides.add(v.hides);
      }
      binds.push(`kw_mount ${src.startsWith('$') ? `"${src}"` : shq(src)} ${shq(m.mountPath)} ${m.readOnly ? '1' : "''"}`);
    }
    for (const h of hides) lines.push(`umount -R -l ${shq(h)} 2>/dev/null || true`);
    lines.push(...binds);
    // The staging binds go, so /proc/mounts shows the node's cgroup and bpffs at mountPath only.
    for (const [i, m] of (c.volumeMounts ?? []).entries()) if (volumes.get(m.name)?.hides) lines.push(`umount -l "$KW_OV/s${i}"`);
    // The marker tells the kubelet the mounts are in place: only then is the container running.
    lines.push(`cd ${shq(c.workingDir ?? '/')} || exit 125`, ': > "$KW_OV/started"', 'unset KW_CG KW_OV KW_NODE_CG', 'exec "$@"');
    const netns = r.pod.spec.hostNetwork ? [] : ['nsenter', `--net=/var/run/netns/${r.netns}`, '--'];
    // The process enters the node's cgroup, then unshares a cgroup namespace rooted there:
    // in the pod, /proc/self/cgroup reads 0::/kubepods/<qos>/pod<uid>/<container> as on a
    // real node (cgroupfs driver), and a cgroup2 mounted in the pod has the node's cgroup
    // as its root, never the machine's.
    const script = 'echo $$ > "$KW_NODE_CG/cgroup.procs" && exec "$@"';
    const log = cr.log;
    mkdirSync(ov, { recursive: true });
    rmSync(join(ov, 'started'), { force: true });
    const fd = openSync(log, 'a');
    let child: ChildProcess;
    try {
      child = spawn('sh', ['-c', script, 'sh', ...netns, 'unshare', '--mount', '--cgroup', '--propagation', 'private', '--', 'sh', '-c', lines.join('\n'), 'sh', ...argv], {
        env: { ...env, KW_CG: cr.cgroup, KW_OV: ov, KW_NODE_CG: this.cfg.cgroupPath },
        stdio: ['ignore', fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    cr.child = child;
    cr.pid = child.pid;
    cr.startedAt = now();
    cr.ready = false;
    cr.readiness = { ok: 0, fail: 0 };
    cr.liveness = { ok: 0, fail: 0 };
    child.once('error', (e) => this.log('container spawn failed', { pod: r.key, container: c.name, err: String(e) }));
    child.once('exit', (code, signal) => { void this.containerExited(r, cr, code, signal, env, volumes); });
    const marker = join(ov, 'started');
    const poll = (): void => {
      if (cr.child !== child || r.terminating) return;
      if (!existsSync(marker)) { cr.timers.push(setTimeout(poll, 10)); return; }
      cr.started = true;
      cr.state = { running: { startedAt: cr.startedAt } };
      this.log('container started', { pod: r.key, container: c.name, pid: child.pid, argv });
      this.startProbes(r, cr);
      this.scheduleStatus(r);
    };
    poll();
  }

  private async containerExited(r: PodRun, cr: ContainerRun, code: number | null, signal: NodeJS.Signals | null, env: Record<string, string>, volumes: Map<string, { src: string; hides?: string }>): Promise<void> {
    for (const t of cr.timers) clearTimeout(t);
    cr.timers = [];
    const exitCode = code ?? (signal ? 128 + (signalNumber(signal) ?? 9) : 1);
    const finishedAt = now();
    const terminated = { terminated: { exitCode, reason: exitCode === 0 ? 'Completed' : 'Error', startedAt: cr.startedAt, finishedAt, containerID: `kernway-lab://${cr.pid}`, ...(signal ? { signal: signalNumber(signal) } : {}) } };
    // state is this run's end; lastState stays the run before it, unless a restart follows (below).
    cr.state = terminated;
    cr.ready = false;
    cr.started = false;
    cr.child = undefined;
    this.log('container exited', { pod: r.key, container: cr.spec.name, exitCode, signal });
    // What the process left behind in its cgroup goes with it.
    await removeCgroupTree(cr.cgroup).catch(() => undefined);
    if (!existsSync(cr.cgroup)) createCgroup(cr.cgroup);
    const policy = r.pod.spec.restartPolicy ?? 'Always';
    if (!r.terminating && !cr.stopping && (policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0))) {
      cr.lastState = terminated;
      cr.state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${cr.backoffMs / 1000}s restarting failed container=${cr.spec.name} pod=${r.pod.metadata.name}` } };
      const ranMs = Date.now() - Date.parse(cr.startedAt ?? finishedAt);
      if (ranMs > 600_000) cr.backoffMs = 1000;
      const delay = cr.backoffMs;
      cr.backoffMs = Math.min(cr.backoffMs * 2, 300_000);
      cr.restartTimer = setTimeout(() => {
        if (r.terminating || r.removed) return;
        cr.restarts++;
        this.runContainer(r, cr, env, volumes);
      }, delay);
    }
    this.scheduleStatus(r);
  }

  // ---- Probes ----

  private startProbes(r: PodRun, cr: ContainerRun): void {
    const c = cr.spec;
    if (!c.readinessProbe) cr.ready = true;
    for (const [kind, probe] of [['readiness', c.readinessProbe], ['liveness', c.livenessProbe]] as const) {
      if (!probe) continue;
      const period = (probe.periodSeconds ?? 10) * 1000;
      const tick = async (): Promise<void> => {
        if (!cr.child || r.terminating || cr.stopping) return;
        const ok = await this.probe(r, cr, probe).catch(() => false);
        if (!cr.child || r.terminating || cr.stopping) return;
        const st = cr[kind];
        if (ok) { st.ok++; st.fail = 0; } else { st.fail++; st.ok = 0; }
        if (kind === 'readiness') {
          const was = cr.ready;
          if (ok && st.ok >= (probe.successThreshold ?? 1)) cr.ready = true;
          if (!ok && st.fail >= (probe.failureThreshold ?? 3)) cr.ready = false;
          if (was !== cr.ready) this.scheduleStatus(r);
        } else if (!ok && st.fail >= (probe.failureThreshold ?? 3)) {
          void this.event(r.pod, 'Warning', 'Unhealthy', `Liveness probe failed for container ${c.name}; restarting it`);
          if (cr.pid) try { process.kill(cr.pid, 'SIGKILL'); } catch { /* gone */ }
          return;
        }
        cr.timers.push(setTimeout(() => { void tick(); }, period));
      };
      cr.timers.push(setTimeout(() => { void tick(); }, (probe.initialDelaySeconds ?? 0) * 1000));
    }
  }

  private portOf(cr: ContainerRun, port: number | string): number {
    if (typeof port === 'number') return port;
    if (/^\d+$/.test(port)) return Number(port);
    const p = cr.spec.ports?.find((x) => x.name === port);
    if (!p) throw new Error(`no container port named ${port}`);
    return p.containerPort;
  }

  private probe(r: PodRun, cr: ContainerRun, p: Probe): Promise<boolean> {
    const timeout = (p.timeoutSeconds ?? 1) * 1000;
    if (p.httpGet) {
      const g = p.httpGet;
      const https = (g.scheme ?? 'HTTP').toUpperCase() === 'HTTPS';
      return new Promise((resolve) => {
        const req = (https ? httpsRequest : httpRequest)({
          host: g.host ?? r.podIp, port: this.portOf(cr, g.port), path: g.path ?? '/', method: 'GET', timeout,
          headers: Object.fromEntries((g.httpHeaders ?? []).map((h) => [h.name, h.value])), rejectUnauthorized: false, agent: false,
        } as Json, (res) => {
          res.resume();
          resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
        });
        req.on('timeout', () => req.destroy());
        req.on('error', () => resolve(false));
        req.end();
      });
    }
    if (p.tcpSocket) {
      const t = p.tcpSocket;
      return new Promise((resolve) => {
        const s = createConnection({ host: t.host ?? r.podIp, port: this.portOf(cr, t.port), timeout });
        s.once('connect', () => { s.destroy(); resolve(true); });
        s.once('timeout', () => { s.destroy(); resolve(false); });
        s.once('error', () => resolve(false));
      });
    }
    if (p.exec?.command?.length) {
      const pid = cr.pid;
      if (!pid) return Promise.resolve(false);
      return new Promise((resolve) => {
        const child = spawn('sh', ['-c', 'echo $$ > "$KW_CG/cgroup.procs" && exec "$@"', 'sh', 'nsenter', `--target=${pid}`, '--mount', '--net', '--cgroup', '--', ...p.exec!.command!], {
          env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', KW_CG: cr.cgroup }, stdio: 'ignore',
        });
        const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
        child.once('exit', (code) => { clearTimeout(timer); resolve(code === 0); });
        child.once('error', () => { clearTimeout(timer); resolve(false); });
      });
    }
    return Promise.resolve(true);
  }

  // ---- Status ----

  private scheduleStatus(r: PodRun): void {
    if (r.statusTimer || r.removed) return;
    r.statusTimer = setTimeout(() => {
      r.statusTimer = undefined;
      void this.writeStatus(r).catch((e) => this.log('pod status failed', { pod: r.key, err: String(e) }));
    }, 20);
  }

  podStatus(r: PodRun): Json {
    const t = now();
    const cs = [...r.containers.values()];
    const allRunning = cs.length > 0 && cs.every((c) => c.child && c.started);
    const allReady = allRunning && cs.every((c) => c.ready);
    const policy = r.pod.spec.restartPolicy ?? 'Always';
    const terminated = cs.length > 0 && cs.every((c) => !c.child && c.state.terminated);
    let phase = 'Pending';
    if (cs.some((c) => c.started || c.restarts > 0)) phase = 'Running';
    if (terminated && policy !== 'Always') {
      const codes = cs.map((c) => c.state.terminated.exitCode as number);
      if (codes.every((x) => x === 0)) phase = 'Succeeded';
      else if (policy === 'Never') phase = 'Failed';
    }
    const prev = (r.pod.status?.conditions ?? []) as Json[];
    const cond = (type: string, ok: boolean): Json => {
      const old = prev.find((c) => c.type === type);
      const status = ok ? 'True' : 'False';
      return { type, status, lastProbeTime: null, lastTransitionTime: old && old.status === status ? old.lastTransitionTime : t };
    };
    return {
      phase,
      podIP: r.podIp, podIPs: [{ ip: r.podIp }], hostIP: this.cfg.nodeIp, startTime: r.startTime,
      qosClass: r.pod.status?.qosClass,
      conditions: [
        cond('Initialized', true), cond('Ready', allReady), cond('ContainersReady', allReady),
        prev.find((c) => c.type === 'PodScheduled') ?? { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: r.startTime },
      ],
      containerStatuses: cs.map((c) => ({
        name: c.spec.name, ready: c.ready, started: c.started, restartCount: c.restarts, image: (c.spec as Json).image ?? '', imageID: '',
        containerID: c.pid && c.started ? `kernway-lab://${c.pid}` : undefined,
        state: c.state, ...(c.lastState ? { lastState: c.lastState } : {}),
      })),
    };
  }

  private async writeStatus(r: PodRun): Promise<void> {
    if (r.removed) return;
    try {
      const pod = await this.api.mergePatch<PodObject>(`/api/v1/namespaces/${r.pod.metadata.namespace}/pods/${r.pod.metadata.name}/status`, { status: this.podStatus(r) });
      if (pod.metadata.uid === r.uid) r.pod = { ...r.pod, status: pod.status };
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 404) return;
      throw e;
    }
  }

  // ---- Termination ----

  /** SIGTERM every container, SIGKILL after the grace period, remove the pod's network and cgroups; then delete the Pod (finalDelete). */
  private async terminate(r: PodRun, graceSeconds: number, finalDelete = true): Promise<void> {
    r.terminating = true;
    this.log('terminating pod', { pod: r.key, graceSeconds });
    await Promise.all([...r.containers.values()].map(async (cr) => {
      cr.stopping = true;
      for (const t of cr.timers) clearTimeout(t);
      if (cr.restartTimer) clearTimeout(cr.restartTimer);
      const pid = cr.pid;
      if (!cr.child || !pid) return;
      const exited = new Promise<void>((res) => cr.child?.once('exit', () => res()));
      try { process.kill(pid, graceSeconds > 0 ? 'SIGTERM' : 'SIGKILL'); } catch { /* gone */ }
      const timer = new Promise<'timeout'>((res) => setTimeout(() => res('timeout'), graceSeconds * 1000));
      if ((await Promise.race([exited, timer])) === 'timeout' && pidAlive(pid)) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        await exited;
      }
    }));
    await this.writeStatus(r).catch(() => undefined);
    await this.cleanup(r);
    if (finalDelete) await this.finalDelete(r.pod);
  }

  private async finalDelete(pod: PodObject): Promise<void> {
    try {
      await this.api.delete(`/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`, {
        apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid: pod.metadata.uid },
      });
    } catch (e) {
      if (!(e instanceof KubeApiError && (e.status === 404 || e.status === 409))) this.log('pod delete failed', { pod: pod.metadata.name, err: String(e) });
    }
  }

  private async cleanup(r: PodRun): Promise<void> {
    if (r.removed) return;
    r.removed = true;
    if (r.statusTimer) clearTimeout(r.statusTimer);
    await removeCgroupTree(r.cgroup).catch((e) => this.log('cgroup removal failed', { err: String(e) }));
    if (r.hostVeth) await run('ip', ['netns', 'del', r.netns], { allowFail: true });
    if (r.ipIndex) this.usedIps.delete(r.ipIndex);
    rmSync(r.dir, { recursive: true, force: true });
    this.pods.delete(r.uid);
    this.log('pod removed', { pod: r.key });
  }

  /** Stops every pod at once (SIGKILL) and the watches; the Node object stays. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.stopInformer?.();
    for (const t of this.timers) clearInterval(t);
    await Promise.all([...this.pods.values()].map((r) => this.terminate(r, 0, false)));
    this.api.close();
  }
}

function signalNumber(sig: NodeJS.Signals): number | undefined {
  return ({ SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 } as Record<string, number>)[sig];
}

/** `kernway lab kubelet CONFIG`: runs one node's kubelet until SIGTERM. */
export async function runKubelet(configPath: string): Promise<never> {
  const cfg = JSON.parse(readFileSync(configPath, 'utf8')) as KubeletConfig;
  const k = new LabKubelet(cfg);
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => { resolveDone = r; });
  const onSignal = (): void => { void k.stop().finally(resolveDone); };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await k.start();
  k.log('kubelet started');
  await done;
  process.exit(0);
}
