/**
 * Issue 19 acceptance: a seeded short fuzz run of the manifest reader and of the agent's
 * command line (bench/harden/fuzz.ts runs the same for minutes). No input crashes the
 * reader or takes longer than its budget; no refused start leaves a program attached or a
 * pin behind (real processes, real kernel, the lab's own cgroups).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from '../../lab/index.js';
import { fuzzAgentStarts, fuzzManifests } from '../../bench/harden/fuzz.js';
import { Rng } from '../../bench/harden/fuzz-inputs.js';

let lab: Lab;
let scratch: string;

beforeAll(async () => {
  lab = await Lab.create({ tag: 'hfuzz' });
  scratch = mkdtempSync(join(tmpdir(), 'kernway-fuzz-test-'));
});

afterAll(async () => {
  await lab?.destroy();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('fuzz (seeded, short)', () => {
  it('the manifest reader: no crash, every problem coded, no input over the 20 s budget', () => {
    const r = fuzzManifests(new Rng(19), 30);
    expect(r.failures).toEqual([]);
    expect(r.inputs).toBe(30);
    expect(Object.keys(r.byKind).length).toBeGreaterThanOrEqual(6);
    expect(r.slowestMs).toBeLessThan(20_000);
  });

  it('kernway agent with fuzzed options: every run ends or runs; a refused start leaves nothing attached or pinned', async () => {
    const r = await fuzzAgentStarts(new Rng(1919), lab, scratch, 8);
    expect(r.failures).toEqual([]);
    expect(r.runs).toBe(8);
    expect(r.refused).toBeGreaterThan(0);
  });
});
