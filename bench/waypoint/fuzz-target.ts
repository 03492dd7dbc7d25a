/**
 * What the fuzz benches (fuzz.ts, h2-fuzz.ts) run their inputs against: an nginx echo
 * backend and a waypoint built from this checkout's dist/ in front of it, with the
 * waypoint bench's manifests. Both go into `procs` as they start, so the caller's cleanup
 * stops what did start.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../common/version.js';
import { startNginx, startWaypoint, type Proc } from './procs.js';
import { waypointBenchManifests } from './run.js';

export interface FuzzTargetAddresses {
  /** The waypoint's listen address and Gateway listener port. */
  address: string;
  port: number;
  backend: { address: string; port: number };
}

/** Starts the backend and the waypoint (`args` after its namespace, manifests and listen address); returns the waypoint. */
export async function startFuzzTarget(dir: string, at: FuzzTargetAddresses, args: string[], procs: Proc[]): Promise<Proc> {
  procs.push(await startNginx('backend', dir, 1, `  access_log off;
  server { listen ${at.backend.address}:${at.backend.port}; location / { return 200 "ok\\n"; } }`, at.backend));
  const mdir = join(dir, 'manifests');
  mkdirSync(mdir);
  writeFileSync(join(mdir, 'bench.yaml'), waypointBenchManifests());
  const wp = await startWaypoint(join(projectRoot(), 'dist', 'cli', 'main.js'), 0, [
    '--namespace', 'bench', '--manifests', mdir, '--listen-address', at.address, ...args,
  ], { address: at.address, port: at.port }, join(dir, 'waypoint.log'));
  procs.push(wp);
  return wp;
}
