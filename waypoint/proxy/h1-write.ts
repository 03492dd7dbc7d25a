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

export class SocketWriter {
  /** Direct writes libuv has queued and not completed (the kernel's buffer was full). */
  queued = 0;
  /** A direct write returned false: onDrain is owed when the queue empties. */
  private owed = false;
  private readonly direct: boolean;
  private readonly done: (e?: Error | null) => void;

  constructor(readonly socket: Socket, onDrain: () => void) {
    this.direct = hasDirectPath(socket);
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
      return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
    }
    this.queued++;
    s._writeGeneric(false, data, encoding, this.done);
    if (this.queued === 0) return true;
    this.owed = true;
    return false;
  }
}
