/** `kernway waypoint`: the namespace's L7 proxy. SIGTERM drains, a second SIGTERM forces. */
import { InvalidArgumentError, KernwayError, errorMessage } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { ManifestDirSource } from '../waypoint/config/source.js';
import { WAYPOINT_USAGE, parseWaypointArgs, withLogger } from '../waypoint/options.js';
import { Waypoint } from '../waypoint/waypoint.js';
import type { Command } from './command.js';

export const command: Command = {
  summary: 'run a namespace waypoint: Gateway API HTTPRoutes, L7 authorization, request metrics',
  usage: WAYPOINT_USAGE,
  async run(argv) {
    let opts;
    try {
      opts = parseWaypointArgs(argv);
    } catch (e) {
      if (e instanceof InvalidArgumentError || (e instanceof KernwayError && e.code === 'KW_INVALID_ARGUMENT')) {
        console.error(`kernway waypoint: ${e.message}\nusage: ${WAYPOINT_USAGE}`);
        return 2;
      }
      throw e;
    }
    const log = createLogger('kernway-waypoint');
    let waypoint: Waypoint;
    try {
      waypoint = await Waypoint.start(withLogger(opts, log), new ManifestDirSource(opts.manifests, { log }));
    } catch (e) {
      const code = e instanceof KernwayError ? e.code : (e as { code?: string }).code ?? 'KW_INTERNAL';
      console.error(`kernway waypoint: ${errorMessage(e)} [${code}]`);
      return 1;
    }
    log.info({ namespace: opts.waypoint.namespace, meshPort: waypoint.meshPort, admin: waypoint.adminPort, manifests: opts.manifests }, 'waypoint: serving');
    return new Promise<number>((resolve) => {
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals): void => {
        signals++;
        if (signals === 1) {
          log.info({ signal: sig }, 'waypoint: draining (send again to force)');
          waypoint.stop().then(() => resolve(0), (e: unknown) => { log.error({ err: errorMessage(e) }, 'waypoint: drain failed'); resolve(1); });
        } else {
          log.warn({ signal: sig }, 'waypoint: forced shutdown');
          process.exit(1);
        }
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    });
  },
};
