/**
 * The maps of the socket load balancer (bpf/include/lb.h, maglev.h, affinity.h,
 * revnat.h) as the datapath sees them. `MapLike` is the part of the addon's BpfMap the
 * datapath uses; a pinned map opened with BpfMap.openPinned() fits too.
 */
import { KernwayError } from '../../common/errors.js';
import { LB_LAYOUTS } from './codec.js';
import { layoutSize } from './layout.js';

export interface MapLike {
  readonly name: string;
  info(): { maxEntries: number; keySize: number; valueSize: number; type?: string };
  lookup(key: Buffer): Buffer | undefined;
  /** The value written into `out` (no Buffer per lookup); false when absent. Optional: fakes may leave it out. */
  lookupInto?(key: Buffer, out: Buffer): boolean;
  /** A value's bytes as lookup() returns it (per-CPU maps: every CPU's); with lookupInto. */
  readonly valueBytes?: number;
  update(key: Buffer, value: Buffer, flags?: number): void;
  delete(key: Buffer): boolean;
  batchUpdate(keys: Buffer[] | Buffer, values: Buffer[] | Buffer, flags?: number): number;
  batchLookup(): { keys: Buffer[]; values: Buffer[] };
  batchDelete(keys: Buffer[] | Buffer): number;
  keys(): IterableIterator<Buffer>;
  close?(): void;
}

/** Map names, as in the BPF object and as pinned under <bpffs>/maps/. */
export const LB_MAP_NAMES = ['kw_svc', 'kw_slot', 'kw_backend', 'kw_maglev', 'kw_svc_stats', 'kw_affinity', 'kw_revnat'] as const;
export type LbMapName = (typeof LB_MAP_NAMES)[number];

export type LbMaps = Record<LbMapName, MapLike>;

/** Capacity overrides (max_entries) the agent may set before load. */
export type LbCapacities = Partial<Record<LbMapName, number>>;

/**
 * Checks that the maps have the sizes the codecs write (maps opened from pins without the
 * loader, e.g. by `kernway services`, are not checked against BTF; the loader's check is
 * field by field: layout.ts), and returns the Maglev table size M. Maps TypeScript only
 * reads (readOnly layouts) may have bigger values: a newer build may have added a field.
 */
export function checkLayout(maps: LbMaps): { maglevM: number } {
  for (const [name, layout] of Object.entries(LB_LAYOUTS)) {
    const info = maps[name as LbMapName].info();
    const key = layout.key ? layoutSize(layout.key) : undefined;
    const value = layout.value ? layoutSize(layout.value) : undefined;
    const fits = (have: number, want: number | undefined, grows: boolean): boolean => want === undefined || (grows ? have >= want : have === want);
    if (!fits(info.keySize, key, false) || !fits(info.valueSize, value, layout.readOnly === true)) {
      throw new KernwayError('KW_MAP_LAYOUT',
        `map ${name} has key/value sizes ${info.keySize}/${info.valueSize}, expected ${key ?? info.keySize}/${value ?? info.valueSize}; ` +
        'it was pinned by another kernway version: start the agent of this version (it migrates the maps, docs/upgrade.md) or run `kernway uninstall`');
    }
  }
  const mg = maps.kw_maglev.info();
  if (mg.keySize !== 4 || mg.valueSize % 4 !== 0) {
    throw new KernwayError('KW_MAP_LAYOUT', `map kw_maglev has key/value sizes ${mg.keySize}/${mg.valueSize}; run \`kernway uninstall\``);
  }
  return { maglevM: mg.valueSize / 4 };
}
