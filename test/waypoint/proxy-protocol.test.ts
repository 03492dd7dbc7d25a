import { describe, expect, it } from 'vitest';
import { encodeProxyV2, parseProxyV2, SIGNATURE } from '../../waypoint/proxy/proxy-protocol.js';

describe('PROXY protocol v2', () => {
  it('round-trips IPv4 and IPv6 addresses', () => {
    const b4 = encodeProxyV2({ address: '10.1.2.3', port: 40000 }, { address: '10.96.0.10', port: 80 });
    const r4 = parseProxyV2(Buffer.concat([b4, Buffer.from('GET / HTTP/1.1\r\n')]));
    expect(r4).toEqual({ kind: 'header', header: { length: 28, command: 'PROXY', family: 'inet', source: { address: '10.1.2.3', port: 40000 }, destination: { address: '10.96.0.10', port: 80 } } });
    const b6 = encodeProxyV2({ address: 'fd00::1', port: 1 }, { address: 'fd00:10:96::a', port: 8080 });
    const r6 = parseProxyV2(b6);
    expect(r6.kind === 'header' && r6.header.destination).toEqual({ address: 'fd00:10:96::a', port: 8080 });
    expect(r6.kind === 'header' && r6.header.source).toEqual({ address: 'fd00::1', port: 1 });
  });
  it('asks for more bytes until the header is complete', () => {
    const b = encodeProxyV2({ address: '1.2.3.4', port: 1 }, { address: '5.6.7.8', port: 2 });
    for (let n = 0; n < b.length; n++) expect(parseProxyV2(b.subarray(0, n)).kind).toBe('more');
  });
  it('refuses other protocols, versions, commands and families', () => {
    expect(parseProxyV2(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).toMatchObject({ kind: 'error' });
    expect(parseProxyV2(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n'))).toMatchObject({ kind: 'error' });
    const v1 = Buffer.concat([SIGNATURE, Buffer.from([0x11, 0x11, 0, 12]), Buffer.alloc(12)]);
    expect(parseProxyV2(v1)).toMatchObject({ kind: 'error', reason: expect.stringMatching(/version 1/) });
    const udp = Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x12, 0, 12]), Buffer.alloc(12)]);
    expect(parseProxyV2(udp)).toMatchObject({ kind: 'error', reason: expect.stringMatching(/not TCP/) });
    const long = Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]);
    expect(parseProxyV2(long)).toMatchObject({ kind: 'error', reason: expect.stringMatching(/too long/) });
  });
  it('reads LOCAL headers (health checks) without addresses', () => {
    const local = Buffer.concat([SIGNATURE, Buffer.from([0x20, 0x00, 0, 0])]);
    expect(parseProxyV2(local)).toEqual({ kind: 'header', header: { length: 16, command: 'LOCAL', family: 'unspec', source: undefined, destination: undefined } });
  });
});
