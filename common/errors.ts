/**
 * Coded errors. Every error a user can meet carries a stable `code` (documented in
 * docs/errors.md) and a message that says what is wrong, where, and what to do.
 */
export class KernwayError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: string, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
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
