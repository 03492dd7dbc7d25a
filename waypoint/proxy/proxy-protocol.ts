/**
 * PROXY protocol version 2 (haproxy.org/download/2.9/doc/proxy-protocol.txt): the binary
 * header a connection to the mesh port starts with. kernway reads only the original
 * destination from it (the Service's cluster IP and port); the source is taken from the
 * TCP peer, never from the header.
 */

export const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Largest header accepted (the 16-byte prefix plus addresses and TLVs). */
export const MAX_HEADER = 16 + 536;

export interface ProxyHeader {
  /** Bytes to skip before the application data. */
  length: number;
  command: 'LOCAL' | 'PROXY';
  family: 'inet' | 'inet6' | 'unix' | 'unspec';
  source: { address: string; port: number } | undefined;
  destination: { address: string; port: number } | undefined;
}

export type ParseResult =
  | { kind: 'more' }
  | { kind: 'error'; reason: string }
  | { kind: 'header'; header: ProxyHeader };

/** Parse the start of a connection; 'more' until 16 bytes and the announced length are in. */
export function parseProxyV2(buf: Buffer): ParseResult {
  const n = Math.min(buf.length, SIGNATURE.length);
  if (buf.subarray(0, n).compare(SIGNATURE.subarray(0, n)) !== 0) return { kind: 'error', reason: 'no PROXY protocol v2 signature' };
  if (buf.length < 16) return { kind: 'more' };
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return { kind: 'error', reason: `unsupported PROXY protocol version ${verCmd >> 4}` };
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return { kind: 'error', reason: `unknown PROXY protocol command ${cmd}` };
  const famProto = buf[13]!;
  const len = buf.readUInt16BE(14);
  if (16 + len > MAX_HEADER) return { kind: 'error', reason: `PROXY header too long (${len} bytes of addresses)` };
  if (buf.length < 16 + len) return { kind: 'more' };
  const header: ProxyHeader = { length: 16 + len, command: cmd === 0 ? 'LOCAL' : 'PROXY', family: 'unspec', source: undefined, destination: undefined };
  if (cmd === 0) return { kind: 'header', header };
  const family = famProto >> 4, proto = famProto & 0x0f;
  if (proto !== 1 && family !== 0) return { kind: 'error', reason: 'PROXY header transport is not TCP (STREAM)' };
  const body = buf.subarray(16, 16 + len);
  if (family === 1) {
    if (len < 12) return { kind: 'error', reason: 'PROXY header too short for IPv4 addresses' };
    header.family = 'inet';
    header.source = { address: ipv4(body, 0), port: body.readUInt16BE(8) };
    header.destination = { address: ipv4(body, 4), port: body.readUInt16BE(10) };
  } else if (family === 2) {
    if (len < 36) return { kind: 'error', reason: 'PROXY header too short for IPv6 addresses' };
    header.family = 'inet6';
    header.source = { address: ipv6(body, 0), port: body.readUInt16BE(32) };
    header.destination = { address: ipv6(body, 16), port: body.readUInt16BE(34) };
  } else if (family === 3) {
    header.family = 'unix';
  } else if (family !== 0) {
    return { kind: 'error', reason: `unknown PROXY address family ${family}` };
  }
  return { kind: 'header', header };
}

function ipv4(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

function ipv6(b: Buffer, o: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(o + 2 * i).toString(16));
  // Canonical form: the longest run of zero groups (2 or more) becomes '::'.
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best === -1) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Encode a PROXY v2 header for a TCP connection (what the kernel side writes; tests use it too). */
export function encodeProxyV2(src: { address: string; port: number }, dst: { address: string; port: number }): Buffer {
  const v6 = dst.address.includes(':');
  const len = v6 ? 36 : 12;
  const b = Buffer.alloc(16 + len);
  SIGNATURE.copy(b, 0);
  b[12] = 0x21; // version 2, PROXY
  b[13] = v6 ? 0x21 : 0x11; // inet6/inet, STREAM
  b.writeUInt16BE(len, 14);
  if (v6) {
    writeV6(b, 16, src.address); writeV6(b, 32, dst.address);
    b.writeUInt16BE(src.port, 48); b.writeUInt16BE(dst.port, 50);
  } else {
    writeV4(b, 16, src.address); writeV4(b, 20, dst.address);
    b.writeUInt16BE(src.port, 24); b.writeUInt16BE(dst.port, 26);
  }
  return b;
}

function writeV4(b: Buffer, o: number, a: string): void {
  const p = a.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`not an IPv4 address: ${a}`);
  p.forEach((x, i) => { b[o + i] = x; });
}

function writeV6(b: Buffer, o: number, a: string): void {
  const [head, tail] = a.includes('::') ? a.split('::') as [string, string] : [a, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) throw new Error(`not an IPv6 address: ${a}`);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), o + 2 * i));
}
