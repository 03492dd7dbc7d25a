/** BpfMap against real kernel maps: CRUD with flags, batches (100,000 entries), iteration, per-CPU values, errors. */
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../common/errors.js';
import { BpfError, BpfMap, BpfObject, UpdateFlags } from '../../native/index.js';
import { catchError, sumPerCpu, testObject, u32, u64, udpPacket } from './helpers.js';

let obj: BpfObject;
beforeAll(async () => {
  obj = BpfObject.open(testObject('maps'));
  await obj.load();
});
afterAll(() => obj?.close());

describe('BpfMap', () => {
  it('looks up, updates (with flags) and deletes', () => {
    const m = obj.map('kw_t_hash');
    expect(m.lookup(u32(1))).toBeUndefined();
    m.update(u32(1), u64(100));
    expect(m.lookup(u32(1))!.readBigUInt64LE()).toBe(100n);
    const exists = catchError(() => m.update(u32(1), u64(200), UpdateFlags.NOEXIST)) as BpfError;
    expect(exists).toBeInstanceOf(BpfError);
    expect(exists.code).toBe('EEXIST');
    expect(exists.op).toBe('map.update');
    expect(exists.map).toBe('kw_t_hash');
    expect(exists.object).toBe('maps');
    m.update(u32(1), u64(300), UpdateFlags.EXIST);
    expect(m.lookup(u32(1))!.readBigUInt64LE()).toBe(300n);
    const missing = catchError(() => m.update(u32(2), u64(1), UpdateFlags.EXIST)) as BpfError;
    expect(missing.code).toBe('ENOENT');
    expect(m.delete(u32(1))).toBe(true);
    expect(m.delete(u32(1))).toBe(false);
    expect(m.lookup(u32(1))).toBeUndefined();
  });

  it('reports its info', () => {
    const info = obj.map('kw_t_big').info();
    expect(info).toMatchObject({ name: 'kw_t_big', type: 'hash', keySize: 4, valueSize: 8, maxEntries: 131072 });
    expect(info.id).toBeGreaterThan(0);
    expect(obj.map('kw_t_percpu').info().type).toBe('percpu_array');
  });

  it('batch-updates 100,000 entries and reads them back', () => {
    const m = obj.map('kw_t_big');
    const n = 100_000;
    const keys = Buffer.alloc(4 * n);
    const values = Buffer.alloc(8 * n);
    for (let i = 0; i < n; i++) {
      keys.writeUInt32LE(i * 7 + 1, 4 * i);
      values.writeBigUInt64LE(BigInt(i) * 1000n + 5n, 8 * i);
    }
    const t0 = performance.now();
    const done = m.batchUpdate(keys, values);
    const ms = performance.now() - t0;
    console.log(`[measure] batchUpdate of ${n} entries (hash u32->u64): ${ms.toFixed(1)} ms`);
    expect(done).toBe(n);
    const t1 = performance.now();
    const all = m.batchLookup();
    console.log(`[measure] batchLookup of ${all.keys.length} entries: ${(performance.now() - t1).toFixed(1)} ms`);
    expect(all.keys.length).toBe(n);
    const seen = new Map<number, bigint>();
    all.keys.forEach((k, i) => seen.set(k.readUInt32LE(), all.values[i]!.readBigUInt64LE()));
    expect(seen.size).toBe(n);
    for (const i of [0, 1, 4242, 99_999]) expect(seen.get(i * 7 + 1)).toBe(BigInt(i) * 1000n + 5n);
    expect(m.lookup(u32(7 * 500 + 1))!.readBigUInt64LE()).toBe(500_005n);
    // Delete half in one batch; absent keys are skipped.
    const half = keys.subarray(0, 4 * (n / 2));
    expect(m.batchDelete(Buffer.concat([half, u32(0xdeadbeef)]))).toBe(n / 2);
    expect(m.batchLookup().keys.length).toBe(n / 2);
    expect(m.batchDelete(keys)).toBe(n / 2);
    expect(m.batchLookup().keys.length).toBe(0);
  });

  it('batches accept arrays of Buffers; a failing batch says how far it got', () => {
    const m = obj.map('kw_t_hash');
    try {
      expect(m.batchUpdate([u32(10), u32(11), u32(12)], [u64(1), u64(2), u64(3)])).toBe(3);
      expect(m.lookup(u32(12))!.readBigUInt64LE()).toBe(3n);
      // The kernel takes no NOEXIST/EXIST for batches: caught before it.
      const flags = catchError(() => m.batchUpdate([u32(13)], [u64(4)], UpdateFlags.NOEXIST)) as InvalidArgumentError;
      expect(flags).toBeInstanceOf(InvalidArgumentError);
      expect(flags.path).toBe("map 'kw_t_hash' flags");
    } finally {
      expect(m.batchDelete([u32(10), u32(11), u32(12)])).toBe(3);
    }
    const arr = obj.map('kw_t_array'); // 4 entries: index 9 is out of range
    const e = catchError(() => arr.batchUpdate([u32(2), u32(3), u32(9)], [u64(7), u64(8), u64(9)])) as BpfError;
    expect(e).toBeInstanceOf(BpfError);
    expect(e.code).toBe('E2BIG');
    expect(e.op).toBe('map.batch_update');
    expect(e.map).toBe('kw_t_array');
    expect(e.message).toContain('stopped after 2 of 3');
    expect(arr.lookup(u32(3))!.readBigUInt64LE()).toBe(8n);
  });

  it('iterates keys and entries', () => {
    const m = obj.map('kw_t_hash');
    for (let i = 0; i < 20; i++) m.update(u32(100 + i), u64(i));
    const keys = [...m.keys()].map((k) => k.readUInt32LE()).sort((a, b) => a - b);
    expect(keys).toEqual(Array.from({ length: 20 }, (_, i) => 100 + i));
    const entries = new Map([...m.entries()].map(([k, v]) => [k.readUInt32LE(), v.readBigUInt64LE()]));
    expect(entries.get(107)).toBe(7n);
    expect(m.batchDelete([...m.keys()])).toBe(20);
    expect([...m.keys()]).toEqual([]);
  });

  it('reads arrays whole (batch) and per-CPU values for every CPU', () => {
    const arr = obj.map('kw_t_array');
    expect(arr.batchLookup().keys.length).toBe(4); // arrays always hold max_entries
    const pc = obj.map('kw_t_percpu');
    const before = sumPerCpu(pc.lookup(u32(0))!);
    obj.program('kw_t_verdict').testRun({ data: udpPacket({ dport: 1 }), repeat: 5 });
    const v = pc.lookup(u32(0))!;
    expect(v.length).toBe(pc.valueBytes);
    expect(v.length % 8).toBe(0);
    expect(sumPerCpu(v) - before).toBe(5n);
    // lookupInto: the same bytes into a buffer given (no Buffer per lookup); false and untouched when absent.
    const into = Buffer.alloc(pc.valueBytes, 0xee);
    expect(pc.lookupInto(u32(0), into)).toBe(true);
    expect(into.equals(v)).toBe(true);
    const h = obj.map('kw_t_hash');
    const miss = Buffer.alloc(h.valueBytes, 0xee);
    expect(h.lookupInto(u32(424242), miss)).toBe(false);
    expect(miss.every((b) => b === 0xee)).toBe(true);
    expect(catchError(() => pc.lookupInto(u32(0), Buffer.alloc(pc.valueBytes - 8)))).toBeInstanceOf(InvalidArgumentError);
    // Writing a per-CPU value takes one slot per CPU.
    pc.update(u32(0), Buffer.alloc(pc.valueBytes));
    expect(sumPerCpu(pc.lookup(u32(0))!)).toBe(0n);
    const short = catchError(() => pc.update(u32(0), u64(1))) as InvalidArgumentError;
    expect(short).toBeInstanceOf(InvalidArgumentError);
    expect(short.message).toContain(`${pc.valueBytes} bytes`);
  });

  it('a wrong key or value size is caught before the kernel, naming the map', () => {
    const m = obj.map('kw_t_hash');
    const key = catchError(() => m.lookup(Buffer.alloc(3))) as InvalidArgumentError;
    expect(key).toBeInstanceOf(InvalidArgumentError);
    expect(key.path).toBe("map 'kw_t_hash' key");
    expect(key.message).toBe("map 'kw_t_hash' key: expected a Buffer of 4 bytes, got Buffer(3)");
    expect((catchError(() => m.update(u32(1), Buffer.alloc(4))) as InvalidArgumentError).path).toBe("map 'kw_t_hash' value");
    expect((catchError(() => m.update(u32(1), u64(1), -1)) as InvalidArgumentError).path).toBe("map 'kw_t_hash' flags");
    expect((catchError(() => m.delete('1' as never)) as InvalidArgumentError).path).toBe("map 'kw_t_hash' key");
    expect((catchError(() => m.batchUpdate(Buffer.alloc(6), Buffer.alloc(16))) as InvalidArgumentError).path).toBe("map 'kw_t_hash' keys");
    expect((catchError(() => m.batchUpdate([u32(1), u32(2)], [u64(1)])) as InvalidArgumentError).path).toBe("map 'kw_t_hash' values");
    expect((catchError(() => m.batchUpdate([u32(1), Buffer.alloc(2)], [u64(1), u64(2)])) as InvalidArgumentError).path).toBe("map 'kw_t_hash' keys[1]");
  });

  it('an array cannot delete: the kernel says EINVAL, named', () => {
    const e = catchError(() => obj.map('kw_t_array').delete(u32(0))) as BpfError;
    expect(e).toBeInstanceOf(BpfError);
    expect(e.code).toBe('EINVAL');
    expect(e.op).toBe('map.delete');
    expect(e.map).toBe('kw_t_array');
  });

  it('opening a pin that does not exist is ENOENT', () => {
    const e = catchError(() => BpfMap.openPinned('/sys/fs/bpf/kernway-test-none/none')) as BpfError;
    expect(e.code).toBe('ENOENT');
    expect(e.op).toBe('map.open_pinned');
  });
});
