/**
 * waypoint/proxy/h1-write.ts, batched: the direct writes of one event-loop turn are held and
 * issued together after it; nothing else written to the socket, nor its end() or destroy(),
 * overtakes them; big writes and writes behind a full kernel buffer are not held. Real TCP
 * sockets on loopback.
 */
import net from 'node:net';
import { expect, it } from 'vitest';
import { BATCH_MAX_BYTES, SocketWriter } from '../../waypoint/proxy/h1-write.js';

/** A connected pair: `a` on our side, what the peer receives collected until it ends. */
async function pair(): Promise<{ a: net.Socket; received: Promise<Buffer>; close(): void }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const b = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  b.on('data', (d: Buffer) => chunks.push(d));
  const received = new Promise<Buffer>((r) => { b.on('end', () => r(Buffer.concat(chunks))); b.on('close', () => r(Buffer.concat(chunks))); });
  await new Promise<void>((r) => b.once('connect', () => r()));
  const a = await accepted;
  return { a, received, close: () => { a.destroy(); b.destroy(); server.close(); } };
}

it("issues a turn's first write at once, holds the others and issues them together after it, in order, on each socket", async () => {
  const p = await pair(), q = await pair();
  try {
    const wp = new SocketWriter(p.a, () => {}, { batch: true });
    const wq = new SocketWriter(q.a, () => {}, { batch: true });
    expect(wp.write(Buffer.from('one '))).toBe(true);
    expect(wp.heldWrites).toBe(0);
    expect(wq.writeLatin1('uno ')).toBe(true);
    expect(wp.writeLatin1('two ')).toBe(true);
    expect(wq.write(Buffer.from('dos '))).toBe(true);
    expect(wp.heldWrites).toBe(1);
    expect(wq.heldWrites).toBe(2);
    await new Promise((r) => setImmediate(r));
    expect(wp.heldWrites).toBe(0);
    expect(wq.heldWrites).toBe(0);
    p.a.end();
    q.a.end();
    expect((await p.received).toString()).toBe('one two ');
    expect((await q.received).toString()).toBe('uno dos ');
  } finally {
    p.close();
    q.close();
  }
});

it("issues what it holds before the socket's own write, end or destroy", async () => {
  const p = await pair(), q = await pair(), r = await pair(), first = await pair();
  /** A write held on `sock` in a new turn (the turn's first write, to another socket, goes at once). */
  const held = async (sock: typeof p.a, text: string): Promise<SocketWriter> => {
    await new Promise((res) => setImmediate(res));
    new SocketWriter(first.a, () => {}, { batch: true }).write(Buffer.from('first'));
    const w = new SocketWriter(sock, () => {}, { batch: true });
    w.write(Buffer.from(text));
    expect(w.heldWrites).toBe(1);
    return w;
  };
  try {
    await held(p.a, 'held ');
    p.a.write('written ');
    p.a.end('ended');
    expect((await p.received).toString()).toBe('held written ended');
    await held(q.a, 'held, then corked: ');
    q.a.cork();
    q.a.write('later');
    q.a.uncork();
    q.a.end();
    expect((await q.received).toString()).toBe('held, then corked: later');
    const wr = await held(r.a, 'before destroy');
    r.a.destroy();
    expect(wr.heldWrites).toBe(0);
    expect((await r.received).toString()).toBe('before destroy');
  } finally {
    p.close();
    q.close();
    r.close();
    first.close();
  }
});

it('does not hold a write larger than BATCH_MAX_BYTES, and issues what it held before it', async () => {
  const p = await pair();
  try {
    const w = new SocketWriter(p.a, () => {}, { batch: true });
    w.write(Buffer.from('small '));
    w.write(Buffer.from('held '));
    expect(w.heldWrites).toBe(1);
    const big = Buffer.alloc(BATCH_MAX_BYTES + 1, 0x62);
    w.write(big);
    expect(w.heldWrites).toBe(0);
    p.a.end();
    const got = await p.received;
    expect(got.length).toBe(11 + big.length);
    expect(got.subarray(0, 11).toString()).toBe('small held ');
  } finally {
    p.close();
  }
});

it('writes at once without batch (the h2c path)', async () => {
  const p = await pair();
  try {
    const w = new SocketWriter(p.a, () => {});
    expect(w.write(Buffer.from('now'))).toBe(true);
    expect(w.heldWrites).toBe(0);
    p.a.end();
    expect((await p.received).toString()).toBe('now');
  } finally {
    p.close();
  }
});
