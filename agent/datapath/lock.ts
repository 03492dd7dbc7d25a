/**
 * One owner per datapath: an agent holds an exclusive flock(2) on its --bpffs folder and
 * on its --cgroup directory for its whole life, taken before anything is loaded, attached
 * or written. A second agent (or `kernway uninstall`) on the same folder or cgroup is
 * refused before it touches the kernel. The kernel drops the locks when the holder's
 * descriptors close, so a crashed or killed agent never leaves a stale lock.
 *
 * Who holds a lock is read from /proc/locks (device and inode of the locked file).
 */
import { closeSync, openSync, readFileSync, statSync, constants as fsc } from 'node:fs';
import { KernwayError, errorMessage, type ErrorCode } from '../../common/errors.js';
import { addon } from '../../native/index.js';

export class OwnerLock {
  private fd: number | undefined;

  private constructor(readonly path: string, fd: number) {
    this.fd = fd;
  }

  /**
   * Takes the lock on `path` (a directory that exists) or throws `code` naming the holder.
   * `what` names the option in messages ('--bpffs').
   */
  static take(path: string, what: string, code: ErrorCode): OwnerLock {
    let fd: number;
    try {
      fd = openSync(path, fsc.O_RDONLY | fsc.O_DIRECTORY);
    } catch (e) {
      throw new KernwayError(code, `${what} ${path}: cannot open it to take the agent lock: ${errorMessage(e)}`, { path });
    }
    let taken: boolean;
    try {
      taken = addon().flockTry(fd, true);
    } catch (e) {
      closeSync(fd);
      throw new KernwayError(code, `${what} ${path}: cannot lock it: ${errorMessage(e)}`, { path });
    }
    if (!taken) {
      closeSync(fd);
      const pid = lockHolder(path);
      throw new KernwayError(code,
        `${what} ${path} is in use by another kernway agent${pid ? ` (pid ${pid})` : ''}: one agent owns a bpffs folder and a cgroup; ` +
        'stop it first, or give this agent its own --bpffs folder and --cgroup', { path, ...(pid ? { pid } : {}) });
    }
    return new OwnerLock(path, fd);
  }

  get held(): boolean {
    return this.fd !== undefined;
  }

  /** Drops the lock. Idempotent. */
  release(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try { closeSync(fd); } catch { /* already closed */ }
  }
}

/** The PID holding a flock on `path`, from /proc/locks (undefined when none or unknown). */
export function lockHolder(path: string): number | undefined {
  let st;
  try { st = statSync(path); } catch { return undefined; }
  const dev = decodeDev(st.dev);
  let text: string;
  try { text = readFileSync('/proc/locks', 'utf8'); } catch { return undefined; }
  for (const line of text.split('\n')) {
    // "1: FLOCK  ADVISORY  WRITE 8012 fe:00:1466748 0 EOF"
    const f = line.trim().split(/\s+/);
    if (f[1] !== 'FLOCK' || f[3] !== 'WRITE') continue;
    const m = /^([0-9a-f]+):([0-9a-f]+):(\d+)$/.exec(f[5] ?? '');
    if (!m || Number(m[3]) !== st.ino) continue;
    const maj = parseInt(m[1]!, 16);
    const min = parseInt(m[2]!, 16);
    if (maj === dev.major && min === dev.minor) return Number(f[4]);
  }
  return undefined;
}

/** Linux's new_decode_dev(): major and minor of a st_dev. */
function decodeDev(dev: number): { major: number; minor: number } {
  const d = BigInt(dev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return { major, minor };
}
