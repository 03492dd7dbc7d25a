/**
 * Watching a directory tree with one non-recursive fs.watch (inotify) per directory.
 *
 * Node 20's `recursive: true` on Linux is emulated in JavaScript and has had missed-event
 * bugs; one watcher per directory is predictable and cheap. Events are reported raw as
 * (directory, entry name); the owner decides what changed by looking at the file system
 * (editors save via rename, so 'change' vs 'rename' is not trusted).
 */
import { watch, type FSWatcher } from 'node:fs';
import { sep } from 'node:path';

export type TreeEvent = (dir: string, name: string | null) => void;
export type TreeWatchError = (dir: string, err: Error) => void;

export class TreeWatcher {
  private readonly watchers = new Map<string, FSWatcher>();
  private closed = false;

  constructor(private readonly onEvent: TreeEvent, private readonly onError: TreeWatchError) {}

  /** Start watching `dir` (not its subdirectories: add those one by one). Idempotent. */
  add(dir: string): void {
    if (this.closed || this.watchers.has(dir)) return;
    let w: FSWatcher;
    try {
      w = watch(dir, { persistent: true, encoding: 'utf8' }, (_type, name) => this.onEvent(dir, name));
    } catch (e) {
      this.onError(dir, e as Error);
      return;
    }
    w.on('error', (err) => {
      // The directory went away (or inotify gave up on it): drop the watcher; the owner
      // learns about the removal from the parent directory's event.
      this.remove(dir);
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'EPERM') this.onError(dir, err);
    });
    this.watchers.set(dir, w);
  }

  has(dir: string): boolean {
    return this.watchers.has(dir);
  }

  /** Stop watching `dir` and every watched directory below it. */
  removeTree(dir: string): void {
    const prefix = dir.endsWith(sep) ? dir : dir + sep;
    for (const d of [...this.watchers.keys()]) {
      if (d === dir || d.startsWith(prefix)) this.remove(d);
    }
  }

  dirs(): string[] {
    return [...this.watchers.keys()];
  }

  close(): void {
    this.closed = true;
    for (const d of [...this.watchers.keys()]) this.remove(d);
  }

  private remove(dir: string): void {
    const w = this.watchers.get(dir);
    if (!w) return;
    this.watchers.delete(dir);
    try { w.close(); } catch { /* already closed */ }
  }
}
