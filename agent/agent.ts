/**
 * The node agent: sources -> model -> datapath, with its admin API and metrics.
 *
 * Lifecycle (grpc-js style):
 *   start()          loads and attaches the programs (adopting pinned maps and links),
 *                    reads the manifests, reconciles, then serves admin and metrics;
 *   drain()          (first SIGTERM) stops watching and serving, closes file
 *                    descriptors: the programs stay attached and the maps pinned, so
 *                    connections keep being balanced with the last state applied;
 *   forceShutdown()  (second SIGTERM) exits at once.
 * Bad manifests never stop the agent: the last good state stays in the maps.
 */
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { KernwayError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { ServiceTableBuilder } from '../model/service-table.js';
import { BATCH, MODEL, StandaloneSource, type StandaloneSnapshot } from './standalone.js';
// The feed (gRPC) and the Kubernetes API source (client-node) are imported when used:
// together they are ~90 MiB of RSS an agent on --standalone without --feed-address never
// needs (docs/agent-model.md).
import type { FeedServer, FeedStatus } from './feed/server.js';
import { readKernelServices, type KernelService } from './datapath/inspect.js';
import { ServiceSync, type MapUsage, type ReconcileResult } from './datapath/service-sync.js';
import { checkKernel, checkSockLb, loadSockLb, type SockLb } from './datapath/sock-lb.js';
import { PolicyDatapath } from './datapath/policy.js';
import { ServiceCounterTable } from './datapath/service-counters.js';
import { Sockmap, registerSockmapMetrics, type SockmapStatus } from './datapath/sockmap.js';
import { WaypointSync, planWaypoints, type WaypointFrontend, type WpStats } from './datapath/waypoint-sync.js';
import { netnsCookiesOf } from './datapath/netns.js';
import { ScrapeMemory, releaseFreedMemory } from './datapath/memory.js';
import { WAYPOINT_POD_LABEL, waypointBindings, waypointNameOf } from '../model/waypoint-binding.js';
import { PolicyRuntime } from './datapath/policy-runtime.js';
import { ConnMetrics } from './datapath/conn-metrics.js';
import { ModelResolver, TcpMetrics } from './metrics/tcp.js';
import { PodSubset, serviceHost, workloadOf } from '../model/workload.js';
import { registerPolicyMetrics } from './datapath/policy-metrics.js';
import { addressProblems } from '../k8s/service-range.js';
import type { ObjectValidator } from '../sources/manifest-dir.js';
import type { KubeSource, KubeSourceStatus } from '../sources/kube-source.js';
// The elected agent's duties (Lease, status, waypoints) are imported with the Kubernetes API source: never on --standalone.
import type { ClusterController } from './cluster/controller.js';
import type { LeaseStatus } from './cluster/lease.js';
import type { WaypointController } from './cluster/waypoints.js';
import type { ClusterStatus } from '../k8s/gateway-status.js';
import type { Model } from '../model/types.js';
import type { Problem } from '../k8s/types.js';
import type { AgentOptions } from './options.js';
import { AdminServer } from './admin/server.js';
import { AgentMetrics } from './metrics/registry.js';
import { MetricsServer } from './metrics/server.js';
import { OwnerLock } from './datapath/lock.js';
import { ensureBpffsDir, preflight } from './preflight.js';
import { uninstallAgent } from './uninstall.js';

export type AgentState = 'starting' | 'running' | 'draining' | 'stopped';

export interface AgentStatus {
  state: AgentState;
  nodeName: string;
  cgroup: string;
  bpffs: string;
  generation: number;
  frontends: number;
  problems: Array<{ code: string; file: string; object?: string; field?: string; message: string }>;
  lastReconcile?: { at: string; ms: number; result?: ReconcileResult; error?: string };
  reusedMaps: boolean;
  /** Same-node acceleration (absent when it could not be loaded). */
  sockmap?: SockmapStatus;
  /** Service HTTP ports handed to a waypoint (docs/waypoint-handoff.md), and the kernel's counters. */
  waypoints?: { frontends: readonly WaypointFrontend[]; stats: WpStats };
  /** The Kubernetes API source: server, per-kind state, since when it is unreachable (absent with --standalone). */
  api?: KubeSourceStatus;
  /** The feed to the waypoints (absent without --feed-address). */
  feed?: FeedStatus;
  /** The status-writer Lease: who holds it, since when, whether this agent leads (absent with --standalone). */
  leader?: LeaseStatus & {
    /** Model changes that asked the status writer for a round, and those that could not change any status (EndpointSlices, Pods) and asked for none. */
    changes?: { rounds: number; skipped: number };
  };
}

/** Per-Service counters read from the kernel, summed over the Service's frontends. */
export interface ServiceCounters { service: string; balanced: number; refused: number }

export interface ReconcileObserver {
  (ev: { ms: number; result?: ReconcileResult; error?: unknown; generation: number }): void;
}

export class Agent {
  readonly opts: Readonly<AgentOptions>;
  private readonly log: Logger;
  private state: AgentState = 'starting';
  private lb: SockLb | undefined;
  private sockmap: Sockmap | undefined;
  private policy: PolicyRuntime | undefined;
  private conns: ConnMetrics | undefined;
  /** L4 metrics from the kernel's connection records (--tcp-metrics). */
  readonly tcp: TcpMetrics | undefined;
  /** Their labels from the model (incremental, built when first asked). */
  private tcpResolver: { model: Model; resolver: ModelResolver } | undefined;
  private sync: ServiceSync | undefined;
  private wpSync: WaypointSync | undefined;
  private wpNetns: { key: string; cookies: Map<string, bigint> } = { key: '', cookies: new Map() };
  private wpNetnsRetry: NodeJS.Timeout | undefined;
  /** This node's pods and the waypoints' pods, kept from the model's change sets (a burst of pods elsewhere costs little). */
  private nodePods: PodSubset | undefined;
  /** Addresses of valid kernway waypoints' pods, sorted: targets of the acceleration by default (docs/sockmap.md, rule 7). */
  private smWaypointIPs: ReadonlySet<string> = new Set();
  private readonly waypointPods = new PodSubset((p) => p.labels[WAYPOINT_POD_LABEL] !== undefined);
  /** The next snapshot updates the pod subsets from every pod (the first one). */
  private podsWhole = true;
  /** The last sockmap pod sync failed: the next snapshot tries again. */
  private sockmapStale = false;
  /** The waypoint hand-off as last applied: its problems, the Services bound; stale until a pass succeeds. */
  private wpProblems: readonly Problem[] = [];
  private wpBound = new Set<string>();
  private wpStale = true;
  private source: StandaloneSource | undefined;
  /** The Kubernetes API source (absent with --standalone). */
  private kube: KubeSource | undefined;
  private feed: FeedServer | undefined;
  /** What the elected agent writes (agent/cluster), with the Kubernetes API only; set by enableClusterDuties. */
  private computeStatus: ((model: Model) => ClusterStatus) | undefined;
  private cluster: ClusterController | undefined;
  private table: ServiceTableBuilder | undefined;
  private admin: AdminServer | undefined;
  private http: MetricsServer | undefined;
  private generation = 0;
  private problems: AgentStatus['problems'] = [];
  private lastReconcile: AgentStatus['lastReconcile'];
  private readonly observers: ReconcileObserver[] = [];
  /** The agent's metrics registry (served on --metrics-address). */
  readonly metrics: AgentMetrics;
  private drained: Promise<void> | undefined;
  /** The owner locks on --cgroup and --bpffs (agent/datapath/lock.ts), held from start to drain. */
  private readonly locks: OwnerLock[] = [];
  /** After a scrape: malloc trimmed, the heap compacted when the scrape grew it (datapath/memory.ts). */
  private readonly scrapeMemory = new ScrapeMemory();

  constructor(opts: Readonly<AgentOptions>, log: Logger) {
    this.opts = opts;
    this.log = log;
    this.metrics = new AgentMetrics({ log });
    if (opts.tcpMetrics) {
      this.tcp = new TcpMetrics(this.metrics.registry, {
        maxLabelSets: opts.tcpMetricsMaxLabelSets, kernelStats: () => this.conns?.stats(), counts: () => this.conns?.counts(),
      });
    }
    this.registerMetrics();
  }

  /**
   * With the Kubernetes API source: this agent is a candidate for the Lease
   * kernway-system/kernway-agent and, while it holds it, writes the Gateway API status
   * (computed by `computeStatus`: model/route-status.ts clusterStatusOf, the same status the
   * waypoints' routing tables are built on) and keeps the waypoints of kernway-waypoint Gateways.
   * Call before start(); ignored with --standalone.
   */
  enableClusterDuties(computeStatus: (model: Model) => ClusterStatus): void {
    this.computeStatus = computeStatus;
  }

  /** The load balancer's metrics, read from the kernel at scrape time. */
  private registerMetrics(): void {
    const m = this.metrics;
    // Both per-Service counters come from one read of the kernel's counters per scrape (one
    // lookup per frontend; with 10,000 Services, 20,000 syscalls if each metric read its own),
    // into one table every scrape reuses (agent/datapath/service-counters.ts). Their families
    // are written in parts (registry.ts inParts: a watch event or a reconcile runs between
    // them), so the table is not read again while a family is being written from it: a
    // scrape meanwhile writes the same values.
    const table = new ServiceCounterTable();
    let readFor = 0;
    const counters = (scrape: number): ServiceCounterTable => {
      if (readFor !== scrape && table.holds === 0) {
        if (this.lb && this.sync) table.read(this.sync, this.lb.maps.kw_svc_stats);
        else table.clear();
        readFor = scrape;
      }
      return table;
    };
    m.counterAtScrape({
      name: 'kernway_lb_connections_balanced_total', labelNames: ['service'], inParts: true,
      help: 'Connections (and unconnected UDP datagrams) sent to a backend by the socket load balancer, per Service (ns/name).',
      read: (scrape) => perService(counters(scrape), 'balanced'),
    });
    m.counterAtScrape({
      name: 'kernway_lb_connections_refused_total', labelNames: ['service'], inParts: true,
      help: 'connect()/sendmsg() to a Service refused (ECONNREFUSED) because it had no usable endpoint, per Service (ns/name).',
      read: (scrape) => perService(counters(scrape), 'refused'),
    });
    m.gaugeAtScrape({
      name: 'kernway_bpf_map_entries', labelNames: ['map'],
      help: 'Entries in use in a BPF map (the maps the agent writes; LRU maps are not counted).',
      read: () => this.mapUsage().map((u) => ({ labels: { map: u.name }, value: u.entries })),
    });
    m.gaugeAtScrape({
      name: 'kernway_bpf_map_max_entries', labelNames: ['map'],
      help: 'Capacity (max_entries) of a BPF map.',
      read: () => this.mapCapacities().map((u) => ({ labels: { map: u.name }, value: u.capacity })),
    });
    m.gaugeAtScrape({
      name: 'kernway_lb_frontends', help: 'Service ports (VIP, port, protocol) in the load balancer maps.',
      read: () => [{ value: this.sync?.size ?? 0 }],
    });
    m.gaugeAtScrape({
      name: 'kernway_manifest_directory_present', help: '1 while the --standalone manifest directory exists, 0 while it is gone (its last content stays in force).',
      read: () => [{ value: this.manifestDirGone ? 0 : 1 }],
    });
    m.gaugeAtScrape({
      name: 'kernway_feed_waypoints', help: 'Waypoints connected to the feed (--feed-address).',
      read: () => [{ value: this.feed?.connected ?? 0 }],
    });
    m.counterAtScrape({
      name: 'kernway_feed_nacks_total', labelNames: ['namespace'],
      help: 'Configurations refused (NACK) by waypoints, per waypoint namespace (reasons in `kernway status` and the log).',
      read: () => [...(this.feed?.nacksPerNamespace() ?? new Map<string, number>())].map(([namespace, value]) => ({ labels: { namespace }, value })),
    });
    registerSockmapMetrics(m, () => (this.sockmap ? { stats: this.sockmap.stats(), enabled: this.sockmap.enabled } : undefined));
    registerPolicyMetrics(m, () => this.policy?.engine);
    m.gaugeAtScrape({
      name: 'kernway_agent_ready', help: '1 while the agent is ready (/readyz 200: running, the last reconcile succeeded, the manifest directory present), else 0.',
      read: () => [{ value: this.ready ? 1 : 0 }],
    });
    let reconciles = 0;
    // A compaction after a scrape waits for a quiet moment (agent/datapath/memory.ts).
    this.onReconcile(() => this.scrapeMemory.changed());
    this.onReconcile((ev) => {
      const trigger = reconciles++ === 0 ? 'start' : 'change';
      m.reconcileDuration.observe({ trigger }, ev.ms / 1000);
      if (ev.error !== undefined) m.reconcileFailures.inc({ trigger });
    });
  }

  /** Called after each reconcile (metrics). */
  onReconcile(fn: ReconcileObserver): void {
    this.observers.push(fn);
  }

  get ready(): boolean {
    return this.state === 'running' && this.lastReconcile !== undefined && this.lastReconcile.error === undefined && !this.manifestDirGone;
  }

  /** The --standalone directory itself is gone (its last content stays in force). */
  private get manifestDirGone(): boolean {
    return this.problems.some((p) => p.code === 'KW_MANIFEST_DIR_GONE'); // sources/manifest-dir.ts DIR_GONE, not imported on the API path
  }

  get healthy(): boolean {
    return this.state === 'running' || this.state === 'starting';
  }

  /**
   * Start order (docs/agent.md): first everything that needs no kernel (options were
   * validated at the door; here the paths, the kernel version, the manifests, the metrics
   * and admin sockets), then the owner locks on the cgroup and the --bpffs folder, and only
   * then load and attach. A start refused before the last step has attached and pinned
   * nothing; one refused after it, on a first start, removes what it attached.
   */
  async start(): Promise<void> {
    const o = this.opts;
    await preflight(o);
    checkKernel();
    this.locks.push(OwnerLock.take(o.cgroup, '--cgroup', 'KW_CGROUP_IN_USE'));
    const created = !existsSync(o.bpffs);
    try {
      ensureBpffsDir(o.bpffs);
      this.locks.push(OwnerLock.take(o.bpffs, '--bpffs', 'KW_BPFFS_IN_USE'));
    } catch (e) {
      this.releaseLocks();
      if (created) try { rmdirSync(o.bpffs); } catch { /* not ours to remove any more */ }
      throw e;
    }
    // Nothing pinned yet: a start that fails after attaching takes everything back off.
    const fresh = readdirSync(o.bpffs).length === 0;
    let touched = false;
    let duties: { ClusterController: typeof ClusterController; WaypointController: typeof WaypointController } | undefined;
    try {
      // /healthz and /readyz answer from the start ("not ready: starting").
      this.http = new MetricsServer({ host: o.metrics.host, port: o.metrics.port, metrics: this.metrics, log: this.log,
        health: () => (this.healthy ? true : this.state), afterScrape: () => { this.scrapeMemory.afterScrape(); } });
      this.http.setReady(false, 'starting: reading the manifests and loading the programs');
      await this.http.listen();
      // The kind registry checks every object; the address rules (--service-cidr) are this agent's own.
      const validate: ObjectValidator = (obj) => addressProblems(o.serviceCidr, obj);
      if (o.standalone === undefined) {
        const { KubeSource } = await import('../sources/kube-source.js');
        if (this.computeStatus) {
          duties = { ...await import('./cluster/controller.js'), ...await import('./cluster/waypoints.js') };
        }
        this.kube = new KubeSource({ ...o.kubeTuning, kubeconfig: o.kubeconfig, nodeName: o.nodeName, log: this.log, validate });
        this.log.info({ source: this.kube.description }, 'reading the Kubernetes API; nothing is written to the kernel before every kind has synced once');
        this.http.setReady(false, `starting: syncing with ${this.kube.description}`);
      }
      this.source = new StandaloneSource(this.kube ?? o.standalone!, { log: this.log, debounceMs: o.debounceMs, validate });
      if (o.feedAddresses.length > 0) {
        const { FeedServer } = await import('./feed/server.js');
        const tcp = o.feedAddresses.some((a) => a.kind === 'tcp');
        const { KubeTokenReviewer } = tcp ? await import('./feed/token-review.js') : { KubeTokenReviewer: undefined };
        const feed = new FeedServer({
          addresses: o.feedAddresses, log: this.log, agentId: `${o.nodeName}@${new Date().toISOString()}`,
          ...(KubeTokenReviewer ? { tokenReviewer: KubeTokenReviewer.fromKubeconfig(o.kubeconfig) } : {}),
        });
        this.feed = feed;
        // Every batch of the source, the first included, in order.
        this.source.on(BATCH, (s: StandaloneSnapshot) => feed.update(s.upserted, s.deleted));
      }
      const first = await this.source.start();
      // Served once the first full state is in the feed: a waypoint that reconnects to a restarted agent
      // sooner would get an empty snapshot, drop its configuration and close its listeners.
      await this.feed?.start();
      if (o.standalone !== undefined && first.objects === 0 && first.problems.length === 0) {
        this.log.warn({ dir: o.standalone }, 'the manifest directory holds no manifests (*.yaml, *.yml, *.json) of a kind kernway reads: nothing to balance until some are added');
      }
      // Snapshots that arrive while the programs load are applied when they are (apply() waits for the maps).
      this.source.on(MODEL, (s: StandaloneSnapshot) => this.apply(s));
      this.admin = new AdminServer(o.adminSocket, { log: this.log });
      this.admin.route('GET', '/v1/services', () => this.services());
      this.admin.route('GET', '/v1/status', () => ({ ...this.status(), maps: this.mapUsage() }));
      this.admin.route('GET', '/v1/policies', () => {
        if (!this.policy) throw new KernwayError('KW_NOT_READY', 'the agent has not loaded its policy programs yet');
        return this.policy.report();
      });
      await this.admin.listen();
      if (this.state !== 'starting') throw new KernwayError('KW_STOPPED', `the agent was stopped (${this.state}) while it started`);

      // The objects checked before the kernel is touched: struct layouts against their BTF,
      // capacities, the pinned maps (reused, or migrated on an upgrade: docs/upgrade.md).
      const lbOpts = { cgroupPath: o.cgroup, bpffsDir: o.bpffs, objectPath: o.objectPath, capacities: o.capacities, log: this.log };
      checkSockLb(lbOpts).close();
      PolicyDatapath.check({ cgroupPath: o.cgroup, bpffsDir: o.bpffs }).close();

      touched = true;
      this.lb = await loadSockLb(lbOpts);
      this.sockmap = await this.loadSockmap();
      // After the balancer: the policy's connect() check must see the backend it chose.
      this.policy = await PolicyRuntime.start({ nodeName: o.nodeName, cgroupPath: o.cgroup, bpffsDir: o.bpffs, log: this.log });
      this.conns = await this.loadConnMetrics();
      this.sync = new ServiceSync(this.lb.maps, { log: this.log });
      this.wpSync = new WaypointSync(this.lb.wpMaps, this.policy.engine.datapath.maps.kw_wp_mesh);
      this.table = new ServiceTableBuilder({ nodeName: o.nodeName });
      if (this.state !== 'starting') throw new KernwayError('KW_STOPPED', `the agent was stopped (${this.state}) while it started`);
    } catch (e) {
      this.source?.close();
      await this.feed?.close();
      await this.admin?.close();
      await this.http?.close();
      this.scrapeMemory.stop();
      await this.policy?.close();
      this.conns?.close();
      this.sockmap?.close();
      this.lb?.close();
      this.sync = undefined;
      if (touched && fresh) {
        try {
          const r = uninstallAgent(o.bpffs, o.cgroup, { lockHeld: true });
          this.log.warn({ detached: r.detached.length, unpinned: r.unpinned.length }, 'start failed: what this start attached and pinned was removed');
        } catch (u) {
          this.log.error({ err: errorMessage(u) }, 'start failed and what it attached could not all be removed; run `kernway uninstall`');
        }
      }
      this.releaseLocks();
      throw e;
    }
    this.state = 'running';
    if (this.kube && this.computeStatus && duties) {
      const client = this.kube.client;
      const waypoints: WaypointController[] = [];
      this.cluster = new duties.ClusterController(client, {
        identity: o.nodeName, computeStatus: this.computeStatus, log: this.log, duties: [(m) => waypoints[0]!.reconcile(m)],
      });
      waypoints.push(new duties.WaypointController(client, this.cluster.writer, { log: this.log }));
      this.cluster.start();
    }
    this.apply(this.source.current()!);
    this.source.applied(); // the first sync's batch (every object) is not kept
    // The first sync's garbage (file text, parse trees) was freed: give malloc's pages back,
    // and the start-up code's bytecode (common/heap.ts compactHeap flushCode).
    releaseFreedMemory({ flushCode: true });
    this.scrapeMemory.settled();
    this.updateReadiness();
    this.log.info({ nodeName: o.nodeName, frontends: this.sync.size }, 'agent running');
  }

  private releaseLocks(): void {
    for (const l of this.locks.splice(0)) l.release();
  }

  /** Applies one model snapshot to the maps; a failure is logged and the last good state stays. */
  private apply(s: StandaloneSnapshot): void {
    if (!this.sync || !this.table || this.state !== 'running') return;
    const tSnapshot = performance.now();
    this.generation = s.generation;
    this.problems = s.problems.map((p) => ({ ...p }));
    this.metrics.manifestProblems.set(s.problems.length);
    const podKeys = this.podsWhole ? undefined : s.change.pods;
    this.podsWhole = false;
    this.nodePods ??= new PodSubset((p) => p.nodeName === this.opts.nodeName);
    const localMoved = this.nodePods.update(s.model.pods, podKeys);
    const wpMoved = this.waypointPods.update(s.model.pods, podKeys);
    if (localMoved || podKeys === undefined || s.change.namespaces.size > 0 || this.sockmapStale) this.syncSockmap(s);
    this.cluster?.update(s.model, s);
    this.policy?.onSnapshot(s);
    // The TCP metrics' resolver is built at its first use (a connection to label: over 10,000
    // Services x 10 endpoints it is ~0.5 s of CPU), then follows each change's pods and Services.
    if (this.tcp && (podKeys === undefined || s.change.pods.size > 0 || s.changedServices.size > 0)) {
      if (this.tcpResolver?.model !== s.model) this.tcpResolver = { model: s.model, resolver: new ModelResolver(s.model, workloadOf, serviceHost) };
      // What grew so far is labelled as the resolver has it (before this change), then it takes the change.
      this.tcp.setResolver(this.tcpResolver.resolver);
      this.tcpResolver.resolver.update(podKeys === undefined ? undefined : { pods: s.change.pods, services: s.changedServices });
    }
    const t0 = performance.now();
    try {
      // The first snapshot (and the one after a failure) is applied whole, then only what changed.
      const whole = this.lastReconcile === undefined || this.lastReconcile.error !== undefined;
      const changed = this.table.update(s.model, whole ? undefined : s.changedServices);
      let result: ReconcileResult;
      let full: string | undefined;
      let fit: ReturnType<ServiceSync['fit']> | undefined;
      try {
        result = this.sync.reconcile(this.table.table, whole ? undefined : changed);
      } catch (e) {
        if ((e as { code?: string }).code !== 'KW_MAP_FULL') throw e;
        // kw_svc is full: what goes away goes first (a reconcile writes new frontends before it
        // removes old ones, and a full map has no room for both), then the whole table again.
        const first = this.sync.reconcile(this.sync.present(this.table.table));
        try {
          result = this.sync.reconcile(this.table.table);
        } catch (e2) {
          // More Service ports than kw_svc holds: keep what is there, add what fits, name the rest.
          fit = (e2 as { code?: string }).code === 'KW_MAP_FULL' ? this.sync.fit(this.table.table) : undefined;
          if (!fit || fit.left.length === 0) throw e2;
          result = this.sync.reconcile(fit.table);
        }
        result = { ...result, removed: result.removed + first.removed, writes: result.writes + first.writes, deletes: result.deletes + first.deletes };
        if (fit === undefined) {
          this.log.info({ generation: s.generation, removedFirst: first.removed }, 'kw_svc was full: the Service ports going away were removed before the new ones were added');
        }
      }
      if (fit !== undefined) {
        const names = fit.left.slice(0, 5).map((x) => `${x.service}:${x.port}/${x.proto}`);
        full = `${fit.left.length} Service ports do not fit map kw_svc (${fit.table.size} installed): ${names.join(', ')}${fit.left.length > 5 ? ', ...' : ''}; raise its capacity (--map-capacity kw_svc=N; a pinned map keeps its size until \`kernway uninstall\`)`;
        this.problems.push({ code: 'KW_MAP_FULL', file: '', message: full });
        this.metrics.manifestProblems.set(this.problems.length);
      }
      if (whole || wpMoved || this.waypointsAffected(s)) this.applyWaypoints(s);
      for (const p of this.wpProblems) this.problems.push({ ...p });
      if (this.wpProblems.length > 0) this.metrics.manifestProblems.set(this.problems.length);
      const ms = performance.now() - t0;
      // A partial install counts as a failed reconcile: not ready, and the next one is whole.
      this.lastReconcile = { at: new Date().toISOString(), ms, result, ...(full ? { error: full } : {}) };
      if (full) this.log.error({ generation: s.generation, code: 'KW_MAP_FULL', err: full }, 'reconcile incomplete: the maps are full; what was there stays');
      if (result.skipped.length > 0) this.log.warn({ frontends: result.skipped }, 'SCTP service ports are not balanced by the socket load balancer');
      this.log.info({ generation: s.generation, ms: +ms.toFixed(2), created: result.created, changed: result.changed, removed: result.removed,
        unchanged: result.unchanged, writes: result.writes, deletes: result.deletes, problems: s.problems.length,
        snapshotMs: +(performance.now() - tSnapshot).toFixed(2), pods: s.change.pods.size }, 'reconciled');
      for (const fn of this.observers) fn({ ms, result, generation: s.generation, ...(full ? { error: full } : {}) });
      this.updateReadiness();
    } catch (e) {
      const ms = performance.now() - t0;
      this.lastReconcile = { at: new Date().toISOString(), ms, error: errorMessage(e) };
      this.log.error({ generation: s.generation, code: (e as { code?: string }).code, err: errorMessage(e) }, 'reconcile failed; the maps keep the last good state');
      for (const fn of this.observers) fn({ ms, error: e, generation: s.generation });
      this.updateReadiness();
    }
  }

  /**
   * Whether a snapshot can change the waypoint hand-off: Gateways, classes or namespaces
   * changed, or a changed Service is (or was) bound to a waypoint. Other changes (a slice of
   * an unbound Service, a burst of pods) skip the pass over every Service.
   */
  private waypointsAffected(s: StandaloneSnapshot): boolean {
    const c = s.change;
    if (this.wpStale || c.gateways.size > 0 || c.gatewayClasses.size > 0 || c.namespaces.size > 0) return true;
    for (const key of s.changedServices) {
      if (this.wpBound.has(key)) return true;
      const svc = s.model.services.get(key);
      if (svc && waypointNameOf(svc, s.model) !== undefined) return true;
    }
    return false;
  }

  /** Service HTTP ports bound to a waypoint: to its pods at connect(), or refused (docs/waypoint-handoff.md). */
  private applyWaypoints(s: StandaloneSnapshot): void {
    if (!this.wpSync || !this.sync) return;
    this.wpStale = true;
    const b = waypointBindings(s.model, this.waypointPods.pods.values());
    this.wpProblems = b.problems;
    this.wpBound = new Set(b.services.keys());
    const plan = planWaypoints(this.sync.frontends(), b, { canWriteHeader: this.sockmap !== undefined, exempt: this.waypointNetns(b.waypointPodIPs) });
    // The waypoints whose pods may receive redirected bytes (docs/sockmap.md, rule 7): the valid ones.
    const invalid = new Set([...b.waypoints.values()].filter((w) => !w.valid).flatMap((w) => w.podIPs));
    const wpIPs = [...b.waypointPodIPs].filter((ip) => !invalid.has(ip)).sort();
    if (wpIPs.join(',') !== [...this.smWaypointIPs].join(',')) {
      this.smWaypointIPs = new Set(wpIPs);
      this.syncSockmap(s);
    }
    const r = this.wpSync.apply(plan);
    this.wpStale = false;
    if (r.writes + r.deletes > 0) {
      this.log.info({ generation: s.generation, bound: plan.frontends.length, refused: plan.frontends.filter((f) => f.pods.length === 0).length,
        writes: r.writes, deletes: r.deletes }, 'waypoint hand-off updated');
    }
  }

  /**
   * Network namespace cookies of this node's waypoint pods (never redirected), found among
   * the processes of the agent's cgroup tree; rescanned when the set changes, and every 2 s
   * while a pod's namespace is not found yet (its process not started).
   */
  private waypointNetns(waypointIPs: ReadonlySet<string>): bigint[] {
    const local = new Set<string>();
    for (const p of this.nodePods?.pods.values() ?? []) {
      for (const ip of p.podIPs) if (waypointIPs.has(ip)) local.add(ip);
    }
    const key = [...local].sort().join(',');
    if (key !== this.wpNetns.key || this.wpNetns.cookies.size < local.size) {
      this.wpNetns = { key, cookies: netnsCookiesOf(this.opts.cgroup, local) };
      if (this.wpNetns.cookies.size < local.size && !this.wpNetnsRetry) {
        this.wpNetnsRetry = setTimeout(() => {
          this.wpNetnsRetry = undefined;
          const cur = this.source?.current();
          if (cur && this.state === 'running') this.applyWaypoints(cur);
        }, 2000);
        this.wpNetnsRetry.unref();
      }
    }
    return [...new Set(this.wpNetns.cookies.values())];
  }

  /**
   * Same-node acceleration is an accelerator: when it cannot be loaded (kernel without
   * sockmap, missing object), the agent says so and balances without it.
   */
  private async loadSockmap(): Promise<Sockmap | undefined> {
    const o = this.opts;
    try {
      return await Sockmap.load({ cgroupPath: o.cgroup, bpffsDir: o.bpffs, enabled: o.sockmap, log: this.log });
    } catch (e) {
      this.log.error({ code: (e as { code?: string }).code, err: errorMessage(e) }, 'same-node acceleration unavailable; connections take the TCP/IP stack');
      return undefined;
    }
  }

  /**
   * L4 metrics are an observer: when the program cannot be loaded (a kernel without
   * per-CPU hashes or socket storage, a pinned map of another layout), the agent says so
   * and runs without them.
   */
  private async loadConnMetrics(): Promise<ConnMetrics | undefined> {
    const o = this.opts;
    const tcp = this.tcp;
    if (!tcp) return undefined;
    try {
      const conns = await ConnMetrics.load({ cgroupPath: o.cgroup, bpffsDir: o.bpffs, log: this.log });
      // What a previous agent counted is where this one starts (its series began with it).
      tcp.sync(conns.countsAtLoad, true);
      return conns;
    } catch (e) {
      this.log.error({ code: (e as { code?: string }).code, err: errorMessage(e) }, 'L4 connection metrics unavailable (kernway_tcp_* stay empty)');
      return undefined;
    }
  }

  /** The local pods of the snapshot into the acceleration's pod map (new connections only). */
  private syncSockmap(s: StandaloneSnapshot): void {
    if (!this.sockmap) return;
    try {
      this.sockmapStale = true;
      // kernway's own waypoints read as rule 7 of docs/sockmap.md wants: their sockets may receive redirected bytes.
      const r = this.sockmap.syncFromModel({ pods: this.nodePods!.pods, namespaces: s.model.namespaces }, this.opts.nodeName, this.smWaypointIPs);
      this.sockmapStale = false;
      if (r) this.log.info({ generation: s.generation, ...r }, 'sockmap local pods updated');
    } catch (e) {
      this.log.error({ generation: s.generation, code: (e as { code?: string }).code, err: errorMessage(e) }, 'sockmap local pods not updated');
    }
  }

  /** Ready: running, and the maps hold the latest desired state (the last reconcile succeeded). */
  private updateReadiness(): void {
    if (!this.http) return;
    if (this.ready) this.http.setReady(true);
    else if (this.lastReconcile?.error) this.http.setReady(false, `the last reconcile failed (the maps keep the previous state): ${this.lastReconcile.error}`);
    else if (this.manifestDirGone) this.http.setReady(false, `the manifest directory ${this.opts.standalone} is gone; the last state read from it stays in force`);
    else this.http.setReady(false, this.state);
  }

  /** Where /metrics listens (the port actually bound, when 0 was asked). */
  metricsAddress(): { host: string; port: number } | undefined {
    try { return this.http?.address(); } catch { return undefined; }
  }

  /** What the kernel balances, read from the maps, with the Service names the agent knows. */
  services(): KernelService[] {
    if (!this.lb || !this.sync) throw new KernwayError('KW_NOT_READY', 'the agent has not loaded its maps yet');
    const names = new Map<number, { service?: string; portName?: string }>();
    for (const f of this.sync.frontends()) {
      const n: { service?: string; portName?: string } = {};
      if (f.service !== undefined) n.service = f.service;
      if (f.portName !== undefined) n.portName = f.portName;
      names.set(f.svcId, n);
    }
    return readKernelServices(this.lb.maps, names, this.lb.wpMaps.kw_wp_svc);
  }

  /** Kernel counters per Service (summed over its frontends), read now. */
  counters(): ServiceCounters[] {
    if (!this.lb || !this.sync) return [];
    const t = new ServiceCounterTable();
    t.read(this.sync, this.lb.maps.kw_svc_stats);
    const out: ServiceCounters[] = [];
    for (let i = 0; i < t.size; i++) out.push({ service: t.service(i), balanced: t.balanced(i), refused: t.refused(i) });
    return out;
  }

  /** Entries in use and capacity of each map. */
  mapUsage(): MapUsage[] {
    if (!this.lb || !this.sync) return [];
    const usage = this.sync.usage();
    for (const name of ['kw_svc_stats', 'kw_affinity', 'kw_revnat'] as const) {
      const info = this.lb.maps[name].info();
      // LRU maps are not counted (walking them costs); the stats array is always full.
      usage.push({ name, entries: name === 'kw_svc_stats' ? this.sync.size : -1, capacity: info.maxEntries });
    }
    return usage.filter((u) => u.entries >= 0);
  }

  mapCapacities(): Array<{ name: string; capacity: number }> {
    if (!this.lb) return [];
    return Object.entries(this.lb.maps).map(([name, m]) => ({ name, capacity: m.info().maxEntries }));
  }

  status(): AgentStatus {
    const st: AgentStatus = {
      state: this.state, nodeName: this.opts.nodeName, cgroup: this.opts.cgroup, bpffs: this.opts.bpffs,
      generation: this.generation, frontends: this.sync?.size ?? 0, problems: this.problems, reusedMaps: this.lb?.reusedMaps ?? false,
    };
    if (this.lastReconcile) st.lastReconcile = this.lastReconcile;
    if (this.sockmap) st.sockmap = this.sockmap.status();
    if (this.wpSync && this.wpSync.frontends.length > 0) st.waypoints = { frontends: this.wpSync.frontends, stats: this.wpSync.stats() };
    if (this.kube) st.api = this.kube.status();
    if (this.cluster) st.leader = { ...this.cluster.elector.status(), changes: { ...this.cluster.changes } };
    if (this.feed) st.feed = this.feed.status();
    return st;
  }

  /** Stops watching and closes our descriptors; programs and maps stay pinned. Idempotent. */
  drain(): Promise<void> {
    if (this.drained) return this.drained;
    this.state = 'draining';
    if (this.wpNetnsRetry) clearTimeout(this.wpNetnsRetry);
    this.drained = (async () => {
      this.http?.setReady(false, 'draining');
      this.source?.close();
      await this.feed?.close();
      // A leader releases the Lease: the next agent takes over at once.
      await this.cluster?.stop().catch((e: unknown) => this.log.warn({ err: errorMessage(e) }, 'leader election: stop failed'));
      await this.admin?.close();
      await this.http?.close();
      await this.policy?.close();
      this.conns?.close();
      this.sockmap?.close();
      this.lb?.close();
      this.releaseLocks();
      this.state = 'stopped';
      this.log.info({ bpffs: this.opts.bpffs }, 'agent stopped; programs stay attached and maps pinned');
    })();
    return this.drained;
  }
}

/**
 * One sample per Service, one object given again and again (the metrics writer keeps nothing of
 * it), and one iterator result too: a generator's `{ value, done }` per step is ~56 bytes of
 * garbage each without V8's top tier (the agent), 20,000 per scrape of 10,000 Services.
 */
function perService(t: ServiceCounterTable, which: 'balanced' | 'refused'): Iterable<{ labels: { service: string }; value: number }> {
  const s = { labels: { service: '' }, value: 0 };
  const step: IteratorResult<typeof s, undefined> = { done: false, value: s };
  const end: IteratorResult<typeof s, undefined> = { done: true, value: undefined };
  let i = 0;
  // The table is held (not read again) from now until the samples are all written or given up.
  let held = true;
  t.holds++;
  const release = (): IteratorResult<typeof s, undefined> => {
    if (held) { held = false; t.holds--; }
    return end;
  };
  const it: Iterator<typeof s, undefined> & Iterable<typeof s> = {
    next: () => {
      if (i >= t.size) return release();
      s.labels.service = t.service(i);
      s.value = which === 'balanced' ? t.balanced(i) : t.refused(i);
      i++;
      return step;
    },
    return: release,
    [Symbol.iterator]: () => it,
  };
  return it;
}
