/**
 * The access-log line is users' contract (issue 16): the writer that copies the fields
 * that repeat from kept bytes (access-log.ts: the text before the method once per
 * millisecond; protocol and status, route, rule and destination, source, address and
 * parent for the last values seen) writes every line byte for byte as the writer before it
 * did (kept below as the reference, with the time given), field by field, for tricky
 * values: quotes, backslashes, control characters, DEL, non-ASCII and lone surrogates,
 * empty and missing fields, numbers at their edges, lines too long for the batch buffer,
 * and each kept field changing alone from one line to the next.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it, vi } from 'vitest';
import { AccessLog, type AccessEntry, type AccessRecord } from '../../waypoint/observe/access-log.js';
import { continueTrace, lastIdAt, lastIdBytes, requestId } from '../../waypoint/observe/trace.js';

const dir = mkdtempSync(join(tmpdir(), 'kw-access-log-bytes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// ---- The previous writer (before the fragments), kept here as the reference, with the time given.
function putLatin1(b: Buffer, o: number, s: string): number {
  for (let i = 0; i < s.length; i++) b[o + i] = s.charCodeAt(i);
  return o + s.length;
}
function raw(b: Buffer, o: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 127) return o + b.write(s, o);
    b[o + i] = c;
  }
  return o + s.length;
}
function json(b: Buffer, o: number, s: string): number {
  b[o] = 34;
  let p = o + 1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 32 || c > 126 || c === 34 || c === 92) return o + b.write(JSON.stringify(s), o);
    b[p++] = c;
  }
  b[p] = 34;
  return p + 1;
}
function putMs(b: Buffer, o: number, ms: number): number {
  const us = Math.round(ms * 1000);
  if (!(us >= 0 && us < 1e12) || us / 1000 !== ms) return putLatin1(b, o, String(ms));
  const whole = Math.floor(us / 1000);
  let frac = us - whole * 1000;
  o = putLatin1(b, o, String(whole));
  if (frac === 0) return o;
  b[o++] = 46;
  let digits = 3;
  while (frac % 10 === 0) { frac /= 10; digits--; }
  for (let d = digits - 1, p = 10 ** d; d >= 0; d--, p /= 10) {
    const q = Math.floor(frac / p);
    b[o++] = 48 + q;
    frac -= q * p;
  }
  return o;
}
function previousLine(r: AccessRecord, time: string): Buffer {
  const b = Buffer.alloc(1 << 20);
  let o = 0;
  o = putLatin1(b, o, '{"level":30,"time":');
  o = putLatin1(b, o, time);
  o = putLatin1(b, o, ',"name":"kernway-waypoint-access","msg":"request","method":');
  o = json(b, o, r.method);
  o = putLatin1(b, o, ',"path":');
  o = json(b, o, r.path);
  o = putLatin1(b, o, ',"protocol":"');
  o = raw(b, o, r.protocol);
  o = putLatin1(b, o, '","status":');
  o = putLatin1(b, o, String(r.status));
  o = putLatin1(b, o, ',"durationMs":');
  o = putMs(b, o, r.durationMs);
  o = putLatin1(b, o, ',"route":');
  o = json(b, o, r.route);
  o = putLatin1(b, o, ',"rule":');
  o = json(b, o, r.rule);
  o = putLatin1(b, o, ',"destination":');
  o = json(b, o, r.destination);
  if (r.upstream !== undefined) { o = putLatin1(b, o, ',"upstream":"'); o = raw(b, o, r.upstream); b[o++] = 34; }
  o = putLatin1(b, o, ',"source":');
  o = json(b, o, r.source);
  o = putLatin1(b, o, ',"sourceAddress":"');
  o = raw(b, o, r.sourceAddress);
  o = putLatin1(b, o, '","parent":');
  o = json(b, o, r.parent);
  o = putLatin1(b, o, ',"bytesIn":');
  o = putLatin1(b, o, String(r.bytesIn));
  o = putLatin1(b, o, ',"bytesOut":');
  o = putLatin1(b, o, String(r.bytesOut));
  o = putLatin1(b, o, ',"traceId":"');
  o = raw(b, o, r.traceId);
  o = putLatin1(b, o, '","spanId":"');
  o = raw(b, o, r.spanId);
  o = putLatin1(b, o, '","requestId":');
  o = json(b, o, r.requestId);
  if (r.userAgent !== undefined) { o = putLatin1(b, o, ',"userAgent":'); o = json(b, o, r.userAgent); }
  if (r.reason !== undefined) { o = putLatin1(b, o, ',"reason":"'); o = raw(b, o, r.reason); b[o++] = 34; }
  if (r.responseFlags !== undefined) { o = putLatin1(b, o, ',"responseFlags":"'); o = raw(b, o, r.responseFlags); b[o++] = 34; }
  o = putLatin1(b, o, ',"attempts":');
  o = putLatin1(b, o, String(r.attempts));
  b[o++] = 125;
  b[o++] = 10;
  return Buffer.from(b.subarray(0, o));
}

const tricky = ['', 'plain', 'quote"in', 'back\\slash', 'tab\there', 'nl\nand\rcr', '\u0000\u001f', 'del\u007f', 'é', 'ünïcödé/日本', 'emoji 😀', 'lone \ud800 surrogate', 'lone \udc00 low', '</script>', 'x'.repeat(300), 'é'.repeat(300)];

function record(i: number): AccessRecord {
  const t = (k: number): string => tricky[(i * 7 + k * 3) % tricky.length]!;
  const durations = [0, 0.001, 0.5, 1.234, 12, 12.5, 999.999, 1e6 + 0.25, -1, 0.0001, 1.23456, Number.NaN, 1e21];
  const ints = [0, 1, 9, 10, 99, 100, 499, 1023, 65536, 2 ** 40, 2 ** 53 - 1, 1.5, -3];
  return {
    method: i % 5 === 0 ? t(0) : 'GET', path: `/${t(1)}/${i}`, protocol: i % 3 === 0 ? 'HTTP/2' : i % 17 === 0 ? t(2) : 'HTTP/1.1',
    status: ints[i % ints.length]!, durationMs: durations[i % durations.length]!,
    route: i % 4 === 0 ? t(3) : `ns/route-${i % 300}`, rule: String(i % 3), destination: i % 6 === 0 ? t(4) : 'ns/web',
    upstream: i % 9 === 0 ? undefined : i % 4 === 1 ? t(5) : `10.0.${i % 290}.1:8080`, source: i % 8 === 0 ? t(6) : 'ns/caller',
    sourceAddress: i % 10 === 0 ? t(7) : `10.1.0.${i % 300}`, parent: i % 11 === 0 ? t(8) : 'ns/gw/http',
    bytesIn: ints[(i + 3) % ints.length]!, bytesOut: ints[(i + 5) % ints.length]!, traceId: i % 13 === 0 ? t(9) : 'a'.repeat(32),
    spanId: 'b'.repeat(16), requestId: i % 7 === 0 ? t(10) : `r-${i}`, userAgent: i % 5 === 1 ? undefined : i % 3 === 0 ? t(11) : `agent/${i % 400}`,
    reason: i % 6 === 2 ? t(12) : undefined, attempts: ints[(i + 1) % ints.length]!, responseFlags: i % 8 === 3 ? t(13) : undefined,
  };
}

it('every line is byte for byte what the previous writer wrote, for tricky values', async () => {
  const file = join(dir, 'bytes.log');
  const log = new AccessLog({ file });
  const recs = Array.from({ length: 3000 }, (_, i) => record(i));
  for (const r of recs) log.write(r);
  for (const r of recs.slice(0, 500)) log.write(r); // the same values again
  await log.close();
  const got = readFileSync(file);
  const all = [...recs, ...recs.slice(0, 500)];
  let o = 0;
  for (let i = 0; i < all.length; i++) {
    // Raw fields (addresses, ids) are written as they are, a newline too: lines are cut by the reference's length.
    const time = /^\{"level":30,"time":(\d+),/.exec(got.subarray(o, o + 40).toString('latin1'))?.[1];
    expect(time, `line ${i}'s time`).toBeDefined();
    const want = previousLine(all[i]!, time!);
    const line = got.subarray(o, o + want.length);
    if (!line.equals(want)) expect(line.toString('utf8'), `line ${i}`).toBe(want.toString('utf8'));
    expect(line.equals(want), `line ${i} bytes`).toBe(true);
    o += want.length;
  }
  expect(o).toBe(got.length);
});

it('a field that changes alone from one line to the next is written anew (the kept fragments are per value, not per route)', async () => {
  const file = join(dir, 'alone.log');
  const log = new AccessLog({ file });
  const base = record(1);
  const changes: Partial<AccessRecord>[] = [
    {}, { protocol: 'HTTP/2' }, { status: 503 }, { route: 'ns/other' }, { rule: '7' }, { destination: 'ns/db' },
    { source: 'ns/else' }, { sourceAddress: '10.9.9.9' }, { parent: 'ns/gw/https' }, {}, { rule: '8' }, { status: 200 },
    // Too long for the batch buffer (written as one string), then short again.
    { path: `/${'q"é'.repeat(4000)}`, route: 'ns/long' }, { path: '/short' }, { durationMs: 12.5 },
  ];
  const recs: AccessRecord[] = [];
  let r = base;
  for (const c of changes) { r = { ...r, ...c }; recs.push(r); }
  for (const x of recs) log.write(x);
  await log.close();
  expectLines(readFileSync(file), recs);
});

it('each line carries the millisecond it was written in', async () => {
  const file = join(dir, 'time.log');
  const log = new AccessLog({ file });
  const windows: [number, number][] = [];
  for (let i = 0; i < 5; i++) {
    const before = Date.now();
    log.write(record(i + 1));
    windows.push([before, Date.now()]);
    await new Promise((r) => setTimeout(r, 3));
  }
  await log.close();
  const times = [...readFileSync(file, 'latin1').matchAll(/^\{"level":30,"time":(\d+),"name"/gm)].map((m) => Number(m[1]));
  expect(times).toHaveLength(5);
  times.forEach((t, i) => {
    expect(t, `line ${i}`).toBeGreaterThanOrEqual(windows[i]![0]);
    expect(t, `line ${i}`).toBeLessThanOrEqual(windows[i]![1]);
  });
});

/** Lines cut from a file by the reference writer's lengths, each checked byte for byte. */
function expectLines(got: Buffer, recs: AccessRecord[]): void {
  let o = 0;
  for (let i = 0; i < recs.length; i++) {
    const time = /^\{"level":30,"time":(\d+),/.exec(got.subarray(o, o + 40).toString('latin1'))?.[1];
    expect(time, `line ${i}'s time`).toBeDefined();
    const want = previousLine(recs[i]!, time!);
    expect(got.subarray(o, o + want.length).toString('utf8'), `line ${i}`).toBe(want.toString('utf8'));
    o += want.length;
  }
  expect(o).toBe(got.length);
}

it('ids the waypoint made are copied from their bytes, and read as strings otherwise: the same line either way', async () => {
  const file = join(dir, 'ids.log');
  const log = new AccessLog({ file });
  const recs: AccessRecord[] = [];
  // Enough ids to refill the pool several times (512 ids a pool), traces continued and new, request ids made and given.
  for (let i = 0; i < 3000; i++) {
    const r = record(i);
    const trace = continueTrace(i % 3 === 0 ? `00-${'c'.repeat(31)}${i % 10}-${'d'.repeat(16)}-01` : undefined);
    let requestIdHex: Uint8Array | undefined;
    let requestIdAt = -1;
    let rid = r.requestId;
    if (i % 4 !== 0) { rid = requestId(); requestIdHex = lastIdBytes(); requestIdAt = lastIdAt(); }
    const rec: AccessRecord = { ...r, traceId: trace.traceId, spanId: trace.spanId, requestId: rid };
    recs.push(rec);
    const e: AccessEntry = {
      method: rec.method, path: rec.path, protocol: rec.protocol, route: rec.route, rule: rec.rule, destination: rec.destination, upstream: rec.upstream,
      source: rec.source, parent: rec.parent, bytesIn: rec.bytesIn, bytesOut: rec.bytesOut, trace, requestId: rid, requestIdHex, requestIdAt,
      userAgent: rec.userAgent, reason: rec.reason, attempts: rec.attempts, flags: rec.responseFlags, conn: { peerAddress: rec.sourceAddress },
    };
    log.request(e, rec.status, rec.durationMs);
  }
  await log.close();
  expectLines(readFileSync(file), recs);
});

it('the time digits, moved on in place, are String(Date.now()) at every step (carries, jumps, a clock going back)', async () => {
  const file = join(dir, 'clock.log');
  const steps = [1_799_999_999_990, 1_799_999_999_991, 1_799_999_999_999, 1_800_000_000_000, 1_800_000_000_000, 1_800_000_000_009, 1_800_000_000_010,
    1_800_000_999_999, 1_800_001_999_998, 1_800_002_000_000, 1_800_001_000_000, 1_799_999_999_999, 1_800_000_000_001, 9_999_999_999_999, 10_000_000_000_001,
    10_000_000_000_002, 99_999_999_999];
  let i = 0;
  const now = vi.spyOn(Date, 'now').mockImplementation(() => steps[Math.min(i, steps.length - 1)]!);
  try {
    const log = new AccessLog({ file });
    const recs: AccessRecord[] = [];
    for (; i < steps.length; i++) { const r = record(1); recs.push(r); log.write(r); }
    await log.close();
    const got = readFileSync(file);
    expect([...got.toString('latin1').matchAll(/^\{"level":30,"time":(\d+),"name"/gm)].map((m) => Number(m[1]))).toEqual(steps);
    expectLines(got, recs);
  } finally {
    now.mockRestore();
  }
});

it('the line\'s kept segments: every field of each changing alone, to a value of the same length, is written anew', async () => {
  const file = join(dir, 'segments.log');
  const log = new AccessLog({ file });
  const base: AccessRecord = { ...record(2), method: 'GET', path: '/echo', protocol: 'HTTP/1.1', status: 200, route: 'ns/r1', rule: '0', destination: 'ns/web',
    upstream: '10.0.0.1:8080', source: 'ns/caller', sourceAddress: '10.1.0.1', parent: 'ns/gw/http', bytesIn: 10, bytesOut: 11,
    userAgent: 'agent/1', reason: undefined, responseFlags: undefined, attempts: 1 };
  // Each change is kept for the lines after it; every one is followed by a repeat of the same values (the kept bytes used).
  const changes: Partial<AccessRecord>[] = [
    {}, { method: 'PUT' }, { method: 'GET' }, { path: '/echx' }, { path: '/ech"' }, { protocol: 'HTTP/1.0' }, { status: 201 },
    { route: 'ns/r2' }, { rule: '1' }, { destination: 'ns/wex' }, { upstream: '10.0.0.2:8080' }, { upstream: undefined }, { upstream: '10.0.0.2:8080' },
    { source: 'ns/callex' }, { sourceAddress: '10.1.0.2' }, { parent: 'ns/gw/htts' }, { bytesIn: 12 }, { bytesOut: 13 }, { bytesIn: 0 }, { bytesOut: 0 },
    { userAgent: 'agent/2' }, { userAgent: undefined }, { userAgent: 'agent/2' }, { reason: 'no_route' }, { reason: 'no_rout2' }, { reason: undefined },
    { responseFlags: 'UH' }, { responseFlags: 'UO' }, { responseFlags: undefined }, { attempts: 2 }, { attempts: 0 },
    { traceId: 'c'.repeat(32), spanId: 'd'.repeat(16), requestId: 'r-x' }, { requestId: 'r-y' }, { durationMs: 3.5 },
  ];
  const recs: AccessRecord[] = [];
  let r = base;
  for (const c of changes) { r = { ...r, ...c }; recs.push(r, { ...r }); }
  // Equal text in other string objects (as a parser makes them per request) is the same field.
  recs.push({ ...r, path: ['/', 'echo'].join(''), userAgent: ['agent', '/2'].join('') });
  for (const x of recs) log.write(x);
  await log.close();
  expectLines(readFileSync(file), recs);
});
