/**
 * Issue 19: the agent's stop signals, with the real handler of `kernway agent` in a real
 * process: the first SIGTERM drains, a second one while the drain is still under way exits
 * at once (status 1), and a drain that ends gives 0. The drain here is one that does not
 * end by itself (it holds the process open), so "while draining" is certain, not a race.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../common/version.js';

const AGENT_CLI = pathToFileURL(join(projectRoot(), 'dist', 'cli', 'agent.js')).href;
const LOG = pathToFileURL(join(projectRoot(), 'dist', 'common', 'log.js')).href;

/**
 * A process running drainOnSignals with a drain that ends only when told on stdin. The
 * first signal goes once the handler is installed ('ready'); then, once the drain has
 * started, either the second signal or (finishDrain) the end of the drain.
 */
function runWithSignals(second: NodeJS.Signals | undefined): Promise<{ code: number | null; out: string }> {
  const script = `
    import { drainOnSignals } from ${JSON.stringify(AGENT_CLI)};
    import { createLogger } from ${JSON.stringify(LOG)};
    let finish;
    const hold = setInterval(() => {}, 1000);
    process.stdin.on('data', () => finish?.());
    const done = drainOnSignals(() => new Promise((r) => { finish = r; console.log('drain started'); }), createLogger('test'));
    console.log('ready');
    const code = await done;
    clearInterval(hold);
    console.log('drained ' + code);
    process.exit(code);`;
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let step = 0;
    const timer = setTimeout(() => { c.kill('SIGKILL'); reject(new Error(`no exit: ${out}`)); }, 20_000);
    const onOut = (d: string): void => {
      out += d;
      if (step === 0 && out.includes('ready')) { step = 1; c.kill('SIGTERM'); }
      if (step === 1 && out.includes('drain started')) {
        step = 2;
        if (second) c.kill(second);
        else c.stdin!.write('finish\n');
      }
    };
    c.stdout!.setEncoding('utf8').on('data', onOut);
    c.stderr!.setEncoding('utf8').on('data', onOut);
    c.once('exit', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

describe('kernway agent stop signals', () => {
  it('a second SIGTERM while the first is draining exits at once with 1', async () => {
    const r = await runWithSignals('SIGTERM');
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain('draining (send again to force)');
    expect(r.out).toContain('forced shutdown');
    expect(r.out).not.toContain('drained');
  });

  it('SIGINT after SIGTERM forces too', async () => {
    const r = await runWithSignals('SIGINT');
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain('forced shutdown');
  });

  it('one SIGTERM drains and exits 0 when the drain ends', async () => {
    const r = await runWithSignals(undefined);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('drained 0');
    expect(r.out).not.toContain('forced shutdown');
  });
});
