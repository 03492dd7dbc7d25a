/**
 * Converting map entries between two layouts of the same C struct, by field name, from
 * the BTF of both sides (the pinned map's kernel BTF and the new object's). Used by the
 * loader when an upgrade changed a pinned map's key or value type (docs/upgrade.md).
 *
 * Rules, decided once per map before any entry is touched (planConversion throws
 * KW_MAP_MIGRATE naming the field it cannot convert):
 *  - identical types: the bytes are copied;
 *  - structs: each field of the new layout takes the old field of the same name
 *    (converted by these rules), or zeros when the old layout has none; old fields the
 *    new layout dropped are counted when they held something other than zeros;
 *  - integers (and enums): widened (sign-extended when signed) or narrowed — narrowing
 *    a value that does not fit is an error at conversion time, never a silent cut;
 *  - arrays: element by element, as many as both have; extra new elements are zero;
 *  - anything else (a struct became an integer, a bit field changed): refused.
 * Host order is little-endian (codec.ts refuses other hosts).
 */
import { KernwayError } from '../../common/errors.js';
import type { BtfType } from '../../native/index.js';
import { describeType, sameType } from './layout.js';

/** Writes the converted form of src[so..] into dst[do..] (dst is zero-filled); returns old bytes dropped that were not zero. */
export type Convert = (src: Buffer, so: number, dst: Buffer, dOff: number) => number;

export interface Conversion {
  from: number;
  to: number;
  convert: Convert;
  /** In words, for logs: 'same layout' or 'fields added: x; dropped: y; moved: z'. */
  summary: string;
}

function migrateError(message: string): KernwayError {
  return new KernwayError('KW_MAP_MIGRATE', message);
}

/** Plans the conversion of one type (a map's key or value) from `from` to `to`; `path` names it in errors. */
export function planConversion(from: BtfType, to: BtfType, path: string): Conversion {
  const notes = { added: [] as string[], dropped: [] as string[], moved: [] as string[], resized: [] as string[] };
  const convert = plan(from, to, path, '', notes);
  const parts: string[] = [];
  if (notes.added.length) parts.push(`added ${notes.added.join(', ')}`);
  if (notes.dropped.length) parts.push(`dropped ${notes.dropped.join(', ')}`);
  if (notes.moved.length) parts.push(`moved ${notes.moved.join(', ')}`);
  if (notes.resized.length) parts.push(`resized ${notes.resized.join(', ')}`);
  return { from: from.size, to: to.size, convert, summary: parts.length ? parts.join('; ') : 'same layout' };
}

interface Notes { added: string[]; dropped: string[]; moved: string[]; resized: string[] }

function plan(from: BtfType, to: BtfType, path: string, field: string, notes: Notes): Convert {
  if (sameType(from, to)) {
    const n = to.size;
    return (src, so, dst, d) => { src.copy(dst, d, so, so + n); return 0; };
  }
  const isInt = (t: BtfType): boolean => t.kind === 'int' || t.kind === 'enum';
  if (isInt(from) && isInt(to)) {
    if (field) notes.resized.push(`${field} (${from.size} -> ${to.size} bytes)`);
    return intConvert(from, to, `${path}${field ? `.${field}` : ''}`);
  }
  if ((from.kind === 'struct' && to.kind === 'struct') || (from.kind === 'union' && to.kind === 'union')) {
    if (to.kind === 'union' && !sameType(from, to)) throw migrateError(`${path}${field ? `.${field}` : ''}: union ${to.name} changed; unions cannot be converted by field name`);
    const steps: Array<{ so: number; d: number; c: Convert }> = [];
    const prefix = field ? `${field}.` : '';
    for (const m of to.members ?? []) {
      if (m.bitSize !== undefined) throw migrateError(`${path}.${prefix}${m.name}: a bit field; bit fields cannot be converted`);
      const old = (from.members ?? []).find((x) => x.name === m.name && m.name !== '');
      if (!old) { notes.added.push(`${prefix}${m.name}`); continue; }
      if (old.bitSize !== undefined) throw migrateError(`${path}.${prefix}${m.name}: a bit field in the old layout; bit fields cannot be converted`);
      if (old.offset !== m.offset) notes.moved.push(`${prefix}${m.name} (${old.offset} -> ${m.offset})`);
      steps.push({ so: old.offset, d: m.offset, c: plan(old.type, m.type, path, `${prefix}${m.name}`, notes) });
    }
    const dropped: Array<{ o: number; n: number }> = [];
    for (const old of from.members ?? []) {
      if (!(to.members ?? []).some((m) => m.name === old.name && old.name !== '')) {
        notes.dropped.push(`${prefix}${old.name}`);
        dropped.push({ o: old.offset, n: old.type.size });
      }
    }
    return (src, so, dst, d) => {
      let lost = 0;
      for (const s of steps) lost += s.c(src, so + s.so, dst, d + s.d);
      for (const x of dropped) if (!isZero(src, so + x.o, x.n)) lost += x.n;
      return lost;
    };
  }
  if (from.kind === 'array' && to.kind === 'array' && from.elem && to.elem) {
    const c = plan(from.elem, to.elem, path, `${field}[]`, notes);
    const n = Math.min(from.len ?? 0, to.len ?? 0);
    const fs = from.elem.size;
    const ts = to.elem.size;
    const extra = (from.len ?? 0) - n;
    return (src, so, dst, d) => {
      let lost = 0;
      for (let i = 0; i < n; i++) lost += c(src, so + i * fs, dst, d + i * ts);
      if (extra > 0 && !isZero(src, so + n * fs, extra * fs)) lost += extra * fs;
      return lost;
    };
  }
  throw migrateError(`${path}${field ? `.${field}` : ''}: ${describeType(from)} became ${describeType(to)}; only structs (by field name), integers and arrays can be converted`);
}

function intConvert(from: BtfType, to: BtfType, where: string): Convert {
  const fs = from.size;
  const ts = to.size;
  const signed = from.encoding === 'signed';
  return (src, so, dst, d) => {
    const n = Math.min(fs, ts);
    src.copy(dst, d, so, so + n);
    if (ts > fs) {
      const neg = signed && fs > 0 && (src[so + fs - 1]! & 0x80) !== 0;
      dst.fill(neg ? 0xff : 0, d + fs, d + ts);
      return 0;
    }
    // Narrowing: the cut bytes must be what sign- or zero-extension would give back.
    const fill = signed && (dst[d + ts - 1]! & 0x80) !== 0 ? 0xff : 0;
    for (let i = ts; i < fs; i++) {
      if (src[so + i] !== fill) throw migrateError(`${where}: a value does not fit in ${ts} bytes (it had ${fs})`);
    }
    return 0;
  };
}

function isZero(b: Buffer, o: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[o + i] !== 0) return false;
  return true;
}
