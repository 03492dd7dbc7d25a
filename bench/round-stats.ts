/**
 * What the small lab benches (lb/latency, policy/bench, sockmap/compare) share to read
 * sockperf and to summarise their rounds.
 */

export interface Latency { p50: number; p99: number }

/** sockperf's summary lines: "---> percentile 50.000 =    12.345" (usec). */
export function sockperfLatency(out: string): Latency {
  const pct = (p: string): number => {
    const m = new RegExp(`percentile ${p.replace('.', '\\.')}\\d* =\\s+([\\d.]+)`).exec(out);
    if (!m) throw new Error(`sockperf output has no percentile ${p}:\n${out}`);
    return Number(m[1]);
  };
  return { p50: pct('50.0'), p99: pct('99.0') };
}

/** The middle of the rounds' values (the upper one of the two for an even count). */
export function middle(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** a / b, to three decimals. */
export const ratio = (a: number, b: number): number => +(a / b).toFixed(3);
