/**
 * The agent's options, validated once at the door and frozen. Messages name the option.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isAbsolute } from 'node:path';
import { InvalidArgumentError, KernwayError } from '../common/errors.js';
import { parseHostPort } from '../common/host-port.js';
import { LB_MAP_NAMES, type LbCapacities } from './datapath/lb-maps.js';
import type { KubeSourceOptions } from '../sources/kube-source.js';
import { parseFeedAddress, type FeedAddress } from '../sources/feed/protocol.js';
import { DEFAULT_SERVICE_CIDR, parseServiceRange, type ServiceRange } from '../k8s/service-range.js';

export interface AgentOptions {
  /** Directory of Kubernetes manifests (standalone mode); absent: the Kubernetes API. */
  standalone?: string;
  /**
   * The Kubernetes API source (no --standalone): --kubeconfig PATH, or undefined for
   * kubectl's conventions (KUBECONFIG, ~/.kube/config, then the in-cluster configuration).
   */
  kubeconfig?: string;
  /** Timings of the Kubernetes API source (tests and benches; defaults for a real node). */
  kubeTuning?: KubeTuning;
  /** This node's name (internalTrafficPolicy: Local). */
  nodeName: string;
  /** cgroup v2 directory whose processes are balanced. */
  cgroup: string;
  /** The agent's own folder on bpffs for pins. */
  bpffs: string;
  /** Unix socket of the admin API (mode 0600). */
  adminSocket: string;
  /** Where /metrics, /healthz, /readyz listen. */
  metrics: { host: string; port: number };
  /** The BPF object (default build/bpf/sock_lb.bpf.o). */
  objectPath?: string;
  /** max_entries overrides of the maps (first start only; pinned maps keep theirs). */
  capacities: LbCapacities;
  /** Debounce of manifest changes, ms. */
  debounceMs: number;
  /** Same-node acceleration of new pod-to-pod connections (--sockmap on|off, default on). */
  sockmap: boolean;
  /** The service IP range: cluster IPs outside it are refused (--service-cidr). */
  serviceCidr: ServiceRange;
  /** L4 connection metrics from the kernel (--tcp-metrics on|off, default on; docs/metrics.md). */
  tcpMetrics: boolean;
  /** Label sets of the kernway_tcp_* metrics before the overflow series (--tcp-metrics-max-label-sets, default 2000). */
  tcpMetricsMaxLabelSets: number;
  /** Where the feed to the waypoints listens (--feed-address, repeatable): none by default. */
  feedAddresses: readonly FeedAddress[];
}

export type KubeTuning = Readonly<Pick<KubeSourceOptions, 'pageSize' | 'watchTimeoutSeconds' | 'backoff' | 'batchMs' | 'missingRetryMs'>>;

export interface RawAgentOptions {
  standalone?: unknown; kubeconfig?: unknown; nodeName?: unknown; cgroup?: unknown; bpffs?: unknown; adminSocket?: unknown;
  metricsAddress?: unknown; objectPath?: unknown; capacities?: unknown; debounceMs?: unknown; sockmap?: unknown;
  serviceCidr?: unknown; tcpMetrics?: unknown; tcpMetricsMaxLabelSets?: unknown; kubeTuning?: KubeTuning; feedAddresses?: unknown;
}

function path(name: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new InvalidArgumentError(name, 'a path', v);
  if (!isAbsolute(v) && !name.startsWith('--standalone') && name !== '--kubeconfig') throw new InvalidArgumentError(name, 'an absolute path', v);
  return v;
}

export { parseHostPort };

export function validateAgentOptions(raw: RawAgentOptions): Readonly<AgentOptions> {
  const nodeName = raw.nodeName;
  if (typeof nodeName !== 'string' || !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(nodeName)) {
    throw new InvalidArgumentError('--node-name', 'a Kubernetes node name (lowercase letters, digits, - and .)', nodeName);
  }
  const capacities: LbCapacities = {};
  if (raw.capacities !== undefined) {
    if (typeof raw.capacities !== 'object' || raw.capacities === null) throw new InvalidArgumentError('capacities', 'a map name -> entries object', raw.capacities);
    for (const [k, v] of Object.entries(raw.capacities)) {
      if (!(LB_MAP_NAMES as readonly string[]).includes(k)) throw new InvalidArgumentError(`--map-capacity ${k}`, `one of ${LB_MAP_NAMES.join(', ')}`, k);
      if (!Number.isInteger(v) || (v as number) < 1) throw new InvalidArgumentError(`--map-capacity ${k}`, 'a positive integer', v);
      capacities[k as keyof LbCapacities] = v as number;
    }
  }
  const debounceMs = raw.debounceMs ?? 20;
  if (typeof debounceMs !== 'number' || !Number.isFinite(debounceMs) || debounceMs < 0) throw new InvalidArgumentError('debounceMs', 'a number >= 0', debounceMs);
  if (raw.standalone !== undefined && raw.kubeconfig !== undefined) {
    throw new InvalidArgumentError('--kubeconfig', 'not both --standalone DIR and --kubeconfig PATH (one source)', raw.kubeconfig);
  }
  const opts: AgentOptions = {
    nodeName,
    cgroup: path('--cgroup', raw.cgroup),
    bpffs: path('--bpffs', raw.bpffs),
    adminSocket: path('--admin-socket', raw.adminSocket),
    metrics: parseHostPort('--metrics-address', raw.metricsAddress),
    capacities: Object.freeze(capacities),
    debounceMs,
    sockmap: sockmapSwitch(raw.sockmap),
    serviceCidr: parseServiceRange(raw.serviceCidr ?? DEFAULT_SERVICE_CIDR),
    tcpMetrics: onOff('--tcp-metrics', raw.tcpMetrics),
    tcpMetricsMaxLabelSets: labelSets(raw.tcpMetricsMaxLabelSets),
    feedAddresses: feedAddresses(raw.feedAddresses),
  };
  if (raw.standalone !== undefined) opts.standalone = path('--standalone', raw.standalone);
  if (raw.kubeconfig !== undefined) opts.kubeconfig = path('--kubeconfig', raw.kubeconfig);
  if (raw.kubeTuning !== undefined) opts.kubeTuning = Object.freeze({ ...raw.kubeTuning });
  if (raw.objectPath !== undefined) opts.objectPath = path('--bpf-object', raw.objectPath);
  return Object.freeze(opts);
}

/** --feed-address: a list of unix:///PATH and HOST:PORT (at most one of each kind of the same address). */
function feedAddresses(v: unknown): readonly FeedAddress[] {
  if (v === undefined) return Object.freeze([]);
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new InvalidArgumentError('--feed-address', 'unix:///PATH or HOST:PORT', v);
  const out = (v as string[]).flatMap((x) => x.split(',')).map((x) => parseFeedAddress('--feed-address', x.trim()));
  const seen = new Set<string>();
  for (const a of out) {
    if (seen.has(a.text)) throw new InvalidArgumentError('--feed-address', 'each address once', a.text);
    seen.add(a.text);
  }
  return Object.freeze(out);
}

/** --sockmap: 'on' (default) or 'off' (booleans accepted from code). */
function sockmapSwitch(v: unknown): boolean {
  return onOff('--sockmap', v);
}

/** An on|off switch, on by default (booleans accepted from code). */
function onOff(name: string, v: unknown): boolean {
  if (v === undefined || v === 'on' || v === true) return true;
  if (v === 'off' || v === false) return false;
  throw new InvalidArgumentError(name, 'on or off', v);
}

/** --tcp-metrics-max-label-sets: an integer from 1 to 1,000,000 (default 2000). */
function labelSets(v: unknown): number {
  if (v === undefined) return 2000;
  const n = typeof v === 'string' && /^[0-9]+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 1_000_000) {
    throw new InvalidArgumentError('--tcp-metrics-max-label-sets', 'an integer from 1 to 1000000', v);
  }
  return n;
}

/** Defaults for a real node. Tests always pass their own. */
export const DEFAULTS = Object.freeze({
  bpffs: '/sys/fs/bpf/kernway',
  adminSocket: '/run/kernway/admin.sock',
  metricsAddress: '0.0.0.0:9464',
});

/** The machine's cgroup2 mount point (the root cgroup), from /proc/mounts. */
export function cgroup2Root(): string {
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[2] === 'cgroup2' && f[1]) return f[1].replace(/\\040/g, ' ');
  }
  throw new KernwayError('KW_NO_CGROUP2', 'no cgroup2 filesystem is mounted (see /proc/mounts); kernway needs cgroup v2, or pass --cgroup');
}

export function defaultNodeName(): string {
  return hostname().toLowerCase();
}
