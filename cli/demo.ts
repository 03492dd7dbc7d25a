/** `kernway demo`: Service load balancing in the kernel, end to end on this machine (needs root). */
import { parseArgs } from 'node:util';
import { errorMessage } from '../common/errors.js';
import type { Command } from './command.js';

export const command: Command = {
  summary: 'show Service load balancing in the kernel: a lab node, pods, the agent, live changes, metrics; then clean up',
  usage: 'kernway demo',
  async run(argv) {
    try {
      parseArgs({ args: argv, strict: true, allowPositionals: false, options: {} });
    } catch (e) {
      console.error(`kernway demo: ${errorMessage(e)}\nusage: kernway demo`);
      return 2;
    }
    const { runDemo } = await import('../agent/demo/demo.js');
    await runDemo();
    return 0;
  },
};
