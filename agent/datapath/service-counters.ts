/**
 * The kernel's per-Service counters (kw_svc_stats, per CPU), summed over each Service's
 * frontends, read into one table that every /metrics scrape reuses.
 *
 * A scrape with 10,000 Services reads 10,000 frontends. Reading them allocates nothing per
 * frontend: the frontends are walked in ServiceSync's mirror (no object each), every value
 * is read into one buffer (BpfMap.lookupInto) and summed as numbers (no BigInt), and the
 * sums go into typed arrays by row, a row per Service (the names are the mirror's own
 * strings); only Services of several frontends are looked up by name, in a map made for the
 * read. Before, a scrape built an array of
 * 10,000 frontend objects, four BigInts per CPU and frontend, and a Map of 10,000 counter
 * objects: ~5 MiB of the RSS that the first scrape added.
 *
 * The Services come out in the order their first frontend is met (as the Map gave them).
 */
import { encodeU32, sumSvcStatPerCpu } from './codec.js';
import type { MapLike } from './lb-maps.js';
import type { ServiceSync } from './service-sync.js';

export class ServiceCounterTable {
  /** Per row (a Service of the last read, in the order first met): its name and sums. */
  private names: string[] = [];
  private balancedOf = new Float64Array(64);
  private refusedOf = new Float64Array(64);
  private count = 0;
  /**
   * During a read, the rows of Services that may have several frontends, by name. A Service of
   * one frontend (one cluster IP, one port: most) gets its row without one, as no other live
   * frontend has its name (a frontend written from an entry of it has the Service's current
   * shape: the service table updates the Service an entry it keeps belongs to). A map of every
   * Service name kept from scrape to scrape was 0.44 MiB at 10,000, with its slots' arrays 0.8.
   */
  private grouped: Map<string, number> | undefined;
  private readonly key = Buffer.alloc(4);
  private value: Buffer | undefined;
  private readonly visit = (svcId: number, name: string, alone: boolean): void => this.add(svcId, name, alone);
  private stats: MapLike | undefined;

  /** Families of /metrics being written from the table (agent.ts, in parts): it is not read again meanwhile. */
  holds = 0;

  /** Services counted in the last read. */
  get size(): number {
    return this.count;
  }

  /** The i-th Service of the last read (0 <= i < size), in the order first met. */
  service(i: number): string {
    return this.names[i]!;
  }

  balanced(i: number): number {
    return this.balancedOf[i]!;
  }

  refused(i: number): number {
    return this.refusedOf[i]!;
  }

  /** Reads every live frontend's counters from `stats` (kw_svc_stats) now. */
  read(sync: ServiceSync, stats: MapLike): void {
    this.stats = stats;
    if (stats.lookupInto && stats.valueBytes && this.value?.length !== stats.valueBytes) this.value = Buffer.alloc(stats.valueBytes);
    this.count = 0;
    sync.forEachCounted(this.visit);
    this.grouped = undefined;
    this.stats = undefined;
    this.names.length = this.count; // no name of a Service gone kept alive
  }

  /** Leaves the table empty (no maps loaded). */
  clear(): void {
    this.count = 0;
    this.names.length = 0;
  }

  private add(svcId: number, name: string, alone: boolean): void {
    const stats = this.stats!;
    encodeU32(svcId, this.key);
    const raw = this.value ? (stats.lookupInto!(this.key, this.value) ? this.value : undefined) : stats.lookup(this.key);
    if (!raw) return;
    let row = alone ? undefined : (this.grouped ??= new Map()).get(name);
    if (row === undefined) {
      row = this.count++;
      if (row >= this.balancedOf.length) { this.balancedOf = grown(this.balancedOf, row + 1); this.refusedOf = grown(this.refusedOf, row + 1); }
      this.names[row] = name;
      this.balancedOf[row] = 0;
      this.refusedOf[row] = 0;
      if (!alone) this.grouped!.set(name, row);
    }
    this.balancedOf[row] += sumSvcStatPerCpu(raw, 'balanced');
    this.refusedOf[row] += sumSvcStatPerCpu(raw, 'refused');
  }
}

function grown(a: Float64Array<ArrayBuffer>, n: number): Float64Array<ArrayBuffer> {
  const b = new Float64Array(Math.max(n, a.length * 2));
  b.set(a);
  return b;
}
