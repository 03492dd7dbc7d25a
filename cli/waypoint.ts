/** `kernway waypoint`: the namespace's L7 proxy. SIGTERM drains, a second SIGTERM forces. */
import { InvalidArgumentError, KernwayError, errorMessage } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { optimizeHotCodeSooner } from '../common/heap.js';
import { hostname } from 'node:os';
import type { Logger } from '../common/log.js';
import { AgentFeedSource, ManifestDirSource, feedObjects, manifestObjects, type ConfigSource } from '../waypoint/config/source.js';
import type { Source } from '../sources/source.js';
import { WAYPOINT_USAGE, parseWaypointArgs, withLogger, type WaypointCliOptions } from '../waypoint/options.js';
import { Waypoint } from '../waypoint/waypoint.js';
import type { Command } from './command.js';
import { stringify } from 'yaml';
import { waypointGateway, waypointObjects } from '../agent/cluster/waypoint-manifests.js';
import { parseCommandOptions } from './args.js';

const GENERATE_USAGE = `kernway waypoint generate --namespace NS [--name NAME] [--image IMAGE]

  prints the waypoint of namespace NS as YAML: the Gateway NAME (default waypoint) of class
  kernway-waypoint and the ServiceAccount, Deployment and Service the elected agent would make
  for it (without ownerReferences), for those who apply YAML from git`;

/** `kernway waypoint generate`: the same objects the waypoint controller makes (agent/cluster/waypoint-manifests.ts). */
function generate(argv: string[]): number {
  const values = parseCommandOptions('waypoint generate', GENERATE_USAGE, argv, {
    namespace: { type: 'string' }, name: { type: 'string' }, image: { type: 'string' },
  });
  if (!values) return 2;
  const dns = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
  const ns = values.namespace;
  const name = values.name ?? 'waypoint';
  for (const [flag, v] of [['--namespace', ns], ['--name', name]] as const) {
    if (v === undefined || !dns.test(v) || v.length > 63) {
      console.error(`kernway waypoint generate: ${new InvalidArgumentError(flag, 'a DNS label (lowercase letters, digits and -, at most 63)', v).message}\nusage: ${GENERATE_USAGE}`);
      return 2;
    }
  }
  const docs = [waypointGateway(ns!, name), ...waypointObjects({ namespace: ns!, name, ...(values.image ? { image: values.image } : {}) })];
  process.stdout.write(docs.map((d) => stringify(d)).join('---\n'));
  return 0;
}

export const command: Command = {
  summary: 'run a namespace waypoint: Gateway API HTTPRoutes, L7 authorization, request metrics',
  usage: `${WAYPOINT_USAGE}

${GENERATE_USAGE}`,
  async run(argv) {
    if (argv[0] === 'generate') return generate(argv.slice(1));
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
    // Before any request: the warm-up phase of the request path stalled scavenges (common/heap.ts).
    optimizeHotCodeSooner();
    // --workers N: a primary (config, admin port) and N data-path workers (waypoint/workers.ts).
    // (NODE_UNIQUE_ID: set by node:cluster in the processes it forks.)
    if (opts.workers > 1 || (process.env.KERNWAY_WAYPOINT_WORKER !== undefined && process.env.NODE_UNIQUE_ID !== undefined)) {
      const workers = await import('../waypoint/workers.js');
      if (workers.isWaypointWorker()) {
        const code = await workers.runWorker(log);
        // The IPC channel is the last handle: let go of it and exit once the rest is written.
        if (process.connected) process.disconnect();
        setTimeout(() => process.exit(code), 2000).unref();
        return code;
      }
      let primary: import('../waypoint/workers.js').WaypointPrimary;
      try {
        primary = await workers.WaypointPrimary.start({ workers: opts.workers, waypoint: opts.waypoint, log, source: objectSource(opts, log) });
      } catch (e) {
        const code = e instanceof KernwayError ? e.code : (e as { code?: string }).code ?? 'KW_INTERNAL';
        console.error(`kernway waypoint: ${errorMessage(e)} [${code}]`);
        return 1;
      }
      log.info({ namespace: opts.waypoint.namespace, meshPort: primary.meshPort, admin: primary.adminPort, workers: primary.workerPids, manifests: opts.manifests, agent: opts.agent?.address.text }, 'waypoint: serving');
      return untilSignal(log, primary);
    }
    let waypoint: Waypoint;
    try {
      waypoint = await Waypoint.start(withLogger(opts, log), configSource(opts, log));
    } catch (e) {
      const code = e instanceof KernwayError ? e.code : (e as { code?: string }).code ?? 'KW_INTERNAL';
      console.error(`kernway waypoint: ${errorMessage(e)} [${code}]`);
      return 1;
    }
    log.info({ namespace: opts.waypoint.namespace, meshPort: waypoint.meshPort, admin: waypoint.adminPort, manifests: opts.manifests, agent: opts.agent?.address.text }, 'waypoint: serving');
    return untilSignal(log, waypoint);
  },
};

/** Serve until SIGTERM (or SIGINT): drain; a second one forces. */
function untilSignal(log: Logger, running: { stop(): Promise<void> }): Promise<number> {
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        log.info({ signal: sig }, 'waypoint: draining (send again to force)');
        running.stop().then(() => resolve(0), (e: unknown) => { log.error({ err: errorMessage(e) }, 'waypoint: drain failed'); resolve(1); });
      } else {
        log.warn({ signal: sig }, 'waypoint: forced shutdown');
        process.exit(1);
      }
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

/** --manifests DIR or --agent ADDRESS: both are a ConfigSource. */
export function configSource(opts: WaypointCliOptions, log: Logger): ConfigSource {
  if (opts.agent) {
    return new AgentFeedSource({
      address: opts.agent.address, namespace: opts.waypoint.namespace, name: process.env.POD_NAME ?? hostname(),
      tokenFile: opts.agent.tokenFile, log,
    });
  }
  return new ManifestDirSource(opts.manifests!, { log });
}

/** The same, as objects (the --workers primary hands them to its workers, which build the model). */
function objectSource(opts: WaypointCliOptions, log: Logger): Source {
  if (opts.agent) {
    return feedObjects({
      address: opts.agent.address, namespace: opts.waypoint.namespace, name: process.env.POD_NAME ?? hostname(),
      tokenFile: opts.agent.tokenFile, log,
    });
  }
  return manifestObjects(opts.manifests!, { log });
}
