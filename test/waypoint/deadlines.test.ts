/**
 * The request path's timeouts as deadlines (waypoint/resilience/deadlines.ts): entries
 * expire in deadline order, at (not before) their time, once; removed ones never; one
 * timer per duration whatever the number of entries.
 */
import { performance } from 'node:perf_hooks';
import { describe, expect, it, vi } from 'vitest';
import { Deadlines, type Timed } from '../../waypoint/resilience/deadlines.js';

class Entry implements Timed {
  dlAt = 0;
  dlPrev: Timed | undefined = undefined;
  dlNext: Timed | undefined = undefined;
  dlList: Timed['dlList'] = undefined;
  expiredAt: number | undefined;
  constructor(readonly name: string, private readonly log: string[]) {}
  expire(): void {
    expect(this.expiredAt).toBeUndefined();
    expect(this.dlList).toBeUndefined();
    this.expiredAt = performance.now();
    this.log.push(this.name);
  }
}

describe('deadlines', () => {
  it('expire in deadline order, not before their time, removed ones never; entries out of arrival order are sorted in', async () => {
    const d = new Deadlines();
    const log: string[] = [];
    const now = performance.now();
    const e = (name: string): Entry => new Entry(name, log);
    const a = e('a'), b = e('b'), c = e('c'), x = e('x'), early = e('early');
    d.add(a, now + 60, 60);
    d.add(x, now + 70, 60);
    d.add(b, now + 80, 60);
    d.add(c, now + 75, 60); // later arrival, earlier deadline than b
    d.add(early, now + 20, 60); // before the head: the timer is re-armed for it
    d.remove(x);
    d.remove(x); // twice is nothing
    expect(d.armed).toBe(1);
    await vi.waitFor(() => expect(log).toEqual(['early', 'a', 'c', 'b']), { timeout: 2000, interval: 5 });
    for (const [en, at] of [[early, 20], [a, 60], [c, 75], [b, 80]] as const) expect(en.expiredAt!).toBeGreaterThanOrEqual(now + at);
    expect(x.expiredAt).toBeUndefined();
    // The empty list lets its timer go.
    expect(d.armed).toBe(0);
  });

  it('one timer per duration for any number of entries; an entry added while expiring is kept; a moved entry expires once', async () => {
    const d = new Deadlines();
    const log: string[] = [];
    const now = performance.now();
    const many = Array.from({ length: 10_000 }, (_, i) => new Entry(`m${i}`, log));
    for (const [i, en] of many.entries()) d.add(en, now + 30 + i / 1000, 30);
    const other = new Entry('other', log);
    d.add(other, now + 5000, 5000);
    expect(d.armed).toBe(2);
    // Most end in time (removed), as requests do.
    for (const en of many.slice(0, 9_990)) d.remove(en);
    const moved = new Entry('moved', log);
    d.add(moved, now + 10, 30);
    d.add(moved, now + 40, 30); // moved later: expires once, at the later time
    const chained = new Entry('chained', log);
    const first = new Entry('first', log);
    first.expire = function (this: Entry): void { Entry.prototype.expire.call(this); d.add(chained, performance.now() + 10, 30); };
    d.add(first, now + 35, 30);
    expect(d.armed).toBe(2);
    await vi.waitFor(() => expect(log).toContain('chained'), { timeout: 2000, interval: 5 });
    expect(log).toEqual(['first', ...many.slice(9_990).map((en) => en.name), 'moved', 'chained']);
    expect(moved.expiredAt!).toBeGreaterThanOrEqual(now + 40);
    d.remove(other);
  });

  it('a deadline beyond what a timer holds (2^31-1 ms) waits, it does not fire at once', async () => {
    const d = new Deadlines();
    const log: string[] = [];
    const far = new Entry('far', log);
    const near = new Entry('near', log);
    d.add(far, performance.now() + 600 * 3_600_000, 600 * 3_600_000);
    d.add(near, performance.now() + 20, 20);
    await vi.waitFor(() => expect(log).toEqual(['near']), { timeout: 2000, interval: 5 });
    await new Promise((r) => setTimeout(r, 30));
    expect(log).toEqual(['near']);
    d.remove(far);
  });
});
