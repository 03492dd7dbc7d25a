/**
 * TokenReview (authentication.k8s.io/v1) of the projected ServiceAccount tokens waypoints
 * show over TCP: the API server says whether the token is valid for the audience `kernway`
 * and whose it is (system:serviceaccount:NS:NAME, and the pod it was made for). One POST
 * with the agent's own client (sources/kube-config.ts: its configuration and credentials).
 */
import { KubeClient, loadKubeConfig } from '../../sources/kube-config.js';
import { TOKEN_AUDIENCE } from '../../sources/feed/protocol.js';
import type { TokenIdentity, TokenReviewer } from './server.js';

const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
const TOKEN_REVIEWS = '/apis/authentication.k8s.io/v1/tokenreviews';

/** What the API server answers (the fields read). */
interface TokenReviewStatus {
  authenticated?: boolean;
  error?: string;
  audiences?: string[];
  user?: { username?: string; extra?: Record<string, string[]> };
}

export class KubeTokenReviewer implements TokenReviewer {
  /** Reviews of the same token within `cacheMs` are answered from memory (a reconnecting waypoint). */
  private readonly cache = new Map<string, { at: number; id: TokenIdentity }>();

  constructor(private readonly client: KubeClient, private readonly cacheMs = 60_000) {}

  /** From a kubeconfig file, or (none given) KUBECONFIG, ~/.kube/config or the in-cluster config. */
  static fromKubeconfig(path: string | undefined): KubeTokenReviewer {
    return new KubeTokenReviewer(new KubeClient(loadKubeConfig(path)));
  }

  async review(token: string): Promise<TokenIdentity> {
    const hit = this.cache.get(token);
    if (hit && Date.now() - hit.at < this.cacheMs) return hit.id;
    const r = await this.client.request<{ status?: TokenReviewStatus }>('POST', TOKEN_REVIEWS,
      { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [TOKEN_AUDIENCE] } });
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
