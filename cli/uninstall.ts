/** `kernway uninstall`: detach every kernway program and remove every pin of an agent's bpffs folder. */
import { existsSync } from 'node:fs';
import { errorMessage } from '../common/errors.js';
import { DEFAULTS, cgroup2Root } from '../agent/options.js';
import { parseCommandOptions } from './args.js';
import type { Command } from './main.js';

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
    if (!existsSync(cgroup)) {
      console.error(`kernway uninstall: --cgroup ${cgroup} does not exist`);
      return 2;
    }
    const { uninstallAgent } = await import('../agent/uninstall.js');
    const r = uninstallAgent(bpffs, cgroup);
    if (r.detached.length === 0 && r.unpinned.length === 0) {
      console.log(`nothing to remove under ${bpffs}`);
      return 0;
    }
    console.log(`detached ${r.detached.length} program link(s) and removed ${r.unpinned.length} pinned map(s) under ${bpffs}`);
    return 0;
  },
};
