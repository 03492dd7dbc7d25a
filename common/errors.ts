/**
 * Coded errors. Every error a user can meet carries a stable `code` (documented in
 * docs/errors.md) and a message that says what is wrong, where, and what to do.
 */

/**
 * Every `KW_…` code, kept in one list so that a code is a type: a KernwayError with a code
 * not listed here does not compile. Add a code here and document it in docs/ (test/docs/errors.test.ts checks
 * both ways).
 */
export const ERROR_CODES = [
  'KW_ADDON_LOAD', 'KW_ADMIN_BAD_REQUEST', 'KW_ADMIN_BAD_RESPONSE', 'KW_ADMIN_ERROR',
  'KW_ADMIN_LISTEN', 'KW_ADMIN_METHOD', 'KW_ADMIN_NOT_FOUND', 'KW_ADMIN_SOCKET_IN_USE',
  'KW_ADMIN_SOCKET_PATH', 'KW_AGENT_TIMEOUT', 'KW_AGENT_UNREACHABLE', 'KW_BAD_BPFFS',
  'KW_BAD_CGROUP', 'KW_BENCH_SETUP', 'KW_BENCH_TOOL', 'KW_BENCH_TOOLS', 'KW_BPFFS_IN_USE',
  'KW_BPFFS_MOUNT', 'KW_BPF_ATTACH', 'KW_BPF_LOAD', 'KW_BPF_OBJECT', 'KW_CGROUP_IN_USE',
  'KW_CLUSTER_IP_CONFLICT', 'KW_DATAPATH_APPLY', 'KW_DEMO', 'KW_DUPLICATE_OBJECT',
  'KW_ENDPOINTS_FULL', 'KW_ENDPOINTS_IP', 'KW_FEED_DECODE', 'KW_FEED_DENIED', 'KW_FEED_LISTEN', 'KW_INTERNAL', 'KW_INVALID_ARGUMENT',
  'KW_INVALID_FIELD', 'KW_KERNEL_FEATURE', 'KW_KERNEL_TOO_OLD', 'KW_KUBE_CONFIG', 'KW_KUBE_KIND_MISSING', 'KW_KUBE_REQUEST', 'KW_KUBE_UNREACHABLE', 'KW_LAB_COMMAND',
  'KW_LAB_DESTROYED', 'KW_LAB_FULL', 'KW_LAB_KUBECONFIG', 'KW_LAB_KUBE_API',
  'KW_LAB_KUBE_MISSING', 'KW_LAB_NOT_ROOT', 'KW_LAB_NOT_RUNNING', 'KW_LAB_POD', 'KW_LAB_RUNNING',
  'KW_LAB_START', 'KW_LAB_STOP', 'KW_LAB_TIMEOUT', 'KW_MANIFEST_CLOSED',
  'KW_MANIFEST_DIR', 'KW_MANIFEST_DIR_GONE', 'KW_MANIFEST_DUPLICATE', 'KW_MANIFEST_PARSE',
  'KW_MANIFEST_READ', 'KW_MANIFEST_SHAPE', 'KW_MANIFEST_TOO_LARGE', 'KW_MANIFEST_TOO_SLOW',
  'KW_MANIFEST_UNKNOWN_KIND', 'KW_MANIFEST_VALIDATOR', 'KW_MANIFEST_WATCH', 'KW_MAP_CAPACITY_CHANGED', 'KW_MAP_FULL',
  'KW_MAP_LAYOUT', 'KW_MAP_MIGRATE', 'KW_METRICS_LISTEN', 'KW_METRICS_NOT_LISTENING', 'KW_NOT_READY',
  'KW_NO_CGROUP2', 'KW_NO_PINNED_MAPS', 'KW_PINS_OTHER_CGROUP', 'KW_POLICY_CAPACITY',
  'KW_POLICY_L7_NOT_ENFORCEABLE', 'KW_SERVICE_NOT_FOUND', 'KW_SERVICE_NO_CLUSTER_IP',
  'KW_STOPPED', 'KW_STRUCT_LAYOUT', 'KW_UNSUPPORTED_HOST', 'KW_UNSUPPORTED_NODE', 'KW_WAYPOINT_CONFIG', 'KW_WAYPOINT_LISTEN',
  'KW_WAYPOINT_NOT_FOUND', 'KW_WAYPOINT_WORKERS', 'KW_WAYPOINT_WORKER_EXIT',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];
/** BpfError's codes: the errno name (EPERM, EINVAL, E2BIG, …). */
export type ErrnoCode = `E${string}`;

const KNOWN = new Set<string>(ERROR_CODES);
export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && KNOWN.has(s);
}

/** A code read from outside (the admin API's JSON): itself when it is one of ours or an errno name. */
export function codeOf(s: unknown): ErrorCode | ErrnoCode | undefined {
  if (isErrorCode(s)) return s;
  return typeof s === 'string' && /^E[A-Z0-9]+$/.test(s) ? (s as ErrnoCode) : undefined;
}

export class KernwayError extends Error {
  readonly code: ErrorCode | ErrnoCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode | ErrnoCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KernwayError';
    this.code = code;
    this.details = details;
  }
}

/** A bad option or argument, caught at the door. `path` names the option or field. */
export class InvalidArgumentError extends KernwayError {
  readonly path: string;
  constructor(path: string, expected: string, actual: unknown) {
    super('KW_INVALID_ARGUMENT', `${path}: expected ${expected}, got ${describe(actual)}`, { path, expected });
    this.name = 'InvalidArgumentError';
    this.path = path;
  }
}

export function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? v.slice(0, 77) + '...' : v);
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  if (Buffer.isBuffer(v)) return `Buffer(${v.length})`;
  if (Array.isArray(v)) return `array(${v.length})`;
  return typeof v;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
