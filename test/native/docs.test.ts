/** docs/native.md lists every `op` a BpfError can carry (kept true here, cheaply). */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../common/version.js';

describe('docs/native.md', () => {
  it('documents every op of the addon and its TypeScript face', () => {
    const root = projectRoot();
    const doc = readFileSync(join(root, 'docs', 'native.md'), 'utf8');
    const sources = [
      ...readdirSync(join(root, 'native', 'src')).filter((f) => f.endsWith('.cc')).map((f) => join(root, 'native', 'src', f)),
      ...readdirSync(join(root, 'native')).filter((f) => f.endsWith('.ts')).map((f) => join(root, 'native', f)),
    ];
    const ops = new Set<string>();
    for (const file of sources) {
      for (const m of readFileSync(file, 'utf8').matchAll(/["'`]((?:object|map|link|prog)\.[a-z_]+)["'`]/g)) {
        if (!/\.(cc|h|ts|js)$/.test(m[1]!)) ops.add(m[1]!);
      }
    }
    expect(ops.size).toBeGreaterThan(30);
    const missing = [...ops].filter((op) => !doc.includes(`\`${op}\``));
    expect(missing).toEqual([]);
  });
});
