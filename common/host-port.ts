/** 'HOST:PORT' options, parsed one way for every command (agent, waypoint, CLI). */
import { isIP } from 'node:net';
import { InvalidArgumentError } from './errors.js';

/**
 * 'HOST:PORT', '[v6]:PORT' or ':PORT' -> host, port. The host is an IP address or
 * `localhost` (an empty host is `emptyHost`); names, unbalanced brackets and ports over
 * 65535 are refused with InvalidArgumentError naming the option.
 */
export function parseHostPort(name: string, v: unknown, emptyHost = '0.0.0.0'): { host: string; port: number } {
  if (typeof v !== 'string') throw new InvalidArgumentError(name, 'HOST:PORT', v);
  const m = /^(?:\[([^\][]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(v);
  const host = m ? (m[1] ?? m[2] ?? '') : '';
  const port = m ? Number(m[3]) : NaN;
  const bracketed = m?.[1] !== undefined;
  if (!m || port > 65535 || (host !== '' && host !== 'localhost' && isIP(host) === 0) || (bracketed && isIP(host) !== 6)) {
    throw new InvalidArgumentError(name, 'HOST:PORT with an IP address (or localhost) and a port 0-65535, e.g. 127.0.0.1:9464 or [::1]:9464', v);
  }
  return { host: host === '' ? emptyHost : host, port };
}
