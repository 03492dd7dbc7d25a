/** Keeps the error documentation true: every KW_ code the source can throw is documented. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../common/errors.js';
import { projectRoot } from '../../common/version.js';

const ROOT = projectRoot();

function files(dir: string, ext: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return files(p, ext);
    return p.endsWith(ext) && !p.endsWith('.test.ts') ? [p] : [];
  });
}

describe('docs/errors.md', () => {
  it('documents every KW_ error code used in the source, somewhere in docs/', () => {
    const source = ['k8s', 'model', 'sources', 'agent', 'waypoint', 'native', 'lab', 'cli', 'common', 'bench'].flatMap((d) => files(join(ROOT, d), '.ts'));
    const codes = new Set<string>();
    for (const f of source) for (const m of readFileSync(f, 'utf8').matchAll(/['"`](KW_[A-Z0-9_]+)['"`]/g)) codes.add(m[1]!);
    const docs = files(join(ROOT, 'docs'), '.md').map((f) => readFileSync(f, 'utf8')).join('\n');
    expect(codes.size).toBeGreaterThan(20);
    const missing = [...codes].filter((c) => !docs.includes(c)).sort();
    expect(missing).toEqual([]);
  });

  it('every KW_ code in the source is in ERROR_CODES (common/errors.ts), the ErrorCode union', () => {
    const source = ['k8s', 'model', 'sources', 'agent', 'waypoint', 'native', 'lab', 'cli', 'common', 'bench'].flatMap((d) => files(join(ROOT, d), '.ts'));
    const known = new Set<string>(ERROR_CODES);
    const unlisted = new Set<string>();
    for (const f of source) for (const m of readFileSync(f, 'utf8').matchAll(/['"`](KW_[A-Z0-9_]+)['"`]/g)) if (!known.has(m[1]!)) unlisted.add(m[1]!);
    expect([...unlisted].sort()).toEqual([]);
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
  });
});
