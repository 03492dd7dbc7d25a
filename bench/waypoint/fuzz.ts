/**
 * Fuzzing the waypoint's HTTP/1.1 request parser and its PROXY v2 header reader for
 * minutes (the test suite replays a short seeded run): a real `kernway waypoint` process
 * with an nginx echo backend gets random and mutated requests on its Gateway listener
 * and mutated PROXY headers on its mesh port, several connections at a time.
 *
 *   node dist/bench/waypoint/fuzz.js [--seconds 180] [--seed N] [--parallel 8]
 *
 * Checked: the process never exits; every input strict llhttp refuses gets a 4xx or a
 * closed connection; no answer is malformed; the waypoint still serves at the end. Also
 * parseProxyV2 itself on random bytes (in this process): it never throws. Exit code 1 on
 * any violation, with the inputs that caused it (base64) in the output.
 */
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeProxyV2, parseProxyV2, SIGNATURE } from '../../waypoint/proxy/proxy-protocol.js';
import { fuzzCases, mulberry32, proxyCases, verdict } from './fuzz-inputs.js';
import { startFuzzTarget } from './fuzz-target.js';
import type { Proc } from './procs.js';

const ADDR = '127.93.0.1';
const BACKEND = { address: '127.93.0.10', port: 18181 };
const PORT = 18183;
const MESH = 18184;

function exchange(port: number, data: Buffer, idleMs = 300): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: ADDR, port });
    let got = '';
    let timer = setTimeout(() => { s.destroy(); resolve(got); }, idleMs * 3);
    s.on('data', (d) => { got += d.toString('latin1'); clearTimeout(timer); timer = setTimeout(() => { s.destroy(); resolve(got); }, idleMs); });
    s.on('close', () => { clearTimeout(timer); resolve(got); });
    s.on('error', () => { clearTimeout(timer); resolve(got); });
    s.write(data);
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, seed: { type: 'string' }, parallel: { type: 'string' } } });
  const seconds = Number(values.seconds ?? 180);
  const seed = Number(values.seed ?? Date.now() % 1e9);
  const parallel = Number(values.parallel ?? 8);
  const rand = mulberry32(seed);
  const failures: string[] = [];

  // The PROXY header reader alone, in this process.
  let proxyRuns = 0;
  const until = Date.now() + Math.min(10_000, seconds * 100);
  while (Date.now() < until) {
    const b = Buffer.alloc(Math.floor(rand() * 120));
    for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
    if (rand() < 0.7 && b.length >= 16) { SIGNATURE.copy(b, 0); b[12] = rand() < 0.8 ? 0x21 : b[12]!; }
    try { parseProxyV2(b); } catch (e) { failures.push(`parseProxyV2 threw ${(e as Error).message} on ${b.toString('base64')}`); }
    proxyRuns++;
  }

  const dir = mkdtempSync(join(tmpdir(), 'kw-bench-fuzz-'));
  const procs: Proc[] = [];
  let sent = 0, refused = 0, closed = 0;
  let stopping = false;
  try {
    const wp = await startFuzzTarget(dir, { address: ADDR, port: PORT, backend: BACKEND }, [
      '--mesh-port', String(MESH), '--metrics-address', 'off', '--access-log', 'off',
      '--header-timeout', '2s',
    ], procs);
    let exited = false;
    wp.child?.once('exit', (code, signal) => { exited = true; if (!stopping) failures.push(`the waypoint exited (code ${code}, signal ${signal})`); });
    const valid = encodeProxyV2({ address: '127.93.0.5', port: 1000 }, { address: '10.96.93.1', port: 80 });
    const end = Date.now() + seconds * 1000;
    const worker = async (): Promise<void> => {
      while (Date.now() < end && !exited) {
        if (rand() < 0.2) {
          const [input] = proxyCases(rand, valid, 1);
          const got = await exchange(MESH, input!);
          sent++;
          if (got !== '' && !/^HTTP\/1\.1 [0-9]{3} /.test(got)) failures.push(`mesh: malformed answer ${JSON.stringify(got.slice(0, 80))} to ${input!.toString('base64')}`);
          continue;
        }
        const [input] = fuzzCases(rand, 1);
        const got = await exchange(PORT, input!);
        sent++;
        if (got === '') closed++;
        else if (/^HTTP\/1\.1 4/.test(got)) refused++;
        if (got !== '' && !/^HTTP\/1\.1 [0-9]{3} /.test(got)) failures.push(`malformed answer ${JSON.stringify(got.slice(0, 80))} to ${input!.toString('base64')}`);
        else if (verdict(input!, 16384) === 'error' && got !== '' && !/^HTTP\/1\.1 4[0-9][0-9] /.test(got)) failures.push(`refused by llhttp but answered ${JSON.stringify(got.slice(0, 40))}: ${input!.toString('base64')}`);
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    const alive = await exchange(PORT, Buffer.from('GET /alive HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'));
    if (!/^HTTP\/1\.1 200 /.test(alive)) failures.push(`the waypoint no longer serves: ${JSON.stringify(alive.slice(0, 80))}`);
  } finally {
    stopping = true;
    for (const p of procs.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(JSON.stringify({ seed, seconds, parseProxyV2Runs: proxyRuns, inputsSent: sent, answered4xx: refused, closedWithoutAnswer: closed, failures: failures.length }));
  for (const f of failures.slice(0, 20)) console.log(f);
  if (failures.length > 0) process.exitCode = 1;
}

main().catch((e: unknown) => { console.error(`bench/waypoint/fuzz: ${(e as Error).message}`); process.exitCode = 1; });
