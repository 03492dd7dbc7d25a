/**
 * The agent → waypoint feed's protocol (proto/feed.proto, loaded with @grpc/proto-loader),
 * shared by the agent's server (agent/feed/) and the waypoint's client (sources/feed-source.ts):
 * the message types, addresses, and the wire form of one object.
 *
 * An object travels as its slim form (k8s/kinds.ts: what the parsers keep), as JSON: the
 * agent's source keeps nothing else of it, and the waypoint needs nothing else.
 */
import { join } from 'node:path';
import { InvalidArgumentError, KernwayError } from '../../common/errors.js';
import { projectRoot } from '../../common/version.js';
import { kindInfo, parseObject, stubOf, type KnownKind, type KnownObject } from '../../k8s/kinds.js';
import { parseIP } from '../../k8s/ip.js';
import { PackedEndpoints } from '../../k8s/packed.js';
import type { Endpoint, SourcedObject } from '../../k8s/types.js';

export const FEED_PROTO = join(projectRoot(), 'proto', 'feed.proto');
/** The full method name, for logs. */
export const FEED_METHOD = '/kernway.feed.v1.WaypointFeed/Stream';
/** The audience of the projected ServiceAccount token a waypoint presents over TCP. */
export const TOKEN_AUDIENCE = 'kernway';
/** Where a waypoint pod's projected token is mounted, and the file in it (the default --token-file). */
export const TOKEN_DIR = '/var/run/secrets/kernway';
export const TOKEN_FILE = `${TOKEN_DIR}/token`;
/** The feed's TCP port in a cluster: the DaemonSet's agents listen on $(HOST_IP):15012 (deploy/daemonset.yaml). */
export const FEED_PORT = 15012;
/** The label a waypoint pod carries (set by Gateway API implementations on their gateway pods). */
export const WAYPOINT_POD_LABEL = 'gateway.networking.k8s.io/gateway-name';

export interface Hello { namespace: string; name: string }
export interface FeedRequest { hello?: Hello; ack?: { version: string | number }; nack?: { version: string | number; reason: string }; kind?: string }
export interface WireResource { key: string; object: Buffer; file: string; index: number }
export interface FeedUpdate { version: string | number; snapshot: boolean; upserted: WireResource[]; removed: string[]; agent: string }

/** A feed address: `unix:///PATH` or `HOST:PORT`. */
export type FeedAddress = { kind: 'unix'; path: string; text: string } | { kind: 'tcp'; host: string; port: number; text: string };

export function parseFeedAddress(option: string, v: string): FeedAddress {
  if (v.startsWith('unix://')) {
    const path = v.slice('unix://'.length);
    if (!path.startsWith('/') || path.length < 2) throw new InvalidArgumentError(option, 'unix:///ABSOLUTE/PATH or HOST:PORT', v);
    return { kind: 'unix', path, text: v };
  }
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new InvalidArgumentError(option, 'unix:///ABSOLUTE/PATH or HOST:PORT', v);
  return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port, text: v };
}

/** The grpc-js target of an address. */
export function grpcTarget(a: FeedAddress): string {
  return a.kind === 'unix' ? `unix://${a.path}` : `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/** 'Kind ns/name' (or 'Kind name') of a slim object, for keys and messages. */
export function objectName(o: KnownObject): { kind: KnownKind; namespace: string | undefined; name: string } {
  const v = o.value as { meta?: { namespace: string; name: string }; namespace?: string; name: string };
  if (v.meta) return { kind: o.kind, namespace: v.meta.namespace, name: v.meta.name };
  return { kind: o.kind, namespace: o.kind === 'Namespace' || o.kind === 'GatewayClass' ? undefined : v.namespace, name: v.name };
}

/** The key of a sourced object on the feed: kind, namespace, name and origin (two definitions of one object are two resources). */
export function resourceKey(kind: string, namespace: string | undefined, name: string, file: string, index: number): string {
  return `${kind} ${namespace === undefined ? name : `${namespace}/${name}`} ${file}#${index}`;
}

/** The wire form of a slim object (JSON). */
export function encodeObject(o: KnownObject): Buffer {
  const id = objectName(o);
  return Buffer.from(JSON.stringify({ kind: o.kind, namespace: id.namespace, name: id.name, value: o.value }));
}

/** Fields every slim object of a kind must have, with their type: what the waypoint checks before it uses one. */
const SHAPES: Record<KnownKind, Record<string, 'string' | 'object' | 'array' | 'boolean'>> = {
  Namespace: { name: 'string', labels: 'object', origin: 'object' },
  Service: { namespace: 'string', name: 'string', key: 'string', clusterIPs: 'array', ports: 'array', labels: 'object', origin: 'object' },
  EndpointSlice: { namespace: 'string', name: 'string', key: 'string', serviceKey: 'string', endpoints: 'array', ports: 'array', origin: 'object' },
  Pod: { namespace: 'string', name: 'string', key: 'string', labels: 'object', podIPs: 'array', serviceAccountName: 'string', origin: 'object' },
  AuthorizationPolicy: { namespace: 'string', name: 'string', key: 'string', origin: 'object' },
  GatewayClass: { name: 'string', controllerName: 'string' },
  Gateway: { meta: 'object', listeners: 'array' },
  HTTPRoute: { meta: 'object', parentRefs: 'array', hostnames: 'array', rules: 'array', droppedRules: 'array' },
  ReferenceGrant: { meta: 'object', from: 'array', to: 'array' },
  BackendTrafficPolicy: { meta: 'object', targetRefs: 'array', settings: 'object' },
};

function typeOf(v: unknown): string {
  return Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v;
}

/**
 * A wire resource as a sourced object whose stub parses to the slim object sent; throws
 * KW_FEED_DECODE naming the resource and what is wrong.
 */
export function decodeResource(r: WireResource): SourcedObject {
  const fail = (what: string): never => { throw new KernwayError('KW_FEED_DECODE', `${r.key}: ${what}`); };
  let o: { kind?: unknown; namespace?: unknown; name?: unknown; value?: unknown };
  try {
    o = JSON.parse(r.object.toString('utf8')) as typeof o;
  } catch (e) {
    return fail(`not JSON (${(e as Error).message})`);
  }
  if (typeof o !== 'object' || o === null) return fail('not an object');
  const info = typeof o.kind === 'string' ? kindInfo(o.kind) : undefined;
  if (!info) return fail(`kind ${JSON.stringify(o.kind)} is not one this waypoint reads (is the agent newer than the waypoint?)`);
  if (typeof o.name !== 'string' || o.name === '') return fail('no name');
  if (info.namespaced !== (typeof o.namespace === 'string')) return fail(info.namespaced ? 'no namespace' : 'a namespace on a cluster-scoped kind');
  if (typeof o.value !== 'object' || o.value === null) return fail('no value');
  const value = o.value as Record<string, unknown>;
  for (const [field, type] of Object.entries(SHAPES[info.kind])) {
    if (typeOf(value[field]) !== type) return fail(`field ${field} is ${typeOf(value[field])}, expected ${type}`);
  }
  if (info.kind === 'EndpointSlice') {
    // On the wire the endpoints are a list (PackedEndpoints.toJSON); the model holds them packed.
    const packed = packWireEndpoints(value.addressType, value.endpoints as unknown[]);
    if (typeof packed === 'string') return fail(packed);
    value.endpoints = packed;
  }
  const stub = stubOf(info.kind, o.name, o.namespace as string | undefined, value as unknown as KnownObject['value']);
  const src = { object: stub, file: r.file, index: r.index };
  parseObject(src);
  return src;
}

/** A slice's endpoints as sent (canonical addresses of `addressType`), packed; or what is wrong with them. */
function packWireEndpoints(addressType: unknown, list: unknown[]): PackedEndpoints | string {
  if (addressType !== 'IPv4' && addressType !== 'IPv6' && addressType !== 'FQDN') return `field addressType is ${JSON.stringify(addressType)}, expected IPv4, IPv6 or FQDN`;
  const eps: Endpoint[] = [];
  for (let i = 0; i < list.length; i++) {
    const e = list[i] as Partial<Record<keyof Endpoint, unknown>> | null;
    const ok = typeof e === 'object' && e !== null && typeof e.address === 'string' && typeof e.ready === 'boolean' && typeof e.serving === 'boolean'
      && typeof e.terminating === 'boolean' && (e.nodeName === undefined || typeof e.nodeName === 'string');
    if (!ok) return `endpoints[${i}] is not an endpoint ({address, ready, serving, terminating, nodeName?})`;
    if (addressType !== 'FQDN') {
      const ip = parseIP(e.address);
      if (!ip || ip.family !== addressType || ip.ip !== e.address) return `endpoints[${i}].address ${JSON.stringify(e.address)} is not a canonical ${addressType} address`;
    }
    eps.push(e as Endpoint);
  }
  return new PackedEndpoints(addressType, eps);
}
