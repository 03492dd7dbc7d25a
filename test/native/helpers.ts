/** Shared bits of the native tests: test objects, a per-run bpffs folder, packets. */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../common/version.js';
import { ensureBpffs } from '../../native/index.js';

/** build/bpf/test/NAME.bpf.o (compiled from bpf/test/NAME.bpf.c by `make bpf`). */
export function testObject(name: string): string {
  return join(projectRoot(), 'build', 'bpf', 'test', `${name}.bpf.o`);
}

/** A fresh /sys/fs/bpf/kernway-test-<pid>-<rand> folder (named so the lab sweep finds leftovers). */
export function makePinDir(): { dir: string; remove(): void } {
  const root = ensureBpffs();
  const dir = join(root, `kernway-test-${process.pid}-${Math.random().toString(36).slice(2, 7)}`);
  mkdirSync(dir);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

export function u64(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/** Sums a per-CPU u64 value (one 8-byte slot per possible CPU). */
export function sumPerCpu(v: Buffer): bigint {
  let s = 0n;
  for (let i = 0; i + 8 <= v.length; i += 8) s += v.readBigUInt64LE(i);
  return s;
}

/** RFC 1071 checksum. */
export function ipChecksum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length % 2) s += b[b.length - 1]! << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

/** Ethernet + IPv4 + UDP with a payload; checksums filled in (UDP checksum 0). */
export function udpPacket(opts: { dport: number; sport?: number; ttl?: number; payload?: Buffer; proto?: number }): Buffer {
  const payload = opts.payload ?? Buffer.from('kernway');
  const eth = Buffer.alloc(14);
  Buffer.from('020000000002', 'hex').copy(eth, 0); // dst MAC
  Buffer.from('020000000001', 'hex').copy(eth, 6); // src MAC
  eth.writeUInt16BE(0x0800, 12);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 8 + payload.length, 2);
  ip[8] = opts.ttl ?? 64;
  ip[9] = opts.proto ?? 17;
  Buffer.from([10, 244, 0, 2]).copy(ip, 12);
  Buffer.from([10, 244, 0, 3]).copy(ip, 16);
  ip.writeUInt16BE(ipChecksum(ip), 10);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(opts.sport ?? 40000, 0);
  udp.writeUInt16BE(opts.dport, 2);
  udp.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([eth, ip, udp, payload]);
}

/** What fn() throws (fails the test when it does not throw). */
export function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}
