/**
 * Model and standalone-source speed: 10,000 Services x 10 endpoints.
 *
 *   node dist/bench/agent-model.js [--services N] [--endpoints N] [--files N] [--changes N]
 *                                  [--format yaml|json] [--debounce-ms N]
 *
 * Measures (each printed as one JSON line):
 *   1. buildModel + buildServiceTable from nothing, from objects in memory (cold), and the
 *      rebuild after one EndpointSlice changed (memoised path);
 *   2. the manifest directory loaded from YAML files (read + parse + validate + model + table);
 *   3. the latency from an endpoint change written to a file to the new model and service
 *      table (watcher event, debounce, re-read of that file only, model, table): p50/p99;
 *   4. the RSS of a process that loaded the directory as the agent does (model, table), split
 *      into anonymous and file pages (smaps_rollup), with PSS and V8's spaces (committed/used).
 *      `--phase memory --dir DIR` runs it alone on a kept directory (KW_BENCH_KEEP=1 keeps it);
 *      KW_BENCH_SMAPS=1 prints the resident KiB per mapping, KW_BENCH_SNAPSHOT=FILE writes a
 *      heap snapshot after the measurement.
 * Every phase runs without V8's TurboFan, as `kernway agent` does (common/heap.ts
 * leaveOutTurbofanAndSparkplug); KW_BENCH_TURBOFAN=1 keeps V8's default tiers, for comparison.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync, spawnSync } from 'node:child_process';
import { getHeapSpaceStatistics } from 'node:v8';
import { fileURLToPath } from 'node:url';
import type { SourcedObject } from '../k8s/types.js';
import type { StandaloneSnapshot } from '../agent/standalone.js';
import { keepYoungGenerationSmall, leaveOutTurbofanAndSparkplug } from '../common/heap.js';
import { smapsMiB } from './smaps.js';

// As `kernway agent` does (cli/main.ts), before the agent's modules load; KW_BENCH_TURBOFAN=1 keeps V8's defaults.
if (process.env.KW_BENCH_TURBOFAN !== '1') leaveOutTurbofanAndSparkplug();
const { buildModel } = await import('../model/model.js');
const { buildServiceTable, ServiceTableBuilder } = await import('../model/service-table.js');
const { MODEL, StandaloneSource } = await import('../agent/standalone.js');
const { releaseFreedMemory } = await import('../agent/datapath/memory.js');

const { values } = parseArgs({
  options: {
    services: { type: 'string', default: '10000' },
    endpoints: { type: 'string', default: '10' },
    files: { type: 'string', default: '100' },
    changes: { type: 'string', default: '200' },
    'debounce-ms': { type: 'string', default: '20' },
    phase: { type: 'string', default: 'all' },
    /** 'memory': only the RSS measurement (phase 4). */
    only: { type: 'string', default: 'all' },
    format: { type: 'string', default: 'yaml' },
    dir: { type: 'string' },
  },
});
const PHASE = values.phase;
const FORMAT = values.format;
if (FORMAT !== 'yaml' && FORMAT !== 'json') throw new Error(`--format: yaml or json, got ${FORMAT}`);
const SERVICES = Number(values.services);
const ENDPOINTS = Number(values.endpoints);
const FILES = Number(values.files);
const CHANGES = Number(values.changes);
const DEBOUNCE = Number(values['debounce-ms']);

function ip(base: number, i: number): string {
  const n = base + i;
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}
const VIP_BASE = (10 << 24) | (96 << 16);
const POD_BASE = (10 << 24) | (1 << 16);

function serviceObj(i: number): SourcedObject['object'] {
  return {
    apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${i}`, namespace: 'bench' },
    spec: { clusterIP: ip(VIP_BASE, i + 1), ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  };
}
function sliceObj(i: number, gen = 0): SourcedObject['object'] {
  const endpoints = [];
  for (let e = 0; e < ENDPOINTS; e++) {
    endpoints.push({ addresses: [ip(POD_BASE, i * ENDPOINTS + e + gen)], conditions: { ready: true }, nodeName: `node-${e % 3}` });
  }
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: `svc-${i}-abc`, namespace: 'bench', labels: { 'kubernetes.io/service-name': `svc-${i}` } },
    addressType: 'IPv4', endpoints, ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

function ms(t0: number): number {
  return +(performance.now() - t0).toFixed(1);
}
function out(o: Record<string, unknown>): void {
  console.log(JSON.stringify(o));
}
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return +s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!.toFixed(2);
}

/** /proc/self/smaps_rollup in MiB: resident anonymous memory (heap, malloc) vs. file pages (the node binary, mostly; shared with other node processes). */
function residency(): Record<string, number> {
  let text = '';
  try { text = readFileSync('/proc/self/smaps_rollup', 'utf8'); } catch { return {}; }
  const mib = (n: number): number => +(n / 1024).toFixed(1);
  const field = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { rssAnonMiB: mib(field('Anonymous')), rssFileMiB: mib(field('Rss') - field('Anonymous') - field('Shmem')), pssMiB: mib(field('Pss')), pssFileMiB: mib(field('Pss_File')) };
}

/** Resident KiB per mapped file (and anonymous), largest first: where the file pages are. */
function smapsByMapping(): string {
  const by = new Map<string, { rss: number; anon: number }>();
  let cur = '';
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) { cur = `${line.split(' ')[1]} ${head[1] || '[anon]'}`; continue; }
    const m = /^(Rss|Anonymous):\s+(\d+)/.exec(line);
    if (!m) continue;
    const e = by.get(cur) ?? { rss: 0, anon: 0 };
    if (m[1] === 'Rss') e.rss += Number(m[2]); else e.anon += Number(m[2]);
    by.set(cur, e);
  }
  return [...by].sort((a, b) => b[1].rss - a[1].rss).slice(0, 15).map(([k, v]) => `${String(v.rss).padStart(8)} KiB rss ${String(v.anon).padStart(8)} anon  ${k}`).join('\n');
}

/** V8's spaces: committed (what RSS can hold) vs. used, MiB. */
function heapSpaces(): Record<string, string> {
  const o: Record<string, string> = {};
  for (const s of getHeapSpaceStatistics()) o[s.space_name] = `${(s.physical_space_size / 2 ** 20).toFixed(1)}/${(s.space_used_size / 2 ** 20).toFixed(1)}`;
  return o;
}

/** RSS of an empty Node.js process (this runtime's baseline), MiB. */
function emptyNodeRss(): number {
  const rss = execFileSync(process.execPath, ['-e', 'setTimeout(() => console.log(process.memoryUsage().rss), 200)'], { encoding: 'utf8' });
  return +(Number(rss) / 2 ** 20).toFixed(1);
}

// 4 (run in a child process, so nothing else is in its heap): load a directory as the agent does, report RSS.
if (PHASE === 'memory') {
  if (process.env.KW_BENCH_HEAP !== 'v8-default') keepYoungGenerationSmall(); // as `kernway agent` does
  const src = new StandaloneSource(values.dir!, {});
  const tb = new ServiceTableBuilder({ nodeName: 'node-0' });
  tb.update((await src.start()).model);
  src.applied(); // as `kernway agent` does after its first sync
  if (tb.table.size !== SERVICES) throw new Error(`unexpected ${tb.table.size} entries`);
  const rssLoaded = process.memoryUsage().rss;
  const t0 = performance.now();
  if (process.env.KW_BENCH_TRIM !== 'no') releaseFreedMemory(); // as `kernway agent` does after its first sync: compact the heap, trim malloc
  const releaseMs = +(performance.now() - t0).toFixed(1);
  // Idle for a while, as the agent is between changes: V8's memory reducer gives back what the load used.
  await new Promise((r) => setTimeout(r, 10_000));
  global.gc?.();
  const mu = process.memoryUsage();
  const newSpace = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  out({ bench: 'standalone-memory', services: SERVICES, endpoints: ENDPOINTS, youngGeneration: process.env.KW_BENCH_HEAP === 'v8-default' ? 'v8 default' : 'kept small (common/heap.ts)', compactHeapAndMallocTrim: process.env.KW_BENCH_TRIM !== 'no', releaseMs, newSpaceMiB: +((newSpace?.space_size ?? 0) / 2 ** 20).toFixed(1), emptyNodeRssMiB: emptyNodeRss(), heapTotalMiB: +(mu.heapTotal / 2 ** 20).toFixed(1), externalMiB: +(mu.external / 2 ** 20).toFixed(1), rssJustLoadedMiB: +(rssLoaded / 2 ** 20).toFixed(1), rssIdleMiB: +(mu.rss / 2 ** 20).toFixed(1), heapUsedMiB: +(mu.heapUsed / 2 ** 20).toFixed(1), ...residency(), spacesCommittedUsedMiB: heapSpaces(), execArgv: process.execArgv.join(' '), turbofan: process.env.KW_BENCH_TURBOFAN === '1', note: 'model + service table + manifest state, no datapath' });
  if (process.env.KW_BENCH_SMAPS) console.error(process.env.KW_BENCH_SMAPS === 'mappings' ? smapsByMapping() : JSON.stringify(smapsMiB('self')));
  if (process.env.KW_BENCH_SNAPSHOT) console.error((await import('node:v8')).writeHeapSnapshot(process.env.KW_BENCH_SNAPSHOT));
  src.close();
  process.exit(0);
}

// 1. In memory.
if (values.only !== 'memory') {
  const objects: SourcedObject[] = [];
  for (let i = 0; i < SERVICES; i++) {
    objects.push({ object: serviceObj(i), file: 'mem', index: 2 * i });
    objects.push({ object: sliceObj(i), file: 'mem', index: 2 * i + 1 });
  }
  let t0 = performance.now();
  const model = buildModel(objects);
  const tModel = ms(t0);
  t0 = performance.now();
  const table = buildServiceTable(model, { nodeName: 'node-0' });
  const tTable = ms(t0);
  if (table.size !== SERVICES || model.problems.length !== 0) throw new Error(`unexpected: ${table.size} entries, ${model.problems.length} problems`);
  // The memoised path: a model built anew (objects parsed once, memoised), the builder's table updated.
  const tb = new ServiceTableBuilder({ nodeName: 'node-0' });
  tb.update(model);
  const before = new Map(tb.table);
  objects[1] = { object: sliceObj(0, 1), file: 'mem', index: 1 };
  t0 = performance.now();
  tb.update(buildModel(objects));
  const tIncr = ms(t0);
  let changed = 0;
  for (const [k, e] of tb.table) if (before.get(k) !== e) changed++;
  out({ bench: 'model-in-memory', services: SERVICES, endpoints: ENDPOINTS, buildModelMs: tModel, buildServiceTableMs: tTable, coldTotalMs: +(tModel + tTable).toFixed(1), rebuildAfterOneSliceMs: tIncr, entriesChanged: changed });
}

/** Thrown to leave the file phases early (--only memory), so that `finally` removes the directory. */
class Done extends Error {}

// 2-4. From files.
const dir = mkdtempSync(join(tmpdir(), 'kw-bench-model-'));
try {
  const perFile = Math.ceil(SERVICES / FILES);
  const ext = FORMAT === 'json' ? 'json' : 'yaml';
  const fileOf = (i: number): string => join(dir, `ns-${Math.floor(i / perFile)}`, `services-${Math.floor(i / perFile)}.${ext}`);
  const sliceFile = (i: number): string => join(dir, 'slices', `svc-${i}.${ext}`);
  const { mkdirSync } = await import('node:fs');
  const yaml = await import('yaml');
  const stringify = (o: unknown): string => (FORMAT === 'json' ? JSON.stringify(o) : yaml.stringify(o));
  const multi = (docs: unknown[]): string => (FORMAT === 'json' ? JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }) : docs.map((d) => yaml.stringify(d)).join('---\n'));
  mkdirSync(join(dir, 'slices'), { recursive: true });
  for (let f = 0; f < FILES; f++) {
    const docs: unknown[] = [];
    for (let i = f * perFile; i < Math.min(SERVICES, (f + 1) * perFile); i++) docs.push(serviceObj(i));
    if (docs.length === 0) continue;
    mkdirSync(join(dir, `ns-${f}`), { recursive: true });
    writeFileSync(fileOf(f * perFile), multi(docs));
  }
  for (let i = 0; i < SERVICES; i++) writeFileSync(sliceFile(i), stringify(sliceObj(i)));

  // 4. Memory, in a child process, with default Node.js flags unless KW_BENCH_NODE_FLAGS says otherwise.
  const child = spawnSync(process.execPath, [...(process.env.KW_BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean), fileURLToPath(import.meta.url), '--phase', 'memory', '--dir', dir, '--services', String(SERVICES), '--endpoints', String(ENDPOINTS)], { encoding: 'utf8' });
  process.stdout.write(child.stdout);
  if (child.status !== 0) process.stderr.write(child.stderr);
  if (values.only === 'memory') { process.exitCode = child.status ?? 1; throw new Done(); }

  const src = new StandaloneSource(dir, { debounceMs: DEBOUNCE });
  let t0 = performance.now();
  const first = await src.start();
  const tLoad = ms(t0);
  t0 = performance.now();
  const tb = new ServiceTableBuilder({ nodeName: 'node-0' });
  tb.update(first.model);
  const table = tb.table;
  const tTable = ms(t0);
  if (table.size !== SERVICES || first.problems.length !== 0) throw new Error(`unexpected: ${table.size} entries, ${first.problems.length} problems: ${JSON.stringify(first.problems.slice(0, 3))}`);
  out({ bench: 'standalone-load', format: FORMAT, services: SERVICES, endpoints: ENDPOINTS, files: FILES + SERVICES, loadAndModelMs: tLoad, serviceTableMs: tTable });

  // 3. Latency of one endpoint change: write (tmp + rename, as editors and kubectl cp do) -> new table.
  const lat: number[] = [];
  let pending: { i: number; t0: number; resolve: () => void } | undefined;
  src.on(MODEL, (s: StandaloneSnapshot) => {
    tb.update(s.model, s.changedServices);
    if (!pending) return;
    const e = table.get(`${ip(VIP_BASE, pending.i + 1)}:80/TCP`);
    if (e && [...e.backends].some((b) => b.ip === ip(POD_BASE, pending!.i * ENDPOINTS + 1000000))) {
      lat.push(performance.now() - pending.t0);
      const r = pending.resolve;
      pending = undefined;
      r();
    }
  });
  await new Promise((r) => setTimeout(r, 200));
  for (let c = 0; c < CHANGES; c++) {
    const i = (c * 7919) % SERVICES;
    const obj = sliceObj(i);
    (obj.endpoints as { addresses: string[] }[])[0]!.addresses = [ip(POD_BASE, i * ENDPOINTS + 1000000)];
    const text = stringify(obj);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`change ${c} not seen within 5 s`)), 5000);
      pending = { i, t0: performance.now(), resolve: () => { clearTimeout(timer); resolve(); } };
      const tmp = join(dir, 'slices', `.tmp-${i}.${ext}`);
      writeFileSync(tmp, text);
      renameSync(tmp, sliceFile(i));
    });
    // Put it back (not measured).
    writeFileSync(sliceFile(i), stringify(sliceObj(i)));
    await new Promise((r) => setTimeout(r, DEBOUNCE + 30));
  }
  out({ bench: 'standalone-change-latency', format: FORMAT, services: SERVICES, debounceMs: DEBOUNCE, changes: lat.length, p50Ms: percentile(lat, 50), p99Ms: percentile(lat, 99), maxMs: percentile(lat, 100) });

  src.close();
} catch (e) {
  if (!(e instanceof Done)) throw e;
} finally {
  if (!process.env.KW_BENCH_KEEP) rmSync(dir, { recursive: true, force: true }); else console.error(dir);
}
