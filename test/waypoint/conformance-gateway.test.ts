/**
 * Gateway API conformance, Gateway (north-south) cases: every case of
 * ../shared/conformance/gateway-api/gateway, sent for real through `kernway waypoint` to
 * echo backends on loopback, judged by the upstream rules (see conformance/cases.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_DIR, dataAvailable, loadCases, loadIndex } from './conformance/data.js';
import { caseName, runCase, runDistribution } from './conformance/cases.js';
import { startWorld, type ConfigPath, type World } from './conformance/world.js';

const available = dataAvailable();
if (!available) console.warn(`[kernway] Gateway API conformance (gateway) SKIPPED: ${DATA_DIR} not found — clone shared/ beside the repository to run it`);

// In CI (CI set) the cases must run: a missing ../shared fails there instead of skipping.
if (!available && process.env.CI) {
  describe('Gateway API conformance (gateway) in CI', () => {
    it('has its cases', () => {
      expect.fail(`${DATA_DIR} not found and CI is set: clone shared/ beside the repository`);
    });
  });
}

/**
 * Both ways the waypoint gets its configuration: the watched directory (--manifests) and
 * the agent's feed over gRPC (--agent). KERNWAY_CONFORMANCE_VIA=manifests|feed runs one.
 */
const CONFIG_PATHS: ConfigPath[] = process.env.KERNWAY_CONFORMANCE_VIA === 'manifests' ? ['manifests'] : process.env.KERNWAY_CONFORMANCE_VIA === 'feed' ? ['feed'] : ['manifests', 'feed'];

describe.skipIf(!available).each(CONFIG_PATHS)('Gateway API conformance (waypoint fed by %s): Gateway parents', (via) => {
  let world: World;
  beforeAll(async () => { world = await startWorld('gateway', 'base/gateway-base-manifests.yaml', 'gateway-conformance-infra', via); }, 60_000);
  afterAll(async () => { await world?.close(); });

  for (const entry of available ? loadIndex().filter((e) => e.group === 'gateway') : []) {
    const file = loadCases('gateway', entry.name);
    for (const test of file.tests) {
      describe(`${test.shortName} (${entry.name})`, () => {
        beforeAll(async () => { await world.apply(test.localManifests); }, 20_000);
        file.cases.forEach((c, i) => {
          it(caseName(c, i), async () => { await runCase(world, 'gateway', c, file); }, 60_000);
        });
        if (file.distribution) {
          it('weighted distribution across backends', async () => { await runDistribution(world, 'gateway', file); }, 120_000);
        }
        if (entry.name === 'httproute-invalid-nonexistent-backendref') {
          it('route status: Accepted=True, ResolvedRefs=False (BackendNotFound)', () => {
            const st = world.waypoint.status().routes.find((r) => r.name === 'invalid-nonexistent-backend-ref');
            const conds = st?.parents[0]?.conditions ?? [];
            expect(conds.find((c) => c.type === 'Accepted')).toMatchObject({ status: 'True', reason: 'Accepted' });
            expect(conds.find((c) => c.type === 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'BackendNotFound' });
          });
        }
      });
    }
  }
});
