/**
 * HeadMemo (waypoint/proxy/h1-head.ts) copies the bytes of the part of a head that is the
 * same as the previous head's: every head must still be exactly the head of its own line
 * and headers, whatever changed since the last one (a value of the same length, a name's
 * case, a header added, removed or moved, the line), and never the previous one's.
 */
import { expect, it } from 'vitest';
import { HeadMemo } from '../../waypoint/proxy/h1-head.js';

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
    const extra = rnd(2) === 0 ? 'Connection: close\r\n' : '';
    let want = status;
    for (let j = 0; j < h.length; j += 2) want += `${h[j]}: ${h[j + 1]}\r\n`;
    expect(resp.head(status, '', h, extra).toString('latin1'), `response head ${i}`).toBe(`${want}${extra}\r\n`);
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
