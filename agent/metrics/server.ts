/**
 * The agent's HTTP endpoint for Prometheus and probes, bound to the address given
 * (--metrics-address HOST:PORT):
 *
 *   GET /metrics   the registry's exposition text
 *   GET /healthz   200 "ok" while the agent is alive (and the optional check passes), else 503
 *   GET /readyz    200 "ready" once setReady(true), else 503 with the reason
 *
 *   const http = new MetricsServer({ host: '0.0.0.0', port: 9464, metrics, log });
 *   const { port } = await http.listen();
 *   http.setReady(true);
 */
import type { Server, ServerResponse } from 'node:http';
// (node:http as its CommonJS module: see agent/admin/server.ts.)
const { createServer } = process.getBuiltinModule('node:http');
import type { AddressInfo } from 'node:net';
import { KernwayError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { AgentMetrics } from './registry.js';
import { writeMetricsText } from '../../common/metrics-text.js';

export interface MetricsServerOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  metrics: AgentMetrics;
  log?: Logger;
  /** Liveness check for /healthz: a string (the reason) means unhealthy. Default: always healthy. */
  health?: () => true | string;
  /**
   * Called once the /metrics responses under way are all done (on a later turn of the event
   * loop; several scrapes in a row call it once). The agent gives memory back there
   * (agent/datapath/memory.ts ScrapeMemory): malloc's freed pages, and the heap when the scrape grew it.
   */
  afterScrape?: () => void;
}

export class MetricsServer {
  private readonly opts: MetricsServerOptions;
  private server: Server | undefined;
  private ready = false;
  private notReadyReason = 'starting';
  /** /metrics responses not yet done (afterScrape runs when the last one is). */
  private scrapes = 0;

  constructor(opts: MetricsServerOptions) {
    if (typeof opts.host !== 'string' || opts.host === '') throw new KernwayError('KW_INVALID_ARGUMENT', '--metrics-address: expected HOST:PORT, the host is empty');
    if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new KernwayError('KW_INVALID_ARGUMENT', `--metrics-address: port must be 0-65535, got ${opts.port}`);
    this.opts = opts;
  }

  /** Readiness for /readyz; `reason` says why not (shown in the 503 body). */
  setReady(ready: boolean, reason = 'not ready'): void {
    this.ready = ready;
    this.notReadyReason = ready ? '' : reason;
  }

  isReady(): boolean {
    return this.ready;
  }

  /** Start listening; resolves with the address actually bound. KW_METRICS_LISTEN when it cannot. */
  async listen(): Promise<{ host: string; port: number }> {
    if (this.server) return this.address();
    const server = createServer((req, res) => { void this.handle(req.method ?? 'GET', req.url ?? '/', res); });
    server.keepAliveTimeout = 5000;
    const { host, port } = this.opts;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port }, () => { server.off('error', reject); resolve(); });
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'EADDRINUSE' ? 'the address is in use' : code === 'EADDRNOTAVAIL' ? 'no such address on this machine' : code === 'EACCES' ? 'permission denied' : errorMessage(e);
      throw new KernwayError('KW_METRICS_LISTEN', `cannot serve metrics on ${fmt(host, port)} (--metrics-address): ${why}`, { host, port, errno: code }, { cause: e });
    }
    server.on('error', (e) => this.opts.log?.error({ err: errorMessage(e) }, 'metrics server error'));
    this.server = server;
    const a = this.address();
    this.opts.log?.info({ address: fmt(a.host, a.port) }, 'metrics listening (/metrics, /healthz, /readyz)');
    return a;
  }

  address(): { host: string; port: number } {
    const a = this.server?.address() as AddressInfo | null | undefined;
    if (!a) throw new KernwayError('KW_METRICS_NOT_LISTENING', 'the metrics server is not listening');
    return { host: a.address, port: a.port };
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(method: string, url: string, res: ServerResponse): Promise<void> {
    const path = url.split('?', 1)[0];
    if (method !== 'GET' && method !== 'HEAD') return text(res, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
    try {
      switch (path) {
        case '/metrics':
          if (this.opts.afterScrape) this.countScrape(res);
          // In chunks, as they are written (common/metrics-text.ts); a failure is a 500 or a cut-off body.
          return await writeMetricsText(res, this.opts.metrics.registry.contentType, method === 'HEAD', (w) => this.opts.metrics.render(w));
        case '/healthz': {
          const h = this.opts.health?.() ?? true;
          return h === true ? text(res, 200, 'ok\n') : text(res, 503, `unhealthy: ${h}\n`);
        }
        case '/readyz':
          return this.ready ? text(res, 200, 'ready\n') : text(res, 503, `not ready: ${this.notReadyReason}\n`);
        default:
          return text(res, 404, 'not found (try /metrics, /healthz, /readyz)\n');
      }
    } catch (e) {
      this.opts.log?.error({ err: errorMessage(e), path }, 'metrics request failed');
      return text(res, 500, `error: ${errorMessage(e)}\n`);
    }
  }

  private countScrape(res: ServerResponse): void {
    this.scrapes++;
    res.once('close', () => {
      if (--this.scrapes > 0) return;
      setImmediate(() => {
        if (this.scrapes > 0) return;
        try {
          this.opts.afterScrape!();
        } catch (e) {
          this.opts.log?.warn({ err: errorMessage(e) }, 'metrics: after-scrape hook failed');
        }
      });
    });
  }
}

function text(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function fmt(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
