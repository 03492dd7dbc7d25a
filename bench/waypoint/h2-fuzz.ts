/**
 * Fuzzing the waypoint's own HTTP/2 server (`--http2-server kernway`, waypoint/proxy/h2-conn.ts)
 * for minutes (test/waypoint/h2-conn.test.ts replays a short seeded run): a real
 * `kernway waypoint` process with an nginx echo backend gets random and mutated h2c
 * connections (frames of every type with random flags, stream ids and payloads, mutated
 * valid connections, header blocks with Huffman strings and dynamic-table references, raw
 * bytes after the preface) on its Gateway listener, several at a time.
 *
 *   node dist/bench/waypoint/h2-fuzz.js [--seconds 180] [--seed N] [--parallel 8]
 *
 * Checked: the process never exits; what comes back is well-formed frames (a GOAWAY with a
 * known error code); the waypoint still serves at the end. Also the HPACK decoder itself on
 * random and mutated blocks (in this process): it throws nothing but HpackError. Exit code
 * 1 on any violation, with the inputs that caused it (base64) in the output.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { HpackDecoder, HpackError, huffmanEncode } from '../../waypoint/proxy/h2-hpack.js';
import { answered, block, F, frame, getFields, goawayCode, h2FuzzCases, hello, mulberry32, rawH2, T } from './h2-fuzz-inputs.js';
import { startFuzzTarget } from './fuzz-target.js';
import type { Proc } from './procs.js';

const ADDR = '127.92.0.1';
const BACKEND = { address: '127.92.0.10', port: 18181 };
const PORT = 18183;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, seed: { type: 'string' }, parallel: { type: 'string' } } });
  const seconds = Number(values.seconds ?? 180);
  const seed = Number(values.seed ?? Date.now() % 1e9);
  const parallel = Number(values.parallel ?? 8);
  const rand = mulberry32(seed);
  const failures: string[] = [];

  // The HPACK decoder alone, in this process: random bytes and mutated valid blocks.
  let hpackRuns = 0;
  const until = Date.now() + Math.min(10_000, seconds * 100);
  const valid = [block(getFields('/a', [['x-a', 'b']])), block(getFields('/b'), true), Buffer.concat([Buffer.from([0x82, 0x86, 0x84, 0x41, 0x03]), huffmanEncode('abc')])];
  while (Date.now() < until) {
    let b: Buffer;
    if (rand() < 0.5) {
      b = Buffer.alloc(Math.floor(rand() * 80));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
    } else {
      b = Buffer.from(valid[Math.floor(rand() * valid.length)]!);
      for (let k = 0; k < 3; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    }
    const d = new HpackDecoder();
    try { d.decode(b, 0, b.length, [], 16384); d.decode(b, 0, b.length, [], 16384); } catch (e) {
      if (!(e instanceof HpackError)) failures.push(`HpackDecoder threw ${(e as Error).message} on ${b.toString('base64')}`);
    }
    hpackRuns++;
  }

  const dir = mkdtempSync(join(tmpdir(), 'kw-bench-h2-fuzz-'));
  const procs: Proc[] = [];
  let sent = 0, goaways = 0, closed = 0;
  let stopping = false;
  try {
    const wp = await startFuzzTarget(dir, { address: ADDR, port: PORT, backend: BACKEND }, [
      '--mesh-port', '0', '--metrics-address', 'off', '--access-log', 'off',
      '--http2-server', 'kernway',
    ], procs);
    let exited = false;
    wp.child?.once('exit', (code, signal) => { exited = true; if (!stopping) failures.push(`the waypoint exited (code ${code}, signal ${signal})`); });
    const end = Date.now() + seconds * 1000;
    const worker = async (): Promise<void> => {
      while (Date.now() < end && !exited) {
        const [input] = h2FuzzCases(rand, 1);
        const o = await rawH2(ADDR, PORT, input!, 100);
        sent++;
        if (o.closed) closed++;
        const code = goawayCode(o);
        if (code !== undefined) { goaways++; if (code > 13) failures.push(`GOAWAY with code ${code} to ${input!.toString('base64')}`); }
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    const alive = await rawH2(ADDR, PORT, hello(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, block(getFields('/echo')))));
    if (!answered(alive, 1)) failures.push('the waypoint no longer serves h2c');
  } finally {
    stopping = true;
    for (const p of procs.reverse()) await p.stop();
    if (failures.length > 0) {
      try { failures.push(`waypoint log, last lines:\n${readFileSync(join(dir, 'waypoint.log'), 'utf8').split('\n').slice(-15).join('\n')}`); } catch { /* none */ }
    }
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(JSON.stringify({ seed, seconds, hpackRuns, connections: sent, goaways, closedByServer: closed, failures: failures.length }));
  for (const f of failures.slice(0, 20)) console.log(f);
  if (failures.length > 0) process.exitCode = 1;
}

main().catch((e: unknown) => { console.error(`bench/waypoint/h2-fuzz: ${(e as Error).message}`); process.exitCode = 1; });
