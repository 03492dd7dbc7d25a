/**
 * The waypoint's configuration memory: N HTTPRoutes (each with its own host name, three
 * rules, a header filter) over 100 Services, read from a manifest directory through the
 * waypoint's ConfigSource (Source → ModelBuilder → WaypointConfig) and compiled into its
 * routing table, in a child process with default Node.js flags (KW_BENCH_NODE_FLAGS to
 * change them). No proxy traffic: bench/waypoint/memory.ts measures the serving process.
 *
 *   node dist/bench/waypoint-model.js [--routes 1000] [--layout file-per-route|one-file]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ManifestDirSource, type ConfigUpdate } from '../waypoint/config/source.js';
import { buildRoutingTable } from '../waypoint/routing/table.js';
import { manyRoutes } from './waypoint/memory.js';
import { compactHeap } from '../common/heap.js';

const { values } = parseArgs({
  options: {
    routes: { type: 'string', default: '1000' },
    layout: { type: 'string', default: 'file-per-route' },
    phase: { type: 'string', default: 'all' },
    dir: { type: 'string' },
  },
});
const ROUTES = Number(values.routes);
const mib = (n: number): number => +(n / 2 ** 20).toFixed(1);

if (values.phase === 'memory') {
  const src = new ManifestDirSource(values.dir!, {});
  let last: ConfigUpdate | undefined;
  await src.start((u) => { last = u; });
  const table = buildRoutingTable(last!.config, { namespace: 'bench', listenAddress: '127.0.0.1' });
  const accepted = last!.config.routes.length;
  if (accepted !== ROUTES) throw new Error(`expected ${ROUTES} routes, got ${accepted}: ${JSON.stringify([...last!.sourceProblems, ...last!.config.problems].slice(0, 3))}`);
  const rssLoaded = process.memoryUsage().rss;
  const compactMs = process.env.KW_BENCH_COMPACT !== 'no' ? +compactHeap().toFixed(1) : 0; // as the waypoint does after its first configuration
  // Idle for a while, as the waypoint is between changes: V8's memory reducer gives back what the load used.
  await new Promise((r) => setTimeout(r, 10_000));
  const mu = process.memoryUsage();
  console.log(JSON.stringify({ bench: 'waypoint-config-memory', routes: ROUTES, layout: values.layout, rssJustLoadedMiB: mib(rssLoaded), rssIdleMiB: mib(mu.rss), heapUsedMiB: mib(mu.heapUsed), heapTotalMiB: mib(mu.heapTotal), compactHeap: process.env.KW_BENCH_COMPACT !== 'no', compactMs, execArgv: process.execArgv.join(' '), tableListeners: Object.keys(table).length, note: 'source, model, waypoint config and routing table; no proxy traffic' }));
  src.close();
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), 'kw-bench-wpmodel-'));
try {
  const docs = manyRoutes(ROUTES).split('\n---\n');
  const mdir = join(dir, 'manifests');
  mkdirSync(mdir);
  if (values.layout === 'one-file') writeFileSync(join(mdir, 'routes.yaml'), docs.join('\n---\n'));
  else docs.forEach((d, i) => writeFileSync(join(mdir, `${String(i).padStart(5, '0')}.yaml`), `${d}\n`));
  const child = spawnSync(process.execPath, [...(process.env.KW_BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean), fileURLToPath(import.meta.url), '--phase', 'memory', '--dir', mdir, '--routes', String(ROUTES), '--layout', values.layout!], { encoding: 'utf8' });
  process.stdout.write(child.stdout);
  if (child.status !== 0) { process.stderr.write(child.stderr); process.exitCode = 1; }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
