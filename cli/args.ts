/** Option parsing every `kernway` subcommand does the same way: strict, no positionals. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { joinNegativeValues, refuseRepeated } from '../common/args.js';
import { errorMessage } from '../common/errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; strict: true; allowPositionals: false; options: O }>>['values'];

/**
 * The values of `argv` for subcommand `name`; on an unknown or malformed option prints
 * `kernway NAME: <what is wrong>` and the usage to stderr and returns undefined (the
 * command then exits with 2).
 */
export function parseCommandOptions<O extends Options>(name: string, usage: string, argv: string[], options: O): Values<O> | undefined {
  try {
    const { values, tokens } = parseArgs({ args: joinNegativeValues(argv, options), strict: true, allowPositionals: false, options, tokens: true });
    refuseRepeated(tokens, new Set(Object.entries(options).filter(([, o]) => o.multiple).map(([n]) => n)));
    return values as Values<O>;
  } catch (e) {
    console.error(`kernway ${name}: ${errorMessage(e)}\nusage: ${usage}`);
    return undefined;
  }
}
