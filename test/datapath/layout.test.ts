/**
 * Struct layouts (agent/datapath/layout.ts) against the objects' BTF, and entry
 * conversion between two layouts (migrate.ts). Needs the built objects, not the kernel:
 * an object's BTF is read from the ELF file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BpfObject, type BtfType } from '../../native/index.js';
import { KW_BACKEND, LB_LAYOUTS } from '../../agent/datapath/codec.js';
import { POLICY_LAYOUTS } from '../../agent/datapath/policy-codec.js';
import { SM_LAYOUTS } from '../../agent/datapath/sockmap.js';
import { checkMapLayout, struct, type MapLayout } from '../../agent/datapath/layout.js';
import { planConversion } from '../../agent/datapath/migrate.js';
import { checkSubsystem } from '../../agent/datapath/loader.js';
import { sockLbSpec } from '../../agent/datapath/sock-lb.js';

const BPF = fileURLToPath(new URL('../../build/bpf/', import.meta.url));

function checkAll(file: string, layouts: Readonly<Record<string, MapLayout>>): string[] {
  const obj = BpfObject.open(join(BPF, file));
  try {
    const checked: string[] = [];
    for (const [map, layout] of Object.entries(layouts)) {
      if (!obj.maps().includes(map)) continue;
      checkMapLayout(map, layout, obj.mapBtf(map), file, 'test');
      checked.push(map);
    }
    return checked;
  } finally {
    obj.close();
  }
}

function backendBtf(): BtfType {
  const obj = BpfObject.open(join(BPF, 'sock_lb.bpf.o'));
  try { return obj.mapBtf('kw_backend').value!; } finally { obj.close(); }
}

describe('struct layouts vs BTF', () => {
  it('every struct TypeScript encodes matches the objects field by field', () => {
    expect(checkAll('sock_lb.bpf.o', LB_LAYOUTS).sort()).toEqual(Object.keys(LB_LAYOUTS).sort());
    expect(checkAll('tc_pod.bpf.o', POLICY_LAYOUTS).length).toBeGreaterThan(0);
    const both = new Set([...checkAll('tc_pod.bpf.o', POLICY_LAYOUTS), ...checkAll('policy_sock.bpf.o', POLICY_LAYOUTS)]);
    expect([...both].sort()).toEqual(Object.keys(POLICY_LAYOUTS).sort());
    expect(checkAll('sockmap.bpf.o', SM_LAYOUTS).sort()).toEqual(Object.keys(SM_LAYOUTS).sort());
    // The upgrade variant adds a field to a struct TypeScript only reads: still accepted.
    expect(checkAll('test/sock_lb_v2.bpf.o', LB_LAYOUTS)).toContain('kw_revnat');
  });

  it('names the field whose offset or size differs, not only the total', () => {
    const btf = { value: backendBtf() };
    const moved = struct('kw_backend', 24, { addr: [0, 16], port: [18, 2], proto: [16, 1], pad: [19, 1], svc_id: [20, 4] });
    expect(() => checkMapLayout('kw_backend', { value: moved }, btf, 'sock_lb.bpf.o', 'codec.ts')).toThrow(expect.objectContaining({
      code: 'KW_STRUCT_LAYOUT',
      message: "map kw_backend value: struct kw_backend field 'port' is at offset 16 size 2, not offset 18 size 2 in sock_lb.bpf.o, codec.ts says otherwise: the object and the agent disagree (rebuild both: make build)",
    }));
    const resized = struct('kw_backend', 24, { addr: [0, 16], port: [16, 2], proto: [18, 1], pad: [19, 1], svc_id: [20, 2] });
    expect(() => checkMapLayout('kw_backend', { value: resized }, btf, 'o', 'c')).toThrow(/field 'svc_id' is at offset 20 size 4, not offset 20 size 2/);
    const unknown = struct('kw_backend', 24, { addr: [0, 16], port: [16, 2], proto: [18, 1], svc_id: [20, 4] });
    expect(() => checkMapLayout('kw_backend', { value: unknown }, btf, 'o', 'c')).toThrow(/has a field 'pad' \(offset 19, size 1\) that the codec does not know/);
    // The same extra field is fine where TypeScript only reads.
    expect(() => checkMapLayout('kw_backend', { value: unknown, readOnly: true }, btf, 'o', 'c')).not.toThrow();
    const missing = struct('kw_backend', 24, { ...Object.fromEntries(Object.entries(KW_BACKEND.fields).map(([k, f]) => [k, [f.offset, f.size] as const])), weight: [20, 4] });
    expect(() => checkMapLayout('kw_backend', { value: missing }, btf, 'o', 'c')).toThrow(/field 'svc_id' that the codec does not know|has no field 'weight'/);
    const nested = struct('kw_backend', 24, { addr: [0, struct('kw_addr', 16, { v: [0, 16] })], port: [16, 2], proto: [18, 1], pad: [19, 1], svc_id: [20, 4] });
    expect(() => checkMapLayout('kw_backend', { value: nested }, btf, 'o', 'c')).toThrow(/field 'addr': struct kw_addr has a field 'w'/);
    expect(() => checkMapLayout('kw_backend', { key: struct('kw_backend', 24, {}) }, { key: btf.value }, 'o', 'c')).toThrow(/KW_STRUCT_LAYOUT|codec does not know/);
  });

  it('the loader refuses a layout mismatch while checking, before anything is loaded or pinned', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kw-layout-'));
    try {
      const spec = sockLbSpec({ cgroupPath: dir, bpffsDir: dir }, { maps: join(dir, 'maps'), cgroupLinks: join(dir, 'links') });
      const wrong = struct('kw_svc_val', 20, { count: [0, 4], set_id: [4, 4], svc_id: [8, 4], flags: [12, 4], affinity_timeout: [16, 4] });
      expect(() => checkSubsystem({ ...spec, layouts: { ...spec.layouts, kw_svc: { value: wrong } } })).toThrow(expect.objectContaining({
        code: 'KW_STRUCT_LAYOUT', message: expect.stringMatching(/^map kw_svc value: struct kw_svc_val field 'flags' is at offset 12 size 2, not offset 12 size 4 in .*sock_lb\.bpf\.o/),
      }));
      const plan = checkSubsystem(spec);
      expect(plan.migrations).toEqual([]);
      plan.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- conversion by field name ---------------------------------------------------------
const u = (size: number, name = `u${size * 8}`): BtfType => ({ kind: 'int', name, size, encoding: 'unsigned' });
const s = (size: number): BtfType => ({ kind: 'int', name: `s${size * 8}`, size, encoding: 'signed' });
const st = (name: string, size: number, members: Array<[string, number, BtfType]>): BtfType =>
  ({ kind: 'struct', name, size, members: members.map(([n, offset, type]) => ({ name: n, offset, type })) });

describe('entry conversion between layouts', () => {
  const v1 = st('kw_x', 8, [['a', 0, u(4)], ['b', 4, u(2)], ['c', 6, u(2)]]);
  // v2 inserts 'gen' first (every old field moves), widens b, drops c.
  const v2 = st('kw_x', 16, [['gen', 0, u(4)], ['a', 4, u(4)], ['b', 8, u(8)]]);

  it('moves fields by name, zero-fills added ones, widens integers, counts dropped data', () => {
    const c = planConversion(v1, v2, 'map kw_x value');
    expect(c.summary).toBe('added gen; dropped c; moved a (0 -> 4), b (4 -> 8); resized b (2 -> 8 bytes)');
    const src = Buffer.from([1, 2, 3, 4, 0x34, 0x12, 0, 0]);
    const dst = Buffer.alloc(16);
    expect(c.convert(src, 0, dst, 0)).toBe(0); // c was zero: nothing lost
    expect(dst.readUInt32LE(0)).toBe(0);
    expect(dst.readUInt32LE(4)).toBe(0x04030201);
    expect(dst.readBigUInt64LE(8)).toBe(0x1234n);
    src.writeUInt16LE(7, 6);
    expect(c.convert(src, 0, Buffer.alloc(16), 0)).toBe(2); // c held 7: its 2 bytes are reported
  });

  it('narrows only values that fit, sign-extends signed integers, and copies identical types as bytes', () => {
    const down = planConversion(v2, v1, 'm');
    const src = Buffer.alloc(16);
    src.writeBigUInt64LE(0x10000n, 8);
    expect(() => down.convert(src, 0, Buffer.alloc(8), 0)).toThrow(expect.objectContaining({ code: 'KW_MAP_MIGRATE', message: 'm.b: a value does not fit in 2 bytes (it had 8)' }));
    const neg = planConversion(st('t', 2, [['v', 0, s(2)]]), st('t', 8, [['v', 0, s(8)]]), 'm');
    const out = Buffer.alloc(8);
    neg.convert(Buffer.from([0xfe, 0xff]), 0, out, 0);
    expect(out.readBigInt64LE(0)).toBe(-2n);
    const same = planConversion(v1, v1, 'm');
    expect(same.summary).toBe('same layout');
    const o2 = Buffer.alloc(8);
    same.convert(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]), 0, o2, 0);
    expect([...o2]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('converts nested structs and arrays element by element; refuses kind changes and bit fields', () => {
    const a1 = st('o', 12, [['x', 0, { kind: 'array', name: '', size: 12, len: 3, elem: u(4) }]]);
    const a2 = st('o', 16, [['x', 0, { kind: 'array', name: '', size: 16, len: 2, elem: u(8) }]]);
    const c = planConversion(a1, a2, 'm');
    const dst = Buffer.alloc(16);
    const src = Buffer.alloc(12);
    src.writeUInt32LE(5, 0); src.writeUInt32LE(6, 4); src.writeUInt32LE(9, 8);
    expect(c.convert(src, 0, dst, 0)).toBe(4); // the third element did not fit and was not zero
    expect([dst.readBigUInt64LE(0), dst.readBigUInt64LE(8)]).toEqual([5n, 6n]);
    const n1 = st('o', 8, [['in', 0, st('i', 8, [['p', 0, u(4)], ['q', 4, u(4)]])]]);
    const n2 = st('o', 8, [['in', 0, st('i', 8, [['q', 0, u(4)], ['p', 4, u(4)]])]]);
    const nb = Buffer.alloc(8);
    planConversion(n1, n2, 'm').convert(Buffer.from([1, 0, 0, 0, 2, 0, 0, 0]), 0, nb, 0);
    expect([nb.readUInt32LE(0), nb.readUInt32LE(4)]).toEqual([2, 1]);
    expect(() => planConversion(st('o', 4, [['v', 0, u(4)]]), st('o', 4, [['v', 0, st('i', 4, [['w', 0, u(4)]])]]), 'map m value'))
      .toThrow(expect.objectContaining({ code: 'KW_MAP_MIGRATE', message: expect.stringMatching(/^map m value\.v: u32 \(4 bytes\) became struct i/) }));
    const bits: BtfType = { kind: 'struct', name: 'o', size: 4, members: [{ name: 'f', offset: 0, bitOffset: 0, bitSize: 3, type: u(4) }] };
    expect(() => planConversion(st('o', 4, [['f', 0, u(4)]]), bits, 'm')).toThrow(/bit field/);
  });
});
