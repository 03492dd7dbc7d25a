/**
 * bench/chaos, short: the real `kernway agent` and `kernway waypoint` in a lab, under load
 * (new connections to a kernel-balanced ClusterIP, same-node streams with every byte
 * checked, HTTP through the waypoint), while the agent is killed and restarted, the
 * waypoint replicas are rolled, the maps are overfilled and mutated manifests are fed to
 * both. Each fault must cost nothing: 0 failed connections, 0 corrupted or lost bytes,
 * 0 failed HTTP requests. Runs dist/ (make build).
 */
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { FAULT_NAMES, QUICK, UPGRADE_OBJECT, formatTable, runChaos, type FaultResult } from '../../bench/chaos/run.js';
import { BREAKING_KINDS, Rng, mutate } from '../../bench/chaos/mutate.js';
import { Sequence } from '../../bench/chaos/traffic.js';

describe('chaos pieces', () => {
  it('the stream sequence finds a changed, lost or repeated byte anywhere', () => {
    const s = new Sequence(7);
    const b = s.slice(1_048_000, 4000); // across the period
    expect(s.mismatches(b, 1_048_000)).toBe(0);
    const flipped = Buffer.from(b);
    flipped[1234] = flipped[1234]! ^ 1;
    expect(s.mismatches(flipped, 1_048_000)).toBe(1);
    // A byte lost: everything after it is off by one.
    expect(s.mismatches(Buffer.concat([b.subarray(0, 10), b.subarray(11)]), 1_048_000)).toBeGreaterThan(3000);
    // A whole period repeated is not the same bytes either.
    expect(s.mismatches(s.slice(0, 100), 1_048_573)).toBeGreaterThan(90);
  });

  it('mutations are seeded, and breaking ones break', () => {
    const text = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ kind: 'Service', spec: { ports: [{ port: 80 }] } }] });
    const a = Array.from({ length: 20 }, (_, i) => mutate(new Rng(i), text));
    const b = Array.from({ length: 20 }, (_, i) => mutate(new Rng(i), text));
    expect(a).toEqual(b);
    const r = new Rng(3);
    for (let i = 0; i < 50; i++) {
      const m = mutate(r, text, BREAKING_KINDS);
      expect(m.text).not.toBe(text);
      if (m.kind === 'truncate') expect(m.text.length).toBeGreaterThan(0);
    }
  });
});

describe('bench/chaos --quick', () => {
  it('every fault under load: 0 failed connections, 0 corrupted bytes, 0 failed HTTP requests', async () => {
    const lines: string[] = [];
    const rep = await runChaos({
      ...QUICK, seed: 12, holdSeconds: 0.3, fuzzSeconds: 2, upgradeObject: UPGRADE_OBJECT,
      faults: FAULT_NAMES.filter((f) => f !== 'baseline' && f !== 'waypoint-restart'),
      log: (l) => lines.push(l),
    });
    const table = formatTable(rep);
    const by = (f: string): FaultResult => rep.results.find((r) => r.fault === f)!;
    for (const r of rep.results.filter((x) => x.ran)) {
      expect({ fault: r.fault, met: r.met, notes: r.notes, failures: r.failures.slice(0, 5) }, table).toMatchObject({ met: true });
      // The load really ran through each fault.
      expect(r.conn.attempted, r.fault).toBeGreaterThan(0);
      expect(r.bytes.sent, r.fault).toBeGreaterThan(0);
      expect(r.http.sent, r.fault).toBeGreaterThan(0);
    }
    expect(by('agent-sigkill').recoverMs).toBeGreaterThan(0);
    // The full map: reported, what was there kept, then back.
    expect(by('map-capacity').notes.join('\n')).toMatch(/problem: \d+ Service ports do not fit map kw_svc \(64 installed\)/);
    expect(by('map-capacity').notes.join('\n')).toMatch(/every frontend that was there kept its backends/);
    // Mutated manifests: all named, both processes alive, the maps as before.
    expect(by('manifest-fuzz').notes.join('\n')).toMatch(/agent and \d waypoint\(s\) alive; agent's maps as before/);
    expect(by('manifest-fuzz').notes.join('\n')).not.toMatch(/NOT NAMED/);
    // The layout upgrade runs whenever the build has the changed object (make build, docs/upgrade.md).
    expect(by('agent-upgrade').ran).toBe(existsSync(UPGRADE_OBJECT));
  }, 240_000);
});
