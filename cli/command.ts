/** What every `kernway` subcommand module exports as `command`. */
export interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}
