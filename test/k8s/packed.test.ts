/**
 * k8s/packed.ts: endpoints and backends packed into one-byte strings read back exactly as
 * they went in — canonical IPv6 text (k8s/ip.ts parseIP's, RFC 5952), conditions, node names.
 */
import { describe, expect, it } from 'vitest';
import { parseIP } from '../../k8s/ip.js';
import { PackedBackends, PackedEndpoints } from '../../k8s/packed.js';
import type { Endpoint } from '../../k8s/types.js';

const canon = (s: string): string => parseIP(s)!.ip;

/** A random IPv6 address with runs of zero groups (where compression is decided). */
function randomV6(r: () => number): string {
  const g: string[] = [];
  for (let i = 0; i < 8; i++) g.push(r() < 0.45 ? '0' : Math.floor(r() * 0x10000).toString(16));
  return canon(g.join(':'));
}

function rng(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

describe('PackedEndpoints', () => {
  it('gives back IPv4 endpoints, their conditions and node names', () => {
    const eps: Endpoint[] = [
      { address: '10.0.0.1', ready: true, serving: true, terminating: false, nodeName: 'node-a' },
      { address: '255.255.255.254', ready: false, serving: true, terminating: true, nodeName: undefined },
      { address: '0.0.0.1', ready: false, serving: false, terminating: false, nodeName: 'node-b' },
      { address: '10.0.0.4', ready: true, serving: false, terminating: true, nodeName: 'node-a' },
    ];
    const p = new PackedEndpoints('IPv4', eps);
    expect(p.length).toBe(4);
    expect([...p]).toEqual(eps);
    expect(JSON.parse(JSON.stringify(p))).toEqual(JSON.parse(JSON.stringify(eps)));
    expect(p.address(1)).toBe('255.255.255.254');
    expect(p.nodeName(3)).toBe('node-a');
    expect(Object.isFrozen(p)).toBe(true);
  });

  it('gives back IPv6 addresses in their canonical text (zero runs compressed as parseIP does)', () => {
    const fixed = ['::', '::1', 'fd00::', 'fd00:10:96::a', '1:0:0:2::3', '1::2:0:0:3', '1:0:2:0:3:0:4:0', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '0:1::', '::ffff:a00:1'].map(canon);
    const r = rng(7);
    const addrs = [...fixed, ...Array.from({ length: 500 }, () => randomV6(r))];
    const eps = addrs.map((address, i): Endpoint => ({ address, ready: i % 2 === 0, serving: true, terminating: i % 3 === 0, nodeName: `n${i % 5}` }));
    const p = new PackedEndpoints('IPv6', eps);
    for (let i = 0; i < eps.length; i++) expect(p.at(i)).toEqual(eps[i]);
  });

  it('keeps FQDN names as they are', () => {
    const eps: Endpoint[] = [{ address: 'db.example.com', ready: true, serving: true, terminating: false, nodeName: undefined }];
    expect([...new PackedEndpoints('FQDN', eps)]).toEqual(eps);
  });
});

describe('PackedBackends', () => {
  it('gives back ip, port and node name in order, and compares by content', () => {
    const bs = [{ ip: '10.0.0.1', port: 8080, nodeName: 'node-a' }, { ip: '10.0.0.2', port: 65535 }, { ip: '10.0.0.2', port: 1 }];
    const p = new PackedBackends('IPv4', bs);
    expect([...p]).toEqual(bs);
    expect(p.map((b, i) => `${b.ip}:${b.port}#${i}`)).toEqual(['10.0.0.1:8080#0', '10.0.0.2:65535#1', '10.0.0.2:1#2']);
    expect(p.port(1)).toBe(65535);
    expect(p.equals(new PackedBackends('IPv4', bs))).toBe(true);
    expect(p.equals(new PackedBackends('IPv4', [{ ...bs[0]!, nodeName: 'node-b' }, bs[1]!, bs[2]!]))).toBe(false);
    expect(p.equals(new PackedBackends('IPv4', bs.slice(0, 2)))).toBe(false);
    const v6 = [{ ip: 'fd00::1', port: 80 }, { ip: '2001:db8::8:800:200c:417a', port: 443, nodeName: 'n' }];
    expect([...new PackedBackends('IPv6', v6)]).toEqual(v6);
  });

  it('a view of a slice\'s endpoints (in an order, on one port) reads and compares as the same backends packed', () => {
    const ep = (address: string, nodeName?: string): Endpoint => ({ address, ready: true, serving: true, terminating: false, nodeName });
    const eps = new PackedEndpoints('IPv4', [ep('10.0.0.9', 'node-b'), ep('10.0.0.10'), ep('10.0.0.2', 'node-a')]);
    const view = eps.backends(8080, [1, 2, 0]);
    const want = [{ ip: '10.0.0.10', port: 8080 }, { ip: '10.0.0.2', port: 8080, nodeName: 'node-a' }, { ip: '10.0.0.9', port: 8080, nodeName: 'node-b' }];
    expect([...view]).toEqual(want);
    expect(view.length).toBe(3);
    expect(view.ip(2)).toBe('10.0.0.9');
    expect(view.nodeName(0)).toBeUndefined();
    const packed = new PackedBackends('IPv4', want);
    expect(view.equals(packed)).toBe(true);
    expect(packed.equals(view)).toBe(true);
    expect(view.equals(eps.backends(8080, [1, 2, 0]))).toBe(true);
    expect(view.equals(eps.backends(8081, [1, 2, 0]))).toBe(false);
    expect(view.equals(eps.backends(8080, [2, 1, 0]))).toBe(false);
    expect(packed.equals(new PackedBackends('IPv4', [want[0]!, want[1]!, { ...want[2]!, nodeName: 'node-c' }]))).toBe(false);
    expect([...eps.backends(80, [0, 1, 2])].map((b) => b.ip)).toEqual(['10.0.0.9', '10.0.0.10', '10.0.0.2']);
    const v6 = new PackedEndpoints('IPv6', [ep('fd00::2'), ep('fd00::1', 'n')]);
    expect([...v6.backends(443, [1, 0])]).toEqual([{ ip: 'fd00::1', port: 443, nodeName: 'n' }, { ip: 'fd00::2', port: 443 }]);
    expect(() => new PackedEndpoints('FQDN', [ep('a.example')]).backends(80, [0])).toThrow(RangeError);
  });
});

describe('packed lists of three fields (row size from the family, count from the bytes)', () => {
  it('endpoints, backends and views of every length, family and order read back as the plain lists they were made from', () => {
    const r = rng(5);
    for (let round = 0; round < 300; round++) {
      const family = (['IPv4', 'IPv6', 'FQDN'] as const)[round % 3]!;
      const n = Math.floor(r() * 12);
      const eps: Endpoint[] = Array.from({ length: n }, (_, i) => ({
        address: family === 'IPv4' ? `10.${round % 200}.${i}.${Math.floor(r() * 250)}` : family === 'IPv6' ? randomV6(r) : `host-${i}.example`,
        ready: r() < 0.7, serving: r() < 0.8, terminating: r() < 0.2, nodeName: r() < 0.5 ? `node-${Math.floor(r() * 3)}` : undefined,
      }));
      const p = new PackedEndpoints(family, eps);
      expect(p.length).toBe(n);
      expect([...p]).toEqual(eps);
      expect(Object.keys(p).sort()).toEqual(['data', 'family', 'names', 'nodes']);
      if (family === 'FQDN') continue;
      const bs = eps.map((e, i) => ({ ip: e.address, port: 1000 + i, ...(e.nodeName ? { nodeName: e.nodeName } : {}) }));
      const packed = new PackedBackends(family, bs);
      expect(packed.length).toBe(n);
      expect([...packed]).toEqual(bs);
      // A view in an order: every endpoint, some of them (a prefix, a subset), none.
      const all = Array.from({ length: n }, (_, i) => i);
      const orders = [all, [...all].reverse(), all.slice(0, Math.floor(n / 2)), all.filter(() => r() < 0.5)];
      for (const order of orders) {
        const view = p.backends(8080, order);
        const want = order.map((i) => ({ ip: eps[i]!.address, port: 8080, ...(eps[i]!.nodeName ? { nodeName: eps[i]!.nodeName } : {}) }));
        expect(view.length).toBe(order.length);
        expect([...view]).toEqual(want);
        expect(view.map((b) => b.ip)).toEqual(want.map((b) => b.ip));
        expect(view.equals(new PackedBackends(family, want))).toBe(true);
      }
    }
  });
});
