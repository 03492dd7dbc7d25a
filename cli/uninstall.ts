/** `kernway uninstall`: detach kernway's programs and remove kernway's pins from an agent's bpffs folder (nothing else). */
import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { errorMessage } from '../common/errors.js';
import { DEFAULTS, cgroup2Root } from '../agent/options.js';
import { parseCommandOptions } from './args.js';
import type { Command } from './command.js';

const USAGE = `kernway uninstall [--cgroup PATH] [--bpffs DIR]

  --cgroup PATH  the cgroup the agent was attached to (default: the cgroup2 root); checked against the pins
  --bpffs DIR    the agent's bpffs folder (default: ${DEFAULTS.bpffs})`;

export const command: Command = {
  summary: 'detach the programs and remove the pinned maps and links (stops balancing)',
  usage: USAGE,
  async run(argv) {
    const values = parseCommandOptions('uninstall', USAGE, argv, { cgroup: { type: 'string' }, bpffs: { type: 'string' } });
    if (!values) return 2;
    const bpffs = values.bpffs ?? DEFAULTS.bpffs;
    const cgroup = values.cgroup ?? cgroup2Root();
    for (const [flag, v] of [['--bpffs', bpffs], ['--cgroup', cgroup]] as const) {
      if (!isAbsolute(v)) { console.error(`kernway uninstall: ${flag}: expected an absolute path, got ${JSON.stringify(v)}`); return 2; }
    }
    if (!existsSync(cgroup)) {
      console.error(`kernway uninstall: --cgroup ${cgroup} does not exist; nothing was removed`);
      return 2;
    }
    const { uninstallAgent } = await import('../agent/uninstall.js');
    let r;
    try {
      r = uninstallAgent(bpffs, cgroup);
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'KW_INTERNAL';
      console.error(`kernway uninstall: ${errorMessage(e)} [${code}]`);
      return code === 'KW_BAD_BPFFS' ? 2 : 1;
    }
    if (r.detached.length === 0 && r.unpinned.length === 0) {
      console.log(`nothing to remove under ${bpffs}`);
    } else {
      console.log(`detached ${r.detached.length} program link(s) and removed ${r.unpinned.length} pinned map(s) under ${bpffs}:`);
      for (const d of r.detached) console.log(`  detached  ${d}`);
      for (const u of r.unpinned) console.log(`  unpinned  ${u}`);
    }
    if (r.left.length > 0) {
      console.log(`left in place (not kernway's): ${r.left.join(', ')}`);
    }
    return 0;
  },
};
