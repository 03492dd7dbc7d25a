/**
 * HPACK (RFC 7541) for the waypoint's own HTTP/2 server (h2-conn.ts): a decoder with the
 * static and dynamic tables and Huffman decoding, and a small encoder for response heads.
 *
 * Written here, not taken from npm: the one HPACK package there (hpack.js) has not been
 * maintained since 2017. Go's x/net/http2/hpack and nghttp2 were read for reference.
 *
 * The decoder returns the header list as strings (latin1: one character per byte, as
 * nghttp2 hands header bytes to Node) and enforces what the server advertises and
 * limits: the dynamic table never grows past the size the server allows (4096, the
 * SETTINGS_HEADER_TABLE_SIZE it never changes), integers are bounded, a Huffman string
 * must end in at most 7 bits of EOS padding, and a list larger than `maxListBytes`
 * (RFC 7541 §4.1 sizes: name + value + 32 each) is decoded to the end (the table must
 * stay in step with the peer's) but reported as too large.
 *
 * The encoder never adds to a dynamic table (so the peer's table size never matters):
 * fields whose name is in the static table are sent as "literal without indexing,
 * indexed name", others with a literal name, values as raw octets; `:status` values in
 * the static table are one byte.
 */

/** A malformed header block: a connection error (COMPRESSION_ERROR, RFC 9113 §4.3). */
export class HpackError extends Error {}

/** RFC 7541 Appendix A. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'], [':scheme', 'http'], [':scheme', 'https'],
  [':status', '200'], [':status', '204'], [':status', '206'], [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'],
  ['accept-charset', ''], ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''], ['content-disposition', ''],
  ['content-encoding', ''], ['content-language', ''], ['content-length', ''], ['content-location', ''], ['content-range', ''], ['content-type', ''],
  ['cookie', ''], ['date', ''], ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''], ['location', ''], ['max-forwards', ''],
  ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''], ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''],
  ['set-cookie', ''], ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''], ['www-authenticate', ''],
];

// ------------------------------------------------------------------ Huffman (Appendix B)

/**
 * Code lengths of the 257 symbols (256 is EOS). The code is canonical (codes assigned in
 * order of length, then of symbol), so the codes themselves follow from the lengths;
 * the unit test checks them against the RFC's examples.
 */
const HUFFMAN_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

/** The canonical codes (symbol → code, right-aligned in HUFFMAN_LENGTHS[symbol] bits). */
export const HUFFMAN_CODES: readonly number[] = (() => {
  const order = HUFFMAN_LENGTHS.map((len, sym) => [len, sym] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const codes = new Array<number>(257).fill(0);
  let code = 0;
  let prevLen = order[0]![0];
  for (let i = 0; i < order.length; i++) {
    const [len, sym] = order[i]!;
    if (i > 0) code = (code + 1) * 2 ** (len - prevLen);
    prevLen = len;
    codes[sym] = code;
  }
  return codes;
})();
export { HUFFMAN_LENGTHS };

/**
 * The decoder is a state machine that reads 4 bits at a time (as nghttp2's): a state is an
 * inner node of the code tree; for each state and nibble, the next state, the symbol
 * completed on the way (at most one: no code is shorter than 5 bits) and whether EOS was
 * met. A state may end a string when it lies on the all-ones path from the root less than
 * 8 bits deep (the padding, §5.2).
 */
const H_NEXT = new Uint16Array(256 * 16);
/** Symbol completed on a transition, or -1; -2: EOS or a path out of the tree (an error). */
const H_SYM = new Int16Array(256 * 16);
const H_ACCEPT = new Uint8Array(256);
(() => {
  // Build the tree: node 0 is the root; children[2n], children[2n+1]; a leaf is -(sym+1).
  const child = new Int32Array(512 * 2).fill(0);
  let nodes = 1;
  for (let sym = 0; sym < 257; sym++) {
    const len = HUFFMAN_LENGTHS[sym]!;
    const code = HUFFMAN_CODES[sym]!;
    let n = 0;
    for (let b = len - 1; b >= 0; b--) {
      const bit = Math.floor(code / 2 ** b) & 1;
      const at = n * 2 + bit;
      if (b === 0) { child[at] = -(sym + 1); break; }
      if (child[at] === 0) child[at] = nodes++;
      n = child[at]!;
    }
  }
  // Padding states: the all-ones path, depth 1..7 (and the root, depth 0).
  let n = 0;
  H_ACCEPT[0] = 1;
  for (let d = 1; d <= 7; d++) { n = child[n * 2 + 1]!; if (n <= 0) break; H_ACCEPT[n] = 1; }
  for (let s = 0; s < nodes; s++) {
    for (let nib = 0; nib < 16; nib++) {
      let cur = s;
      let sym = -1;
      for (let b = 3; b >= 0; b--) {
        const c = child[cur * 2 + ((nib >> b) & 1)]!;
        if (c < 0) {
          const found = -c - 1;
          if (found === 256) { sym = -2; cur = 0; break; }
          sym = found;
          cur = 0;
        } else if (c === 0) { sym = -2; cur = 0; break; } // cannot happen: the code is complete
        else cur = c;
      }
      H_NEXT[s * 16 + nib] = cur;
      H_SYM[s * 16 + nib] = sym;
    }
  }
})();

/** Scratch for decoded Huffman strings (a header value is at most maxListBytes long, checked before). */
let scratch = Buffer.allocUnsafe(4096);

/** Huffman-decodes b[start, end) to a latin1 string. */
export function huffmanDecode(b: Uint8Array, start: number, end: number): string {
  // At most 8/5 symbols per byte.
  const most = Math.ceil(((end - start) * 8) / 5);
  if (scratch.length < most) scratch = Buffer.allocUnsafe(Math.max(most, scratch.length * 2));
  const out = scratch;
  let o = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const byte = b[i]!;
    let t = state * 16 + (byte >> 4);
    let sym = H_SYM[t]!;
    if (sym === -2) throw new HpackError('Huffman string with EOS or an invalid code');
    if (sym >= 0) out[o++] = sym;
    state = H_NEXT[t]!;
    t = state * 16 + (byte & 15);
    sym = H_SYM[t]!;
    if (sym === -2) throw new HpackError('Huffman string with EOS or an invalid code');
    if (sym >= 0) out[o++] = sym;
    state = H_NEXT[t]!;
  }
  if (H_ACCEPT[state] !== 1) throw new HpackError('Huffman string with invalid padding');
  return out.toString('latin1', 0, o);
}

/** Huffman-encodes a latin1 string (for tests and the fuzz inputs: the server's encoder sends raw octets). */
export function huffmanEncode(s: string): Buffer {
  const out: number[] = [];
  let acc = 0, bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 255;
    const len = HUFFMAN_LENGTHS[c]!;
    const code = HUFFMAN_CODES[c]!;
    for (let b = len - 1; b >= 0; b--) {
      acc = (acc << 1) | (Math.floor(code / 2 ** b) & 1);
      if (++bits === 8) { out.push(acc); acc = 0; bits = 0; }
    }
  }
  if (bits > 0) out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 255);
  return Buffer.from(out);
}

// ------------------------------------------------------------------ decoder

/** Outcomes of decode(): the block was fine; too large (decoded to the end, list cut). */
export const DECODED_OK = 0;
export const DECODED_TOO_LARGE = 1;

export class HpackDecoder {
  /** Dynamic table as a ring: newest at `head - 1`. */
  private names: string[] = new Array<string>(64);
  private values: string[] = new Array<string>(64);
  private head = 0;
  private count = 0;
  private size = 0;
  /** The table's maximum size the peer last set (≤ `limit`). */
  private max: number;

  /** `limit`: SETTINGS_HEADER_TABLE_SIZE as advertised (4096 by default, never changed). */
  constructor(private readonly limit = 4096) {
    this.max = limit;
  }

  /** Bytes in the dynamic table (RFC 7541 §4.1 sizes), for tests. */
  get tableBytes(): number { return this.size; }

  private entry(index: number): number {
    // index 1-based into the dynamic table (1 = newest) → ring slot.
    const cap = this.names.length;
    return (this.head - index + cap) % cap;
  }

  private add(name: string, value: string): void {
    const sz = name.length + value.length + 32;
    if (sz > this.max) { this.count = 0; this.size = 0; return; }
    while (this.size + sz > this.max) this.evict();
    if (this.count === this.names.length) this.grow();
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.head = (this.head + 1) % this.names.length;
    this.count++;
    this.size += sz;
  }

  private evict(): void {
    const slot = this.entry(this.count);
    this.size -= this.names[slot]!.length + this.values[slot]!.length + 32;
    this.names[slot] = '';
    this.values[slot] = '';
    this.count--;
  }

  private grow(): void {
    const cap = this.names.length;
    const names = new Array<string>(cap * 2);
    const values = new Array<string>(cap * 2);
    for (let i = 0; i < this.count; i++) {
      const slot = this.entry(this.count - i);
      names[i] = this.names[slot]!;
      values[i] = this.values[slot]!;
    }
    this.names = names;
    this.values = values;
    this.head = this.count;
  }

  private nameAt(index: number): string {
    if (index === 0) throw new HpackError('index 0');
    if (index <= 61) return STATIC_TABLE[index - 1]![0];
    if (index - 61 > this.count) throw new HpackError(`index ${index} past the tables`);
    return this.names[this.entry(index - 61)]!;
  }

  private valueAt(index: number): string {
    if (index <= 61) return STATIC_TABLE[index - 1]![1];
    return this.values[this.entry(index - 61)]!;
  }

  /**
   * Decodes one header block (the fragments of HEADERS and CONTINUATION, joined) into `out`
   * (name, value, name, value…). Throws HpackError on a malformed block.
   */
  decode(b: Uint8Array, start: number, end: number, out: string[], maxListBytes: number): number {
    this.b = b;
    this.p = start;
    this.end = end;
    let listBytes = 0;
    let tooLarge = false;
    let fieldsSeen = false;
    try {
      while (this.p < end) {
        const c = b[this.p]!;
        let name: string, value: string;
        if (c & 128) {
          // Indexed field (§6.1).
          const i = this.int(7);
          name = this.nameAt(i);
          value = this.valueAt(i);
        } else if ((c & 0xe0) === 0x20) {
          // Dynamic table size update (§6.3): only before the first field.
          if (fieldsSeen) throw new HpackError('table size update after a field');
          const sz = this.int(5);
          if (sz > this.limit) throw new HpackError(`table size ${sz} above the ${this.limit} allowed`);
          this.max = sz;
          while (this.size > this.max) this.evict();
          continue;
        } else {
          // Literal: with incremental indexing (01), without (0000) or never indexed (0001).
          const indexing = (c & 0xc0) === 0x40;
          const i = this.int(indexing ? 6 : 4);
          name = i === 0 ? this.str() : this.nameAt(i);
          value = this.str();
          if (indexing) this.add(name, value);
        }
        fieldsSeen = true;
        listBytes += name.length + value.length + 32;
        if (listBytes > maxListBytes) tooLarge = true;
        if (!tooLarge) out.push(name, value);
      }
    } finally {
      this.b = EMPTY;
    }
    return tooLarge ? DECODED_TOO_LARGE : DECODED_OK;
  }

  private b: Uint8Array = EMPTY;
  private p = 0;
  private end = 0;

  /** An integer with an N-bit prefix (§5.1); at most 2^31 - 1 is accepted. */
  private int(prefixBits: number): number {
    const b = this.b;
    const mask = (1 << prefixBits) - 1;
    let v = b[this.p++]! & mask;
    if (v < mask) return v;
    let m = 0;
    for (;;) {
      if (this.p >= this.end) throw new HpackError('integer cut short');
      const c = b[this.p++]!;
      v += (c & 127) * 2 ** m;
      m += 7;
      if (v > 0x7fffffff) throw new HpackError('integer too large');
      if ((c & 128) === 0) return v;
    }
  }

  /** A string literal (§5.2). */
  private str(): string {
    if (this.p >= this.end) throw new HpackError('string cut short');
    const huff = (this.b[this.p]! & 128) !== 0;
    const len = this.int(7);
    const p = this.p;
    if (len > this.end - p) throw new HpackError('string longer than the block');
    this.p = p + len;
    return huff ? huffmanDecode(this.b, p, p + len) : latin1(this.b, p, p + len);
  }
}

const EMPTY = new Uint8Array(0);

function latin1(b: Uint8Array, start: number, end: number): string {
  return Buffer.prototype.toString.call(b, 'latin1', start, end);
}

// ------------------------------------------------------------------ encoder

/** Static-table index of a name (first entry with it). */
const STATIC_NAME = new Map<string, number>();
for (let i = STATIC_TABLE.length - 1; i >= 0; i--) STATIC_NAME.set(STATIC_TABLE[i]![0], i + 1);
const STATUS_INDEX: Record<string, number> = { 200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14 };

/** Writes an integer with an N-bit prefix at `o` (the prefix byte's high bits are `first`). */
function writeInt(out: Buffer, o: number, first: number, prefixBits: number, v: number): number {
  const mask = (1 << prefixBits) - 1;
  if (v < mask) { out[o++] = first | v; return o; }
  out[o++] = first | mask;
  v -= mask;
  while (v >= 128) { out[o++] = (v & 127) | 128; v = Math.floor(v / 128); }
  out[o++] = v;
  return o;
}

/** Upper bound of the bytes encode() writes for a list. */
export function encodedBound(list: readonly string[]): number {
  let n = 8;
  for (let i = 0; i < list.length; i++) n += list[i]!.length + 6;
  return n;
}

/**
 * Encodes `:status` then the fields of `list` (lower-case names, checked values) into
 * `out` at `o`; returns the end. `status` '' for trailers. Strings are written latin1.
 */
export function encodeHead(out: Buffer, o: number, status: string, list: readonly string[], from = 0, to = list.length): number {
  if (status !== '') {
    const si = STATUS_INDEX[status];
    if (si !== undefined) out[o++] = 128 | si;
    else {
      o = writeInt(out, o, 0, 4, 8);
      o = writeInt(out, o, 0, 7, status.length);
      o += out.write(status, o, 'latin1');
    }
  }
  for (let i = from; i < to; i += 2) {
    const name = list[i]!;
    const value = list[i + 1]!;
    const si = STATIC_NAME.get(name);
    if (si !== undefined) o = writeInt(out, o, 0, 4, si);
    else {
      out[o++] = 0;
      o = writeInt(out, o, 0, 7, name.length);
      o += out.write(name, o, 'latin1');
    }
    o = writeInt(out, o, 0, 7, value.length);
    o += out.write(value, o, 'latin1');
  }
  return o;
}
