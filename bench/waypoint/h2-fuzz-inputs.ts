/**
 * HTTP/2 frames by hand, for the tests of the waypoint's own HTTP/2 server
 * (waypoint/proxy/h2-conn.ts) and for fuzzing its frame reader and HPACK decoder: a frame
 * builder, header blocks (literals, optionally Huffman), a raw exchange that returns the
 * frames the server sent until it closed or went quiet, and seeded random and mutated
 * connections (the test replays a short run, `bench/waypoint/h2-fuzz.ts` runs for minutes).
 */
import net from 'node:net';
import { huffmanEncode } from '../../waypoint/proxy/h2-hpack.js';
import { mulberry32 } from './fuzz-inputs.js';

export { mulberry32 };

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const T = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const F = { END_STREAM: 1, ACK: 1, END_HEADERS: 4, PADDED: 8, PRIORITY: 0x20 } as const;

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([h, payload]);
}

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

export function settings(pairs: [number, number][] = []): Buffer {
  const b = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([k, v], i) => { b.writeUInt16BE(k, i * 6); b.writeUInt32BE(v >>> 0, i * 6 + 2); });
  return frame(T.SETTINGS, 0, 0, b);
}

function int(prefixBits: number, first: number, v: number): number[] {
  const mask = (1 << prefixBits) - 1;
  if (v < mask) return [first | v];
  const out = [first | mask];
  v -= mask;
  while (v >= 128) { out.push((v & 127) | 128); v = Math.floor(v / 128); }
  out.push(v);
  return out;
}

function str(s: string, huffman: boolean): Buffer {
  const raw = huffman ? huffmanEncode(s) : Buffer.from(s, 'latin1');
  return Buffer.concat([Buffer.from(int(7, huffman ? 128 : 0, raw.length)), raw]);
}

/** A header block of literals without indexing (new names), Huffman-coded or not. */
export function block(fields: [string, string][], huffman = false): Buffer {
  return Buffer.concat(fields.flatMap(([n, v]) => [Buffer.from([0]), str(n, huffman), str(v, huffman)]));
}

/** A GET request's fields. */
export function getFields(path: string, extra: [string, string][] = []): [string, string][] {
  return [[':method', 'GET'], [':scheme', 'http'], [':path', path], [':authority', 'test.example'], ...extra];
}

/** Preface, empty SETTINGS, then `rest`. */
export function hello(...rest: Buffer[]): Buffer {
  return Buffer.concat([PREFACE, settings(), ...rest]);
}

export interface Frame { type: number; flags: number; stream: number; payload: Buffer }
export interface RawOutcome { frames: Frame[]; closed: boolean; bytes: number }

/**
 * Writes `input` (a Buffer, or several written one after another) to host:port and
 * collects the frames sent back (SETTINGS are acknowledged) until the server closes the
 * connection or nothing came for `idleMs`.
 */
export function rawH2(host: string, port: number, input: Buffer | Buffer[], idleMs = 200): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const frames: Frame[] = [];
    let buf = Buffer.alloc(0);
    let bytes = 0;
    let done = false;
    let timer: NodeJS.Timeout;
    const finish = (closed: boolean): void => { if (done) return; done = true; clearTimeout(timer); s.destroy(); resolve({ frames, closed, bytes }); };
    const arm = (): void => { clearTimeout(timer); timer = setTimeout(() => finish(false), idleMs); };
    arm();
    s.on('data', (d: Buffer) => {
      bytes += d.length;
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const length = buf.readUIntBE(0, 3);
        if (buf.length < 9 + length) break;
        const f = { type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(buf.subarray(9, 9 + length)) };
        buf = buf.subarray(9 + length);
        frames.push(f);
        if (f.type === T.SETTINGS && (f.flags & F.ACK) === 0 && !s.destroyed) s.write(frame(T.SETTINGS, F.ACK, 0));
      }
      arm();
    });
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
    const parts = Array.isArray(input) ? input : [input];
    for (const p of parts) s.write(p);
  });
}

/** The GOAWAY's error code, if one came. */
export function goawayCode(o: RawOutcome): number | undefined {
  const g = o.frames.find((f) => f.type === T.GOAWAY);
  return g === undefined ? undefined : g.payload.readUInt32BE(4);
}

/** The RST_STREAM code sent for a stream, if any. */
export function resetCode(o: RawOutcome, stream: number): number | undefined {
  const r = o.frames.find((f) => f.type === T.RST_STREAM && f.stream === stream);
  return r === undefined ? undefined : r.payload.readUInt32BE(0);
}

/** Whether a stream got a HEADERS frame (an answer). */
export function answered(o: RawOutcome, stream: number): boolean {
  return o.frames.some((f) => f.type === T.HEADERS && f.stream === stream);
}

function pick<T>(rand: () => number, a: readonly T[]): T {
  return a[Math.floor(rand() * a.length)]!;
}

/** Valid connections the mutations start from. */
function seeds(): Buffer[] {
  const get = (id: number, path: string, huff = false): Buffer => frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, id, block(getFields(path), huff));
  const post = block([[':method', 'POST'], [':scheme', 'http'], [':path', '/fuzz/post'], [':authority', 'test.example'], ['content-length', '5']]);
  return [
    hello(get(1, '/fuzz/a')),
    hello(get(1, '/fuzz/b', true), get(3, '/fuzz/c')),
    hello(frame(T.HEADERS, F.END_HEADERS, 1, post), frame(T.DATA, F.END_STREAM, 1, Buffer.from('hello'))),
    hello(frame(T.HEADERS, 0, 1, block(getFields('/fuzz/d')).subarray(0, 10)), frame(T.CONTINUATION, F.END_HEADERS | F.END_STREAM, 1, block(getFields('/fuzz/d')).subarray(10))),
    hello(frame(T.PING, 0, 0, Buffer.alloc(8, 1)), frame(T.WINDOW_UPDATE, 0, 0, u32(1000)), get(1, '/fuzz/e')),
    hello(get(1, '/fuzz/f'), frame(T.RST_STREAM, 0, 1, u32(8)), frame(T.PRIORITY, 0, 3, Buffer.from([0, 0, 0, 1, 16]))),
    hello(frame(T.HEADERS, F.END_HEADERS | F.PADDED | F.PRIORITY, 1, Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 16]), block(getFields('/fuzz/g')), Buffer.alloc(3)]))),
    // The static table and a dynamic-table entry (literal with incremental indexing), then a reference to it.
    hello(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, Buffer.from([0x82, 0x86, 0x84, 0x41, 0x03, 0x61, 0x62, 0x63])), frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 3, Buffer.from([0x82, 0x86, 0x84, 0xbe]))),
  ];
}

/** One mutated connection: bytes flipped, cut, repeated, frame headers rewritten, random frames appended. */
export function mutateH2(rand: () => number, b: Buffer): Buffer {
  let out = Buffer.from(b);
  const n = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < n; i++) {
    const at = PREFACE.length + Math.floor(rand() * Math.max(1, out.length - PREFACE.length));
    switch (Math.floor(rand() * 7)) {
      case 0: if (at < out.length) out[at] = Math.floor(rand() * 256); break;
      case 1: out = out.subarray(0, at); break;
      case 2: out = Buffer.concat([out.subarray(0, at), out.subarray(at, at + Math.floor(rand() * 40)), out.subarray(at)]); break;
      case 3: out = Buffer.concat([out, randomFrame(rand)]); break;
      case 4: out = Buffer.concat([out.subarray(0, at), randomFrame(rand), out.subarray(at)]); break;
      case 5: if (at + 4 < out.length) out[at + 4] = pick(rand, [0, 1, 4, 5, 8, 0x20, 0x25, 0xff]); break;
      default: { const k = Math.floor(rand() * 20); for (let j = 0; j < k && at + j < out.length; j++) out[at + j] = pick(rand, [0, 0x7f, 0x80, 0xff, 0x3f, 0x40]); }
    }
  }
  return out;
}

/** A random frame: any type (some unknown), flags and stream; a payload of random bytes or a random header block. */
export function randomFrame(rand: () => number): Buffer {
  const type = Math.floor(rand() * 12);
  const flags = pick(rand, [0, 1, 4, 5, 8, 0x20, 0x2d, Math.floor(rand() * 256)]);
  const stream = pick(rand, [0, 1, 2, 3, 5, 0x7fffffff, Math.floor(rand() * 64)]);
  let payload: Buffer;
  if ((type === T.HEADERS || type === T.CONTINUATION) && rand() < 0.6) {
    payload = block(getFields(`/fuzz/${Math.floor(rand() * 1000)}`, rand() < 0.3 ? [['X-Upper', 'v'], ['connection', 'x']] : []), rand() < 0.5);
    if (rand() < 0.5) { const k = Math.floor(rand() * payload.length); payload[k] = Math.floor(rand() * 256); }
  } else {
    payload = Buffer.alloc(pick(rand, [0, 1, 4, 5, 6, 8, 9, 12, Math.floor(rand() * 100)]));
    for (let j = 0; j < payload.length; j++) payload[j] = Math.floor(rand() * 256);
  }
  return frame(type, flags, stream, payload);
}

/** `count` connections' worth of input: mutated seeds, random frames after a valid hello, and raw random bytes after the preface. */
export function h2FuzzCases(rand: () => number, count: number): Buffer[] {
  const base = seeds();
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const r = rand();
    if (r < 0.6) out.push(mutateH2(rand, pick(rand, base)));
    else if (r < 0.9) out.push(hello(...Array.from({ length: 1 + Math.floor(rand() * 6) }, () => randomFrame(rand))));
    else {
      const b = Buffer.alloc(Math.floor(rand() * 200));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
      out.push(Buffer.concat([PREFACE, b]));
    }
  }
  return out;
}
