/**
 * kernway's AuthorizationPolicy (kernway.io/v1alpha1) as the L4 policy engine sees it,
 * and the workload identities it is written against. Plain data; see docs/policy.md.
 */
import type { LabelSelector } from './selector.js';

export const POLICY_GROUP = 'kernway.io';
export const POLICY_API_VERSION = `${POLICY_GROUP}/v1alpha1`;
export const POLICY_KIND = 'AuthorizationPolicy';

export type PolicyAction = 'ALLOW' | 'DENY';

/** An ipBlock, canonical. IPv4 lives in the IPv4-mapped IPv6 space (::ffff:0:0/96). */
export interface Cidr {
  /** Canonical text: '10.0.0.0/8', 'fd00::/16', '10.1.2.3/32'. */
  text: string;
  /** 16 bytes, network order, host bits zero. */
  addr: Buffer;
  /** Prefix length in the 128-bit space (an IPv4 /n is 96 + n). */
  bits: number;
}

/** rules[].from[].source. An absent field matches anything. */
export interface PolicySource {
  /** Namespace names or patterns: 'prod', 'prod-*', '*-test', '*'. */
  namespaces?: readonly string[];
  /** 'namespace/name' */
  serviceAccounts?: readonly string[];
  ipBlocks?: readonly Cidr[];
}

/** rules[].to[].operation. An absent field matches anything. */
export interface PolicyOperation {
  ports?: readonly number[];
  /** L7: the waypoint's business. */
  methods?: readonly string[];
  paths?: readonly string[];
  hosts?: readonly string[];
}

/** rules[].when[]: only request.headers[...] keys (L7). */
export interface PolicyCondition {
  key: string;
  values: readonly string[];
}

export interface PolicyRule {
  /** Undefined: any source. */
  from?: readonly PolicySource[];
  /** Undefined: any operation. */
  to?: readonly PolicyOperation[];
  when?: readonly PolicyCondition[];
  /** Paths of the L7 fields in this rule ('spec.rules[0].to[0].operation.methods'); empty for a pure L4 rule. */
  l7Fields: readonly string[];
}

export interface AuthorizationPolicy {
  namespace: string;
  name: string;
  /** 'ns/name' */
  key: string;
  /** spec.selector (matchLabels and matchExpressions, k8s/selector.ts); undefined: every workload of the namespace. */
  selector: LabelSelector | undefined;
  action: PolicyAction;
  rules: readonly PolicyRule[];
  origin: { file: string; index: number };
}

/** Reserved identities (bpf/include/identity.h). */
export const ID_HOST = 1;
export const ID_WORLD = 2;
/** First identity given to workloads. */
export const ID_FIRST = 256;
/** Identities are 32-bit in the maps; kept below 2^24 so they read well. */
export const ID_MAX = 0xffffff;

/** One distinct (namespace, service account, labels). */
export interface Identity {
  id: number;
  namespace: string;
  serviceAccount: string;
  /** The labels that make the identity (see IDENTITY_IGNORED_LABELS), sorted by key. */
  labels: Readonly<Record<string, string>>;
  /** Stable text key: namespace, service account and labels. */
  key: string;
}

/**
 * Labels left out of identities: they differ per pod or per rollout, and would give every
 * pod (or every ReplicaSet) an identity of its own. A selector on them is rejected.
 */
export const IDENTITY_IGNORED_LABELS: ReadonlySet<string> = new Set([
  'pod-template-hash',
  'controller-revision-hash',
  'pod-template-generation',
  'statefulset.kubernetes.io/pod-name',
  'apps.kubernetes.io/pod-index',
  'batch.kubernetes.io/controller-uid',
  'controller-uid',
]);

/** Problem codes of the policy engine (stable). */
export const POLICY_L7_NOT_ENFORCEABLE = 'KW_POLICY_L7_NOT_ENFORCEABLE';
export const POLICY_CAPACITY = 'KW_POLICY_CAPACITY';
