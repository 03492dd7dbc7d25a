/**
 * Where the waypoint's configuration comes from, behind one interface: today a directory
 * of Kubernetes manifests (`--manifests DIR`, watched); next, the node agent.
 */
import type { Logger } from '../../common/log.js';
import type { Problem, SourcedObject } from '../../k8s/types.js';
import { ManifestDirectory, SNAPSHOT, type ManifestSnapshot } from '../../sources/manifest-dir.js';
import { buildWaypointConfig, slimWaypointObject, validateWaypointObject, type WaypointConfig } from '../../model/waypoint-config.js';

export interface ConfigUpdate {
  config: WaypointConfig;
  /** Problems of the source itself (files that do not parse or validate: their last good content is in force). */
  sourceProblems: readonly Problem[];
}

export interface ConfigSource {
  /** For logs: what the configuration is read from. */
  readonly description: string;
  /** Deliver the current configuration (before the promise resolves), then each change. */
  start(onUpdate: (u: ConfigUpdate) => void): Promise<void>;
  close(): void;
}

/** A directory of manifests, watched. A file that does not parse or validate keeps its last good content. */
export class ManifestDirSource implements ConfigSource {
  readonly description: string;
  private readonly dir: ManifestDirectory;

  constructor(path: string, opts: { log?: Logger; debounceMs?: number } = {}) {
    this.description = `manifest directory ${path}`;
    this.dir = new ManifestDirectory(path, { validate: validateWaypointObject, slim: slimWaypointObject, debounceMs: opts.debounceMs ?? 50, ...(opts.log ? { log: opts.log } : {}) });
  }

  async start(onUpdate: (u: ConfigUpdate) => void): Promise<void> {
    const first = await this.dir.load();
    onUpdate(toUpdate(first));
    this.dir.on(SNAPSHOT, (s: ManifestSnapshot) => onUpdate(toUpdate(s)));
    this.dir.watch();
  }

  close(): void {
    this.dir.close();
  }
}

/** A fixed set of objects (tests, and tools that compute status from manifests once). */
export class StaticSource implements ConfigSource {
  readonly description = 'static objects';
  constructor(private readonly objects: readonly SourcedObject[], private readonly problems: readonly Problem[] = []) {}
  async start(onUpdate: (u: ConfigUpdate) => void): Promise<void> {
    onUpdate({ config: buildWaypointConfig(this.objects), sourceProblems: this.problems });
  }
  close(): void { /* nothing to release */ }
}

function toUpdate(s: ManifestSnapshot): ConfigUpdate {
  return { config: buildWaypointConfig(s.objects), sourceProblems: s.problems };
}
