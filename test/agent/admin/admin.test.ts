/** The admin API on a real Unix socket: permissions, path safety, routes, errors, and the client's errors. */
import { mkdirSync, statSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AdminServer } from '../../../agent/admin/server.js';
import { adminRequest, arrayOf, shapeOf } from '../../../agent/admin/client.js';
import { runKernway } from '../../fixtures/cli.js';
import { KernwayError } from '../../../common/errors.js';
import { tempDir } from '../../sources/helpers.js';

let dir: string;
let cleanup: () => void;
const servers: AdminServer[] = [];
beforeEach(() => ({ dir, cleanup } = tempDir('kw-admin-')));
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  cleanup();
});

/** A stale socket, as a killed agent leaves it: a process binds it and dies by SIGKILL. */
function makeStale(path: string): void {
  spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  expect(statSync(path).isSocket()).toBe(true);
}

function server(path: string): AdminServer {
  const s = new AdminServer(path);
  servers.push(s);
  return s;
}

describe('AdminServer', () => {
  it('listens on a socket of mode 0600 in a directory it creates 0700, and serves routes as JSON', async () => {
    const path = join(dir, 'run/kernway/admin.sock');
    const s = server(path);
    s.route('GET', '/v1/services', (req) => [{ frontend: '10.96.0.10:80/TCP', q: req.query.get('x') }]);
    s.route('POST', '/v1/echo', (req) => ({ got: req.body }));
    await s.listen();
    expect(statSync(path).isSocket()).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'run/kernway')).mode & 0o777).toBe(0o700);
    expect(await adminRequest(path, '/v1/services?x=1')).toEqual([{ frontend: '10.96.0.10:80/TCP', q: '1' }]);
    expect(await adminRequest(path, '/v1/echo', { method: 'POST', body: { a: [1, 2] } })).toEqual({ got: { a: [1, 2] } });
    expect(await adminRequest(path, '/v1/ping')).toMatchObject({ ok: true, pid: process.pid });
    expect(s.listRoutes()).toEqual(['GET /v1/ping', 'GET /v1/services', 'POST /v1/echo']);
  });

  it('answers unknown routes, wrong methods and failing handlers with coded errors', async () => {
    const path = join(dir, 'admin.sock');
    const s = server(path);
    s.route('GET', '/v1/boom', () => { throw new KernwayError('KW_NOT_READY', 'maps not loaded yet'); });
    s.route('GET', '/v1/crash', () => { throw new Error('unexpected'); });
    s.route('GET', '/v1/async', async () => { await new Promise((r) => setTimeout(r, 1)); return { later: true }; });
    await s.listen();
    await expect(adminRequest(path, '/v1/nope')).rejects.toMatchObject({ code: 'KW_ADMIN_NOT_FOUND', details: { status: 404 } });
    await expect(adminRequest(path, '/v1/boom', { method: 'DELETE' })).rejects.toMatchObject({ code: 'KW_ADMIN_METHOD', details: { status: 405 } });
    await expect(adminRequest(path, '/v1/boom')).rejects.toMatchObject({ code: 'KW_NOT_READY', message: 'maps not loaded yet', details: { status: 503 } });
    await expect(adminRequest(path, '/v1/crash')).rejects.toMatchObject({ code: 'KW_INTERNAL', message: 'unexpected', details: { status: 500 } });
    expect(await adminRequest(path, '/v1/async')).toEqual({ later: true });
  });

  it('refuses a path that exists and is not a socket, and leaves it alone', async () => {
    const path = join(dir, 'admin.sock');
    writeFileSync(path, 'precious');
    await expect(server(path).listen()).rejects.toMatchObject({ code: 'KW_ADMIN_SOCKET_PATH', message: expect.stringMatching(/exists and is not a socket/) });
    expect(statSync(path).isFile()).toBe(true);
    mkdirSync(join(dir, 'd.sock'));
    await expect(server(join(dir, 'd.sock')).listen()).rejects.toMatchObject({ code: 'KW_ADMIN_SOCKET_PATH' });
  });

  it('replaces a stale socket, refuses one in use', async () => {
    const path = join(dir, 'admin.sock');
    const live: Server = createServer();
    await new Promise<void>((r) => live.listen(path, r));
    try {
      await expect(server(path).listen()).rejects.toMatchObject({ code: 'KW_ADMIN_SOCKET_IN_USE' });
    } finally {
      await new Promise<void>((r) => live.close(() => r()));
    }
    makeStale(path);
    await server(path).listen();
    expect(await adminRequest(path, '/v1/ping')).toMatchObject({ ok: true });
  });

  it('removes its socket on close', async () => {
    const path = join(dir, 'admin.sock');
    const s = new AdminServer(path);
    await s.listen();
    await s.close();
    expect(existsSync(path)).toBe(false);
    await s.close(); // idempotent
  });
});

describe('adminRequest errors', () => {
  it('KW_AGENT_UNREACHABLE naming the socket when nothing is there', async () => {
    const path = join(dir, 'none.sock');
    const e = await adminRequest(path, '/v1/services').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(KernwayError);
    expect(e).toMatchObject({ code: 'KW_AGENT_UNREACHABLE', details: { socket: path, errno: 'ENOENT' } });
    expect((e as Error).message).toContain(path);
    expect((e as Error).message).toMatch(/Is `kernway agent` running\?/);
  });

  it('KW_AGENT_UNREACHABLE for a stale socket nobody listens on', async () => {
    const path = join(dir, 'stale.sock');
    makeStale(path);
    await expect(adminRequest(path, '/v1/ping')).rejects.toMatchObject({ code: 'KW_AGENT_UNREACHABLE', details: { errno: 'ECONNREFUSED' } });
  });

  it('KW_AGENT_TIMEOUT when the agent does not answer', async () => {
    const path = join(dir, 'slow.sock');
    const s = server(path);
    s.route('GET', '/v1/slow', () => new Promise((r) => setTimeout(r, 2000)));
    await s.listen();
    await expect(adminRequest(path, '/v1/slow', { timeoutMs: 50 })).rejects.toMatchObject({ code: 'KW_AGENT_TIMEOUT' });
  });

  it('KW_ADMIN_BAD_RESPONSE when the answer is not JSON', async () => {
    const path = join(dir, 'other.sock');
    const { createServer: createHttp } = await import('node:http');
    const other = createHttp((_q, r) => { r.end('<html>'); });
    await new Promise<void>((r) => other.listen(path, r));
    try {
      await expect(adminRequest(path, '/v1/ping')).rejects.toMatchObject({ code: 'KW_ADMIN_BAD_RESPONSE' });
    } finally {
      await new Promise<void>((r) => other.close(() => r()));
    }
  });

  it('KW_ADMIN_BAD_RESPONSE naming the field when the JSON has the wrong shape', async () => {
    const path = join(dir, 'shape.sock');
    const s = server(path);
    s.route('GET', '/v1/x', () => ({ state: 'running', problems: 'none' }));
    s.route('GET', '/v1/list', () => [{ frontend: 'a' }, { frontend: 7 }]);
    await s.listen();
    const e = await adminRequest(path, '/v1/x', { shape: shapeOf({ state: 'string', problems: 'array' }) }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'KW_ADMIN_BAD_RESPONSE' });
    expect((e as Error).message).toContain("/v1/x with JSON of the wrong shape: field 'problems' should be an array, got a string");
    await expect(adminRequest(path, '/v1/list', { shape: arrayOf(shapeOf({ frontend: 'string' })) }))
      .rejects.toThrow(/item 1: field 'frontend' should be a string, got a number/);
    await expect(adminRequest(path, '/v1/list', { shape: shapeOf({ state: 'string' }) })).rejects.toThrow(/expected an object, got an array/);
    // the right shape passes
    await expect(adminRequest(path, '/v1/x', { shape: shapeOf({ state: 'string' }) })).resolves.toMatchObject({ state: 'running' });
  });

  it('`kernway status`, `services` and `policies` against a socket answering {} give a coded error, not a TypeError', async () => {
    const path = join(dir, 'empty.sock');
    const { createServer: createHttp } = await import('node:http');
    const other = createHttp((_q, r) => { r.setHeader('content-type', 'application/json'); r.end('{}'); });
    await new Promise<void>((r) => other.listen(path, r));
    try {
      for (const [cmd, what] of [['status', "field 'state' is missing"], ['services', 'expected an array, got an object'], ['policies', "field 'workloads' is missing"]] as const) {
        const r = await runKernway([cmd, '--admin-socket', path]);
        expect(r.code, `${cmd}: ${r.stderr}`).toBe(1);
        expect(r.stderr).toContain(what);
        expect(r.stderr).toContain('[KW_ADMIN_BAD_RESPONSE]');
        expect(r.stderr).not.toMatch(/TypeError|at .*\.js:\d+/);
      }
    } finally {
      await new Promise<void>((r) => other.close(() => r()));
    }
  });

  it('permission denied is explained (a user other than the agent\'s)', async () => {
    const path = join(dir, 'admin.sock');
    const s = server(path);
    await s.listen();
    chmodSync(dir, 0o755); // the directory is traversable; the socket itself is 0600
    // Connect as nobody: connect(2) on a Unix socket is issued synchronously by request(),
    // so the effective uid only needs to be switched around the call.
    const asRoot = process.geteuid?.() === 0;
    if (asRoot) process.seteuid!(65534);
    let p: Promise<unknown>;
    try {
      p = adminRequest(path, '/v1/ping');
    } finally {
      if (asRoot) process.seteuid!(0);
    }
    if (!asRoot) chmodSync(path, 0o000); // not root: take our own permission away instead (too late for p, so ask again)
    await expect(asRoot ? p : adminRequest(path, '/v1/ping')).rejects.toMatchObject({ code: 'KW_AGENT_UNREACHABLE', details: { errno: 'EACCES' }, message: expect.stringMatching(/permission denied.*0600/) });
    if (!asRoot) await p.catch(() => undefined);
  });
});
