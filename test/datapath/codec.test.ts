import { describe, expect, it } from 'vitest';
import { canonicalAddr, encodeAddr, readAddr } from '../../agent/datapath/addr.js';
import {
  decodeBackend, decodeSlotKey, decodeSvcKey, decodeSvcStatsPerCpu, decodeSvcVal, sumSvcStatPerCpu, decodeMaglevTable,
  encodeBackend, encodeMaglevTable, encodeSlotKey, encodeSvcKey, encodeSvcVal, IPPROTO_TCP, IPPROTO_UDP,
} from '../../agent/datapath/codec.js';

describe('addresses', () => {
  it('writes IPv4 as IPv4-mapped IPv6 in network order', () => {
    expect(encodeAddr('10.96.0.10').toString('hex')).toBe('00000000000000000000ffff0a60000a');
  });
  it('parses IPv6 forms', () => {
    expect(encodeAddr('fd00:244::2').toString('hex')).toBe('fd000244000000000000000000000002');
    expect(encodeAddr('::1').toString('hex')).toBe('00000000000000000000000000000001');
    expect(encodeAddr('::').toString('hex')).toBe('0'.repeat(32));
    expect(encodeAddr('1:2:3:4:5:6:7:8').toString('hex')).toBe('00010002000300040005000600070008');
    expect(encodeAddr('::ffff:10.0.0.1').toString('hex')).toBe('00000000000000000000ffff0a000001');
    expect(encodeAddr('64:ff9b::192.0.2.33').toString('hex')).toBe('0064ff9b0000000000000000c0000221');
  });
  it('reads back canonical text', () => {
    for (const ip of ['10.96.0.10', 'fd00:244::2', '::1', '::', '1:2:3:4:5:6:7:8', 'fd00::1:0:0:5', '2001:db8::']) {
      expect(readAddr(encodeAddr(ip))).toBe(ip);
    }
    expect(canonicalAddr('FD00:0244:0000::0002')).toBe('fd00:244::2');
    expect(canonicalAddr('::ffff:10.0.0.1')).toBe('10.0.0.1');
  });
  it('rejects what is not an address', () => {
    expect(() => encodeAddr('10.96.0')).toThrow(/address/);
    expect(() => encodeAddr('svc.local')).toThrow(/address/);
  });
});

describe('struct codecs (layout of bpf/include/lb.h)', () => {
  it('kw_svc_key: addr[16], be16 port, proto, pad', () => {
    const b = encodeSvcKey({ vip: '10.96.0.10', port: 53, proto: IPPROTO_UDP });
    expect(b.length).toBe(20);
    expect(b.subarray(16).toString('hex')).toBe('00351100');
    expect(decodeSvcKey(b)).toEqual({ vip: '10.96.0.10', port: 53, proto: IPPROTO_UDP });
  });
  it('kw_svc_val: count, set_id, svc_id, flags, pad, affinity_timeout (host order)', () => {
    const v = { count: 3, setId: 0x01020304, svcId: 7, flags: 3, affinityTimeout: 10800 };
    const b = encodeSvcVal(v);
    expect(b.toString('hex')).toBe('03000000' + '04030201' + '07000000' + '0300' + '0000' + '302a0000');
    expect(decodeSvcVal(b)).toEqual(v);
  });
  it('kw_slot_key and kw_backend', () => {
    expect(decodeSlotKey(encodeSlotKey({ setId: 9, slot: 2 }))).toEqual({ setId: 9, slot: 2 });
    const be = { ip: 'fd00:244::3', port: 8080, proto: IPPROTO_TCP, svcId: 12 };
    const b = encodeBackend(be);
    expect(b.length).toBe(24);
    expect(b.subarray(16).toString('hex')).toBe('1f9006000c000000');
    expect(decodeBackend(b)).toEqual(be);
  });
  it('kw_svc_stats sums CPUs', () => {
    const b = Buffer.alloc(32);
    b.writeBigUInt64LE(5n, 0); b.writeBigUInt64LE(1n, 8); b.writeBigUInt64LE(7n, 16); b.writeBigUInt64LE(2n, 24);
    expect(decodeSvcStatsPerCpu(b)).toEqual({ balanced: 12n, refused: 3n });
    expect(sumSvcStatPerCpu(b, 'balanced')).toBe(12);
    expect(sumSvcStatPerCpu(b, 'refused')).toBe(3);
  });
  it('kw_svc_stats summed as numbers: both halves of each u64, as Number() of the BigInt sum', () => {
    const b = Buffer.alloc(48);
    const v = [2n ** 40n + 3n, 0xffffffffn, 2n ** 52n, 1n, 0x1_0000_0001n, 0n];
    v.forEach((x, i) => b.writeBigUInt64LE(x, i * 8));
    const st = decodeSvcStatsPerCpu(b);
    expect(sumSvcStatPerCpu(b, 'balanced')).toBe(Number(st.balanced));
    expect(sumSvcStatPerCpu(b, 'refused')).toBe(Number(st.refused));
    expect(sumSvcStatPerCpu(Buffer.alloc(0), 'balanced')).toBe(0);
  });
  it('kw_maglev_table round-trips', () => {
    const t = Uint32Array.from([1, 2, 0xffffffff, 4]);
    expect(decodeMaglevTable(encodeMaglevTable(t))).toEqual(t);
  });
});

describe('IPv4 parsing edge cases', () => {
  it('rejects leading zeros, big octets, wrong counts', () => {
    for (const bad of ['010.0.0.1', '256.0.0.1', '1.2.3', '1.2.3.4.5', '1..2.3', '1.2.3.', 'a.b.c.d', '1.2.3.4 ']) {
      expect(() => encodeAddr(bad)).toThrow(/address/);
    }
    expect(encodeAddr('0.0.0.0').subarray(12).toString('hex')).toBe('00000000');
    expect(encodeAddr('255.255.255.255').subarray(12).toString('hex')).toBe('ffffffff');
  });
});
