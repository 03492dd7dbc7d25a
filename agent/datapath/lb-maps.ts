/**
 * The maps of the socket load balancer (bpf/include/lb.h, maglev.h, affinity.h,
 * revnat.h) as the datapath sees them. `MapLike` is the part of the addon's BpfMap the
 * datapath uses; a pinned map opened with BpfMap.openPinned() fits too.
 */
import { KernwayError } from '../../common/errors.js';
import { SIZES } from './codec.js';

export interface MapLike {
  readonly name: string;
  info(): { maxEntries: number; keySize: number; valueSize: number; type?: string };
  lookup(key: Buffer): Buffer | undefined;
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

/** Maps the programs write and the agent only reads. */
const READ_ONLY: ReadonlySet<string> = new Set(['kw_affinity', 'kw_revnat']);

/** Capacity overrides (max_entries) the agent may set before load. */
export type LbCapacities = Partial<Record<LbMapName, number>>;

/**
 * Checks that the maps have the layout the codecs write (a pinned map left by another
 * kernway version would not), and returns the Maglev table size M.
 */
export function checkLayout(maps: LbMaps): { maglevM: number } {
  for (const [name, size] of Object.entries(SIZES)) {
    const info = maps[name as LbMapName].info();
    // Maps only the programs write (the agent reads them) may have a longer value: a later
    // build added a field, which the loader checks against the object's BTF and migrates
    // (docs/upgrade.md). Found by bench/chaos's agent-upgrade.
    const grown = READ_ONLY.has(name) && info.valueSize > size.value;
    if (info.keySize !== size.key || (info.valueSize !== size.value && !grown)) {
      throw new KernwayError('KW_MAP_LAYOUT',
        `map ${name} has key/value sizes ${info.keySize}/${info.valueSize}, expected ${size.key}/${size.value}; ` +
        'it was pinned by another kernway version: run `kernway uninstall` and start the agent again');
    }
  }
  const mg = maps.kw_maglev.info();
  if (mg.keySize !== 4 || mg.valueSize % 4 !== 0) {
    throw new KernwayError('KW_MAP_LAYOUT', `map kw_maglev has key/value sizes ${mg.keySize}/${mg.valueSize}; run \`kernway uninstall\``);
  }
  return { maglevM: mg.valueSize / 4 };
}
