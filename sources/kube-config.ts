/**
 * Where the Kubernetes API is and how to authenticate, by kubectl's conventions, through
 * client-node's KubeConfig: `--kubeconfig PATH`, else the KUBECONFIG variable (a list of
 * files, merged), else ~/.kube/config, else the in-cluster configuration of a pod (its
 * ServiceAccount token, CA and KUBERNETES_SERVICE_HOST/PORT). Nothing found is an error
 * (client-node would fall back to http://localhost:8080; kubectl does too, kernway does not).
 */
import { existsSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { KernwayError, errorMessage } from '../common/errors.js';

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** How the configuration was found, for logs and status. */
export type KubeConfigOrigin = 'flag' | 'KUBECONFIG' | 'home' | 'in-cluster';

export interface LoadedKubeConfig {
  config: KubeConfig;
  origin: KubeConfigOrigin;
  /** The API server's URL (https://host:port). */
  server: string;
}

export function loadKubeConfig(path?: string, env: NodeJS.ProcessEnv = process.env): LoadedKubeConfig {
  const kc = new KubeConfig();
  let origin: KubeConfigOrigin;
  try {
    if (path !== undefined) {
      if (!existsSync(path)) throw new Error(`${path} does not exist`);
      kc.loadFromFile(path);
      origin = 'flag';
    } else if (env.KUBECONFIG) {
      const files = env.KUBECONFIG.split(':').filter((f) => f !== '' && existsSync(f));
      if (files.length === 0) throw new Error(`KUBECONFIG=${env.KUBECONFIG}: none of its files exists`);
      // As kubectl: missing files are skipped, the first file's current-context wins.
      files.forEach((f, i) => {
        const one = new KubeConfig();
        one.loadFromFile(f);
        if (i === 0) kc.loadFromFile(f); else kc.mergeConfig(one, kc.getCurrentContext() !== '');
      });
      origin = 'KUBECONFIG';
    } else if (existsSync(join(env.HOME ?? homedir(), '.kube', 'config'))) {
      kc.loadFromFile(join(env.HOME ?? homedir(), '.kube', 'config'));
      origin = 'home';
    } else if (env.KUBERNETES_SERVICE_HOST && existsSync(join(SA_DIR, 'token'))) {
      kc.loadFromCluster();
      origin = 'in-cluster';
    } else {
      throw new Error('no --kubeconfig, no KUBECONFIG, no ~/.kube/config, and not in a pod (no KUBERNETES_SERVICE_HOST and ServiceAccount token)');
    }
  } catch (e) {
    throw new KernwayError('KW_KUBE_CONFIG', `cannot load the Kubernetes client configuration: ${errorMessage(e)}`, { path });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) {
    throw new KernwayError('KW_KUBE_CONFIG', `the Kubernetes client configuration${path ? ` ${path}` : ''} has no current cluster with a server (context ${JSON.stringify(kc.getCurrentContext())})`, { path });
  }
  if (!/^https?:\/\//.test(cluster.server)) {
    throw new KernwayError('KW_KUBE_CONFIG', `the cluster's server must be an http(s) URL, got ${JSON.stringify(cluster.server)}`, { path });
  }
  return { config: kc, origin, server: cluster.server.replace(/\/+$/, '') };
}

/** An HTTP error answered by the API server (status, reason and message of its Status object). */
export class KubeHttpError extends Error {
  constructor(readonly status: number, readonly reason: string, message: string) {
    super(message);
  }
}

/** The KubeHttpError of an answer >= 400 (reason and message from its Status object when it is one). */
function httpError(method: string, path: string, status: number, body: string): KubeHttpError {
  let reason = '';
  let message = body.slice(0, 500);
  try {
    const st = JSON.parse(body) as { reason?: string; message?: string };
    reason = st.reason ?? '';
    message = st.message ?? message;
  } catch { /* not a Status */ }
  return new KubeHttpError(status, reason, `${method} ${path}: ${status} ${reason}: ${message}`);
}

/**
 * Requests to the API server with the configuration's credentials (client-node applies
 * the CA, client certificate, token or exec plugin to every request: tokens are re-read).
 */
export class KubeClient {
  constructor(readonly loaded: LoadedKubeConfig) {}

  get server(): string {
    return this.loaded.server;
  }

  private async options(signal: AbortSignal | undefined): Promise<https.RequestOptions> {
    const opts: https.RequestOptions = { headers: { Accept: 'application/json' } };
    await this.loaded.config.applyToHTTPSOptions(opts);
    if (signal) opts.signal = signal;
    return opts;
  }

  /** Opens a GET whose answer is 200; other statuses reject with KubeHttpError. */
  async open(path: string, signal?: AbortSignal): Promise<http.IncomingMessage> {
    const opts = await this.options(signal);
    const url = new URL(this.server + path);
    const mod = url.protocol === 'http:' ? http : https;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { ...opts, method: 'GET' }, (res) => {
        if (res.statusCode === 200) { resolve(res); return; }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => { if (chunks.length < 64) chunks.push(c); });
        res.on('end', () => {
          reject(httpError('GET', path, res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  /**
   * One JSON request with any method (the elected agent's writes: Lease, status, waypoints);
   * resolves with the parsed body, rejects with KubeHttpError (its status) on >= 400.
   */
  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json', timeoutMs = 30_000): Promise<T> {
    const opts = await this.options(undefined);
    const url = new URL(this.server + path);
    const mod = url.protocol === 'http:' ? http : https;
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = { ...(opts.headers as Record<string, string>), ...(data ? { 'Content-Type': contentType, 'Content-Length': String(data.length) } : {}) };
    return new Promise<T>((resolve, reject) => {
      const req = mod.request(url, { ...opts, method, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 0) >= 400) { reject(httpError(method, path, res.statusCode ?? 0, text)); return; }
          try { resolve((text ? JSON.parse(text) : {}) as T); } catch (e) { reject(e); }
        });
        res.on('error', reject);
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(data);
    });
  }

  /** GET as JSON. */
  async get<T>(path: string, signal?: AbortSignal, timeoutMs = 60_000): Promise<T> {
    const ctl = new AbortController();
    const abort = (): void => ctl.abort();
    signal?.addEventListener('abort', abort, { once: true });
    const timer = setTimeout(() => ctl.abort(new Error(`GET ${path}: no answer within ${timeoutMs} ms`)), timeoutMs);
    try {
      const res = await this.open(path, ctl.signal);
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
    } catch (e) {
      if (ctl.signal.aborted && ctl.signal.reason instanceof Error) throw ctl.signal.reason;
      throw e;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
    }
  }
}
