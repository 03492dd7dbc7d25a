/**
 * Sending the cases' requests for real: to a Gateway listener (from a non-Pod address),
 * or to the mesh port from a client Pod's address with a PROXY v2 header naming the
 * Service's cluster IP and port (as the kernel will write it), and capturing what comes
 * back the way the upstream round tripper does.
 */
import http from 'node:http';
import net from 'node:net';
import { encodeProxyV2 } from '../../../waypoint/proxy/proxy-protocol.js';

export interface CapturedRequest {
  path: string;
  host: string;
  method: string;
  /** Lower-case names. */
  headers: Record<string, string[]>;
  namespace: string;
  pod: string;
}

export interface Captured {
  status: number;
  /** Lower-case names; repeated headers keep each value. */
  headers: Record<string, string[]>;
  body: string;
  /** From the echo's JSON; for any other body only the method (as the upstream harness assumes). */
  request: CapturedRequest;
}

export interface SendOptions {
  method: string;
  path: string;
  /** Host header; undefined: none set beyond `headers`. */
  host: string | undefined;
  headers: Record<string, string>;
  connect: { address: string; port: number; localAddress: string; proxyTo?: { address: string; port: number } };
  timeoutMs?: number;
}

export function send(o: SendOptions): Promise<Captured> {
  return new Promise((resolve, reject) => {
    const headers: string[] = [];
    if (o.host !== undefined && !Object.keys(o.headers).some((k) => k.toLowerCase() === 'host')) headers.push('Host', o.host);
    for (const [k, v] of Object.entries(o.headers)) headers.push(k, v);
    const req = http.request({
      method: o.method, path: o.path, headers: headers as unknown as http.OutgoingHttpHeaders, setHost: false,
      createConnection: () => {
        const s = net.connect({ host: o.connect.address, port: o.connect.port, localAddress: o.connect.localAddress });
        if (o.connect.proxyTo) {
          const src = { address: o.connect.localAddress, port: 40000 + Math.floor(Math.random() * 20000) };
          s.write(encodeProxyV2(src, o.connect.proxyTo));
        }
        return s;
      },
    });
    const timer = setTimeout(() => req.destroy(new Error(`no response within ${o.timeoutMs ?? 10_000} ms`)), o.timeoutMs ?? 10_000);
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e) => { clearTimeout(timer); reject(e); });
      res.on('end', () => {
        clearTimeout(timer);
        const body = Buffer.concat(chunks).toString('utf8');
        const rh: Record<string, string[]> = {};
        for (let i = 0; i < res.rawHeaders.length; i += 2) (rh[res.rawHeaders[i]!.toLowerCase()] ??= []).push(res.rawHeaders[i + 1]!);
        let request: CapturedRequest = { path: '', host: '', method: o.method, headers: {}, namespace: '', pod: '' };
        if ((res.headers['content-type'] ?? '') === 'application/json') {
          const j = JSON.parse(body) as { path: string; host: string; method: string; headers: Record<string, string[]>; namespace: string; pod: string };
          const lower: Record<string, string[]> = {};
          for (const [k, v] of Object.entries(j.headers ?? {})) (lower[k.toLowerCase()] ??= []).push(...v);
          request = { path: j.path, host: j.host, method: j.method, headers: lower, namespace: j.namespace, pod: j.pod };
        }
        resolve({ status: res.statusCode ?? 0, headers: rh, body, request });
      });
    });
    req.end();
  });
}
