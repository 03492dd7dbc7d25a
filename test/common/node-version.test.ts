/** `kernway` refuses a Node.js older than package.json's engines, at the door, with a code. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MIN_NODE_MAJOR, checkNodeVersion } from '../../cli/main.js';
import { projectRoot } from '../../common/version.js';
import { KERNWAY_MAIN } from '../fixtures/cli.js';

describe('the Node.js version', () => {
  it('agrees with package.json engines', () => {
    const engines = (JSON.parse(readFileSync(join(projectRoot(), 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
    expect(engines).toBe(`>=${MIN_NODE_MAJOR}`);
  });

  it('refuses an older major with KW_UNSUPPORTED_NODE naming the version; accepts this one and newer', () => {
    expect(() => checkNodeVersion('20.20.2')).toThrow(expect.objectContaining({ code: 'KW_UNSUPPORTED_NODE', message: expect.stringContaining('Node.js 20.20.2 is not supported') }));
    expect(() => checkNodeVersion('v23.11.0')).toThrow(expect.objectContaining({ code: 'KW_UNSUPPORTED_NODE' }));
    expect(() => checkNodeVersion('not a version')).toThrow(expect.objectContaining({ code: 'KW_UNSUPPORTED_NODE' }));
    expect(() => checkNodeVersion(`${MIN_NODE_MAJOR}.0.0`)).not.toThrow();
    expect(() => checkNodeVersion('30.1.2')).not.toThrow();
    expect(() => checkNodeVersion()).not.toThrow();
  });

  it('the built command run by the machine\'s own node: refused with the code when it is older, runs when it is not', () => {
    // The first `node` on a PATH without the project's .node/bin: what a user gets by typing `node dist/cli/main.js`.
    const path = (process.env.PATH ?? '').split(':').filter((d) => !d.includes('/.node/')).join(':');
    const probe = spawnSync('node', ['-p', 'process.versions.node'], { env: { ...process.env, PATH: path }, encoding: 'utf8' });
    const machine = probe.status === 0 ? probe.stdout.trim() : undefined;
    const node = machine ? 'node' : process.execPath;
    const run = spawnSync(node, [KERNWAY_MAIN, 'version'], { env: { ...process.env, PATH: path }, encoding: 'utf8', timeout: 30_000 });
    const major = Number((machine ?? process.versions.node).split('.')[0]);
    if (major < MIN_NODE_MAJOR) {
      expect(run.status).toBe(1);
      expect(run.stderr).toContain(`Node.js ${machine} is not supported`);
      expect(run.stderr).toContain('[KW_UNSUPPORTED_NODE]');
      expect(run.stdout).toBe('');
    } else {
      expect(run.status).toBe(0);
      expect(run.stdout).toMatch(/^kernway \S+ \(node v\d+/);
    }
  });
});
