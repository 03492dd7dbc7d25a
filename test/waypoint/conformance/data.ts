/**
 * The Gateway API conformance cases as data (../shared/conformance/gateway-api, beside
 * the repository; never copied into it): the index, each test's manifests and cases.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { projectRoot } from '../../../common/version.js';

export const DATA_DIR = join(projectRoot(), '..', 'shared', 'conformance', 'gateway-api');

export function dataAvailable(): boolean {
  return existsSync(join(DATA_DIR, 'index.json'));
}

export type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown }; [k: string]: unknown };

export interface CaseAssert {
  request: { method: string; host: string | null | { $go: string }; path: string; headers: Record<string, string>; followRedirects: boolean };
  statusCodes: number[];
  ifStatus200or204?: {
    backendRequest: {
      path: string; method: string; host: string | null | { $go: string }; headersExact: Record<string, string>; headersAbsent: string[];
      namespace: string | null; podNamePrefix: string;
    };
    responseHeadersExact: Record<string, string>;
    responseHeadersOneOf: Record<string, string[]>;
    responseHeadersAbsent: string[];
    ignoreWhitespace: boolean;
  };
  ifRedirect?: { locationHost: string | null; locationScheme: string; locationPort: string | null; locationPath: string };
  mirroredTo?: { backendRef: { name: string; namespace: string } }[];
}

export interface Case {
  case: { testCaseName?: string; backendSetResponseHeaders?: Record<string, string>; [k: string]: unknown };
  assert: CaseAssert;
}

export interface CaseFile {
  tests: { shortName: string; description: string; features: string[]; localManifests: string[] }[];
  notes: string[];
  cases: Case[];
  distribution?: {
    request: { host?: string; path: string };
    expectedWeights: Record<string, number>;
    totalRequests: number;
    concurrentRequests?: number;
    tolerance: number;
    maxTestRetries: number;
  };
  upstreamMeshHarnessChecks?: string[];
}

export interface IndexEntry { group: 'gateway' | 'mesh'; name: string; tests: [string, string[]][]; cases: number; unresolved: string[] }

export function loadIndex(): IndexEntry[] {
  return (JSON.parse(readFileSync(join(DATA_DIR, 'index.json'), 'utf8')) as { tests: IndexEntry[] }).tests;
}

export function loadCases(group: string, name: string): CaseFile {
  return JSON.parse(readFileSync(join(DATA_DIR, group, `${name}.cases.json`), 'utf8')) as CaseFile;
}

export function readText(rel: string): string {
  return readFileSync(join(DATA_DIR, rel), 'utf8');
}

export function parseObjects(text: string): Obj[] {
  return parseAllDocuments(text).map((d) => d.toJS() as Obj | null).filter((o): o is Obj => o !== null && typeof o === 'object' && typeof o.kind === 'string');
}
