/**
 * Struct layouts: what TypeScript knows of each C struct it writes to or reads from a
 * map (each field's offset and size), declared once beside its codec, and checked
 * against the BPF object's BTF at load (checkMapLayout) — a field moved, resized, added
 * or removed in bpf/include/*.h without the codec following is a KW_STRUCT_LAYOUT error
 * before anything is attached, not a corrupted map.
 *
 * Codecs read their offsets from here (`KW_BACKEND.at.port`), so the declaration is the
 * one place the layout is written down on this side.
 */
import { KernwayError } from '../../common/errors.js';
import type { BtfType, MapBtf } from '../../native/index.js';

export interface FieldLayout {
  readonly offset: number;
  readonly size: number;
  /** A nested struct the codec also reads field by field (checked too). */
  readonly struct?: StructLayout;
}

export interface StructLayout<F extends string = string> {
  readonly kind: 'struct';
  /** The C struct's name (struct kw_backend -> 'kw_backend'). */
  readonly name: string;
  readonly size: number;
  readonly fields: Readonly<Record<F, FieldLayout>>;
  /** Offset of each field, for the codecs. */
  readonly at: Readonly<Record<F, number>>;
}

/** A plain integer key or value (__u32, __u64, ...). */
export interface ScalarLayout { readonly kind: 'scalar'; readonly size: number }

/** An array of `elem`-byte integers of any length (kw_maglev_table: its M is a build choice). */
export interface ArrayLayout { readonly kind: 'array'; readonly elem: number; readonly name?: string }

export type TypeLayout = StructLayout | ScalarLayout | ArrayLayout;

/** What TypeScript encodes of a map: its key and/or value (absent: not encoded, not checked). */
export interface MapLayout {
  readonly key?: TypeLayout;
  readonly value?: TypeLayout;
  /**
   * TypeScript only reads these entries (the programs write them): the fields it reads
   * must be where it expects them, but the struct may have more (an upgrade may add one).
   */
  readonly readOnly?: boolean;
}

/** Declares a struct: fields as [offset, size] in bytes, or [offset, nested struct]. */
export function struct<F extends string>(name: string, size: number, fields: Record<F, readonly [number, number | StructLayout]>): StructLayout<F> {
  const f = {} as Record<F, FieldLayout>;
  const at = {} as Record<F, number>;
  for (const [k, [offset, t]] of Object.entries(fields) as Array<[F, readonly [number, number | StructLayout]]>) {
    const sz = typeof t === 'number' ? t : t.size;
    if (offset + sz > size) throw new Error(`layout ${name}.${k}: offset ${offset} + size ${sz} > struct size ${size}`);
    f[k] = Object.freeze(typeof t === 'number' ? { offset, size: sz } : { offset, size: sz, struct: t });
    at[k] = offset;
  }
  return Object.freeze({ kind: 'struct', name, size, fields: Object.freeze(f), at: Object.freeze(at) });
}

export function scalar(size: number): ScalarLayout {
  return Object.freeze({ kind: 'scalar', size });
}

export function arrayOf(elem: number, name?: string): ArrayLayout {
  return Object.freeze(name === undefined ? { kind: 'array', elem } : { kind: 'array', elem, name });
}

/** Size in bytes of a layout ('array' has none fixed). */
export function layoutSize(t: TypeLayout): number | undefined {
  return t.kind === 'array' ? undefined : t.size;
}

/**
 * Throws KW_STRUCT_LAYOUT naming the first difference between what TypeScript encodes
 * (`layout`) and what the object's BTF declares for map `map`. `where` names the object
 * (a path) and `codec` the TypeScript module, for the message.
 */
export function checkMapLayout(map: string, layout: MapLayout, btf: MapBtf, where: string, codec: string): void {
  for (const part of ['key', 'value'] as const) {
    const want = layout[part];
    if (!want) continue;
    const have = btf[part];
    const what = `map ${map} ${part}`;
    if (!have) {
      throw layoutError(`${what}: ${where} has no BTF type for it (built without -g?); ${codec} cannot be checked against it`);
    }
    const diff = differ(want, have, layout.readOnly === true);
    if (diff) throw layoutError(`${what}: ${diff} in ${where}, ${codec} says otherwise: the object and the agent disagree (rebuild both: make build)`);
  }
}

function layoutError(message: string): KernwayError {
  return new KernwayError('KW_STRUCT_LAYOUT', message);
}

/** The first difference between a layout and a BTF type, in words, or undefined. */
export function differ(want: TypeLayout, have: BtfType, readOnly = false): string | undefined {
  if (want.kind === 'scalar') {
    if (have.kind !== 'int' && have.kind !== 'enum') return `the type is ${describeType(have)}, not a ${want.size}-byte integer`;
    if (have.size !== want.size) return `the integer is ${have.size} bytes, not ${want.size}`;
    return undefined;
  }
  if (want.kind === 'array') {
    const arr = have.kind === 'struct' && have.members?.length === 1 ? have.members[0]!.type : have;
    if (want.name !== undefined && have.name !== want.name) return `the type is ${describeType(have)}, not struct ${want.name}`;
    if (arr.kind !== 'array' || !arr.elem || arr.elem.size !== want.elem) return `the type is ${describeType(have)}, not an array of ${want.elem}-byte integers`;
    return undefined;
  }
  if (have.kind !== 'struct') return `the type is ${describeType(have)}, not struct ${want.name}`;
  if (have.name !== want.name) return `the type is struct ${have.name}, not struct ${want.name}`;
  const members = have.members ?? [];
  for (const m of members) {
    const f = want.fields[m.name];
    if (m.bitSize !== undefined) return `struct ${want.name} field '${m.name}' is a bit field`;
    if (!f) {
      if (readOnly) continue;
      return `struct ${want.name} has a field '${m.name}' (offset ${m.offset}, size ${m.type.size}) that the codec does not know`;
    }
    if (f.offset !== m.offset || f.size !== m.type.size) {
      return `struct ${want.name} field '${m.name}' is at offset ${m.offset} size ${m.type.size}, not offset ${f.offset} size ${f.size}`;
    }
    if (f.struct) {
      const inner = differ(f.struct, m.type, readOnly);
      if (inner) return `struct ${want.name} field '${m.name}': ${inner}`;
    }
  }
  for (const name of Object.keys(want.fields)) {
    if (!members.some((m) => m.name === name)) return `struct ${want.name} has no field '${name}'`;
  }
  if (readOnly ? have.size < want.size : have.size !== want.size) return `struct ${want.name} is ${have.size} bytes, not ${want.size}`;
  return undefined;
}

export function describeType(t: BtfType): string {
  switch (t.kind) {
    case 'struct': case 'union': return `${t.kind} ${t.name || '(anonymous)'} (${t.size} bytes)`;
    case 'int': return `${t.name || 'an integer'} (${t.size} bytes)`;
    case 'array': return `an array of ${t.len ?? '?'} × ${t.elem ? describeType(t.elem) : '?'}`;
    default: return `${t.kind} ${t.name}`.trim();
  }
}

/** Two BTF types describe the same bytes: same kinds, sizes, and fields by name, offset and size. */
export function sameType(a: BtfType | undefined, b: BtfType | undefined): boolean {
  if (!a || !b) return a === b;
  if (a.kind !== b.kind || a.size !== b.size || a.name !== b.name) return false;
  if (a.kind === 'array') return a.len === b.len && sameType(a.elem, b.elem);
  if (a.kind === 'struct' || a.kind === 'union') {
    const am = a.members ?? [];
    const bm = b.members ?? [];
    if (am.length !== bm.length) return false;
    return am.every((m, i) => {
      const n = bm[i]!;
      return m.name === n.name && m.offset === n.offset && m.bitOffset === n.bitOffset && m.bitSize === n.bitSize && sameType(m.type, n.type);
    });
  }
  return true;
}
