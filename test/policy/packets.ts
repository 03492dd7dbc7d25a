/** Test packets for BPF_PROG_TEST_RUN: Ethernet + IPv4/IPv6 (+ extension headers) + TCP/UDP. */
import { addrBytes } from '../../k8s/cidr.js';

export interface PacketSpec {
  src: string;
  dst: string;
  proto?: 'tcp' | 'udp';
  sport?: number;
  dport: number;
  syn?: boolean;
  ack?: boolean;
  /** IPv4: fragment offset in 8-byte units (a later fragment when > 0). */
  fragOffset?: number;
  /** IPv6: extension headers before the transport header (next-header numbers: 0 hop-by-hop, 60 dest options). */
  ext?: number[];
}

export function packet(p: PacketSpec): Buffer {
  const v6 = p.src.includes(':');
  const proto = p.proto === 'udp' ? 17 : 6;
  const l4 = Buffer.alloc(proto === 6 ? 20 : 8);
  l4.writeUInt16BE(p.sport ?? 40000, 0);
  l4.writeUInt16BE(p.dport, 2);
  if (proto === 6) {
    l4[12] = 5 << 4; // data offset
    l4[13] = (p.syn ?? true ? 0x02 : 0) | (p.ack ? 0x10 : 0);
    l4.writeUInt16BE(65535, 14);
  } else {
    l4.writeUInt16BE(8, 4);
  }
  const eth = Buffer.alloc(14);
  eth.fill(0xaa, 0, 6);
  eth.fill(0xbb, 6, 12);
  if (!v6) {
    eth.writeUInt16BE(0x0800, 12);
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + l4.length, 2);
    ip.writeUInt16BE((p.fragOffset ?? 0) & 0x1fff, 6);
    ip[8] = 64;
    ip[9] = proto;
    addrBytes(p.src)!.copy(ip, 12, 12, 16);
    addrBytes(p.dst)!.copy(ip, 16, 12, 16);
    return Buffer.concat([eth, ip, l4]);
  }
  eth.writeUInt16BE(0x86dd, 12);
  const exts: Buffer[] = [];
  const chain = [...(p.ext ?? []), proto];
  for (let i = 0; i < (p.ext ?? []).length; i++) {
    const h = Buffer.alloc(8);
    h[0] = chain[i + 1]!;
    h[1] = 0; // (hdrlen + 1) * 8 = 8 bytes
    h[2] = 1; h[3] = 4; // a PadN option filling the rest
    exts.push(h);
  }
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  const payload = Buffer.concat([...exts, l4]);
  ip.writeUInt16BE(payload.length, 4);
  ip[6] = chain[0]!;
  ip[7] = 64;
  addrBytes(p.src)!.copy(ip, 8);
  addrBytes(p.dst)!.copy(ip, 24);
  return Buffer.concat([eth, ip, payload]);
}
