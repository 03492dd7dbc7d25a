/**
 * Removing kernway's pins safely (`kernway uninstall`, a failed first start). Rules:
 *   1. everything is checked before anything is removed: the folder is on a bpf
 *      filesystem, and the cgroup links are the given cgroup's;
 *   2. only kernway's own names are removed (the map names and program names it pins),
 *      and a pinned map is removed only when the kernel's name for it is that name;
 *   3. a link is detached only when it is a cgroup link of the given cgroup (or a tc
 *      link in the policy's tc folder);
 *   4. folders are removed with rmdir (empty only), never recursively.
 */
import { existsSync, readdirSync, rmdirSync, rmSync, statSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { KernwayError, errorMessage } from '../../common/errors.js';
import { BpfLink, BpfMap } from '../../native/index.js';

/** The pin name of a map being migrated on upgrade is this prefix and its name (loader.ts). */
export const MIGRATION_PREFIX = 'migrating-';

export const BPF_FS_MAGIC = 0xcafe4a11;

/** `dir` is a folder on a bpf filesystem (else KW_BAD_BPFFS, naming the option). */
export function checkBpffsFolder(dir: string, what = '--bpffs'): void {
  let type: number;
  try { type = statfsSync(dir).type; } catch (e) {
    throw new KernwayError('KW_BAD_BPFFS', `${what} ${dir}: ${errorMessage(e)}`, { path: dir });
  }
  if (type !== BPF_FS_MAGIC) throw new KernwayError('KW_BAD_BPFFS', `${what} ${dir} is not on a bpf filesystem; nothing was removed`, { path: dir });
  if (!statSync(dir).isDirectory()) throw new KernwayError('KW_BAD_BPFFS', `${what} ${dir} is a pin, not a folder; nothing was removed`, { path: dir });
}

/** The cgroup id (its inode on cgroup2) that links pinned for `cgroupPath` carry. */
export function cgroupId(cgroupPath: string): number {
  return statSync(cgroupPath).ino;
}

/**
 * Checks that the cgroup links under `linksDir` (cg-<id>/<program>) with kernway program
 * names are all `cgroupPath`'s, by folder name and by the kernel's link info.
 */
export function checkCgroupLinks(linksDir: string, cgroupPath: string, programs: ReadonlySet<string>): void {
  if (!existsSync(linksDir)) return;
  const id = cgroupId(cgroupPath);
  for (const cg of readdirSync(linksDir)) {
    const dir = join(linksDir, cg);
    if (!statSync(dir).isDirectory()) continue;
    const ours = readdirSync(dir).filter((n) => programs.has(n));
    if (ours.length === 0) continue;
    if (cg !== `cg-${id}`) {
      throw new KernwayError('KW_PINS_OTHER_CGROUP',
        `${linksDir} holds links of another cgroup (${cg}, by inode) than --cgroup ${cgroupPath} (cg-${id}); nothing was removed: give the --cgroup the agent ran with`,
        { path: dir });
    }
    for (const name of ours) {
      const info = linkInfo(join(dir, name));
      if (info && info.cgroupId !== undefined && info.cgroupId !== id) {
        throw new KernwayError('KW_PINS_OTHER_CGROUP',
          `${join(dir, name)} is a link of cgroup id ${info.cgroupId}, not of --cgroup ${cgroupPath} (${id}); nothing was removed`, { path: join(dir, name) });
      }
    }
  }
}

function linkInfo(pin: string): { cgroupId?: number; type: string } | undefined {
  let link: BpfLink;
  try { link = BpfLink.openPinned(pin); } catch { return undefined; }
  try { return link.info(); } catch { return undefined; } finally { link.close(); }
}

/**
 * Detaches and unpins the links named `programs` in each cg-<id> folder of `linksDir`
 * (those of `cgroupPath` only, when given). Returns the removed pins as `cg-<id>/name`.
 */
export function detachCgroupLinks(linksDir: string, programs: ReadonlySet<string>, cgroupPath?: string): string[] {
  const out: string[] = [];
  if (!existsSync(linksDir)) return out;
  const mine = cgroupPath === undefined ? undefined : `cg-${cgroupId(cgroupPath)}`;
  for (const cg of readdirSync(linksDir)) {
    const dir = join(linksDir, cg);
    if (!cg.startsWith('cg-') || (mine !== undefined && cg !== mine) || !statSync(dir).isDirectory()) continue;
    for (const name of readdirSync(dir)) {
      if (!programs.has(name)) continue;
      if (detachPin(join(dir, name))) out.push(`${cg}/${name}`);
    }
    removeEmptyDir(dir);
  }
  removeEmptyDir(linksDir);
  return out;
}

/** Detaches the link pinned at `pin` and removes the pin; false when the pin is not a link. */
export function detachPin(pin: string): boolean {
  let link: BpfLink;
  try { link = BpfLink.openPinned(pin); } catch { return false; }
  try {
    link.detach();
  } catch {
    // A link whose interface or cgroup is gone is already detached.
  } finally {
    link.close();
  }
  rmSync(pin, { force: true });
  return true;
}

/**
 * Unpins the maps of `names` in `mapsDir` whose kernel name is that name (also those of an
 * interrupted upgrade, pinned as migrating-<name>: agent/datapath/loader.ts). Returns the names removed.
 */
export function unpinOwnMaps(mapsDir: string, names: ReadonlySet<string>): string[] {
  const out: string[] = [];
  if (!existsSync(mapsDir)) return out;
  for (const name of readdirSync(mapsDir)) {
    const own = name.startsWith(MIGRATION_PREFIX) ? name.slice(MIGRATION_PREFIX.length) : name;
    if (!names.has(own)) continue;
    const pin = join(mapsDir, name);
    let kernelName: string;
    try {
      const m = BpfMap.openPinned(pin);
      try { kernelName = m.info().name; } finally { m.close(); }
    } catch { continue; }
    if (kernelName !== own.slice(0, 15)) continue;
    rmSync(pin);
    out.push(name);
  }
  removeEmptyDir(mapsDir);
  return out;
}

/** rmdir when empty; a folder with someone else's pins stays. */
export function removeEmptyDir(dir: string): void {
  try { rmdirSync(dir); } catch { /* not there, or not empty */ }
}
