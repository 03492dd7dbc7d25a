/**
 * Request metrics as cells of plain numbers (issue 16): a request adds to the cell its
 * compiled backend leads to (found by the object, made with the route table), and the
 * exposition is prom-client's text with the same names and labels as by label strings:
 * backends with the same route and destination share one series, a new table's backends
 * continue the same series, codes and calling workloads stay apart.
 */
import { expect, it } from 'vitest';
import { WaypointMetrics } from '../../waypoint/observe/metrics.js';

function series(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

it('cells found by backend object and by label strings are the same series', async () => {
  const m = new WaypointMetrics({ defaultMetrics: false });
  const first = {}, second = {}, nextTable = {};
  const l = { route: 'ns/r', destination: 'ns/web', source: 'ns/caller' };
  for (let i = 0; i < 3; i++) m.observe({ ...l, code: 200, via: first }, 0.002, 10, 20);
  for (let i = 0; i < 2; i++) m.observe({ ...l, code: 200, via: second }, 0.02, 0, 5);
  m.observe({ ...l, code: 200 }, 0.2, 0, 0);
  m.observe({ ...l, code: 200, via: nextTable }, 0.0001, 0, 0);
  m.observe({ ...l, code: 503, via: first }, 0.001, 0, 0);
  m.observe({ ...l, source: 'unknown', code: 200, via: first }, 0.001, 0, 0);
  // The same object with other labels (a reused object): counted under its own labels.
  m.observe({ route: 'ns/other', destination: 'ns/web', source: 'unknown', code: 404, via: first }, 0.001, 0, 0);
  const text = await m.registry.metrics();
  expect(series(text, 'kernway_waypoint_requests_total')).toEqual([
    'kernway_waypoint_requests_total{route="ns/r",destination_service="ns/web",response_code="200",source_workload="ns/caller"} 7',
    'kernway_waypoint_requests_total{route="ns/r",destination_service="ns/web",response_code="200",source_workload="unknown"} 1',
    'kernway_waypoint_requests_total{route="ns/r",destination_service="ns/web",response_code="503",source_workload="ns/caller"} 1',
    'kernway_waypoint_requests_total{route="ns/other",destination_service="ns/web",response_code="404",source_workload="unknown"} 1',
  ]);
  expect(series(text, 'kernway_waypoint_request_duration_seconds_count')).toEqual([
    'kernway_waypoint_request_duration_seconds_count{route="ns/r",destination_service="ns/web"} 9',
    'kernway_waypoint_request_duration_seconds_count{route="ns/other",destination_service="ns/web"} 1',
  ]);
  expect(text).toContain('kernway_waypoint_request_duration_seconds_bucket{route="ns/r",destination_service="ns/web",le="0.0025"} 6');
  expect(text).toContain('kernway_waypoint_request_duration_seconds_bucket{route="ns/r",destination_service="ns/web",le="0.025"} 8');
  expect(text).toContain('kernway_waypoint_request_duration_seconds_bucket{route="ns/r",destination_service="ns/web",le="+Inf"} 9');
  expect(text).toContain('kernway_waypoint_request_body_bytes_total{route="ns/r",destination_service="ns/web"} 30');
  expect(text).toContain('kernway_waypoint_response_body_bytes_total{route="ns/r",destination_service="ns/web"} 70');
});
