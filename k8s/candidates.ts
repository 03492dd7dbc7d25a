/**
 * Candidates per key, kept in a given order; the first one is the one in force. Nearly
 * every key has a single candidate, so that case costs one Map entry and no array.
 */
export class Candidates<T> {
  private readonly one = new Map<string, T>();
  private readonly many = new Map<string, T[]>();

  constructor(private readonly compare: (a: T, b: T) => number) {}

  first(key: string): T | undefined {
    return this.one.get(key) ?? this.many.get(key)?.[0];
  }

  /** All candidates of `key`, first first. */
  all(key: string): readonly T[] {
    const v = this.one.get(key);
    if (v !== undefined) return [v];
    return this.many.get(key) ?? [];
  }

  /** How many keys have candidates. */
  get size(): number {
    return this.one.size + this.many.size;
  }

  /** Whether `key` has more than one candidate. */
  contested(key: string): boolean {
    return this.many.has(key);
  }

  add(key: string, v: T): void {
    const single = this.one.get(key);
    if (single !== undefined) {
      this.one.delete(key);
      this.many.set(key, this.compare(v, single) < 0 ? [v, single] : [single, v]);
      return;
    }
    const list = this.many.get(key);
    if (!list) { this.one.set(key, v); return; }
    let i = list.length;
    while (i > 0 && this.compare(list[i - 1]!, v) > 0) i--;
    list.splice(i, 0, v);
  }

  /** Remove `v` from `key`'s candidates; false when it was not one. */
  remove(key: string, v: T): boolean {
    if (this.one.get(key) === v) { this.one.delete(key); return true; }
    const list = this.many.get(key);
    const i = list ? list.indexOf(v) : -1;
    if (!list || i < 0) return false;
    list.splice(i, 1);
    if (list.length === 1) { this.many.delete(key); this.one.set(key, list[0]!); }
    return true;
  }

  clear(): void {
    this.one.clear();
    this.many.clear();
  }
}
