/**
 * Writes of whole buffers straight to a socket's native stream, past Node's Writable
 * (what `socket.write()` costs on top of the write itself: its state machine, its length
 * accounting, and a `process.nextTick` per write to call back). The waypoint's HTTP/1.1
 * paths write one buffer per response (head and body together) and one per backend
 * request head; this is how they write it.
 *
 * It goes through `net.Socket`'s own `_writeGeneric` (the method Writable's `_write` ends
 * in), so the native write request, its completion, errors and `socket.bytesWritten` are
 * Node's. Order is kept: the direct path is taken only while Writable holds nothing
 * (`writableLength` 0, not corked, not ending), and what reaches libuv is written in the
 * order it came (a write while another is queued waits behind it in the stream's write
 * queue). `socket.end()` after a direct write that is still queued shuts the socket down
 * only after it (libuv's shutdown waits for the write queue).
 *
 * Backpressure: a write the kernel did not take whole returns false, and `onDrain` is
 * called once every such write has completed (Writable's own 'drain' still comes for
 * writes that went through it).
 *
 * Batched (`batch: true`, the HTTP/1.1 paths): the first direct write of an event loop's turn
 * is issued at once, the turn's others are held until its end (setImmediate: after every socket
 * the poll phase found readable has been read) and issued together. Each write that finds its reader asleep
 * on another CPU wakes it, and on this project's benchmark VM a wake-up costs the writer
 * ~5 µs more than the write itself (a send(2) to a sleeping reader on the other vCPU: median
 * 7.0 µs, to one awake 1.9 µs); written one by one as the waypoint handled each request, the
 * backend and the load tool went back to sleep between two writes, up to 1.6 wake-ups per
 * request (docs/waypoint-bench.md, twelfth session). Issued together, they find the reader
 * awake or wake it once; a lone request (one connection) is not delayed: its write is the
 * turn's first. Order on the socket is kept: anything else written to
 * it, its end(), cork() or destroy() first issues what is held (the socket's own methods are
 * wrapped for that), and a write while an earlier one is still queued (the kernel's buffer
 * full) is not held. A held write returns true; at most one turn's writes (each at most
 * BATCH_MAX_BYTES) are held per socket.
 */
import type { Socket } from 'node:net';

interface RawSocket {
  _handle: unknown;
  connecting: boolean;
  destroyed: boolean;
  writableLength: number;
  writableCorked: number;
  writableEnded: boolean;
  _writeGeneric(writev: false, data: Buffer | string, encoding: string, cb: (e?: Error | null) => void): void;
}

/** Whether `socket` is a net.Socket whose direct path exists (a test's plain Duplex is written through Writable). */
function hasDirectPath(socket: Socket): boolean {
  return typeof (socket as unknown as RawSocket)._writeGeneric === 'function';
}

/** Larger writes are not held (a body's big chunk gains nothing from waiting, and stays under backpressure). */
export const BATCH_MAX_BYTES = 16 * 1024;

/** Writers holding writes for the end of this turn, in the order they first held one. */
let holding: SocketWriter[] = [];
let scheduled = false;

/** Issues every held write (setImmediate: once per turn that held any). */
function flushTurn(): void {
  scheduled = false;
  const list = holding;
  holding = [];
  for (const w of list) w.flush();
}

export class SocketWriter {
  /** Direct writes libuv has queued and not completed (the kernel's buffer was full). */
  queued = 0;
  /** A direct write returned false: onDrain is owed when the queue empties. */
  private owed = false;
  private readonly direct: boolean;
  private readonly done: (e?: Error | null) => void;
  private readonly batch: boolean;
  /** Writes held for the end of the turn (data, then its encoding), in order. */
  private held: (Buffer | string)[] = [];

  constructor(readonly socket: Socket, onDrain: () => void, opts: { batch?: boolean } = {}) {
    this.direct = hasDirectPath(socket);
    this.batch = this.direct && opts.batch === true;
    if (this.batch) this.guard();
    // One callback per connection, not one per write. It runs synchronously inside
    // _writeGeneric when the kernel took the whole buffer.
    this.done = (e?: Error | null): void => {
      this.queued--;
      if (e) { socket.destroy(e); return; }
      if (this.queued === 0 && this.owed) { this.owed = false; onDrain(); }
    };
  }

  /** Write `b` whole; false: the kernel holds it back (wait for onDrain or 'drain' before the next). */
  write(b: Buffer): boolean {
    return this.put(b, 'buffer');
  }

  /**
   * Write a head's text as latin1 bytes (one byte per character, as Node writes header
   * strings): the native stream copies it, no Buffer is made for it here.
   */
  writeLatin1(text: string): boolean {
    return this.put(text, 'latin1');
  }

  private put(data: Buffer | string, encoding: 'buffer' | 'latin1'): boolean {
    const s = this.socket as unknown as RawSocket;
    if (!this.direct || s.writableLength !== 0 || s.writableCorked !== 0 || s.writableEnded || s.connecting || s.destroyed || !s._handle) {
      // Through Writable (its write() issues what this writer holds first: guard()).
      return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
    }
    if (this.batch && this.queued === 0 && data.length <= BATCH_MAX_BYTES) {
      // The turn's first write goes at once (it wakes its reader; a lone request waits for nothing), the rest are held.
      if (!scheduled) {
        scheduled = true;
        setImmediate(flushTurn);
        this.flush();
        return this.issue(data, encoding);
      }
      if (this.held.length === 0) holding.push(this);
      this.held.push(data, encoding);
      return true;
    }
    this.flush();
    return this.issue(data, encoding);
  }

  /** Writes held for the end of this turn. */
  get heldWrites(): number {
    return this.held.length >> 1;
  }

  /** Issues the held writes, in order (at the end of the turn, or before anything else touches the socket). */
  flush(): void {
    if (this.held.length === 0) return;
    const held = this.held;
    this.held = [];
    const s = this.socket as unknown as RawSocket;
    // Destroyed since: what it held goes with it, as a write queued in libuv would.
    if (s.destroyed || !s._handle) return;
    for (let i = 0; i < held.length; i += 2) this.issue(held[i]!, held[i + 1] as 'buffer' | 'latin1');
  }

  private issue(data: Buffer | string, encoding: 'buffer' | 'latin1'): boolean {
    const s = this.socket as unknown as RawSocket;
    this.queued++;
    s._writeGeneric(false, data, encoding, this.done);
    if (this.queued === 0) return true;
    this.owed = true;
    return false;
  }

  /** The socket's write, end, cork and destroy issue what this writer holds first (own properties over net.Socket's methods). */
  private guard(): void {
    const sock = this.socket as unknown as Record<'write' | 'end' | 'cork' | 'destroy', (...a: unknown[]) => unknown>;
    for (const name of ['write', 'end', 'cork', 'destroy'] as const) {
      const method = sock[name]!;
      sock[name] = (...a: unknown[]): unknown => {
        this.flush();
        return method.apply(this.socket, a);
      };
    }
  }
}
