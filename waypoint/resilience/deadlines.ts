/**
 * Timeouts on the request path as timestamps: an object with a deadline goes into a list
 * kept sorted by deadline (one list per configured duration, so that entries arrive in
 * order and go in at the tail), and each list has one timer, armed for its earliest
 * deadline. Ending an exchange in time unlinks its entry (no timer to clear); the timer
 * fires about once per duration under steady load, not once per request. The entry is
 * the exchange object itself (its `dl*` fields): nothing is allocated per request.
 */
import { performance } from 'node:perf_hooks';

const MAX_TIMER_MS = 2 ** 31 - 1;

/** Something that times out: its links in a deadline list, and what happens when time is up. */
export interface Timed {
  /** Deadline (ms, performance.now()). */
  dlAt: number;
  dlPrev: Timed | undefined;
  dlNext: Timed | undefined;
  /** The list it is in; undefined when in none. */
  dlList: DeadlineList | undefined;
  /** Time is up (called once, after the entry has left its list). */
  expire(): void;
}

class DeadlineList {
  head: Timed | undefined;
  tail: Timed | undefined;
  timer: NodeJS.Timeout | undefined;
  /** When the armed timer is due (ms, performance.now()). */
  timerAt = 0;

  constructor(private readonly owner: Deadlines, readonly key: number) {}

  insert(t: Timed): void {
    // From the tail: in order of arrival, deadlines of one duration are (almost always) ascending.
    let after = this.tail;
    while (after !== undefined && after.dlAt > t.dlAt) after = after.dlPrev;
    t.dlList = this;
    t.dlPrev = after;
    if (after === undefined) {
      t.dlNext = this.head;
      if (this.head !== undefined) this.head.dlPrev = t;
      this.head = t;
    } else {
      t.dlNext = after.dlNext;
      if (after.dlNext !== undefined) after.dlNext.dlPrev = t;
      after.dlNext = t;
    }
    if (t.dlNext === undefined) this.tail = t;
    if (this.timer === undefined || t.dlAt < this.timerAt) this.arm(t.dlAt);
  }

  unlink(t: Timed): void {
    if (t.dlPrev !== undefined) t.dlPrev.dlNext = t.dlNext; else this.head = t.dlNext;
    if (t.dlNext !== undefined) t.dlNext.dlPrev = t.dlPrev; else this.tail = t.dlPrev;
    t.dlPrev = undefined;
    t.dlNext = undefined;
    t.dlList = undefined;
    // The timer stays armed: when it fires with nothing due it re-arms or lets the list go.
  }

  arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    // (Clamped to what a timer holds: fired early, it finds nothing due and re-arms.)
    this.timer = setTimeout(fire, Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(at - performance.now()))), this);
    this.timer.unref();
  }

  fire(): void {
    this.timer = undefined;
    const now = performance.now();
    let t = this.head;
    while (t !== undefined && t.dlAt <= now) {
      this.unlink(t);
      t.expire();
      t = this.head;
    }
    // (An entry added by expire() may have armed the timer already, for a later deadline than the head's.)
    if (this.head !== undefined) { if (this.timer === undefined || this.head.dlAt < this.timerAt) this.arm(this.head.dlAt); } else if (this.timer === undefined) this.owner.drop(this);
  }
}

function fire(l: DeadlineList): void {
  l.fire();
}

/** The deadline lists of a request handler. */
export class Deadlines {
  private readonly lists = new Map<number, DeadlineList>();

  /**
   * `t` expires at `at` (ms, performance.now()); `duration` is the configured timeout the
   * deadline comes from (the list it goes in). An entry already in a list moves.
   */
  add(t: Timed, at: number, duration: number): void {
    if (t.dlList !== undefined) t.dlList.unlink(t);
    let l = this.lists.get(duration);
    if (l === undefined) this.lists.set(duration, (l = new DeadlineList(this, duration)));
    t.dlAt = at;
    l.insert(t);
  }

  /** `t` ended in time (nothing when it is in no list). */
  remove(t: Timed): void {
    if (t.dlList !== undefined) t.dlList.unlink(t);
  }

  /** Lists with an armed timer (for tests). */
  get armed(): number {
    let n = 0;
    for (const l of this.lists.values()) if (l.timer !== undefined) n++;
    return n;
  }

  /** @internal an empty list whose timer fired. */
  drop(l: DeadlineList): void {
    if (this.lists.get(l.key) === l) this.lists.delete(l.key);
  }
}
