/**
 * Loads the compiled addon once, and says what it tried when that fails (the path, the
 * loader's reason, and how to build it). KERNWAY_ADDON overrides the path.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { KernwayError } from '../common/errors.js';
import { projectRoot } from '../common/version.js';
import type { RawAddon } from './addon.js';
import { BpfError } from './errors.js';

let cached: RawAddon | undefined;

export function addonCandidates(): string[] {
  if (process.env.KERNWAY_ADDON) return [process.env.KERNWAY_ADDON];
  const root = projectRoot();
  return [join(root, 'build', 'Release', 'kernway.node'), join(root, 'build', 'Debug', 'kernway.node')];
}

export function addon(): RawAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const path of addonCandidates()) {
    if (!existsSync(path)) {
      tried.push(`${path}: not found`);
      continue;
    }
    try {
      const raw = require(path) as RawAddon;
      raw.setErrorClass(BpfError);
      cached = raw;
      return raw;
    } catch (e) {
      tried.push(`${path}: ${(e as Error).message}`);
    }
  }
  throw new KernwayError(
    'KW_ADDON_LOAD',
    `cannot load the kernway addon (tried ${tried.join('; ')}). Run 'make addon' to build it (needs libbpf-dev).`,
    { tried },
  );
}
