/**
 * BpfObject: a compiled BPF ELF object (build/bpf/*.bpf.o). Opened synchronously,
 * tuned before load (rodata tunables, map sizes, pinned maps to reuse), loaded
 * asynchronously so the verifier never blocks the event loop.
 */
import { endianness } from 'node:os';
import { InvalidArgumentError } from '../common/errors.js';
import type { ObjectHandle, RawMapBtf, RawObjectMap, RawProgram, RawRodataVar } from './addon.js';
import { BpfError, withContext } from './errors.js';
import { addon } from './load.js';
import { BpfMap } from './map.js';
import { BpfProgram } from './program.js';
import { checkAbsolutePath, checkKeys, checkObject, checkString, checkUint } from './validate.js';

export type RodataValue = number | bigint | boolean | Buffer;

export interface OpenOptions {
  /** `const volatile` globals set before load, by name. */
  rodata?: Record<string, RodataValue>;
  /** Map name -> max_entries override. */
  maxEntries?: Record<string, number>;
  /** Map name -> pin path: reuse the map pinned there if there is one (its contents survive). */
  reusePinned?: Record<string, string>;
  /** Map name -> pin path: pin the map there after load (unless it was reused). */
  pinMaps?: Record<string, string>;
}

const OPEN_OPTIONS = ['rodata', 'maxEntries', 'reusePinned', 'pinMaps'] as const;

export class BpfObject {
  /** libbpf's object name (the file name without .o). */
  readonly name: string;
  readonly path: string;
  /** After load: maps taken from their pins, and maps pinned by this load. */
  reusedMaps: string[] = [];
  pinnedMaps: string[] = [];
  private readonly handle: ObjectHandle;
  private readonly reuse: Array<[string, string]>;
  private readonly pin: Array<[string, string]>;
  private readonly programCache = new Map<string, BpfProgram>();
  private readonly mapCache = new Map<string, BpfMap>();

  private constructor(path: string, handle: ObjectHandle, reuse: Array<[string, string]>, pin: Array<[string, string]>) {
    this.path = path;
    this.handle = handle;
    this.name = handle.name;
    this.reuse = reuse;
    this.pin = pin;
  }

  /** Parses the ELF object and applies `opts`. Errors: missing file (ENOENT), not a BPF ELF (ENOEXEC). */
  static open(path: string, opts: OpenOptions = {}): BpfObject {
    checkString('path', path);
    checkKeys('opts', checkObject('opts', opts), OPEN_OPTIONS);
    const raw = addon();
    const handle = new raw.ObjectHandle(path);
    try {
      const maps = handle.maps();
      const mapNames = maps.filter((m) => !m.internal).map((m) => m.name);
      const checkMap = (field: string, name: string): void => {
        if (!mapNames.includes(name)) {
          throw new InvalidArgumentError(`opts.${field}.${name}`, `a map of ${handle.name} (${mapNames.join(', ') || 'none'})`, name);
        }
      };
      if (opts.rodata !== undefined) applyRodata(handle, checkObject('opts.rodata', opts.rodata));
      if (opts.maxEntries !== undefined) {
        for (const [name, n] of Object.entries(checkObject('opts.maxEntries', opts.maxEntries))) {
          checkMap('maxEntries', name);
          handle.setMaxEntries(name, checkUint(`opts.maxEntries.${name}`, n, 0xffffffff, 1));
        }
      }
      const pairs = (field: 'reusePinned' | 'pinMaps'): Array<[string, string]> => {
        const v = opts[field];
        if (v === undefined) return [];
        return Object.entries(checkObject(`opts.${field}`, v)).map(([name, p]) => {
          checkMap(field, name);
          return [name, checkAbsolutePath(`opts.${field}.${name}`, p)];
        });
      };
      return new BpfObject(path, handle, pairs('reusePinned'), pairs('pinMaps'));
    } catch (e) {
      handle.close();
      throw e;
    }
  }

  get loaded(): boolean {
    return this.handle.state === 'loaded';
  }

  /** Loads every program (the verifier runs on a worker thread) and creates/reuses/pins the maps. */
  async load(): Promise<void> {
    const r = await this.handle.load(this.reuse, this.pin);
    this.reusedMaps = r.reused;
    this.pinnedMaps = r.pinned;
  }

  programs(): string[] {
    return this.handle.programs().map((p) => p.name);
  }

  /** Map names, including libbpf's internal ones (NAME.rodata, NAME.bss, ...). */
  maps(): string[] {
    return this.handle.maps().map((m) => m.name);
  }

  /** A map as the object declares it (before load: max_entries as set so far). */
  mapSpec(name: string): { type: string; keySize: number; valueSize: number; maxEntries: number } {
    checkString('name', name);
    const m = this.handle.maps().find((x) => x.name === name);
    if (!m) throw BpfError.of('ENOENT', 2, 'object.map', `no map named '${name}'`, { object: this.name, map: name });
    return { type: m.type, keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries };
  }

  /**
   * The key and value types of a map as the object's BTF declares them (offsets and
   * sizes per field). Works on an open object: layouts can be checked before load.
   */
  mapBtf(name: string): RawMapBtf {
    checkString('name', name);
    return withContext({ object: this.name, map: name }, () => this.handle.mapBtf(name));
  }

  /** A loaded program by name; throws BpfError ENOENT naming it when there is none. */
  program(name: string): BpfProgram {
    checkString('name', name);
    const cached = this.programCache.get(name);
    if (cached) return cached;
    const all = this.handle.programs();
    const p: RawProgram | undefined = all.find((x) => x.name === name);
    if (!p) {
      throw BpfError.of('ENOENT', 2, 'object.program', `no program named '${name}' (has: ${all.map((x) => x.name).join(', ') || 'none'})`, { object: this.name, program: name });
    }
    this.requireLoaded('object.program', { program: name });
    const prog = new BpfProgram(p.fd, { name, type: p.type, section: p.section, attachType: p.attachType, object: this.name, owned: false, owner: this });
    this.programCache.set(name, prog);
    return prog;
  }

  /** A loaded map by name; throws BpfError ENOENT naming it when there is none. */
  map(name: string): BpfMap {
    checkString('name', name);
    const cached = this.mapCache.get(name);
    if (cached) return cached;
    const all = this.handle.maps();
    const m: RawObjectMap | undefined = all.find((x) => x.name === name);
    if (!m) {
      throw BpfError.of('ENOENT', 2, 'object.map', `no map named '${name}' (has: ${all.map((x) => x.name).join(', ') || 'none'})`, { object: this.name, map: name });
    }
    this.requireLoaded('object.map', { map: name });
    const map = withContext({ object: this.name, map: name }, () => new BpfMap(m.fd, { owned: false, object: this.name, name, owner: this }));
    this.mapCache.set(name, map);
    return map;
  }

  /** Closes the object's fds; programs and maps taken from it close too. Pinned maps and links stay. */
  close(): void {
    for (const p of this.programCache.values()) p.markClosed();
    for (const m of this.mapCache.values()) m.markClosed();
    this.handle.close();
  }

  private requireLoaded(op: string, ctx: { program?: string; map?: string }): void {
    const state = this.handle.state;
    if (state === 'loaded') return;
    const code = state === 'closed' ? 'EBADF' : 'EINVAL';
    throw BpfError.of(code, code === 'EBADF' ? 9 : 22, op, `object is ${state}; await load() first`, { object: this.name, ...ctx });
  }
}

/** Encodes each rodata value to its variable's size and kind, then patches .rodata. */
function applyRodata(handle: ObjectHandle, values: Record<string, unknown>): void {
  const vars = handle.rodataVars();
  for (const [name, value] of Object.entries(values)) {
    const v = vars.find((x) => x.name === name);
    const path = `opts.rodata.${name}`;
    if (!v) throw new InvalidArgumentError(path, `a const volatile global of ${handle.name} (${vars.map((x) => x.name).join(', ') || 'none'})`, name);
    handle.setRodata(v.offset, encodeRodata(path, v, value));
  }
}

export function encodeRodata(path: string, v: RawRodataVar, value: unknown): Buffer {
  if (Buffer.isBuffer(value)) {
    if (value.length !== v.size) throw new InvalidArgumentError(path, `a Buffer of ${v.size} bytes`, value);
    return value;
  }
  if (v.kind === 'bytes') throw new InvalidArgumentError(path, `a Buffer of ${v.size} bytes`, value);
  const buf = Buffer.alloc(v.size);
  if (v.kind === 'bool') {
    if (typeof value !== 'boolean') throw new InvalidArgumentError(path, 'a boolean', value);
    buf.writeUInt8(value ? 1 : 0);
    return buf;
  }
  let n: bigint;
  if (typeof value === 'number' && Number.isInteger(value)) n = BigInt(value);
  else if (typeof value === 'bigint') n = value;
  else if (typeof value === 'boolean') n = value ? 1n : 0n;
  else throw new InvalidArgumentError(path, `an integer (${v.kind === 'int' ? 'signed' : 'unsigned'}, ${v.size} bytes)`, value);
  const bits = BigInt(v.size * 8);
  const min = v.kind === 'int' ? -(1n << (bits - 1n)) : 0n;
  const max = v.kind === 'int' ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
  if (n < min || n > max) throw new InvalidArgumentError(path, `an integer from ${min} to ${max}`, value);
  if (v.size > 8) throw new InvalidArgumentError(path, `a Buffer of ${v.size} bytes`, value);
  const u = BigInt.asUintN(Number(bits), n);
  for (let i = 0; i < v.size; i++) buf[i] = Number((u >> BigInt(8 * i)) & 0xffn);
  return endianness() === 'LE' ? buf : buf.reverse(); // BPF runs in the host's byte order
}
