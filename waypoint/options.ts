/**
 * `kernway waypoint` options: parsed and checked once, at the door; errors name the option.
 */
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { InvalidArgumentError, KernwayError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { MAX_TIMER_MS, formatDuration, parseDuration } from '../k8s/duration.js';
import { parseHostPort } from '../common/host-port.js';
import { pseudoFs } from '../common/fs-types.js';
import { statSync } from 'node:fs';
import { joinNegativeValues, refuseRepeated } from '../common/args.js';
import type { AccessLogDestination } from './observe/access-log.js';
import { DEFAULT_LIMITS, type WaypointOptions } from './waypoint.js';
import { TOKEN_FILE, parseFeedAddress, type FeedAddress } from '../sources/feed/protocol.js';
import { usableCpus } from './workers-cpus.js';

export const DEFAULT_TOKEN_FILE = TOKEN_FILE;

export const WAYPOINT_USAGE = `kernway waypoint --namespace NS (--manifests DIR | --agent ADDRESS [--token-file PATH])
                 [--listen-address IP] [--mesh-port PORT]
                 [--mesh-address IP] [--metrics-address HOST:PORT] [--access-log stdout|stderr|off|FILE]
                 [--drain-timeout DURATION] [--header-timeout DURATION] [--idle-timeout DURATION]
                 [--max-header-bytes N] [--http1-server kernway|node] [--http2-server kernway|node]
                 [--metrics-names kernway|istio]
                 [--otlp-endpoint URL] [--trace-sampling RATIO] [--workers N|auto]
                 [--idle-compaction on|off]

  --namespace NS              the namespace this waypoint serves (its Gateways and Services)
  --manifests DIR             Kubernetes YAML (Gateway, HTTPRoute, Service, EndpointSlice, Pod,
                              Namespace, ReferenceGrant, AuthorizationPolicy) in DIR, watched
  --agent ADDRESS             the node agent's feed: unix:///PATH or HOST:PORT (in a pod: the node's
                              address from the downward API, status.hostIP, and the agent's feed port)
  --token-file PATH           over TCP, the projected ServiceAccount token (audience kernway) shown to
                              the agent (default ${DEFAULT_TOKEN_FILE})
  --listen-address IP         where Gateway listeners bind (default ${'0.0.0.0'})
  --mesh-port PORT            the mesh port: connections start with a PROXY v2 header (default 15019)
  --mesh-address IP           where the mesh port binds (default: --listen-address)
  --metrics-address HOST:PORT /metrics, /healthz, /readyz, /debug/routes (default 0.0.0.0:15020; 'off': none)
  --metrics-names kernway|istio  names of the request metrics: kernway's own (default) or Istio's
                              standard ones (istio_requests_total, istio_request_duration_milliseconds,
                              istio_request_bytes, istio_response_bytes; reporter="waypoint")
  --otlp-endpoint URL         export a span per request over OTLP HTTP/protobuf to URL
                              (http://collector:4318/v1/traces; a URL without a path gets /v1/traces)
  --trace-sampling RATIO      share of new traces sampled, 0 to 1 (default 0.01); a traceparent
                              that says sampled (or not) decides for its request
  --access-log WHERE          JSON access log: stdout (default), stderr, off, or a file path
  --drain-timeout DURATION    on SIGTERM, how long requests in flight may finish (default 10s)
  --header-timeout DURATION   time to receive a request's headers (default 10s)
  --idle-timeout DURATION     idle keep-alive connections are closed after (default 60s)
  --max-header-bytes N        largest request head accepted (default 16384)
  --http1-server kernway|node which server parses HTTP/1.x callers: the waypoint's own
                              (default) or node:http (kept for one release)
  --http2-server kernway|node which server reads HTTP/2 (h2c, gRPC) callers: the waypoint's
                              own (default) or Node's http2 on nghttp2 (kept for one release)
  --workers N|auto            data-path processes sharing the listening ports (SO_REUSEPORT; default 1:
                              one process); auto: the CPUs this process may use (affinity and the
                              cgroup's cpu.max, rounded up); metrics add up on the one admin port
  --idle-compaction on|off    idle after requests (none for 5s), give the young generation back with a
                              compacting GC (default on: 80-500 ms pause once per burst, a request
                              arriving then waits); off: keep it (more RSS, no pause)`;

export interface WaypointCliOptions {
  /** Exactly one of manifests and agent. */
  manifests?: string;
  agent?: { address: FeedAddress; tokenFile: string };
  waypoint: Omit<WaypointOptions, 'log'>;
  /** --workers: data-path processes (1: the waypoint is one process; more: a primary and N workers, waypoint/workers.ts). */
  workers: number;
}

export { parseHostPort };

function duration(name: string, v: string | undefined, def: number, max = MAX_TIMER_MS): number {
  if (v === undefined) return def;
  const ms = parseDuration(v);
  if (ms === undefined || ms === 0) throw new InvalidArgumentError(name, 'a duration such as 500ms, 10s or 1m', v);
  if (ms > max) throw new InvalidArgumentError(name, `a duration of at most ${formatDuration(max)}`, v);
  return ms;
}

/** --access-log FILE: a file path (created with its folders), not a folder, not on a kernel pseudo filesystem. */
function accessLogFile(v: string): string {
  if (v === '') throw new InvalidArgumentError('--access-log', 'stdout, stderr, off or a file path', v);
  let isDir = false;
  try { isDir = statSync(v).isDirectory(); } catch { /* does not exist yet: created */ }
  if (isDir) throw new InvalidArgumentError('--access-log', 'a file path (this is a directory)', v);
  const pseudo = pseudoFs(v);
  if (pseudo) throw new InvalidArgumentError('--access-log', `a file on a real filesystem (this is on the kernel's ${pseudo} filesystem)`, v);
  return v;
}

function ip(name: string, v: string): string {
  if (isIP(v) === 0) throw new InvalidArgumentError(name, 'an IPv4 or IPv6 address', v);
  return v;
}

/** --otlp-endpoint (an http or https URL) and --trace-sampling (0 to 1; only with an endpoint). */
function otlp(endpoint: string | undefined, sampling: string | undefined): { endpoint: string; sampleRatio: number } | undefined {
  if (endpoint === undefined) {
    if (sampling !== undefined) throw new InvalidArgumentError('--trace-sampling', 'to come with --otlp-endpoint (tracing is off without it)', sampling);
    return undefined;
  }
  let u: URL;
  try { u = new URL(endpoint); } catch { throw new InvalidArgumentError('--otlp-endpoint', 'an http:// or https:// URL', endpoint); }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidArgumentError('--otlp-endpoint', 'an http:// or https:// URL', endpoint);
  const text = sampling ?? '0.01';
  const ratio = /^(0(\.[0-9]+)?|1(\.0+)?|\.[0-9]+)$/.test(text) ? Number(text) : Number.NaN;
  if (!(ratio >= 0 && ratio <= 1)) throw new InvalidArgumentError('--trace-sampling', 'a ratio from 0 to 1 (0.01 samples 1% of new traces)', text);
  return { endpoint, sampleRatio: ratio };
}

/** The most --workers accepted: more processes than this is a typo, not a machine. */
export const MAX_WORKERS = 256;

/** --workers N|auto (default 1); auto: the CPUs this process may use (waypoint/workers-cpus.ts). */
function workerCount(v: string | undefined): number {
  if (v === undefined) return 1;
  // (On a Node.js without reusePort, auto is 1: the waypoint as one process.)
  if (v === 'auto') return hasReusePort() ? usableCpus() : 1;
  const n = /^[0-9]{1,4}$/.test(v) ? Number(v) : Number.NaN;
  if (!(n >= 1 && n <= MAX_WORKERS)) throw new InvalidArgumentError('--workers', `a number of processes from 1 to ${MAX_WORKERS}, or auto (the CPUs this process may use)`, v);
  if (n > 1 && !hasReusePort()) throw new InvalidArgumentError('--workers', `1 on Node.js ${process.versions.node} (more need listen()'s reusePort: Node.js 22.12 or newer)`, v);
  return n;
}

/** listen({ reusePort }) exists (Node.js 22.12+, 23.1+); older versions ignore it and the second worker's bind fails. */
export function hasReusePort(version = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/** Parse argv (strict); throws InvalidArgumentError naming the option. */
export function parseWaypointArgs(argv: string[]): WaypointCliOptions {
  let values;
  try {
    let tokens;
    const options = {
      namespace: { type: 'string' }, manifests: { type: 'string' }, agent: { type: 'string' }, 'token-file': { type: 'string' },
      'listen-address': { type: 'string' }, 'mesh-port': { type: 'string' }, 'mesh-address': { type: 'string' },
      'metrics-address': { type: 'string' }, 'access-log': { type: 'string' },
      'drain-timeout': { type: 'string' }, 'header-timeout': { type: 'string' }, 'idle-timeout': { type: 'string' },
      'max-header-bytes': { type: 'string' }, 'http1-server': { type: 'string' }, 'http2-server': { type: 'string' }, 'metrics-names': { type: 'string' },
      'otlp-endpoint': { type: 'string' }, 'trace-sampling': { type: 'string' }, workers: { type: 'string' },
      'idle-compaction': { type: 'string' },
    } as const;
    ({ values, tokens } = parseArgs({ args: joinNegativeValues(argv, options), strict: true, allowPositionals: false, tokens: true, options }));
    refuseRepeated(tokens);
  } catch (e) {
    // parseArgs' own message names the option and what is wrong; keep all of it (it is not a value)
    throw new KernwayError('KW_INVALID_ARGUMENT', `arguments: ${errorMessage(e).replace(/\n/g, ' ')}`);
  }
  const ns = values.namespace;
  if (ns === undefined || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns) || ns.length > 63) throw new InvalidArgumentError('--namespace', 'a namespace name (DNS label)', ns);
  if (values.manifests !== undefined && values.agent !== undefined) throw new InvalidArgumentError('--agent', 'either --manifests DIR or --agent ADDRESS, not both', values.agent);
  if (values.agent === undefined && (values.manifests === undefined || values.manifests === '')) throw new InvalidArgumentError('--manifests', 'a directory of manifests (or --agent ADDRESS)', values.manifests);
  if (values['token-file'] !== undefined && values.agent === undefined) throw new InvalidArgumentError('--token-file', 'only with --agent HOST:PORT', values['token-file']);
  const agent = values.agent === undefined ? undefined : { address: parseFeedAddress('--agent', values.agent), tokenFile: values['token-file'] ?? DEFAULT_TOKEN_FILE };
  const listenAddress = ip('--listen-address', values['listen-address'] ?? '0.0.0.0');
  const meshPortText = values['mesh-port'] ?? '15019';
  const meshPort = /^[0-9]{1,5}$/.test(meshPortText) ? Number(meshPortText) : Number.NaN;
  if (!(meshPort >= 0 && meshPort <= 65535)) throw new InvalidArgumentError('--mesh-port', 'a port from 0 to 65535', meshPortText);
  // Loopback unless asked: /debug/routes shows the whole routing table.
  const metrics = values['metrics-address'] ?? '127.0.0.1:15020';
  const metricsAddress = metrics === 'off' ? undefined : parseHostPort('--metrics-address', metrics);
  const al = values['access-log'] ?? 'stdout';
  const accessLog: AccessLogDestination = al === 'stdout' || al === 'stderr' || al === 'off' ? al : { file: accessLogFile(al) };
  const maxHeaderText = values['max-header-bytes'] ?? String(DEFAULT_LIMITS.maxHeaderBytes);
  const maxHeaderBytes = /^[0-9]+$/.test(maxHeaderText) ? Number(maxHeaderText) : Number.NaN;
  if (!(maxHeaderBytes >= 1024 && maxHeaderBytes <= 1024 * 1024)) throw new InvalidArgumentError('--max-header-bytes', 'a number from 1024 to 1048576', maxHeaderText);
  const http1Server = values['http1-server'] ?? 'kernway';
  if (http1Server !== 'kernway' && http1Server !== 'node') throw new InvalidArgumentError('--http1-server', 'kernway or node', http1Server);
  const http2Server = values['http2-server'] ?? 'kernway';
  if (http2Server !== 'kernway' && http2Server !== 'node') throw new InvalidArgumentError('--http2-server', 'kernway or node', http2Server);
  const tracing = otlp(values['otlp-endpoint'], values['trace-sampling']);
  const metricsNames = values['metrics-names'] ?? 'kernway';
  if (metricsNames !== 'kernway' && metricsNames !== 'istio') throw new InvalidArgumentError('--metrics-names', 'kernway or istio', metricsNames);
  const workers = workerCount(values.workers);
  const idleCompaction = values['idle-compaction'] ?? 'on';
  if (idleCompaction !== 'on' && idleCompaction !== 'off') throw new InvalidArgumentError('--idle-compaction', 'on or off', idleCompaction);
  return Object.freeze({
    ...(values.manifests !== undefined ? { manifests: values.manifests } : {}),
    workers,
    ...(agent ? { agent } : {}),
    waypoint: Object.freeze({
      namespace: ns,
      listenAddress,
      ...(values['mesh-address'] !== undefined ? { meshAddress: ip('--mesh-address', values['mesh-address']) } : {}),
      meshPort,
      metricsAddress,
      accessLog,
      limits: {
        ...DEFAULT_LIMITS,
        maxHeaderBytes,
        // Node's server refuses a headers timeout longer than its request timeout.
        headersTimeoutMs: duration('--header-timeout', values['header-timeout'], DEFAULT_LIMITS.headersTimeoutMs, DEFAULT_LIMITS.requestTimeoutMs),
        idleTimeoutMs: duration('--idle-timeout', values['idle-timeout'], DEFAULT_LIMITS.idleTimeoutMs),
      },
      upstream: { connectTimeoutMs: 5000, idleTimeoutMs: 60_000, maxIdlePerEndpoint: 256 },
      drainTimeoutMs: duration('--drain-timeout', values['drain-timeout'], 10_000),
      http1Server,
      http2Server,
      metricsNames,
      ...(tracing ? { tracing } : {}),
      ...(idleCompaction === 'off' ? { idleCompaction: false as const } : {}),
    }),
  });
}

/** The full options for Waypoint.start. */
export function withLogger(o: WaypointCliOptions, log: Logger): WaypointOptions {
  return { ...o.waypoint, log };
}
