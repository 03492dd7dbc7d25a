/** BpfObject: open, tune, load (async), programs and maps by name, and the errors of each step. */
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../common/errors.js';
import { BpfError, BpfObject } from '../../native/index.js';
import { catchError, testObject, u32, udpPacket } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'kw-native-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('BpfObject', () => {
  it('opens, loads asynchronously and lists its programs and maps', async () => {
    const obj = BpfObject.open(testObject('maps'));
    try {
      expect(obj.name).toBe('maps');
      expect(obj.programs()).toEqual(['kw_t_verdict']);
      expect(obj.maps()).toEqual(expect.arrayContaining(['kw_t_hash', 'kw_t_big', 'kw_t_array', 'kw_t_percpu']));
      expect(obj.loaded).toBe(false);
      const pending = obj.load();
      expect(pending).toBeInstanceOf(Promise);
      expect(obj.loaded).toBe(false); // the verifier runs on a worker thread
      await pending;
      expect(obj.loaded).toBe(true);
      const prog = obj.program('kw_t_verdict');
      expect(prog.type).toBe('sched_cls');
      expect(prog.fd).toBeGreaterThan(2);
      expect(prog.info().name).toBe('kw_t_verdict');
      expect(obj.map('kw_t_hash').info()).toMatchObject({ type: 'hash', keySize: 4, valueSize: 8, maxEntries: 1024 });
      expect(obj.program('kw_t_verdict')).toBe(prog); // one wrapper per name
    } finally {
      obj.close();
    }
  });

  it('sets rodata tunables before load, and the program sees them', async () => {
    const obj = BpfObject.open(testObject('maps'), {
      rodata: { kw_verdict: 2, kw_mark: 0x1122334455667788n, kw_enabled: true, kw_signed: -7 },
    });
    try {
      await obj.load();
      const r = obj.program('kw_t_verdict').testRun({ data: udpPacket({ dport: 1 }) });
      expect(r.retval).toBe(2);
      const arr = obj.map('kw_t_array');
      expect(arr.lookup(u32(0))!.readBigUInt64LE()).toBe(0x1122334455667788n);
      expect(arr.lookup(u32(1))!.readBigInt64LE()).toBe(-7n);
    } finally {
      obj.close();
    }
  });

  it('overrides max_entries before load', async () => {
    const obj = BpfObject.open(testObject('maps'), { maxEntries: { kw_t_hash: 77 } });
    try {
      await obj.load();
      expect(obj.map('kw_t_hash').info().maxEntries).toBe(77);
    } finally {
      obj.close();
    }
  });

  it('rejects bad options before they reach the addon, naming them', () => {
    const cases: Array<[unknown, string]> = [
      [{ rodata: { kw_nope: 1 } }, 'opts.rodata.kw_nope'],
      [{ rodata: { kw_verdict: 2 ** 32 } }, 'opts.rodata.kw_verdict'],
      [{ rodata: { kw_verdict: 1.5 } }, 'opts.rodata.kw_verdict'],
      [{ rodata: { kw_signed: 40000 } }, 'opts.rodata.kw_signed'],
      [{ rodata: { kw_enabled: 1 } }, 'opts.rodata.kw_enabled'],
      [{ rodata: { kw_mark: Buffer.alloc(4) } }, 'opts.rodata.kw_mark'],
      [{ maxEntries: { kw_t_nope: 4 } }, 'opts.maxEntries.kw_t_nope'],
      [{ maxEntries: { kw_t_hash: 0 } }, 'opts.maxEntries.kw_t_hash'],
      [{ reusePinned: { kw_t_hash: 'relative/path' } }, 'opts.reusePinned.kw_t_hash'],
      [{ pinMap: {} }, 'opts.pinMap'],
    ];
    for (const [opts, path] of cases) {
      const e = catchError(() => BpfObject.open(testObject('maps'), opts as never));
      expect(e, path).toBeInstanceOf(InvalidArgumentError);
      expect((e as InvalidArgumentError).path).toBe(path);
      expect((e as Error).message).toContain(path);
    }
    expect((catchError(() => BpfObject.open('')) as InvalidArgumentError).path).toBe('path');
  });

  it('a missing file is ENOENT naming the path', () => {
    const path = join(scratch, 'nope.bpf.o');
    const e = catchError(() => BpfObject.open(path)) as BpfError;
    expect(e).toBeInstanceOf(BpfError);
    expect(e.code).toBe('ENOENT');
    expect(e.errno).toBe(2);
    expect(e.op).toBe('object.open');
    expect(e.message).toContain(path);
  });

  it('a file that is not a BPF ELF object is ENOEXEC', () => {
    const path = join(scratch, 'text.bpf.o');
    writeFileSync(path, 'this is not an ELF file\n'.repeat(10));
    const e = catchError(() => BpfObject.open(path)) as BpfError;
    expect(e).toBeInstanceOf(BpfError);
    expect(e.code).toBe('ENOEXEC');
    expect(e.op).toBe('object.open');
    expect(e.message).toContain(path);
  });

  it('a program the verifier rejects fails the load with its name and the verifier log', async () => {
    const obj = BpfObject.open(testObject('reject'));
    try {
      const e = (await obj.load().then(() => undefined, (x: unknown) => x)) as BpfError;
      expect(e).toBeInstanceOf(BpfError);
      expect(e.op).toBe('object.load');
      expect(e.code).toBe('EACCES');
      expect(e.object).toBe('reject');
      expect(e.program).toBe('kw_t_bad');
      expect(e.verifierLog).toMatch(/invalid mem access|map_value_or_null/);
      expect(e.verifierLog!.length).toBeLessThanOrEqual(4096 + 8);
      expect(e.message).toContain("program 'kw_t_bad'");
      expect(obj.loaded).toBe(false);
      const late = catchError(() => obj.program('kw_t_good')) as BpfError;
      expect(late).toBeInstanceOf(BpfError);
      expect(late.message).toContain('failed');
    } finally {
      obj.close();
    }
  });

  it('unknown program or map names are ENOENT naming them', async () => {
    const obj = BpfObject.open(testObject('maps'));
    try {
      await obj.load();
      const p = catchError(() => obj.program('kw_nope')) as BpfError;
      expect(p.code).toBe('ENOENT');
      expect(p.program).toBe('kw_nope');
      expect(p.message).toContain('kw_t_verdict');
      const m = catchError(() => obj.map('kw_nope')) as BpfError;
      expect(m.code).toBe('ENOENT');
      expect(m.map).toBe('kw_nope');
    } finally {
      obj.close();
    }
  });

  it('programs and maps close with their object', async () => {
    const obj = BpfObject.open(testObject('maps'));
    await obj.load();
    const map = obj.map('kw_t_hash');
    obj.close();
    const e = catchError(() => map.lookup(u32(1))) as BpfError;
    expect(e).toBeInstanceOf(BpfError);
    expect(e.code).toBe('EBADF');
    expect(e.map).toBe('kw_t_hash');
  });
});
