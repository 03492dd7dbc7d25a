/**
 * Small statistics for the benchmark: percentiles of raw samples, and the summary of a
 * ratio measured once per round (median with its spread across rounds).
 */

/** The p-th percentile (0-100) of samples, nearest-rank on the sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p * sorted.length) / 100 - 1e-9);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function sortedCopy(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

export function median(xs: readonly number[]): number {
  const s = sortedCopy(xs.filter((x) => Number.isFinite(x)));
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A value measured once per round, summarised: median, min and max across rounds. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  /** One value per round, in round order (NaN where a round has no value). */
  rounds: number[];
}

export function spread(perRound: readonly number[]): Spread {
  const finite = perRound.filter((x) => Number.isFinite(x));
  return {
    median: round(median(finite)),
    min: finite.length ? round(Math.min(...finite)) : Number.NaN,
    max: finite.length ? round(Math.max(...finite)) : Number.NaN,
    rounds: perRound.map(round),
  };
}

/** Rounds to 4 significant digits, for readable JSON. */
export function round(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  return Number(x.toPrecision(4));
}

/** a / b, NaN when either is missing or b is 0. */
export function ratio(a: number | undefined, b: number | undefined): number {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return Number.NaN;
  return a / b;
}
