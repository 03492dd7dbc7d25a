/**
 * RE2 (re2js) loaded on first use: only objects with a regular expression (an HTTPRoute's
 * RegularExpression match, a BackendTrafficPolicy's header match) need it, and the module
 * is ≈ 2 MiB of RSS in a process that never compiles one (the agent with Services and
 * EndpointSlices only). `require` of the ES module's own file shares the instance with the
 * processes that import 're2js' (the waypoint's routing).
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { RE2JS as RE2JSClass } from 're2js';

let loaded: typeof RE2JSClass | undefined;

/** The RE2JS class. */
export function re2(): typeof RE2JSClass {
  if (!loaded) loaded = (createRequire(import.meta.url)(fileURLToPath(import.meta.resolve('re2js'))) as { RE2JS: typeof RE2JSClass }).RE2JS;
  return loaded;
}
