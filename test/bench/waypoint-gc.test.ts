/**
 * bench/waypoint reads a waypoint's garbage collection from its /metrics (prom-client's
 * nodejs_gc_duration_seconds under the waypoint's prefix): pause seconds of every kind,
 * the count of young-generation (minor) collections, which the report gives per 100
 * requests (each one pauses the request it lands on: the one-connection p99), full (major)
 * collections and the young generation's size, which every run of the report lists.
 */
import { expect, it } from 'vitest';
import { gcTotals, useNet } from '../../bench/waypoint/run.js';

it('adds up GC pause seconds of every kind, counts minor and major collections, reads the young generation\'s size', () => {
  const text = [
    '# HELP kernway_waypoint_nodejs_gc_duration_seconds Garbage collection duration by kind, one of major, minor, incremental or weakcb.',
    '# TYPE kernway_waypoint_nodejs_gc_duration_seconds histogram',
    'kernway_waypoint_nodejs_gc_duration_seconds_bucket{le="0.001",kind="minor"} 40',
    'kernway_waypoint_nodejs_gc_duration_seconds_sum{kind="minor"} 0.25',
    'kernway_waypoint_nodejs_gc_duration_seconds_count{kind="minor"} 120',
    'kernway_waypoint_nodejs_gc_duration_seconds_sum{kind="major"} 0.5',
    'kernway_waypoint_nodejs_gc_duration_seconds_count{kind="major"} 3',
    'kernway_waypoint_nodejs_gc_duration_seconds_sum{kind="incremental"} 0.125',
    'kernway_waypoint_nodejs_gc_duration_seconds_count{kind="incremental"} 9',
    'kernway_waypoint_requests_total{code="200"} 1000',
  ].join('\n');
  expect(gcTotals(text)).toEqual({ seconds: 0.875, minor: 120, major: 3, newSpace: Number.NaN });
  expect(gcTotals(`${text}\nkernway_waypoint_nodejs_heap_space_size_total_bytes{space="new"} 8388608\nkernway_waypoint_nodejs_heap_space_size_total_bytes{space="old"} 9879552`).newSpace).toBe(8388608);
  expect(gcTotals('')).toEqual({ seconds: 0, minor: 0, major: 0, newSpace: Number.NaN });
});

it('--net takes two octets inside 127/8 only', () => {
  expect(() => useNet('10.1')).toThrow(/127\/8/);
  expect(() => useNet('127.300')).toThrow(/127\/8/);
  expect(() => useNet('127.93.0')).toThrow(/127\/8/);
  useNet('127.93');
});
