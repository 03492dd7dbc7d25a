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
import type { Agent as HttpAgent } from 'node:http';
import type { ClientHttp2Session } from 'node:http2';
import type { AgentOptions, RequestOptions } from 'node:https';
import { isIP, isIPv6 } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import { connect as tlsConnect, createSecureContext, type ConnectionOptions, type SecureContext } from 'node:tls';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { newClusters, newContexts, newUsers, type Cluster, type Context, type User } from '@kubernetes/client-node/dist/config_types.js';
import { ExecAuth } from '@kubernetes/client-node/dist/exec_auth.js';
import { FileAuth } from '@kubernetes/client-node/dist/file_auth.js';
import { createRequire } from 'node:module';
import type { parse as ParseYaml } from 'yaml';
import { KernwayError, errorMessage } from '../common/errors.js';

// (node:http as its CommonJS module: see agent/admin/server.ts.) node:https and node:http2
// are taken when first needed: an API server speaking HTTP/2 never needs node:https.
const http = process.getBuiltinModule('node:http');
const https = (): typeof import('node:https') => process.getBuiltinModule('node:https');
const http2 = (): typeof import('node:http2') => process.getBuiltinModule('node:http2');

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** How the configuration was found, for logs and status. */
export type KubeConfigOrigin = 'flag' | 'KUBECONFIG' | 'home' | 'in-cluster';

/** What the full client-node KubeConfig offers that is used here (loaded only when needed). */
interface FullKubeConfig {
  loadFromOptions(o: { clusters: Cluster[]; contexts: Context[]; users: User[]; currentContext: string }): void;
  applyToHTTPSOptions(opts: RequestOptions): Promise<void>;
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
  /** The connections of one set of credentials (reused; a new client certificate gets new ones). */
  private conns: { creds: Credentials; conns: ApiConnections } | undefined;
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
  async applyToHTTPSOptions(opts: RequestOptions): Promise<void> {
    const conns = await this.applyToRequest(opts);
    if (conns) opts.agent = conns.http1Agent();
  }

  /**
   * Sets the request's TLS options and credentials; returns the connections to use for the
   * current cluster and credentials (HTTP/2 when the server offers it), or undefined when the
   * options are to be used as they are (client-node's full KubeConfig set them and an agent).
   */
  async applyToRequest(opts: RequestOptions): Promise<ApiConnections | undefined> {
    const cluster = this.getCurrentCluster();
    const user = this.getCurrentUser();
    const plain = !user?.authProvider || this.fileAuth.isAuthProvider(user) || this.execAuth.isAuthProvider(user);
    if (cluster?.proxyUrl || !plain) {
      await (this.full ??= this.loadFull()).then((kc) => kc.applyToHTTPSOptions(opts));
      return undefined;
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
    if (!cluster?.server) throw new Error(`the context ${JSON.stringify(this.currentContext)} has no cluster with a server`);
    // Compared field by field, the files' bytes with Buffer.equals: every request (the Lease
    // renewal every 2 s) passes here, and a key string of the PEM texts cost ~3.6 KB per request (sampling heap profiler).
    const creds: Credentials = { server: cluster.server, user: user?.name, ca: opts.ca, cert: opts.cert, key: opts.key, servername: opts.servername, rejectUnauthorized: opts.rejectUnauthorized };
    if (!this.conns || !sameCredentials(this.conns.creds, creds)) {
      this.conns?.conns.close();
      const tls: TlsOptions = { ca: opts.ca, cert: opts.cert, key: opts.key, servername: opts.servername };
      if (opts.rejectUnauthorized !== undefined) tls.rejectUnauthorized = opts.rejectUnauthorized;
      this.conns = { creds, conns: new ApiConnections(new URL(cluster.server), tls, http1 === true) };
    }
    return this.conns.conns;
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

/** What a set of connections was made for: the cluster, the user, the TLS material as read. */
interface Credentials {
  server: string;
  user: string | undefined;
  ca: RequestOptions['ca'];
  cert: RequestOptions['cert'];
  key: RequestOptions['key'];
  servername: string | undefined;
  rejectUnauthorized: boolean | undefined;
}

/** Whether two reads of the credentials are the same (TLS material compared by content). */
function sameCredentials(a: Credentials, b: Credentials): boolean {
  return a.server === b.server && a.user === b.user && a.servername === b.servername && a.rejectUnauthorized === b.rejectUnauthorized
    && sameTls(a.ca, b.ca) && sameTls(a.cert, b.cert) && sameTls(a.key, b.key);
}

function sameTls(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  // Anything else (a string, an array of PEMs, one side missing): compared as text.
  return a !== undefined && b !== undefined && String(a) === String(b);
}

/** The TLS options of one cluster and set of credentials. */
type TlsOptions = Pick<ConnectionOptions, 'ca' | 'cert' | 'key' | 'servername' | 'rejectUnauthorized'>;

/** How often an HTTP/2 connection with no traffic is checked with a PING, and how long its answer may take (client-go's ReadIdleTimeout and PingTimeout). */
export const H2_HEALTH = { idleMs: 30_000, pingTimeoutMs: 15_000 };

/** An HTTP/2 stream's receive window (the connection's is four times as large). */
const H2_WINDOW = 1 << 20;

/**
 * The connections to the API server of one cluster and set of credentials. HTTP/2 when the
 * server offers it (ALPN h2, as kube-apiserver does; client-go does the same): one TLS
 * connection, every list, watch and write a stream of it. Measured with ten watches
 * (docs/kubernetes-api.md): each HTTP/1.1 connection a watch holds costs ~90 KB of malloc
 * (OpenSSL's SSL object and record buffers, Node's TLSWrap and its buffers) and ~50 KB of heap
 * (socket, parser, request and response objects); a stream costs a few KB. Else (a server
 * without h2, or plain http) HTTP/1.1 with keep-alive connections, a watch holding one each.
 *
 * Every connection shares one TLS context (the CA, client certificate and key parsed once).
 * A connection that fails, is closed or gets a GOAWAY is forgotten: the next request opens
 * another. An HTTP/2 connection silent for H2_HEALTH.idleMs is sent a PING; no answer within
 * H2_HEALTH.pingTimeoutMs ends it (a half-open TCP connection), and its streams with it.
 */
export class ApiConnections {
  private context: SecureContext | undefined;
  private h1: HttpAgent | undefined;
  /** The HTTP/2 session, or the connection being made; undefined: none open. */
  private h2: Promise<ClientHttp2Session | undefined> | undefined;
  private session: ClientHttp2Session | undefined;
  /** Streams open on each session (a session keeps the process alive only while one is). */
  private readonly streams = new WeakMap<ClientHttp2Session, number>();
  /** HTTP/1.1 only: plain http, or the server did not choose h2 (learned at the first connection). */
  private http1Only: boolean;
  private closed = false;
  /** Connections made (TLS handshakes): tests and status. */
  connections = 0;

  constructor(private readonly origin: URL, private readonly tls: TlsOptions, plainHttp = false) {
    this.http1Only = plainHttp;
  }

  /** The HTTP/1.1 agent (keep-alive; made on first use). */
  http1Agent(): HttpAgent {
    if (!this.h1) {
      // Keep-alive: list pages, discovery, Lease renewals and status writes reuse connections
      // (a TLS handshake each otherwise: ~130 to list 20,000 objects in pages of 200).
      const o: AgentOptions = { ...this.tls, keepAlive: true };
      this.h1 = this.origin.protocol === 'http:' ? new http.Agent(o) : new (sharedTlsAgent())(o, () => this.secureContext(), () => this.connections++);
    }
    return this.h1;
  }

  /**
   * The HTTP/2 session to send a request on, or undefined when requests go over HTTP/1.1;
   * rejects with Superseded once these connections were closed for new credentials.
   */
  async http2Session(): Promise<ClientHttp2Session | undefined> {
    if (this.closed) throw new Superseded();
    if (this.http1Only) return undefined;
    const p = (this.h2 ??= this.connect());
    try {
      return await p;
    } catch (e) {
      if (this.h2 === p) this.h2 = undefined;
      throw e;
    }
  }

  /** A stream was opened on the session (it keeps the process alive until the stream closes). */
  opened(session: ClientHttp2Session, onClose: (cb: () => void) => void): void {
    const n = this.streams.get(session) ?? 0;
    this.streams.set(session, n + 1);
    if (n === 0) session.ref();
    onClose(() => {
      const left = (this.streams.get(session) ?? 1) - 1;
      this.streams.set(session, left);
      if (left === 0 && !session.destroyed) session.unref();
    });
  }

  /** The session can take no new stream (GOAWAY, closed, destroyed): the next request opens another. */
  forget(session: ClientHttp2Session): void {
    if (this.session !== session) return;
    this.session = undefined;
    this.h2 = undefined;
  }

  /** Closes the connections (credentials changed): open streams finish on them. */
  close(): void {
    this.closed = true;
    this.session?.close();
    this.h1?.destroy();
  }

  private secureContext(): SecureContext {
    return (this.context ??= createSecureContext(this.tls));
  }

  /** A TLS connection offering h2 and http/1.1; an HTTP/2 session on it if the server chose h2. */
  private connect(): Promise<ClientHttp2Session | undefined> {
    const host = this.origin.hostname.replace(/^\[|\]$/g, '');
    const servername = this.tls.servername ?? (isIP(host) ? undefined : host);
    return new Promise((resolve, reject) => {
      this.connections++;
      const socket = tlsConnect({ host, port: Number(this.origin.port || 443), ...(servername ? { servername } : {}), secureContext: this.secureContext(),
        rejectUnauthorized: this.tls.rejectUnauthorized !== false, ALPNProtocols: ['h2', 'http/1.1'] });
      const fail = (e: Error): void => { socket.destroy(); reject(e); };
      socket.once('error', fail);
      socket.setTimeout(30_000, () => fail(new Error(`connecting to ${this.origin.host}: no TLS handshake within 30 s`)));
      socket.once('secureConnect', () => {
        socket.removeListener('error', fail);
        socket.setTimeout(0);
        if (socket.alpnProtocol !== 'h2' || this.closed) {
          // The server speaks HTTP/1.1 only: every request goes through the keep-alive agent from now on.
          if (!this.closed) this.http1Only = true;
          socket.destroy();
          resolve(undefined);
          return;
        }
        // Windows of 1 MiB per stream and 4 MiB for the connection: with HTTP/2's 64 KiB the
        // API server waits for a WINDOW_UPDATE after each 64 KiB of a list page while the agent
        // parses another (measured: every kind listed 3x slower than over HTTP/1.1, whose
        // connections buffer in the kernel); with these, as fast or faster. Only what arrives
        // before it is read is held (a first sync's pages), not an idle agent's memory.
        const session = http2().connect(this.origin.origin, { createConnection: () => socket, settings: { enablePush: false, initialWindowSize: H2_WINDOW } });
        session.once('connect', () => { if (!session.destroyed) session.setLocalWindowSize(4 * H2_WINDOW); });
        this.session = session;
        // Errors reach the streams (each request sees its own); the session only has to be forgotten.
        session.on('error', () => this.forget(session));
        session.on('goaway', () => this.forget(session));
        session.on('close', () => this.forget(session));
        session.setTimeout(H2_HEALTH.idleMs, () => this.check(session));
        session.unref();
        resolve(session);
      });
    });
  }

  /** No traffic for a while: a PING must be answered, else the connection is dead. */
  private check(session: ClientHttp2Session): void {
    if (session.destroyed || session.closed) return;
    const dead = (why: string): void => { this.forget(session); session.destroy(new Error(`the API server's connection ${why}`)); };
    const timer = setTimeout(() => dead(`did not answer a PING within ${H2_HEALTH.pingTimeoutMs} ms`), H2_HEALTH.pingTimeoutMs);
    timer.unref();
    const sent = session.ping((err) => { clearTimeout(timer); if (err && !session.destroyed) dead(`failed a PING (${errorMessage(err)})`); });
    if (!sent) { clearTimeout(timer); dead('could not send a PING'); }
  }
}

/** Connections closed because the credentials changed: the request is made again with the new ones. */
class Superseded extends Error {}

type SharedTlsAgentClass = new (o: AgentOptions, context: () => SecureContext, connected: () => void) => HttpAgent;
let SharedTlsAgent: SharedTlsAgentClass | undefined;

/**
 * An HTTPS agent whose connections share one TLS context (CA, client certificate and key),
 * instead of one made from the options for each connection (with HTTP/1.1 a watch per kind
 * holds one each). Defined on first use: node:https is loaded only for a server without h2.
 */
function sharedTlsAgent(): SharedTlsAgentClass {
  return (SharedTlsAgent ??= class extends https().Agent {
    constructor(o: AgentOptions, private readonly context: () => SecureContext, private readonly connected: () => void) {
      super(o);
    }

    override createConnection(options: ConnectionOptions, callback?: (err: Error | null, socket: Duplex) => void): Duplex {
      this.connected();
      const create = super.createConnection as unknown as (o: ConnectionOptions, cb?: (err: Error | null, socket: Duplex) => void) => Duplex;
      return create.call(this, { ...options, secureContext: this.context() }, callback);
    }
  });
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
 * A response body as it arrives (an HTTP/1.1 response or an HTTP/2 stream), and whether it
 * arrived whole: an HTTP/2 stream whose connection was cut ends as if the server had ended it
 * (with the RST_STREAM code CANCEL), so `complete` tells the two apart, as IncomingMessage's.
 */
export type KubeBody = Readable & { readonly complete: boolean };

/** A request's answer: its status and its body. */
interface Answer { status: number; body: KubeBody }

/**
 * Requests to the API server with the configuration's credentials (the CA, client
 * certificate, token or exec plugin applied to every request: tokens are re-read), over
 * HTTP/2 when the server offers it (ApiConnections).
 */
export class KubeClient {
  /**
   * How the last request went (`kernway status`): 'HTTP/2' or 'HTTP/1.1', with JSON bodies
   * (the only encoding asked for: no protobuf); undefined before the first request.
   */
  protocol: 'HTTP/2' | 'HTTP/1.1' | undefined;

  constructor(readonly loaded: LoadedKubeConfig) {}

  get server(): string {
    return this.loaded.server;
  }

  /** Sends a request; resolves with the status and the body stream once the answer's head is in. */
  private async send(method: string, path: string, body: Buffer | undefined, contentType: string, signal: AbortSignal | undefined): Promise<Answer> {
    let opts: RequestOptions = {};
    let conns: ApiConnections | undefined;
    const url = new URL(this.server + path);
    for (let attempt = 0; ; attempt++) {
      opts = { headers: { Accept: 'application/json' } };
      conns = await this.loaded.config.applyToRequest(opts);
      const headers = opts.headers as Record<string, string>;
      if (body) { headers['Content-Type'] = contentType; headers['Content-Length'] = String(body.length); }
      let session: ClientHttp2Session | undefined;
      try {
        session = conns && await abortable(conns.http2Session(), signal);
        if (!session) break;
        this.protocol = 'HTTP/2';
        return await sendH2(conns!, session, method, url, headers, opts.auth, body, signal);
      } catch (e) {
        // Credentials changed meanwhile, or the session ended (GOAWAY, closed) before it took
        // the stream: once more, with the current credentials on a current connection.
        if (attempt === 0 && (e instanceof Superseded || (session && (session.closed || session.destroyed)))) {
          if (session) conns!.forget(session);
          continue;
        }
        throw e;
      }
    }
    const mod = url.protocol === 'http:' ? http : https();
    this.protocol = 'HTTP/1.1';
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { ...opts, method, ...(conns ? { agent: conns.http1Agent() } : {}), ...(signal ? { signal } : {}) },
        (res) => resolve({ status: res.statusCode ?? 0, body: res }));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Opens a GET whose answer is 200 (its body as it arrives); other statuses reject with KubeHttpError. */
  async open(path: string, signal?: AbortSignal): Promise<KubeBody> {
    const a = await this.send('GET', path, undefined, '', signal);
    if (a.status === 200) return a.body;
    throw httpError('GET', path, a.status, await text(a.body, 64));
  }

  /**
   * One JSON request with any method (the elected agent's writes: Lease, status, waypoints);
   * resolves with the parsed body, rejects with KubeHttpError (its status) on >= 400.
   */
  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json', timeoutMs = 30_000): Promise<T> {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return this.timed(`${method} ${path}`, undefined, timeoutMs, async (signal) => {
      const a = await this.send(method, path, data, contentType, signal);
      const t = await text(a.body);
      if (a.status >= 400) throw httpError(method, path, a.status, t);
      return (t ? JSON.parse(t) : {}) as T;
    });
  }

  /** GET as JSON. */
  async get<T>(path: string, signal?: AbortSignal, timeoutMs = 60_000): Promise<T> {
    return this.timed(`GET ${path}`, signal, timeoutMs, async (s) => JSON.parse(await text(await this.open(path, s))) as T);
  }

  /** Runs `fn` with a signal aborted by the caller's or after timeoutMs (then rejects with "no answer within"). */
  private async timed<T>(what: string, signal: AbortSignal | undefined, timeoutMs: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ctl = new AbortController();
    const abort = (): void => ctl.abort();
    signal?.addEventListener('abort', abort, { once: true });
    const timer = setTimeout(() => ctl.abort(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
    try {
      // The deadline holds whatever `fn` waits for: an abort rejects here even if `fn` never settles.
      return await Promise.race([fn(ctl.signal), new Promise<never>((_, reject) => {
        ctl.signal.addEventListener('abort', () => reject(ctl.signal.reason instanceof Error ? ctl.signal.reason : new Error(`${what}: aborted`)), { once: true });
      })]);
    } catch (e) {
      if (ctl.signal.aborted && ctl.signal.reason instanceof Error) throw ctl.signal.reason;
      throw e;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
    }
  }
}

/** A request as a stream of the HTTP/2 session (header names in lower case, as HTTP/2 has them). */
function sendH2(conns: ApiConnections, session: ClientHttp2Session, method: string, url: URL, headers: Record<string, string>,
  auth: string | null | undefined, body: Buffer | undefined, signal: AbortSignal | undefined): Promise<Answer> {
  const h: Record<string, string> = { ':method': method, ':path': url.pathname + url.search };
  for (const [k, v] of Object.entries(headers)) h[k.toLowerCase()] = v;
  if (auth) h.authorization = `Basic ${Buffer.from(auth).toString('base64')}`;
  return new Promise((resolve, reject) => {
    // The signal is not handed to http2: its abort listener binds an AsyncResource (with a
    // deprecation wrapper) per request; the stream is destroyed here as http2 would.
    const stream = session.request(h, { endStream: body === undefined });
    if (signal) {
      const onAbort = (): void => { stream.destroy(abortError(signal)); };
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        stream.once('close', () => signal.removeEventListener('abort', onAbort));
      }
    }
    conns.opened(session, (cb) => stream.once('close', cb));
    // Until the head is in, an error rejects; afterwards it reaches whoever reads the body.
    stream.on('error', reject);
    const answer = Object.assign(stream, { complete: false });
    // The server's END_STREAM ends it with no RST_STREAM code; a cut connection with CANCEL.
    stream.once('end', () => { answer.complete = !stream.rstCode; });
    stream.once('response', (head) => resolve({ status: Number(head[':status']), body: answer }));
    // A stream waiting for its head when the connection is cut (the API server killed or
    // restarted) or the session destroyed only closes: no 'error', no 'response', and an
    // abort afterwards does nothing. Without this the request would wait forever (a
    // reflector's list, a Lease renewal: the agent stopped following the API, and stopping
    // it hung). After the head, a close is the body reader's to see.
    stream.once('close', () => reject(new Error(`${method} ${url.pathname}: the connection to the API server was cut before the answer came`)));
    if (body) stream.end(body);
  });
}

/** What an aborted request fails with (as http2's own abort: an AbortError, the signal's reason its cause). */
function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', { cause: signal.reason }), { name: 'AbortError', code: 'ABORT_ERR' });
}

/**
 * A body as text (at most `maxChunks` chunks of it: an error's); a body cut short rejects.
 * Read with its events, not an async iterator (whose listeners and wrappers cost a few KB per
 * request: a Lease renewal every 2 s).
 */
function text(body: KubeBody, maxChunks = Infinity): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    body.on('data', (c: Buffer) => { if (chunks.length < maxChunks) chunks.push(c); });
    body.once('error', reject);
    const done = (): void => {
      if (body.complete) resolve(Buffer.concat(chunks).toString('utf8'));
      else reject(new Error('the connection was cut before the answer was complete'));
    };
    body.once('end', done);
    // Closed without an end (a connection cut, a stream reset): incomplete.
    body.once('close', done);
  });
}

/** A promise that rejects as soon as the signal aborts (what it waits for carries on, for others). */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => { signal.removeEventListener('abort', onAbort); resolve(v); }, (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e as Error); });
  });
}
