/**
 * h2c one request at a time (issue 16): a caller that waits for each response before the
 * next must never wait for a delayed ACK, so every TCP socket on the path has Nagle's
 * algorithm off (TCP_NODELAY): the caller's socket the waypoint accepted, and the socket
 * of the h2c session to the backend. Checked on the sockets themselves (Node.js records
 * setNoDelay in the socket's kSetNoDelay slot), after 50 sequential h2c requests through a
 * waypoint to an h2c backend, on loopback; also that they went over one caller connection
 * and one backend session (no connection per request). node:http2 sets TCP_NODELAY on its
 * sessions' sockets itself; this keeps it so. The latency is measured in bench/waypoint
 * (docs/waypoint-bench.md).
 */
import http2 from 'node:http2';
import net from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { ManifestDirSource } from '../../waypoint/config/source.js';
import { parseWaypointArgs, withLogger } from '../../waypoint/options.js';
import { Waypoint } from '../../waypoint/waypoint.js';
import { baseManifests, gatewayRoute, type RigAddresses } from './fixtures/rig.js';

const base = `127.91.${10 + (process.pid % 200)}`;
const BACKEND = `${base}.10`;
const GW = `${base}.1`;
const K_NO_DELAY = Object.getOwnPropertySymbols(new net.Socket()).find((s) => s.description === 'kSetNoDelay');

let backend: http2.Http2Server;
let wp: Waypoint;
let dir = '';

function noDelay(socket: unknown): unknown {
  return (socket as Record<symbol, unknown>)[K_NO_DELAY!];
}

beforeAll(async () => {
  backend = http2.createServer((req, res) => { req.resume(); req.on('end', () => res.end(`${req.url}\n`)); });
  await new Promise<void>((resolve, reject) => { backend.once('error', reject); backend.listen({ host: BACKEND, port: 8080, exclusive: true }, resolve); });
  dir = mkdtempSync(join(tmpdir(), 'kw-h2-nodelay-'));
  const manifests = join(dir, 'manifests');
  mkdirSync(manifests);
  const a: RigAddresses = { gateway: GW, pods: { h2: [BACKEND] }, outside: `${base}.3`, caller: (i) => `${base}.${200 + i}` };
  writeFileSync(join(manifests, 'config.yaml'), baseManifests(a, 'ns', { appProtocol: { h2: 'kubernetes.io/h2c' } }) + gatewayRoute('main', `  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: h2, port: 80}]`));
  const opts = parseWaypointArgs(['--namespace', 'ns', '--manifests', manifests, '--listen-address', GW, '--mesh-port', '0', '--metrics-address', 'off', '--access-log', 'off']);
  const log = createLogger('kernway-waypoint-test', process.env.KERNWAY_LOG_LEVEL ?? 'silent');
  wp = await Waypoint.start({ ...withLogger(opts, log), drainTimeoutMs: 500 }, new ManifestDirSource(manifests, { log, debounceMs: 10 }));
}, 30_000);

afterAll(async () => {
  await wp?.stop(0);
  await new Promise<void>((r) => { if (backend) backend.close(() => r()); else r(); });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('50 sequential h2c requests through the waypoint to an h2c backend: all sockets have TCP_NODELAY', async () => {
  expect(K_NO_DELAY, 'this Node.js records setNoDelay on sockets').toBeDefined();
  const caller = http2.connect(`http://${GW}:8080`);
  try {
    for (let i = 0; i < 50; i++) {
      const body = await new Promise<string>((resolve, reject) => {
        const r = caller.request({ ':path': `/n/${i}`, ':authority': 'h2.example.com' });
        let b = '';
        r.setEncoding('utf8');
        r.on('data', (c: string) => { b += c; });
        r.on('end', () => resolve(b));
        r.on('error', reject);
      });
      expect(body).toBe(`/n/${i}\n`);
    }
    const internals = wp as unknown as { sockets: Set<net.Socket>; upstream: { sessions: Map<string, http2.ClientHttp2Session> } };
    const accepted = [...internals.sockets];
    expect(accepted.length).toBe(1);
    expect(noDelay(accepted[0])).toBe(true);
    const up = [...internals.upstream.sessions.values()];
    expect(up.length).toBe(1);
    // The session's socket is a proxy that reads through to the real socket.
    expect(noDelay(up[0]!.socket)).toBe(true);
  } finally {
    caller.close();
  }
});
