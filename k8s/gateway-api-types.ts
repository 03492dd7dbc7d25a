/**
 * The waypoint's L7 model: Gateway API objects (GatewayClass, Gateway, HTTPRoute,
 * ReferenceGrant), checked and normalised, with the API server's defaults applied. Plain
 * immutable data; Services, EndpointSlices, Pods and Namespaces come from k8s/core.ts,
 * AuthorizationPolicy from k8s/policy.ts (one format for the kernel and the waypoint).
 */

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
/** The controllerName a GatewayClass must carry for the waypoint to serve its Gateways. */
export const CONTROLLER_NAME = 'kernway.io/gateway-controller';

/** Where an object came from and what identifies it. */
export interface ObjectMeta {
  namespace: string;
  name: string;
  /** 'ns/name' */
  key: string;
  /** metadata.creationTimestamp in ms since the epoch; objects without one sort after all others. */
  created: number;
  generation: number;
  labels: Readonly<Record<string, string>>;
  file: string;
  index: number;
}

import type { LabelSelector } from './selector.js';
export type { LabelSelector };

export interface GatewayClass {
  name: string;
  controllerName: string;
  file: string;
  index: number;
}

export interface RouteGroupKind { group: string; kind: string }

export interface Listener {
  name: string;
  port: number;
  protocol: string;
  /** Lower case; may start with '*.'. Undefined: any host. */
  hostname: string | undefined;
  allowedRoutes: {
    from: 'Same' | 'All' | 'Selector';
    selector: LabelSelector | undefined;
    /** Empty: the protocol's default kinds (HTTPRoute for HTTP). */
    kinds: readonly RouteGroupKind[];
  };
}

export interface Gateway {
  meta: ObjectMeta;
  className: string;
  listeners: readonly Listener[];
  /** spec.addresses of type IPAddress: where the listeners bind (else the waypoint's --listen-address). */
  addresses: readonly string[];
}

export type PathMatchType = 'Exact' | 'PathPrefix' | 'RegularExpression';
export type ValueMatchType = 'Exact' | 'RegularExpression';

export interface PathMatch { type: PathMatchType; value: string }
export interface HeaderMatch { type: ValueMatchType; /** lower case */ name: string; value: string }
export interface QueryParamMatch { type: ValueMatchType; /** case-sensitive */ name: string; value: string }

export interface RouteMatch {
  path: PathMatch;
  headers: readonly HeaderMatch[];
  queryParams: readonly QueryParamMatch[];
  method: string | undefined;
}

export interface HeaderValue { name: string; value: string }
export interface HeaderModifier {
  set: readonly HeaderValue[];
  add: readonly HeaderValue[];
  /** lower case */
  remove: readonly string[];
}

export type PathModifier =
  | { type: 'ReplaceFullPath'; value: string }
  | { type: 'ReplacePrefixMatch'; value: string };

export interface Redirect {
  scheme: 'http' | 'https' | undefined;
  hostname: string | undefined;
  path: PathModifier | undefined;
  port: number | undefined;
  statusCode: 301 | 302 | 303 | 307 | 308;
}

export interface Rewrite {
  hostname: string | undefined;
  path: PathModifier | undefined;
}

export interface Cors {
  /** As written; '*' alone means any origin. */
  allowOrigins: readonly string[];
  /** Upper case methods; ['*'] means any. */
  allowMethods: readonly string[];
  /** Lower case; ['*'] means any. */
  allowHeaders: readonly string[];
  exposeHeaders: readonly string[];
  allowCredentials: boolean;
  maxAgeSeconds: number;
}

export type Filter =
  | { type: 'RequestHeaderModifier'; modifier: HeaderModifier }
  | { type: 'ResponseHeaderModifier'; modifier: HeaderModifier }
  | { type: 'RequestRedirect'; redirect: Redirect }
  | { type: 'URLRewrite'; rewrite: Rewrite }
  | { type: 'RequestMirror'; backend: ObjectRef; /** 0..100 */ percent: number }
  | { type: 'CORS'; cors: Cors }
  | { type: 'ExtensionRef'; group: string; kind: string; name: string };

/** A reference to another object (backendRef, mirror target). */
export interface ObjectRef {
  group: string;
  kind: string;
  namespace: string;
  name: string;
  port: number | undefined;
}

export interface BackendRef extends ObjectRef {
  weight: number;
  filters: readonly Filter[];
}

export interface Retry {
  /** Total tries after the first (Gateway API `attempts`). */
  attempts: number;
  /** HTTP status codes that are retried; connection errors are always retried. */
  codes: readonly number[];
  backoffMs: number;
}

export interface Rule {
  /** Position in spec.rules. */
  index: number;
  name: string | undefined;
  /** Never empty: a rule without matches gets the default match (PathPrefix /). */
  matches: readonly RouteMatch[];
  filters: readonly Filter[];
  backendRefs: readonly BackendRef[];
  /** ms; 0 disables; undefined: no timeout. */
  requestTimeoutMs: number | undefined;
  backendRequestTimeoutMs: number | undefined;
  retry: Retry | undefined;
}

export interface ParentRef {
  group: string;
  kind: string;
  namespace: string;
  name: string;
  sectionName: string | undefined;
  port: number | undefined;
}

export interface HTTPRoute {
  meta: ObjectMeta;
  parentRefs: readonly ParentRef[];
  /** Lower case; may start with '*.'. */
  hostnames: readonly string[];
  rules: readonly Rule[];
  /**
   * Rules the waypoint cannot serve (an unsupported filter, a bad regular expression...),
   * with the reason; they are left out and reported in the route's status.
   */
  droppedRules: readonly { index: number; reason: string }[];
}

export interface ReferenceGrant {
  meta: ObjectMeta;
  from: readonly { group: string; kind: string; namespace: string }[];
  to: readonly { group: string; kind: string; name: string | undefined }[];
}
