/**
 * BpfMap: one BPF map by file descriptor. Keys and values are Buffers of the map's sizes
 * (checked here, before the addon); the layout of a struct is the caller's business.
 */
import { unlinkSync } from 'node:fs';
import { InvalidArgumentError } from '../common/errors.js';
import type { RawMapBtf } from './addon.js';
import { addon } from './load.js';
import { BpfError, pinCall, withContext } from './errors.js';
import { checkAbsolutePath, checkBatch, checkBuffer, checkUint } from './validate.js';

export type MapType =
  | 'hash' | 'array' | 'lru_hash' | 'percpu_hash' | 'percpu_array' | 'lru_percpu_hash' | 'sockhash' | 'sockmap'
  | 'lpm_trie' | 'hash_of_maps' | 'array_of_maps' | 'ringbuf' | (string & {});

export interface MapInfo {
  id: number;
  name: string;
  type: MapType;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

/** Flags of update(); batchUpdate() takes ANY or F_LOCK only (the kernel's rule for batches). */
export const UpdateFlags = Object.freeze({ ANY: 0, NOEXIST: 1, EXIST: 2, F_LOCK: 4 } as const);

const PERCPU = new Set(['percpu_hash', 'percpu_array', 'lru_percpu_hash', 'percpu_cgroup_storage']);

let possibleCpus: number | undefined;
function cpus(): number {
  possibleCpus ??= addon().numPossibleCpus();
  return possibleCpus;
}

export class BpfMap {
  readonly name: string;
  private readonly fd_: number;
  private readonly info_: MapInfo;
  /** Bytes of one value as user space sees it: per-CPU maps hold one (8-aligned) slot per possible CPU. */
  readonly valueBytes: number;
  private readonly owned: boolean;
  /** The BpfObject whose fd this is: kept reachable so the GC cannot close the fd under us. */
  readonly owner: object | undefined;
  private readonly object: string | undefined;
  private closed = false;

  /** @internal Use BpfObject.map() or BpfMap.openPinned(). */
  constructor(fd: number, opts: { owned: boolean; object?: string; name?: string; owner?: object }) {
    this.fd_ = fd;
    this.owned = opts.owned;
    this.owner = opts.owner;
    this.object = opts.object;
    const raw = withContext({ map: opts.name, object: opts.object }, () => addon().mapInfo(fd));
    this.info_ = Object.freeze({ ...raw });
    // The kernel keeps 15 characters of a map's name; the object knows the full one.
    this.name = opts.name ?? raw.name;
    this.valueBytes = PERCPU.has(raw.type) ? Math.ceil(raw.valueSize / 8) * 8 * cpus() : raw.valueSize;
  }

  /** Opens a map pinned on bpffs (e.g. by an earlier agent). */
  static openPinned(path: string): BpfMap {
    checkAbsolutePath('path', path);
    const raw = addon();
    const fd = pinCall('map.open_pinned', {}, () => raw.objGet(path));
    const kind = raw.fdKind(fd);
    if (kind !== 'map') {
      raw.closeFd(fd);
      throw BpfError.of('EINVAL', 22, 'map.open_pinned', `${path} holds a BPF ${kind}, not a map`);
    }
    return new BpfMap(fd, { owned: true });
  }

  get fd(): number {
    if (this.closed) {
      throw BpfError.of('EBADF', 9, 'map.fd', this.object ? `map was closed with its object` : 'map was closed', this.ctx());
    }
    return this.fd_;
  }

  get keySize(): number { return this.info_.keySize; }
  get valueSize(): number { return this.info_.valueSize; }
  get type(): MapType { return this.info_.type; }

  info(): MapInfo {
    return { ...this.info_ };
  }

  /** The key and value types the map was created with (its kernel BTF); {} when it has none. */
  btf(): RawMapBtf {
    return this.call(() => addon().mapBtf(this.fd));
  }

  /** The value under `key`, or undefined. Per-CPU maps: every CPU's value, concatenated. */
  lookup(key: Buffer): Buffer | undefined {
    this.checkKey('key', key);
    return this.call(() => addon().mapLookup(this.fd, key, this.keySize, this.valueBytes));
  }

  /**
   * The value under `key` written into `out` (valueBytes long), for reading many entries
   * without a Buffer per lookup; false (and `out` untouched) when absent.
   */
  lookupInto(key: Buffer, out: Buffer): boolean {
    // Checked as lookup() checks, but with no message, context or closure made unless one fails: a
    // /metrics scrape calls this once per Service (10,000 calls), and without V8's top tier (the
    // agent) each of those was an allocation per call.
    if (!Buffer.isBuffer(key) || key.length !== this.keySize) this.checkKey('key', key);
    if (!Buffer.isBuffer(out) || out.length !== this.valueBytes) checkBuffer(`map '${this.name}' out`, out, this.valueBytes);
    try {
      return addon().mapLookupInto(this.fd, key, this.keySize, out, this.valueBytes);
    } catch (e) {
      if (e instanceof BpfError) e.withContext(this.ctx());
      throw e;
    }
  }

  update(key: Buffer, value: Buffer, flags: number = UpdateFlags.ANY): void {
    this.checkKey('key', key);
    checkBuffer(`map '${this.name}' value`, value, this.valueBytes);
    checkUint(`map '${this.name}' flags`, flags);
    this.call(() => addon().mapUpdate(this.fd, key, this.keySize, value, this.valueBytes, flags));
  }

  /** Deletes `key`; false when it was not there. */
  delete(key: Buffer): boolean {
    this.checkKey('key', key);
    return this.call(() => addon().mapDelete(this.fd, key, this.keySize));
  }

  /** Updates many entries in one syscall; keys and values as arrays or concatenated. Returns the count. */
  batchUpdate(keys: Buffer[] | Buffer, values: Buffer[] | Buffer, flags: number = UpdateFlags.ANY): number {
    const k = checkBatch(`map '${this.name}' keys`, keys, this.keySize);
    const v = checkBatch(`map '${this.name}' values`, values, this.valueBytes);
    if (k.count !== v.count) {
      throw new InvalidArgumentError(`map '${this.name}' values`, `${k.count} values (one per key)`, values);
    }
    if (flags !== UpdateFlags.ANY && flags !== UpdateFlags.F_LOCK) {
      throw new InvalidArgumentError(`map '${this.name}' flags`, 'UpdateFlags.ANY or UpdateFlags.F_LOCK (the kernel takes no other flag for batches)', flags);
    }
    return this.call(() => addon().mapBatchUpdate(this.fd, k.buf, this.keySize, v.buf, this.valueBytes, k.count, flags));
  }

  /** The whole map, read in batches (or key by key for maps without batch support). */
  batchLookup(): { keys: Buffer[]; values: Buffer[] } {
    const r = this.call(() => addon().mapBatchLookup(this.fd, this.keySize, this.valueBytes, this.info_.maxEntries));
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    for (let i = 0; i < r.count; i++) {
      keys.push(r.keys.subarray(i * this.keySize, (i + 1) * this.keySize));
      values.push(r.values.subarray(i * this.valueBytes, (i + 1) * this.valueBytes));
    }
    return { keys, values };
  }

  /** Deletes many keys; absent keys are skipped. Returns how many were deleted. */
  batchDelete(keys: Buffer[] | Buffer): number {
    const k = checkBatch(`map '${this.name}' keys`, keys, this.keySize);
    return this.call(() => addon().mapBatchDelete(this.fd, k.buf, this.keySize, k.count));
  }

  /** Iterates the keys (one syscall each; for a snapshot of a big map use batchLookup). */
  *keys(): IterableIterator<Buffer> {
    let key: Buffer | undefined = this.call(() => addon().mapNextKey(this.fd, null, this.keySize));
    while (key) {
      yield key;
      const prev: Buffer = key;
      key = this.call(() => addon().mapNextKey(this.fd, prev, this.keySize));
    }
  }

  *entries(): IterableIterator<[Buffer, Buffer]> {
    for (const key of this.keys()) {
      const value = this.lookup(key);
      if (value) yield [key, value]; // deleted while iterating: skip
    }
  }

  /** Pins the map at `path` (a file on bpffs, in an existing folder). */
  pin(path: string): void {
    checkAbsolutePath('path', path);
    pinCall('map.pin', this.ctx(), () => addon().objPin(this.fd, path));
  }

  /** Removes the pin at `path`, which must be a pin of this map. */
  unpin(path: string): void {
    checkAbsolutePath('path', path);
    const raw = addon();
    const fd = pinCall('map.unpin', this.ctx(), () => raw.objGet(path));
    try {
      if (raw.fdKind(fd) !== 'map' || raw.mapInfo(fd).id !== this.info_.id) {
        throw BpfError.of('EINVAL', 22, 'map.unpin', `${path} does not pin this map`, this.ctx());
      }
    } finally {
      raw.closeFd(fd);
    }
    unlinkSync(path);
  }

  /** Closes the fd (pins stay). A map borrowed from a BpfObject is closed by the object. */
  close(): void {
    if (this.closed || !this.owned) return;
    this.closed = true;
    addon().closeFd(this.fd_);
  }

  /** @internal Called by the owning BpfObject when it closes. */
  markClosed(): void {
    this.closed = true;
  }

  private ctx(): { map: string; object?: string } {
    return this.object === undefined ? { map: this.name } : { map: this.name, object: this.object };
  }

  private checkKey(what: string, key: unknown): void {
    checkBuffer(`map '${this.name}' ${what}`, key, this.keySize);
  }

  private call<T>(fn: () => T): T {
    return withContext(this.ctx(), fn);
  }
}
