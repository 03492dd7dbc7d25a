/**
 * `kernway waypoint --workers 2` behind the kernel hand-off (docs/waypoint-handoff.md):
 * the kernel redirects a pod's connect() to the ClusterIP to the waypoint pod's mesh port,
 * where both workers listen with SO_REUSEPORT; connections are spread over both, the
 * PROXY header the kernel writes is read by whichever worker accepted, and the one
 * /metrics counts every request. Real kernel, lab pods (bench/handoff/rig.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HandoffRig, VIP } from '../../bench/handoff/rig.js';

let rig: HandoffRig;

beforeAll(async () => {
  rig = await HandoffRig.start({ tag: 'wkhand', waypointArgs: ['--workers', '2'] });
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

interface WorkersReport { workers: { pid?: number; requests?: number }[] }

describe('hand-off to a waypoint with --workers 2', () => {
  it('connections redirected by the kernel reach both workers; /metrics adds up to every request', async () => {
    const admin = async (path: string): Promise<string> => {
      const r = await rig.lab.exec(rig.wp, 'curl', ['-sf', `http://127.0.0.1:15020${path}`]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    const before = rig.wpSync.stats().redirected;
    const K = 80;
    // One connection per request (Connection: close), so the kernel picks a worker's socket each time.
    const urls: string[] = [];
    for (let i = 0; i < K; i++) urls.push(`http://${VIP}/wk${i}`, '-o', '/dev/null', '-w', '%{http_code}\n');
    const r = await rig.curl(['-H', 'connection: close', ...urls]);
    expect(r.code, r.err).toBe(0);
    expect(r.out.trim().split('\n')).toEqual(Array.from({ length: K }, () => '200'));
    expect(rig.wpSync.stats().redirected - before).toBe(K);

    const w = JSON.parse(await admin('/debug/workers')) as WorkersReport;
    expect(w.workers).toHaveLength(2);
    const served = w.workers.map((x) => x.requests ?? 0);
    expect(served[0]).toBeGreaterThan(0);
    expect(served[1]).toBeGreaterThan(0);
    expect(served[0]! + served[1]!).toBe(K);
    const total = (await admin('/metrics')).split('\n').filter((l) => l.startsWith('kernway_waypoint_requests_total{'))
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    expect(total).toBe(K);
    // The access log lines come from both workers (the source is the client pod, through the header).
    await rig.until(async () => rig.waypointOut.includes('"path":"/wk79"'), 'access log line');
    expect(rig.waypointOut).toContain('front/client');
  }, 60_000);
});
