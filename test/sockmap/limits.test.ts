/**
 * Where the kernel's receive path for redirected bytes (tcp_bpf) differs from TCP's,
 * kernway keeps the socket on the stack (docs/sockmap.md, rules 5 to 7).
 *
 * With the agent's defaults (pods that say nothing), nothing is redirected to a socket
 * (rule 7): proxies that read a header with recv() and then splice (C, and Go's
 * bufio.Reader + io.Copy), splice relays, sendfile writers, blocking clients, SO_RCVLOWAT,
 * MSG_PEEK and splice readers and slow readers are all byte-exact.
 *
 * With pods opted in (kernway.io/sockmap: "on"), rules 5 and 6 keep the same programs
 * exact except the one rule 7 exists for: a socket read with recvmsg and later spliced
 * loses what was redirected to it in between (shown below: the reason it is not the
 * default). The negative controls load the programs with rules 5 and 6 broken on purpose
 * (what kernway did before them) and show the same runs fail: the kernel still behaves
 * as docs/sockmap.md says, and the tests would notice a kernway that stopped guarding.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, type Pod } from '../../lab/index.js';
import type { Sockmap } from '../../agent/datapath/sockmap.js';
import { Server, defaultPodsOf, delta, dualStack, loadSockmap, localPodsOf, runClient, stopChild, waitFor } from './harness.js';

const READER = fileURLToPath(new URL('../fixtures/sockmap-reader.py', import.meta.url));
const SPLICE_SRC = fileURLToPath(new URL('../fixtures/sockmap-splice.c', import.meta.url));
const RELAY_SRC = fileURLToPath(new URL('../fixtures/sockmap-relay.go', import.meta.url));

/** Sends SIZE bytes (two halves, 300 ms apart: 1s then 2s) and waits for the reader to close. */
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
const sentDigest = (size: number): string => {
  const half = Math.floor(size / 2);
  return createHash('sha256').update(Buffer.alloc(half, 1)).update(Buffer.alloc(size - half, 2)).digest('hex');
};

/** Reads what a server sends until EOF; prints "<bytes> <sha256>". */
const HASHER = `
const net = require('node:net');
const { createHash } = require('node:crypto');
const h = createHash('sha256');
let n = 0;
const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]) });
s.on('data', (d) => { h.update(d); n += d.length; });
s.on('end', () => { console.log(n + ' ' + h.digest('hex')); s.destroy(); });
`;

/**
 * Slow reader: answers the writer's hello byte, reads 1 MiB, stops reading for 3 s,
 * then reads the rest; prints "<bytes> <sha256>". The writer sends a hello byte, waits
 * for the answer (so its bulk is redirected from the start), writes TOTAL bytes as fast
 * as the kernel takes them and prints how many it had handed to the kernel 1.5 s after
 * the start ("accepted N").
 */
const SLOW_READER = `
const net = require('node:net');
const { createHash } = require('node:crypto');
const h = createHash('sha256');
let n = 0, paused = false;
let hello = false;
const srv = net.createServer((s) => {
  s.on('data', (d) => {
    if (!hello) { hello = true; s.write('k'); d = d.subarray(1); }
    h.update(d); n += d.length;
    if (!paused && n >= 1 << 20) { paused = true; s.pause(); setTimeout(() => s.resume(), 3000); }
  });
  s.on('end', () => { console.log(n + ' ' + h.digest('hex')); s.end(); srv.close(); });
});
srv.listen(Number(process.argv[1]), '::', () => console.log('ready'));
`;
const FAST_WRITER = `
const net = require('node:net');
const { createHash } = require('node:crypto');
const [host, port, total] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const h = createHash('sha256');
const chunk = Buffer.alloc(256 << 10);
let sent = 0, i = 0;
const s = net.connect({ host, port }, () => s.write('h'));
s.once('data', () => {
  const base = s.bytesWritten;
  setTimeout(() => console.log('accepted ' + (s.bytesWritten - s.writableLength - base)), 1500);
  const more = () => {
    while (sent < total) {
      chunk.fill(i++ & 0xff);
      h.update(chunk); sent += chunk.length;
      if (!s.write(Buffer.from(chunk))) { s.once('drain', more); return; }
    }
    s.end(); console.log('sent ' + sent + ' ' + h.digest('hex'));
  };
  more();
});
s.on('error', (e) => { console.error(e.message); process.exit(1); });
`;

let port = 7200;
let bins: string;
let splice: string;
let relay: string;

beforeAll(() => {
  // The relays are compiled now, like bench/connrate.c: cc, and Go (Debian's golang-go).
  bins = mkdtempSync(join(tmpdir(), 'kernway-smlimits-'));
  splice = join(bins, 'sockmap-splice');
  execFileSync('cc', ['-O2', '-Wall', '-pthread', '-o', splice, SPLICE_SRC], { stdio: 'pipe' });
  relay = join(bins, 'sockmap-relay');
  execFileSync('go', ['build', '-o', relay, RELAY_SRC], {
    stdio: 'pipe', env: { ...process.env, GO111MODULE: 'off', GOFLAGS: '', GOCACHE: join(bins, 'gocache'), GOPATH: join(bins, 'gopath') },
  });
}, 180_000);
afterAll(() => { rmSync(bins, { recursive: true, force: true }); });

/** The sockmap protocol's header (test/fixtures/sockmap-proto.mjs): what a header-reading relay reads with recv(). */
const HEADER_SIZE = 32;

/**
 * A lab with pods a, b, c, the acceleration loaded, servers in c: 'default' (pods that say
 * nothing), 'optin' (all three annotated kernway.io/sockmap: "on") or 'broken' (opted in,
 * rules 5 and 6 broken).
 */
class Rig {
  lab!: Lab;
  a!: Pod;
  b!: Pod;
  c!: Pod;
  sm!: Sockmap;
  server!: Server;

  async start(tag: string, mode: 'default' | 'optin' | 'broken'): Promise<void> {
    this.lab = await Lab.create({ tag });
    this.a = await this.lab.addPod('a');
    this.b = await this.lab.addPod('b');
    this.c = await this.lab.addPod('c');
    this.sm = await loadSockmap(this.lab, mode === 'broken' ? { testBreak: 'rx' } : {});
    this.sm.setLocalPods((mode === 'default' ? defaultPodsOf : localPodsOf)(this.a, this.b, this.c));
    this.server = await Server.start(this.lab, this.c, '::', [7001]);
  }

  async stop(): Promise<void> {
    await this.server?.stop();
    this.sm?.close();
    await this.lab?.destroy();
  }

  /** Runs a relay (argv: its command line before LISTEN UPSTREAM_HOST UPSTREAM_PORT) in b, to the server in c; 2 x conns transfers through it. */
  async relay(cmd: string, args: string[], conns: number, timeoutMs = 30_000): Promise<Awaited<ReturnType<typeof runClient>>> {
    const p = port++;
    const child = this.lab.spawn(this.b, cmd, [String(p), this.c.ipv4, '7001', ...args]);
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    try {
      await waitFor(() => out.includes('ready'), `relay ${cmd}`);
      return await runClient(this.lab, this.a, { targets: dualStack(this.b, p), conns, concurrency: 50, min: 1, max: 1 << 20, timeoutMs }, 120_000);
    } finally {
      await stopChild(child);
    }
  }

  /** Starts a python server in b; returns its output once it exits. */
  async pyServer(mode: string, size: number, nbl: boolean, drive: (port: number) => Promise<void>): Promise<string> {
    const p = port++;
    const child = this.lab.spawn(this.b, 'python3', [READER, String(p), mode, String(size), ...(nbl ? ['nbl'] : [])]);
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
    const closed = new Promise((r) => child.once('close', r));
    try {
      await waitFor(() => out.includes('ready'), `python ${mode} server`, 30_000);
      await drive(p);
      await closed;
    } finally {
      await stopChild(child);
    }
    expect(err).toBe('');
    return out;
  }

  /** A reader mode in b fed by the two-burst sender in a; returns the reader's result line. */
  async read(mode: string, size: number, nbl = true): Promise<string> {
    const out = await this.pyServer(mode, size, nbl, async (p) => {
      const sent = await this.lab.exec(this.a, process.execPath, ['-e', SENDER, this.b.ipv4, String(p), String(size)], { timeoutMs: 60_000 });
      expect(sent.stderr).toBe('');
    });
    return out.split('\n').find((l) => l.startsWith(mode)) ?? out;
  }

  /** `n` blocking python clients in a (client-eof or client-waitall), each against its own reply server in b. */
  async blockingClients(mode: 'client-eof' | 'client-waitall', n: number, size: number): Promise<void> {
    for (let i = 0; i < n; i += 5) await Promise.all(Array.from({ length: Math.min(5, n - i) }, async () => {
      let got = '';
      const out = await this.pyServer('reply', size, true, async (p) => {
        const r = await this.lab.exec(this.a, 'python3', [READER, mode, this.b.ipv4, String(p), String(64 << 10), String(size)], { timeoutMs: 60_000 });
        expect(r.stderr).toBe('');
        got = r.stdout.trim();
      });
      const m = /^reply (\d+) ([0-9a-f]{64})$/m.exec(out);
      expect(m, out).not.toBeNull();
      expect(m![1]).toBe(String(64 << 10));
      expect(got).toBe(`${mode} ${size} ${m![2]}`);
    }));
  }

  /** The slow reader in b and the fast writer in a; returns what the writer had handed to the kernel while the reader stalled. */
  async slowReader(total: number): Promise<number> {
    const p = port++;
    const reader = this.lab.spawn(this.b, process.execPath, ['-e', SLOW_READER, String(p)]);
    let out = '';
    reader.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const closed = new Promise((r) => reader.once('close', r));
    try {
      await waitFor(() => out.includes('ready'), 'slow reader');
      const w = await this.lab.exec(this.a, process.execPath, ['-e', FAST_WRITER, this.b.ipv4, String(p), String(total)], { timeoutMs: 60_000 });
      expect(w.stderr).toBe('');
      await closed;
      const sent = /^sent (\d+) ([0-9a-f]{64})$/m.exec(w.stdout);
      expect(sent, w.stdout).not.toBeNull();
      expect(out).toContain(`${sent![1]} ${sent![2]}`);
      return Number(/^accepted (\d+)$/m.exec(w.stdout)![1]);
    } finally {
      await stopChild(reader);
    }
  }
}

describe('sockmap defaults (pods that say nothing): nothing is redirected to a socket, every byte arrives', () => {
  const rig = new Rig();
  beforeAll(() => rig.start('smlimitd', 'default'), 60_000);
  afterAll(() => rig.stop());

  it('a proxy in C that reads the header with recv() and then splices: 2,000 transfers, every byte both ways', async () => {
    const before = rig.sm.stats();
    for (let i = 0; i < 2; i++) {
      const res = await rig.relay(splice, [String(HEADER_SIZE)], 500);
      expect(res.failures).toEqual([]);
      expect(res.ok).toBe(500);
    }
    const d = delta(before, rig.sm.stats());
    // Between pods that say nothing, no socket is even added to the sockhash (rule 7).
    expect(d.inserts).toBe(0);
    expect(d.skippedNotOptedIn).toBe(4000);
    expect(d.redirectedBytes).toBe(0);
  }, 300_000);

  it('a Go proxy (bufio.Reader reads the header, then io.Copy splices): 2,000 transfers, every byte both ways', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await rig.relay(relay, [String(HEADER_SIZE)], 500);
      expect(res.failures).toEqual([]);
      expect(res.ok).toBe(500);
    }
  }, 300_000);

  it('a header-reading splice proxy in a pod that says nothing, between pods that opted in: exact, its sends redirected', async () => {
    rig.sm.setLocalPods([...localPodsOf(rig.a, rig.c), ...defaultPodsOf(rig.b)]);
    try {
      const before = rig.sm.stats();
      for (const cmd of [splice, relay]) {
        const res = await rig.relay(cmd, [String(HEADER_SIZE)], 250);
        expect(res.failures).toEqual([]);
        expect(res.ok).toBe(250);
      }
      const d = delta(before, rig.sm.stats());
      // The relay's sockets: added (their peers opted in), never targets; what it sends to the server is redirected.
      expect(d.notOptedIn).toBe(1000);
      expect(d.redirectedBytes).toBeGreaterThan(0);
    } finally {
      rig.sm.setLocalPods(defaultPodsOf(rig.a, rig.b, rig.c));
    }
  }, 300_000);

  it('a splice(2) relay in C, blocking clients, MSG_WAITALL, SO_RCVLOWAT, MSG_PEEK and splice readers: exact', async () => {
    const before = rig.sm.stats();
    const res = await rig.relay(splice, [], 100);
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(100);
    await rig.blockingClients('client-waitall', 5, 256 << 10);
    await rig.blockingClients('client-eof', 5, 256 << 10);
    expect(await rig.read('waitall', 4096, true)).toBe('waitall 4096');
    expect(await rig.read('rcvlowat', 4096)).toBe('rcvlowat 4096');
    expect(await rig.read('peek', 1 << 20)).toBe(`peek ${1 << 20} ${sentDigest(1 << 20)}`);
    expect(await rig.read('splice', 4096)).toBe('splice 4096');
    const d = delta(before, rig.sm.stats());
    expect(d.inserts).toBe(0);
    expect(d.redirectedBytes).toBe(0);
  }, 300_000);
});

describe('sockmap, pods opted in: sockets tcp_bpf would serve differently stay on the stack (rules 5 and 6)', () => {
  const rig = new Rig();
  beforeAll(() => rig.start('smlimit', 'optin'), 60_000);
  afterAll(() => rig.stop());

  it('a splice(2) relay in C (poll, socket -> pipe -> socket): 1,000 transfers, every byte both ways', async () => {
    const before = rig.sm.stats();
    const res = await rig.relay(splice, [], 500);
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(500);
    const d = delta(before, rig.sm.stats());
    // The relay's sockets were added (non-blocking) but never read with recvmsg: never targets.
    expect(d.inserts).toBe(2000);
    expect(d.targets).toBe(1000); // the client's and the server's sockets
    // The relay's writes to the server (splice into a socket) are still redirected.
    expect(d.redirectedBytes).toBeGreaterThan(0);
  }, 180_000);

  it("a Go relay (io.Copy between two *net.TCPConn, which splices): 1,000 transfers, every byte both ways", async () => {
    const res = await rig.relay(relay, [], 500);
    expect(res.failures).toEqual([]);
    expect(res.ok).toBe(500);
  }, 180_000);

  it('sendfile(2) writers are exact (and redirected once the reader has read)', async () => {
    const size = 3 << 20;
    let got = '';
    const out = await rig.pyServer('sendfile', size, true, async (p) => {
      got = (await rig.lab.exec(rig.a, process.execPath, ['-e', HASHER, rig.b.ipv4, String(p)], { timeoutMs: 20_000 })).stdout.trim();
    });
    const sent = /sendfile ([0-9a-f]{64})/.exec(out)?.[1];
    expect(sent).toBeDefined();
    expect(got).toBe(`${size} ${sent}`);
  });

  it('blocking clients: recv(MSG_WAITALL) gets all it asked for; shutdown(SHUT_WR) then recv() to EOF', async () => {
    const before = rig.sm.stats();
    await rig.blockingClients('client-waitall', 5, 256 << 10);
    await rig.blockingClients('client-eof', 5, 256 << 10);
    // Blocking at connect(): never added (their servers are, as non-blocking owners).
    expect(delta(before, rig.sm.stats()).skippedBlocking).toBe(10);
  }, 180_000);

  it('a blocking recv(MSG_WAITALL) on an accepted socket waits for all; a blocking listener keeps its sockets out', async () => {
    const before = rig.sm.stats();
    expect(await rig.read('waitall', 4096, true)).toBe('waitall 4096');
    const mid = rig.sm.stats();
    expect(delta(before, mid).keptOnStack).toBe(1);
    expect(await rig.read('waitall', 4096, false)).toBe('waitall 4096');
    expect(delta(mid, rig.sm.stats()).skippedBlocking).toBe(1);
  });

  it('SO_RCVLOWAT readers are woken with what they asked for; MSG_PEEK readers see exactly the bytes they then read', async () => {
    const before = rig.sm.stats();
    expect(await rig.read('rcvlowat', 4096)).toBe('rcvlowat 4096');
    expect(await rig.read('peek', 1 << 20)).toBe(`peek ${1 << 20} ${sentDigest(1 << 20)}`);
    expect(delta(before, rig.sm.stats()).keptOnStack).toBe(2);
  });

  it('a splice(2) reader gets every byte', async () => {
    expect(await rig.read('splice', 4096)).toBe('splice 4096');
  });

  it('a slow reader holds the writer back as TCP would; then every byte arrives', async () => {
    const before = rig.sm.stats();
    const accepted = await rig.slowReader(64 << 20);
    // TCP would buffer the receive buffer (<= tcp_rmem max, 6 MiB) and the send buffer
    // (<= tcp_wmem max, 4 MiB); kernway adds at most 4 MiB + the send buffer redirected.
    expect(accepted).toBeLessThan(24 << 20);
    const d = delta(before, rig.sm.stats());
    expect(d.passedFull).toBeGreaterThan(0);
    expect(d.redirectedBytes).toBeGreaterThan(0);
  }, 90_000);
});

describe('sockmap, pods opted in: why rule 7 keeps pods that say nothing from receiving redirected bytes', () => {
  const rig = new Rig();
  beforeAll(() => rig.start('smlimito', 'optin'), 60_000);
  afterAll(() => rig.stop());

  it('a proxy that reads the header with recv() and then splices misses the bytes redirected to it in between', async () => {
    const before = rig.sm.stats();
    const res = await rig.relay(splice, [String(HEADER_SIZE)], 20, 5000);
    expect(res.ok).toBeLessThan(20);
    // The relay's client-side sockets became targets with their first read (rule 5 cannot know what comes next).
    expect(delta(before, rig.sm.stats()).targets).toBeGreaterThanOrEqual(20);
  }, 120_000);
});

describe('sockmap negative controls: the same runs with rules 5 and 6 broken', () => {
  const rig = new Rig();
  beforeAll(() => rig.start('smlimitx', 'broken'), 60_000);
  afterAll(() => rig.stop());

  it('the splice relay loses the redirected bytes', async () => {
    const res = await rig.relay(splice, [], 20);
    expect(res.ok).toBeLessThan(20);
  }, 120_000);

  it('recv(MSG_WAITALL) returns after the first burst', async () => {
    expect(await rig.read('waitall', 4096, true)).toBe('waitall 2048');
  });

  it('a splice(2) reader misses the redirected bytes', async () => {
    expect(await rig.read('splice', 4096)).not.toBe('splice 4096');
  });

  it('a slow reader does not hold the writer back', async () => {
    expect(await rig.slowReader(64 << 20)).toBeGreaterThanOrEqual(48 << 20);
  }, 90_000);
});
