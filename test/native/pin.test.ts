/** Pins: a map pinned by one object is reused by the next one, contents and all (the restart story). */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InvalidArgumentError } from '../../common/errors.js';
import { BpfError, BpfMap, BpfObject, BpfProgram, ensureBpffs, mountsOfType } from '../../native/index.js';
import { makePinDir, testObject, u32, u64 } from './helpers.js';

let pins: ReturnType<typeof makePinDir>;
beforeAll(() => { pins = makePinDir(); });
afterAll(() => {
  pins?.remove();
  expect(existsSync(pins.dir)).toBe(false);
});

async function loaded(opts: Parameters<typeof BpfObject.open>[1] = {}): Promise<BpfObject> {
  const obj = BpfObject.open(testObject('maps'), opts);
  try {
    await obj.load();
  } catch (e) {
    obj.close();
    throw e;
  }
  return obj;
}

describe('ensureBpffs', () => {
  it('leaves a mounted bpffs alone and mounts one where there is none', () => {
    expect(ensureBpffs()).toBe('/sys/fs/bpf');
    expect(mountsOfType('bpf')).toContain('/sys/fs/bpf');
    const dir = mkdtempSync(join(tmpdir(), 'kernway-test-bpffs-'));
    try {
      expect(mountsOfType('bpf')).not.toContain(dir);
      expect(ensureBpffs(dir)).toBe(dir);
      expect(mountsOfType('bpf')).toContain(dir);
      expect(ensureBpffs(dir)).toBe(dir); // idempotent
    } finally {
      execFileSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    }
    expect(mountsOfType('bpf')).not.toContain(dir);
    const e = (() => { try { ensureBpffs('relative'); } catch (x) { return x; } })() as InvalidArgumentError;
    expect(e.path).toBe('path');
  });
});

describe('pinning', () => {
  it('a fresh object reuses a pinned map and sees the old contents', async () => {
    const path = join(pins.dir, 'kw_t_hash');
    const first = await loaded({ reusePinned: { kw_t_hash: path }, pinMaps: { kw_t_hash: path } });
    let firstId: number;
    try {
      expect(first.reusedMaps).toEqual([]);
      expect(first.pinnedMaps).toEqual(['kw_t_hash']);
      expect(existsSync(path)).toBe(true);
      first.map('kw_t_hash').update(u32(42), u64(4242));
      firstId = first.map('kw_t_hash').info().id;
    } finally {
      first.close(); // the pin keeps the map
    }
    const second = await loaded({ reusePinned: { kw_t_hash: path }, pinMaps: { kw_t_hash: path } });
    try {
      expect(second.reusedMaps).toEqual(['kw_t_hash']);
      expect(second.pinnedMaps).toEqual([]);
      const m = second.map('kw_t_hash');
      expect(m.info().id).toBe(firstId);
      expect(m.lookup(u32(42))!.readBigUInt64LE()).toBe(4242n);
      // And the same map through its pin.
      const viaPin = BpfMap.openPinned(path);
      try {
        expect(viaPin.lookup(u32(42))!.readBigUInt64LE()).toBe(4242n);
        viaPin.update(u32(43), u64(1));
        expect(m.lookup(u32(43))!.readBigUInt64LE()).toBe(1n);
      } finally {
        viaPin.close();
      }
      m.unpin(path);
      expect(existsSync(path)).toBe(false);
    } finally {
      second.close();
    }
  });

  it('without a pin, reusePinned creates the map (and does not pin it)', async () => {
    const path = join(pins.dir, 'not-there');
    const obj = await loaded({ reusePinned: { kw_t_hash: path } });
    try {
      expect(obj.reusedMaps).toEqual([]);
      expect(existsSync(path)).toBe(false);
    } finally {
      obj.close();
    }
  });

  it('a pinned map that does not match the object is refused, saying why', async () => {
    const path = join(pins.dir, 'small');
    const first = await loaded({ maxEntries: { kw_t_hash: 16 }, pinMaps: { kw_t_hash: path } });
    first.close();
    const e = (await loaded({ reusePinned: { kw_t_hash: path } }).then(() => undefined, (x: unknown) => x)) as BpfError;
    expect(e).toBeInstanceOf(BpfError);
    expect(e.code).toBe('EINVAL');
    expect(e.op).toBe('map.reuse');
    expect(e.map).toBe('kw_t_hash');
    expect(e.message).toContain('max entries 16');
    expect(e.message).toContain('1024');
    BpfMap.openPinned(path).unpin(path);
  });

  it('pinning where something is pinned already is EEXIST; unpin checks the pin is ours', async () => {
    const obj = await loaded();
    try {
      const a = obj.map('kw_t_hash');
      const b = obj.map('kw_t_big');
      const path = join(pins.dir, 'twice');
      a.pin(path);
      const e = (() => { try { b.pin(path); } catch (x) { return x; } })() as BpfError;
      expect(e).toBeInstanceOf(BpfError);
      expect(e.code).toBe('EEXIST');
      expect(e.op).toBe('map.pin');
      expect(e.map).toBe('kw_t_big');
      const wrong = (() => { try { b.unpin(path); } catch (x) { return x; } })() as BpfError;
      expect(wrong.code).toBe('EINVAL');
      expect(existsSync(path)).toBe(true);
      a.unpin(path);
      expect(existsSync(path)).toBe(false);
      const notBpffs = (() => { try { a.pin('/tmp/kernway-not-bpffs'); } catch (x) { return x; } })() as BpfError;
      expect(notBpffs).toBeInstanceOf(BpfError);
      expect(notBpffs.message).toContain('bpffs');
    } finally {
      obj.close();
    }
  });

  it('pins a program and opens it again by path', async () => {
    const obj = await loaded();
    const path = join(pins.dir, 'prog');
    try {
      const p = obj.program('kw_t_verdict');
      p.pin(path);
      const again = BpfProgram.openPinned(path);
      try {
        expect(again.info().id).toBe(p.info().id);
        expect(again.type).toBe('sched_cls');
        const notMap = (() => { try { BpfMap.openPinned(path); } catch (x) { return x; } })() as BpfError;
        expect(notMap.code).toBe('EINVAL');
        expect(notMap.message).toContain('prog');
      } finally {
        again.close();
      }
    } finally {
      obj.close();
    }
  });
});
