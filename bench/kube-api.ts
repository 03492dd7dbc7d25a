/**
 * The agent on the Kubernetes API (a lab cluster's real API server, 1.20): memory, first
 * sync and change latency at scale.
 *
 *   sudo node dist/bench/kube-api.js [--services 10000] [--endpoints 10] [--changes 200]
 *                                    [--kubectl-changes 20] [--pods 10000] [--agent-node-options FLAGS]
 *
 * Prints one JSON line per measurement:
 *   populate   how long creating the objects took (POSTs, 32 at a time);
 *   sync       `kernway agent --kubeconfig` as a process: start → every kind listed
 *              (the source's own figure) and → 'agent running' (maps written), and the
 *              agent's CPU seconds until then;
 *   memory     the agent's RSS (anonymous / file pages, and itemised by bench/smaps.ts) and peak RSS (VmHWM) 10 s after
 *              running, then V8's heap from a /metrics scrape and the RSS after that scrape;
 *   latency    an EndpointSlice's endpoint replaced by a REST PUT (write acknowledged) →
 *              the new backend in the kernel's maps (polled from the pins), p50/p99;
 *              then the same from `kubectl apply` spawned (includes kubectl's own start);
 *   pods       N Pods created (of a node that does not run them, each of an identity of its
 *              own): the time from the first POST, and from the last one acknowledged, until
 *              the agent holds them all; the agent's CPU over that time and its RSS after;
 *              bytes per Pod as the API server sends them against the slim form kept;
 *   snapshots  per phase, the agent's own time per model snapshot ('reconciled' lines'
 *              snapshotMs: sockmap, policy, Services, waypoints), p50/p99/max and the sum.
 * --ab ROOT measures, at the end, the API agent of another build (a project root with its dist/, e.g. a copy of
 * main's) and this one's in turns, --ab-runs times each, against the same API server: memory and the REST PUT →
 * map latency, for A/B pairs free of the populate's minutes. --ab-node-options FLAGS runs the other agent with these
 * NODE_OPTIONS instead (--ab with this project's own root: an A/B of node flags).
 * --skip-baseline leaves out the manifest directory (baseline) runs; --baseline-only runs only them
 * (no API server: seconds instead of minutes, for the whole agent's fixed cost and manifest path); --heap-snapshot DIR writes
 * each agent's V8 heap snapshot there after its memory line (kube-api / manifest-dir.heapsnapshot), and
 * after the pods line (kube-api-pods.heapsnapshot).
 * --without-crds leaves out kernway's and the Gateway API's CRDs (installed by default, as a cluster running kernway has
 * them; without, the agent looks for their kinds every 10 s). --prometheus-rounds N (default 4) then scrapes /metrics every
 * --prometheus-interval S (default 15) seconds after the memory line, as Prometheus does, and prints the RSS just before
 * each scrape (prometheus-paced: the between-scrapes figure).
 * --scrape-every MS scrapes /metrics every MS ms during the REST PUT → map changes (the agent compacts its heap after
 * each scrape: what that does to a change that arrives meanwhile).
 * --heap-spaces preloads bench/heap-spaces.ts in each agent and adds its V8 heap spaces (committed, resident MiB)
 * idle and after each scrape to the memory lines (diagnostics: the preload costs some memory of its own);
 * KW_BENCH_SMAPS=1 adds the itemised RSS growth after each scrape (smapsGrowthPerScrapeMiB), not only after the last;
 * KW_BENCH_SMAPS=mappings also the anonymous mappings whose RSS changed since the first scrape, by size and
 * permissions (mapsDiff: V8's pages are mappings of 256 KiB, its code range one of ~510 MiB).
 * `uptime`'s load is printed with every line: the machine is shared.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { projectRoot } from '../common/version.js';
import { Cluster } from '../lab/cluster/index.js';
import { Lab } from '../lab/index.js';
import { openPinnedMaps } from '../agent/datapath/sock-lb.js';
import { decodeBackend, decodeSvcVal, decodeU32, encodeSlotKey, encodeSvcKey, encodeU32 } from '../agent/datapath/codec.js';
import type { LbMaps } from '../agent/datapath/lb-maps.js';
import { uninstallAgent } from '../agent/uninstall.js';
import { smapsMiB } from './smaps.js';
import { percentile } from './stats.js';

const { values } = parseArgs({
  options: {
    services: { type: 'string', default: '10000' },
    endpoints: { type: 'string', default: '10' },
    changes: { type: 'string', default: '200' },
    'kubectl-changes': { type: 'string', default: '20' },
    pods: { type: 'string', default: '10000' },
    'skip-baseline': { type: 'boolean', default: false },
    /** Only the baseline (no API server): the agent's fixed cost, then the manifest directory's agent with the same data. */
    'baseline-only': { type: 'boolean', default: false },
    /** NODE_OPTIONS for the agent process (V8 heap flags, e.g. --max-semi-space-size=1). */
    'agent-node-options': { type: 'string', default: '' },
    /** A folder: each agent writes a V8 heap snapshot there after the memory measurement (its own Node.js signal, SIGUSR2). */
    'heap-snapshot': { type: 'string' },
    /** Another build (a project root holding dist/cli/main.js): at the end, its API agent and this one's are measured in turns (memory only). */
    ab: { type: 'string' },
    /** How many turns of each with --ab. */
    'ab-runs': { type: 'string', default: '2' },
    /** With --ab: the other build's agent gets these NODE_OPTIONS instead of this one's (A/B of node flags: --ab this build's own root). */
    'ab-node-options': { type: 'string' },
    /** Each agent with bench/heap-spaces.ts preloaded: its V8 heap spaces (committed, resident) idle and after each scrape (diagnostics: the preload costs memory). */
    'heap-spaces': { type: 'boolean', default: false },
    /** Without kernway's and the Gateway API's CRDs (by default they are installed, as `kubectl apply -k deploy/` needs them): the agent looks for their kinds every 10 s. */
    'without-crds': { type: 'boolean', default: false },
    /** After the memory line: /metrics scraped every --prometheus-interval seconds this many times, as Prometheus does, the RSS taken just before each scrape. */
    'prometheus-rounds': { type: 'string', default: '4' },
    'prometheus-interval': { type: 'string', default: '15' },
    /** During the REST PUT → map changes, /metrics scraped every MS ms (a scrape's compaction on the change path). */
    'scrape-every': { type: 'string' },
  },
});
const SERVICES = Number(values.services);
const ENDPOINTS = Number(values.endpoints);
const CHANGES = Number(values.changes);
const KUBECTL_CHANGES = Number(values['kubectl-changes']);
const PODS = Number(values.pods);
const NODE = 'node-bench';

const load = (): string => loadavg().map((x) => x.toFixed(1)).join(' ');
const out = (what: string, o: Record<string, unknown>): void => console.log(JSON.stringify({ what, ...o, load: load() }));

function ip(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}
const VIP = (i: number): string => ip(((10 << 24) | (96 << 16)) + 256 + i); // 10.96.1.0 on: past the kubernetes Service
const POD = (i: number, e: number): string => ip(((10 << 24) | (1 << 16)) + i * ENDPOINTS + e + 1);

function service(i: number) {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${i}`, namespace: 'bench' },
    spec: { clusterIP: VIP(i), ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } };
}
function slice(i: number, addrs: string[], resourceVersion?: string) {
  return { apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice',
    metadata: { name: `svc-${i}-1`, namespace: 'bench', labels: { 'kubernetes.io/service-name': `svc-${i}` }, ...(resourceVersion ? { resourceVersion } : {}) },
    addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: addrs.map((a) => ({ addresses: [a], conditions: { ready: true }, topology: { 'kubernetes.io/hostname': 'node-1' } })) };
}

async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, async () => { while (next < n) await retried(fn, next++); }));
}

/**
 * A request the loaded API server refused with a 5xx or 429 (e.g. "resource quota evaluation
 * timed out") or did not answer in time is tried again, up to 5 times; a 409 on a retry means
 * the earlier attempt did create the object.
 */
async function retried(fn: (i: number) => Promise<void>, i: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await fn(i);
      return;
    } catch (e) {
      const status = (e as { status?: number }).status ?? 0;
      if (attempt > 1 && status === 409) return;
      const again = status >= 500 || status === 429 || (e as { code?: string }).code === 'KW_LAB_TIMEOUT';
      if (attempt >= 5 || !again) throw e;
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}

/** The backends of one frontend, read from the kernel (a few lookups, not a dump). */
function backendsInKernel(maps: LbMaps, vip: string): string[] {
  const v = maps.kw_svc.lookup(encodeSvcKey({ vip, port: 80, proto: 6 }));
  if (!v) return [];
  const sv = decodeSvcVal(v);
  const list: string[] = [];
  for (let s = 0; s < sv.count; s++) {
    const id = maps.kw_slot.lookup(encodeSlotKey({ setId: sv.setId, slot: s }));
    const b = id && maps.kw_backend.lookup(encodeU32(decodeU32(id)));
    if (b) list.push(decodeBackend(b).ip);
  }
  return list;
}

/** CPU seconds (user + system) a process has used. */
function cpuOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

/** The agent's 'reconciled' lines: its time per model snapshot. */
const snapshots: Array<{ snapshotMs: number; pods: number }> = [];
function snapshotStats(from: number, phase: string): void {
  const xs = snapshots.slice(from).map((x) => x.snapshotMs).sort((a, b) => a - b);
  if (xs.length === 0) return;
  const pods = snapshots.slice(from).reduce((n, x) => n + x.pods, 0);
  out('snapshots', { phase, count: xs.length, pods, p50ms: +percentile(xs, 50).toFixed(1), p99ms: +percentile(xs, 99).toFixed(1),
    maxMs: +xs[xs.length - 1]!.toFixed(1), sumMs: Math.round(xs.reduce((a, b) => a + b, 0)) });
}

/** RSS, peak RSS (VmHWM), and RSS split into anonymous memory (heaps, malloc) and file pages (the node binary, libraries). */
function rssOf(pid: number): { rssMiB: number; peakMiB: number; anonMiB: number; fileMiB: number } {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(st)?.[1] ?? NaN);
  const sm = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const smKb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(sm)?.[1] ?? NaN);
  const mib = (x: number): number => +(x / 1024).toFixed(1);
  return { rssMiB: mib(kb('VmRSS')), peakMiB: mib(kb('VmHWM')), anonMiB: mib(smKb('Anonymous')), fileMiB: mib(smKb('Rss') - smKb('Anonymous')) };
}

/**
 * RSS idle (no /metrics scrape yet), then V8's heap figures from a scrape of /metrics, then
 * RSS after that scrape (rendering 10,000 Services' counters leaves garbage; Prometheus
 * scrapes every 15-60 s, so both are a steady state's bounds).
 * Then two more scrapes: the RSS after three in a row, and the CPU time per scrape; then the
 * RSS 10 s after the last one (nothing scraped meanwhile).
 */
async function memoryOf(pid: number, port: number): Promise<Record<string, unknown>> {
  const idle = rssOf(pid);
  // KW_BENCH_SMAPS=referenced: the node binary's pages the agent touches from now on (its accessed bits cleared here,
  // counted 10 s after the last scrape): how much of its resident code and read-only data it still uses.
  if (process.env.KW_BENCH_SMAPS === 'referenced') writeFileSync(`/proc/${pid}/clear_refs`, '1');
  const heapSpaces: unknown[] = [];
  await spacesOf(pid, heapSpaces);
  // Itemised (bench/smaps.ts) before the scrape, as the idle figures.
  const smaps = smapsMiB(pid);
  const cpu0 = cpuMsOf(pid);
  const heap = port ? await heapOf(port).catch(() => ({})) : {};
  // RSS a moment after each scrape, as between two of Prometheus's (the agent gives malloc's
  // freed pages back once a scrape's response is done: agent/metrics/server.ts afterScrape).
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1000));
  await settle();
  const afterScrapeRssMiB = rssOf(pid).rssMiB;
  // KW_BENCH_SMAPS=1: the itemised growth over the idle figures after each scrape, not only after the last.
  const growth = (): Record<string, number> => Object.fromEntries(Object.entries(smapsMiB(pid)).map(([k, v]) => [k, +(v - (smaps[k] ?? 0)).toFixed(1)])
    .filter(([, d]) => Math.abs(d as number) >= 0.1));
  const smapsGrowthPerScrapeMiB = process.env.KW_BENCH_SMAPS ? [growth()] : undefined;
  const anonMaps = (): Map<string, number> => {
    const m = new Map<string, number>(); let cur = '';
    for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
      const h = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s*(.*)$/.exec(line);
      if (h) { cur = h[4] ? '' : `${h[1]} ${((parseInt(h[2]!, 16) - parseInt(h[1]!, 16)) / 1024)}K ${h[3]}`; continue; }
      const r = /^Rss:\s+(\d+)/.exec(line);
      if (r && cur) m.set(cur, Number(r[1]));
    }
    return m;
  };
  const mapsIdle = process.env.KW_BENCH_SMAPS === 'mappings' ? anonMaps() : undefined;
  const mapsDiff: string[][] = [];
  await spacesOf(pid, heapSpaces);
  // More scrapes in a row (3, or KW_BENCH_SCRAPES): what Prometheus does every 15-60 s must not grow the RSS further.
  const scrapes = Math.max(1, Number(process.env.KW_BENCH_SCRAPES ?? 3));
  const rssPerScrapeMiB = [afterScrapeRssMiB];
  if (port) {
    for (let i = 1; i < scrapes; i++) {
      await (await fetch(`http://127.0.0.1:${port}/metrics`)).arrayBuffer().catch(() => undefined);
      await settle();
      rssPerScrapeMiB.push(rssOf(pid).rssMiB);
      smapsGrowthPerScrapeMiB?.push(growth());
      if (mapsIdle) {
        const now = anonMaps(); const agg: Record<string, [number, number, number]> = {};
        for (const k of new Set([...mapsIdle.keys(), ...now.keys()])) {
          const x = (now.get(k) ?? 0) - (mapsIdle.get(k) ?? 0); if (x === 0) continue;
          const cls = `${k.split(' ')[1]} ${k.split(' ')[2]}${now.has(k) ? (mapsIdle.has(k) ? '' : ' new') : ' gone'}`;
          const a = (agg[cls] ??= [0, 0, 0]); a[0]++; if (x > 0) a[1] += x; else a[2] += x;
        }
        mapsDiff.push(Object.entries(agg).map(([k, [n, p, m]]) => `${k}: ${n} maps +${p}K ${m}K`));
      }
      await spacesOf(pid, heapSpaces);
    }
  }
  const scrapeCpuMs = port ? Math.round((cpuMsOf(pid) - cpu0) / scrapes) : undefined;
  // Where the scrapes' RSS went (bench/smaps.ts items that grew or shrank by 0.1 MiB or more).
  const after = smapsMiB(pid);
  const smapsGrowthMiB = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, +(v - (smaps[k] ?? 0)).toFixed(1)]).filter(([, d]) => Math.abs(d as number) >= 0.1));
  // And 10 s later, with no scrape meanwhile: whether what a scrape gave back stays given back (Lease renewals, timers).
  await new Promise((r) => setTimeout(r, 10_000));
  const rss10sAfterScrapesMiB = rssOf(pid).rssMiB;
  const referenced = process.env.KW_BENCH_SMAPS === 'referenced' ? binaryReferenced(pid) : undefined;
  return { ...idle, ...heap, afterScrapeRssMiB, after3ScrapesRssMiB: rssPerScrapeMiB[2], rssPerScrapeMiB, rss10sAfterScrapesMiB, scrapeCpuMs, smaps, smapsGrowthMiB,
    ...(smapsGrowthPerScrapeMiB ? { smapsGrowthPerScrapeMiB } : {}), ...(HEAP_SPACES ? { heapSpaces } : {}), ...(mapsIdle ? { mapsDiff } : {}), ...(referenced ? { referenced } : {}) };
}

/**
 * As under Prometheus (deploy/monitoring scrapes every 15 s): /metrics scraped every
 * --prometheus-interval seconds, --prometheus-rounds times, the RSS taken just before each
 * scrape, when the agent has been left alone longest since the last one: the figure a
 * DaemonSet's memory graph shows between scrapes.
 */
async function prometheusPaced(pid: number, port: number, label: Record<string, unknown> = {}): Promise<void> {
  const rounds = Number(values['prometheus-rounds']);
  const intervalS = Number(values['prometheus-interval']);
  if (!port || !(rounds > 0)) return;
  const before: number[] = [];
  // KW_BENCH_SMAPS: what grew (bench/smaps.ts items, 0.1 MiB or more) from 1 s after a scrape to just before the next.
  const growth: Array<Record<string, number>> = [];
  let after: Record<string, number> | undefined;
  for (let i = 0; i < rounds; i++) {
    await new Promise((r) => setTimeout(r, intervalS * 1000 - (after ? 1000 : 0)));
    before.push(rssOf(pid).rssMiB);
    if (after) {
      const now = smapsMiB(pid);
      growth.push(Object.fromEntries(Object.entries(now).map(([k, v]) => [k, +(v - (after![k] ?? 0)).toFixed(1)]).filter(([, d]) => Math.abs(d as number) >= 0.1)));
    }
    await (await fetch(`http://127.0.0.1:${port}/metrics`)).arrayBuffer().catch(() => undefined);
    if (process.env.KW_BENCH_SMAPS) {
      await new Promise((r) => setTimeout(r, 1000));
      after = smapsMiB(pid);
    }
  }
  // The last scrape's compaction (~100 ms at 10,000 Services) done before what follows measures change latency.
  await new Promise((r) => setTimeout(r, 2000));
  const sorted = [...before].sort((a, b) => a - b);
  out('prometheus-paced', { ...label, intervalS, rounds, rssBeforeScrapeMiB: before, medianMiB: percentile(sorted, 50), maxMiB: sorted[sorted.length - 1],
    ...(process.env.KW_BENCH_SMAPS ? { smapsGrowthBetweenScrapesMiB: growth } : {}) });
}

/** The node binary's mappings: resident and referenced (accessed since clear_refs) MiB, text (r-x) and the rest. */
function binaryReferenced(pid: number): Record<string, [number, number]> {
  const exe = readlinkSync(`/proc/${pid}/exe`);
  const o: Record<string, [number, number]> = {};
  let cur: string | undefined;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const h = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (h) { cur = h[2] === exe ? (h[1]!.includes('x') ? 'text' : h[1]!.startsWith('rw') ? 'data' : 'rodata') : undefined; continue; }
    const m = cur && /^(Rss|Referenced):\s+(\d+)/.exec(line);
    if (m) { const e = (o[cur!] ??= [0, 0]); e[m[1] === 'Rss' ? 0 : 1] += +(Number(m[2]) / 1024).toFixed(2); }
  }
  return o;
}

/** With --heap-spaces: the agent's V8 heap spaces now, from its preload (bench/heap-spaces.ts), appended to `into`. */
async function spacesOf(pid: number, into: unknown[]): Promise<void> {
  if (!HEAP_SPACES) return;
  const file = join(HEAP_SPACES, `${pid}.jsonl`);
  const lines = (): string[] => { try { return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean); } catch { return []; } };
  const n = lines().length;
  process.kill(pid, 'SIGURG');
  for (let t = 0; t < 100 && lines().length === n; t++) await new Promise((r) => setTimeout(r, 20));
  const l = lines();
  if (l.length > n) into.push(JSON.parse(l[l.length - 1]!));
}

/** The process's TCP connections to a port (the API server's): one with HTTP/2, a watch's each with HTTP/1.1. */
function connectionsTo(pid: number, port: number): number {
  const out = execFileSync('ss', ['-Htnp', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.includes(`pid=${pid},`)).length;
}

/** A process's CPU time so far (user + system, ms), from /proc/PID/stat. */
function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function heapOf(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const v = (re: RegExp): number => +(Number(re.exec(text)?.[1] ?? NaN) / 1048576).toFixed(1);
  return { heapUsedMiB: v(/^nodejs_heap_size_used_bytes (\S+)$/m), heapTotalMiB: v(/^nodejs_heap_size_total_bytes (\S+)$/m), externalMiB: v(/^nodejs_external_memory_bytes (\S+)$/m) };
}

/** deploy/daemonset.yaml's value of one of the agent container's environment variables. */
function daemonSetEnv(name: string): string | undefined {
  const text = readFileSync(join(projectRoot(), 'deploy', 'daemonset.yaml'), 'utf8');
  return new RegExp(`- name: ${name}\\n\\s+value: "?([^"\\n]*)"?`).exec(text)?.[1];
}

/**
 * The agent's environment as deploy/daemonset.yaml gives it, not the caller's shell: PATH, HOME,
 * NODE_NAME, one malloc arena (the DaemonSet's MALLOC_ARENA_MAX, unless the caller sets another value), the
 * DaemonSet's NODE_OPTIONS and the bench's, and the caller's KERNWAY_* and KW_* settings. Nothing else of the shell's:
 * e.g. a NODE_EXTRA_CA_CERTS (this machine sets one) makes node:tls load that CA bundle at
 * import, ~1 MiB of RSS the DaemonSet's agent does not have (docs/kubernetes-api.md).
 */
function agentEnv(options = nodeOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, NODE_NAME: NODE, NODE_OPTIONS: options, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? daemonSetEnv('MALLOC_ARENA_MAX') ?? '1' };
  for (const [k, v] of Object.entries(process.env)) if (/^(KERNWAY|KW)_/.test(k)) env[k] = v;
  return env;
}

const SNAPSHOTS = values['heap-snapshot'];
/** With --heap-spaces: where the agents' preload writes (passed on as KW_BENCH_HEAP_SPACES, a KW_ setting agentEnv keeps). */
const HEAP_SPACES = values['heap-spaces'] ? (process.env.KW_BENCH_HEAP_SPACES = mkdtempSync(join(tmpdir(), 'kernway-heap-spaces-'))) : undefined;
const nodeOptions = [daemonSetEnv('NODE_OPTIONS') ?? '', values['agent-node-options'], ...(SNAPSHOTS ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${SNAPSHOTS}`] : []),
  ...(HEAP_SPACES ? [`--import=${pathToFileURL(join(projectRoot(), 'dist', 'bench', 'heap-spaces.js')).href}`] : [])].join(' ').trim();

/** With --heap-snapshot: the agent writes a heap snapshot (Node.js's signal handler); waits until the file is complete. */
async function heapSnapshot(child: ChildProcess, label: string): Promise<void> {
  if (!SNAPSHOTS) return;
  mkdirSync(SNAPSHOTS, { recursive: true });
  const before = new Set(readdirSync(SNAPSHOTS));
  child.kill('SIGUSR2');
  const t = performance.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    const f = readdirSync(SNAPSHOTS).find((x) => x.endsWith('.heapsnapshot') && !before.has(x));
    // Node writes the file in one go then the JSON ends with a closing bracket.
    if (f && readFileSync(join(SNAPSHOTS, f), 'utf8').trimEnd().endsWith('}')) {
      renameSync(join(SNAPSHOTS, f), join(SNAPSHOTS, `${label}.heapsnapshot`));
      out('heap-snapshot', { file: join(SNAPSHOTS, `${label}.heapsnapshot`) });
      return;
    }
    if (performance.now() - t > 120_000) throw new Error('no heap snapshot within 120 s');
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const BASELINE_ONLY = values['baseline-only'];
  const cluster = BASELINE_ONLY ? undefined : await Cluster.start({ tag: 'kbench', nodes: 1 });
  const lab = await Lab.create({ tag: 'kbench' });
  const dir = mkdtempSync(join(tmpdir(), 'kernway-kube-bench-'));
  const bpffs = join(lab.bpffsDir, 'agent');
  let agent: ChildProcess | undefined;
  // Stopped from outside (SIGTERM, Ctrl-C): clean up as on failure.
  const interrupted = new Promise<never>((_, reject) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => reject(new Error(`stopped by ${sig}`)));
  });
  interrupted.catch(() => undefined);
  try {
    await Promise.race([run(), interrupted]);
  } finally {
    // (An agent killed by a signal has a signalCode and no exitCode: it has exited all the same.)
    if (agent && agent.exitCode === null && agent.signalCode === null) {
      const exited = new Promise((r) => agent!.once('exit', r));
      agent.kill('SIGTERM');
      await exited;
    }
    try { uninstallAgent(bpffs, lab.cgroupPath); } catch { /* the lab removes the folder anyway */ }
    await lab.destroy();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
    if (HEAP_SPACES) rmSync(HEAP_SPACES, { recursive: true, force: true });
  }

  async function run(): Promise<void> {
    let t = performance.now();
    if (cluster) {
      out('cluster', { ms: Math.round(performance.now() - t0) });
      await cluster.api.post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'bench' } });
      // deploy/'s namespace: the agent's Lease lives there (without it the agent never leads, and never runs the elected agent's status rounds).
      await cluster.api.post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kernway-system' } });
      if (!values['without-crds']) {
        // As in a cluster running kernway: deploy/'s CRDs, and the Gateway API's its kustomization asks for first (docs/deploy.md).
        // 1.20's kubectl does not know x-kubernetes-validations: --validate=false.
        const crds = [join(projectRoot(), 'deploy', 'crds'), join(projectRoot(), '..', 'shared', 'crds', 'gateway-api-standard')];
        for (const d of crds) for (const f of readdirSync(d).filter((x) => x.endsWith('.yaml'))) await cluster.kubectl(['apply', '--validate=false', '-f', join(d, f)]);
      }
      out('crds', { installed: !values['without-crds'] });
      t = performance.now();
      await pool(SERVICES, 32, async (i) => {
        await cluster.api.post('/api/v1/namespaces/bench/services', service(i));
        await cluster.api.post('/apis/discovery.k8s.io/v1beta1/namespaces/bench/endpointslices', slice(i, Array.from({ length: ENDPOINTS }, (_, e) => POD(i, e))));
      });
      out('populate', { services: SERVICES, endpointsEach: ENDPOINTS, objects: SERVICES * 2, seconds: +((performance.now() - t) / 1000).toFixed(1) });
    }

    // The agent as a process, as on a node: first with an empty manifest directory (its fixed cost), then on the API.
    const startAgent = async (source: string[], root = projectRoot(), options = nodeOptions): Promise<{ child: ChildProcess; synced?: { ms: number; objects: number }; metricsPort: number }> => {
      const child = spawn(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'agent', ...source, '--node-name', NODE,
        '--cgroup', lab.cgroupPath, '--bpffs', bpffs, '--admin-socket', join(dir, 'admin.sock'), '--metrics-address', '127.0.0.1:0', '--service-cidr', '10.96.0.0/16'],
      { stdio: ['ignore', 'inherit', 'pipe'], env: agentEnv(options) });
      agent = child;
      const r: { child: ChildProcess; synced?: { ms: number; objects: number }; metricsPort: number } = { child, metricsPort: 0 };
      await new Promise<void>((resolve, reject) => {
        child.once('exit', (c) => reject(new Error(`the agent exited (${c})`)));
        createInterface({ input: child.stderr! }).on('line', (l) => {
          if (process.env.KERNWAY_BENCH_VERBOSE === '1') process.stderr.write(l + '\n');
          let j: { msg?: string; ms?: number; objects?: number; address?: string; snapshotMs?: number; pods?: number };
          try { j = JSON.parse(l) as typeof j; } catch { return; }
          if (j.msg === 'reconciled' && j.snapshotMs !== undefined) snapshots.push({ snapshotMs: j.snapshotMs, pods: j.pods ?? 0 });
          if (j.msg?.startsWith('Kubernetes API synced')) r.synced = { ms: j.ms!, objects: j.objects! };
          if (j.msg?.startsWith('metrics listening') && j.address) r.metricsPort = Number(j.address.slice(j.address.lastIndexOf(':') + 1));
          if (j.msg === 'agent running') resolve();
        });
      });
      return r;
    };
    const stopAgent = async (child: ChildProcess): Promise<void> => {
      const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      uninstallAgent(bpffs, lab.cgroupPath);
    };
    if (!values['skip-baseline']) await baseline();
    else out('baseline', { skipped: true });
    if (!cluster) return;

    t = performance.now();
    const kube = await startAgent(['--kubeconfig', cluster.kubeconfig]);
    const synced = kube.synced;
    const metricsPort = kube.metricsPort;
    const running = performance.now() - t;
    // The agent's CPU from its start to running (its process's whole life so far).
    out('sync', { services: SERVICES, listedMs: synced?.ms, objects: synced?.objects, toRunningMs: Math.round(running), agentCpuS: cpuOf(kube.child.pid!) });
    const maps = openPinnedMaps(bpffs);
    if (backendsInKernel(maps, VIP(SERVICES - 1)).length !== ENDPOINTS) throw new Error('the last Service is not in the maps');

    await new Promise((r) => setTimeout(r, 10_000));
    out('memory', { source: 'Kubernetes API', services: SERVICES, endpointsEach: ENDPOINTS, apiConnections: connectionsTo(kube.child.pid!, cluster.apiPort), ...(await memoryOf(kube.child.pid!, metricsPort)) });
    await heapSnapshot(kube.child, 'kube-api');
    await prometheusPaced(kube.child.pid!, metricsPort);

    // Change → map entry: REST PUT acknowledged → new backend in the kernel (`series` picks the new addresses' /16).
    // With --scrape-every MS, /metrics is scraped that often meanwhile (the agent compacts its heap after each scrape).
    const scrapeEvery = Number(values['scrape-every'] ?? 0);
    let scrapesDuring = 0;
    const restLatency = async (maps: LbMaps, series: number, port: number): Promise<number[]> => {
    const changes = async (): Promise<number[]> => {
    const rest: number[] = [];
    for (let c = 0; c < CHANGES; c++) {
      const i = (c * 7919) % SERVICES;
      const fresh = ip(((10 << 24) | (series << 16)) + c + 1);
      const cur = await cluster.api.get<{ metadata: { resourceVersion: string } }>(`/apis/discovery.k8s.io/v1beta1/namespaces/bench/endpointslices/svc-${i}-1`);
      const addrs = [fresh, ...Array.from({ length: ENDPOINTS - 1 }, (_, e) => POD(i, e + 1))];
      await cluster.api.put(`/apis/discovery.k8s.io/v1beta1/namespaces/bench/endpointslices/svc-${i}-1`, slice(i, addrs, cur.metadata.resourceVersion));
      const a = performance.now();
      while (!backendsInKernel(maps, VIP(i)).includes(fresh)) {
        if (performance.now() - a > 30_000) throw new Error(`change ${c} not in the maps within 30 s`);
        await new Promise((r) => setTimeout(r, 1)); // not a busy loop: the machine has 2 cores
      }
      rest.push(performance.now() - a);
    }
    return rest;
    };
    let scraping = scrapeEvery > 0;
    const scraper = (async () => {
      while (scraping) {
        await new Promise((r) => setTimeout(r, scrapeEvery));
        if (!scraping) break;
        await (await fetch(`http://127.0.0.1:${port}/metrics`)).arrayBuffer().catch(() => undefined);
        scrapesDuring++;
      }
    })();
    try {
      return await changes();
    } finally {
      scraping = false;
      await scraper;
    }
    };
    const fromLatency = snapshots.length;
    const rest = await restLatency(maps, 2, metricsPort);
    const q = (xs: number[], p: number): number => +percentile([...xs].sort((x, y) => x - y), p).toFixed(1);
    out('latency', { via: 'REST PUT acknowledged → map entry', changes: CHANGES, p50ms: q(rest, 50), p99ms: q(rest, 99), maxMs: q(rest, 100),
      ...(scrapeEvery ? { scrapeEveryMs: scrapeEvery, scrapesDuring } : {}) });
    snapshotStats(fromLatency, 'one slice change');

    const viaKubectl: number[] = [];
    const kubectlOnly: number[] = [];
    for (let c = 0; c < KUBECTL_CHANGES; c++) {
      const i = (c * 104729 + 13) % SERVICES;
      const fresh = ip(((10 << 24) | (3 << 16)) + c + 1);
      const file = join(dir, 'slice.json');
      writeFileSync(file, JSON.stringify(slice(i, [fresh, ...Array.from({ length: ENDPOINTS - 1 }, (_, e) => POD(i, e + 1))])));
      const a = performance.now();
      const k = cluster.kubectl(['apply', '-f', file]).then(() => kubectlOnly.push(performance.now() - a));
      while (!backendsInKernel(maps, VIP(i)).includes(fresh)) {
        if (performance.now() - a > 30_000) throw new Error(`kubectl change ${c} not in the maps within 30 s`);
        await new Promise((r) => setTimeout(r, 1));
      }
      viaKubectl.push(performance.now() - a);
      await k;
    }
    out('latency', { via: 'kubectl apply spawned → map entry', changes: KUBECTL_CHANGES, p50ms: q(viaKubectl, 50), p99ms: q(viaKubectl, 99),
      kubectlExitP50ms: q(kubectlOnly, 50) });

    if (PODS > 0) {
      const fromSnapshot = snapshots.length;
      const cpu0 = cpuOf(kube.child.pid!);
      t = performance.now();
      await pool(PODS, 32, async (i) => {
        await cluster.api.post('/api/v1/namespaces/bench/pods', { apiVersion: 'v1', kind: 'Pod',
          metadata: { name: `pod-${i}`, namespace: 'bench', labels: { app: `svc-${i % SERVICES}`, 'pod-template-hash': 'abcdef1234' },
            annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } },
          spec: { nodeName: 'node-ghost', serviceAccountName: 'default', containers: [{ name: 'app', image: 'registry.example/app:1.0', command: ['app'], ports: [{ containerPort: 8080 }],
            env: [{ name: 'MODE', value: 'bench' }], resources: { requests: { cpu: '10m', memory: '16Mi' } } }] } });
      });
      const posted = performance.now();
      out('populate', { pods: PODS, seconds: +((posted - t) / 1000).toFixed(1), perSecond: Math.round(PODS / ((posted - t) / 1000)) });
      // Taken in: every Pod in a model snapshot the agent applied (the pods its 'reconciled' lines count).
      const applied = (): number => snapshots.slice(fromSnapshot).reduce((n, x) => n + x.pods, 0);
      while (applied() < PODS) {
        if (performance.now() - posted > 300_000) throw new Error(`the agent applied ${applied()} pods of ${PODS} 300 s after the last was created`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const done = performance.now();
      out('pods-in', { pods: PODS, fromFirstPostS: +((done - t) / 1000).toFixed(1), afterLastPostMs: Math.round(done - posted),
        agentCpuS: +(cpuOf(kube.child.pid!) - cpu0).toFixed(1), agentCpuMsPerPod: +((cpuOf(kube.child.pid!) - cpu0) * 1000 / PODS).toFixed(2) });
      snapshotStats(fromSnapshot, 'pods');
      await new Promise((r) => setTimeout(r, 10_000));
      const mem2 = await memoryOf(kube.child.pid!, metricsPort);
      // What the API server sends per Pod (a list page, JSON) against what the agent keeps.
      const page = await cluster.api.request<string>('GET', '/api/v1/namespaces/bench/pods?limit=500');
      const bytes = typeof page === 'string' ? page.length : JSON.stringify(page).length;
      const one = (typeof page === 'string' ? JSON.parse(page) : page) as { items: Array<Record<string, unknown>> };
      out('pods', { pods: PODS, ...mem2, apiBytesPerPod: Math.round(bytes / one.items.length) });
      await heapSnapshot(kube.child, 'kube-api-pods');
    }
    for (const m of Object.values(maps)) m.close?.();

    // With --ab ROOT: the API agent of another build and of this one in turns, memory only (same API server, same objects).
    if (values.ab) {
      await stopAgent(kube.child);
      for (let i = 0; i < Number(values['ab-runs']); i++) {
        for (const [build, root] of [['other', values.ab], ['this', projectRoot()]] as const) {
          const t1 = performance.now();
          const options = build === 'other' && values['ab-node-options'] !== undefined ? values['ab-node-options'] : nodeOptions;
          const a = await startAgent(['--kubeconfig', cluster.kubeconfig], root, options);
          const sync = { listedMs: a.synced?.ms, toRunningMs: Math.round(performance.now() - t1), agentCpuS: cpuOf(a.child.pid!) };
          await new Promise((r) => setTimeout(r, 10_000));
          out('memory', { source: 'Kubernetes API', build, root, nodeOptions: options, run: i + 1, ...sync, apiConnections: connectionsTo(a.child.pid!, cluster.apiPort), ...(await memoryOf(a.child.pid!, a.metricsPort)) });
          await prometheusPaced(a.child.pid!, a.metricsPort, { build, run: i + 1 });
          if (CHANGES > 0) {
            const m = openPinnedMaps(bpffs);
            scrapesDuring = 0;
            const lat = await restLatency(m, 10 + 2 * i + (build === 'this' ? 1 : 0), a.metricsPort).finally(() => { for (const x of Object.values(m)) x.close?.(); });
            out('latency', { via: 'REST PUT acknowledged → map entry', build, run: i + 1, changes: CHANGES, p50ms: q(lat, 50), p99ms: q(lat, 99), maxMs: q(lat, 100),
              ...(scrapeEvery ? { scrapeEveryMs: scrapeEvery, scrapesDuring } : {}) });
          }
          await stopAgent(a.child);
        }
      }
    }

    // The agent with an empty manifest directory (its fixed cost), then the same objects from a manifest directory (the baseline).
    async function baseline(): Promise<void> {
      const empty = join(dir, 'empty');
      mkdirSync(empty);
      const base = await startAgent(['--standalone', empty]);
      await new Promise((r) => setTimeout(r, 10_000));
      out('memory', { source: 'empty manifest directory (fixed cost)', ...(await memoryOf(base.child.pid!, base.metricsPort)) });
      await stopAgent(base.child);

      // The same objects from a manifest directory (100 files): RSS and change latency of the standalone source, the baseline.
      const manifests = join(dir, 'manifests');
      mkdirSync(manifests);
      const FILES = Math.min(100, SERVICES);
      const per = Math.ceil(SERVICES / FILES);
      const override = new Map<number, string[]>();
      const v1slice = (i: number): Record<string, unknown> => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
        metadata: { name: `svc-${i}-1`, namespace: 'bench', labels: { 'kubernetes.io/service-name': `svc-${i}` } },
        addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        endpoints: (override.get(i) ?? Array.from({ length: ENDPOINTS }, (_, e) => POD(i, e))).map((a) => ({ addresses: [a], conditions: { ready: true }, nodeName: 'node-1' })) });
      const writeFile = (f: number): void => {
        const items: unknown[] = [];
        for (let i = f * per; i < Math.min(SERVICES, (f + 1) * per); i++) items.push(service(i), v1slice(i));
        writeFileSync(join(manifests, `.f${f}.tmp`), JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
        renameSync(join(manifests, `.f${f}.tmp`), join(manifests, `f${f}.json`));
      };
      for (let f = 0; f < FILES; f++) writeFile(f);
      t = performance.now();
      const sa = await startAgent(['--standalone', manifests]);
      out('sync', { source: 'manifest directory (baseline)', services: SERVICES, toRunningMs: Math.round(performance.now() - t) });
      await new Promise((r) => setTimeout(r, 10_000));
      out('memory', { source: 'manifest directory (baseline)', services: SERVICES, endpointsEach: ENDPOINTS, ...(await memoryOf(sa.child.pid!, sa.metricsPort)) });
      await heapSnapshot(sa.child, 'manifest-dir');
      {
        const maps = openPinnedMaps(bpffs);
        const lat: number[] = [];
        for (let c = 0; c < CHANGES; c++) {
          const i = (c * 7919) % SERVICES;
          const fresh = ip(((10 << 24) | (4 << 16)) + c + 1);
          override.set(i, [fresh, ...Array.from({ length: ENDPOINTS - 1 }, (_, e) => POD(i, e + 1))]);
          writeFile(Math.floor(i / per));
          const a = performance.now();
          while (!backendsInKernel(maps, VIP(i)).includes(fresh)) {
            if (performance.now() - a > 30_000) throw new Error(`file change ${c} not in the maps within 30 s`);
            await new Promise((r) => setTimeout(r, 1));
          }
          lat.push(performance.now() - a);
        }
        for (const m of Object.values(maps)) m.close?.();
        const q = (xs: number[], p: number): number => +percentile([...xs].sort((x, y) => x - y), p).toFixed(1);
        out('latency', { via: 'manifest file renamed → map entry (baseline, 20 ms debounce)', changes: CHANGES, p50ms: q(lat, 50), p99ms: q(lat, 99), maxMs: q(lat, 100) });
      }
      await stopAgent(sa.child);
    }
  }
}

main().catch((e: unknown) => { console.error(e); process.exit(1); });
