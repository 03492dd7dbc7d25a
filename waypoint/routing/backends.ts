/**
 * Resolving backendRefs to Service ports and their endpoints. Whether a reference may be
 * used, and the reasons Gateway API names when not (InvalidKind, RefNotPermitted,
 * BackendNotFound, UnsupportedProtocol), are the model's (model/route-status.ts).
 */
import type { Service } from '../../k8s/types.js';
import type { WaypointConfig } from '../../model/waypoint-config.js';
import type { ObjectRef } from '../../k8s/gateway-api-types.js';
import { refNotAllowed, servicePortOf, type BackendProtocol, type RefFailure } from '../../model/route-status.js';

export { protocolOf, type BackendProtocol, type RefFailure } from '../../model/route-status.js';
export type LbPolicy = 'round-robin' | 'least-request';

/** Annotation on a Service choosing the waypoint's balancing among its endpoints. */
export const LB_POLICY_ANNOTATION = 'kernway.io/waypoint-lb';

export interface Endpoint {
  address: string;
  port: number;
  /** The Pod behind it, when the EndpointSlice says. */
  pod: string | undefined;
  /** 'address:port': the key of balancer, outlier and metric state, made once with the table. */
  key: string;
}

/** An endpoint with its key. */
export function endpoint(address: string, port: number, pod: string | undefined): Endpoint {
  return { address, port, pod, key: `${address}:${port}` };
}

export interface ServiceTarget {
  /** 'ns/name:port' (or 'pod ip:port' for a direct destination): the key of balancer state and metrics. */
  key: string;
  /** The destination_service label: 'ns/name', or 'ns/direct' for a direct destination (made once with the table). */
  label: string;
  namespace: string;
  name: string;
  port: number;
  protocol: BackendProtocol;
  lbPolicy: LbPolicy;
  endpoints: readonly Endpoint[];
}

export type Resolution = { target: ServiceTarget; failure?: undefined } | { target?: undefined; failure: RefFailure };

export class BackendResolver {
  /** Targets are shared between rules that name the same Service port. */
  private readonly targets = new Map<string, Resolution>();

  constructor(private readonly cfg: WaypointConfig) {}

  /**
   * Resolve a backendRef of a route in `fromNamespace`. `parentServices` are the route's
   * Service parents ('ns/name'): a consumer route may name its parent Service as backend
   * without a ReferenceGrant (GAMMA).
   */
  resolve(ref: ObjectRef, fromNamespace: string, parentServices: ReadonlySet<string>): Resolution {
    const failure = refNotAllowed(this.cfg, ref, fromNamespace, parentServices);
    if (failure) return { failure };
    return this.serviceTarget(`${ref.namespace}/${ref.name}`, ref.port);
  }

  /** The target for a Service port (no permission check): passthrough and resolved refs. */
  serviceTarget(key: string, port: number | undefined): Resolution {
    const cacheKey = `${key}:${port ?? ''}`;
    const hit = this.targets.get(cacheKey);
    if (hit) return hit;
    const r = this.build(key, port);
    this.targets.set(cacheKey, r);
    return r;
  }

  private build(key: string, port: number | undefined): Resolution {
    const found = servicePortOf(this.cfg, key, port);
    if (found.failure) return { failure: found.failure };
    const { service: svc, port: sp, protocol } = found;
    return { target: { key: `${key}:${sp.port}`, label: `${svc.namespace}/${svc.name}`, namespace: svc.namespace, name: svc.name, port: sp.port, protocol, lbPolicy: lbPolicyOf(svc), endpoints: this.endpointsOf(svc, sp.name) } };
  }

  private endpointsOf(svc: Service, portName: string): Endpoint[] {
    const out: Endpoint[] = [];
    const seen = new Set<string>();
    const slices = this.cfg.model.slicesByService.get(svc.key) ?? [];
    let fallback: Endpoint[] | undefined;
    for (const slice of slices) {
      if (slice.addressType === 'FQDN') continue;
      const sp = slice.ports.find((p) => p.name === portName && p.protocol === 'TCP');
      const port = sp?.port;
      if (port === undefined) continue;
      for (const e of slice.endpoints) {
        const address = e.address;
        const ep = endpoint(address, port, this.podNames().get(address));
        if (seen.has(ep.key)) continue;
        if (e.ready) { seen.add(ep.key); out.push(ep); }
        else if (e.serving) (fallback ??= []).push(ep);
      }
    }
    // Like kube-proxy: when no endpoint is ready, use serving (terminating) ones.
    return out.length > 0 ? out : fallback ?? [];
  }

  private podNameByIP: Map<string, string> | undefined;
  private podNames(): Map<string, string> {
    if (!this.podNameByIP) {
      this.podNameByIP = new Map();
      for (const p of this.cfg.model.pods.values()) if (!p.hostNetwork) for (const ip of p.podIPs) this.podNameByIP.set(ip, p.name);
    }
    return this.podNameByIP;
  }
}

function lbPolicyOf(svc: Service): LbPolicy {
  return svc.annotations[LB_POLICY_ANNOTATION] === 'least-request' ? 'least-request' : 'round-robin';
}
