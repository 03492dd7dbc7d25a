/** Starting lab processes in a cgroup and a network namespace, output to a log file. */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { pidAlive } from '../system.js';

export interface Placement {
  /** cgroup directory to enter first (the process writes its own PID there before exec). */
  cgroup?: string;
  /** network namespace file (/var/run/netns/NAME) to enter with nsenter. */
  netns?: string;
}

/**
 * Starts `cmd args` in the cgroup, then the netns; stdout and stderr appended to `log`
 * (or inherited pipes when undefined). The returned PID is the command's own (the
 * wrappers exec).
 */
export function spawnPlaced(place: Placement, cmd: string, args: string[], opts: { log?: string; env?: NodeJS.ProcessEnv; cwd?: string; detached?: boolean } = {}): ChildProcess {
  const inner = place.netns ? ['nsenter', `--net=${place.netns}`, '--', cmd, ...args] : [cmd, ...args];
  const script = place.cgroup ? 'echo $$ > "$KW_LAB_CGROUP/cgroup.procs" && exec "$@"' : 'exec "$@"';
  let fd: number | undefined;
  if (opts.log) fd = openSync(opts.log, 'a');
  try {
    return spawn('sh', ['-c', script, 'sh', ...inner], {
      env: { ...(opts.env ?? process.env), KW_LAB_CGROUP: place.cgroup ?? '' },
      stdio: fd === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', fd, fd],
      cwd: opts.cwd,
      detached: opts.detached,
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Polls until `check` is truthy or the deadline passes; `what` names it in the error. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      if ((e as { code?: string }).code === 'KW_LAB_START') throw e;
      last = e;
    }
    if (Date.now() > deadline) {
      const { KernwayError, errorMessage } = await import('../../common/errors.js');
      throw new KernwayError('KW_LAB_TIMEOUT', `${what} did not happen within ${timeoutMs} ms${last ? ` (last error: ${errorMessage(last)})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** SIGTERM, wait up to graceMs for the PID to go, then SIGKILL. */
export async function stopPid(pid: number | undefined, graceMs: number): Promise<void> {
  if (!pid || !pidAlive(pid)) return;
  try { process.kill(pid, 'SIGTERM'); } catch { return; }
  const deadline = Date.now() + graceMs;
  while (pidAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  if (pidAlive(pid)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    while (pidAlive(pid)) await new Promise((r) => setTimeout(r, 10));
  }
}
