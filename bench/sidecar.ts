/**
 * The "sidecar" mode: a proxy in every pod and iptables REDIRECT rules in the pod's own
 * network namespace, the way Istio's istio-iptables sets them up, with Debian's nginx
 * as the proxy (Envoy is not packaged).
 *
 * Rules (nat table of the pod's namespace), after istio-iptables:
 *   PREROUTING -p tcp -j ISTIO_INBOUND
 *     ISTIO_INBOUND -p tcp --dport <app port> -j ISTIO_IN_REDIRECT  (per port: see below)
 *   OUTPUT -p tcp -j ISTIO_OUTPUT
 *     ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
 *     ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
 *     ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN      (the proxy's own traffic)
 *     ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
 *     ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
 *     ISTIO_OUTPUT -j ISTIO_REDIRECT
 * Envoy finds a connection's original destination with SO_ORIGINAL_DST and listens on
 * one port (15001 out, 15006 in); nginx cannot, so there is one REDIRECT and one
 * listener per Service port (outbound: -d ClusterIP --dport P; inbound: --dport P).
 * Like Envoy with EDS, the client's proxy connects to the endpoint (the server pod's
 * address), not to the ClusterIP; the server's proxy connects to the app on 127.0.0.1.
 *
 * Proxy (one nginx process per pod, uid 1337, single process like a 1-worker Envoy):
 *   - HTTP/1.1 ports: http proxy with keep-alive upstream connections;
 *   - the h2c port: h2c towards the app on the client side; nginx only speaks HTTP/1.1
 *     upstream, so the hop between the proxies and to the app is HTTP/1.1 keep-alive
 *     (the app's HTTP/1.1 port);
 *   - TCP ports (sockperf, connection rate, iperf3): stream (L4) proxy.
 */
import { TARGET_PORTS, TARGET_VIP, type TargetPortName } from './services.js';

export const PROXY_UID = 1337;
export const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

export type ProxyKind = 'http' | 'h2c' | 'tcp';

/** How each target port is proxied. */
export const PORT_KINDS: Record<TargetPortName, ProxyKind> = {
  sockperf: 'tcp', http: 'http', h2c: 'h2c', connrate: 'tcp', iperf: 'tcp',
};

export interface SidecarPort {
  name: TargetPortName;
  /** Service (and app) port. */
  port: number;
  kind: ProxyKind;
  /** The client-side proxy's listener (outbound). */
  outbound: number;
  /** The server-side proxy's listener (inbound). */
  inbound: number;
}

/** The proxied ports: outbound listeners from 15010, inbound from 15110, in TARGET_PORTS order. */
export function sidecarPorts(names: readonly TargetPortName[] = Object.keys(TARGET_PORTS) as TargetPortName[]): SidecarPort[] {
  const all = Object.keys(TARGET_PORTS) as TargetPortName[];
  return names.map((name) => {
    const i = all.indexOf(name);
    return { name, port: TARGET_PORTS[name], kind: PORT_KINDS[name], outbound: 15010 + i, inbound: 15110 + i };
  });
}

/** iptables-restore input (nat table) for one pod, istio-iptables style. */
export function sidecarIptables(ports: readonly SidecarPort[], vip = TARGET_VIP, uid = PROXY_UID): string {
  const lines = [
    '*nat',
    ':ISTIO_INBOUND - [0:0]',
    ':ISTIO_IN_REDIRECT - [0:0]',
    ':ISTIO_OUTPUT - [0:0]',
    ':ISTIO_REDIRECT - [0:0]',
    '-A PREROUTING -p tcp -j ISTIO_INBOUND',
    '-A OUTPUT -p tcp -j ISTIO_OUTPUT',
  ];
  for (const p of ports) lines.push(`-A ISTIO_INBOUND -p tcp --dport ${p.port} -j ISTIO_IN_REDIRECT`);
  for (const p of ports) lines.push(`-A ISTIO_IN_REDIRECT -p tcp --dport ${p.port} -j REDIRECT --to-ports ${p.inbound}`);
  lines.push(
    `-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner ${uid} -j ISTIO_IN_REDIRECT`,
    `-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner ${uid} -j RETURN`,
    `-A ISTIO_OUTPUT -m owner --uid-owner ${uid} -j RETURN`,
    `-A ISTIO_OUTPUT -m owner --gid-owner ${uid} -j RETURN`,
    '-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN',
    '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
  );
  for (const p of ports) lines.push(`-A ISTIO_REDIRECT -d ${vip}/32 -p tcp --dport ${p.port} -j REDIRECT --to-ports ${p.outbound}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/**
 * nginx configuration of one pod's proxy (both directions, as a sidecar has both):
 * outbound listeners proxy to `endpoint` (the server pod), inbound ones to the app on
 * 127.0.0.1. `dir` holds the pid file, logs and temp folders.
 */
export function sidecarNginxConf(ports: readonly SidecarPort[], endpoint: string, dir: string, opts: { streamModule?: string } = {}): string {
  const tcp = ports.filter((p) => p.kind === 'tcp');
  const http = ports.filter((p) => p.kind !== 'tcp');
  const appHttpPort = TARGET_PORTS.http;
  const lines: string[] = [];
  if (tcp.length > 0) lines.push(`load_module ${opts.streamModule ?? NGINX_STREAM_MODULE};`);
  lines.push(
    'daemon off;',
    'master_process off;',
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    'worker_rlimit_nofile 65536;',
    'events { worker_connections 16384; multi_accept on; }',
  );
  if (tcp.length > 0) {
    lines.push('stream {');
    for (const p of tcp) {
      lines.push(`  server { listen ${p.outbound} reuseport; proxy_pass ${endpoint}:${p.port}; }  # outbound ${p.name}`);
      lines.push(`  server { listen ${p.inbound} reuseport; proxy_pass 127.0.0.1:${p.port}; }  # inbound ${p.name}`);
    }
    lines.push('}');
  }
  if (http.length > 0) {
    lines.push(
      'http {',
      '  access_log off;',
      '  keepalive_requests 1000000;',
      '  keepalive_timeout 75s;',
      `  client_body_temp_path ${dir}/body;`,
      `  proxy_temp_path ${dir}/proxy;`,
      `  fastcgi_temp_path ${dir}/fastcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi;`,
      `  scgi_temp_path ${dir}/scgi;`,
      '  proxy_http_version 1.1;',
      '  proxy_set_header Connection "";',
      '  proxy_buffering off;',
    );
    for (const p of http) {
      lines.push(
        `  upstream out_${p.name} { server ${endpoint}:${p.port}; keepalive 256; }`,
        // nginx speaks HTTP/1.1 upstream: the inbound side always reaches the app's HTTP/1.1 port.
        `  upstream in_${p.name} { server 127.0.0.1:${appHttpPort}; keepalive 256; }`,
        `  server { listen ${p.outbound} reuseport${p.kind === 'h2c' ? ' http2' : ''}; location / { proxy_pass http://out_${p.name}; } }  # outbound ${p.name}`,
        `  server { listen ${p.inbound} reuseport; location / { proxy_pass http://in_${p.name}; } }  # inbound ${p.name}`,
      );
    }
    lines.push('}');
  }
  return lines.join('\n') + '\n';
}

/** The app's nginx in the server pod: HTTP/1.1 on the http and connrate ports, h2c on the h2c port. */
export function appNginxConf(dir: string): string {
  return [
    'daemon off;',
    'master_process off;',
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    'worker_rlimit_nofile 65536;',
    'events { worker_connections 16384; multi_accept on; }',
    'http {',
    '  access_log off;',
    '  keepalive_requests 1000000;',
    '  keepalive_timeout 75s;',
    `  client_body_temp_path ${dir}/body;`,
    `  proxy_temp_path ${dir}/proxy;`,
    `  fastcgi_temp_path ${dir}/fastcgi;`,
    `  uwsgi_temp_path ${dir}/uwsgi;`,
    `  scgi_temp_path ${dir}/scgi;`,
    `  server { listen ${TARGET_PORTS.http} reuseport; listen ${TARGET_PORTS.connrate} reuseport; location / { return 200 "ok\\n"; } }`,
    `  server { listen ${TARGET_PORTS.h2c} reuseport http2; location / { return 200 "ok\\n"; } }`,
    '}',
    '',
  ].join('\n');
}
