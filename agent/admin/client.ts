/**
 * The client side of the admin API, for the CLI (`kernway services`, `status`, ...).
 *
 *   const services = await adminRequest<ServiceView[]>(socketPath, '/v1/services');
 *
 * Errors (all KernwayError):
 *   KW_AGENT_UNREACHABLE  no agent on that socket (missing, refused, permission denied)
 *   KW_AGENT_TIMEOUT      the agent did not answer in time
 *   KW_ADMIN_BAD_RESPONSE the answer is not JSON, or (with `shape`) JSON of the wrong shape
 *   <the agent's code>    the agent answered with an error (its code and message)
 */
// (node:http as its CommonJS module: see agent/admin/server.ts.)
const { request } = process.getBuiltinModule('node:http');
import { KernwayError, codeOf, errorMessage } from '../../common/errors.js';
import type { AdminErrorBody, AdminMethod } from './server.js';

/** The agent's default admin socket on a node. */
export const DEFAULT_ADMIN_SOCKET = '/run/kernway/admin.sock';

export interface AdminRequestOptions {
  method?: AdminMethod;
  /** JSON request body (POST/PUT). */
  body?: unknown;
  /** Default 5000 ms. */
  timeoutMs?: number;
  /**
   * Checks a successful answer's shape before it is handed back: returns what is wrong
   * (e.g. "field 'problems' is missing"), or undefined when it is fine. Build one with
   * shapeOf()/arrayOf().
   */
  shape?: ShapeCheck;
}

/** Says what is wrong with a JSON value, or undefined when it has the expected shape. */
export type ShapeCheck = (body: unknown) => string | undefined;

type FieldType = 'string' | 'number' | 'boolean' | 'array' | 'object';

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function hasType(v: unknown, t: FieldType): boolean {
  return t === 'array' ? Array.isArray(v) : t === 'object' ? v !== null && typeof v === 'object' && !Array.isArray(v) : typeof v === t;
}

/** An object whose named fields exist with these JSON types (other fields are not checked). */
export function shapeOf(fields: Readonly<Record<string, FieldType>>): ShapeCheck {
  return (body) => {
    if (!hasType(body, 'object')) return `expected an object, got ${typeName(body)}`;
    const o = body as Record<string, unknown>;
    for (const [name, t] of Object.entries(fields)) {
      if (!(name in o)) return `field '${name}' is missing`;
      if (!hasType(o[name], t)) return `field '${name}' should be ${t === 'array' || t === 'object' ? `an ${t}` : `a ${t}`}, got ${typeName(o[name])}`;
    }
    return undefined;
  };
}

/** An array each of whose items passes `item`. */
export function arrayOf(item: ShapeCheck): ShapeCheck {
  return (body) => {
    if (!Array.isArray(body)) return `expected an array, got ${typeName(body)}`;
    for (let i = 0; i < body.length; i++) {
      const wrong = item(body[i]);
      if (wrong !== undefined) return `item ${i}: ${wrong}`;
    }
    return undefined;
  };
}

export function adminRequest<T = unknown>(socketPath: string, path: string, opts: AdminRequestOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  return new Promise<T>((resolve, reject) => {
    const req = request({
      socketPath, path, method: opts.method ?? 'GET', timeout: timeoutMs,
      headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e) => reject(unreachable(socketPath, e as NodeJS.ErrnoException)));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text === '' ? undefined : JSON.parse(text);
        } catch (e) {
          reject(new KernwayError('KW_ADMIN_BAD_RESPONSE', `the agent at ${socketPath} answered ${path} with something that is not JSON (${errorMessage(e)}): ${text.slice(0, 120)}`));
          return;
        }
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) {
          const wrong = opts.shape?.(body);
          if (wrong !== undefined) {
            reject(new KernwayError('KW_ADMIN_BAD_RESPONSE', `the agent at ${socketPath} answered ${path} with JSON of the wrong shape: ${wrong} ` +
              `(is that socket a kernway agent of the same version?): ${text.slice(0, 120)}`, { socket: socketPath, path }));
            return;
          }
          resolve(body as T);
          return;
        }
        const err = (body as Partial<AdminErrorBody> | undefined)?.error;
        reject(new KernwayError(codeOf(err?.code) ?? 'KW_ADMIN_ERROR', err?.message ?? `the agent at ${socketPath} answered ${path} with HTTP ${status}`, { status, path }));
      });
    });
    req.on('timeout', () => req.destroy(new KernwayError('KW_AGENT_TIMEOUT', `the agent at ${socketPath} did not answer ${path} within ${timeoutMs} ms`, { socket: socketPath })));
    req.on('error', (e: NodeJS.ErrnoException) => reject(e instanceof KernwayError ? e : unreachable(socketPath, e)));
    req.end(payload);
  });
}

function unreachable(socketPath: string, e: NodeJS.ErrnoException): KernwayError {
  const why = e.code === 'ENOENT' ? 'no socket there'
    : e.code === 'ECONNREFUSED' ? 'nothing listening (a stale socket)'
      : e.code === 'EACCES' || e.code === 'EPERM' ? 'permission denied (the socket is mode 0600: run as the agent\'s user, usually root)'
        : e.code ?? e.message;
  return new KernwayError('KW_AGENT_UNREACHABLE',
    `cannot reach the kernway agent at ${socketPath}: ${why}. Is \`kernway agent\` running? (--admin-socket PATH selects another socket)`,
    { socket: socketPath, errno: e.code }, { cause: e });
}
