/**
 * The habits `make test` holds the tree to: eslint (eslint.config.js: the recommended
 * JavaScript and typescript-eslint rules) over everything, and the TypeScript checks
 * (strict, noUnusedLocals, noUnusedParameters) over the tests too, which `make build` does
 * not compile. A problem anywhere fails here, listed by file, line and rule.
 */
import { spawnSync } from 'node:child_process';
import { join, relative } from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../common/version.js';

const ROOT = projectRoot();

describe('habits', () => {
  it('eslint finds no problem in the sources, tests, benchmarks and scripts', { timeout: 300_000 }, async () => {
    const results = await new ESLint({ cwd: ROOT }).lintFiles(['.']);
    expect(results.length).toBeGreaterThan(100);
    const problems = results.flatMap((r) => r.messages.map((m) =>
      `${relative(ROOT, r.filePath)}:${m.line}:${m.column} ${m.ruleId ?? (m.fatal ? 'parse error' : '')} ${m.message}`));
    expect(problems).toEqual([]);
  });

  it('tsc -p tsconfig.test.json finds no error, tests included', { timeout: 300_000 }, () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.test.json')], { cwd: ROOT, encoding: 'utf8' });
    const errors = r.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
    expect(errors).toEqual([]);
    expect(r.status).toBe(0);
  });
});
