/**
 * A small Kubernetes REST client for the lab (the lab kubelet, the cluster's own checks
 * and the tests): JSON requests with client-certificate TLS, and watches that re-list
 * and re-watch with backoff (an ended watch, a 410 Gone, a dead API server).
 *
 * The lab talks to a Kubernetes 1.20 API server; @kubernetes/client-node 2.x needs
 * Node >= 22.19, so this module keeps to node:https.
 */
import { readFileSync } from 'node:fs';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import { KernwayError } from '../../common/errors.js';

export interface KubeCredentials {
  /** https://HOST:PORT */
  server: string;
  ca: string | Buffer;
  cert: string | Buffer;
  key: string | Buffer;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
    creationTimestamp?: string;
    ownerReferences?: Array<{ kind: string; name: string; uid: string }>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export interface WatchEvent<T> { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'; object: T }

export class KubeApiError extends KernwayError {
  readonly status: number;
  readonly reason: string | undefined;
  constructor(method: string, path: string, status: number, body: string) {
    let reason: string | undefined;
    let message = body.slice(0, 300);
    try {
      const s = JSON.parse(body) as { reason?: string; message?: string };
      reason = s.reason;
      message = s.message ?? message;
    } catch { /* not a Status */ }
    super('KW_LAB_KUBE_API', `${method} ${path}: ${status} ${reason ?? ''} ${message}`.trim(), { status, reason });
    this.status = status;
    this.reason = reason;
  }
}

/** Reads a kubeconfig written by lab/cluster/pki.ts (one cluster, one user, inline data). */
export function credentialsFromKubeconfig(path: string): KubeCredentials {
  const text = readFileSync(path, 'utf8');
  const field = (name: string): string => {
    const m = new RegExp(`${name}: *(\\S+)`).exec(text);
    if (!m) throw new KernwayError('KW_LAB_KUBECONFIG', `${path}: no ${name}`);
    return m[1]!;
  };
  const b64 = (name: string): Buffer => Buffer.from(field(name), 'base64');
  return { server: field('server'), ca: b64('certificate-authority-data'), cert: b64('client-certificate-data'), key: b64('client-key-data') };
}

export class KubeApi {
  private readonly url: URL;
  private readonly agent: Agent;
  private closed = false;
  private readonly watches = new Set<{ abort(): void }>();

  constructor(readonly creds: KubeCredentials) {
    this.url = new URL(creds.server);
    this.agent = new Agent({ keepAlive: true, ca: creds.ca, cert: creds.cert, key: creds.key, maxSockets: 16 });
  }

  private options(method: string, path: string, headers: Record<string, string>): RequestOptions {
    return {
      method,
      host: this.url.hostname,
      port: Number(this.url.port || 443),
      path,
      agent: this.agent,
      headers: { accept: 'application/json', ...headers },
    };
  }

  /** One request; resolves with the parsed JSON body, rejects with KubeApiError on >= 400. */
  request<T = KubeObject>(method: string, path: string, body?: unknown, contentType = 'application/json', timeoutMs = 30_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const headers: Record<string, string> = data ? { 'content-type': contentType, 'content-length': String(data.length) } : {};
      const req = httpsRequest(this.options(method, path, headers), (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 0) >= 400) reject(new KubeApiError(method, path, res.statusCode ?? 0, text));
          else {
            // JSON, except plain-text endpoints such as /readyz.
            try { resolve((text ? JSON.parse(text) : {}) as T); } catch { resolve(text as T); }
          }
        });
        res.on('error', reject);
      });
      req.setTimeout(timeoutMs, () => req.destroy(new KernwayError('KW_LAB_TIMEOUT', `${method} ${path}: no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(data);
    });
  }

  get<T = KubeObject>(path: string): Promise<T> { return this.request<T>('GET', path); }
  post<T = KubeObject>(path: string, body: unknown): Promise<T> { return this.request<T>('POST', path, body); }
  put<T = KubeObject>(path: string, body: unknown): Promise<T> { return this.request<T>('PUT', path, body); }
  delete<T = KubeObject>(path: string, body?: unknown): Promise<T> { return this.request<T>('DELETE', path, body); }
  mergePatch<T = KubeObject>(path: string, body: unknown): Promise<T> { return this.request<T>('PATCH', path, body, 'application/merge-patch+json'); }
  strategicPatch<T = KubeObject>(path: string, body: unknown): Promise<T> { return this.request<T>('PATCH', path, body, 'application/strategic-merge-patch+json'); }

  /** GET that answers undefined for 404. */
  async find<T = KubeObject>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path);
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 404) return undefined;
      throw e;
    }
  }

  /**
   * Lists then watches a collection (`path` like /api/v1/pods, `query` like
   * fieldSelector=spec.nodeName%3Dn1). Every listed object is first given as ADDED, and
   * objects gone between two lists as DELETED. Re-lists on 410 and re-watches with
   * backoff (200 ms doubling to 5 s) when the stream ends or fails. Returns a stop function.
   */
  informer<T extends KubeObject>(path: string, query: string, onEvent: (e: WatchEvent<T>) => void, onError?: (e: unknown) => void): () => void {
    const known = new Map<string, T>();
    let stopped = false;
    let current: { abort(): void } | undefined;
    let backoff = 200;
    const keyOf = (o: T): string => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    const handle = { abort: () => { stopped = true; current?.abort(); } };
    this.watches.add(handle);
    const sep = query ? '&' : '';
    const loop = async (): Promise<void> => {
      let rv: string | undefined;
      while (!stopped && !this.closed) {
        try {
          if (rv === undefined) {
            const list = await this.get<{ metadata: { resourceVersion: string }; items: T[] }>(`${path}?${query}`);
            const seen = new Set<string>();
            for (const item of list.items) {
              const k = keyOf(item);
              seen.add(k);
              known.set(k, item);
              onEvent({ type: 'ADDED', object: item });
            }
            for (const [k, o] of known) {
              if (!seen.has(k)) { known.delete(k); onEvent({ type: 'DELETED', object: o }); }
            }
            rv = list.metadata.resourceVersion;
          }
          const result = await this.watchOnce<T>(`${path}?${query}${sep}watch=1&allowWatchBookmarks=true&timeoutSeconds=240&resourceVersion=${rv}`, (ev) => {
            if (ev.type === 'ERROR') return;
            rv = ev.object.metadata.resourceVersion ?? rv;
            if (ev.type === 'BOOKMARK') return;
            const k = keyOf(ev.object);
            if (ev.type === 'DELETED') known.delete(k);
            else known.set(k, ev.object);
            onEvent(ev);
          }, (abort) => { current = abort; });
          if (result === 'gone') rv = undefined;
          backoff = 200;
        } catch (e) {
          if (stopped || this.closed) return;
          onError?.(e);
          if (e instanceof KubeApiError && e.status === 410) rv = undefined;
          await new Promise((r) => setTimeout(r, backoff));
          backoff = Math.min(backoff * 2, 5000);
        }
      }
    };
    void loop();
    return () => { handle.abort(); this.watches.delete(handle); };
  }

  /** One watch stream; resolves 'ended' when the server closes it, 'gone' on a 410 ERROR event. */
  private watchOnce<T>(path: string, onEvent: (e: WatchEvent<T>) => void, setAbort: (a: { abort(): void }) => void): Promise<'ended' | 'gone'> {
    return new Promise((resolve, reject) => {
      let gone = false;
      const req = httpsRequest(this.options('GET', path, {}), (res) => {
        if ((res.statusCode ?? 0) >= 400) {
          let text = '';
          res.on('data', (c: Buffer) => { text += c; });
          res.on('end', () => reject(new KubeApiError('GET', path, res.statusCode ?? 0, text)));
          return;
        }
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (!line.trim()) continue;
            const ev = JSON.parse(line) as WatchEvent<T>;
            if (ev.type === 'ERROR' && (ev.object as { code?: number }).code === 410) gone = true;
            onEvent(ev);
          }
        });
        res.on('end', () => resolve(gone ? 'gone' : 'ended'));
        res.on('error', reject);
      });
      req.on('error', reject);
      // A watch connection of its own (the keep-alive pool serves short requests).
      req.on('socket', (s) => s.setKeepAlive(true, 10_000));
      setAbort({ abort: () => req.destroy() });
      req.end();
    });
  }

  close(): void {
    this.closed = true;
    for (const w of this.watches) w.abort();
    this.watches.clear();
    this.agent.destroy();
  }
}
