/**
 * Gateway API durations (GEP-2257): one to four `<1-5 digits><h|m|s|ms>` parts, e.g.
 * `1h30m`, `500ms`, `0s`.
 */
const DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const PART = /([0-9]{1,5})(h|ms|m|s)/g;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/**
 * The longest delay a Node.js timer holds (2^31-1 ms, 24.8 days): a longer one fires at
 * once (`600h` answered 504 in 3 ms). Longer durations are clamped to it where they are
 * read from manifests, and refused in options.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Milliseconds, or undefined when `s` is not a Gateway API duration. */
export function parseDuration(s: string): number | undefined {
  if (!DURATION.test(s)) return undefined;
  let ms = 0;
  for (const m of s.matchAll(PART)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  return ms;
}

/** The shortest Gateway API spelling of `ms` (for status and `kernway routes`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) { parts.push(`${n}${unit}`); rest -= n * size; }
  }
  return parts.join('');
}
