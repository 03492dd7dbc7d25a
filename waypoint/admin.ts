/**
 * The admin server (--metrics-address): /metrics (Prometheus), /healthz (the process
 * answers), /readyz (a configuration is in force and every listener is bound),
 * /debug/routes (route and Gateway status as JSON, for `kernway routes`); with --workers,
 * served by the primary for all workers (waypoint/workers.ts), and /debug/workers (each
 * worker's pid, configuration and requests served).
 */
import { KernwayError } from '../common/errors.js';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { StatusReport } from './status.js';
import { writeMetricsText, type TextChunks } from '../common/metrics-text.js';
const http = process.getBuiltinModule('node:http'); // not an ESM import: see proxy/handler.ts

export interface AdminTarget {
  /**
   * The Prometheus text: one process's registry, or the workers' added up by the primary,
   * written in chunks (common/metrics-text.ts: no string of the whole text).
   */
  readonly metrics: { readonly registry: { readonly contentType: string }; render(w: TextChunks): AsyncIterable<unknown> };
  readiness(): { ready: boolean; reason: string };
  status(): StatusReport | Promise<StatusReport>;
  /** With --workers: each worker's state (/debug/workers). */
  workers?(): unknown | Promise<unknown>;
}

export class AdminServer {
  private constructor(private readonly server: Server, readonly port: number) {}

  static start(addr: { host: string; port: number }, target: AdminTarget): Promise<AdminServer> {
    const server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const send = (status: number, type: string, body: string): void => {
        res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      };
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed\n');
      switch (path) {
        case '/metrics':
          void writeMetricsText(res, target.metrics.registry.contentType, req.method === 'HEAD', (w) => target.metrics.render(w));
          return;
        case '/healthz': return send(200, 'text/plain', 'ok\n');
        case '/readyz': {
          const r = target.readiness();
          return send(r.ready ? 200 : 503, 'text/plain', `${r.reason}\n`);
        }
        case '/debug/routes':
          Promise.resolve().then(() => target.status()).then(
            (s) => send(200, 'application/json', JSON.stringify(s, null, 2)),
            (e: Error) => send(503, 'text/plain', `${e.message}\n`),
          );
          return;
        case '/debug/workers': {
          const workers = target.workers?.bind(target);
          if (!workers) return send(404, 'text/plain', 'not found: this waypoint is one process (no --workers)\n');
          Promise.resolve().then(workers).then(
            (w) => send(200, 'application/json', JSON.stringify(w, null, 2)),
            (e: Error) => send(503, 'text/plain', `${e.message}\n`),
          );
          return;
        }
        default: return send(404, 'text/plain', `not found (try /metrics, /healthz, /readyz, /debug/routes${target.workers ? ', /debug/workers' : ''})\n`);
      }
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    return new Promise((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new KernwayError('KW_METRICS_LISTEN',
        `--metrics-address ${addr.host}:${addr.port}: cannot listen: ${e.message}${e.code === 'EADDRINUSE' ? ' (another process has it: choose another port, or off)' : ''}`,
        { address: `${addr.host}:${addr.port}` }, { cause: e })));
      server.listen(addr.port, addr.host, () => {
        server.removeAllListeners('error');
        resolve(new AdminServer(server, (server.address() as AddressInfo).port));
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}
