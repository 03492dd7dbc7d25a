/**
 * The model: plain data normalised from Kubernetes objects, what the datapath needs and
 * nothing more. Defaults are applied (as the API server would), addresses are canonical.
 *
 * The model imports no source: `SourcedObject` and `Problem` are structurally the same as
 * the sources' `Located` and `ManifestProblem`, so either side can hand them over.
 */

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type IPFamily = 'IPv4' | 'IPv6';
export type LbAlgorithm = 'random' | 'maglev';
export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
export type TrafficPolicy = 'Cluster' | 'Local';
export type AddressType = IPFamily | 'FQDN';

/** A raw Kubernetes object and where it came from (same shape as sources' `Located`). */
export interface SourcedObject {
  object: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [k: string]: unknown }; [k: string]: unknown };
  file: string;
  index: number;
}

/** A problem found in an object: what (code, message), where (file, object, field). Same shape as `ManifestProblem`. */
export interface Problem {
  code: string;
  file: string;
  /** 'Kind ns/name' */
  object?: string;
  /** path inside the object, e.g. spec.ports[1].port */
  field?: string;
  message: string;
}

/** Where an object was read from. */
export interface Origin { file: string; index: number }

export interface ServicePort {
  /** '' when the Service has a single unnamed port. */
  name: string;
  port: number;
  /** A number, or a port name resolved through the EndpointSlices' ports. Defaults to `port`. */
  targetPort: number | string;
  protocol: Protocol;
}

export interface Service {
  namespace: string;
  name: string;
  /** 'ns/name' */
  key: string;
  type: ServiceType;
  /** Canonical cluster IPs (one per family, primary first). Empty when headless, ExternalName, or unset. */
  clusterIPs: string[];
  /** clusterIP: None */
  headless: boolean;
  ports: ServicePort[];
  /** ClientIP session affinity, or null for None. */
  affinity: { timeoutSeconds: number } | null;
  internalTrafficPolicy: TrafficPolicy;
  /** From the annotation kernway.io/lb-algorithm (default random). */
  algorithm: LbAlgorithm;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
  origin: Origin;
}

export interface Endpoint {
  /** The endpoint's first address, canonical (kube-proxy uses only the first; the others are validated and dropped). */
  address: string;
  /** Kubernetes defaults: ready and serving unset mean true, terminating unset means false. */
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** The node the endpoint runs on, when the slice says. */
  nodeName: string | undefined;
}

export interface EndpointSlicePort {
  /** '' when unnamed: matches the Service port of the same name (and protocol). */
  name: string;
  /** undefined: "all ports" in the API; kube-proxy (and kernway) skip such a port. */
  port: number | undefined;
  protocol: Protocol;
}

export interface EndpointSlice {
  namespace: string;
  name: string;
  /** 'ns/name' */
  key: string;
  /** From the label kubernetes.io/service-name. */
  serviceName: string;
  /** 'ns/serviceName': the key of the Service in Model.services. */
  serviceKey: string;
  addressType: AddressType;
  endpoints: Endpoint[];
  ports: EndpointSlicePort[];
  origin: Origin;
}

export interface Pod {
  namespace: string;
  name: string;
  key: string;
  uid?: string;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
  nodeName?: string;
  /** Defaults to 'default'. */
  serviceAccountName: string;
  hostNetwork: boolean;
  /** Canonical status.podIPs (or status.podIP), primary first. */
  podIPs: string[];
  phase?: string;
  origin: Origin;
}

export interface Namespace {
  name: string;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
  origin: Origin;
}

/**
 * Everything the datapath is built from. The model objects (Service, EndpointSlice...) are
 * immutable and shared between snapshots; the maps of a Model made by a ModelBuilder are
 * live: they reflect the builder's latest update.
 */
export interface Model {
  /** By 'ns/name'. */
  services: ReadonlyMap<string, Service>;
  /** By the 'ns/name' of the Service named in the slices' label; each list sorted by slice name. The
   *  Service may be missing (or unused): such slices are reported in `problems` and balance nothing. */
  slicesByService: ReadonlyMap<string, readonly EndpointSlice[]>;
  /** By 'ns/name'. */
  pods: ReadonlyMap<string, Pod>;
  /** By name. */
  namespaces: ReadonlyMap<string, Namespace>;
  /** Cross-object problems (an EndpointSlice for a missing Service, a cluster IP used twice...). */
  problems: Problem[];
}

/** Stable problem codes of the model. */
export const INVALID_FIELD = 'KW_INVALID_FIELD';
export const SERVICE_NOT_FOUND = 'KW_SERVICE_NOT_FOUND';
export const SERVICE_NO_CLUSTER_IP = 'KW_SERVICE_NO_CLUSTER_IP';
export const CLUSTER_IP_CONFLICT = 'KW_CLUSTER_IP_CONFLICT';
export const DUPLICATE_OBJECT = 'KW_DUPLICATE_OBJECT';

/** Annotation selecting the backend selection algorithm of a Service. */
export const LB_ALGORITHM_ANNOTATION = 'kernway.io/lb-algorithm';
/** Label tying an EndpointSlice to its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** Kubernetes' default ClientIP affinity timeout (3 hours). */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;
/** Kubernetes' maximum ClientIP affinity timeout (1 day). */
export const MAX_AFFINITY_TIMEOUT_SECONDS = 86400;
