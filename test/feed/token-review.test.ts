/**
 * The feed over TCP against a real API server (the lab cluster): a waypoint presents a
 * projected-style ServiceAccount token (TokenRequest, audience kernway) and the agent's feed
 * server checks it with TokenReview. Namespace A's token gets A's slice; it cannot obtain
 * B's; a token for another audience or no token gets nothing.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { FeedServer } from '../../agent/feed/server.js';
import { KubeTokenReviewer } from '../../agent/feed/token-review.js';
import { Cluster } from '../../lab/cluster/index.js';
import { parseFeedAddress } from '../../sources/feed/protocol.js';
import { FeedSource } from '../../sources/feed-source.js';
import type { SourceBatch } from '../../sources/source.js';
import { GATEWAY_CLASS, nsObjects, until } from './helpers.js';

const log = createLogger('feed-token-test', process.env.KERNWAY_LOG_LEVEL ?? 'silent');
let cluster: Cluster;
let server: FeedServer;
let dir: string;
let port: number;
const sources: FeedSource[] = [];

async function token(ns: string, audience: string): Promise<string> {
  await cluster.api.post(`/api/v1/namespaces`, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }).catch(() => undefined);
  await cluster.api.post(`/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'waypoint' } }).catch(() => undefined);
  const r = await cluster.api.post<{ status: { token: string } }>(`/api/v1/namespaces/${ns}/serviceaccounts/waypoint/token`,
    { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: [audience], expirationSeconds: 3600 } });
  return r.status.token;
}

/** A waypoint's feed client over TCP with `tokenText` in its token file; collects batches and errors. */
function client(ns: string, tokenText: string | undefined): { batches: SourceBatch[]; source: FeedSource } {
  const file = join(dir, `token-${sources.length}`);
  if (tokenText !== undefined) writeFileSync(file, tokenText);
  const batches: SourceBatch[] = [];
  const source = new FeedSource({ address: parseFeedAddress('--agent', `127.0.0.1:${port}`), namespace: ns, name: `wp-${ns}`, tokenFile: file, log, backoff: { initialMs: 200, maxMs: 1000 } });
  sources.push(source);
  void source.start((b) => { batches.push(b); b.settle?.(); });
  return { batches, source };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kw-feed-token-'));
  cluster = await Cluster.start({ tag: 'feedtok', nodes: 1 });
  server = new FeedServer({ addresses: [parseFeedAddress('--feed-address', '127.0.0.1:0')], log, agentId: 'test', tokenReviewer: KubeTokenReviewer.fromKubeconfig(cluster.kubeconfig) });
  server.update([...GATEWAY_CLASS, ...nsObjects('team-a', { echoIp: '10.1.0.1', echoPort: 8080, vip: '10.96.50.1', gatewayPort: 8080 }), ...nsObjects('team-b', { echoIp: '10.1.0.2', echoPort: 8080, vip: '10.96.50.2', gatewayPort: 8081 })], []);
  await server.start();
  port = server.boundPorts[0]!;
}, 180_000);

afterAll(async () => {
  for (const s of sources) s.close();
  await server?.close();
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('feed over TCP with TokenReview against a real API server', () => {
  it("namespace A's ServiceAccount token gets A's slice", async () => {
    const { batches } = client('team-a', await token('team-a', 'kernway'));
    await until(() => batches.length > 0, 20_000, 'snapshot');
    const names = batches[0]!.upserted.map((o) => `${o.object.kind} ${o.object.metadata.namespace ?? ''}/${o.object.metadata.name}`);
    expect(names).toContain('HTTPRoute team-a/route');
    expect(names.some((n) => n.includes('team-b/') && !n.startsWith('Namespace'))).toBe(false);
    expect(server.status().waypoints.find((w) => w.namespace === 'team-a')?.peer).toMatch(/serviceaccount team-a\/waypoint/);
  }, 60_000);

  it("A's token cannot obtain B's slice; another audience or no token gets nothing", async () => {
    const denied0 = server.status().denied;
    const a = client('team-b', await token('team-a', 'kernway'));
    const other = client('team-b', await token('team-b', 'not-kernway'));
    const none = client('team-b', undefined);
    await until(() => server.status().denied >= denied0 + 3, 20_000, 'three refusals');
    expect(a.batches.length + other.batches.length + none.batches.length).toBe(0);
    expect(server.status().waypoints.some((w) => w.namespace === 'team-b')).toBe(false);
    // B's own token is served.
    const b = client('team-b', await token('team-b', 'kernway'));
    await until(() => b.batches.length > 0, 20_000, "B's snapshot");
  }, 60_000);
});
