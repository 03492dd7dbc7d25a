/**
 * The kernel's per-Service counters (kw_svc_stats, per CPU), summed over each Service's
 * frontends, read into one table that every /metrics scrape reuses.
 *
 * A scrape with 10,000 Services reads 10,000 frontends. Reading them allocates nothing per
 * frontend: the frontends are walked in ServiceSync's mirror (no object each), every value
 * is read into one buffer (BpfMap.lookupInto) and summed as numbers (no BigInt), and the
 * sums go into typed arrays indexed by a slot per Service name that stays from scrape to
 * scrape (the names are the mirror's own strings). Before, a scrape built an array of
 * 10,000 frontend objects, four BigInts per CPU and frontend, and a Map of 10,000 counter
 * objects: ~5 MiB of the RSS that the first scrape added.
 *
 * The Services come out in the order their first frontend is met (as the Map gave them).
 */
import { encodeU32, sumSvcStatPerCpu } from './codec.js';
import type { MapLike } from './lb-maps.js';
import type { ServiceSync } from './service-sync.js';

export class ServiceCounterTable {
  /** Slot per Service name; names of Services gone are dropped when they outnumber the live ones. */
  private slots = new Map<string, number>();
  private names: string[] = [];
  private balancedOf = new Float64Array(64);
  private refusedOf = new Float64Array(64);
  /** The read a slot was last counted in (a slot not counted in the last read is left out). */
  private stamp = new Uint32Array(64);
  private epoch = 0;
  /** Slots counted in the last read, in the order first met. */
  private order = new Uint32Array(64);
  private count = 0;
  private readonly key = Buffer.alloc(4);
  private value: Buffer | undefined;
  private readonly visit = (svcId: number, name: string): void => this.add(svcId, name);
  private stats: MapLike | undefined;

  /** Services counted in the last read. */
  get size(): number {
    return this.count;
  }

  /** The i-th Service of the last read (0 <= i < size), in the order first met. */
  service(i: number): string {
    return this.names[this.order[i]!]!;
  }

  balanced(i: number): number {
    return this.balancedOf[this.order[i]!]!;
  }

  refused(i: number): number {
    return this.refusedOf[this.order[i]!]!;
  }

  /** Reads every live frontend's counters from `stats` (kw_svc_stats) now. */
  read(sync: ServiceSync, stats: MapLike): void {
    this.stats = stats;
    if (stats.lookupInto && stats.valueBytes && this.value?.length !== stats.valueBytes) this.value = Buffer.alloc(stats.valueBytes);
    this.epoch = (this.epoch + 1) >>> 0 || 1;
    this.count = 0;
    sync.forEachCounted(this.visit);
    this.stats = undefined;
    if (this.slots.size > 2 * this.count + 64) this.compact();
  }

  /** Leaves the table empty (no maps loaded). */
  clear(): void {
    this.count = 0;
  }

  private add(svcId: number, name: string): void {
    const stats = this.stats!;
    encodeU32(svcId, this.key);
    const raw = this.value ? (stats.lookupInto!(this.key, this.value) ? this.value : undefined) : stats.lookup(this.key);
    if (!raw) return;
    let slot = this.slots.get(name);
    if (slot === undefined) {
      slot = this.names.length;
      this.names.push(name);
      this.slots.set(name, slot);
      if (slot >= this.stamp.length) this.grow(slot + 1);
    }
    if (this.stamp[slot] !== this.epoch) {
      this.stamp[slot] = this.epoch;
      this.balancedOf[slot] = 0;
      this.refusedOf[slot] = 0;
      if (this.count >= this.order.length) this.order = grown(this.order, this.count + 1);
      this.order[this.count++] = slot;
    }
    this.balancedOf[slot] += sumSvcStatPerCpu(raw, 'balanced');
    this.refusedOf[slot] += sumSvcStatPerCpu(raw, 'refused');
  }

  private grow(n: number): void {
    this.balancedOf = grown(this.balancedOf, n);
    this.refusedOf = grown(this.refusedOf, n);
    this.stamp = grown(this.stamp, n);
  }

  /** Keeps only the slots of the last read, renumbered in its order. */
  private compact(): void {
    const n = this.count;
    const names: string[] = new Array<string>(n);
    const balanced = new Float64Array(Math.max(64, n));
    const refused = new Float64Array(Math.max(64, n));
    const slots = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const s = this.order[i]!;
      names[i] = this.names[s]!;
      balanced[i] = this.balancedOf[s]!;
      refused[i] = this.refusedOf[s]!;
      slots.set(names[i]!, i);
      this.order[i] = i;
    }
    this.names = names;
    this.balancedOf = balanced;
    this.refusedOf = refused;
    this.slots = slots;
    this.stamp = new Uint32Array(Math.max(64, n)).fill(this.epoch, 0, n);
  }
}

function grown<T extends Float64Array | Uint32Array>(a: T, n: number): T {
  const b = new (a.constructor as new (n: number) => T)(Math.max(n, a.length * 2));
  b.set(a);
  return b;
}
