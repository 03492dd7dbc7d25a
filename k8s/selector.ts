/**
 * Label selectors (metav1.LabelSelector): matchLabels and matchExpressions, parsed and
 * matched with the same semantics wherever kernway selects by labels (AuthorizationPolicy
 * spec.selector, a Gateway listener's allowedRoutes.namespaces.selector). All terms are
 * ANDed; an empty selector (no term) selects everything.
 */
import type { Checker } from './check.js';

export type SelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
export const SELECTOR_OPERATORS: readonly SelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

export interface SelectorRequirement { key: string; operator: SelectorOperator; values: readonly string[] }

export interface LabelSelector {
  matchLabels: Readonly<Record<string, string>>;
  matchExpressions: readonly SelectorRequirement[];
}

export interface SelectorOptions {
  /** Checks a key used by either part (matchLabels or matchExpressions); fail on `c` to refuse it. */
  checkKey?: (c: Checker, key: string, field: string) => void;
}

/**
 * A LabelSelector at `field`. undefined/null give the empty selector; a problem (on `c`)
 * gives undefined. matchExpressions: In/NotIn need values, Exists/DoesNotExist have none.
 */
export function parseLabelSelector(c: Checker, v: unknown, field: string, opts: SelectorOptions = {}): LabelSelector | undefined {
  const before = c.problems.length;
  const r = c.record(v, field);
  if (!r) return undefined;
  const matchLabels = c.stringMap(r.matchLabels, `${field}.matchLabels`);
  if (opts.checkKey) for (const k of Object.keys(matchLabels)) opts.checkKey(c, k, `${field}.matchLabels[${JSON.stringify(k)}]`);
  const matchExpressions: SelectorRequirement[] = [];
  (c.list(r.matchExpressions, `${field}.matchExpressions`) ?? []).forEach((re, i) => {
    const f = `${field}.matchExpressions[${i}]`;
    const e = c.record(re, f);
    if (!e) return;
    let key: string | undefined;
    if (e.key === undefined || e.key === null || e.key === '') c.fail(`${f}.key`, 'is required');
    else {
      key = c.string(e.key, `${f}.key`);
      if (key !== undefined && key.length > 316) { c.fail(`${f}.key`, `must be at most 316 characters, got ${key.length}`); key = undefined; }
    }
    if (key !== undefined && opts.checkKey) opts.checkKey(c, key, `${f}.key`);
    const operator = c.oneOf(e.operator, `${f}.operator`, SELECTOR_OPERATORS, 'In');
    if (e.operator === undefined) c.fail(`${f}.operator`, 'is required (In, NotIn, Exists or DoesNotExist)');
    const values = (c.list(e.values, `${f}.values`) ?? []).map((x, j) => c.string(x, `${f}.values[${j}]`) ?? '');
    if ((operator === 'In' || operator === 'NotIn') && values.length === 0) c.fail(`${f}.values`, `must not be empty with operator ${operator}`);
    if ((operator === 'Exists' || operator === 'DoesNotExist') && values.length > 0) c.fail(`${f}.values`, `must be empty with operator ${operator}`);
    if (key !== undefined) matchExpressions.push(Object.freeze({ key, operator, values: Object.freeze(values) }));
  });
  if (c.problems.length > before) return undefined;
  return Object.freeze({ matchLabels, matchExpressions: Object.freeze(matchExpressions) });
}

/** Whether `labels` satisfy every term of `s` (the empty selector: always). */
export function selectorMatches(s: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const k in s.matchLabels) if (labels[k] !== s.matchLabels[k]) return false;
  for (const e of s.matchExpressions) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    switch (e.operator) {
      case 'In': if (!has || !e.values.includes(labels[e.key]!)) return false; break;
      case 'NotIn': if (has && e.values.includes(labels[e.key]!)) return false; break;
      case 'Exists': if (!has) return false; break;
      case 'DoesNotExist': if (has) return false; break;
    }
  }
  return true;
}

/** Whether `s` has no term (selects everything). */
export function selectsAll(s: LabelSelector): boolean {
  return s.matchExpressions.length === 0 && Object.keys(s.matchLabels).length === 0;
}
