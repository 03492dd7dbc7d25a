/** The agent's metrics: registry (with scrape-time helpers) and the /metrics, /healthz, /readyz server. */
export { AgentMetrics, type AgentMetricsOptions, type Sample, type ScrapeMetric } from './registry.js';
export { MetricsServer, type MetricsServerOptions } from './server.js';
