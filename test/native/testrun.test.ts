/** BPF_PROG_TEST_RUN of a tc program: hand-built packets in, verdict and packet out. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../common/errors.js';
import { BpfObject, type BpfProgram } from '../../native/index.js';
import { ipChecksum, testObject, udpPacket } from './helpers.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

let obj: BpfObject;
let filter: BpfProgram;
beforeAll(async () => {
  obj = BpfObject.open(testObject('tc_filter'), { rodata: { kw_drop_port: 9, kw_ttl_port: 53 } });
  await obj.load();
  filter = obj.program('kw_t_filter');
});
afterAll(() => obj?.close());

const ipHeader = (p: Buffer): Buffer => p.subarray(14, 34);

describe('BpfProgram.testRun (tc)', () => {
  const cases: Array<{ what: string; packet: Buffer; verdict: number; out: (input: Buffer) => Buffer }> = [
    { what: 'UDP to the drop port is shot', packet: udpPacket({ dport: 9 }), verdict: TC_ACT_SHOT, out: (p) => p },
    { what: 'UDP to another port passes untouched', packet: udpPacket({ dport: 80 }), verdict: TC_ACT_OK, out: (p) => p },
    { what: 'TCP (proto 6) to port 9 passes', packet: udpPacket({ dport: 9, proto: 6 }), verdict: TC_ACT_OK, out: (p) => p },
    {
      what: 'UDP to the TTL port passes with TTL - 1 and a valid IP checksum',
      packet: udpPacket({ dport: 53, ttl: 64 }),
      verdict: TC_ACT_OK,
      out: () => udpPacket({ dport: 53, ttl: 63 }),
    },
    { what: 'TTL 1 is left alone', packet: udpPacket({ dport: 53, ttl: 1 }), verdict: TC_ACT_OK, out: (p) => p },
    { what: 'a truncated UDP header passes', packet: udpPacket({ dport: 9 }).subarray(0, 38), verdict: TC_ACT_OK, out: (p) => p },
  ];
  for (const c of cases) {
    it(c.what, () => {
      const r = filter.testRun({ data: c.packet });
      expect(r.retval).toBe(c.verdict);
      expect(r.data.toString('hex')).toBe(c.out(c.packet).toString('hex'));
      if (r.data.length >= 34) expect(ipChecksum(ipHeader(r.data))).toBe(0);
    });
  }

  it('repeats and reports the mean duration', () => {
    const r = filter.testRun({ data: udpPacket({ dport: 9 }), repeat: 100 });
    expect(r.retval).toBe(TC_ACT_SHOT);
    expect(r.durationNs).toBeGreaterThanOrEqual(0);
  });

  it('rodata chooses the ports', async () => {
    const other = BpfObject.open(testObject('tc_filter'), { rodata: { kw_drop_port: 7777 } });
    try {
      await other.load();
      const p = other.program('kw_t_filter');
      expect(p.testRun({ data: udpPacket({ dport: 9 }) }).retval).toBe(TC_ACT_OK);
      expect(p.testRun({ data: udpPacket({ dport: 7777 }) }).retval).toBe(TC_ACT_SHOT);
    } finally {
      other.close();
    }
  });

  it('bad input is caught before the kernel', () => {
    const err = (fn: () => unknown): InvalidArgumentError => {
      try { fn(); } catch (e) { return e as InvalidArgumentError; }
      throw new Error('expected an error');
    };
    expect(err(() => filter.testRun({ data: Buffer.alloc(10) })).path).toBe('opts.data');
    expect(err(() => filter.testRun({ data: 'x' as never })).path).toBe('opts.data');
    expect(err(() => filter.testRun({ data: udpPacket({ dport: 1 }), repeat: 0 })).path).toBe('opts.repeat');
    expect(err(() => filter.testRun({ data: udpPacket({ dport: 1 }), reps: 2 } as never)).path).toBe('opts.reps');
  });
});
