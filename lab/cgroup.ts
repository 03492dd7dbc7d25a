/** Lab cgroups: create, move a PID in, and remove a whole tree (killing only its own processes). */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export function createCgroup(path: string): void {
  mkdirSync(path);
}

function procsOf(path: string): number[] {
  try {
    return readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function childCgroups(path: string): string[] {
  try {
    return readdirSync(path)
      .map((n) => join(path, n))
      .filter((p) => statSync(p).isDirectory());
  } catch {
    return [];
  }
}

/** Every PID in the cgroup and its descendants. */
export function processesIn(path: string): number[] {
  return [...procsOf(path), ...childCgroups(path).flatMap(processesIn)];
}

/**
 * Kills the processes in a lab cgroup tree (they were started by the lab), waits for them
 * to leave, then removes the cgroups bottom-up. Programs attached to these cgroups go
 * with them.
 */
export async function removeCgroupTree(path: string): Promise<void> {
  if (!existsSync(path)) return;
  for (let attempt = 0; attempt < 100; attempt++) {
    const pids = processesIn(path);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    await sleep(20);
  }
  // A killed multi-threaded process may still be leaving (cgroup.procs empty, threads
  // not yet gone): rmdir then says EBUSY for a moment. Retry for up to ~2 s.
  const removeTree = async (p: string): Promise<void> => {
    for (const c of childCgroups(p)) await removeTree(c);
    for (let attempt = 0; ; attempt++) {
      try {
        rmdirSync(p);
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return;
        if (code !== 'EBUSY' || attempt >= 100) throw e;
        for (const pid of processesIn(p)) {
          try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
        }
        await sleep(20);
      }
    }
  };
  await removeTree(path);
}
