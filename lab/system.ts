/** Small process helpers the lab uses, and the mounts it needs. */
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { KernwayError } from '../common/errors.js';

export { cgroup2Mount, ensureBpffs, mountsOfType } from '../common/mounts.js';

export interface RunResult { code: number; stdout: string; stderr: string }

/** Runs a command to completion; rejects with its stderr when it fails (unless allowFail). */
export function run(cmd: string, args: string[], opts: { input?: string; allowFail?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      if (err && !opts.allowFail) {
        reject(new KernwayError('KW_LAB_COMMAND', `${cmd} ${args.join(' ')} failed (exit ${code}): ${stderr.trim() || err.message}`));
        return;
      }
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A TCP port free on 127.0.0.1 right now (for control-plane listeners of tests, the demo and benches). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
