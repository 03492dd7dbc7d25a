import pino, { type Logger } from 'pino';

export type { Logger };

/** pino JSON logs on stderr (stdout stays for command output). */
export function createLogger(name: string, level = process.env.KERNWAY_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination(2));
}
