/**
 * The parts of prom-client the agent uses (Registry, Counter, Gauge, Histogram and the
 * Node.js process metrics), loaded file by file instead of through the package's entry.
 *
 * prom-client's entry (index.js) also loads its Pushgateway, which imports node:https,
 * node:tls and node:zlib (OpenSSL's TLS state and the CA certificates of
 * NODE_EXTRA_CA_CERTS), its cluster aggregator, Summary with tdigest, and, through
 * `collectDefaultMetrics`' process_cpu_* counters (exemplars), @opentelemetry/api: ~50
 * more modules. An agent on --standalone needs none of them (docs/agent-model.md, "Ninth
 * session"). The package has no `exports` map: its files are its public layout, and
 * index.js re-exports these same modules, so a Registry made here is the one tests make
 * with `new Registry()` from the package.
 *
 * The process metrics are prom-client's own collectors, each file as collectDefaultMetrics
 * runs it, but the process_cpu_* counters: the agent writes those itself
 * (AgentMetrics, from process.cpuUsage(), same names and help).
 */
import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';

const load = createRequire(import.meta.url);

export const Registry = load('prom-client/lib/registry') as typeof Prom.Registry;
export type Registry = Prom.Registry;
export const Counter = load('prom-client/lib/counter') as typeof Prom.Counter;
export type Counter<T extends string = string> = Prom.Counter<T>;
export const Gauge = load('prom-client/lib/gauge') as typeof Prom.Gauge;
export type Gauge<T extends string = string> = Prom.Gauge<T>;
export const Histogram = load('prom-client/lib/histogram') as typeof Prom.Histogram;
export type Histogram<T extends string = string> = Prom.Histogram<T>;
export type { LabelValues } from 'prom-client';

/**
 * collectDefaultMetrics' collectors (prom-client/lib/defaultMetrics.js), without
 * processCpuTotal (it loads @opentelemetry/api for exemplars the agent never enables).
 */
export const PROCESS_METRICS = [
  'processStartTime', 'osMemoryHeap', 'processOpenFileDescriptors', 'processMaxFileDescriptors', 'eventLoopLag',
  'processResources', 'processHandles', 'processRequests', 'heapSizeAndUsed', 'heapSpacesSizeAndUsed', 'version', 'gc',
] as const;

/** Registers the Node.js process metrics (process_*, nodejs_*) but process_cpu_* into `registry`, as collectDefaultMetrics does. */
export function collectProcessMetrics(registry: Registry): void {
  const config = { register: registry, eventLoopMonitoringPrecision: 10 };
  for (const name of PROCESS_METRICS) (load(`prom-client/lib/metrics/${name}`) as (r: Registry, c: typeof config) => void)(registry, config);
}
