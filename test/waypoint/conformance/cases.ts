/**
 * Running and judging the cases by the upstream rules (README of the data, and the
 * upstream harness it describes):
 * - gateway cases: the round tripper's CompareRoundTrip, with the `assert` defaults;
 * - mesh cases: the checks the upstream mesh harness makes (the file's
 *   upstreamMeshHarnessChecks), plus the Location of redirects;
 * - each case must pass 3 times in a row within 30 s; 10 s per request;
 * - weighted cases: 500 requests, 10 at a time, each backend's share within the tolerance,
 *   retried up to 10 times.
 */
import type { Case, CaseAssert, CaseFile } from './data.js';
import { send, type Captured } from './client.js';
import type { World } from './world.js';

export type Group = 'gateway' | 'mesh';
const MESH_NS = 'gateway-conformance-mesh';
const REDIRECTS = new Set([300, 301, 302, 303, 304, 305, 307, 308]);

export interface Request {
  method: string;
  path: string;
  /** URL host: for the mesh, the destination (Service name[.namespace][:port], or pod IP:port). */
  host: string | undefined;
  headers: Record<string, string>;
  /** Mesh: the namespace of the calling Pod. */
  from?: string;
}

/** The upstream GetTestCaseName, so failures read like upstream's. */
export function caseName(c: Case, i: number): string {
  if (c.case.testCaseName) return `${i} ${c.case.testCaseName}`;
  const r = c.assert.request;
  const host = typeof r.host === 'string' ? r.host : '';
  const backend = typeof c.case.backend === 'string' ? c.case.backend : '';
  const hasHeaders = Object.keys((c.case.request as { headers?: object } | undefined)?.headers ?? {}).length > 0;
  return `${i} request to '${host}${r.path}'${hasHeaders ? ' with headers' : ''} ${backend ? `should go to ${backend}` : `should receive a ${c.assert.statusCodes.join('/')}`}`;
}

/** Resolve the data's unresolved Go expressions against the world. */
function resolveHost(h: CaseAssert['request']['host'], w: World): string | undefined {
  if (h === null || h === undefined) return undefined;
  if (typeof h === 'string') return h;
  if (h.$go === 'http.Ipv6SafeHost(v2.Address) + ":8080"') {
    const pod = w.pods.find((p) => p.namespace === MESH_NS && p.labels.app === 'echo' && p.labels.version === 'v2');
    if (!pod) throw new Error('no echo-v2 pod in the mesh namespace');
    return `${pod.ip}:8080`;
  }
  throw new Error(`unresolved Go expression in the case data: ${h.$go}`);
}

export function requestOf(c: Case, w: World, group: Group): Request {
  const r = c.assert.request;
  const headers: Record<string, string> = { ...r.headers };
  const set = c.case.backendSetResponseHeaders;
  if (group === 'gateway' || set) headers['X-Echo-Set-Header'] = Object.entries(set ?? {}).map(([k, v]) => `${k}:${v}`).join(',');
  let host = resolveHost(r.host, w);
  if (group === 'mesh') host ??= 'echo';
  const consumer = String(c.case.testCaseName ?? '').startsWith("request from consumer route's namespace");
  return { method: r.method, path: r.path, host, headers, ...(group === 'mesh' ? { from: consumer ? 'gateway-conformance-mesh-consumer' : MESH_NS } : {}) };
}

/** Send a request the way the group's clients do. */
export function sendRequest(w: World, group: Group, r: Request): Promise<Captured> {
  if (group === 'gateway') {
    // Go's client drops the port from the Host header when it is the scheme's default.
    return send({ method: r.method, path: r.path, host: r.host ?? w.gatewayAddress, headers: r.headers, connect: { address: w.gatewayAddress, port: 80, localAddress: w.clientAddress } });
  }
  const client = w.pods.find((p) => p.namespace === r.from && p.labels.app === 'echo' && p.labels.version === 'v1');
  if (!client) throw new Error(`no client Pod (app=echo,version=v1) in ${r.from}`);
  const dst = destinationOf(w, r.host!);
  return send({
    method: r.method, path: r.path, host: r.host, headers: r.headers,
    connect: { address: w.meshAddress, port: w.meshPort, localAddress: client.ip, proxyTo: dst },
  });
}

/** What DNS and the kernel make of a mesh URL host: a Service's cluster IP and port, or a pod address. */
export function destinationOf(w: World, host: string): { address: string; port: number } {
  const m = /^([^:]+)(?::([0-9]+))?$/.exec(host);
  if (!m) throw new Error(`bad mesh host ${host}`);
  const port = m[2] ? Number(m[2]) : 80;
  if (/^[0-9.]+$/.test(m[1]!)) return { address: m[1]!, port };
  const [name, ns] = m[1]!.split('.');
  const svc = w.services.get(`${ns ?? MESH_NS}/${name}`);
  if (!svc) throw new Error(`no Service for mesh host ${host}`);
  return { address: svc.clusterIP, port };
}

const joined = (v: string[] | undefined): string | undefined => (v === undefined ? undefined : v.join(','));
const noSpace = (s: string): string => s.replace(/\s+/g, '');

/** Judge one round trip; undefined when it passes, else why not. */
export function judge(group: Group, a: CaseAssert, r: Request, cap: Captured, checks: readonly string[] | undefined): string | undefined {
  const timeout = (s: number): boolean => s === 408 || s === 504;
  if (timeout(cap.status) && a.statusCodes.some(timeout)) return undefined;
  if (!a.statusCodes.includes(cap.status)) return `expected status ${a.statusCodes.join(' or ')}, got ${cap.status} (${cap.body.trim().slice(0, 200)})`;
  const mesh = group === 'mesh';
  const check = (name: string): boolean => !mesh || (checks ?? []).includes(name);
  if ((cap.status === 200 || cap.status === 204) && a.ifStatus200or204) {
    const e = a.ifStatus200or204;
    const br = e.backendRequest;
    const got = cap.request;
    if (!mesh) {
      const host = typeof br.host === 'string' ? br.host : undefined;
      if (host && host !== got.host) return `expected backend host ${host}, got ${got.host}`;
      if (br.path !== got.path) return `expected backend path ${JSON.stringify(br.path)}, got ${JSON.stringify(got.path)}`;
      if (br.method !== got.method) return `expected backend method ${br.method}, got ${got.method}`;
      if (br.namespace !== null && br.namespace !== got.namespace) return `expected backend namespace ${JSON.stringify(br.namespace)}, got ${JSON.stringify(got.namespace)}`;
    }
    if (check('backendRequest.headersExact')) {
      for (const [k, v] of Object.entries(br.headersExact)) {
        const g = joined(got.headers[k.toLowerCase()]);
        if (g === undefined) return `expected request header ${k} at the backend, absent (headers: ${JSON.stringify(got.headers)})`;
        if (g !== v) return `expected request header ${k}: ${JSON.stringify(v)} at the backend, got ${JSON.stringify(g)}`;
      }
    }
    if (check('backendRequest.headersAbsent')) {
      for (const k of br.headersAbsent) if (got.headers[k.toLowerCase()] !== undefined) return `expected request header ${k} absent at the backend, got ${JSON.stringify(got.headers[k.toLowerCase()])}`;
    }
    if (check('responseHeadersExact')) {
      for (const [k, v] of Object.entries(e.responseHeadersExact)) {
        const g = joined(cap.headers[k.toLowerCase()]);
        if (g === undefined) return `expected response header ${k}, absent (headers: ${JSON.stringify(cap.headers)})`;
        if (g !== v) return `expected response header ${k}: ${JSON.stringify(v)}, got ${JSON.stringify(g)}`;
      }
    }
    if (!mesh) {
      for (const [k, vs] of Object.entries(e.responseHeadersOneOf)) {
        const g = joined(cap.headers[k.toLowerCase()]);
        if (g === undefined) return `expected response header ${k} (one of ${JSON.stringify(vs)}), absent`;
        const ok = e.ignoreWhitespace ? vs.some((v) => noSpace(v) === noSpace(g)) : vs.includes(g);
        if (!ok) return `expected response header ${k} to be one of ${JSON.stringify(vs)}, got ${JSON.stringify(g)}`;
      }
    }
    if (check('responseHeadersAbsent')) {
      for (const k of e.responseHeadersAbsent) if (cap.headers[k.toLowerCase()] !== undefined) return `expected response header ${k} absent, got ${JSON.stringify(cap.headers[k.toLowerCase()])}`;
    }
    if (check('backendRequest.podNamePrefix') && !got.pod.startsWith(br.podNamePrefix)) return `expected a pod named ${br.podNamePrefix}*, got ${JSON.stringify(got.pod)}`;
  } else if (REDIRECTS.has(cap.status) && a.ifRedirect) {
    const loc = cap.headers.location?.[0];
    if (!loc) return 'redirect without a Location header';
    let u: URL;
    try { u = new URL(loc); } catch { return `unparsable Location ${JSON.stringify(loc)}`; }
    const scheme = u.protocol.replace(/:$/, '');
    const host = u.hostname.replace(/^\[|\]$/g, '');
    // WHATWG URL drops a port that is the scheme's default; Go keeps it: both are accepted below.
    const port = u.port;
    const x = a.ifRedirect;
    const wantHost = x.locationHost ?? host;
    if (wantHost !== host) return `expected redirect host ${wantHost}, got ${host} (${loc})`;
    if (x.locationPort === null || x.locationPort === '') {
      if (scheme === 'http' && port !== '' && port !== '80') return `for http, expected redirect port 80 or none, got ${port} (${loc})`;
      if (scheme === 'https' && port !== '' && port !== '443') return `for https, expected redirect port 443 or none, got ${port} (${loc})`;
    } else if (x.locationPort !== port && !(port === '' && ((scheme === 'http' && x.locationPort === '80') || (scheme === 'https' && x.locationPort === '443')))) {
      return `expected redirect port ${x.locationPort}, got ${JSON.stringify(port)} (${loc})`;
    }
    if (x.locationScheme !== scheme) return `expected redirect scheme ${x.locationScheme}, got ${scheme} (${loc})`;
    if (x.locationPath !== u.pathname) return `expected redirect path ${x.locationPath}, got ${u.pathname} (${loc})`;
  }
  void r;
  return undefined;
}

/** A case passes when it passes 3 times in a row within 30 s (1 s pause after a failure). */
export async function runCase(w: World, group: Group, c: Case, file: CaseFile): Promise<void> {
  const r = requestOf(c, w, group);
  const start = Date.now();
  let streak = 0;
  let last = '';
  while (Date.now() - start < 30_000) {
    let why: string | undefined;
    try {
      const cap = await sendRequest(w, group, r);
      why = judge(group, c.assert, r, cap, file.upstreamMeshHarnessChecks);
    } catch (e) {
      why = `request failed: ${(e as Error).message}`;
    }
    if (why === undefined) {
      if (++streak >= 3) break;
      continue;
    }
    streak = 0;
    last = why;
    await new Promise((res) => setTimeout(res, 1000));
  }
  if (streak < 3) throw new Error(`${r.method} ${r.host ?? ''}${r.path}: ${last}`);
  if (c.assert.mirroredTo) await expectMirrored(w, c, r.path, start);
}

/** The mirror backends must have received the request (the upstream reads their logs). */
async function expectMirrored(w: World, c: Case, path: string, since: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (const m of c.assert.mirroredTo!) {
    const svc = w.services.get(`${m.backendRef.namespace}/${m.backendRef.name}`);
    if (!svc) throw new Error(`mirror backend ${m.backendRef.namespace}/${m.backendRef.name} is not a Service of the world`);
    const echoes = w.pods.filter((p) => p.namespace === svc.namespace && p.name.startsWith(`${svc.name}-`)).flatMap((p) => p.echoes);
    for (;;) {
      if (echoes.some((e) => e.received.some((x) => x.path === path && x.at >= since))) break;
      if (Date.now() > deadline) throw new Error(`no mirrored request for ${path} reached ${svc.namespace}/${svc.name}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }
}

/** Weighted backends: shares within the tolerance, weight 0 never chosen; retried as upstream does. */
export async function runDistribution(w: World, group: Group, file: CaseFile): Promise<void> {
  const d = file.distribution!;
  const r: Request = {
    method: 'GET', path: d.request.path, headers: {},
    host: d.request.host ?? (group === 'mesh' ? 'echo' : undefined),
    ...(group === 'mesh' ? { from: MESH_NS } : {}),
  };
  if (group === 'gateway') r.headers['X-Echo-Set-Header'] = '';
  const concurrency = d.concurrentRequests ?? 10;
  let last = '';
  for (let attempt = 0; attempt < d.maxTestRetries; attempt++) {
    const counts = new Map<string, number>();
    let sent = 0;
    let failure: string | undefined;
    const worker = async (): Promise<void> => {
      while (sent < d.totalRequests && failure === undefined) {
        sent++;
        // Half of the requests carry entropy, as upstream does.
        const headers = Math.random() < 0.5 ? { ...r.headers, 'X-Jitter': String(Math.random()) } : r.headers;
        const cap = await sendRequest(w, group, { ...r, headers });
        if (cap.status !== 200) { failure = `status ${cap.status}`; return; }
        const backend = cap.request.pod.split('-').slice(0, -2).join('-');
        counts.set(backend, (counts.get(backend) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    if (failure) { last = failure; continue; }
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    const sum = Object.values(d.expectedWeights).reduce((a, b) => a + b, 0);
    const problems: string[] = [];
    for (const [backend, weight] of Object.entries(d.expectedWeights)) {
      const got = (counts.get(backend) ?? 0) / total;
      const want = weight / sum;
      if (weight === 0 && (counts.get(backend) ?? 0) > 0) problems.push(`${backend} has weight 0 but got ${counts.get(backend)} requests`);
      else if (Math.abs(got - want) > d.tolerance) problems.push(`${backend}: share ${got.toFixed(3)}, expected ${want.toFixed(3)} ± ${d.tolerance}`);
    }
    for (const b of counts.keys()) if (!(b in d.expectedWeights)) problems.push(`unexpected backend ${b}`);
    if (problems.length === 0) return;
    last = problems.join('; ');
  }
  throw new Error(`weighted distribution: ${last}`);
}
