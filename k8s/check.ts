/**
 * Field checking with errors that name the file, the object and the field path
 * (spec.ports[1].port), in the words of the Kubernetes API.
 */
import { describe, type ErrorCode } from '../common/errors.js';
import { intern, own } from './strings.js';
import { INVALID_FIELD, type Problem, type SourcedObject } from './types.js';

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** 'Kind ns/name', or 'Kind name' without a namespace. */
export function refOf(o: SourcedObject['object'], namespace?: string): string {
  const ns = namespace ?? o.metadata.namespace;
  return ns ? `${o.kind} ${ns}/${o.metadata.name}` : `${o.kind} ${o.metadata.name}`;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/** RFC 1123 label: namespace names, most object names (at most 63). */
export function isDnsLabel(v: unknown): v is string {
  return typeof v === 'string' && v.length <= 63 && DNS1123_LABEL.test(v);
}

/** RFC 1123 subdomain: object names, listener and rule names, host names without a wildcard (at most 253). */
export function isDnsSubdomain(v: unknown): v is string {
  return typeof v === 'string' && v.length <= 253 && DNS1123_SUBDOMAIN.test(v);
}

export class Checker {
  readonly problems: Problem[] = [];
  readonly ref: string;

  constructor(readonly src: SourcedObject, namespace?: string) {
    this.ref = refOf(src.object, namespace);
  }

  get ok(): boolean {
    return this.problems.length === 0;
  }

  fail(field: string, reason: string, code: ErrorCode = INVALID_FIELD): void {
    this.problems.push({ code, file: this.src.file, object: this.ref, field, message: `${field}: ${reason}` });
  }

  /** An optional mapping; undefined/null give `{}`. */
  record(v: unknown, field: string): Record<string, unknown> | undefined {
    if (v === undefined || v === null) return {};
    if (isRecord(v)) return v;
    this.fail(field, `must be a mapping, got ${describe(v)}`);
    return undefined;
  }

  /** An optional list; undefined/null give `[]`. */
  list(v: unknown, field: string): unknown[] | undefined {
    if (v === undefined || v === null) return [];
    if (Array.isArray(v)) return v;
    this.fail(field, `must be a list, got ${describe(v)}`);
    return undefined;
  }

  /** An optional string; undefined/null give `def`. */
  string(v: unknown, field: string, def?: string): string | undefined {
    if (v === undefined || v === null) return def;
    if (typeof v === 'string') return v;
    this.fail(field, `must be a string, got ${describe(v)}`);
    return def;
  }

  bool(v: unknown, field: string, def: boolean): boolean {
    if (v === undefined || v === null) return def;
    if (typeof v === 'boolean') return v;
    this.fail(field, `must be true or false, got ${describe(v)}`);
    return def;
  }

  /** An integer in [min, max]; undefined/null give `def`. */
  int(v: unknown, field: string, min: number, max: number, def?: number): number | undefined {
    if (v === undefined || v === null) return def;
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
    this.fail(field, `must be an integer from ${min} to ${max}, got ${describe(v)}`);
    return undefined;
  }

  port(v: unknown, field: string): number | undefined {
    if (v === undefined || v === null) {
      this.fail(field, 'is required (an integer from 1 to 65535)');
      return undefined;
    }
    return this.int(v, field, 1, 65535);
  }

  /** One of `allowed`; undefined/null/'' give `def`. */
  oneOf<T extends string>(v: unknown, field: string, allowed: readonly T[], def: T): T {
    if (v === undefined || v === null || v === '') return def;
    const i = typeof v === 'string' ? (allowed as readonly string[]).indexOf(v) : -1;
    if (i >= 0) return allowed[i]!; // the constant, not the manifest's copy (10,000 Services need one 'TCP')
    this.fail(field, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${describe(v)}`);
    return def;
  }

  dnsLabel(v: string, field: string): void {
    if (!isDnsLabel(v)) this.fail(field, `must be a DNS label (at most 63 lower case letters, digits or '-', starting and ending with a letter or digit), got ${describe(v)}`);
  }

  dns1035Label(v: string, field: string): void {
    if (typeof v !== 'string' || v.length > 63 || !DNS1035_LABEL.test(v)) this.fail(field, `must be a DNS-1035 label (at most 63 lower case letters, digits or '-', starting with a letter, ending with a letter or digit), got ${describe(v)}`);
  }

  dnsSubdomain(v: string, field: string): void {
    if (!isDnsSubdomain(v)) this.fail(field, `must be a DNS subdomain (lower case letters, digits, '-' and '.', at most 253), got ${describe(v)}`);
  }

  /** A port name as in a container's ports (IANA service name). */
  ianaSvcName(v: string, field: string): void {
    if (v.length > 15 || !IANA_SVC_NAME.test(v) || !/[a-z]/.test(v) || v.includes('--')) {
      this.fail(field, `must be a port name (at most 15 lower case letters, digits or '-', with at least one letter, no '--'), got ${describe(v)}`);
    }
  }

  /** metadata.labels / metadata.annotations as a frozen string map. */
  stringMap(v: unknown, field: string): Readonly<Record<string, string>> {
    const r = this.record(v, field);
    if (!r) return EMPTY;
    const keys = Object.keys(r);
    if (keys.length === 0) return EMPTY;
    for (const k of keys) {
      if (typeof r[k] !== 'string') this.fail(`${field}[${JSON.stringify(k)}]`, `must be a string (quote it), got ${describe(r[k])}`);
    }
    const copy: Record<string, string> = {};
    for (const k of keys) copy[k] = own(r[k] as string);
    return Object.freeze(copy);
  }
}

const EMPTY: Readonly<Record<string, string>> = Object.freeze({});

/** Rules for metadata.name: DNS-1035 label (Service), DNS-1123 label (Namespace) or subdomain (the rest). */
export type NameRule = 'dns1035Label' | 'dnsLabel' | 'dnsSubdomain';

export interface MetaHead {
  /** '' for cluster-scoped kinds; 'default' when a namespaced object names none. */
  namespace: string;
  name: string;
  labels: Readonly<Record<string, string>>;
}

/**
 * The one metadata check of every kind kernway reads: namespace (a DNS label; none on a
 * cluster-scoped kind), name by its kind's rule, labels a mapping of strings. Strings kept
 * are flat copies (namespaces interned).
 */
export function checkMeta(c: Checker, namespaced: boolean, nameRule: NameRule = 'dnsSubdomain'): MetaHead {
  const md = c.src.object.metadata;
  let namespace = '';
  if (namespaced) {
    const raw: unknown = md.namespace === undefined || md.namespace === null || md.namespace === '' ? 'default' : md.namespace;
    c.dnsLabel(raw as string, 'metadata.namespace'); // a number or a list is refused, never coerced
    if (typeof raw === 'string') namespace = intern(raw);
  } else if (md.namespace !== undefined && md.namespace !== null && md.namespace !== '') {
    c.fail('metadata.namespace', `must not be set: a ${c.src.object.kind} is not namespaced`);
  }
  c[nameRule](md.name, 'metadata.name');
  const name = typeof md.name === 'string' ? own(md.name) : '';
  const labels = c.stringMap(md.labels, 'metadata.labels');
  return { namespace, name, labels };
}
