import type { ErrorCode } from '../common/errors.js';

/**
 * The Kubernetes vocabulary: raw objects with their origin, problems, and the slim forms
 * of the core kinds kernway reads (Service, EndpointSlice, Pod, Namespace): plain data,
 * defaults applied (as the API server would), addresses canonical, nothing else kept.
 */

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type IPFamily = 'IPv4' | 'IPv6';
export type LbAlgorithm = 'random' | 'maglev';
export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
export type TrafficPolicy = 'Cluster' | 'Local';
export type AddressType = IPFamily | 'FQDN';

/** A raw Kubernetes object, as read (a YAML or JSON document, an API response). */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/** A raw object and where it came from: `file` (or the source's name for it) and the document's index in it (0-based). */
export interface SourcedObject {
  object: K8sObject;
  file: string;
  index: number;
}

/** A problem found in an object: what (code, message), where (file, object, field). */
export interface Problem {
  code: ErrorCode;
  file: string;
  /** 'Kind ns/name' */
  object?: string;
  /** path inside the object, e.g. spec.ports[1].port */
  field?: string;
  message: string;
}

/** What a kind's parser gives: the object's slim form when it is valid, and every problem found. */
export interface ParseResult<T> { object: T | undefined; problems: Problem[] }

/** Where an object was read from. */
export interface Origin { file: string; index: number }

export interface ServicePort {
  /** '' when the Service has a single unnamed port. */
  name: string;
  port: number;
  /** A number, or a port name resolved through the EndpointSlices' ports. Defaults to `port`. */
  targetPort: number | string;
  protocol: Protocol;
  /** spec.ports[].appProtocol when set (the waypoint reads it: h2c, grpc, websocket...). */
  appProtocol?: string;
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

/**
 * The endpoints of a slice, packed (k8s/packed.ts `PackedEndpoints`): read by index, or
 * iterated as `Endpoint` objects made on demand.
 */
export interface EndpointList extends Iterable<Endpoint> {
  readonly length: number;
  address(i: number): string;
  ready(i: number): boolean;
  serving(i: number): boolean;
  terminating(i: number): boolean;
  nodeName(i: number): string | undefined;
  at(i: number): Endpoint;
  /** The wire form: the list of `Endpoint`s. */
  toJSON(): Endpoint[];
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
  /**
   * 'ns/<label kubernetes.io/service-name>': the key of the Service in Model.services. (The
   * Service's name alone is not kept: nothing reads it, and it was a string per slice.)
   */
  serviceKey: string;
  addressType: AddressType;
  endpoints: EndpointList;
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

/** Stable problem code of an object that breaks its kind's schema. */
export const INVALID_FIELD: ErrorCode = 'KW_INVALID_FIELD';

/** Annotation selecting the backend selection algorithm of a Service. */
export const LB_ALGORITHM_ANNOTATION = 'kernway.io/lb-algorithm';
/** Label tying an EndpointSlice to its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** Kubernetes' default ClientIP affinity timeout (3 hours). */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;
/** Kubernetes' maximum ClientIP affinity timeout (1 day). */
export const MAX_AFFINITY_TIMEOUT_SECONDS = 86400;
