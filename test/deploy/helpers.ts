/** Helpers for deploy/ against a lab cluster: the Gateway API CRDs, requests as a ServiceAccount. */
import { readdirSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { projectRoot } from '../../common/version.js';
import type { Cluster } from '../../lab/cluster/index.js';
import { buildModel } from '../../model/model.js';
import type { Model } from '../../model/types.js';

export const DEPLOY_DIR = join(projectRoot(), 'deploy');
export const GATEWAY_API_CRDS = join(projectRoot(), '..', 'shared', 'crds', 'gateway-api-standard');

/** The Gateway API standard CRDs from ../shared (1.20 ignores their CEL rules: --validate=false). */
export async function installGatewayApiCrds(cluster: Cluster): Promise<void> {
  const files = readdirSync(GATEWAY_API_CRDS).filter((f) => f.endsWith('.yaml')).map((f) => `-f=${join(GATEWAY_API_CRDS, f)}`);
  await cluster.kubectl(['apply', '--validate=false', ...files], { timeoutMs: 120_000 });
  await cluster.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/gatewayclasses.gateway.networking.k8s.io', 'crd/gateways.gateway.networking.k8s.io', 'crd/httproutes.gateway.networking.k8s.io'], { timeoutMs: 90_000 });
}

/** A token of a ServiceAccount from the TokenRequest API (what the kubelet mounts in its pods). */
export async function serviceAccountToken(cluster: Cluster, ns: string, name: string): Promise<string> {
  const tr = await cluster.api.post<{ status: { token: string } }>(`/api/v1/namespaces/${ns}/serviceaccounts/${name}/token`, {
    apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 600 },
  });
  return tr.status.token;
}

/** One request to the API server with a bearer token; resolves with the HTTP status and body. */
export function asToken(cluster: Cluster, token: string, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: string }> {
  const url = new URL(cluster.api.creds.server);
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request({
      method, host: url.hostname, port: Number(url.port), path, ca: cluster.api.creds.ca,
      headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(data ? { 'content-type': contentType, 'content-length': String(data.length) } : {}) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => { text += d; }).on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** KubeRequests (agent/cluster/api.ts) as a bearer token: the agent's parts run with exactly the ServiceAccount's rights. */
export class TokenApi {
  requests = 0;
  constructor(private readonly cluster: Cluster, private readonly token: string) {}
  async request<T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    this.requests++;
    const res = await asToken(this.cluster, this.token, method, path, body, contentType);
    if (res.status >= 400) throw Object.assign(new Error(`${method} ${path}: ${res.status} ${res.body.slice(0, 200)}`), { status: res.status });
    return (res.body ? JSON.parse(res.body) : {}) as T;
  }
}

/** The model built from what the API server holds (what the agent's API source gives it). */
export async function modelFromApi(cluster: Cluster): Promise<Model> {
  const kinds = 'namespaces,services,endpointslices.discovery.k8s.io,gatewayclasses.gateway.networking.k8s.io,gateways.gateway.networking.k8s.io,httproutes.gateway.networking.k8s.io,referencegrants.gateway.networking.k8s.io';
  const out = await cluster.kubectl(['get', kinds, '-A', '-o', 'json']);
  const items = (JSON.parse(out.stdout) as { items: Array<{ kind: string; metadata: { namespace?: string; name: string } }> }).items;
  return buildModel(items.map((o) => ({ object: o as never, file: `api:${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`, index: 0 })));
}
