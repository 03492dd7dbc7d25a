/**
 * TokenReview (authentication.k8s.io/v1) of the projected ServiceAccount tokens waypoints
 * show over TCP: the API server says whether the token is valid for the audience `kernway`
 * and whose it is (system:serviceaccount:NS:NAME, and the pod it was made for).
 */
import { AuthenticationV1Api, KubeConfig } from '@kubernetes/client-node';
import { TOKEN_AUDIENCE } from '../../sources/feed/protocol.js';
import type { TokenIdentity, TokenReviewer } from './server.js';

const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';

export class KubeTokenReviewer implements TokenReviewer {
  private readonly api: AuthenticationV1Api;
  /** Reviews of the same token within `cacheMs` are answered from memory (a reconnecting waypoint). */
  private readonly cache = new Map<string, { at: number; id: TokenIdentity }>();

  constructor(kc: KubeConfig, private readonly cacheMs = 60_000) {
    this.api = kc.makeApiClient(AuthenticationV1Api);
  }

  /** From a kubeconfig file, or (none given) KUBECONFIG, ~/.kube/config or the in-cluster config. */
  static fromKubeconfig(path: string | undefined): KubeTokenReviewer {
    const kc = new KubeConfig();
    if (path) kc.loadFromFile(path); else kc.loadFromDefault();
    return new KubeTokenReviewer(kc);
  }

  async review(token: string): Promise<TokenIdentity> {
    const hit = this.cache.get(token);
    if (hit && Date.now() - hit.at < this.cacheMs) return hit.id;
    const r = await this.api.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [TOKEN_AUDIENCE] } } });
    const st = r.status;
    if (!st?.authenticated) throw new Error(`the token did not pass TokenReview${st?.error ? ` (${st.error})` : ''}`);
    if (st.audiences && !st.audiences.includes(TOKEN_AUDIENCE)) throw new Error(`the token is not for audience ${TOKEN_AUDIENCE}`);
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(st.user?.username ?? '');
    if (!m) throw new Error(`the token is not a ServiceAccount's (${st.user?.username ?? 'no user'})`);
    const pod = st.user?.extra?.[POD_NAME_EXTRA]?.[0];
    const id: TokenIdentity = { namespace: m[1]!, serviceAccount: m[2]!, ...(pod ? { podName: pod } : {}) };
    if (this.cache.size > 1000) this.cache.clear();
    this.cache.set(token, { at: Date.now(), id });
    return id;
  }
}
