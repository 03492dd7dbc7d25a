/**
 * Protocols through the waypoint, on real sockets: HTTP/1.1 and h2c (prior knowledge) from
 * callers, HTTP/1.1 and h2c to backends (appProtocol kubernetes.io/h2c), gRPC over h2c
 * (unary, server streaming, status codes in trailers), WebSocket upgrades, keep-alive
 * connection reuse to backends.
 */
import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeProxyV2 } from '../../waypoint/proxy/proxy-protocol.js';
import { baseManifests, gatewayRoute, request, startRig, type Rig, type RigAddresses } from './fixtures/rig.js';

const OCTET = 89;
let rig: Rig;
let grpcServer: grpc.Server;

const echoService: grpc.ServiceDefinition = {
  Say: {
    path: '/kernway.test.Echo/Say', requestStream: false, responseStream: false,
    requestSerialize: (v: Buffer) => v, requestDeserialize: (b: Buffer) => b,
    responseSerialize: (v: Buffer) => v, responseDeserialize: (b: Buffer) => b,
  },
  Count: {
    path: '/kernway.test.Echo/Count', requestStream: false, responseStream: true,
    requestSerialize: (v: Buffer) => v, requestDeserialize: (b: Buffer) => b,
    responseSerialize: (v: Buffer) => v, responseDeserialize: (b: Buffer) => b,
  },
};

function manifests(a: RigAddresses): string {
  const grpcIP = a.caller(5);
  return baseManifests(a, 'ns', { appProtocol: { h2: 'kubernetes.io/h2c' } }) + `
---
apiVersion: v1
kind: Service
metadata: {name: grpc, namespace: ns}
spec:
  clusterIP: 10.96.${100 + (process.pid % 100)}.200
  ports: [{name: grpc, port: 9000, targetPort: 9000, appProtocol: kubernetes.io/h2c}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: grpc-1, namespace: ns, labels: {kubernetes.io/service-name: grpc}}
addressType: IPv4
ports: [{name: grpc, port: 9000, protocol: TCP}]
endpoints: [{addresses: [${grpcIP}]}]` +
    gatewayRoute('web', `  - matches: [{path: {type: PathPrefix, value: /web}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /h2}}]
    backendRefs: [{name: h2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /kernway.test.Echo}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-via, value: waypoint}]}}]
    backendRefs: [{name: grpc, port: 9000}]`);
}

beforeAll(async () => {
  rig = await startRig({ octet: OCTET, backends: { web: 2, h2: 1 }, manifests });
  grpcServer = new grpc.Server();
  grpcServer.addService(echoService, {
    Say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const text = call.request.toString();
      if (text === 'fail') { cb({ code: grpc.status.PERMISSION_DENIED, details: 'no thanks' }); return; }
      const md = new grpc.Metadata();
      md.set('x-authority', String(call.getPath()));
      call.sendMetadata(md);
      cb(null, Buffer.from(`hello ${text}`));
    },
    Count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const n = Number(call.request.toString());
      for (let i = 1; i <= n; i++) call.write(Buffer.from(String(i)));
      call.end();
    },
  });
  await new Promise<void>((resolve, reject) => grpcServer.bindAsync(`${rig.a.caller(5)}:9000`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
}, 30_000);

afterAll(async () => {
  grpcServer?.forceShutdown();
  await rig?.close();
});

function h2Get(path: string): Promise<{ status: number; body: string; headers: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const c = http2.connect(`http://${rig.a.gateway}:8080`);
    c.on('error', reject);
    const s = c.request({ ':path': path, ':authority': 'test.example' });
    let body = '';
    let headers: http2.IncomingHttpHeaders = {};
    s.setEncoding('utf8');
    s.on('response', (h) => { headers = h; });
    s.on('data', (d: string) => { body += d; });
    s.on('end', () => { c.close(); resolve({ status: Number(headers[':status']), body, headers }); });
    s.on('error', reject);
  });
}

describe('HTTP versions', () => {
  it('h2c callers reach HTTP/1.1 backends', async () => {
    const r = await h2Get('/web/a?b=1');
    expect(r.status).toBe(200);
    const j = JSON.parse(r.body) as { path: string; proto: string; host: string; pod: string };
    expect(j).toMatchObject({ path: '/web/a?b=1', proto: 'HTTP/1.1', host: 'test.example' });
    expect(j.pod).toMatch(/^web-/);
  });
  it('HTTP/1.1 callers reach h2c backends (appProtocol kubernetes.io/h2c)', async () => {
    const r = await request({ address: rig.a.gateway, port: 8080, path: '/h2/x' });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ proto: 'HTTP/2.0', path: '/h2/x', host: 'test.example' });
  });
  it('sets the forwarding headers: X-Forwarded-For appended, X-Forwarded-Proto, X-Request-Id kept or made', async () => {
    const r = await request({ address: rig.a.gateway, port: 8080, path: '/web/f', from: rig.a.outside, headers: { 'x-forwarded-for': '192.0.2.1', 'x-forwarded-proto': 'https', connection: 'keep-alive, x-drop-me', 'x-drop-me': '1' } });
    const h = (r.json as { headers: Record<string, string[]> }).headers;
    const get = (n: string): string[] | undefined => Object.entries(h).find(([k]) => k.toLowerCase() === n)?.[1];
    expect(get('x-forwarded-for')).toEqual([`192.0.2.1, ${rig.a.outside}`]);
    expect(get('x-forwarded-proto')).toEqual(['http']);
    expect(get('x-request-id')![0]).toMatch(/^[0-9a-f]{32}$/);
    expect(get('x-drop-me')).toBeUndefined();
    const kept = await request({ address: rig.a.gateway, port: 8080, path: '/web/f', headers: { 'x-request-id': 'abc-123' } });
    expect(Object.entries((kept.json as { headers: Record<string, string[]> }).headers).find(([k]) => k.toLowerCase() === 'x-request-id')?.[1]).toEqual(['abc-123']);
  });
  it('request bodies pass both ways (h1 -> h2c)', async () => {
    const body = 'x'.repeat(200_000);
    const r = await request({ address: rig.a.gateway, port: 8080, path: '/h2/upload', method: 'POST', body, headers: { 'content-type': 'text/plain' } });
    expect(r.json).toMatchObject({ bodyLength: 200_000, method: 'POST' });
  });
  it('connections to backends are pooled (keep-alive)', async () => {
    const before = rig.echoes.web!.map((e) => e.received.length);
    for (let i = 0; i < 20; i++) await request({ address: rig.a.gateway, port: 8080, path: '/web/k' });
    const after = rig.echoes.web!.map((e) => e.received.length);
    expect(after.reduce((s, n) => s + n, 0) - before.reduce((s, n) => s + n, 0)).toBe(20);
    // 20 requests, 2 endpoints: a handful of upstream connections, not 20.
    expect(rig.waypoint.metrics.registry.getSingleMetric('kernway_waypoint_upstream_connections')).toBeDefined();
    const m = await rig.waypoint.metrics.registry.getSingleMetricAsString('kernway_waypoint_upstream_connections');
    const n = Number(/kernway_waypoint_upstream_connections (\d+)/.exec(m)![1]);
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThanOrEqual(4);
  });
});

describe('the mesh port', () => {
  it('carries h2c after the PROXY header, routed by the cluster IP', async () => {
    const vip = `10.96.${100 + (process.pid % 100)}.1`; // Service web, the first of baseManifests
    const session = http2.connect(`http://${rig.a.gateway}:${rig.waypoint.meshPort}`, {
      createConnection: () => {
        const s = net.connect({ host: rig.a.gateway, port: rig.waypoint.meshPort });
        s.write(encodeProxyV2({ address: '127.0.0.1', port: 5000 }, { address: vip, port: 80 }));
        return s;
      },
    });
    const body = await new Promise<string>((resolve, reject) => {
      const st = session.request({ ':path': '/anything', ':authority': 'not-the-service.example' });
      let b = '';
      st.setEncoding('utf8');
      st.on('data', (d: string) => { b += d; });
      st.on('end', () => resolve(b));
      st.on('error', reject);
    });
    session.close();
    const j = JSON.parse(body) as { pod: string; path: string; proto: string };
    expect(j.pod).toMatch(/^web-/);
    expect(j.path).toBe('/anything');
  });
});

describe('gRPC over h2c', () => {
  const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
  let client: grpc.Client & Record<string, (...a: unknown[]) => unknown>;
  beforeAll(() => { client = new Client(`${rig.a.gateway}:8080`, grpc.credentials.createInsecure()) as typeof client; });
  afterAll(() => client?.close());

  it('unary calls, with response metadata and a response header filter', async () => {
    const headers: grpc.Metadata[] = [];
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const call = client.Say(Buffer.from('kernway'), (e: grpc.ServiceError | null, v: Buffer) => (e ? reject(e) : resolve(v))) as grpc.ClientUnaryCall;
      call.on('metadata', (m: grpc.Metadata) => headers.push(m));
    });
    expect(reply.toString()).toBe('hello kernway');
    expect(headers[0]!.get('x-authority')).toEqual(['/kernway.test.Echo/Say']);
    expect(headers[0]!.get('x-via')).toEqual(['waypoint']);
  });
  it('error statuses travel in trailers', async () => {
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      client.Say(Buffer.from('fail'), (e: grpc.ServiceError | null) => resolve(e!));
    });
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toBe('no thanks');
  });
  it('server streaming', async () => {
    const got = await new Promise<string[]>((resolve, reject) => {
      const out: string[] = [];
      const call = client.Count(Buffer.from('5')) as grpc.ClientReadableStream<Buffer>;
      call.on('data', (b: Buffer) => out.push(b.toString()));
      call.on('end', () => resolve(out));
      call.on('error', reject);
    });
    expect(got).toEqual(['1', '2', '3', '4', '5']);
  });
});

describe('WebSocket', () => {
  it('upgrades through a Gateway listener and carries bytes both ways', async () => {
    const key = Buffer.from('kernway-test-key').toString('base64');
    const s = net.connect({ host: rig.a.gateway, port: 8080 });
    const text = await new Promise<string>((resolve, reject) => {
      let got = '';
      let upgraded = false;
      s.on('data', (d) => {
        got += d.toString('latin1');
        if (!upgraded && got.includes('\r\n\r\n')) {
          upgraded = true;
          s.write('ping over the tunnel');
        } else if (upgraded && got.includes('ping over the tunnel')) resolve(got);
      });
      s.on('error', reject);
      s.write(`GET /web/ws HTTP/1.1\r\nHost: test.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      setTimeout(() => reject(new Error(`no echo; got ${JSON.stringify(got)}`)), 5000);
    });
    s.destroy();
    const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    expect(text).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(text).toContain(`Sec-WebSocket-Accept: ${accept}`);
    expect(text).toMatch(/X-Echo-Pod: web-/);
  });
  it('a route miss refuses the upgrade with 404', async () => {
    const s = net.connect({ host: rig.a.gateway, port: 8080 });
    const got = await new Promise<string>((resolve) => {
      let buf = '';
      s.on('data', (d) => { buf += d.toString(); });
      s.on('close', () => resolve(buf));
      s.write('GET /nowhere HTTP/1.1\r\nHost: test.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a2V5\r\nSec-WebSocket-Version: 13\r\n\r\n');
    });
    expect(got).toMatch(/^HTTP\/1\.1 404 /);
  });
});
