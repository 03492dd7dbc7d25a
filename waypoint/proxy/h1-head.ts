/**
 * HTTP/1.1 heads as bytes, from a previous head's bytes where they are the same: a head is
 * a line and a list of headers, and from one request (or response) to the next most of it
 * repeats (the method and path, the caller's headers, X-Forwarded-For; a backend's Server,
 * Content-Type and Content-Length), while a few values change (ids, Date). A HeadMemo keeps
 * the bytes of a head it made, its line and headers (copied: the caller's list is not
 * kept) and where each header ends in those bytes. The next head's line and headers are
 * compared with them (`===`: the same text), in order: the bytes of the leading part that
 * is the same are copied, the rest is written from its strings (latin1, one byte per
 * character, as Node writes header strings).
 *
 * Which headers are kept: when a head differs from the kept one at header k, the kept
 * bytes are replaced by the new head's, all its headers kept, and k is noted; when the
 * next head differs at the same k again, the headers from k on are taken to change from
 * head to head (ids), and only those before k are kept from then on (a value that changes
 * now and then, as Date once a second, is followed by heads equal to the kept one: the
 * note is dropped, and its header stays kept; headers left out are kept again after
 * RETRY_AFTER heads, in case they changed twice in a row by chance): the kept bytes then
 * stay as they are while heads differ only from k on, and the copied part is one view of
 * them.
 *
 * Why: a head built by concatenating strings costs ~28 concatenations and the flattening
 * of the result when it is written (a string write to a socket measured 3.6 k instructions
 * against 0.9 k for a Buffer); equal strings compare natively.
 */
import type { HeaderList } from './headers.js';

/** Heads after which headers left out are kept again (and left out again if they still change). */
const RETRY_AFTER = 64;

export class HeadMemo {
  private line0 = '';
  private line1 = '';
  /** The kept head's bytes (undefined: none yet). */
  private bytes: Uint8Array | undefined;
  /** Its headers (names and values, `2 * valid` of them compared) and where the line and each header end in `bytes`. */
  private readonly list: string[] = [];
  private readonly ends: number[] = [];
  private lineEnd = 0;
  private valid = 0;
  /** The header index where the last head differed from the kept one (-1: none). */
  private lastDiff = -1;
  /** bytes[0, viewEnd), the part copied while heads differ at the same place. */
  private view: Uint8Array | undefined;
  private viewEnd = -1;
  /**
   * Where the kept headers end in `bytes` when no other header follows them there (-1: one
   * does), and the `extra` and `after` written behind them, up to `tailEnd`: a head with the
   * same headers, extra and after is a copy of bytes[0, tailEnd) (a response with the
   * previous one's head: no string is written).
   */
  private tailAt = -1;
  /** Headers were left out (see above), and heads made since. */
  private shrunk = false;
  private shrunkHeads = 0;
  private tailExtra = '';
  private tailAfter = '';
  private tailEnd = 0;

  /** `request`: lines `${a} ${b} HTTP/1.1` (method, target); else `a` is the status line (with its CRLF) and `b` ''. */
  constructor(private readonly request: boolean) {}

  /**
   * The line, each header `name: value\r\n`, then `extra` (text already in head form: ''
   * or lines ending in CRLF), the empty line and `after` (a chunk-size line, the last chunk),
   * both written anew each time; then `room` bytes left for the caller to fill (a body).
   */
  head(a: string, b: string, h: HeaderList, extra = '', after = '', room = 0): Buffer {
    const m = this.bytes;
    let k = 0;
    let off = 0;
    let keep = true;
    const lineHit = m !== undefined && a === this.line0 && b === this.line1;
    if (lineHit) {
      off = this.lineEnd;
      const list = this.list;
      const ends = this.ends;
      const n = 2 * this.valid;
      const hn = h.length < n ? h.length : n;
      while (k < hn && h[k] === list[k] && h[k + 1] === list[k + 1]) { off = ends[k >> 1]!; k += 2; }
      if (k === n) {
        // Every kept header is the same.
        this.lastDiff = -1;
        if (k === h.length && off === this.tailAt && extra === this.tailExtra && after === this.tailAfter) return this.copy(this.tailEnd, room);
        // Headers left out are tried again now and then (a value that changed twice in a row by chance, as two Dates around a second's turn).
        keep = this.shrunk && ++this.shrunkHeads >= RETRY_AFTER;
      } else if (k === this.lastDiff) { this.valid = k >> 1; this.tailAt = -1; this.shrunk = true; keep = false; } // twice in a row at k: from k on, headers change
    }
    let rest = '';
    if (!lineHit) {
      rest = this.request ? `${a} ${b} HTTP/1.1\r\n` : a;
      this.line0 = a;
      this.line1 = b;
      this.lineEnd = rest.length;
      this.lastDiff = -1;
    } else if (keep) this.lastDiff = k;
    let at = off + rest.length;
    if (keep) {
      const list = this.list;
      const ends = this.ends;
      for (let i = k; i < h.length; i += 2) {
        const name = h[i]!;
        const value = h[i + 1]!;
        rest += `${name}: ${value}\r\n`;
        at += name.length + value.length + 4;
        list[i] = name;
        list[i + 1] = value;
        ends[i >> 1] = at;
      }
      this.valid = h.length >> 1;
      this.shrunk = false;
      this.shrunkHeads = 0;
      this.tailAt = at;
      this.tailExtra = extra;
      this.tailAfter = after;
      this.tailEnd = at + extra.length + 2 + after.length;
    } else {
      for (let i = k; i < h.length; i += 2) rest += `${h[i]}: ${h[i + 1]}\r\n`;
    }
    rest += extra === '' ? '\r\n' : `${extra}\r\n`;
    if (after !== '') rest += after;
    const out = off > 0 ? this.copy(off, rest.length + room) : Buffer.allocUnsafe(rest.length + room);
    (out as LatinBuffer).latin1Write(rest, off);
    if (keep) { this.bytes = out; this.view = undefined; this.viewEnd = -1; }
    return out;
  }

  /** A buffer of `n + room` bytes whose first `n` are the kept bytes' first `n`. */
  private copy(n: number, room: number): Buffer {
    const out = Buffer.allocUnsafe(n + room);
    let v = this.view;
    if (v === undefined || this.viewEnd !== n) { v = this.view = this.bytes!.subarray(0, n); this.viewEnd = n; }
    out.set(v, 0);
    return out;
  }
}

interface LatinBuffer extends Buffer { latin1Write(s: string, offset: number): number }
