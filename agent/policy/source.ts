/**
 * AuthorizationPolicies from a directory of manifests (standalone mode): the same
 * directory the model reads, watched by a ManifestDirectory of its own whose validator
 * is the policy parser. A file with a bad policy is rejected as a whole (file, object,
 * field named) and its previous good content stays in force; other files keep working.
 *
 * Objects of other kinds are kept as stubs only (apiVersion, kind, metadata).
 *
 * Usage:
 *   const src = new PolicySource(dir, { log });
 *   const first = await src.start();
 *   src.on(POLICIES, (s: PolicySnapshot) => engine.update({ policies: s.policies }));
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../../common/log.js';
import { ManifestDirectory, SNAPSHOT, type Located, type ManifestProblem, type ManifestSnapshot } from '../sources/manifest-dir.js';
import { isPolicyKind, parsePolicy, validatePolicyObject } from './parse.js';
import type { AuthorizationPolicy } from './types.js';

export interface PolicySnapshot {
  generation: number;
  /** In file name order, then document order. */
  policies: AuthorizationPolicy[];
  /** Policy problems in force (files rejected, duplicates). */
  problems: ManifestProblem[];
}

export const POLICIES = 'policies';
export type POLICIES = typeof POLICIES;

export class PolicySource extends EventEmitter {
  private readonly manifests: ManifestDirectory;
  private readonly log: Logger | undefined;
  private generation = 0;
  private reported = new Set<string>();
  private last: PolicySnapshot | undefined;

  constructor(readonly dir: string, opts: { log?: Logger; debounceMs?: number } = {}) {
    super();
    this.log = opts.log;
    this.manifests = new ManifestDirectory(dir, {
      validate: validatePolicyObject,
      slim: (l: Located) => (isPolicyKind(l.object) ? l.object : { apiVersion: l.object.apiVersion, kind: l.object.kind, metadata: l.object.metadata }),
      debounceMs: opts.debounceMs ?? 20,
      ...(opts.log ? { log: opts.log } : {}),
    });
    this.manifests.on(SNAPSHOT, (s: ManifestSnapshot) => {
      try {
        const snap = this.accept(s);
        if (snap) this.emit(POLICIES, snap);
      } catch (e) {
        this.log?.error({ err: (e as Error).message }, 'policies: failed to read a snapshot; previous policies kept');
      }
    });
  }

  async start(): Promise<PolicySnapshot> {
    const snap = this.accept(await this.manifests.load(), true)!;
    this.manifests.watch();
    return snap;
  }

  current(): PolicySnapshot | undefined {
    return this.last;
  }

  close(): void {
    this.manifests.close();
    this.removeAllListeners(POLICIES);
  }

  /** A snapshot when policies or their problems changed (undefined otherwise). */
  private accept(s: ManifestSnapshot, first = false): PolicySnapshot | undefined {
    const policies: AuthorizationPolicy[] = [];
    for (const o of s.objects) {
      const p = parsePolicy(o).policy;
      if (p) policies.push(p);
    }
    // Only problems about policies: the model's own source reports the rest (YAML errors included).
    const problems = s.problems.filter((p) => p.object?.startsWith('AuthorizationPolicy ') === true);
    const unchanged = !first && this.last !== undefined && sameList(this.last.policies, policies) && sameProblems(this.last.problems, problems);
    this.report(problems);
    if (unchanged) return undefined;
    const snap: PolicySnapshot = { generation: ++this.generation, policies, problems };
    this.last = snap;
    return snap;
  }

  private report(problems: ManifestProblem[]): void {
    const now = new Set<string>();
    for (const p of problems) {
      const k = `${p.code}\0${p.file}\0${p.object ?? ''}\0${p.field ?? ''}\0${p.message}`;
      now.add(k);
      if (!this.reported.has(k)) this.log?.warn({ code: p.code, file: p.file, object: p.object, field: p.field }, p.message);
    }
    this.reported = now;
  }
}

function sameList(a: readonly AuthorizationPolicy[], b: readonly AuthorizationPolicy[]): boolean {
  return a.length === b.length && a.every((p, i) => p === b[i]);
}

function sameProblems(a: readonly ManifestProblem[], b: readonly ManifestProblem[]): boolean {
  return a.length === b.length && a.every((p, i) => p.message === b[i]!.message && p.file === b[i]!.file);
}
