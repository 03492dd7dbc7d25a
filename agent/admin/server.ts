/**
 * The agent's admin API: HTTP with JSON bodies on a Unix socket (mode 0600, in a
 * directory the agent creates 0700). Routes are registered by the agent; each handler
 * returns a JSON-able value (or throws a KernwayError, which becomes an error body with
 * its code).
 *
 *   const admin = new AdminServer('/run/kernway/admin.sock', { log });
 *   admin.route('GET', '/v1/services', () => readKernelServices(...));
 *   await admin.listen();
 *   ...
 *   await admin.close();
 *
 * Socket path rules (at listen): a path that exists and is not a socket is refused
 * (KW_ADMIN_SOCKET_PATH); a socket another process is listening on is refused
 * (KW_ADMIN_SOCKET_IN_USE); a stale socket (nobody listening) is removed.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
// node:http as its CommonJS module: an ESM import of it reads its lazy `WebSocket` getters, which load undici and node:http2 (~13 MiB of RSS in an empty process).
const { createServer } = process.getBuiltinModule('node:http');
import { connect } from 'node:net';
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { KernwayError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';

export type AdminMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface AdminRequest {
  method: AdminMethod;
  /** The path without the query string. */
  path: string;
  query: URLSearchParams;
  /** The parsed JSON body (POST/PUT), or undefined. */
  body: unknown;
}

/** Returns the JSON response body (status 200). Throw a KernwayError for an error answer. */
export type AdminHandler = (req: AdminRequest) => unknown;

/** The error body of every non-2xx answer. */
export interface AdminErrorBody { error: { code: string; message: string } }

/** Maps error codes to HTTP statuses; anything else is 500. */
const STATUS: Record<string, number> = {
  KW_INVALID_ARGUMENT: 400,
  KW_ADMIN_BAD_REQUEST: 400,
  KW_ADMIN_NOT_FOUND: 404,
  KW_NOT_FOUND: 404,
  KW_ADMIN_METHOD: 405,
  KW_NOT_READY: 503,
};

const MAX_BODY = 1 << 20;

export class AdminServer {
  readonly socketPath: string;
  private readonly log: Logger | undefined;
  private readonly routes = new Map<string, Map<AdminMethod, AdminHandler>>();
  private server: Server | undefined;

  constructor(socketPath: string, opts: { log?: Logger } = {}) {
    if (typeof socketPath !== 'string' || socketPath === '') throw new KernwayError('KW_INVALID_ARGUMENT', '--admin-socket: expected a path');
    this.socketPath = socketPath;
    this.log = opts.log;
    this.route('GET', '/v1/ping', () => ({ ok: true, pid: process.pid }));
  }

  /** Register a handler for `method path` (exact path match). Replaces an earlier one. */
  route(method: AdminMethod, path: string, handler: AdminHandler): this {
    if (!path.startsWith('/')) throw new KernwayError('KW_INVALID_ARGUMENT', `admin route ${path}: must start with /`);
    let byMethod = this.routes.get(path);
    if (!byMethod) this.routes.set(path, (byMethod = new Map()));
    byMethod.set(method, handler);
    return this;
  }

  /** The registered routes, as 'METHOD /path' (for `kernway status` and tests). */
  listRoutes(): string[] {
    return [...this.routes].flatMap(([p, m]) => [...m.keys()].map((k) => `${k} ${p}`)).sort();
  }

  async listen(): Promise<void> {
    if (this.server) return;
    await prepareSocketPath(this.socketPath);
    const server = createServer((req, res) => { void this.handle(req, res); });
    server.keepAliveTimeout = 1000;
    // The socket is created with the umask in force: make it owner-only from the first
    // instant (bind happens inside listen(), synchronously), then chmod to be sure.
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.socketPath, () => { server.off('error', reject); resolve(); });
      });
    } catch (e) {
      throw new KernwayError('KW_ADMIN_LISTEN', `admin socket ${this.socketPath} (--admin-socket): cannot listen: ${errorMessage(e)}`, { path: this.socketPath }, { cause: e });
    } finally {
      process.umask(oldMask);
    }
    chmodSync(this.socketPath, 0o600);
    server.on('error', (e) => this.log?.error({ err: errorMessage(e), socket: this.socketPath }, 'admin server error'));
    this.server = server;
    this.log?.info({ socket: this.socketPath }, 'admin API listening');
  }

  /** Stop listening and remove the socket. Idempotent. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    try { unlinkSync(this.socketPath); } catch { /* already gone */ }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const method = (req.method ?? 'GET') as AdminMethod;
    try {
      const byMethod = this.routes.get(url.pathname);
      if (!byMethod) throw new KernwayError('KW_ADMIN_NOT_FOUND', `no admin route ${url.pathname} (routes: ${this.listRoutes().join(', ')})`);
      const handler = byMethod.get(method);
      if (!handler) throw new KernwayError('KW_ADMIN_METHOD', `${method} is not allowed on ${url.pathname} (allowed: ${[...byMethod.keys()].join(', ')})`);
      const body = method === 'POST' || method === 'PUT' ? await readJson(req) : undefined;
      const result = await handler({ method, path: url.pathname, query: url.searchParams, body });
      send(res, 200, result === undefined ? { ok: true } : result);
    } catch (e) {
      const code = e instanceof KernwayError ? e.code : 'KW_INTERNAL';
      const status = STATUS[code] ?? 500;
      if (status >= 500) this.log?.error({ err: errorMessage(e), path: url.pathname, code }, 'admin request failed');
      send(res, status, { error: { code, message: errorMessage(e) } } satisfies AdminErrorBody);
    }
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  let text: string;
  try {
    text = JSON.stringify(body);
  } catch (e) {
    status = 500;
    text = JSON.stringify({ error: { code: 'KW_INTERNAL', message: `response not serialisable: ${errorMessage(e)}` } });
  }
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) { reject(new KernwayError('KW_ADMIN_BAD_REQUEST', `request body over ${MAX_BODY} bytes`)); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => {
      if (size === 0) { resolve(undefined); return; }
      try { resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))); } catch (e) { reject(new KernwayError('KW_ADMIN_BAD_REQUEST', `request body is not JSON: ${errorMessage(e)}`)); }
    });
    req.on('error', reject);
  });
}

/**
 * Make `path` usable for a new socket: parent directory created 0700 when missing; an
 * existing socket nobody listens on removed; anything else in the way refused.
 */
export async function prepareSocketPath(path: string): Promise<void> {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new KernwayError('KW_ADMIN_SOCKET_PATH', `admin socket ${path} (--admin-socket): cannot create its directory ${dir}: ${errorMessage(e)}`, { path });
  }
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new KernwayError('KW_ADMIN_SOCKET_PATH', `admin socket ${path} (--admin-socket): ${errorMessage(e)}`, { path });
  }
  if (!st.isSocket()) {
    throw new KernwayError('KW_ADMIN_SOCKET_PATH', `admin socket ${path} (--admin-socket): the path exists and is not a socket; refusing to replace it (remove it, or choose another path)`, { path });
  }
  if (await someoneListens(path)) {
    throw new KernwayError('KW_ADMIN_SOCKET_IN_USE', `admin socket ${path} (--admin-socket): another process is listening on it (is an agent already running?)`, { path });
  }
  unlinkSync(path); // stale: left by an agent that did not exit cleanly
}

function someoneListens(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (v: boolean) => { s.destroy(); resolve(v); };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}
