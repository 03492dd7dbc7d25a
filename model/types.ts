/** The desired state built from the Kubernetes objects: what the datapath and the waypoint read. */
import type { EndpointSlice, Namespace, Pod, Problem, Service } from '../k8s/types.js';

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

/** Stable problem codes of the model (cross-object: valid objects that cannot be used). */
export const SERVICE_NOT_FOUND = 'KW_SERVICE_NOT_FOUND';
export const SERVICE_NO_CLUSTER_IP = 'KW_SERVICE_NO_CLUSTER_IP';
export const CLUSTER_IP_CONFLICT = 'KW_CLUSTER_IP_CONFLICT';
export const DUPLICATE_OBJECT = 'KW_DUPLICATE_OBJECT';
