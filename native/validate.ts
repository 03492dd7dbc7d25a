/**
 * Argument checks for the native API, run before anything reaches C++. Each throws an
 * InvalidArgumentError (KW_INVALID_ARGUMENT) whose path names the argument.
 */
import { isAbsolute } from 'node:path';
import { InvalidArgumentError } from '../common/errors.js';

export function checkString(path: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0) throw new InvalidArgumentError(path, 'a non-empty string', v);
  if (v.includes('\0')) throw new InvalidArgumentError(path, 'a string without NUL bytes', v);
  return v;
}

export function checkAbsolutePath(path: string, v: unknown): string {
  checkString(path, v);
  if (!isAbsolute(v as string)) throw new InvalidArgumentError(path, 'an absolute path', v);
  return v as string;
}

export function checkUint(path: string, v: unknown, max = 0xffffffff, min = 0): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new InvalidArgumentError(path, `an integer from ${min} to ${max}`, v);
  }
  return v;
}

export function checkBuffer(path: string, v: unknown, size?: number): Buffer {
  if (!Buffer.isBuffer(v)) throw new InvalidArgumentError(path, size === undefined ? 'a Buffer' : `a Buffer of ${size} bytes`, v);
  if (size !== undefined && v.length !== size) throw new InvalidArgumentError(path, `a Buffer of ${size} bytes`, v);
  return v;
}

export function checkOneOf<T extends string>(path: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new InvalidArgumentError(path, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, v);
  }
  return v as T;
}

export function checkObject(path: string, v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || Buffer.isBuffer(v)) {
    throw new InvalidArgumentError(path, 'an object', v);
  }
  return v as Record<string, unknown>;
}

/** Rejects keys an options object does not know (a typo must not pass silently). */
export function checkKeys(path: string, v: Record<string, unknown>, known: readonly string[]): void {
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) throw new InvalidArgumentError(`${path}.${k}`, `no such option (known: ${known.join(', ')})`, k);
  }
}

/**
 * Keys or values for a batch: an array of Buffers of `size` bytes each, or one Buffer
 * of them concatenated. Returns the concatenation and the count.
 */
export function checkBatch(path: string, v: unknown, size: number): { buf: Buffer; count: number } {
  if (Buffer.isBuffer(v)) {
    if (size === 0 || v.length % size !== 0) {
      throw new InvalidArgumentError(path, `a Buffer whose length is a multiple of ${size}`, v);
    }
    return { buf: v, count: v.length / size };
  }
  if (!Array.isArray(v)) throw new InvalidArgumentError(path, `an array of Buffers of ${size} bytes, or one Buffer`, v);
  v.forEach((b, i) => checkBuffer(`${path}[${i}]`, b, size));
  return { buf: Buffer.concat(v as Buffer[], v.length * size), count: v.length };
}
