#!/usr/bin/env node
/**
 * The `kernway` command. Each subcommand lives in its own module and is imported only
 * when used, so `kernway --help` stays fast and needs no addon.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { KernwayError, errorMessage } from '../common/errors.js';
import { version } from '../common/version.js';

import type { Command } from './command.js';

export type { Command } from './command.js';

const commands: Record<string, (argv: readonly string[]) => Promise<Command>> = {
  version: async () => ({
    summary: 'print the kernway version',
    usage: 'kernway version',
    run: async () => { console.log(`kernway ${version()} (node ${process.version})`); return 0; },
  }),
  // One line per subcommand module; each module exports `command: Command`.
  probe: async () => (await import('./probe.js')).command,
  // The agent's V8 tiers are set before its modules load, the built-ins it uses loaded before that
  // (common/heap.ts leaveOutTurbofanAndSparkplug, cli/agent-builtins.ts).
  agent: async (argv) => {
    (await import('../common/heap.js')).leaveOutTurbofanAndSparkplug((await import('./agent-builtins.js')).agentBuiltins(argv));
    return (await import('./agent.js')).command;
  },
  uninstall: async () => (await import('./uninstall.js')).command,
  services: async () => (await import('./services.js')).command,
  demo: async () => (await import('./demo.js')).command,
  waypoint: async () => (await import('./waypoint.js')).command,
  routes: async () => (await import('./routes.js')).command,
  policies: async () => (await import('./policies.js')).command,
  status: async () => (await import('./status.js')).command,
  bench: async () => (await import('./bench.js')).command,
  lab: async () => (await import('./lab.js')).command,
};

async function help(): Promise<void> {
  const lines = ['usage: kernway <command> [options]', '', 'commands:'];
  for (const [name, load] of Object.entries(commands)) {
    const c = await load([]);
    lines.push(`  ${name.padEnd(12)} ${c.summary}`);
  }
  lines.push('', "Run 'kernway <command> --help' for a command's options.");
  console.log(lines.join('\n'));
}

/** The oldest Node.js major kernway runs on (package.json `engines`). */
export const MIN_NODE_MAJOR = 24;

/**
 * Refuses a Node.js older than `engines` says, at the door: an older one starts but fails
 * later and quietly (Node.js 20's http2 resets every stream the waypoint answers).
 */
export function checkNodeVersion(version: string = process.versions.node): void {
  const major = Number(/^v?(\d+)\./.exec(version)?.[1]);
  if (!(major >= MIN_NODE_MAJOR)) {
    throw new KernwayError('KW_UNSUPPORTED_NODE', `Node.js ${version} is not supported: kernway needs Node.js ${MIN_NODE_MAJOR} or newer `
      + `(package.json engines). The set-up installs one into .node/ (make build); run kernway with .node/bin/node, or through make`);
  }
}

export async function main(argv: string[]): Promise<number> {
  checkNodeVersion();
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    await help();
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') return main(['version']);
  const load = commands[name];
  if (!load) {
    console.error(`kernway: unknown command '${name}'. Run 'kernway --help' for the list.`);
    return 2;
  }
  const cmd = await load(rest);
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`usage: ${cmd.usage}\n\n${cmd.summary}`);
    return 0;
  }
  return cmd.run(rest);
}

function invokedDirectly(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => {
      const code = e instanceof KernwayError ? e.code : (e as { code?: string }).code ?? 'KW_INTERNAL';
      console.error(`kernway: ${errorMessage(e)} [${code}]`);
      process.exitCode = 1;
    },
  );
}
