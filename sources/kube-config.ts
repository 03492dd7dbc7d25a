/**
 * Where the Kubernetes API is and how to authenticate, by kubectl's conventions, through
 * client-node's configuration code: `--kubeconfig PATH`, else the KUBECONFIG variable (a list
 * of files, merged), else ~/.kube/config, else the in-cluster configuration of a pod (its
 * ServiceAccount token, CA and KUBERNETES_SERVICE_HOST/PORT). Nothing found is an error
 * (client-node would fall back to http://localhost:8080; kubectl does too, kernway does not).
 *
 * Memory: client-node's package entry (and its `config.js`, which imports them) loads its
 * generated API clients and undici, ~75 MiB of RSS in a process that uses none of them (the
 * agent's requests are its own, below). So the configuration is read with client-node's own
 * parts that do not: `config_types` (kubeconfig entries, as KubeConfig reads them),
 * `exec_auth` (exec credential plugins, cached until they expire) and `file_auth` (token
 * files, re-read every minute: the in-cluster token). What those do not cover (an
 * `auth-provider` other than a token file or exec — azure, gcp, oidc — or a cluster's
 * `proxy-url`) is handed to client-node's full KubeConfig, loaded only then.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { Agent as HttpAgent, IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIPv6 } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext, type ConnectionOptions, type SecureContext } from 'node:tls';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { newClusters, newContexts, newUsers, type Cluster, type Context, type User } from '@kubernetes/client-node/dist/config_types.js';
import { ExecAuth } from '@kubernetes/client-node/dist/exec_auth.js';
import { FileAuth } from '@kubernetes/client-node/dist/file_auth.js';
import { createRequire } from 'node:module';
import type { parse as ParseYaml } from 'yaml';
import { KernwayError, errorMessage } from '../common/errors.js';

// (node:http as its CommonJS module: see agent/admin/server.ts.)
const http = process.getBuiltinModule('node:http');

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** How the configuration was found, for logs and status. */
export type KubeConfigOrigin = 'flag' | 'KUBECONFIG' | 'home' | 'in-cluster';

/** What the full client-node KubeConfig offers that is used here (loaded only when needed). */
interface FullKubeConfig {
  loadFromOptions(o: { clusters: Cluster[]; contexts: Context[]; users: User[]; currentContext: string }): void;
  applyToHTTPSOptions(opts: https.RequestOptions): Promise<void>;
}

/**
 * A kubeconfig as client-node's KubeConfig reads it (same entries, same path resolution, same
 * in-cluster defaults) and applies it to a request (CA, client certificate, token, token
 * file, exec plugin, basic auth, impersonation, TLS server name, insecure-skip-tls-verify).
 */
export class KubeConfig {
  clusters: Cluster[] = [];
  contexts: Context[] = [];
  users: User[] = [];
  currentContext = '';
  private readonly execAuth = new ExecAuth();
  private readonly fileAuth = new FileAuth();
  /** One agent per credentials (keep-alive connections are reused; a new client certificate gets a new agent). */
  private agent: { key: string; agent: HttpAgent } | undefined;
  private full: Promise<FullKubeConfig> | undefined;

  loadFromFile(file: string): void {
    const obj = (parseYamlOnce(readFileSync(file, 'utf8')) ?? {}) as Record<string, unknown>;
    this.clusters = newClusters(obj.clusters);
    this.contexts = newContexts(obj.contexts);
    this.users = newUsers(obj.users);
    this.currentContext = typeof obj['current-context'] === 'string' ? obj['current-context'] : '';
    // Relative certificate paths are relative to the file (as client-node and kubectl).
    const abs = (f: string): string => (isAbsolute(f) ? f : join(dirname(file), f));
    for (const c of this.clusters) if (c.caFile) c.caFile = abs(c.caFile);
    for (const u of this.users) {
      if (u.certFile) u.certFile = abs(u.certFile);
      if (u.keyFile) u.keyFile = abs(u.keyFile);
    }
  }

  /** Adds another file's entries (a duplicate name is an error, as client-node); its current context only if this has none. */
  mergeConfig(other: KubeConfig): void {
    if (!this.currentContext) this.currentContext = other.currentContext;
    const add = <T extends { name: string }>(into: T[], from: T[], what: string): void => {
      for (const x of from) {
        if (into.some((y) => y.name === x.name)) throw new Error(`Duplicate ${what}: ${x.name}`);
        into.push(x);
      }
    };
    add(this.clusters, other.clusters, 'cluster');
    add(this.users, other.users, 'user');
    add(this.contexts, other.contexts, 'context');
  }

  /** A pod's configuration: its ServiceAccount's token file and CA, KUBERNETES_SERVICE_HOST/PORT. */
  loadFromCluster(env: NodeJS.ProcessEnv = process.env, saDir = SA_DIR): void {
    const host = env.KUBERNETES_SERVICE_HOST ?? '';
    const port = env.KUBERNETES_SERVICE_PORT ?? '';
    const scheme = port === '80' || port === '8080' || port === '8001' ? 'http' : 'https';
    this.clusters = [{ name: 'inCluster', caFile: join(saDir, 'ca.crt'), server: `${scheme}://${isIPv6(host) ? `[${host}]` : host}:${port}`, skipTLSVerify: false }];
    this.users = [{ name: 'inClusterUser', authProvider: { name: 'tokenFile', config: { tokenFile: join(saDir, 'token') } } }];
    const nsFile = join(saDir, 'namespace');
    const namespace = existsSync(nsFile) ? readFileSync(nsFile, 'utf8') : undefined;
    this.contexts = [{ cluster: 'inCluster', name: 'inClusterContext', user: 'inClusterUser', ...(namespace !== undefined ? { namespace } : {}) }];
    this.currentContext = 'inClusterContext';
  }

  getCurrentContext(): string {
    return this.currentContext;
  }

  private currentContextObject(): Context | undefined {
    return this.contexts.find((c) => c.name === this.currentContext);
  }

  getCurrentCluster(): Cluster | undefined {
    const ctx = this.currentContextObject();
    return ctx && this.clusters.find((c) => c.name === ctx.cluster);
  }

  getCurrentUser(): User | undefined {
    const ctx = this.currentContextObject();
    return ctx && this.users.find((u) => u.name === ctx.user);
  }

  /** Sets the request's TLS options, credentials and agent (as client-node's KubeConfig.applyToHTTPSOptions). */
  async applyToHTTPSOptions(opts: https.RequestOptions): Promise<void> {
    const cluster = this.getCurrentCluster();
    const user = this.getCurrentUser();
    const plain = !user?.authProvider || this.fileAuth.isAuthProvider(user) || this.execAuth.isAuthProvider(user);
    if (cluster?.proxyUrl || !plain) {
      await (this.full ??= this.loadFull()).then((kc) => kc.applyToHTTPSOptions(opts));
      return;
    }
    opts.headers ??= {};
    const headers = opts.headers as Record<string, string>;
    if (user) {
      // Files are read on every request, as client-node does: a rotated CA or certificate is picked up.
      if (cluster?.skipTLSVerify) opts.rejectUnauthorized = false;
      if (cluster?.tlsServerName) opts.servername = cluster.tlsServerName;
      const ca = cluster && fileOrData(cluster.caFile, cluster.caData);
      if (ca) opts.ca = ca;
      const cert = fileOrData(user.certFile, user.certData);
      if (cert) opts.cert = cert;
      const key = fileOrData(user.keyFile, user.keyData);
      if (key) opts.key = key;
      if (user.impersonateUser != null) headers['Impersonate-User'] = user.impersonateUser;
      if (this.execAuth.isAuthProvider(user)) await this.execAuth.applyAuthentication(user, opts);
      else if (this.fileAuth.isAuthProvider(user)) await this.fileAuth.applyAuthentication(user, opts);
      if (user.token) headers.Authorization = `Bearer ${user.token}`;
      if (user.username) opts.auth = `${user.username}:${user.password}`;
    }
    const http1 = cluster?.server.startsWith('http:');
    if (http1 && !cluster?.skipTLSVerify) throw new Error('HTTP protocol is not allowed when skipTLSVerify is not set or false');
    const agentKey = `${cluster?.name}\0${user?.name}\0${String(opts.ca ?? '')}\0${String(opts.cert ?? '')}\0${String(opts.key ?? '')}`;
    if (this.agent?.key !== agentKey) {
      this.agent?.agent.destroy();
      // Keep-alive: list pages, discovery, Lease renewals and status writes reuse connections
      // (a TLS handshake each otherwise: ~130 to list 20,000 objects in pages of 200).
      const agentOptions: https.AgentOptions = { ca: opts.ca, cert: opts.cert, key: opts.key, servername: opts.servername, keepAlive: true };
      if (opts.rejectUnauthorized !== undefined) agentOptions.rejectUnauthorized = opts.rejectUnauthorized;
      this.agent = { key: agentKey, agent: http1 ? new http.Agent(agentOptions) : new SharedTlsAgent(agentOptions) };
    }
    opts.agent = this.agent.agent;
  }

  /** client-node's whole KubeConfig with the same entries (azure, gcp and oidc auth providers, proxies). */
  private async loadFull(): Promise<FullKubeConfig> {
    const { KubeConfig: Full } = await import('@kubernetes/client-node');
    const kc = new Full() as unknown as FullKubeConfig;
    kc.loadFromOptions({ clusters: this.clusters, contexts: this.contexts, users: this.users, currentContext: this.currentContext });
    return kc;
  }
}

/**
 * YAML parsed with the `yaml` package, which is then let go. The parser is needed only for a
 * kubeconfig file (in a pod, in-cluster, never), read once at start. Its modules that this
 * call loaded are taken out of require's cache, so that the first sync's compaction frees
 * their code and feedback: measured, the agent kept 1.3-1.6 MiB of RSS (heap 0.8, JIT code
 * 0.3) for a parser it never called again (docs/kubernetes-api.md). Were `yaml` needed again
 * it would load again.
 */
function parseYamlOnce(text: string): unknown {
  const req = createRequire(import.meta.url);
  const had = new Set(Object.keys(req.cache));
  const dir = req.resolve('yaml').replace(/dist\/index\.js$/, '');
  try {
    return (req('yaml') as { parse: typeof ParseYaml }).parse(text);
  } finally {
    for (const k of Object.keys(req.cache)) if (!had.has(k) && k.startsWith(dir)) delete req.cache[k];
  }
}

/**
 * An HTTPS agent whose connections share one TLS context (CA, client certificate and key),
 * made at its first connection, instead of one made from the options for each connection
 * (a watch per kind holds one each). A new certificate gets a new agent (agentKey).
 */
class SharedTlsAgent extends https.Agent {
  private context: SecureContext | undefined;

  override createConnection(options: ConnectionOptions, callback?: (err: Error | null, socket: Duplex) => void): Duplex {
    const secureContext = (this.context ??= createSecureContext(options));
    const create = super.createConnection as unknown as (o: ConnectionOptions, cb?: (err: Error | null, socket: Duplex) => void) => Duplex;
    return create.call(this, { ...options, secureContext }, callback);
  }
}

function fileOrData(file: string | undefined, data: string | undefined): Buffer | undefined {
  if (file) return readFileSync(file);
  if (data) return Buffer.from(data, 'base64');
  return undefined;
}

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
        if (i === 0) { kc.loadFromFile(f); return; }
        const one = new KubeConfig();
        one.loadFromFile(f);
        kc.mergeConfig(one);
      });
      origin = 'KUBECONFIG';
    } else if (existsSync(join(env.HOME ?? homedir(), '.kube', 'config'))) {
      kc.loadFromFile(join(env.HOME ?? homedir(), '.kube', 'config'));
      origin = 'home';
    } else if (env.KUBERNETES_SERVICE_HOST && existsSync(join(SA_DIR, 'token'))) {
      kc.loadFromCluster(env);
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
 * Requests to the API server with the configuration's credentials (the CA, client
 * certificate, token or exec plugin applied to every request: tokens are re-read).
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
  async open(path: string, signal?: AbortSignal): Promise<IncomingMessage> {
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
