/**
 * waypoint/idle-memory.ts: the waypoint gives V8's young generation back when it goes idle
 * after load (a compacting GC from a timer, never on the request path), and keeps serving
 * correctly through and after it.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../common/version.js';
import { cartRoutesManifests, meshRequest, type Rig, startRig } from './fixtures/rig.js';

const IDLE_JS = pathToFileURL(join(projectRoot(), 'dist', 'waypoint', 'idle-memory.js')).href;

/** In a fresh process: grow the young generation with surviving objects, drop them, then check busy and idle. */
function compactorInAFreshProcess(): { grownMiB: number; atStart: boolean; busy: boolean; idle: boolean; afterwards: boolean; regrownMiB: number; scrapeOnly: boolean; busyAgain: boolean; idleAgain: boolean; youngBeforeMiB: number; youngAfterMiB: number; count: number } {
  const script = `
    const { IdleCompactor, youngGenerationBytes } = await import(${JSON.stringify(IDLE_JS)});
    let keep = [];
    for (let i = 0; i < 400000; i++) keep.push({ ip: '10.0.' + (i >> 8) + '.' + (i & 255), port: i & 65535, tags: [i] });
    const grown = youngGenerationBytes();
    keep = undefined;
    // Started after a burst with no request yet (a waypoint that just read its configuration): one look compacts.
    const fresh = new IdleCompactor({ answered: () => 0, inProgress: () => 0 }, { intervalMs: 3_600_000 });
    fresh.start();
    const atStart = fresh.check() && !fresh.check();
    fresh.stop();
    keep = [];
    for (let i = 0; i < 400000; i++) keep.push({ ip: '10.0.' + (i >> 8) + '.' + (i & 255), port: i & 65535, tags: [i] });
    keep = undefined;
    let seen;
    let answered = 0;
    const c = new IdleCompactor({ answered: () => answered, inProgress: () => 0 }, { intervalMs: 3_600_000, onCompacted: (x) => { seen = x; } });
    c.start();
    answered++; // a request answered during the interval
    const busy = c.check();
    const idle = c.check(); // none since
    const afterwards = c.check(); // still none, but nothing answered since the compaction either
    keep = [];
    for (let i = 0; i < 400000; i++) keep.push({ ip: '10.0.' + (i >> 8) + '.' + (i & 255), port: i & 65535, tags: [i] });
    const regrown = youngGenerationBytes();
    keep = undefined;
    const scrapeOnly = c.check(); // the young generation grew again (as a /metrics scrape does) without a request
    answered++;
    const busyAgain = c.check();
    const idleAgain = c.check();
    c.stop();
    const mib = (n) => n / 2 ** 20;
    console.log(JSON.stringify({ grownMiB: mib(grown), atStart, busy, idle, afterwards, regrownMiB: mib(regrown), scrapeOnly, busyAgain, idleAgain, youngBeforeMiB: mib(seen?.youngBefore ?? NaN), youngAfterMiB: mib(seen?.youngAfter ?? NaN), count: c.count }));`;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as ReturnType<typeof compactorInAFreshProcess>;
}

describe('IdleCompactor', () => {
  it('does nothing while requests are answered; once none was, gives the grown young generation back, once per burst', () => {
    const r = compactorInAFreshProcess();
    expect(r.grownMiB).toBeGreaterThanOrEqual(8); // V8 grew it (Node 24: 32-64 MiB)
    expect(r.atStart).toBe(true);
    expect(r.busy).toBe(false);
    expect(r.idle).toBe(true);
    expect(r.youngAfterMiB).toBeLessThan(r.youngBeforeMiB / 4);
    // Once per burst: not again without a request answered in between, however large the young generation grew.
    expect(r.afterwards).toBe(false);
    expect(r.regrownMiB).toBeGreaterThanOrEqual(8);
    expect(r.scrapeOnly).toBe(false);
    expect(r.busyAgain).toBe(false);
    expect(r.idleAgain).toBe(true);
    expect(r.count).toBe(2);
  });
});

describe('a waypoint going idle', () => {
  let rig: Rig;
  beforeAll(async () => {
    rig = await startRig({
      octet: 85, namespace: 'shop', backends: { cart: 1 }, manifests: (a) => cartRoutesManifests(a),
      // Every 50 ms, and whatever the young generation's size, so that it runs between requests here.
      waypoint: { idleCompaction: { intervalMs: 50, youngGenerationBytes: 0 } },
    });
  }, 30_000);
  afterAll(async () => { await rig?.close(); });

  const compactions = async (): Promise<number> => {
    const m = await rig.waypoint.metrics.registry.getSingleMetricAsString('kernway_waypoint_idle_compactions_total');
    return Number(/^kernway_waypoint_idle_compactions_total (\d+)$/m.exec(m)?.[1] ?? 0);
  };

  it('compacts its heap while requests keep being answered, and serves correctly after', async () => {
    const statuses: number[] = [];
    const bodies: string[] = [];
    const deadline = Date.now() + 20_000;
    // Requests one after another with pauses longer than the interval until compactions ran, then 20 more.
    let after = -1;
    while (Date.now() < deadline && after !== 0) {
      const r = await meshRequest(rig, rig.a.caller(0), `/items/${statuses.length}`);
      statuses.push(r.status);
      bodies.push(r.body);
      if (after > 0) after--;
      else if (after < 0 && (await compactions()) >= 2) after = 20;
      else await new Promise((res) => setTimeout(res, 120));
    }
    expect(await compactions()).toBeGreaterThanOrEqual(2);
    expect(after).toBe(0);
    expect(statuses.every((s) => s === 200)).toBe(true);
    // Every answer is the backend's echo of its own request.
    bodies.forEach((b, i) => expect((JSON.parse(b) as { path: string }).path).toBe(`/items/${i}`));
    const paused = await rig.waypoint.metrics.registry.getSingleMetricAsString('kernway_waypoint_idle_compaction_seconds_total');
    expect(Number(/^kernway_waypoint_idle_compaction_seconds_total (\S+)$/m.exec(paused)![1])).toBeGreaterThan(0);
  }, 30_000);
});

describe("the waypoint's fixed cost", () => {
  it('does not load undici (an ESM import of node:http would, through its lazy WebSocket getters: ~2 MiB)', () => {
    const script = `
      await import(${JSON.stringify(pathToFileURL(join(projectRoot(), 'dist', 'cli', 'waypoint.js')).href)});
      console.log(JSON.stringify(process.moduleLoadList.filter((m) => /undici|^NativeModule http$/.test(m))));`;
    const loaded = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as string[];
    expect(loaded).toContain('NativeModule http'); // the module graph was loaded
    expect(loaded.filter((m) => m.includes('undici'))).toEqual([]);
  });
});

describe('--idle-compaction', () => {
  const base = ['--namespace', 'shop', '--manifests', '/nonexistent'];
  it('is on unless turned off, and refuses other values naming the option', async () => {
    const { parseWaypointArgs } = await import('../../waypoint/options.js');
    expect(parseWaypointArgs(base).waypoint.idleCompaction).toBeUndefined();
    expect(parseWaypointArgs([...base, '--idle-compaction', 'on']).waypoint.idleCompaction).toBeUndefined();
    expect(parseWaypointArgs([...base, '--idle-compaction', 'off']).waypoint.idleCompaction).toBe(false);
    expect(() => parseWaypointArgs([...base, '--idle-compaction', 'no'])).toThrow(/--idle-compaction: expected on or off/);
  });
});

describe('a waypoint with --idle-compaction off', () => {
  let rig: Rig;
  beforeAll(async () => {
    rig = await startRig({ octet: 87, namespace: 'shop', backends: { cart: 1 }, manifests: (a) => cartRoutesManifests(a), waypoint: { idleCompaction: false } });
  }, 30_000);
  afterAll(async () => { await rig?.close(); });

  it('has no compactor: nothing compacts after its requests', async () => {
    for (let i = 0; i < 5; i++) expect((await meshRequest(rig, rig.a.caller(0), `/items/${i}`)).status).toBe(200);
    const m = await rig.waypoint.metrics.registry.getSingleMetricAsString('kernway_waypoint_idle_compactions_total');
    expect(m).toMatch(/^kernway_waypoint_idle_compactions_total 0$/m);
    expect((rig.waypoint as unknown as { idle: unknown }).idle).toBeUndefined();
  });
});
