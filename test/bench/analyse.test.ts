/**
 * From samples to verdicts: ratios are taken within a round, summarised across rounds,
 * and a target is judged on the median, with a note when rounds disagree.
 */
import { describe, expect, it } from 'vitest';
import { analyse, verdict } from '../../bench/analyse.js';
import { defaultOptions, type RawSample } from '../../bench/run.js';
import type { ModeName } from '../../bench/modes.js';

function sample(services: number, round: number, mode: ModeName, p50: number, rate: number): RawSample[] {
  return [
    { services, round, workload: 'tcp-rr', mode, order: 0, startedAt: '', seconds: 1, values: { p50, p90: p50, p99: p50, p999: p50 } },
    { services, round, workload: 'conn-rate', mode, order: 0, startedAt: '', seconds: 1, values: { rate, p50, p90: p50, p99: p50, p999: p50 } },
  ];
}

describe('analysis', () => {
  const options = { ...defaultOptions(true), modes: ['direct', 'ebpf', 'iptables'] as ModeName[], services: [10, 10_000], rounds: 3, workloads: ['tcp-rr', 'conn-rate'] as const };
  // Round 2 is a noisy round for everybody: ratios within the round stay put.
  const noise = [1, 1, 3];
  const samples: RawSample[] = [];
  for (const n of [10, 10_000]) {
    for (let r = 0; r < 3; r++) {
      samples.push(...sample(n, r, 'direct', 20 * noise[r]!, 10_000 / noise[r]!));
      samples.push(...sample(n, r, 'ebpf', 15 * noise[r]!, (r === 1 ? 12_000 : 10_000) / noise[r]!));
      samples.push(...sample(n, r, 'iptables', (n === 10 ? 20 : 30) * noise[r]!, (n === 10 ? 9_000 : 5_000) / noise[r]!));
    }
  }
  const a = analyse({ options: { ...options, workloads: [...options.workloads] }, samples });

  it('ratios are per round, then median and spread; direct is never divided by anything', () => {
    const r = a.ratios.find((x) => x.services === 10_000 && x.workload === 'tcp-rr' && x.metric === 'p50' && x.mode === 'ebpf' && x.baseline === 'iptables')!;
    expect(r.ratio).toEqual({ median: 0.5, min: 0.5, max: 0.5, rounds: [0.5, 0.5, 0.5] });
    expect(a.ratios.some((x) => x.mode === 'direct')).toBe(false);
    const v = a.values.find((x) => x.services === 10 && x.workload === 'tcp-rr' && x.mode === 'direct' && x.metric === 'p50')!;
    expect(v.value).toMatchObject({ median: 20, min: 20, max: 60 });
  });

  it('scaling divides each mode by itself at the smallest number of Services, round by round', () => {
    const s = a.scaling.find((x) => x.workload === 'conn-rate' && x.metric === 'rate' && x.mode === 'iptables' && x.services === 10_000)!;
    expect(s.from).toBe(10);
    expect(s.ratio.median).toBeCloseTo(5 / 9, 3);
  });

  it('targets: judged on the median, with the rounds that disagree noted; missing modes are "not measured"', () => {
    const t = (id: string, where?: string) => a.targets.find((x) => x.id === id && (where === undefined || x.where === where))!;
    expect(t('tcp-rr-vs-iptables', '10,000 Services')).toMatchObject({ met: true, everyRound: true });
    expect(t('tcp-rr-vs-iptables', '10 Services')).toMatchObject({ met: true });
    expect(t('tcp-rr-vs-direct', '10 Services')).toMatchObject({ met: true });
    expect(t('conn-rate-vs-iptables')).toMatchObject({ where: '10,000 Services', met: true });
    expect(t('conn-rate-vs-iptables').ratio!.median).toBe(2);
    // ebpf conn-rate 10,000 vs 10: equal in every round.
    expect(t('conn-rate-scaling')).toMatchObject({ met: true, everyRound: true });
    expect(t('http1-waypoint-vs-sidecar')).toMatchObject({ met: null });
    expect(verdict(t('http1-waypoint-vs-sidecar'))).toBe('not measured');
    expect(verdict({ id: 'x', text: '', where: '', threshold: '', met: false, everyRound: false })).toBe('missed (on the median; not in every round)');
  });
});
