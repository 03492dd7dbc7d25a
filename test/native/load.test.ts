/** Loading the compiled addon: a failure says what was tried and how to build it. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { KernwayError } from '../../common/errors.js';

afterEach(() => {
  vi.unstubAllEnvs();
  vi.resetModules();
});

async function freshLoad(): Promise<typeof import('../../native/load.js')> {
  vi.resetModules(); // a fresh module instance: nothing cached from an earlier load
  return import('../../native/load.js');
}

describe('addon loading', () => {
  it('a missing binary names the path and says to run make addon', async () => {
    vi.stubEnv('KERNWAY_ADDON', '/nonexistent/kernway.node');
    const { addon } = await freshLoad();
    const e = (() => { try { addon(); } catch (x) { return x; } })() as KernwayError;
    expect(e.name).toBe('KernwayError'); // a fresh module instance: not the KernwayError imported above
    expect(e.code).toBe('KW_ADDON_LOAD');
    expect(e.message).toContain('/nonexistent/kernway.node: not found');
    expect(e.message).toContain("make addon");
  });

  it('a file that is not an addon gives the loader\'s reason', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kw-addon-'));
    try {
      const path = join(dir, 'kernway.node');
      writeFileSync(path, 'not a shared object');
      vi.stubEnv('KERNWAY_ADDON', path);
      const { addon } = await freshLoad();
      const e = (() => { try { addon(); } catch (x) { return x; } })() as KernwayError;
      expect(e.code).toBe('KW_ADDON_LOAD');
      expect(e.message).toContain(path);
      expect(e.message).toMatch(/invalid ELF header|file too short/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loads in a worker thread too (context-aware), next to the main thread', async () => {
    const { addon, addonCandidates } = await freshLoad();
    const main = addon();
    const { Worker } = await import('node:worker_threads');
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const raw = require(workerData);
      let code = '';
      try { raw.objGet('/sys/fs/bpf/kernway-test-none/none'); } catch (e) { code = e.code; }
      parentPort.postMessage({ version: raw.libbpfVersion(), cpus: raw.numPossibleCpus(), code });`;
    const got = await new Promise<{ version: string; cpus: number; code: string }>((resolve, reject) => {
      const w = new Worker(code, { eval: true, workerData: addonCandidates()[0] });
      w.once('message', (m) => { void w.terminate(); resolve(m as never); });
      w.once('error', reject);
    });
    expect(got).toEqual({ version: main.libbpfVersion(), cpus: main.numPossibleCpus(), code: 'ENOENT' });
  });

  it('the built addon loads and registers BpfError', async () => {
    const { addon } = await freshLoad();
    const { BpfError } = await import('../../native/errors.js');
    const raw = addon();
    const e = (() => { try { raw.objGet('/sys/fs/bpf/kernway-test-none/none'); } catch (x) { return x; } })() as Error;
    expect(e).toBeInstanceOf(BpfError);
    expect((e as InstanceType<typeof BpfError>).code).toBe('ENOENT');
  });
});
