/**
 * The loader (agent/datapath/loader.ts) on real pins, without attaching: a map whose
 * capacity a new build changed (kw_sm_stats with more counters) is migrated with its
 * entries, the pin of an interrupted migration is removed, and a restart reuses.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from '../../lab/index.js';
import { BpfMap, BpfObject, addon } from '../../native/index.js';
import { checkSubsystem, MIGRATION_PREFIX, type SubsystemSpec } from '../../agent/datapath/loader.js';
import { readSockmapStats, Sockmap, SM_STATS } from '../../agent/datapath/sockmap.js';
import { OBJECT } from '../sockmap/harness.js';

let lab: Lab;
let spec: SubsystemSpec;
let maps: string;

beforeAll(async () => {
  lab = await Lab.create({ tag: 'loader' });
  // The accelerator's spec without its links: only maps are at stake here.
  spec = { ...Sockmap.spec({ cgroupPath: lab.cgroupPath, bpffsDir: lab.bpffsDir, objectPath: OBJECT }), links: [] };
  maps = spec.mapsDir;
});

afterAll(async () => {
  await lab?.destroy();
});

describe('the loader on pins', () => {
  it('a map a new build made bigger is migrated with its entries; a stale migrating- pin is removed', async () => {
    // An older agent: kw_sm_stats with 9 counters, pinned, counting.
    const old = BpfObject.open(OBJECT, { maxEntries: { kw_sm_stats: 9 }, pinMaps: { kw_sm_stats: join(maps, 'kw_sm_stats') } });
    mkdirSync(maps, { recursive: true });
    await old.load();
    const ncpu = addon().numPossibleCpus();
    for (let i = 0; i < 9; i++) {
      const v = Buffer.alloc(8 * ncpu);
      for (let c = 0; c < ncpu; c++) v.writeBigUInt64LE(BigInt((i + 1) * 10 + c), 8 * c);
      const k = Buffer.alloc(4);
      k.writeUInt32LE(i);
      old.map('kw_sm_stats').update(k, v);
    }
    // An upgrade interrupted before its rename left a pin behind.
    old.map('kw_sm_cfg').pin(join(maps, `${MIGRATION_PREFIX}kw_sm_cfg`));
    old.close();

    const plan = checkSubsystem(spec);
    expect(plan.migrations.map((m) => m.map)).toEqual(['kw_sm_stats']);
    const sub = await plan.load();
    try {
      expect(sub.migrated).toEqual(['kw_sm_stats']);
      sub.attach();
      expect(readdirSync(maps).filter((f) => f.startsWith(MIGRATION_PREFIX))).toEqual([]);
      const stats = BpfMap.openPinned(join(maps, 'kw_sm_stats'));
      try {
        expect(stats.info().maxEntries).toBe(SM_STATS.length);
        const s = readSockmapStats(stats);
        SM_STATS.forEach((name, i) => {
          const want = i < 9 ? Array.from({ length: ncpu }, (_, c) => (i + 1) * 10 + c).reduce((a, b) => a + b, 0) : 0;
          expect(s[name], name).toBe(want);
        });
      } finally {
        stats.close();
      }
    } finally {
      sub.close();
    }
  });

  it('a restart on the same build reuses every map; a capacity asked of a pinned map is refused', async () => {
    const plan = checkSubsystem(spec);
    expect(plan.migrations).toEqual([]);
    expect(plan.reuse).toContain('kw_sm_stats');
    plan.close();
    expect(() => checkSubsystem({ ...spec, capacities: { kw_sm_pods: 3 } })).toThrow(expect.objectContaining({ code: 'KW_MAP_CAPACITY_CHANGED' }));
    expect(() => checkSubsystem({ ...spec, capacities: { kw_sm_cfg: 3 } })).toThrow(expect.objectContaining({ code: 'KW_INVALID_ARGUMENT', message: expect.stringMatching(/^capacities\.kw_sm_cfg: expected one of kw_sm_hash, kw_sm_pods, kw_sm_handover/) }));
    expect(existsSync(join(maps, 'kw_sm_hash'))).toBe(true);
  });
});
