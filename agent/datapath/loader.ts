/**
 * The one BPF object loader of the datapath's subsystems (socket load balancer, sockmap
 * acceleration, policy). A subsystem describes itself (SubsystemSpec: its objects, the
 * maps it pins, the struct layouts its codecs encode, its links); the loader does the
 * lifecycle in three steps, so that everything is checked before the kernel is touched:
 *
 *   const plan = checkSubsystem(spec);   // no kernel change: objects parsed, capacities,
 *                                        // struct layouts vs BTF, pinned maps compared
 *   const sub = await plan.load();       // programs loaded (verifier log in errors), maps
 *                                        // reused from pins or created and pinned
 *   sub.attach();                        // links created and pinned, or updated in place
 *
 * Upgrades (docs/upgrade.md): a pinned map whose key or value type differs from the new
 * object's (a field added, say) is not reused: the new object gets a new map, pinned
 * beside the old one (migrating-<name>); the entries are converted into it by field
 * name (migrate.ts) before any program uses it; attach() swaps every pinned link to the
 * new programs with one bpf_link_update() each (no moment without a program), copies the
 * entries the old programs wrote meanwhile, then renames the new pin over the old one
 * (the old map is freed with its last user). A crash at any point leaves the old pins
 * in force and the next start migrates again.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, KernwayError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import {
  BpfError, BpfLink, BpfMap, BpfObject, UpdateFlags, type BpfProgram, type MapBtf, type RodataValue,
} from '../../native/index.js';
import { checkMapLayout, sameType, type MapLayout } from './layout.js';
import { planConversion, type Conversion } from './migrate.js';
import { MIGRATION_PREFIX } from './pins.js';

export interface ObjectSpec {
  /** The compiled object (build/bpf/*.bpf.o). */
  path: string;
  /** `const volatile` tunables set before load (names the object does not have are an error). */
  rodata?: Record<string, RodataValue>;
}

export interface LinkSpec {
  /** The program, by name (in whichever of the subsystem's objects has it). */
  program: string;
  /** Attaches it the first time; the loader pins the link at <linksDir>/<program> when it is a bpf_link. */
  attach: (program: BpfProgram, sub: LoadedSubsystem) => BpfLink;
  /**
   * How a pinned link moves to the new program: 'update' (default) swaps it in place with
   * bpf_link_update(); 'replace' (links the kernel cannot update, raw tracepoints) attaches
   * the new program and renames its pin over the old one — both run for a moment.
   */
  swap?: 'update' | 'replace';
}

export interface SubsystemSpec {
  /** In words, for errors and logs: 'the socket load balancer'. */
  what: string;
  /** Loaded in order; later objects reuse the maps the first ones pinned (shared maps). */
  objects: readonly ObjectSpec[];
  /** The pin folder of the maps. */
  mapsDir: string;
  /** The maps pinned (and reused after a restart), by name. */
  maps: readonly string[];
  /** What TypeScript encodes of each map: checked against every object's BTF before load. */
  layouts: Readonly<Record<string, MapLayout>>;
  /** The module holding the layouts, for messages ('agent/datapath/codec.ts'). */
  codec: string;
  /** max_entries wanted (first start; a pinned map keeps its own, a different value is an error). */
  capacities?: Readonly<Record<string, number | undefined>>;
  /** The maps whose capacity may be chosen (default: all of `maps`). */
  sized?: readonly string[];
  /** Maps whose capacity follows another's when created (kw_sm_rx follows kw_sm_hash): map -> map. */
  follow?: Readonly<Record<string, string>>;
  /** Maps never replaced, even on an upgrade that changed their type (a sockhash: replacing it would cut connections). */
  keep?: readonly string[];
  /** Why a pinned map cannot be resized, added to KW_MAP_CAPACITY_CHANGED. */
  capacityHint?: string;
  /** The pin folder of the links, and the links in attach order. */
  linksDir?: string;
  links?: readonly LinkSpec[];
  /** A load error worth its own code (a missing kernel feature), or undefined. */
  explainLoad?: (e: BpfError, log: string) => KernwayError | undefined;
  log?: Logger;
}

/** A pinned map whose type changed: its entries move into a new map. */
export interface MapMigration {
  map: string;
  pin: string;
  /** Where the new map is pinned until it replaces the old pin. */
  tmpPin: string;
  key: Conversion;
  value: Conversion;
}

export interface SubsystemPlan {
  readonly spec: SubsystemSpec;
  /** max_entries per map, as the load will create them. */
  readonly sizes: Readonly<Record<string, number>>;
  /** Maps found pinned and reused as they are. */
  readonly reuse: readonly string[];
  /** Maps found pinned with another layout, to migrate. */
  readonly migrations: readonly MapMigration[];
  /** Loads the objects (and migrates the entries of changed maps); the plan is spent. */
  load(): Promise<LoadedSubsystem>;
  /** Drops the plan without loading. */
  close(): void;
}

export interface AttachResult { updated: string[]; created: string[] }

export interface LoadedSubsystem {
  readonly objects: readonly BpfObject[];
  /** True when at least one map was adopted from its pin (a restart or an upgrade). */
  readonly reusedMaps: boolean;
  /** The maps migrated to a new layout (empty on a plain start or restart). */
  readonly migrated: readonly string[];
  map(name: string): BpfMap;
  program(name: string): BpfProgram;
  /** Attaches or updates the links in order, then completes the migrations. */
  attach(): AttachResult;
  /** Closes our file descriptors; pinned links keep the programs attached, pinned maps their entries. */
  close(): void;
}

/** Map types whose entries user space can read and write back (so an upgrade can migrate them). */
const MIGRATABLE = new Set(['hash', 'array', 'lru_hash', 'percpu_hash', 'percpu_array', 'lru_percpu_hash', 'lpm_trie']);
const ARRAYS = new Set(['array', 'percpu_array']);

/** Names of maps being migrated, beside their old pins (bpffs refuses dots in names): pins.ts. */
export { MIGRATION_PREFIX };

/** The pin of a map being migrated, beside its old pin. */
export function migrationPin(mapsDir: string, map: string): string {
  return join(mapsDir, `${MIGRATION_PREFIX}${map}`);
}

/**
 * Checks everything that can be checked without changing the kernel: capacities, the
 * objects (parsed), every struct layout against their BTF, the pinned maps (capacity,
 * type, layout: reuse or migrate). Throws a KernwayError naming what is wrong.
 */
export function checkSubsystem(spec: SubsystemSpec): SubsystemPlan {
  const sized = spec.sized ?? spec.maps;
  const wanted = spec.capacities ?? {};
  for (const [name, v] of Object.entries(wanted)) {
    if (!sized.includes(name)) throw new InvalidArgumentError(`capacities.${name}`, `one of ${sized.join(', ')}`, name);
    if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > 0xffffffff)) throw new InvalidArgumentError(`capacities.${name}`, 'a positive integer', v);
  }
  // The pinned maps: their capacity is kept.
  const pinned = new Map<string, BpfMap>();
  const sizes: Record<string, number> = {};
  const closePinned = (): void => { for (const m of pinned.values()) m.close(); };
  try {
    for (const name of spec.maps) {
      const pin = join(spec.mapsDir, name);
      const want = wanted[name];
      if (!existsSync(pin)) {
        if (want !== undefined) sizes[name] = want;
        continue;
      }
      const m = openPin(pin, name);
      pinned.set(name, m);
      const have = m.info().maxEntries;
      if (want !== undefined && want !== have) {
        throw new KernwayError('KW_MAP_CAPACITY_CHANGED',
          `map ${name} is pinned with ${have} entries but ${want} were asked; a pinned map cannot be resized` +
          `${spec.capacityHint ? ` (${spec.capacityHint})` : ''}: keep the capacity, or run \`kernway uninstall\``);
      }
      if (sized.includes(name) || want !== undefined || spec.follow?.[name] !== undefined) sizes[name] = have;
    }
    for (const [name, of] of Object.entries(spec.follow ?? {})) {
      if (sizes[name] === undefined && sizes[of] !== undefined) sizes[name] = sizes[of];
    }

    // The objects, parsed once to read their BTF: layouts, and pinned maps compared.
    const btfs = new Map<string, { btf: MapBtf; type: string; keySize: number; valueSize: number; maxEntries: number; path: string }>();
    for (const o of spec.objects) {
      const obj = openObject(o.path, {});
      try {
        const have = new Set(obj.maps());
        for (const name of spec.maps) {
          if (!have.has(name)) continue;
          const btf = obj.mapBtf(name);
          const layout = spec.layouts[name];
          if (layout) checkMapLayout(name, layout, btf, o.path, spec.codec);
          if (!btfs.has(name)) {
            const { type, keySize, valueSize, maxEntries } = obj.mapSpec(name);
            btfs.set(name, { btf, type, keySize, valueSize, maxEntries: sizes[name] ?? maxEntries, path: o.path });
          }
        }
      } finally {
        obj.close();
      }
    }
    const missing = spec.maps.filter((n) => !btfs.has(n));
    if (missing.length > 0) {
      throw new KernwayError('KW_BPF_OBJECT', `${spec.objects.map((o) => o.path).join(', ')}: no map ${missing.join(', ')} (${spec.what} needs them; run \`make bpf\`)`);
    }

    // Reuse a pinned map as it is, or migrate it when the object's layout changed.
    const reuse: string[] = [];
    const migrations: MapMigration[] = [];
    for (const [name, old] of pinned) {
      const now = btfs.get(name)!;
      const info = old.info();
      const oldBtf = old.btf();
      const pin = join(spec.mapsDir, name);
      // A map the kernel took without BTF (libbpf retries without it) is compared by sizes only.
      const typeSame = (!oldBtf.key || sameType(oldBtf.key, now.btf.key)) && (!oldBtf.value || sameType(oldBtf.value, now.btf.value));
      // A map the agent does not size keeps the object's capacity: a new build may change it.
      const sameSize = info.maxEntries === now.maxEntries || info.type === 'sk_storage';
      if (typeSame && sameSize && info.keySize === now.keySize && info.valueSize === now.valueSize && info.type === now.type) {
        reuse.push(name);
        continue;
      }
      const why = `map ${name} pinned at ${pin} is ${describeMap(info.type, info.keySize, info.valueSize)} (${info.maxEntries} entries), ` +
        `${now.path} has ${describeMap(now.type, now.keySize, now.valueSize)} (${now.maxEntries} entries)${typeSame ? '' : ' (another key or value layout)'}`;
      if (info.type !== now.type) throw new KernwayError('KW_MAP_LAYOUT', `${why}: a map cannot change type on upgrade; run \`kernway uninstall\` and start again`);
      if (spec.keep?.includes(name)) throw new KernwayError('KW_MAP_LAYOUT', `${why}: ${name} is never replaced (its entries cannot be moved); run \`kernway uninstall\` and start again`);
      if (!MIGRATABLE.has(info.type)) throw new KernwayError('KW_MAP_LAYOUT', `${why}: entries of a ${info.type} map cannot be moved; run \`kernway uninstall\` and start again`);
      if (!typeSame && (!oldBtf.key || !oldBtf.value || !now.btf.key || !now.btf.value)) {
        throw new KernwayError('KW_MAP_LAYOUT', `${why}: without BTF on both sides its entries cannot be converted by field name; run \`kernway uninstall\` and start again`);
      }
      migrations.push({
        map: name, pin, tmpPin: migrationPin(spec.mapsDir, name),
        key: oldBtf.key && now.btf.key ? planConversion(oldBtf.key, now.btf.key, `map ${name} key`) : byteCopy(now.keySize),
        value: oldBtf.value && now.btf.value ? planConversion(oldBtf.value, now.btf.value, `map ${name} value`) : byteCopy(now.valueSize),
      });
    }
    return makePlan(spec, sizes, reuse, migrations, pinned);
  } catch (e) {
    closePinned();
    throw e;
  }
}

/** Same bytes, same size (a map whose capacity alone changed, without BTF). */
function byteCopy(size: number): Conversion {
  return { from: size, to: size, summary: 'same layout', convert: (src, so, dst, d) => { src.copy(dst, d, so, so + size); return 0; } };
}

function describeMap(type: string, keySize: number, valueSize: number): string {
  return `a ${type} of ${keySize}-byte keys and ${valueSize}-byte values`;
}

function openPin(pin: string, name: string): BpfMap {
  try {
    return BpfMap.openPinned(pin);
  } catch (e) {
    throw new KernwayError('KW_MAP_LAYOUT', `${pin} (map ${name}) cannot be opened as a map: ${errorMessage(e)}; run \`kernway uninstall\``, undefined, { cause: e });
  }
}

function openObject(path: string, opts: Parameters<typeof BpfObject.open>[1]): BpfObject {
  try {
    return BpfObject.open(path, opts);
  } catch (e) {
    if (e instanceof KernwayError && (e.code === 'KW_ADDON_LOAD' || e.code === 'KW_INVALID_ARGUMENT')) throw e;
    throw new KernwayError('KW_BPF_OBJECT', `cannot open ${path}: ${errorMessage(e)} (run \`make bpf\`)`, undefined, { cause: e });
  }
}

function makePlan(spec: SubsystemSpec, sizes: Record<string, number>, reuse: string[], migrations: MapMigration[], pinned: Map<string, BpfMap>): SubsystemPlan {
  let spent = false;
  const close = (): void => {
    if (spent) return;
    spent = true;
    for (const m of pinned.values()) m.close();
  };
  return {
    spec, sizes, reuse, migrations, close,
    async load(): Promise<LoadedSubsystem> {
      if (spent) throw new KernwayError('KW_INTERNAL', `the load plan of ${spec.what} was already used`);
      spent = true;
      try {
        return await loadPlanned(spec, sizes, migrations, pinned);
      } catch (e) {
        for (const m of pinned.values()) m.close();
        throw e;
      }
    },
  };
}

async function loadPlanned(spec: SubsystemSpec, sizes: Record<string, number>, migrations: readonly MapMigration[], pinned: Map<string, BpfMap>): Promise<LoadedSubsystem> {
  mkdirSync(spec.mapsDir, { recursive: true });
  // A migration a crash interrupted left its new maps here: they are rebuilt from the old pins.
  for (const f of readdirSync(spec.mapsDir)) if (f.startsWith(MIGRATION_PREFIX)) rmSync(join(spec.mapsDir, f));
  const pins: Record<string, string> = {};
  for (const name of spec.maps) pins[name] = join(spec.mapsDir, name);
  for (const m of migrations) pins[m.map] = m.tmpPin;

  const objects: BpfObject[] = [];
  const cleanup = (): void => {
    for (const o of objects) o.close();
    for (const m of migrations) {
      try { rmSync(m.tmpPin, { force: true }); } catch { /* not pinned */ }
    }
  };
  try {
    for (const o of spec.objects) {
      const obj = openObject(o.path, {});
      const has = new Set(obj.maps());
      obj.close();
      const mine = (r: Record<string, unknown>): Record<string, never> =>
        Object.fromEntries(Object.entries(r).filter(([n]) => has.has(n))) as Record<string, never>;
      const opened = openObject(o.path, { maxEntries: mine(sizes), reusePinned: mine(pins), pinMaps: mine(pins), rodata: o.rodata ?? {} });
      objects.push(opened);
      try {
        await opened.load();
      } catch (e) {
        const log = e instanceof BpfError && e.verifierLog ? `\nverifier log (tail):\n${e.verifierLog}` : '';
        const special = e instanceof BpfError ? spec.explainLoad?.(e, log) : undefined;
        if (special) throw special;
        throw new KernwayError('KW_BPF_LOAD', `loading ${o.path} failed: ${errorMessage(e)}${log}`, undefined, { cause: e });
      }
    }
    const sub = new Loaded(spec, objects, pinned, migrations);
    for (const m of migrations) {
      const r = copyEntries(pinned.get(m.map)!, sub.map(m.map), m, false);
      spec.log?.info({ map: m.map, entries: r.copied, droppedBytes: r.droppedBytes, key: m.key.summary, value: m.value.summary },
        'map layout changed: entries converted into a new map');
    }
    return sub;
  } catch (e) {
    cleanup();
    throw e;
  }
}

class Loaded implements LoadedSubsystem {
  readonly reusedMaps: boolean;
  readonly migrated: string[];
  private closed = false;

  constructor(
    private readonly spec: SubsystemSpec,
    readonly objects: BpfObject[],
    private readonly old: Map<string, BpfMap>,
    private readonly migrations: readonly MapMigration[],
  ) {
    this.reusedMaps = old.size > 0;
    this.migrated = migrations.map((m) => m.map);
  }

  map(name: string): BpfMap {
    const o = this.objects.find((x) => x.maps().includes(name));
    if (!o) throw new KernwayError('KW_BPF_OBJECT', `${this.spec.what}: no object has a map ${name}`);
    return o.map(name);
  }

  program(name: string): BpfProgram {
    const o = this.objects.find((x) => x.programs().includes(name));
    if (!o) throw new KernwayError('KW_BPF_OBJECT', `${this.spec.what}: no object has a program ${name}`);
    return o.program(name);
  }

  attach(): AttachResult {
    const result: AttachResult = { updated: [], created: [] };
    const { linksDir, links = [] } = this.spec;
    if (links.length > 0) {
      if (linksDir === undefined) throw new KernwayError('KW_INTERNAL', `${this.spec.what}: links without a links folder`);
      mkdirSync(linksDir, { recursive: true });
      for (const l of links) {
        try {
          const pin = join(linksDir, l.program);
          if (l.swap === 'replace') attachAndReplace(pin, this.program(l.program), (p) => l.attach(p, this), result);
          else attachOrUpdate(pin, this.program(l.program), (p) => l.attach(p, this), result);
        } catch (e) {
          if (e instanceof KernwayError && !(e instanceof BpfError)) throw e;
          const hint = e instanceof BpfError && e.code === 'EPERM' ? ' (the agent needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)' : '';
          throw new KernwayError('KW_BPF_ATTACH', `attaching ${this.spec.what} (${l.program}) failed: ${errorMessage(e)}${hint}`, undefined, { cause: e });
        }
      }
    }
    this.finishMigrations();
    return result;
  }

  /** After the links moved to the new programs: entries the old ones wrote meanwhile, then the pins. */
  private finishMigrations(): void {
    for (const m of this.migrations) {
      const old = this.old.get(m.map)!;
      const late = copyEntries(old, this.map(m.map), m, true).copied;
      renameSync(m.tmpPin, m.pin);
      old.close();
      this.old.delete(m.map);
      this.spec.log?.info({ map: m.map, lateEntries: late, pin: m.pin }, 'map migrated: the new map replaced the old pin');
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const o of this.objects) o.close();
    for (const m of this.old.values()) m.close();
  }
}

/**
 * For links the kernel cannot update (raw tracepoints): attaches the new program, pins it
 * beside the old pin and renames it over (bpffs replaces at once); the old link goes with
 * its last reference. Both run for a moment; they share the pinned maps.
 */
function attachAndReplace(pin: string, prog: BpfProgram, attach: (p: BpfProgram) => BpfLink, result: AttachResult): void {
  const existed = existsSync(pin);
  const link = attach(prog);
  const tmp = `${pin}_new`; // bpffs names cannot hold a dot
  try {
    rmSync(tmp, { force: true });
    link.pin(tmp);
    renameSync(tmp, pin);
  } catch (e) {
    rmSync(tmp, { force: true });
    link.detach();
    throw e;
  } finally {
    link.close();
  }
  (existed ? result.updated : result.created).push(prog.name);
}

/** Opens the pinned link and swaps its program, or attaches and pins a new one. */
function attachOrUpdate(pin: string, prog: BpfProgram, attach: (p: BpfProgram) => BpfLink, result: AttachResult): void {
  if (existsSync(pin)) {
    const link = BpfLink.openPinned(pin);
    try { link.update(prog); } finally { link.close(); }
    result.updated.push(prog.name);
    return;
  }
  const link = attach(prog);
  try {
    // Attachments that are not bpf_links (sk_msg before Linux 6.10) stay with their
    // target and cannot be pinned; attaching again replaces the program.
    if (link.kind === 'link') link.pin(pin);
  } catch (e) {
    link.detach();
    throw e;
  } finally {
    link.close();
  }
  result.created.push(prog.name);
}

/**
 * Converts every entry of `from` into `to`. With `onlyMissing`, adds only keys `to` does
 * not have yet (the entries the old programs wrote after the first copy); arrays are
 * copied whole the first time only (every index always exists). Returns how many were
 * written, and how many bytes of dropped fields held something other than zeros.
 */
export function copyEntries(from: BpfMap, to: BpfMap, m: Pick<MapMigration, 'map' | 'key' | 'value'>, onlyMissing: boolean): { copied: number; droppedBytes: number } {
  const type = to.type;
  if (onlyMissing && ARRAYS.has(type)) return { copied: 0, droppedBytes: 0 };
  const perCpu = from.valueBytes !== from.valueSize;
  const fromStride = perCpu ? Math.ceil(from.valueSize / 8) * 8 : from.valueSize;
  const toStride = perCpu ? Math.ceil(to.valueSize / 8) * 8 : to.valueSize;
  const cpus = perCpu ? from.valueBytes / fromStride : 1;
  const { keys, values } = from.batchLookup();
  const limit = ARRAYS.has(type) ? to.info().maxEntries : Infinity; // an array that shrank keeps its first indices
  const outKeys: Buffer[] = [];
  const outValues: Buffer[] = [];
  let lost = 0;
  for (let i = 0; i < keys.length; i++) {
    const k = Buffer.alloc(to.keySize);
    lost += m.key.convert(keys[i]!, 0, k, 0);
    if (limit !== Infinity && k.readUInt32LE(0) >= limit) continue;
    const v = Buffer.alloc(to.valueBytes);
    for (let c = 0; c < cpus; c++) lost += m.value.convert(values[i]!, c * fromStride, v, c * toStride);
    if (onlyMissing && to.lookup(k) !== undefined) continue;
    outKeys.push(k);
    outValues.push(v);
  }
  if (outKeys.length === 0) return { copied: 0, droppedBytes: lost };
  if (onlyMissing) {
    let n = 0;
    for (let i = 0; i < outKeys.length; i++) {
      try {
        to.update(outKeys[i]!, outValues[i]!, UpdateFlags.NOEXIST);
        n++;
      } catch (e) {
        // Written by the new programs meanwhile (newer than ours), or the map is full (LRU maps make room themselves).
        if (!(e instanceof BpfError) || (e.code !== 'EEXIST' && e.code !== 'E2BIG')) throw e;
      }
    }
    return { copied: n, droppedBytes: lost };
  }
  try {
    try {
      to.batchUpdate(outKeys, outValues);
    } catch (e) {
      // LPM tries (and older kernels' maps) have no batch update: one entry at a time.
      if (!(e instanceof BpfError) || (e.code !== 'EOPNOTSUPP' && e.code !== 'ENOTSUPP' && e.code !== 'EINVAL')) throw e;
      for (let i = 0; i < outKeys.length; i++) to.update(outKeys[i]!, outValues[i]!);
    }
  } catch (e) {
    throw new KernwayError('KW_MAP_MIGRATE', `map ${m.map}: writing ${outKeys.length} converted entries into the new map failed: ${errorMessage(e)}`, undefined, { cause: e });
  }
  return { copied: outKeys.length, droppedBytes: lost };
}
