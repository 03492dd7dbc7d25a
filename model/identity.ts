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

export class IdentityAllocator {
  private readonly byKey = new Map<string, Identity>();
  private readonly used = new Set<number>();
  private next: number;
  private seedByIp = new Map<string, number>();

  constructor(private readonly first = ID_FIRST, private readonly max = ID_MAX) {
    this.next = first;
  }

  /** After a restart: address -> id as the pinned map holds it, to keep ids where the identity is the same. */
  seed(entries: Iterable<{ ip: string; id: number }>): void {
    for (const { ip, id } of entries) if (id >= this.first && id <= this.max) this.seedByIp.set(ip, id);
  }

  /** Assigns identities to the pods; identities no pod has any more are released. */
  assign(pods: Iterable<Pod>): IdentityAssignment {
    const byPod = new Map<string, Identity>();
    const live = new Set<string>();
    const candidates: Pod[] = [];
    for (const pod of pods) {
      if (pod.hostNetwork) continue;
      candidates.push(pod);
      live.add(identityKey(pod.namespace, pod.serviceAccountName, pod.labels));
    }
    // Release first, so a seeded id of a vanished identity can be adopted.
    for (const [key, ident] of this.byKey) {
      if (!live.has(key)) { this.byKey.delete(key); this.used.delete(ident.id); }
    }
    // Sorted, so ids given in one pass do not depend on map order.
    candidates.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const pod of candidates) {
      const key = identityKey(pod.namespace, pod.serviceAccountName, pod.labels);
      let ident = this.byKey.get(key);
      if (!ident) {
        const seeded = pod.podIPs.map((ip) => this.seedByIp.get(ip)).find((id) => id !== undefined && !this.used.has(id));
        const id = seeded ?? this.fresh();
        ident = Object.freeze({ id, namespace: pod.namespace, serviceAccount: pod.serviceAccountName, labels: Object.freeze(identityLabels(pod.labels)), key });
        this.byKey.set(key, ident);
        this.used.add(id);
        if (id >= this.next) this.next = id + 1;
      }
      byPod.set(pod.key, ident);
    }
    this.seedByIp.clear();

    const identities = new Map<number, Identity>();
    for (const ident of this.byKey.values()) identities.set(ident.id, ident);

    // Addresses: a terminal pod's address may already be another pod's; a running pod wins.
    const claims = new Map<string, Pod[]>();
    for (const pod of candidates) {
      if (pod.phase !== undefined && TERMINAL_PHASES.has(pod.phase)) continue;
      for (const ip of pod.podIPs) {
        const list = claims.get(ip);
        if (list) list.push(pod); else claims.set(ip, [pod]);
      }
    }
    const addresses = new Map<string, AddressIdentity>();
    const conflicts: IdentityAssignment['conflicts'] = [];
    for (const [ip, list] of claims) {
      const winner = list.length === 1 ? list[0]! : [...list].sort((a, b) => rank(a) - rank(b) || (a.key < b.key ? -1 : 1))[0]!;
      if (list.length > 1) conflicts.push({ ip, pods: list.map((p) => p.key), winner: winner.key });
      addresses.set(ip, { ip, id: byPod.get(winner.key)!.id, pod: winner.key });
    }
    return { identities, byPod, addresses, conflicts };
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
