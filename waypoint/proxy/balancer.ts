/**
 * Choosing where a request goes: a backendRef of the rule by weight (smooth weighted
 * round robin, as nginx does: exact shares, spread out), then an endpoint of the Service
 * (round robin, or least-request: the less busy of two random picks, as Envoy does).
 * State lives here, keyed by target and endpoint, so it survives configuration changes.
 */
import type { Endpoint, ServiceTarget } from '../routing/backends.js';
import type { CompiledBackend, CompiledRule } from '../routing/table.js';

interface TargetState { next: number; inFlight: Map<string, number> }

export class Balancer {
  private readonly targets = new Map<string, TargetState>();
  private readonly weights = new WeakMap<CompiledRule, number[]>();

  /** A backend of the rule by weight; undefined when all weights are 0 or there is none. */
  pickBackend(rule: CompiledRule): CompiledBackend | undefined {
    const bs = rule.backends;
    if (bs.length === 1) return bs[0]!.weight > 0 ? bs[0] : undefined;
    if (rule.totalWeight <= 0) return undefined;
    let cur = this.weights.get(rule);
    if (!cur) this.weights.set(rule, (cur = new Array<number>(bs.length).fill(0)));
    let best = -1;
    for (let i = 0; i < bs.length; i++) {
      cur[i]! += bs[i]!.weight;
      if (bs[i]!.weight > 0 && (best === -1 || cur[i]! > cur[best]!)) best = i;
    }
    cur[best]! -= rule.totalWeight;
    return bs[best];
  }

  /**
   * An endpoint of the target, skipping `exclude` (endpoints that already failed this
   * request) when possible, and never one of `ejected` (outlier detection: undefined when
   * none is out, so the common case costs nothing): every algorithm picks among the rest.
   */
  pickEndpoint(t: ServiceTarget, exclude?: ReadonlySet<string>, ejected?: ReadonlySet<string>): Endpoint | undefined {
    let eps = t.endpoints;
    if (ejected !== undefined) eps = eps.filter((e) => !ejected.has(endpointKey(e)));
    if (eps.length === 0) return undefined;
    const st = this.state(t.key);
    let candidates = eps;
    if (exclude && exclude.size > 0) {
      const rest = eps.filter((e) => !exclude.has(endpointKey(e)));
      if (rest.length > 0) candidates = rest;
    }
    if (candidates.length === 1) return candidates[0];
    if (t.lbPolicy === 'least-request') {
      const a = candidates[Math.floor(Math.random() * candidates.length)]!;
      let b = candidates[Math.floor(Math.random() * (candidates.length - 1))]!;
      if (b === a) b = candidates[candidates.length - 1]!;
      return (st.inFlight.get(endpointKey(a)) ?? 0) <= (st.inFlight.get(endpointKey(b)) ?? 0) ? a : b;
    }
    const e = candidates[st.next % candidates.length]!;
    st.next = (st.next + 1) % 1_000_000_007;
    return e;
  }

  /** Count a request in flight to an endpoint; call the returned function when it ends. */
  begin(t: ServiceTarget, e: Endpoint): () => void {
    const st = this.state(t.key);
    const k = endpointKey(e);
    st.inFlight.set(k, (st.inFlight.get(k) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (st.inFlight.get(k) ?? 1) - 1;
      if (n <= 0) st.inFlight.delete(k); else st.inFlight.set(k, n);
    };
  }

  inFlight(t: ServiceTarget, e: Endpoint): number {
    return this.targets.get(t.key)?.inFlight.get(endpointKey(e)) ?? 0;
  }

  private state(key: string): TargetState {
    let st = this.targets.get(key);
    if (!st) this.targets.set(key, (st = { next: Math.floor(Math.random() * 1024), inFlight: new Map() }));
    return st;
  }
}

/** 'address:port' (made with the table: no string is built per request). */
export function endpointKey(e: Endpoint): string {
  return e.key;
}
