import { KeyedTable } from './keyed-table.js';

/**
 * Candidates per key, kept in a given order; the first one is the one in force. Nearly
 * every key has a single candidate, so that case costs one Map entry and no array; with
 * `keyOf` (a candidate's own key, such as a Service's first cluster IP), a sole candidate
 * under its own key is kept in a KeyedTable instead (k8s/keyed-table.ts: one word per
 * slot, 128 KiB at 10,000 keys where a Map takes 448).
 */
export class Candidates<T> {
  private readonly one = new Map<string, T>();
  private readonly oneKeyed: KeyedTable<T> | undefined;
  protected readonly many = new Map<string, T[]>();

  constructor(private readonly compare: (a: T, b: T) => number, private readonly keyOf?: (v: T) => string) {
    if (keyOf) this.oneKeyed = new KeyedTable<T>(keyOf);
  }

  /** The sole candidate of `key`, if it has exactly one. */
  protected single(key: string): T | undefined {
    return this.oneKeyed?.get(key) ?? this.one.get(key);
  }

  private setSingle(key: string, v: T): void {
    if (this.oneKeyed !== undefined && this.keyOf!(v) === key) this.oneKeyed.add(v);
    else this.one.set(key, v);
  }

  protected deleteSingle(key: string): void {
    if (this.oneKeyed?.delete(key) !== true) this.one.delete(key);
  }

  first(key: string): T | undefined {
    return this.single(key) ?? this.many.get(key)?.[0];
  }

  /** All candidates of `key`, first first. */
  all(key: string): readonly T[] {
    const v = this.single(key);
    if (v !== undefined) return [v];
    return this.many.get(key) ?? [];
  }

  /** How many keys have candidates. */
  get size(): number {
    return this.one.size + (this.oneKeyed?.size ?? 0) + this.many.size;
  }

  /** Whether `key` has more than one candidate. */
  contested(key: string): boolean {
    return this.many.has(key);
  }

  add(key: string, v: T): void {
    const single = this.single(key);
    if (single !== undefined) {
      this.deleteSingle(key);
      this.many.set(key, this.compare(v, single) < 0 ? [v, single] : [single, v]);
      return;
    }
    const list = this.many.get(key);
    if (!list) { this.setSingle(key, v); return; }
    let i = list.length;
    while (i > 0 && this.compare(list[i - 1]!, v) > 0) i--;
    list.splice(i, 0, v);
  }

  /** Remove `v` from `key`'s candidates; false when it was not one. */
  remove(key: string, v: T): boolean {
    if (this.single(key) === v) { this.deleteSingle(key); return true; }
    const list = this.many.get(key);
    const i = list ? list.indexOf(v) : -1;
    if (!list || i < 0) return false;
    list.splice(i, 1);
    if (list.length === 1) { this.many.delete(key); this.setSingle(key, list[0]!); }
    return true;
  }

  clear(): void {
    this.one.clear();
    this.oneKeyed?.clear();
    this.many.clear();
  }
}

/**
 * Candidates whose sole candidate is not stored when `inUse` (a map the owner keeps anyway,
 * such as the model's Services, or a lookup that finds a candidate in use, or not) gives it for its key: nearly every key has one candidate and it is
 * the one in use, so a second map of every key (0.44 MiB at 10,000) is left out. Before
 * changing a key's candidates the owner calls `open(key)` (its candidate is then held
 * here until `settle()`), and calls `settle()` once `inUse` is up to date for the keys opened.
 * `size` is not kept.
 */
export class FoldedCandidates<T> extends Candidates<T> {
  private readonly opened = new Set<string>();

  constructor(compare: (a: T, b: T) => number, private readonly inUse: { get(key: string): T | undefined }) {
    super(compare);
  }

  /** The sole candidate of `key`, when `inUse` stands for it. */
  private implicit(key: string): T | undefined {
    if (this.opened.has(key) || this.single(key) !== undefined || this.many.has(key)) return undefined;
    return this.inUse.get(key);
  }

  override first(key: string): T | undefined {
    return super.first(key) ?? this.implicit(key);
  }

  override all(key: string): readonly T[] {
    const v = this.implicit(key);
    return v !== undefined ? [v] : super.all(key);
  }

  override get size(): number {
    throw new Error('FoldedCandidates: size is not kept');
  }

  /** Holds `key`'s candidates here until settle(): call before add() or remove() of `key`. */
  open(key: string): void {
    if (this.opened.has(key)) return;
    const v = this.implicit(key);
    this.opened.add(key);
    if (v !== undefined) super.add(key, v);
  }

  override add(key: string, v: T): void {
    this.open(key);
    super.add(key, v);
  }

  override remove(key: string, v: T): boolean {
    this.open(key);
    return super.remove(key, v);
  }

  /** `inUse` is up to date for every key opened: a sole candidate it holds is left to it again. */
  settle(): void {
    for (const key of this.opened) {
      const v = this.single(key);
      if (v !== undefined && this.inUse.get(key) === v) this.deleteSingle(key);
    }
    this.opened.clear();
  }

  override clear(): void {
    super.clear();
    this.opened.clear();
  }
}
