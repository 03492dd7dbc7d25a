/**
 * Parsing one manifest file (YAML, multi-document, or JSON) into Kubernetes objects.
 * Pure: text in, objects and problems out. No file system, no validation of kinds.
 */
import { parseAllDocuments } from 'yaml';
import type { K8sObject, Problem as ManifestProblem } from '../k8s/types.js';

/** Problem codes of this module (stable). */
export const PARSE_ERROR = 'KW_MANIFEST_PARSE';
export const SHAPE_ERROR = 'KW_MANIFEST_SHAPE';

export interface ParsedDocument { object: K8sObject; index: number }
export interface ParsedFile { documents: ParsedDocument[]; problems: ManifestProblem[] }

/** 'Kind ns/name' (or 'Kind name' without a namespace): how problems name an object. */
export function objectRef(o: { kind?: unknown; metadata?: unknown }): string {
  const kind = typeof o.kind === 'string' && o.kind !== '' ? o.kind : 'object';
  const md = isRecord(o.metadata) ? o.metadata : {};
  const name = typeof md.name === 'string' && md.name !== '' ? md.name : '<no name>';
  return typeof md.namespace === 'string' && md.namespace !== '' ? `${kind} ${md.namespace}/${name}` : `${kind} ${name}`;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parse a file's text. `.json` files go through JSON.parse (fast); when that fails they
 * are re-parsed as YAML (a superset of JSON) to get a line and column for the error.
 * Empty documents are skipped; `kind: List` (or any `*List` with `items`) is expanded.
 */
export function parseManifestText(file: string, text: string): ParsedFile {
  const problems: ManifestProblem[] = [];
  const documents: ParsedDocument[] = [];
  let values: { value: unknown; index: number }[] | undefined;

  if (file.endsWith('.json')) {
    try {
      values = [{ value: JSON.parse(text) as unknown, index: 0 }];
    } catch { /* fall through to the YAML parser, which says where */ }
  }
  if (values === undefined) {
    values = [];
    const docs = parseAllDocuments(text, { prettyErrors: true });
    for (let i = 0; i < docs.length; i++) {
      const doc = docs[i]!;
      if (doc.errors.length > 0) {
        // The first error only: the ones after it are mostly its consequences.
        const err = doc.errors[0]!;
        const pos = err.linePos?.[0];
        const where = pos ? `line ${pos.line}, column ${pos.col}` : `document ${i}`;
        const firstLine = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
        problems.push({ code: PARSE_ERROR, file, message: `YAML syntax error at ${where} (document ${i}): ${firstLine}` });
        continue;
      }
      try {
        values.push({ value: doc.toJS({ maxAliasCount: 100 }) as unknown, index: i });
      } catch (e) {
        problems.push({ code: PARSE_ERROR, file, message: `document ${i}: ${(e as Error).message}` });
      }
    }
  }

  for (const { value, index } of values) {
    if (value === null || value === undefined) continue; // empty document (e.g. a trailing ---)
    collect(file, value, index, '', documents, problems);
  }
  return { documents, problems };
}

function collect(file: string, value: unknown, index: number, prefix: string, out: ParsedDocument[], problems: ManifestProblem[]): void {
  const where = `document ${index}`;
  if (!isRecord(value)) {
    problems.push({ code: SHAPE_ERROR, file, field: prefix === '' ? undefined : prefix.slice(0, -1), message: `${where}: ${prefix === '' ? '' : prefix.slice(0, -1) + ': '}expected a mapping (a Kubernetes object), got ${Array.isArray(value) ? 'a list' : typeof value}` });
    return;
  }
  // kind: List (kubectl get -o yaml) and typed lists (ServiceList...) hold their objects in items.
  if (typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items)) {
    value.items.forEach((item, i) => collect(file, item, index, `${prefix}items[${i}].`, out, problems));
    return;
  }
  const missing = missingField(value);
  if (missing !== undefined) {
    problems.push({ code: SHAPE_ERROR, file, object: objectRef(value), field: prefix + missing.field, message: `${where}: ${prefix}${missing.field} ${missing.reason}` });
    return;
  }
  out.push({ object: value as unknown as K8sObject, index });
}

function missingField(v: Record<string, unknown>): { field: string; reason: string } | undefined {
  for (const f of ['apiVersion', 'kind'] as const) {
    if (v[f] === undefined) return { field: f, reason: 'is missing' };
    if (typeof v[f] !== 'string' || v[f] === '') return { field: f, reason: 'must be a non-empty string' };
  }
  if (v.metadata === undefined) return { field: 'metadata', reason: 'is missing' };
  if (!isRecord(v.metadata)) return { field: 'metadata', reason: 'must be a mapping' };
  const md = v.metadata;
  if (md.name === undefined) return { field: 'metadata.name', reason: 'is missing' };
  if (typeof md.name !== 'string' || md.name === '') return { field: 'metadata.name', reason: 'must be a non-empty string' };
  if (md.namespace !== undefined && (typeof md.namespace !== 'string' || md.namespace === '')) return { field: 'metadata.namespace', reason: 'must be a non-empty string' };
  for (const m of ['labels', 'annotations'] as const) {
    if (md[m] === null) delete md[m]; // `labels:` with nothing under it
    if (md[m] === undefined) continue;
    if (!isRecord(md[m])) return { field: `metadata.${m}`, reason: 'must be a mapping of strings' };
    for (const [k, val] of Object.entries(md[m])) {
      if (typeof val !== 'string') return { field: `metadata.${m}[${JSON.stringify(k)}]`, reason: `must be a string (quote it), got ${Array.isArray(val) ? 'a list' : typeof val}` };
    }
  }
  return undefined;
}
