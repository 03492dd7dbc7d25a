/**
 * Workload identities: one numeric id per distinct (namespace, service account, labels)
 * of the cluster's pods, and the address -> identity table the kernel looks sources up in.
 *
 * Ids are stable while their identity exists, never reused right after being released
 * (a fresh id is always higher than any live one until the space wraps), and can be
 * seeded from the pinned address map after a restart so connections keep the ids they
 * were checked with.
 */
import type { Pod } from '../k8s/types.js';
import { ID_FIRST, ID_MAX, IDENTITY_IGNORED_LABELS, type Identity } from '../k8s/policy-types.js';

/** Phases after which a pod's address may already belong to another pod. */
const TERMINAL_PHASES = new Set(['Succeeded', 'Failed']);

export function identityLabels(labels: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(labels).sort()) if (!IDENTITY_IGNORED_LABELS.has(k)) out[k] = labels[k]!;
  return out;
}

export function identityKey(namespace: string, serviceAccount: string, labels: Readonly<Record<string, string>>): string {
  const l = identityLabels(labels);
  return `${namespace}\u0000${serviceAccount}\u0000${Object.entries(l).map(([k, v]) => `${k}=${v}`).join('\u0000')}`;
}

/** A pod's address with the identity it stands for. */
export interface AddressIdentity { ip: string; id: number; pod: string }

export interface IdentityAssignment {
  /** Every live identity, by id. */
  identities: ReadonlyMap<number, Identity>;
  /** Identity of each pod, by 'ns/name' (host-network pods have none: they are the node). */
  byPod: ReadonlyMap<string, Identity>;
  /** Address -> identity for every pod address (an address two pods claim goes to the running one). */
  addresses: ReadonlyMap<string, AddressIdentity>;
  /** Addresses claimed by more than one pod, with the pod that got it. */
  conflicts: { ip: string; pods: string[]; winner: string }[];
}

/** What one IdentityAllocator.update changed. */
export interface IdentityDelta {
  /** Identities created (a pod brought a (namespace, service account, labels) no pod had). */
  added: Identity[];
  /** Identities released (their last pod went or changed). */
  removed: Identity[];
  /** Addresses whose entry (identity, owning pod, or presence) may have changed. */
  addresses: Set<string>;
  /** 'ns/name' of the pods looked at (their identity or addresses may have changed). */
  pods: Set<string>;
}

/** What the allocator holds of one pod (host-network pods are not held). */
interface PodRecord { pod: Pod; identKey: string; claims: boolean }

/**
 * Identities kept up to date pod by pod: `update(pods, changedKeys)` costs in proportion
 * to the changed pods (and the addresses they claim), not to the cluster's pods; `assign`
 * is the whole-set form (every pod looked at).
 */
export class IdentityAllocator {
  private readonly byKey = new Map<string, Identity>();
  private readonly used = new Set<number>();
  private next: number;
  private seedByIp = new Map<string, number>();
  /** Pods of each identity key. */
  private readonly refs = new Map<string, number>();
  private readonly records = new Map<string, PodRecord>();
  /** Address -> the pods (not finished) that claim it. */
  private readonly claims = new Map<string, Pod[]>();
  private readonly live: { identities: Map<number, Identity>; byPod: Map<string, Identity>; addresses: Map<string, AddressIdentity>; conflicts: Map<string, IdentityAssignment['conflicts'][number]> } = {
    identities: new Map(), byPod: new Map(), addresses: new Map(), conflicts: new Map(),
  };

  constructor(private readonly first = ID_FIRST, private readonly max = ID_MAX) {
    this.next = first;
  }

  /** After a restart: address -> id as the pinned map holds it, to keep ids where the identity is the same. */
  seed(entries: Iterable<{ ip: string; id: number }>): void {
    for (const { ip, id } of entries) if (id >= this.first && id <= this.max) this.seedByIp.set(ip, id);
  }

  /**
   * The assignment in force (live: the allocator updates these maps in place). Its
   * `conflicts` is a copy made now.
   */
  get current(): IdentityAssignment {
    const l = this.live;
    return { identities: l.identities, byPod: l.byPod, addresses: l.addresses, conflicts: [...l.conflicts.values()] };
  }

  /** Assigns identities to the pods (the whole set); identities no pod has any more are released. Returns a copy. */
  assign(pods: Iterable<Pod>): IdentityAssignment {
    const all = new Map<string, Pod>();
    for (const p of pods) all.set(p.key, p);
    const keys = new Set<string>(this.records.keys());
    for (const k of all.keys()) keys.add(k);
    this.update(all, keys);
    const c = this.current;
    return { identities: new Map(c.identities), byPod: new Map(c.byPod), addresses: new Map(c.addresses), conflicts: c.conflicts };
  }

  /**
   * Brings the identities in line with `pods` for the pods under `changed` ('ns/name', the
   * model's change set; a key whose pod is the same object as last time costs nothing).
   */
  update(pods: ReadonlyMap<string, Pod>, changed: Iterable<string>): IdentityDelta {
    const delta: IdentityDelta = { added: [], removed: [], addresses: new Set(), pods: new Set() };
    const dropped = new Set<string>();
    const arrived: Pod[] = [];
    for (const key of changed) {
      const old = this.records.get(key);
      let now = pods.get(key);
      if (now?.hostNetwork) now = undefined;
      if (old?.pod === now) continue;
      delta.pods.add(key);
      if (old) {
        this.records.delete(key);
        const n = this.refs.get(old.identKey)! - 1;
        if (n === 0) { this.refs.delete(old.identKey); dropped.add(old.identKey); } else this.refs.set(old.identKey, n);
        if (old.claims) for (const ip of old.pod.podIPs) { this.unclaim(ip, old.pod); delta.addresses.add(ip); }
        this.live.byPod.delete(key);
      }
      if (now) {
        const identKey = identityKey(now.namespace, now.serviceAccountName, now.labels);
        const claims = !(now.phase !== undefined && TERMINAL_PHASES.has(now.phase));
        this.records.set(key, { pod: now, identKey, claims });
        this.refs.set(identKey, (this.refs.get(identKey) ?? 0) + 1);
        if (claims) for (const ip of now.podIPs) { this.claim(ip, now); delta.addresses.add(ip); }
        arrived.push(now);
      }
    }
    // Release first, so a seeded id of a vanished identity can be adopted.
    for (const identKey of dropped) {
      if (this.refs.has(identKey)) continue; // another pod took it up in the same update
      const ident = this.byKey.get(identKey)!;
      this.byKey.delete(identKey);
      this.used.delete(ident.id);
      this.live.identities.delete(ident.id);
      delta.removed.push(ident);
    }
    // Sorted, so ids given in one update do not depend on map order.
    arrived.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const pod of arrived) {
      const identKey = this.records.get(pod.key)!.identKey;
      let ident = this.byKey.get(identKey);
      if (!ident) {
        const seeded = pod.podIPs.map((ip) => this.seedByIp.get(ip)).find((id) => id !== undefined && !this.used.has(id));
        const id = seeded ?? this.fresh();
        ident = Object.freeze({ id, namespace: pod.namespace, serviceAccount: pod.serviceAccountName, labels: Object.freeze(identityLabels(pod.labels)), key: identKey });
        this.byKey.set(identKey, ident);
        this.used.add(id);
        this.live.identities.set(id, ident);
        if (id >= this.next) this.next = id + 1;
        delta.added.push(ident);
      }
      this.live.byPod.set(pod.key, ident);
    }
    this.seedByIp.clear();

    // Addresses: a terminal pod's address may already be another pod's; a running pod wins.
    for (const ip of delta.addresses) {
      const list = this.claims.get(ip);
      if (!list) { this.live.addresses.delete(ip); this.live.conflicts.delete(ip); continue; }
      const winner = list.length === 1 ? list[0]! : [...list].sort((a, b) => rank(a) - rank(b) || (a.key < b.key ? -1 : 1))[0]!;
      if (list.length > 1) this.live.conflicts.set(ip, { ip, pods: list.map((p) => p.key), winner: winner.key });
      else this.live.conflicts.delete(ip);
      const id = this.live.byPod.get(winner.key)!.id;
      const cur = this.live.addresses.get(ip);
      if (cur?.id !== id || cur.pod !== winner.key) this.live.addresses.set(ip, { ip, id, pod: winner.key });
    }
    return delta;
  }

  private claim(ip: string, pod: Pod): void {
    const list = this.claims.get(ip);
    if (list) list.push(pod); else this.claims.set(ip, [pod]);
  }

  private unclaim(ip: string, pod: Pod): void {
    const list = this.claims.get(ip);
    if (!list) return;
    const i = list.indexOf(pod);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.claims.delete(ip);
  }

  private fresh(): number {
    if (this.next <= this.max) return this.next++;
    // The space wrapped: the lowest free id.
    for (let id = this.first; id <= this.max; id++) if (!this.used.has(id)) return id;
    throw new Error(`identity space exhausted (${this.max - this.first + 1} identities)`);
  }
}

function rank(p: Pod): number {
  return p.phase === 'Running' ? 0 : p.phase === undefined ? 1 : 2;
}
