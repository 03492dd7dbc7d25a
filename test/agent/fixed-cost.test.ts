/**
 * The agent's fixed cost: importing `kernway agent`'s modules loads neither undici nor
 * node:http2. An ESM import of node:http reads its lazy `WebSocket` getters, which load
 * both (58.6 against 45.1 MiB of RSS in an empty Node.js 24 process); the agent takes
 * node:http with process.getBuiltinModule. gRPC (http2) loads only when the feed serves.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../common/version.js';

describe("the agent's fixed cost", () => {
  it('its command module graph loads node:http but neither undici nor node:http2', () => {
    const script = `
      await import(${JSON.stringify(pathToFileURL(join(projectRoot(), 'dist', 'cli', 'agent.js')).href)});
      console.log(JSON.stringify(process.moduleLoadList.filter((m) => /undici|^NativeModule http2?$/.test(m))));`;
    const loaded = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as string[];
    expect(loaded).toContain('NativeModule http'); // the module graph was loaded
    expect(loaded.filter((m) => m.includes('undici'))).toEqual([]);
    expect(loaded).not.toContain('NativeModule http2');
  });
});
