/**
 * Resolving backendRefs to Service ports and their endpoints, with the reasons Gateway
 * API names when a reference cannot be resolved (InvalidKind, RefNotPermitted,
 * BackendNotFound, UnsupportedProtocol).
 */
import type { Service } from '../../k8s/types.js';
import type { WaypointConfig } from '../../model/waypoint-config.js';
import { GATEWAY_GROUP, type ObjectRef, type ReferenceGrant } from '../../k8s/gateway-api-types.js';

/** How the waypoint speaks to a backend. */
export type BackendProtocol = 'http1' | 'h2c';
export type LbPolicy = 'round-robin' | 'least-request';

/** Annotation on a Service choosing the waypoint's balancing among its endpoints. */
export const LB_POLICY_ANNOTATION = 'kernway.io/waypoint-lb';

export interface Endpoint {
  address: string;
  port: number;
  /** The Pod behind it, when the EndpointSlice says. */
  pod: string | undefined;
}

export interface ServiceTarget {
  /** 'ns/name:port' (or 'pod ip:port' for a direct destination): the key of balancer state and metrics. */
  key: string;
  namespace: string;
  name: string;
  port: number;
  protocol: BackendProtocol;
  lbPolicy: LbPolicy;
  endpoints: readonly Endpoint[];
}

export type RefFailure = { reason: 'InvalidKind' | 'RefNotPermitted' | 'BackendNotFound' | 'UnsupportedProtocol'; message: string };

export type Resolution = { target: ServiceTarget; failure?: undefined } | { target?: undefined; failure: RefFailure };

const HTTP_APP_PROTOCOLS: Record<string, BackendProtocol> = {
  'http': 'http1', 'HTTP': 'http1', 'kubernetes.io/ws': 'http1', 'ws': 'http1',
  'kubernetes.io/h2c': 'h2c', 'h2c': 'h2c', 'grpc': 'h2c', 'GRPC': 'h2c', 'http2': 'h2c', 'HTTP2': 'h2c',
};

/** The protocol for a Service port's appProtocol (undefined: plain HTTP/1.1), or undefined when not HTTP. */
export function protocolOf(appProtocol: string | undefined): BackendProtocol | undefined {
  if (appProtocol === undefined || appProtocol === '') return 'http1';
  return HTTP_APP_PROTOCOLS[appProtocol];
}

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
    if (ref.group !== '' || ref.kind !== 'Service') {
      return { failure: { reason: 'InvalidKind', message: `${ref.group || 'core'}/${ref.kind} ${ref.name} is not a Service; kernway routes to Services only` } };
    }
    const key = `${ref.namespace}/${ref.name}`;
    if (ref.namespace !== fromNamespace && !parentServices.has(key) && !this.granted(fromNamespace, ref)) {
      return { failure: { reason: 'RefNotPermitted', message: `Service ${key} is in another namespace and no ReferenceGrant in ${ref.namespace} allows HTTPRoutes from ${fromNamespace} to refer to it` } };
    }
    return this.serviceTarget(key, ref.port);
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
    const svc = this.cfg.model.services.get(key);
    if (!svc) return { failure: { reason: 'BackendNotFound', message: `Service ${key} not found` } };
    const sp = svc.ports.find((p) => p.port === port && p.protocol === 'TCP');
    if (!sp) return { failure: { reason: 'BackendNotFound', message: `Service ${key} has no TCP port ${port ?? '(none given)'}` } };
    const appProtocol = this.cfg.appProtocols.get(key)?.get(sp.port);
    const protocol = protocolOf(appProtocol);
    if (!protocol) return { failure: { reason: 'UnsupportedProtocol', message: `Service ${key} port ${sp.port} has appProtocol ${JSON.stringify(appProtocol)}, which the waypoint does not speak (it speaks HTTP/1.1, h2c, gRPC and WebSocket)` } };
    return { target: { key: `${key}:${sp.port}`, namespace: svc.namespace, name: svc.name, port: sp.port, protocol, lbPolicy: lbPolicyOf(svc), endpoints: this.endpointsOf(svc, sp.name) } };
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
        const ep: Endpoint = { address, port, pod: this.podNames().get(address) };
        const id = `${address}:${port}`;
        if (seen.has(id)) continue;
        if (e.ready) { seen.add(id); out.push(ep); }
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

  private granted(fromNamespace: string, ref: ObjectRef): boolean {
    return this.cfg.grants.some((g: ReferenceGrant) => g.meta.namespace === ref.namespace &&
      g.from.some((f) => f.group === GATEWAY_GROUP && f.kind === 'HTTPRoute' && f.namespace === fromNamespace) &&
      g.to.some((t) => t.group === '' && t.kind === 'Service' && (t.name === undefined || t.name === ref.name)));
  }
}

function lbPolicyOf(svc: Service): LbPolicy {
  return svc.annotations[LB_POLICY_ANNOTATION] === 'least-request' ? 'least-request' : 'round-robin';
}
