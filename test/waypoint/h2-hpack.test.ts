/**
 * The waypoint's own HPACK (waypoint/proxy/h2-hpack.ts): the examples of RFC 7541
 * Appendix C (requests with and without Huffman, the dynamic table entry by entry,
 * eviction), the canonical Huffman codes against the RFC's table, every byte through
 * the Huffman coder and back, the errors a malformed block must give, the size limits,
 * and the encoder's output read back by the decoder.
 */
import { describe, expect, it } from 'vitest';
import { DECODED_OK, DECODED_TOO_LARGE, encodeHead, HpackDecoder, HpackError, HUFFMAN_CODES, HUFFMAN_LENGTHS, huffmanDecode, huffmanEncode } from '../../waypoint/proxy/h2-hpack.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function decode(d: HpackDecoder, block: Buffer, max = 1 << 20): string[] {
  const out: string[] = [];
  expect(d.decode(block, 0, block.length, out, max)).toBe(DECODED_OK);
  return out;
}

describe('Huffman code (RFC 7541 Appendix B)', () => {
  it('the canonical codes built from the lengths are the RFC\'s', () => {
    // A few rows of Appendix B: symbol, code, length.
    for (const [sym, code, len] of [[0, 0x1ff8, 13], [1, 0x7fffd8, 23], [32, 0x14, 6], [48, 0x0, 5], [97, 0x3, 5], [101, 0x5, 5], [65, 0x21, 6],
      [255, 0x3ffffee, 26], [256, 0x3fffffff, 30], [10, 0x3ffffffc, 30], [36, 0x1ff9, 13], [123, 0x7ffe, 15]] as const) {
      expect([HUFFMAN_CODES[sym], HUFFMAN_LENGTHS[sym]]).toEqual([code, len]);
    }
  });

  it('every byte value goes through and back', () => {
    let all = '';
    for (let i = 0; i < 256; i++) all += String.fromCharCode(i);
    const e = huffmanEncode(all);
    expect(huffmanDecode(e, 0, e.length)).toBe(all);
    for (const s of ['', 'a', 'www.example.com', 'no-cache', 'custom-key', 'Mon, 21 Oct 2013 20:13:21 GMT', '\xff\xfe\x00']) {
      const b = huffmanEncode(s);
      expect(huffmanDecode(b, 0, b.length)).toBe(s);
    }
  });

  it('the RFC\'s encodings decode', () => {
    expect(huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff'), 0, 12)).toBe('www.example.com');
    expect(huffmanDecode(hex('a8eb 1064 9cbf'), 0, 6)).toBe('no-cache');
  });

  it('padding longer than 7 bits, padding not all ones, and EOS are errors', () => {
    // 'a' (00011) + 11 bits of ones: more than 7 bits of padding.
    expect(() => huffmanDecode(hex('1fff'), 0, 2)).toThrow(HpackError);
    // 'a' then 000 as padding.
    expect(() => huffmanDecode(hex('18'), 0, 1)).toThrow(HpackError);
    // EOS (30 ones) inside the string.
    expect(() => huffmanDecode(hex('ffffffff'), 0, 4)).toThrow(HpackError);
  });
});

describe('decoder (RFC 7541 Appendix C)', () => {
  it('C.3: requests without Huffman, the dynamic table growing', () => {
    const d = new HpackDecoder();
    expect(decode(d, hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'))).toEqual([':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com']);
    expect(d.tableBytes).toBe(57);
    expect(decode(d, hex('8286 84be 5808 6e6f 2d63 6163 6865'))).toEqual([':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com', 'cache-control', 'no-cache']);
    expect(d.tableBytes).toBe(110);
    expect(decode(d, hex('8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65'))).toEqual([
      ':method', 'GET', ':scheme', 'https', ':path', '/index.html', ':authority', 'www.example.com', 'custom-key', 'custom-value']);
    expect(d.tableBytes).toBe(164);
  });

  it('C.4: the same requests with Huffman', () => {
    const d = new HpackDecoder();
    expect(decode(d, hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'))).toEqual([':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com']);
    expect(decode(d, hex('8286 84be 5886 a8eb 1064 9cbf'))).toEqual([':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com', 'cache-control', 'no-cache']);
    expect(decode(d, hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'))).toEqual([
      ':method', 'GET', ':scheme', 'https', ':path', '/index.html', ':authority', 'www.example.com', 'custom-key', 'custom-value']);
    expect(d.tableBytes).toBe(164);
  });

  it('C.5: responses with a 256-byte table, entries evicted', () => {
    const d = new HpackDecoder(4096);
    // A size update to 256 first (the RFC's example runs with a 256-byte table).
    const upd = hex('3fe1 01');
    const r1 = Buffer.concat([upd, hex('4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d')]);
    expect(decode(d, r1)).toEqual([':status', '302', 'cache-control', 'private', 'date', 'Mon, 21 Oct 2013 20:13:21 GMT', 'location', 'https://www.example.com']);
    expect(d.tableBytes).toBe(222);
    expect(decode(d, hex('4803 3330 37c1 c0bf'))).toEqual([':status', '307', 'cache-control', 'private', 'date', 'Mon, 21 Oct 2013 20:13:21 GMT', 'location', 'https://www.example.com']);
    expect(d.tableBytes).toBe(222);
    const r3 = hex('88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31');
    expect(decode(d, r3)).toEqual([':status', '200', 'cache-control', 'private', 'date', 'Mon, 21 Oct 2013 20:13:22 GMT', 'location', 'https://www.example.com',
      'content-encoding', 'gzip', 'set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1']);
    expect(d.tableBytes).toBe(215);
  });

  it('malformed blocks are HpackErrors', () => {
    const bad = ['80', 'ff', 'bf', '3fe2 1f', '82 20', '40 05 61', '00 81 ff', '7fffffffffff0f', '40 85 ffffffffff 00', '0f'];
    for (const h of bad) {
      const d = new HpackDecoder();
      const b = hex(h);
      expect(() => d.decode(b, 0, b.length, [], 1 << 20), h).toThrow(HpackError);
    }
  });

  it('a table size update above the advertised 4096 is an error; one below evicts', () => {
    const d = new HpackDecoder(4096);
    expect(() => d.decode(hex('3fe2 1f'), 0, 3, [], 1 << 20)).toThrow(HpackError);
    const d2 = new HpackDecoder(4096);
    decode(d2, hex('4003 6162 6303 7878 78'));
    expect(d2.tableBytes).toBe(38);
    decode(d2, hex('20'));
    expect(d2.tableBytes).toBe(0);
    expect(() => d2.decode(hex('be'), 0, 1, [], 1 << 20)).toThrow(HpackError);
  });

  it('a list above the limit is decoded to its end (the table stays in step) and reported too large', () => {
    const d = new HpackDecoder();
    // abc: 'x' * 200 (over a 100-byte list), then def: y, both with incremental indexing.
    const long = 'x'.repeat(200);
    const b2 = Buffer.concat([hex('4003 616263'), Buffer.from([0x7f, 200 - 127]), Buffer.from(long, 'latin1'), hex('4003 646566 0179')]);
    const out: string[] = [];
    expect(d.decode(b2, 0, b2.length, out, 100)).toBe(DECODED_TOO_LARGE);
    // Both entries were added: the next block can refer to them.
    expect(decode(d, hex('be bf'))).toEqual(['def', 'y', 'abc', long]);
  });

  it('reads what the encoder writes: static names, literal names, statuses in and out of the table', () => {
    const out = Buffer.alloc(4096);
    const list = ['content-type', 'text/plain', 'x-custom', 'v'.repeat(300), 'set-cookie', 'a=1', 'set-cookie', 'b=2', 'grpc-status', '0'];
    for (const status of ['200', '404', '418', '503', '']) {
      const n = encodeHead(out, 0, status, list);
      const got = decode(new HpackDecoder(), out.subarray(0, n));
      expect(got).toEqual(status === '' ? list : [':status', status, ...list]);
    }
  });
});
