/**
 * Where the kernel's receive path for redirected bytes differs from TCP's (documented
 * in docs/sockmap.md, "Limits"): a reader using splice(2) does not see them, and
 * recv(MSG_WAITALL) returns early (a sendfile(2) writer, by contrast, is fine). These tests pin that behaviour on this kernel (if a
 * kernel fixes it, they fail and the docs must change) and prove the way out: the
 * kernway.io/sockmap: "off" annotation gives such a pod plain TCP.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, type Pod } from '../../lab/index.js';
import type { Sockmap } from '../../agent/datapath/sockmap.js';
import { loadSockmap, localPodsOf } from './harness.js';

const READER = fileURLToPath(new URL('../fixtures/sockmap-reader.py', import.meta.url));

let lab: Lab;
let a: Pod, b: Pod;
let sm: Sockmap;
let port = 7100;

const SENDER = `
const net = require('node:net');
const [host, port, size] = process.argv.slice(1);
const half = Math.floor(Number(size) / 2);
const s = net.connect({ host, port: Number(port) }, () => {
  s.write(Buffer.alloc(half, 1));
  setTimeout(() => s.write(Buffer.alloc(Number(size) - half, 2)), 300);
});
s.on('data', () => {});
s.on('error', () => {});
s.on('close', () => process.exit(0));
`;

beforeAll(async () => {
  lab = await Lab.create({ tag: 'smlimit' });
  a = await lab.addPod('a');
  b = await lab.addPod('b');
  sm = await loadSockmap(lab);
});
afterAll(async () => {
  sm?.close();
  await lab?.destroy();
});

const HASHER = `
const net = require('node:net');
const { createHash } = require('node:crypto');
const h = createHash('sha256');
let n = 0;
const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]) });
s.on('data', (d) => { h.update(d); n += d.length; });
s.on('end', () => { console.log(n + ' ' + h.digest('hex')); s.destroy(); });
`;

/** Starts the reader in pod b, sends `size` bytes in two writes 300 ms apart from pod a; returns what the reader got. */
async function readWith(mode: 'splice' | 'waitall', size: number): Promise<number> {
  const p = port++;
  const reader = lab.spawn(b, 'python3', [READER, String(p), mode, String(size)]);
  let out = '';
  let err = '';
  reader.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  reader.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const exited = new Promise((r) => reader.once('exit', r));
  for (let i = 0; i < 100 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
  expect(out, `reader did not start: ${err}`).toContain('ready');
  // Two bursts 300 ms apart, then wait for the reader to close.
  const send = lab.exec(a, process.execPath, ['-e', SENDER, b.ipv4, String(p), String(size)], { timeoutMs: 20_000 });
  await exited;
  const sent = await send;
  expect(sent.stderr).toBe('');
  const m = /(splice|waitall) (\d+)/.exec(out);
  expect(m, `reader output: ${out} ${err}`).not.toBeNull();
  return Number(m![2]);
}

describe('sockmap: kernel limits and the opt-out', () => {
  it('a splice(2) reader does not see redirected bytes; opted out, it reads them all', async () => {
    sm.setLocalPods(localPodsOf(a, b));
    expect(await readWith('splice', 4096)).toBeLessThan(4096);
    sm.setLocalPods([...localPodsOf(a), { ip: b.ipv4, sockmapOff: true }, { ip: b.ipv6, sockmapOff: true }]);
    expect(await readWith('splice', 4096)).toBe(4096);
  });

  it('a sendfile(2) writer (static file servers) is redirected whole', async () => {
    sm.setLocalPods(localPodsOf(a, b));
    const p = port++;
    const size = 3 << 20;
    const writer = lab.spawn(b, 'python3', [READER, String(p), 'sendfile', String(size)]);
    let out = '';
    writer.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const exited = new Promise((r) => writer.once('exit', r));
    for (let i = 0; i < 100 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
    const before = sm.stats();
    const got = await lab.exec(a, process.execPath, ['-e', HASHER, b.ipv4, String(p)], { timeoutMs: 20_000 });
    await exited;
    const sent = /sendfile ([0-9a-f]{64})/.exec(out)?.[1];
    expect(sent).toBeDefined();
    expect(got.stdout.trim()).toBe(`${size} ${sent}`);
    expect(sm.stats().redirectedBytes - before.redirectedBytes).toBeGreaterThanOrEqual(size);
  });

  it('recv(MSG_WAITALL) returns after the first burst; opted out, it waits for all', async () => {
    sm.setLocalPods(localPodsOf(a, b));
    expect(await readWith('waitall', 4096)).toBe(2048);
    sm.setLocalPods([...localPodsOf(a), { ip: b.ipv4, sockmapOff: true }, { ip: b.ipv6, sockmapOff: true }]);
    expect(await readWith('waitall', 4096)).toBe(4096);
  });
});
