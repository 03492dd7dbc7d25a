/**
 * HeadMemo (waypoint/proxy/h1-head.ts) copies the bytes of the part of a head that is the
 * same as the previous head's: every head must still be exactly the head of its own line
 * and headers, whatever changed since the last one (a value of the same length, a name's
 * case, a header added, removed or moved, the line), and never the previous one's.
 */
import { expect, it } from 'vitest';
import { HeadMemo } from '../../waypoint/proxy/h1-head.js';

/** Runs `body` with Buffer's latin1Write counted (a head written from strings calls it once; a copy, never). */
function withLatin1Writes(body: (writes: () => number) => void): void {
  const proto = Object.getPrototypeOf(Buffer.alloc(1)) as { latin1Write: (...a: unknown[]) => number };
  const orig = proto.latin1Write;
  let n = 0;
  proto.latin1Write = function (this: Buffer, ...a: unknown[]): number { n++; return orig.apply(this, a); };
  try {
    body(() => n);
  } finally {
    proto.latin1Write = orig;
  }
}

function requestText(method: string, path: string, h: string[], extra = ''): string {
  let s = `${method} ${path} HTTP/1.1\r\n`;
  for (let i = 0; i < h.length; i += 2) s += `${h[i]}: ${h[i + 1]}\r\n`;
  return `${s}${extra}\r\n`;
}

/** A copy of a string in another string object (as a parser makes one per request). */
function fresh(s: string): string {
  return s.split('').join('');
}

it('each request head is its own line and headers, byte for byte, as the previous heads change in every way', () => {
  const memo = new HeadMemo(true);
  const base = ['Host', 'a.example:8080', 'Accept', '*/*', 'x-forwarded-for', '10.0.0.1', 'x-forwarded-proto', 'http', 'x-request-id', 'aaaaaaaa', 'traceparent', '00-aa-bb-01'];
  const steps: [string, string, string[]][] = [
    ['GET', '/echo', base],
    ['GET', '/echo', base], // the same strings
    ['GET', fresh('/echo'), base.map(fresh)], // equal text, other strings
    ['GET', '/echo', base.map((x, i) => (i === 9 ? 'bbbbbbbb' : x))], // an id of the same length
    ['GET', '/echo', base.map((x, i) => (i === 1 ? 'b.example:8080' : x))], // the first value, same length
    ['GET', '/echx', base], // the path, same length
    ['PUT', '/echo', base], // the method, same length
    ['GET', '/echo', base.map((x, i) => (i === 2 ? 'ACCEPT' : x))], // a name's case
    ['GET', '/echo', base.map((x, i) => (i === 2 ? 'ACCEPT' : x))],
    ['GET', '/echo', [...base, 'x-extra', '1']], // one more header
    ['GET', '/echo', base.slice(0, 8)], // fewer headers
    ['GET', '/echo', []], // none
    ['GET', '/echo', base],
    ['GET', '/echo', [base[2]!, base[3]!, base[0]!, base[1]!, ...base.slice(4)]], // moved
    ['GET', '/echo', base.map((x, i) => (i === 11 ? '00-aa-bc-01' : x))], // the last value
    ['GET', '/e', base], ['GET', '/echo?q=1', base], // another length
    ['GET', '/echo', base.map((x, i) => (i === 5 ? 'é\u00ff' : x))], // latin1 characters, one byte each
  ];
  for (const [i, [m, p, h]] of steps.entries()) {
    const list = [...h];
    const got = memo.head(m, p, list);
    expect(got.toString('latin1'), `step ${i}`).toBe(requestText(m, p, h));
    expect(got.length, `step ${i}`).toBe(requestText(m, p, h).length);
    list.fill('mutated'); // the caller's list is not kept
  }
  expect(memo.head('GET', '/echo', base, 'content-length: 3\r\n').toString('latin1')).toBe(requestText('GET', '/echo', base, 'content-length: 3\r\n'));
  expect(memo.head('GET', '/echo', base).toString('latin1')).toBe(requestText('GET', '/echo', base));
});

it('random sequences of heads, each a small change from the last, are each their own text', () => {
  const memo = new HeadMemo(true);
  const resp = new HeadMemo(false);
  let seed = 7;
  const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  const words = ['a', 'b', 'ab', 'ba', 'abc', 'cba', 'x-id', 'X-Id', '', '0123', '3210'];
  let method = 'GET', path = '/p';
  let h: string[] = ['Host', 'h', 'x-id', '0123'];
  for (let i = 0; i < 3000; i++) {
    switch (rnd(6)) {
      case 0: h[rnd(h.length) & ~1] = words[rnd(words.length)]!; break; // a name
      case 1: h[rnd(h.length) | 1] = fresh(words[rnd(words.length)]!); break; // a value
      case 2: h.push(words[rnd(words.length)]!, words[rnd(words.length)]!); break;
      case 3: if (h.length > 0) h = h.slice(0, h.length - 2); break;
      case 4: path = `/${words[rnd(words.length)]}`; method = rnd(2) === 0 ? 'GET' : 'PUT'; break;
      default: // unchanged
    }
    if (h.length === 0) h.push('Host', 'h');
    expect(memo.head(method, path, h).toString('latin1'), `head ${i}`).toBe(requestText(method, path, h));
    const status = rnd(3) === 0 ? 'HTTP/1.1 404 Not Found\r\n' : 'HTTP/1.1 200 OK\r\n';
    const extra = ['Connection: close\r\n', 'Connection: clos2\r\n', ''][rnd(3)]!;
    const after = ['', '5\r\n', '6\r\n', '0\r\n\r\n'][rnd(4)]!;
    const room = rnd(3);
    let want = status;
    for (let j = 0; j < h.length; j += 2) want += `${h[j]}: ${h[j + 1]}\r\n`;
    want += `${extra}\r\n${after}`;
    const got = resp.head(status, '', h, extra, after, room);
    expect(got.length, `response head ${i}`).toBe(want.length + room);
    expect(got.subarray(0, want.length).toString('latin1'), `response head ${i}`).toBe(want);
    got.fill(0x21, want.length); // the caller fills its room (and only that: the head may be the kept one)
  }
});

it('heads whose last headers change every time (ids), then an earlier header, then the ids again: each its own text', () => {
  const memo = new HeadMemo(true);
  const h = (host: string, id: string, tp: string): string[] => ['Host', host, 'x-forwarded-for', '10.0.0.1', 'x-request-id', id, 'traceparent', tp];
  const seq: string[][] = [];
  for (let i = 0; i < 6; i++) seq.push(h('a:1', `id-${i}`, `tp-${i}`)); // ids change on every head
  seq.push(h('b:1', 'id-9', 'tp-9')); // the Host too, same length
  for (let i = 0; i < 4; i++) seq.push(h('b:1', `id-${i}`, `tp-${i}`));
  seq.push(h('b:1', 'id-3', 'tp-4')); // only the last value
  seq.push(h('b:1', 'id-3', 'tp-4')); // nothing
  seq.push(['Host', 'b:1', 'x-forwarded-for', '10.0.0.2', 'x-request-id', 'id-5', 'traceparent', 'tp-5']); // before the ids, same length
  seq.push(['Host', 'b:1', 'x-forwarded-for', '10.0.0.2']); // fewer
  seq.push(h('b:1', 'id-6', 'tp-6'));
  for (const [i, list] of seq.entries()) expect(memo.head('GET', '/x', list).toString('latin1'), `head ${i}`).toBe(requestText('GET', '/x', list));
});

it('a head with only the headers kept after the changing ones were left out is written as itself, not as the kept bytes', () => {
  const memo = new HeadMemo(false);
  const line = 'HTTP/1.1 200 OK\r\n';
  const text = (h: string[], extra: string): string => { let s = line; for (let i = 0; i < h.length; i += 2) s += `${h[i]}: ${h[i + 1]}\r\n`; return `${s}${extra}\r\n`; };
  const seq: [string[], string][] = [
    [['Server', 's', 'x-id', '1'], 'E: 1\r\n'], [['Server', 's', 'x-id', '2'], 'E: 1\r\n'], [['Server', 's', 'x-id', '3'], 'E: 1\r\n'], // x-id changes every time
    [['Server', 's'], 'E: 1\r\n'], [['Server', 's'], 'E: 1\r\n'], [['Server', 's', 'x-id', '3'], 'E: 1\r\n'], [['Server', 's', 'x-id', '3'], 'E: 1\r\n'],
  ];
  for (const [i, [h, extra]] of seq.entries()) expect(memo.head(line, '', h, extra).toString('latin1'), `head ${i}`).toBe(text(h, extra));
});

it('a value that changes now and then (Date) stays kept: the heads between its changes are copies, written without a string', () => {
  const memo = new HeadMemo(false);
  const line = 'HTTP/1.1 200 OK\r\n';
  withLatin1Writes((writes) => {
    for (let second = 0; second < 4; second++) {
      const h = ['Server', 's', 'Date', `second ${second}`, 'Content-Length', '2'];
      const before = writes();
      for (let i = 0; i < 5; i++) expect(memo.head(line, '', h.map((x) => x.split('').join('')), 'C: k\r\n').toString('latin1')).toBe(`${line}Server: s\r\nDate: second ${second}\r\nContent-Length: 2\r\nC: k\r\n\r\n`);
      expect(writes() - before, `second ${second}`).toBe(1); // the head with the new Date; the four after it are copies
    }
  });
});

it('headers left out after changing twice in a row by chance (Dates around a second\'s turn, from responses made on either side of it) are kept again', () => {
  const memo = new HeadMemo(false);
  const line = 'HTTP/1.1 200 OK\r\n';
  withLatin1Writes((writes) => {
    const head = (date: string): Buffer => memo.head(line, '', ['Server', 's', 'Date', date, 'Content-Length', '2'], 'C: k\r\n');
    for (const d of ['second 1', 'second 2', 'second 1', 'second 2', 'second 1', 'second 2']) expect(head(d).toString('latin1')).toContain(`Date: ${d}\r\n`);
    for (let i = 0; i < 100; i++) expect(head('second 2').toString('latin1')).toBe(`${line}Server: s\r\nDate: second 2\r\nContent-Length: 2\r\nC: k\r\n\r\n`);
    const before = writes();
    for (let i = 0; i < 20; i++) head('second 2');
    expect(writes() - before).toBe(0);
  });
});
