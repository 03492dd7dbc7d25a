/**
 * kubectl's conventions for finding the API server: --kubeconfig, KUBECONFIG (a list,
 * merged), ~/.kube/config, then the in-cluster configuration; nothing found (or a file
 * without a server) is KW_KUBE_CONFIG naming what was tried. And the agent's options: one
 * source, --standalone DIR or the API.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createSecureServer, type Http2SecureServer, type ServerHttp2Stream } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import type https from 'node:https';
import { createServer as createTcpServer, connect as tcpConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../common/version.js';
import { H2_HEALTH, KubeClient, KubeConfig, loadKubeConfig } from '../../sources/kube-config.js';
import { makePki, writeKubeconfig } from '../../lab/cluster/pki.js';
import { validateAgentOptions } from '../../agent/options.js';

const dir = mkdtempSync(join(tmpdir(), 'kernway-kubeconfig-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function kubeconfig(name: string, server: string | undefined, context = 'lab'): string {
  const f = join(dir, name);
  writeFileSync(f, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': context,
    clusters: [{ name: 'c', cluster: server === undefined ? {} : { server, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'u', user: { token: 'abc' } }],
    contexts: [{ name: context, context: { cluster: 'c', user: 'u' } }],
  }));
  return f;
}

describe('loadKubeConfig', () => {
  it('--kubeconfig PATH wins over KUBECONFIG', () => {
    const a = kubeconfig('a', 'https://10.0.0.1:6443');
    const b = kubeconfig('b', 'https://10.0.0.2:6443');
    const r = loadKubeConfig(a, { KUBECONFIG: b, HOME: dir });
    expect(r).toMatchObject({ origin: 'flag', server: 'https://10.0.0.1:6443' });
  });

  it('KUBECONFIG, then ~/.kube/config, then in-cluster; nothing: KW_KUBE_CONFIG', () => {
    const b = kubeconfig('b2', 'https://10.0.0.2:6443/');
    // A missing file in the list is skipped, as kubectl does.
    expect(loadKubeConfig(undefined, { KUBECONFIG: `${join(dir, 'missing')}:${b}`, HOME: dir })).toMatchObject({ origin: 'KUBECONFIG', server: 'https://10.0.0.2:6443' });
    const home = join(dir, 'home');
    mkdirSync(join(home, '.kube'), { recursive: true });
    expect(() => loadKubeConfig(undefined, { HOME: home })).toThrow(/no --kubeconfig, no KUBECONFIG, no ~\/.kube\/config, and not in a pod/);
    writeFileSync(join(home, '.kube', 'config'), JSON.stringify({ apiVersion: 'v1', kind: 'Config', 'current-context': 'x',
      clusters: [{ name: 'c', cluster: { server: 'https://10.0.0.3:6443' } }], users: [{ name: 'u', user: {} }], contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }] }));
    expect(loadKubeConfig(undefined, { HOME: home })).toMatchObject({ origin: 'home', server: 'https://10.0.0.3:6443' });
  });

  it('a missing file or one without a server is KW_KUBE_CONFIG', () => {
    expect(() => loadKubeConfig(join(dir, 'nope'))).toThrow(expect.objectContaining({ code: 'KW_KUBE_CONFIG', message: expect.stringContaining(`${join(dir, 'nope')} does not exist`) }));
    const f = kubeconfig('noserver', undefined);
    expect(() => loadKubeConfig(f)).toThrow(expect.objectContaining({ code: 'KW_KUBE_CONFIG' }));
  });
});

/** A kubeconfig file of one cluster and one user (YAML, as kubectl writes them). */
function kubeconfigYaml(name: string, cluster: string, user: string): string {
  const f = join(dir, name);
  writeFileSync(f, `apiVersion: v1
kind: Config
current-context: ctx
clusters:
- name: c
  cluster:
${cluster.replace(/^/gm, '    ')}
users:
- name: u
  user:
${user.replace(/^/gm, '    ')}
contexts:
- name: ctx
  context: {cluster: c, user: u, namespace: team}
`);
  return f;
}

async function applied(kc: KubeConfig): Promise<https.RequestOptions & { headers: Record<string, string> }> {
  const opts: https.RequestOptions = { headers: { Accept: 'application/json' } };
  await kc.applyToHTTPSOptions(opts);
  return opts as https.RequestOptions & { headers: Record<string, string> };
}

describe('KubeConfig: credentials applied to a request', () => {
  it('CA, client certificate and key (files relative to the kubeconfig, or inline data), token, TLS server name', async () => {
    const sub = join(dir, 'certs');
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, 'ca.crt'), 'CA-PEM');
    writeFileSync(join(sub, 'client.key'), 'KEY-PEM');
    const f = kubeconfigYaml('certs.yaml', 'server: https://10.0.0.9:6443\ncertificate-authority: certs/ca.crt\ntls-server-name: api.internal',
      `client-certificate-data: ${Buffer.from('CERT-PEM').toString('base64')}\nclient-key: certs/client.key\ntoken: tok-1\nas: alice`);
    const { config } = loadKubeConfig(f);
    const o = await applied(config);
    expect(String(o.ca)).toBe('CA-PEM');
    expect(String(o.cert)).toBe('CERT-PEM');
    expect(String(o.key)).toBe('KEY-PEM');
    expect(o.servername).toBe('api.internal');
    expect(o.headers).toMatchObject({ Accept: 'application/json', Authorization: 'Bearer tok-1', 'Impersonate-User': 'alice' });
    expect(o.rejectUnauthorized).toBeUndefined();
    // One agent per credentials: keep-alive connections are reused across requests.
    expect((await applied(config)).agent).toBe(o.agent);
    expect(config.getCurrentContext()).toBe('ctx');
  });

  it('an exec credential plugin (client.authentication.k8s.io), run once while its token has not expired', async () => {
    const plugin = join(dir, 'plugin.sh');
    const count = join(dir, 'plugin.count');
    writeFileSync(plugin, `#!/bin/sh\necho run >> ${count}\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"from-exec-'"$KW_TEST_ARG"'"}}'\n`);
    chmodSync(plugin, 0o755);
    const f = kubeconfigYaml('exec.yaml', 'server: https://10.0.0.9:6443\ninsecure-skip-tls-verify: true',
      `exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: ${plugin}\n  env: [{name: KW_TEST_ARG, value: x1}]\n  interactiveMode: Never`);
    const { config } = loadKubeConfig(f);
    expect((await applied(config)).headers.Authorization).toBe('Bearer from-exec-x1');
    const o = await applied(config);
    expect(o.headers.Authorization).toBe('Bearer from-exec-x1');
    expect(o.rejectUnauthorized).toBe(false);
    expect(execFileSync('wc', ['-l', count], { encoding: 'utf8' }).trim().split(' ')[0]).toBe('1');
  });

  it("in a pod: the ServiceAccount's token file, CA and namespace; an IPv6 service host in brackets", async () => {
    const sa = join(dir, 'sa');
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, 'token'), 'sa-token');
    writeFileSync(join(sa, 'ca.crt'), 'SA-CA');
    writeFileSync(join(sa, 'namespace'), 'kernway-system');
    const kc = new KubeConfig();
    kc.loadFromCluster({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, sa);
    expect(kc.getCurrentCluster()?.server).toBe('https://[fd00::1]:443');
    const o = await applied(kc);
    expect(o.headers.Authorization).toBe('Bearer sa-token');
    expect(String(o.ca)).toBe('SA-CA');
    expect(kc.contexts[0]?.namespace).toBe('kernway-system');
  });

  it("an auth provider client-node's light parts do not cover (gcp) goes through client-node's full KubeConfig", async () => {
    const f = kubeconfigYaml('gcp.yaml', 'server: https://10.0.0.9:6443',
      'auth-provider:\n  name: gcp\n  config: {access-token: gcp-token, expiry: "2999-01-01T00:00:00Z"}');
    const o = await applied(loadKubeConfig(f).config);
    expect(o.headers.Authorization).toBe('Bearer gcp-token');
  });

  it("reading the configuration and the API does not load client-node's generated API clients or undici (~75 MiB)", () => {
    const mod = (p: string): string => JSON.stringify(pathToFileURL(join(projectRoot(), 'dist', p)).href);
    const script = `
      import { registerHooks } from 'node:module';
      const seen = [];
      registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); seen.push(r.url); return r; } });
      await import(${mod('sources/kube-source.js')});
      await import(${mod('agent/feed/token-review.js')});
      console.log(JSON.stringify(seen));`;
    const seen = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as string[];
    expect(seen.some((u) => u.includes('/@kubernetes/client-node/dist/config_types.js'))).toBe(true);
    expect(seen.filter((u) => u.includes('/client-node/dist/gen/') || u.includes('/node_modules/undici/') || u.endsWith('/client-node/dist/index.js'))).toEqual([]);
  });
});

describe('a kubeconfig file', () => {
  it("is parsed with the yaml package, which is then let go (none of its modules stays in require's cache)", () => {
    const f = join(dir, 'yaml-once.yaml');
    writeFileSync(f, 'apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster: {server: "https://10.0.0.7:6443"}\n'
      + 'contexts:\n- name: c\n  context: {cluster: k, user: u}\nusers:\n- name: u\n  user: {token: t}\n');
    const script = `
      import { createRequire } from 'node:module';
      const { loadKubeConfig } = await import(${JSON.stringify(pathToFileURL(join(projectRoot(), 'dist', 'sources', 'kube-config.js')).href)});
      const req = createRequire(import.meta.url);
      const before = Object.keys(req.cache).length;
      const { server } = loadKubeConfig(${JSON.stringify(f)});
      console.log(JSON.stringify({ server, yaml: Object.keys(req.cache).filter((k) => k.includes('/node_modules/yaml/')), kept: Object.keys(req.cache).length - before }));`;
    const r = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as { server: string; yaml: string[]; kept: number };
    expect(r.server).toBe('https://10.0.0.7:6443');
    expect(r.yaml).toEqual([]);
    expect(r.kept).toBe(0);
  });
});

describe('KubeClient: connections', () => {
  it('a client certificate the server checks; requests reuse a kept-alive connection, concurrent ones open their own', async () => {
    const pki = join(dir, 'pki');
    mkdirSync(pki, { recursive: true });
    await makePki(pki, ['127.0.0.1'], [{ name: 'agent', cn: 'system:node:n1', org: 'system:nodes' }]);
    const read = (f: string): Buffer => readFileSync(join(pki, f));
    const sockets = new Set<unknown>();
    const clients: string[] = [];
    const held: Array<() => void> = [];
    const server = createHttpsServer({ key: read('apiserver.key'), cert: read('apiserver.crt'), ca: read('ca.crt'), requestCert: true, rejectUnauthorized: true }, (req, res) => {
      sockets.add(req.socket);
      clients.push(String((req.socket as import('node:tls').TLSSocket).getPeerCertificate().subject?.CN));
      res.setHeader('Content-Type', 'application/json');
      // A watch: held open until the test lets it end.
      if (req.url?.includes('watch=1')) { res.write(''); held.push(() => res.end()); return; }
      res.end(JSON.stringify({ kind: 'APIResourceList', groupVersion: 'v1' }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const f = join(dir, 'pki.kubeconfig');
      writeKubeconfig(pki, 'agent', `https://127.0.0.1:${(server.address() as { port: number }).port}`, f);
      const client = new KubeClient(loadKubeConfig(f));
      expect(client.protocol).toBeUndefined();
      for (let i = 0; i < 5; i++) expect(await client.get<{ groupVersion: string }>('/api/v1')).toMatchObject({ groupVersion: 'v1' });
      // A server without h2 (this one offers no ALPN): HTTP/1.1, as `kernway status` shows it.
      expect(client.protocol).toBe('HTTP/1.1');
      expect(sockets.size).toBe(1);
      // Two watches at once hold a connection each; a request after them takes another.
      const watches = await Promise.all([client.open('/api/v1/services?watch=1'), client.open('/api/v1/pods?watch=1')]);
      expect(await client.get<{ groupVersion: string }>('/api/v1')).toMatchObject({ groupVersion: 'v1' });
      expect(sockets.size).toBe(3);
      expect(new Set(clients)).toEqual(new Set(['system:node:n1']));
      for (const end of held) end();
      for (const w of watches) w.resume();
      await Promise.all(watches.map((w) => new Promise((r) => w.on('end', r))));
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

/**
 * An API server speaking HTTP/2 and HTTP/1.1 as kube-apiserver does (ALPN h2, client
 * certificates checked), reached through a TCP relay the test can freeze (a half-open
 * connection: nothing passes, nothing is closed) or cut.
 */
async function h2Server(pki: string): Promise<{ server: Http2SecureServer; relayPort: number; connections: () => number; clients: string[];
  held: Array<() => void>; hanging: () => number; ended: string[]; freeze: () => void; cut: () => void; close: () => Promise<void> }> {
  const read = (f: string): Buffer => readFileSync(join(pki, f));
  let connections = 0;
  const clients: string[] = [];
  const held: Array<() => void> = [];
  let hanging = 0;
  /** Paths of never-answered streams the client ended (reset or closed them). */
  const ended: string[] = [];
  const server = createSecureServer({ key: read('apiserver.key'), cert: read('apiserver.crt'), ca: read('ca.crt'), requestCert: true, rejectUnauthorized: true, allowHTTP1: true });
  server.on('secureConnection', () => connections++);
  server.on('stream', (stream: ServerHttp2Stream, headers) => {
    clients.push(String(stream.session?.socket && (stream.session.socket as import('node:tls').TLSSocket).getPeerCertificate().subject?.CN));
    const path = String(headers[':path']);
    if (path.startsWith('/hang')) { hanging++; stream.on('error', () => undefined); stream.on('close', () => ended.push(path)); return; } // read, never answered
    if (path.includes('watch=1')) {
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.write('{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7"}}}\n');
      held.push(() => stream.end());
      return;
    }
    if (path.startsWith('/missing')) {
      stream.respond({ ':status': 404, 'content-type': 'application/json' });
      stream.end(JSON.stringify({ kind: 'Status', reason: 'NotFound', message: 'no such thing' }));
      return;
    }
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.end(JSON.stringify({ method: headers[':method'], auth: headers.authorization ?? '', body: Buffer.concat(chunks).toString() }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const target = (server.address() as { port: number }).port;
  const pairs: Array<[Socket, Socket]> = [];
  let frozen = false;
  const relay = createTcpServer((down) => {
    const up = tcpConnect(target, '127.0.0.1');
    pairs.push([down, up]);
    down.on('data', (d) => { if (!frozen) up.write(d); });
    up.on('data', (d) => { if (!frozen) down.write(d); });
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    down.on('error', () => undefined);
    up.on('error', () => undefined);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  return {
    server, relayPort: (relay.address() as { port: number }).port, connections: () => connections, clients, held, hanging: () => hanging, ended,
    freeze: () => { frozen = true; },
    cut: () => { frozen = false; for (const [a, b] of pairs.splice(0)) { a.destroy(); b.destroy(); } },
    close: async () => {
      for (const [a, b] of pairs.splice(0)) { a.destroy(); b.destroy(); }
      await new Promise((r) => relay.close(r));
      await new Promise((r) => server.close(r));
    },
  };
}

/** A PKI in `dir/name`, an h2 server with its relay (h2Server), and a kubeconfig for the relay with the agent's client certificate. */
async function h2Lab(name: string): Promise<{ srv: Awaited<ReturnType<typeof h2Server>>; kubeconfig: string }> {
  const pki = join(dir, name);
  mkdirSync(pki, { recursive: true });
  await makePki(pki, ['127.0.0.1'], [{ name: 'agent', cn: 'system:node:n1', org: 'system:nodes' }]);
  const srv = await h2Server(pki);
  const kubeconfig = join(dir, `${name}.kubeconfig`);
  writeKubeconfig(pki, 'agent', `https://127.0.0.1:${srv.relayPort}`, kubeconfig);
  return { srv, kubeconfig };
}

describe('KubeClient over HTTP/2 (a server offering h2, as kube-apiserver)', () => {
  it('lists, watches and writes are streams of one TLS connection with the client certificate', async () => {
    const { srv, kubeconfig: f } = await h2Lab('pki-h2');
    try {
      const client = new KubeClient(loadKubeConfig(f));
      // Ten watches at once (one per kind, as the source opens them), then requests beside them.
      const watches = await Promise.all(Array.from({ length: 10 }, (_, i) => client.open(`/api/v1/kind${i}?watch=1`)));
      for (let i = 0; i < 5; i++) expect(await client.get<{ method: string }>('/api/v1')).toMatchObject({ method: 'GET' });
      expect(await client.request('PUT', '/apis/coordination.k8s.io/v1/leases/x', { spec: { holderIdentity: 'n1' } }))
        .toMatchObject({ method: 'PUT', body: JSON.stringify({ spec: { holderIdentity: 'n1' } }) });
      await expect(client.get('/missing')).rejects.toMatchObject({ status: 404, reason: 'NotFound' });
      expect(srv.connections()).toBe(1);
      expect(client.protocol).toBe('HTTP/2');
      expect(new Set(srv.clients)).toEqual(new Set(['system:node:n1']));
      // A watch's events arrive as they come; a watch the server ends ends.
      const first = await new Promise<string>((r) => { watches[0]!.setEncoding('utf8'); watches[0]!.once('data', r); });
      expect(JSON.parse(first)).toMatchObject({ type: 'BOOKMARK' });
      for (const end of srv.held.splice(0)) end();
      for (const w of watches) w.resume();
      await Promise.all(watches.map((w) => new Promise((r) => w.on('end', r))));
      expect(watches.every((w) => w.complete)).toBe(true);
    } finally {
      await srv.close();
    }
  });

  it('a cut connection fails its streams; the next request opens another; a frozen one is found dead by a PING and ended', async () => {
    const { srv, kubeconfig: f } = await h2Lab('pki-h2b');
    const health = { ...H2_HEALTH };
    try {
      const client = new KubeClient(loadKubeConfig(f));
      const watch = await client.open('/api/v1/pods?watch=1');
      const failed = new Promise<unknown>((resolve) => { watch.on('error', resolve); watch.on('close', () => resolve(watch.errored ?? 'closed')); watch.resume(); });
      srv.cut();
      expect(await failed).toBeTruthy();
      expect(watch.complete).toBe(false);
      expect(await client.get('/api/v1')).toMatchObject({ method: 'GET' });
      expect(srv.connections()).toBe(2);

      // Frozen: no byte passes and nothing closes. A PING after idleMs goes unanswered for pingTimeoutMs: the connection ends.
      H2_HEALTH.idleMs = 300;
      H2_HEALTH.pingTimeoutMs = 300;
      const client2 = new KubeClient(loadKubeConfig(f));
      const w2 = await client2.open('/api/v1/pods?watch=1');
      const failed2 = new Promise<unknown>((resolve) => { w2.on('error', resolve); w2.on('close', () => resolve(w2.errored ?? 'closed')); w2.resume(); });
      srv.freeze();
      expect(String(await failed2)).toMatch(/did not answer a PING within 300 ms/);
      expect(w2.complete).toBe(false);
      srv.cut(); // unfrozen
      expect(await client2.get('/api/v1')).toMatchObject({ method: 'GET' });
      expect(srv.connections()).toBe(4);
    } finally {
      Object.assign(H2_HEALTH, health);
      await srv.close();
    }
  });
});

describe('KubeClient: requests waiting for an answer', () => {
  it('a client certificate renewed on disk (as the kubelet rotates its own) is used from the next request, on a new connection; the same bytes keep the connection', async () => {
    const pki = join(dir, 'pki-rotate');
    mkdirSync(pki, { recursive: true });
    await makePki(pki, ['127.0.0.1'], [{ name: 'agent', cn: 'system:node:n1', org: 'system:nodes' }, { name: 'renewed', cn: 'system:node:n1-renewed', org: 'system:nodes' }]);
    const srv = await h2Server(pki);
    try {
      const live = (from: string): void => { copyFileSync(join(pki, `${from}.crt`), join(pki, 'live.crt')); copyFileSync(join(pki, `${from}.key`), join(pki, 'live.key')); };
      live('agent');
      const f = join(pki, 'files.kubeconfig');
      writeFileSync(f, ['apiVersion: v1', 'kind: Config', 'clusters:', '- name: lab', '  cluster:', `    server: https://127.0.0.1:${srv.relayPort}`, '    certificate-authority: ca.crt',
        'users:', '- name: agent', '  user:', '    client-certificate: live.crt', '    client-key: live.key',
        'contexts:', '- name: lab', '  context: {cluster: lab, user: agent}', 'current-context: lab', ''].join('\n'));
      const client = new KubeClient(loadKubeConfig(f));
      await client.get('/api/v1');
      live('agent'); // written again, same bytes
      await client.get('/api/v1');
      expect(srv.connections()).toBe(1);
      live('renewed');
      await client.get('/api/v1');
      expect(srv.connections()).toBe(2);
      expect(srv.clients).toEqual(['system:node:n1', 'system:node:n1', 'system:node:n1-renewed']);
    } finally {
      await srv.close();
    }
  });

  it('fail as soon as the connection is cut (the API server killed), not at their deadline; one never answered fails at its deadline', async () => {
    const { srv, kubeconfig: f } = await h2Lab('pki-h2c');
    try {
      const client = new KubeClient(loadKubeConfig(f));
      expect(await client.get('/api/v1')).toMatchObject({ method: 'GET' }); // the connection is up
      // A list page, a Lease renewal and a watch, each sent and waiting for its head; deadlines
      // far beyond the test's: only the cuts can end them. (An HTTP/2 stream waiting for its
      // head when the connection goes only closes: these waited forever.)
      const outcome = (p: Promise<unknown>): Promise<string> => p.then(() => 'answered', (e: unknown) => String(e));
      const waiting = [
        outcome(client.get('/hang/pods?limit=200', undefined, 3_600_000)),
        outcome(client.request('PUT', '/hang/leases/kernway-agent', { spec: {} }, 'application/json', 3_600_000)),
        outcome(client.open('/hang/services?watch=1', new AbortController().signal)),
      ];
      const received = async (n: number): Promise<void> => {
        for (let i = 0; srv.hanging() < n; i++) {
          if (i > 1000) throw new Error(`the server received ${srv.hanging()} of ${n} requests`);
          await new Promise((r) => setTimeout(r, 5));
        }
      };
      await received(3);
      srv.cut();
      // A request whose connection ended before the answer is sent once more on a new one
      // (KubeClient.send: the session may have ended before it took the stream); cut again.
      await received(6);
      srv.cut();
      const [list, lease, watch] = await Promise.all(waiting);
      expect(list).toMatch(/GET \/hang\/pods: the connection to the API server was cut before the answer came/);
      expect(lease).toMatch(/PUT \/hang\/leases\/kernway-agent: the connection to the API server was cut before the answer came/);
      expect(watch).toMatch(/GET \/hang\/services: the connection to the API server was cut/);
      // The next request opens a new connection.
      expect(await client.get('/api/v1')).toMatchObject({ method: 'GET' });
      // Never answered, never cut: its deadline.
      await expect(client.request('PUT', '/hang/x', { spec: {} }, 'application/json', 300)).rejects.toThrow(/PUT \/hang\/x: no answer within 300 ms/);
      await expect(client.get('/hang/y', undefined, 300)).rejects.toThrow(/GET \/hang\/y: no answer within 300 ms/);
      // A watch its caller stops (the agent stopping): rejected at once.
      const ctl = new AbortController();
      const watching = client.open('/hang/z?watch=1', ctl.signal);
      for (let i = 0; !srv.ended.includes('/hang/y') || srv.hanging() < 6; i++) {
        if (i > 1000) throw new Error(`the server ended ${srv.ended.join(', ')} and received ${srv.hanging()} hung requests`);
        await new Promise((r) => setTimeout(r, 5));
      }
      ctl.abort();
      await expect(watching).rejects.toThrow(/aborted/);
      // And each stream given up is ended on the connection (reset), not left open on the server.
      for (let i = 0; !srv.ended.includes('/hang/z?watch=1'); i++) {
        if (i > 1000) throw new Error(`the server saw only ${srv.ended.join(', ')} ended`);
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(srv.ended).toEqual(expect.arrayContaining(['/hang/x', '/hang/y', '/hang/z?watch=1']));
    } finally {
      await srv.close();
    }
  });
});

describe("KubeClient under the DaemonSet's NODE_OPTIONS (deploy/daemonset.yaml: --use-openssl-ca)", () => {
  it("trusts the kubeconfig's CA and no other; only a kubeconfig without a CA is checked against OpenSSL's system store", async () => {
    const pki = join(dir, 'pki-openssl');
    const other = join(dir, 'pki-openssl-other');
    const store = join(dir, 'openssl-system-store');
    for (const d of [pki, other, store]) mkdirSync(d, { recursive: true });
    await Promise.all([pki, other].map((d) => makePki(d, ['127.0.0.1'], [{ name: 'agent', cn: 'system:node:n1', org: 'system:nodes' }])));
    // The "system" store (OpenSSL's hashed directory, SSL_CERT_DIR) holds the other CA.
    copyFileSync(join(other, 'ca.crt'), join(store, 'ca.crt'));
    execFileSync('openssl', ['rehash', store]);
    const srv = await h2Server(pki);
    const otherSrv = await h2Server(other);
    try {
      const b64 = (d: string): string => readFileSync(join(d, 'ca.crt')).toString('base64');
      // The client certificate of the server's own PKI (each server checks it), the CA as given.
      const config = (name: string, server: string, port: number, ca: string | undefined): string => {
        const f = join(dir, `openssl-${name}.kubeconfig`);
        writeKubeconfig(server, 'agent', `https://127.0.0.1:${port}`, f);
        const text = readFileSync(f, 'utf8').replace(/^ {4}certificate-authority-data: .*\n/m, ca === undefined ? '' : `    certificate-authority-data: ${ca}\n`);
        writeFileSync(f, text);
        return f;
      };
      const cases = {
        own: config('own', pki, srv.relayPort, b64(pki)), // the server's CA: trusted
        another: config('another', pki, srv.relayPort, b64(other)), // another CA (the system store's too): not this server's
        storeServer: config('store-server', other, otherSrv.relayPort, b64(pki)), // a server of the system store's CA, the kubeconfig's CA another: refused
        none: config('none', other, otherSrv.relayPort, undefined), // no CA: the system store's, which holds the server's
      };
      const script = `
        const { KubeClient, loadKubeConfig } = await import(${JSON.stringify(pathToFileURL(join(projectRoot(), 'dist', 'sources', 'kube-config.js')).href)});
        const out = {};
        for (const [k, f] of Object.entries(${JSON.stringify(cases)})) {
          try { out[k] = (await new KubeClient(loadKubeConfig(f)).get('/api/v1', undefined, 10000)).method; } catch (e) { out[k] = String(e.code ?? '') + ' ' + String(e.message); }
        }
        console.log(JSON.stringify(out));
        process.exit(0);`;
      // The agent's environment in a pod: no SSL_CERT_FILE or NODE_EXTRA_CA_CERTS, the DaemonSet's NODE_OPTIONS.
      const daemonSet = readFileSync(join(projectRoot(), 'deploy', 'daemonset.yaml'), 'utf8');
      const nodeOptions = /- name: NODE_OPTIONS\n\s+value: "([^"]*)"/.exec(daemonSet)?.[1];
      expect(nodeOptions).toContain('--use-openssl-ca');
      const env = { PATH: process.env.PATH, HOME: process.env.HOME, SSL_CERT_DIR: store, NODE_OPTIONS: nodeOptions };
      const stdout = await new Promise<string>((resolve, reject) => {
        execFile(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env }, (err, out) => (err ? reject(err) : resolve(out)));
      });
      const r = JSON.parse(stdout) as Record<keyof typeof cases, string>;
      expect(r.own).toBe('GET');
      expect(r.another).toMatch(/certificate|CERT/i);
      expect(r.storeServer).toMatch(/certificate|CERT/i);
      expect(r.none).toBe('GET');
    } finally {
      await srv.close();
      await otherSrv.close();
    }
  });
});

describe('agent options: one source', () => {
  const base = { nodeName: 'node-a', cgroup: '/sys/fs/cgroup', bpffs: '/sys/fs/bpf/kernway', adminSocket: '/run/kernway/admin.sock', metricsAddress: '0.0.0.0:9464' };
  it('the API by default, --kubeconfig PATH, or --standalone DIR; not both', () => {
    expect(validateAgentOptions(base).standalone).toBeUndefined();
    expect(validateAgentOptions({ ...base, kubeconfig: 'rel/kubeconfig' }).kubeconfig).toBe('rel/kubeconfig');
    expect(validateAgentOptions({ ...base, standalone: '/etc/kernway' }).standalone).toBe('/etc/kernway');
    expect(() => validateAgentOptions({ ...base, standalone: '/etc/kernway', kubeconfig: '/k' })).toThrow(/--kubeconfig.*not both --standalone DIR and --kubeconfig PATH/);
  });
});
