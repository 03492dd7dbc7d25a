/**
 * A request body reaches the backend when the waypoint opens a fresh backend connection for
 * it. The proxy used to set the caller's body flowing (a byte counter) before the backend
 * connection was up, so every chunk emitted meanwhile was lost and the backend waited for a
 * body that never came: a POST that was a connection's first request hung until timeout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeProxyV2 } from '../../waypoint/proxy/proxy-protocol.js';
import { baseManifests, rawExchange, request, startRig, type Rig, type RigAddresses } from './fixtures/rig.js';

const OCTET = 89;
let rig: Rig;
const VIP = (): string => `10.96.${100 + (process.pid % 100)}.1`; // Service 'cart'

function manifests(a: RigAddresses): string {
  return baseManifests(a, 'shop') + `
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cart, namespace: shop}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: cart, port: 80}]}]
`;
}

beforeAll(async () => {
  rig = await startRig({ octet: OCTET, namespace: 'shop', backends: { cart: 2 }, manifests });
}, 30_000);
afterAll(async () => { await rig?.close(); });

describe('request bodies on fresh backend connections', () => {
  it('through the mesh port: a POST written in one piece with its PROXY header (as the kernel hand-off sends it)', async () => {
    const hdr = encodeProxyV2({ address: rig.a.caller(0), port: 40001 }, { address: VIP(), port: 80 });
    const out = await rawExchange(rig.a.gateway, rig.waypoint.meshPort,
      Buffer.concat([hdr, Buffer.from('POST /first HTTP/1.1\r\nHost: cart\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello')]), 5000, rig.a.caller(0));
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    expect(out).toContain('"bodyLength":5');
  });

  it('through the mesh port and the Gateway listener: POSTs with bodies, each on a new connection', async () => {
    for (let i = 0; i < 6; i++) {
      const body = Buffer.alloc(1000 + i * 7919, 0x61 + i);
      const viaMesh = await request({ address: rig.a.gateway, port: rig.waypoint.meshPort, from: rig.a.caller(0), path: `/m${i}`, method: 'POST', body, proxyTo: { address: VIP(), port: 80 }, timeoutMs: 5000 });
      expect(viaMesh.status).toBe(200);
      expect(viaMesh.json?.bodyLength).toBe(body.length);
      const viaGateway = await request({ address: rig.a.gateway, port: 8080, from: rig.a.caller(0), path: `/g${i}`, method: 'POST', body, timeoutMs: 5000 });
      expect(viaGateway.status).toBe(200);
      expect(viaGateway.json?.bodyLength).toBe(body.length);
    }
  });
});
