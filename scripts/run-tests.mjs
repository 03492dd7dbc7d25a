#!/usr/bin/env node
// Runs the whole vitest suite and ends with the plain summary line CI reads:
// "N passed, N failed" (", N skipped" when any were skipped).
import { spawnSync } from 'node:child_process';
import { readFileSync, mkdirSync } from 'node:fs';

mkdirSync('build', { recursive: true });
const out = 'build/test-results.json';
// vitest runs on this same Node.js (the project's, which the Makefile puts first on PATH).
const args = ['node_modules/vitest/vitest.mjs', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${out}`, ...process.argv.slice(2)];
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
let passed = 0, failed = 0, skipped = 0;
try {
  const j = JSON.parse(readFileSync(out, 'utf8'));
  passed = j.numPassedTests; failed = j.numFailedTests;
  skipped = j.numPendingTests + (j.numTodoTests ?? 0);
  // A file that fails to load counts as a failure even if it declared no test.
  for (const s of j.testResults ?? []) if (s.status === 'failed' && (s.assertionResults ?? []).length === 0) failed += 1;
} catch (e) {
  console.error(`kernway: could not read ${out}: ${e.message}`);
  failed += 1;
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(r.status === 0 && failed === 0 ? 0 : 1);
