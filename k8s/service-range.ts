/**
 * The service IP range (--service-cidr): cluster IPs outside it are refused, as the API
 * server refuses a Service whose clusterIP is not in its --service-cluster-ip-range. A
 * validator, so that an out-of-range Service rejects its file (its last good content stays)
 * with file, object and field, like any other field error.
 *
 * The default is what clusters use when nobody chose: kubeadm's 10.96.0.0/12 for IPv4 and
 * kind's fd00:10:96::/112 for IPv6.
 */
import { InvalidArgumentError } from '../common/errors.js';
import { addrBytes, cidrContains, parseCidr } from './cidr.js';
import type { Cidr } from './policy-types.js';
import { forbiddenAddress, parseIP } from './ip.js';
import { INVALID_FIELD, type Problem, type SourcedObject } from './types.js';

export const DEFAULT_SERVICE_CIDR = '10.96.0.0/12,fd00:10:96::/112';

/** One block per family at most (as kube-apiserver's dual-stack range). */
export interface ServiceRange { text: string; cidrs: readonly Cidr[] }

/** Parses '--service-cidr' ('10.96.0.0/12' or '10.96.0.0/12,fd00:10:96::/112'). */
export function parseServiceRange(v: unknown, option = '--service-cidr'): ServiceRange {
  if (typeof v !== 'string' || v.trim() === '') throw new InvalidArgumentError(option, 'one or two CIDR blocks, comma-separated (e.g. 10.96.0.0/12,fd00:10:96::/112)', v);
  const parts = v.split(',').map((s) => s.trim());
  if (parts.length > 2) throw new InvalidArgumentError(option, 'at most two CIDR blocks (one IPv4, one IPv6)', v);
  const cidrs: Cidr[] = [];
  for (const p of parts) {
    if (!p.includes('/')) throw new InvalidArgumentError(option, 'CIDR blocks with a prefix length (like 10.96.0.0/12)', p);
    const r = parseCidr(p);
    if ('error' in r) throw new InvalidArgumentError(option, `a CIDR block: ${r.error}`, p);
    const v4 = r.cidr.bits >= 96 && r.cidr.addr.subarray(0, 12).equals(V4_PREFIX);
    if (cidrs.some((c) => (c.bits >= 96 && c.addr.subarray(0, 12).equals(V4_PREFIX)) === v4)) {
      throw new InvalidArgumentError(option, 'one block per IP family', v);
    }
    const ip = parseIP(p.slice(0, p.indexOf('/')));
    const bad = ip && forbiddenAddress(ip);
    if (bad) throw new InvalidArgumentError(option, `a range of ordinary unicast addresses (this one is ${bad})`, p);
    cidrs.push(r.cidr);
  }
  return Object.freeze({ text: cidrs.map((c) => c.text).join(','), cidrs: Object.freeze(cidrs) });
}

const V4_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** Whether `ip` (canonical text) lies in the range. */
export function inServiceRange(range: ServiceRange, ip: string): boolean {
  const addr = addrBytes(ip);
  if (!addr) return false;
  const host: Cidr = { text: ip, addr, bits: 128 };
  return range.cidrs.some((c) => cidrContains(c, host));
}

/**
 * What the agent refuses beyond the model's own checks (cluster IPs of a forbidden class
 * are refused by the model for every reader): a Service whose cluster IPs are outside the
 * range, and endpoint and pod addresses of a forbidden class (loopback, link-local...).
 * The waypoint's own test rigs use loopback pods, so these belong to the agent's validator.
 */
export function addressProblems(range: ServiceRange, src: SourcedObject): Problem[] {
  const o = src.object;
  if (o.kind === 'EndpointSlice' && o.apiVersion === 'discovery.k8s.io/v1') return endpointProblems(src);
  if (o.kind === 'Pod' && o.apiVersion === 'v1') return podProblems(src);
  if (o.kind !== 'Service' || o.apiVersion !== 'v1') return [];
  const spec = o.spec;
  if (typeof spec !== 'object' || spec === null) return [];
  const { clusterIP, clusterIPs, type } = spec as Record<string, unknown>;
  if (type === 'ExternalName') return [];
  const raw: Array<{ v: unknown; field: string }> = Array.isArray(clusterIPs) && clusterIPs.length > 0
    ? clusterIPs.map((v, i) => ({ v, field: `spec.clusterIPs[${i}]` }))
    : [{ v: clusterIP, field: 'spec.clusterIP' }];
  const problems: Problem[] = [];
  for (const { v, field } of raw) {
    const ip = parseIP(v);
    if (!ip || forbiddenAddress(ip)) continue; // the model reports those
    if (inServiceRange(range, ip.ip)) continue;
    const ns = o.metadata.namespace ?? 'default';
    problems.push({
      code: INVALID_FIELD, file: src.file, object: `Service ${ns}/${o.metadata.name}`, field,
      message: `${field}: must be within the service range (--service-cidr ${range.text}), got ${JSON.stringify(v)}`,
    });
  }
  return problems;
}

function refOf(src: SourcedObject): string {
  return `${src.object.kind} ${src.object.metadata.namespace ?? 'default'}/${src.object.metadata.name}`;
}

function classProblem(src: SourcedObject, field: string, v: unknown): Problem | undefined {
  const ip = parseIP(v);
  const bad = ip && forbiddenAddress(ip);
  if (!bad) return undefined; // not an address: the model reports it
  return { code: INVALID_FIELD, file: src.file, object: refOf(src), field, message: `${field}: must not be ${bad}, got ${JSON.stringify(v)}` };
}

function endpointProblems(src: SourcedObject): Problem[] {
  const eps = src.object.endpoints;
  if (!Array.isArray(eps)) return [];
  const out: Problem[] = [];
  eps.forEach((e: unknown, i) => {
    const addrs = typeof e === 'object' && e !== null ? (e as { addresses?: unknown }).addresses : undefined;
    if (!Array.isArray(addrs)) return;
    addrs.forEach((a: unknown, j) => { const p = classProblem(src, `endpoints[${i}].addresses[${j}]`, a); if (p) out.push(p); });
  });
  return out;
}

function podProblems(src: SourcedObject): Problem[] {
  const status = src.object.status;
  if (typeof status !== 'object' || status === null) return [];
  const { podIP, podIPs } = status as { podIP?: unknown; podIPs?: unknown };
  const out: Problem[] = [];
  const p = classProblem(src, 'status.podIP', podIP);
  if (p) out.push(p);
  if (Array.isArray(podIPs)) {
    podIPs.forEach((r: unknown, i) => {
      const q = classProblem(src, `status.podIPs[${i}].ip`, typeof r === 'object' && r !== null ? (r as { ip?: unknown }).ip : undefined);
      if (q) out.push(q);
    });
  }
  return out;
}
