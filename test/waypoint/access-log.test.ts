/**
 * Access logs buffered as nginx's `access_log ... buffer=64k flush=1s` (issue 16): a line
 * reaches the file within about a second without anything else written after it (the
 * flush timer, not the 64 KiB threshold), a full buffer is written at once, and close()
 * (what SIGTERM's drain ends with) writes every line written before it, also while the
 * timer's asynchronous write is in flight. Lines of any length and script arrive whole and
 * in order through the batch buffer, also to a pipe shared by workers (PIPE_BUF pieces).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { AccessLog, type AccessRecord } from '../../waypoint/observe/access-log.js';

const dir = mkdtempSync(join(tmpdir(), 'kw-access-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function record(path: string): AccessRecord {
  return {
    method: 'GET', path, protocol: 'HTTP/1.1', status: 200, durationMs: 1.5, route: 'ns/r', rule: '0', destination: 'ns/web', upstream: '10.0.0.1:8080',
    source: 'ns/caller', sourceAddress: '10.0.0.2', parent: 'ns/gw/http', bytesIn: 0, bytesOut: 3, traceId: 'a'.repeat(32), spanId: 'b'.repeat(16),
    requestId: 'r-1', userAgent: 'test', reason: undefined, attempts: 1,
  };
}

function lines(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function poll<T>(what: string, f: () => T | undefined, ms: number): Promise<{ value: T; afterMs: number }> {
  const start = Date.now();
  for (;;) {
    const v = f();
    if (v !== undefined) return { value: v, afterMs: Date.now() - start };
    if (Date.now() - start > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

it('a single line is buffered, then written by the one-second flush', async () => {
  const file = join(dir, 'one', 'access.log');
  const log = new AccessLog({ file });
  try {
    log.write(record('/first'));
    await new Promise((r) => setTimeout(r, 100));
    expect(lines(file), 'held in the buffer at first').toEqual([]);
    const { value } = await poll('the line in the file', () => { const l = lines(file); return l.length > 0 ? l : undefined; }, 2500);
    expect(value).toHaveLength(1);
    expect(value[0]).toMatchObject({ msg: 'request', path: '/first', status: 200, upstream: '10.0.0.1:8080', attempts: 1 });
  } finally {
    await log.close();
  }
});

it('64 KiB of lines are written without waiting for the timer', async () => {
  const file = join(dir, 'full', 'access.log');
  const log = new AccessLog({ file });
  try {
    const n = Math.ceil((70 * 1024) / JSON.stringify(record('/x')).length);
    await new Promise((r) => setTimeout(r, 50)); // the file is open
    for (let i = 0; i < n; i++) log.write(record(`/full/${i}`));
    const { value } = await poll('lines in the file', () => { const l = lines(file); return l.length > 0 ? l : undefined; }, 900);
    expect(value.length).toBeGreaterThan(0);
  } finally {
    await log.close();
  }
  expect(lines(file)).toHaveLength(Math.ceil((70 * 1024) / JSON.stringify(record('/x')).length));
});

it('close() writes every line written before it, also with the timer\'s write in flight', async () => {
  const file = join(dir, 'close', 'access.log');
  const log = new AccessLog({ file });
  // Lines before the timer's first flush, lines while it may be writing, lines just before close().
  for (let i = 0; i < 300; i++) log.write(record(`/a/${i}`));
  await poll('the first flush', () => (lines(file).length > 0 ? true : undefined), 2500);
  for (let i = 0; i < 300; i++) log.write(record(`/b/${i}`));
  await log.close();
  const got = lines(file).map((l) => l.path);
  expect(got).toHaveLength(600);
  expect(got.slice(0, 2)).toEqual(['/a/0', '/a/1']);
  expect(got.at(-1)).toBe('/b/299');
  expect(new Set(got).size).toBe(600);
});

it('close() right after the first lines, before the file is even open, loses none', async () => {
  const file = join(dir, 'early', 'deeper', 'access.log');
  const log = new AccessLog({ file });
  for (let i = 0; i < 50; i++) log.write(record(`/early/${i}`));
  await log.close();
  expect(lines(file).map((l) => l.path)).toEqual(Array.from({ length: 50 }, (_, i) => `/early/${i}`));
});

it('lines of any length and script, through the batch buffer, arrive whole and in order (a file, and a shared pipe in pieces of at most PIPE_BUF)', async () => {
  const paths = Array.from({ length: 400 }, (_, i) => (i % 97 === 5 ? `/long/${'é'.repeat(3000)}/${i}` : i === 200 ? `/longer/${'x'.repeat(12_000)}` : i % 11 === 0 ? `/quote"back\\slash\ttab\u0001/${i}` : i % 7 === 0 ? `/ünïcödé/日本/${i}` : `/p/${i}`));
  const file = join(dir, 'mixed', 'access.log');
  const log = new AccessLog({ file });
  for (const p of paths) log.write(record(p));
  await log.close();
  expect(lines(file).map((l) => l.path)).toEqual(paths);

  // A worker's stdout shared with other processes (a pipe): the same lines, none cut.
  const { spawnSync } = await import('node:child_process');
  const mod = join(process.cwd(), 'dist', 'waypoint', 'observe', 'access-log.js');
  const script = `import { AccessLog } from ${JSON.stringify(mod)};
const log = new AccessLog('stdout', { sharedDestination: true });
const rec = (path) => ({ method: 'GET', path, protocol: 'HTTP/1.1', status: 200, durationMs: 1, route: 'r', rule: '0', destination: 'd', upstream: undefined, source: 's', sourceAddress: 'a', parent: 'p', bytesIn: 0, bytesOut: 0, traceId: 't', spanId: 's', requestId: 'q', userAgent: undefined, reason: undefined, attempts: 1 });
for (const p of ${JSON.stringify(paths)}) log.write(rec(p));
await log.close();`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout.split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { path: string }).path)).toEqual(paths);
});
