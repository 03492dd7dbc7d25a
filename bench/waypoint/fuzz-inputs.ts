/**
 * Inputs for fuzzing the waypoint's request parser and its PROXY v2 header reader:
 * random bytes and mutations of valid requests and headers, from a seeded generator (the
 * test replays a short run, `bench/waypoint/fuzz.ts` runs for minutes). `verdict()` says
 * what llhttp itself (strict) makes of an input, the oracle for "a bad input gets a 4xx
 * or a closed connection".
 */
import { HTTPParser, strictParser } from '../../waypoint/proxy/llhttp.js';

/** A small seeded generator (mulberry32): numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEEDS = [
  'GET /web/a HTTP/1.1\r\nHost: h\r\n\r\n',
  'POST /web/b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello',
  'POST /web/c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'GET /web/d?x=1 HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n',
  'PUT /web/e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi',
  'GET http://h/web/f HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\nCookie: a=1\r\n\r\n',
  'GET /web/g HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAA\r\n\r\n',
];
const NASTY = ['\r', '\n', '\0', ' ', '\t', ':', '\r\n', '\r\n\r\n', '%', '%00', '..', '/../', 'Transfer-Encoding: chunked\r\n', 'Content-Length: 3\r\n',
  'Content-Length: -1\r\n', 'Host: other\r\n', 'ffffffffffffffff\r\n', '\x7f', '\xff', 'HTTP/1.1', ' HTTP/9.9', ';ext=1'];

function pick<T>(rand: () => number, a: readonly T[]): T {
  return a[Math.floor(rand() * a.length)]!;
}

/** One mutated input (latin1 string). */
export function mutate(rand: () => number, s: string): string {
  const n = 1 + Math.floor(rand() * 4);
  for (let k = 0; k < n; k++) {
    const at = Math.floor(rand() * (s.length + 1));
    switch (Math.floor(rand() * 7)) {
      case 0: s = s.slice(0, at) + String.fromCharCode(Math.floor(rand() * 256)) + s.slice(at + 1); break;
      case 1: s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rand() * 4)); break;
      case 2: s = s.slice(0, at) + pick(rand, NASTY) + s.slice(at); break;
      case 3: s = s.slice(0, at); break;
      case 4: { const line = s.split('\r\n'); const i = Math.floor(rand() * line.length); line.splice(i, 0, line[i] ?? ''); s = line.join('\r\n'); break; }
      case 5: s = s.slice(0, at) + 'x'.repeat(Math.floor(rand() * 6000)) + s.slice(at); break;
      default: s = s.slice(0, at) + s.slice(at).toUpperCase();
    }
  }
  return s;
}

/** `count` inputs: mostly mutated requests, some random bytes. */
export function fuzzCases(rand: () => number, count: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    if (rand() < 0.15) {
      const b = Buffer.alloc(1 + Math.floor(rand() * 200));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
      out.push(b);
    } else out.push(Buffer.from(mutate(rand, pick(rand, SEEDS)), 'latin1'));
  }
  return out;
}

/** Mutations of a valid PROXY v2 header followed by a request. */
export function proxyCases(rand: () => number, valid: Buffer, count: number): Buffer[] {
  const req = Buffer.from('GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const b = Buffer.from(valid);
    const flips = 1 + Math.floor(rand() * 3);
    for (let k = 0; k < flips; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    const cut = rand() < 0.2 ? Math.floor(rand() * b.length) : b.length;
    out.push(Buffer.concat([b.subarray(0, cut), req]));
  }
  return out;
}


/** What strict llhttp makes of an input: an error before any complete request, or not. */
export function verdict(input: Buffer, maxHeaderBytes: number): 'error' | 'ok' {
  const p = strictParser(HTTPParser.REQUEST, maxHeaderBytes);
  let complete = 0;
  let upgrade = false;
  p[HTTPParser.kOnHeaders] = (): void => {};
  p[HTTPParser.kOnHeadersComplete] = (_a: number, _b: number, _h: unknown, _m: number, _u: string, _s: unknown, _sm: unknown, up: boolean): number => { upgrade ||= up; return 0; };
  p[HTTPParser.kOnBody] = (): void => {};
  p[HTTPParser.kOnMessageComplete] = (): void => { complete++; };
  const r = p.execute(input);
  p.close();
  return typeof r !== 'number' && complete === 0 && !upgrade ? 'error' : 'ok';
}
