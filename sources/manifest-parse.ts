/**
 * Parsing one manifest file (YAML, multi-document, or JSON) into Kubernetes objects.
 * Pure: text in, objects and problems out. No file system, no validation of kinds.
 */
import { IN_THREAD_MAX_CHARS, parseYamlDocs, YAML, type RawDoc, type YamlWorker } from './yaml-docs.js';
import { isRecord } from '../k8s/check.js';
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

export { isRecord };

/** Bounds on a manifest file's work (docs/standalone.md "Limits"). */
export interface ManifestLimits {
  /** Bytes per file: a larger file is refused before it is read. */
  fileBytes: number;
  /** Characters per YAML document (one object, or one List): a larger one is refused before conversion. */
  objectBytes: number;
  /** Time to parse one file (in the worker): over it, the parse is abandoned and the file refused. */
  parseBudgetMs: number;
}

/** 3 MiB per object: the API server's default request size limit. 8 MiB per file. */
export const DEFAULT_LIMITS: Readonly<ManifestLimits> = Object.freeze({ fileBytes: 8 << 20, objectBytes: 3 << 20, parseBudgetMs: 20_000 });

export const TOO_LARGE = 'KW_MANIFEST_TOO_LARGE';
export const TOO_SLOW = 'KW_MANIFEST_TOO_SLOW';

/**
 * Parse a file's text. `.json` files go through JSON.parse (fast); when that fails they
 * are re-parsed as YAML (a superset of JSON) to get a line and column for the error.
 * Empty documents are skipped; `kind: List` (or any `*List` with `items`) is expanded.
 * Synchronous, on the calling thread: for small texts (see parseManifestFile).
 */
export function parseManifestText(file: string, text: string, limits: Readonly<ManifestLimits> = DEFAULT_LIMITS): ParsedFile {
  return finish(file, jsonFast(file, text) ?? parseYamlDocs(YAML, text, limits.objectBytes), limits);
}

/**
 * The same, off the event loop for large texts (`worker`, with the time budget):
 * health probes and signals keep being answered while a big file is parsed.
 */
export async function parseManifestFile(file: string, text: string, worker: YamlWorker, limits: Readonly<ManifestLimits> = DEFAULT_LIMITS): Promise<ParsedFile> {
  const json = jsonFast(file, text);
  if (json || text.length <= IN_THREAD_MAX_CHARS) return finish(file, json ?? parseYamlDocs(YAML, text, limits.objectBytes), limits);
  try {
    return finish(file, await worker.parse(text, limits.objectBytes, limits.parseBudgetMs, file), limits);
  } catch (e) {
    const code = (e as { code?: string }).code === TOO_SLOW ? TOO_SLOW : PARSE_ERROR;
    return { documents: [], problems: [{ code, file, message: (e as Error).message }] };
  }
}

function jsonFast(file: string, text: string): RawDoc[] | undefined {
  if (!file.endsWith('.json')) return undefined;
  try {
    return [{ index: 0, value: JSON.parse(text) as unknown }];
  } catch {
    return undefined; // the YAML parser says where
  }
}

function finish(file: string, docs: RawDoc[], limits: Readonly<ManifestLimits>): ParsedFile {
  const problems: ManifestProblem[] = [];
  const documents: ParsedDocument[] = [];
  for (const d of docs) {
    if (d.tooLarge !== undefined) {
      problems.push({ code: TOO_LARGE, file, message: `document ${d.index}: ${d.tooLarge} bytes, over the limit of ${limits.objectBytes} bytes per object; split it` });
    } else if (d.error !== undefined) {
      const where = d.line !== undefined ? `line ${d.line}, column ${d.col ?? 1}` : `document ${d.index}`;
      problems.push({ code: PARSE_ERROR, file, message: `YAML syntax error at ${where} (document ${d.index}): ${d.error}` });
    } else if (d.value !== null && d.value !== undefined) { // an empty document (e.g. a trailing ---) is skipped
      collect(file, d.value, d.index, '', documents, problems);
    }
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
