/**
 * Endpoints: the pods of this node, as the kernel sees them. For each one the manager
 * finds the host-side veth (the node namespace's route to the pod's address must be a
 * host route through a veth), attaches the tc programs of bpf/tc_pod.bpf.c to it, keeps
 * kw_lxc (veth -> endpoint, identity), kw_netns (pod network namespace cookie -> endpoint)
 * and kw_cgrp (pod cgroup -> endpoint) up to date, and detaches when the pod goes away.
 *
 * A pod's network namespace is found among the processes of the agent's cgroup tree by
 * the pod's address (netns.ts); while a pod's is not found (no process in it yet) the
 * search is retried with backoff (50 ms doubling to 5 s), and every known one is checked
 * again at each full resync.
 *
 * Directions, from the pod's point of view: kw_to_pod (traffic into the pod) is attached
 * at the host veth's tc EGRESS, kw_from_pod (traffic from the pod) at its tc INGRESS.
 *
 * How new pods are picked up: a pod's manifest gives the manager its address; the veth
 * may come before or after. `ip monitor link route address` runs in the node namespace for the
 * manager's lifetime, and any link or route event triggers a reconcile (debounced by a
 * few milliseconds), so a veth that appears after the manifest is attached within
 * milliseconds. Pods still without a veth are retried with backoff (50 ms doubling to
 * 2 s) in case an event is missed, and everything is resynced every 30 s.
 *
 * Links are pinned under <bpffs>/policy/tc/<ifindex>-<to|from>: an agent restart keeps
 * them attached, and the next agent adopts them (updating their program in place).
 */
import { spawn, type ChildProcess, execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { KernwayError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { BpfLink, type BpfMap, type BpfProgram } from '../../native/index.js';
import {
  decodeEpStats, encodeCgroupId, encodeCgrpVal, encodeLxcVal, encodeU32, type EndpointCounters,
} from './policy-codec.js';
import { netnsCookiesOf } from './netns.js';

/** Annotation naming a pod's cgroup, relative to the agent's cgroup (standalone mode, where no kubelet names it). */
export const CGROUP_ANNOTATION = 'kernway.io/cgroup';

export interface LocalPod {
  /** 'ns/name' */
  key: string;
  /** Canonical addresses, primary first. */
  ips: readonly string[];
  identity: number;
  uid?: string;
  annotations?: Readonly<Record<string, string>>;
}

export type EndpointStatus = 'pending' | 'attached';

export interface EndpointInfo {
  key: string;
  epId: number;
  identity: number;
  ips: readonly string[];
  status: EndpointStatus;
  ifname?: string;
  ifindex?: number;
  cgroup?: string;
  /** Its network namespace cookie (decimal), once found. */
  netns?: string;
  /** Milliseconds from the pod's first appearance to its tc programs attached. */
  pickupMs?: number;
  /** Why it is pending, when it is. */
  reason?: string;
}

export interface EndpointManagerOptions {
  /** kw_netns: without it, pods are known at connect() by their cgroup only. */
  maps: { kw_lxc: BpfMap; kw_cgrp: BpfMap; kw_ep_stats: BpfMap; kw_netns?: BpfMap };
  programs: { toPod: BpfProgram; fromPod: BpfProgram };
  /** Folder for the tc link pins (<bpffs>/policy/tc). */
  tcPinDir: string;
  /** Network namespace of the pod veths (a path); default: the agent's own. */
  netns?: string;
  /**
   * Where pod cgroups and pods' processes live (the agent's --cgroup); without it, local
   * clients are only checked at the destination's tc.
   */
  cgroupRoot?: string;
  log?: Logger;
  /** Full resync period (default 30 s). */
  resyncMs?: number;
  /** Reacts to `ip monitor` events (default true). */
  watch?: boolean;
  /** Called with the node namespace's own addresses when they are first read and whenever they change. */
  onHostAddresses?: (ips: readonly string[]) => void;
}

interface Endpoint {
  pod: LocalPod;
  epId: number;
  firstSeen: number;
  ifindex?: number;
  ifname?: string;
  links?: { to: BpfLink; from: BpfLink };
  cgroupId?: bigint;
  cgroupPath?: string;
  /** The kw_cgrp value written, to rewrite only on change. */
  cgrpValue?: string;
  /** The pod's network namespace cookie, once found, and the kw_netns value written. */
  netns?: bigint;
  netnsValue?: string;
  pickupMs?: number;
  reason?: string;
  retryMs: number;
  retryAt: number;
}

interface VethView {
  /** Pod address -> host route device. */
  routes: Map<string, string>;
  /** veth name -> ifindex. */
  veths: Map<string, number>;
  /** The node namespace's own addresses (scope global), sorted. */
  hostAddrs: string[];
}

const MIN_RETRY_MS = 50;
const MAX_RETRY_MS = 2000;
const NETNS_MAX_RETRY_MS = 5000;

export class EndpointManager {
  private readonly opts: EndpointManagerOptions;
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly freeIds: number[] = [];
  private nextId = 1;
  private readonly maxId: number;
  private seedIds = new Map<string, number>();
  /** Pinned links found at start, by ifindex, until an endpoint adopts them. */
  private readonly orphanLinks = new Map<number, { to?: BpfLink; from?: BpfLink }>();
  private firstReconcileDone = false;
  /** No reconcile before the first setPods(): it would take every adopted link for a pod that is gone. */
  private podsKnown = false;
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private monitor: ChildProcess | undefined;
  private closed = false;
  private readonly zeroStats: Buffer;
  private hostAddrs: string | undefined;
  /** Backoff of the search for pods' network namespaces not found yet; the next full check of the known ones. */
  private netnsRetryMs = MIN_RETRY_MS;
  private netnsRetryAt = 0;
  private netnsCheckAt = 0;

  constructor(opts: EndpointManagerOptions) {
    this.opts = opts;
    this.maxId = opts.maps.kw_ep_stats.info().maxEntries - 1;
    this.zeroStats = Buffer.alloc(opts.maps.kw_ep_stats.valueBytes);
    mkdirSync(opts.tcPinDir, { recursive: true });
  }

  /** Adopts pinned links of an earlier agent, starts watching links and routes. */
  start(): void {
    for (const name of readdirSync(this.opts.tcPinDir)) {
      const m = /^([0-9]+)-(to|from)$/.exec(name);
      const path = join(this.opts.tcPinDir, name);
      if (!m) continue;
      try {
        const link = BpfLink.openPinned(path);
        const ifindex = Number(m[1]);
        const o = this.orphanLinks.get(ifindex) ?? {};
        o[m[2] as 'to' | 'from'] = link;
        this.orphanLinks.set(ifindex, o);
      } catch (e) {
        this.opts.log?.warn({ pin: path, err: errorMessage(e) }, 'endpoints: cannot open a pinned tc link; removing the pin');
        rmSync(path, { force: true });
      }
    }
    if (this.opts.watch !== false) this.startMonitor();
    const resync = this.opts.resyncMs ?? 30_000;
    this.resyncTimer = setInterval(() => this.schedule(0), resync);
    this.resyncTimer.unref();
  }

  /** After a restart: pod address -> endpoint id, as kw_ident holds it, to keep ids (and counters). */
  seed(entries: Iterable<{ ip: string; epId: number }>): void {
    for (const { ip, epId } of entries) if (epId > 0 && epId <= this.maxId) this.seedIds.set(ip, epId);
  }

  /**
   * The pods that should be endpoints now. Returns each one's endpoint id (assigned at
   * once, before its veth is found, so the address map can carry it). Attaching happens
   * in the background; `settled()` waits for it.
   */
  setPods(pods: readonly LocalPod[]): ReadonlyMap<string, number> {
    const want = new Map(pods.map((p) => [p.key, p]));
    const now = performance.now();
    this.podsKnown = true;
    for (const [key, ep] of this.endpoints) {
      if (!want.has(key)) this.remove(ep);
    }
    for (const pod of pods) {
      const ep = this.endpoints.get(pod.key);
      if (ep) {
        if (ep.pod.uid !== pod.uid) this.forgetNetns(ep); // another pod under the same name: another namespace
        if (ep.pod.identity !== pod.identity || ep.pod.ips.join() !== pod.ips.join()) {
          ep.pod = pod;
          if (ep.ifindex !== undefined) this.writeLxc(ep);
          ep.retryMs = MIN_RETRY_MS;
          ep.retryAt = 0;
        } else {
          ep.pod = pod;
        }
        continue;
      }
      const { id: epId, seeded } = this.allocId(pod.ips);
      // A fresh id starts from zero; a seeded one (a restart) keeps counting where it was.
      if (!seeded) this.opts.maps.kw_ep_stats.update(encodeU32(epId), this.zeroStats);
      this.endpoints.set(pod.key, { pod, epId, firstSeen: now, retryMs: MIN_RETRY_MS, retryAt: 0 });
    }
    this.seedIds.clear();
    this.schedule(0);
    const ids = new Map<string, number>();
    for (const [key, ep] of this.endpoints) ids.set(key, ep.epId);
    return ids;
  }

  /** Resolves when the reconcile in progress (and any it queued) is done. */
  async settled(): Promise<void> {
    while (this.running || this.timer) {
      if (this.timer) { clearTimeout(this.timer); this.timer = undefined; this.running ??= this.run(); }
      await this.running;
    }
  }

  list(): EndpointInfo[] {
    return [...this.endpoints.values()].map((ep) => {
      const info: EndpointInfo = { key: ep.pod.key, epId: ep.epId, identity: ep.pod.identity, ips: ep.pod.ips, status: ep.links ? 'attached' : 'pending' };
      if (ep.ifname !== undefined) info.ifname = ep.ifname;
      if (ep.ifindex !== undefined) info.ifindex = ep.ifindex;
      if (ep.cgroupPath !== undefined) info.cgroup = ep.cgroupPath;
      if (ep.netns !== undefined) info.netns = ep.netns.toString();
      if (ep.pickupMs !== undefined) info.pickupMs = ep.pickupMs;
      if (!ep.links && ep.reason) info.reason = ep.reason;
      return info;
    });
  }

  /** Counters of each endpoint, summed over CPUs, by pod key. */
  counters(): Map<string, EndpointCounters> {
    const out = new Map<string, EndpointCounters>();
    for (const [key, ep] of this.endpoints) {
      const v = this.opts.maps.kw_ep_stats.lookup(encodeU32(ep.epId));
      if (v) out.set(key, decodeEpStats(v));
    }
    return out;
  }

  /** Stops watching; closes our fds. The tc links stay attached through their pins. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.timer = undefined;
    this.stopMonitor();
    await this.running;
    for (const ep of this.endpoints.values()) { ep.links?.to.close(); ep.links?.from.close(); }
    for (const o of this.orphanLinks.values()) { o.to?.close(); o.from?.close(); }
  }

  /** Detaches every endpoint's programs and removes their pins and map entries (uninstall, tests). */
  async detachAll(): Promise<void> {
    await this.settled();
    for (const ep of [...this.endpoints.values()]) this.remove(ep);
    this.dropOrphans();
  }

  // ---------------------------------------------------------------- reconcile

  private schedule(delayMs: number): void {
    if (this.closed) return;
    if (this.running) { this.again = true; return; }
    if (this.timer) {
      if (delayMs > 0) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.run();
    }, delayMs);
  }

  private async run(): Promise<void> {
    try {
      do {
        this.again = false;
        await this.reconcile();
      } while (this.again && !this.closed);
    } catch (e) {
      this.opts.log?.error({ err: errorMessage(e) }, 'endpoints: reconcile failed; retrying');
      this.again = false;
      this.running = undefined;
      this.schedule(MAX_RETRY_MS);
      return;
    }
    this.running = undefined;
    // Retry pods still without a veth, or without a network namespace found, with backoff.
    let next = Infinity;
    for (const ep of this.endpoints.values()) if (!ep.links) next = Math.min(next, ep.retryAt);
    if (this.netnsMissing()) next = Math.min(next, this.netnsRetryAt);
    if (next !== Infinity && !this.closed) this.schedule(Math.max(0, next - performance.now()));
  }

  private async reconcile(): Promise<void> {
    if (this.closed || !this.podsKnown) return;
    const view = await this.readVeths();
    if (this.closed) return;
    const host = view.hostAddrs.join(',');
    if (host !== this.hostAddrs) {
      this.hostAddrs = host;
      try { this.opts.onHostAddresses?.(view.hostAddrs); } catch (e) { this.opts.log?.warn({ err: errorMessage(e) }, 'endpoints: host address update failed'); }
    }
    const now = performance.now();
    const claimed = new Set<number>();
    for (const ep of this.endpoints.values()) {
      let dev: string | undefined;
      for (const ip of ep.pod.ips) { dev = view.routes.get(ip); if (dev) break; }
      const ifindex = dev === undefined ? undefined : view.veths.get(dev);
      if (ifindex === undefined) {
        if (ep.links) this.detach(ep, 'its veth is gone');
        ep.reason = dev === undefined ? `no host route to ${ep.pod.ips.join(', ')} in the node namespace yet` : `the route to the pod goes through ${dev}, which is not a veth`;
        if (now >= ep.retryAt) { ep.retryAt = now + ep.retryMs; ep.retryMs = Math.min(MAX_RETRY_MS, ep.retryMs * 2); }
        continue;
      }
      claimed.add(ifindex);
      if (ep.links && ep.ifindex === ifindex) continue;
      if (ep.links) this.detach(ep, 'its veth changed');
      ep.ifindex = ifindex;
      ep.ifname = dev;
      try {
        this.attach(ep);
      } catch (e) {
        ep.reason = `attaching to ${dev} failed: ${errorMessage(e)}`;
        this.opts.log?.warn({ pod: ep.pod.key, veth: dev, err: errorMessage(e) }, 'endpoints: attach failed; will retry');
        ep.retryAt = now + ep.retryMs;
        ep.retryMs = Math.min(MAX_RETRY_MS, ep.retryMs * 2);
        continue;
      }
    }
    for (const ep of this.endpoints.values()) this.syncCgroup(ep);
    this.syncNetns();
    if (!this.firstReconcileDone) {
      this.firstReconcileDone = true;
      this.dropOrphans();
      this.dropStaleEntries();
    }
  }

  private attach(ep: Endpoint): void {
    const ifindex = ep.ifindex!;
    // Map entry first: the programs act on the veth's first packet.
    this.writeLxc(ep);
    const adopted = this.orphanLinks.get(ifindex);
    this.orphanLinks.delete(ifindex);
    const pinTo = join(this.opts.tcPinDir, `${ifindex}-to`);
    const pinFrom = join(this.opts.tcPinDir, `${ifindex}-from`);
    const link = (have: BpfLink | undefined, prog: BpfProgram, dir: 'ingress' | 'egress', pin: string): BpfLink => {
      if (have) {
        try {
          have.update(prog);
          return have;
        } catch {
          // Defunct (its interface was replaced): start over.
          try { have.close(); } catch { /* ignore */ }
          rmSync(pin, { force: true });
        }
      }
      rmSync(pin, { force: true });
      const l = prog.attachTc(ifindex, dir, this.opts.netns ? { netns: this.opts.netns } : {});
      if (l.kind === 'link') l.pin(pin);
      return l;
    };
    const to = link(adopted?.to, this.opts.programs.toPod, 'egress', pinTo);
    let from: BpfLink;
    try {
      from = link(adopted?.from, this.opts.programs.fromPod, 'ingress', pinFrom);
    } catch (e) {
      detachQuietly(to, pinTo);
      throw e;
    }
    ep.links = { to, from };
    ep.reason = undefined;
    ep.pickupMs ??= +(performance.now() - ep.firstSeen).toFixed(1);
    this.opts.log?.info({ pod: ep.pod.key, veth: ep.ifname, ifindex, endpoint: ep.epId, identity: ep.pod.identity, pickupMs: ep.pickupMs, adopted: adopted !== undefined },
      'endpoint attached');
  }

  private detach(ep: Endpoint, why: string): void {
    if (ep.links) {
      detachQuietly(ep.links.to, join(this.opts.tcPinDir, `${ep.ifindex}-to`));
      detachQuietly(ep.links.from, join(this.opts.tcPinDir, `${ep.ifindex}-from`));
      ep.links = undefined;
      this.opts.log?.info({ pod: ep.pod.key, veth: ep.ifname, why }, 'endpoint detached');
    }
    if (ep.ifindex !== undefined) this.opts.maps.kw_lxc.delete(encodeU32(ep.ifindex));
    ep.ifindex = undefined;
    ep.ifname = undefined;
  }

  private remove(ep: Endpoint): void {
    this.detach(ep, 'the pod is gone');
    if (ep.cgroupId !== undefined) this.opts.maps.kw_cgrp.delete(encodeCgroupId(ep.cgroupId));
    this.forgetNetns(ep);
    this.endpoints.delete(ep.pod.key);
    this.freeIds.push(ep.epId);
  }

  private writeLxc(ep: Endpoint): void {
    this.opts.maps.kw_lxc.update(encodeU32(ep.ifindex!), encodeLxcVal({ epId: ep.epId, id: ep.pod.identity }));
  }

  /** Finds the pod's cgroup and keeps its kw_cgrp entry current. */
  private syncCgroup(ep: Endpoint): void {
    const root = this.opts.cgroupRoot;
    if (!root) return;
    if (ep.cgroupPath === undefined || !existsSync(ep.cgroupPath)) {
      if (ep.cgroupId !== undefined) { this.opts.maps.kw_cgrp.delete(encodeCgroupId(ep.cgroupId)); ep.cgroupId = undefined; ep.cgrpValue = undefined; }
      const path = findPodCgroup(root, ep.pod);
      if (!path) return;
      ep.cgroupPath = path;
      ep.cgroupId = statSync(path, { bigint: true }).ino;
    }
    const v = podValue(ep);
    const hexv = v.toString('hex');
    if (ep.cgrpValue === hexv) return;
    this.opts.maps.kw_cgrp.update(encodeCgroupId(ep.cgroupId!), v);
    ep.cgrpValue = hexv;
  }

  private netnsMissing(): boolean {
    if (!this.opts.maps.kw_netns || !this.opts.cgroupRoot) return false;
    for (const ep of this.endpoints.values()) if (ep.netns === undefined) return true;
    return false;
  }

  /**
   * Finds the network namespaces of pods whose namespace is not known yet (with backoff),
   * and of every pod at each full resync, among the processes of the cgroup tree; keeps
   * their kw_netns entries current.
   */
  private syncNetns(): void {
    const map = this.opts.maps.kw_netns;
    const root = this.opts.cgroupRoot;
    if (!map || !root) return;
    const now = performance.now();
    const checkAll = now >= this.netnsCheckAt;
    const search = checkAll || now >= this.netnsRetryAt ? [...this.endpoints.values()].filter((ep) => checkAll || ep.netns === undefined) : [];
    if (search.length > 0) {
      const found = netnsCookiesOf(root, search.flatMap((ep) => ep.pod.ips));
      for (const ep of search) {
        let cookie: bigint | undefined;
        for (const ip of ep.pod.ips) { cookie = found.get(ip); if (cookie !== undefined) break; }
        if (cookie !== ep.netns) this.forgetNetns(ep);
        ep.netns = cookie;
      }
      if (checkAll) this.netnsCheckAt = now + (this.opts.resyncMs ?? 30_000);
      const missing = search.some((ep) => ep.netns === undefined);
      this.netnsRetryMs = missing ? Math.min(NETNS_MAX_RETRY_MS, this.netnsRetryMs * 2) : MIN_RETRY_MS;
      this.netnsRetryAt = now + this.netnsRetryMs;
    }
    for (const ep of this.endpoints.values()) {
      if (ep.netns === undefined) continue;
      const v = podValue(ep);
      const hexv = v.toString('hex');
      if (ep.netnsValue === hexv) continue;
      map.update(encodeCgroupId(ep.netns), v);
      ep.netnsValue = hexv;
    }
  }

  private forgetNetns(ep: Endpoint): void {
    if (ep.netns !== undefined) this.opts.maps.kw_netns?.delete(encodeCgroupId(ep.netns));
    ep.netns = undefined;
    ep.netnsValue = undefined;
  }

  private dropOrphans(): void {
    for (const [ifindex, o] of this.orphanLinks) {
      if (o.to) detachQuietly(o.to, join(this.opts.tcPinDir, `${ifindex}-to`));
      if (o.from) detachQuietly(o.from, join(this.opts.tcPinDir, `${ifindex}-from`));
      this.opts.log?.info({ ifindex }, 'endpoints: detached a pinned tc link no pod claims');
    }
    this.orphanLinks.clear();
  }

  /** kw_lxc and kw_cgrp entries an earlier agent left for pods that are gone. */
  private dropStaleEntries(): void {
    const lxc = new Set<number>();
    const cg = new Set<bigint>();
    for (const ep of this.endpoints.values()) {
      if (ep.ifindex !== undefined) lxc.add(ep.ifindex);
      if (ep.cgroupId !== undefined) cg.add(ep.cgroupId);
    }
    for (const k of [...this.opts.maps.kw_lxc.keys()]) if (!lxc.has(k.readUInt32LE(0))) this.opts.maps.kw_lxc.delete(k);
    for (const k of [...this.opts.maps.kw_cgrp.keys()]) if (!cg.has(k.readBigUInt64LE(0))) this.opts.maps.kw_cgrp.delete(k);
    const ns = new Set<bigint>();
    for (const ep of this.endpoints.values()) if (ep.netns !== undefined) ns.add(ep.netns);
    const nsMap = this.opts.maps.kw_netns;
    if (nsMap) for (const k of [...nsMap.keys()]) if (!ns.has(k.readBigUInt64LE(0))) nsMap.delete(k);
  }

  private allocId(ips: readonly string[]): { id: number; seeded: boolean } {
    const used = new Set([...this.endpoints.values()].map((e) => e.epId));
    for (const ip of ips) {
      const s = this.seedIds.get(ip);
      if (s !== undefined && !used.has(s)) {
        const i = this.freeIds.indexOf(s);
        if (i >= 0) this.freeIds.splice(i, 1);
        return { id: s, seeded: true };
      }
    }
    const seededIds = new Set(this.seedIds.values());
    while (this.freeIds.length > 0) {
      const id = this.freeIds.shift()!;
      if (!used.has(id)) return { id, seeded: false };
    }
    // Skip ids in use, and ids a restarted agent will give back to their pods in this same pass.
    while (this.nextId <= this.maxId && (used.has(this.nextId) || seededIds.has(this.nextId))) this.nextId++;
    if (this.nextId > this.maxId) throw new KernwayError('KW_ENDPOINTS_FULL', `more than ${this.maxId} pods on this node; raise the kw_ep_stats capacity`);
    return { id: this.nextId++, seeded: false };
  }

  // ---------------------------------------------------------------- the node namespace

  private command(args: string[]): [string, string[]] {
    return this.opts.netns ? ['nsenter', [`--net=${this.opts.netns}`, '--', ...args]] : [args[0]!, args.slice(1)];
  }

  /**
   * Host routes and veths of the node namespace: one `ip -batch` process (IPv4 routes and
   * veths), and a second one for IPv6 routes only when some pod has no IPv4 address.
   */
  private async readVeths(): Promise<VethView> {
    const needV6 = [...this.endpoints.values()].some((ep) => !ep.pod.ips.some((ip) => !ip.includes(':')));
    const main = await this.ip(['-j', '-batch', '-'], 'route show\nlink show type veth\naddr show\n');
    const [r4, links, addrs] = main as [Array<{ dst?: string; dev?: string }>, Array<{ ifname: string; ifindex: number }>,
      Array<{ addr_info?: Array<{ local?: string; scope?: string }> }>];
    const r6 = needV6 ? ((await this.ip(['-j', '-6', 'route', 'show']))[0] as Array<{ dst?: string; dev?: string }>) : [];
    const routes = new Map<string, string>();
    for (const r of [...(r4 ?? []), ...(r6 ?? [])]) {
      if (!r.dst || !r.dev) continue;
      const dst = r.dst.endsWith('/32') || r.dst.endsWith('/128') ? r.dst.slice(0, r.dst.lastIndexOf('/')) : r.dst;
      if (!dst.includes('/')) routes.set(dst, r.dev);
    }
    const veths = new Map<string, number>();
    for (const l of links ?? []) veths.set(l.ifname.split('@')[0]!, l.ifindex);
    const hostAddrs = new Set<string>();
    for (const l of addrs ?? []) for (const a of l.addr_info ?? []) if (a.local && a.scope === 'global') hostAddrs.add(a.local);
    return { routes, veths, hostAddrs: [...hostAddrs].sort() };
  }

  /** Runs ip (in the node namespace) and parses its JSON output, one document per line. */
  private ip(args: string[], input?: string): Promise<unknown[]> {
    const [cmd, argv] = this.command(['ip', ...args]);
    return new Promise((resolveP, reject) => {
      const child = execFile(cmd, argv, { timeout: 10_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        if (err) { reject(new KernwayError('KW_ENDPOINTS_IP', `ip ${args.join(' ')} failed: ${stderr.trim() || err.message}`)); return; }
        try {
          resolveP(stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as unknown));
        } catch (e) {
          reject(new KernwayError('KW_ENDPOINTS_IP', `cannot read the output of ip: ${errorMessage(e)}`));
        }
      });
      if (input !== undefined) child.stdin?.end(input);
    });
  }

  private startMonitor(): void {
    const [cmd, args] = this.command(['ip', 'monitor', 'link', 'route', 'address']);
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.monitor = child;
    child.stdout!.on('data', () => this.schedule(5));
    child.stderr!.on('data', (d: Buffer) => this.opts.log?.debug({ stderr: d.toString().trim() }, 'endpoints: ip monitor'));
    child.on('error', (e) => this.opts.log?.warn({ err: e.message }, 'endpoints: ip monitor failed; relying on retries and resyncs'));
    child.on('exit', (code, signal) => {
      if (this.monitor === child) this.monitor = undefined;
      if (!this.closed) {
        this.opts.log?.warn({ code, signal }, 'endpoints: ip monitor exited; restarting it');
        setTimeout(() => { if (!this.closed) this.startMonitor(); }, 1000).unref();
      }
    });
  }

  private stopMonitor(): void {
    const m = this.monitor;
    this.monitor = undefined;
    if (m && m.exitCode === null && m.signalCode === null && m.pid !== undefined) m.kill('SIGTERM');
  }
}

/** The kw_cgrp / kw_netns value of a pod: endpoint, identity, its addresses. */
function podValue(ep: Endpoint): Buffer {
  const ip4 = ep.pod.ips.find((ip) => !ip.includes(':'));
  const ip6 = ep.pod.ips.find((ip) => ip.includes(':'));
  return encodeCgrpVal({ epId: ep.epId, id: ep.pod.identity, ...(ip4 ? { ip4 } : {}), ...(ip6 ? { ip6 } : {}) });
}

function detachQuietly(link: BpfLink, pin: string): void {
  try { link.detach(); } catch { /* its interface is gone: already detached */ }
  try { link.close(); } catch { /* ignore */ }
  rmSync(pin, { force: true });
}

/**
 * The pod's cgroup under `root`: the kernway.io/cgroup annotation (relative to root), or
 * the directory kubelet made for it (its name holds pod<uid>, with '-' or '_').
 */
export function findPodCgroup(root: string, pod: Pick<LocalPod, 'uid' | 'annotations'>): string | undefined {
  const hint = pod.annotations?.[CGROUP_ANNOTATION];
  if (hint !== undefined) {
    const p = resolve(root, hint);
    if ((p === root || p.startsWith(root + sep)) && existsSync(p)) return p;
    return undefined;
  }
  if (!pod.uid) return undefined;
  const names = [`pod${pod.uid}`, `pod${pod.uid.replace(/-/g, '_')}`];
  const walk = (dir: string, depth: number): string | undefined => {
    let entries;
    try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return undefined; }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      if (names.some((n) => e.name.includes(n))) return join(dir, e.name);
    }
    if (depth >= 4) return undefined;
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const r = walk(join(dir, e.name), depth + 1);
      if (r) return r;
    }
    return undefined;
  };
  return walk(root, 0);
}

