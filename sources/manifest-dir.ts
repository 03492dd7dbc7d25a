/**
 * A directory of ordinary Kubernetes manifests (YAML, multi-document, or JSON; searched
 * recursively), loaded once and then watched.
 *
 * - Each file is all-or-nothing: a file that fails to parse or validate is reported
 *   (file, object, field, reason) and its previous good content stays in force.
 * - Only the files that changed are re-read; unchanged files keep their parsed objects
 *   (the same object references, so consumers can memoise on identity).
 * - The same object (group, kind, namespace, name) in two files: the first by file name
 *   order wins, the other is reported.
 * - Hidden entries (names starting with '.') are skipped, but an event on a '..' name
 *   rescans its directory: a ConfigMap volume swaps its `..data` symlink when updated.
 */
import { EventEmitter } from 'node:events';
import { readdir, open, stat, lstat, realpath } from 'node:fs/promises';
import { constants as fsc, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, sep } from 'node:path';
import { KernwayError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { Candidates } from '../k8s/candidates.js';
import { kindOf } from '../k8s/kinds.js';
import type { K8sObject, Problem, SourcedObject } from '../k8s/types.js';
import { DEFAULT_LIMITS, TOO_LARGE, objectRef, parseManifestFile, type ManifestLimits } from './manifest-parse.js';
import { TreeWatcher } from './tree-watch.js';
import { YamlWorker } from './yaml-docs.js';

/** An object and where it came from. `index`: the document's index in the file (0-based). */
export type Located = SourcedObject;
export type ManifestProblem = Problem;
export type { K8sObject };
export interface ManifestSnapshot {
  objects: Located[];
  problems: ManifestProblem[];
  /**
   * What entered and left `objects` since the previous snapshot of this directory (the
   * first snapshot: everything added). A changed object is one removed and one added.
   * Lets consumers work in proportion to the change.
   */
  changes?: { added: Located[]; removed: Located[] };
}
/** Checks one object; any problem returned makes its whole file keep its previous good content. */
export type ObjectValidator = (o: Located) => ManifestProblem[];

/** Event emitted after changes: `dir.on(SNAPSHOT, (s: ManifestSnapshot) => ...)`. */
export const SNAPSHOT = 'snapshot';
export type SNAPSHOT = typeof SNAPSHOT;

/** Problem codes of this module (stable; KW_MANIFEST_PARSE and KW_MANIFEST_SHAPE come from manifest-parse.ts). */
export const READ_ERROR = 'KW_MANIFEST_READ';
export const DUPLICATE_OBJECT = 'KW_MANIFEST_DUPLICATE';
export const VALIDATOR_FAILED = 'KW_MANIFEST_VALIDATOR';
export const WATCH_ERROR = 'KW_MANIFEST_WATCH';
/** The watched directory itself went away (its last content stays in force until it is back). */
export const DIR_GONE = 'KW_MANIFEST_DIR_GONE';
/** How often a vanished directory is looked for. */
const ROOT_POLL_MS = 500;

const EXTENSIONS = ['.yaml', '.yml', '.json'];
export interface ManifestDirectoryOptions {
  /** Checks each object; a problem rejects the object's whole file (its previous good content stays). */
  validate?: ObjectValidator;
  /** Debounce of file system events, counted from the first event of a burst (default 20 ms). */
  debounceMs?: number;
  log?: Logger;
  /**
   * What to keep of an accepted object, as the whole located object with its file and index
   * unchanged (default: all of it). Lets a consumer that has already digested an object (in
   * `validate`) keep a stub instead, to save memory; a stub that is its own Located
   * (k8s/kinds.ts `slimSourced`) is one object per document instead of two.
   */
  slim?: (o: Located) => Located;
  /** Size and time bounds (default DEFAULT_LIMITS of manifest-parse.ts). */
  limits?: Partial<ManifestLimits>;
}

/**
 * What is kept per file (10,000 files in the agent's bench: every byte here counts ×10,000).
 * The content hash and the stat signature are kept as 60-bit digests in four small
 * integers (stored in the object itself, no string): a hash and a signature string were
 * ≈ 110 bytes per file.
 */
class FileState {
  /** Digest of the text last read, to skip re-parsing an unchanged file (h0 -1: none). */
  h0 = -1;
  h1 = 0;
  /** Digest of the stat signature at the last read, to skip re-reading on a rescan (s0 -1: none). */
  s0 = -1;
  s1 = 0;
  /**
   * The last good content: what is in force (unless a duplicate of an earlier file's). A
   * file of one document holds its object itself, not a list of one (56 bytes per file
   * less: 0.5 MiB with 10,000 single-object files); read it through `goods()`.
   */
  good: Located | readonly Located[] = NOTHING;
  /** What is wrong with the file's current text (empty when it is good). */
  problems: ManifestProblem[] = NO_PROBLEMS;

  /** The last good content as a list. */
  goods(): readonly Located[] { return isList(this.good) ? this.good : [this.good]; }

  sameText(d: Digest): boolean { return this.h0 === d[0] && this.h1 === d[1]; }
  sameSig(d: Digest): boolean { return this.s0 === d[0] && this.s1 === d[1]; }
  setText(d: Digest | undefined): void { this.h0 = d ? d[0] : -1; this.h1 = d ? d[1] : 0; }
  setSig(d: Digest | undefined): void { this.s0 = d ? d[0] : -1; this.s1 = d ? d[1] : 0; }
}

function isList(g: Located | readonly Located[]): g is readonly Located[] {
  return Array.isArray(g);
}

/** 60 bits of a SHA-1, as two integers of 30 bits (V8 small integers: kept unboxed in an object). */
type Digest = readonly [number, number];
function digest(text: string): Digest {
  const b = createHash('sha1').update(text).digest();
  return [b.readUInt32LE(0) & 0x3fffffff, b.readUInt32LE(4) & 0x3fffffff];
}

const ALL = Symbol('all');
/** Files read at once during a scan: enough to overlap I/O, few enough that parse garbage dies young. */
const READ_CONCURRENCY = Number(process.env.KW_MANIFEST_READ_CONCURRENCY ?? 8);
const NOTHING: Located[] = Object.freeze([]) as unknown as Located[];
const NO_PROBLEMS: ManifestProblem[] = Object.freeze([]) as unknown as ManifestProblem[];

export class ManifestDirectory extends EventEmitter {
  private readonly dir: string;
  private readonly validate: ObjectValidator | undefined;
  private readonly debounceMs: number;
  private readonly log: Logger | undefined;
  private readonly slim: ((o: Located) => Located) | undefined;
  private readonly limits: Readonly<ManifestLimits>;
  /** Parses large files off the event loop; stopped by close() (a parse in flight is abandoned). */
  private readonly yaml = new YamlWorker();
  private readonly files = new Map<string, FileState>();
  /**
   * Identity -> the objects claiming it, in file order; the first is in force. In two
   * levels, scope (kind and namespace) then name, so that the key kept per object is its
   * name, a string its stub already holds (an identity string per object was 40 bytes:
   * 0.8 MiB for 20,000 objects).
   */
  private readonly claims = new Map<string, Candidates<Located>>();
  /** Objects not in force because an earlier file has the same object. */
  private readonly losers = new Set<Located>();
  /** Identities claimed more than once (by `scope\0name`; rare). */
  private readonly dupIds = new Map<string, Identity>();
  /** Changes since the last snapshot. */
  private pendingAdded = new Set<Located>();
  private pendingRemoved = new Set<Located>();
  private sortedFiles: string[] | undefined;
  /** Directories that cannot be watched (inotify limits, permissions), by path. */
  private readonly dirProblems = new Map<string, ManifestProblem>();
  private dirProblemsChanged = false;
  private watcher: TreeWatcher | undefined;
  private dirty = new Map<string, Set<string> | typeof ALL>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  /** Set while the directory itself is gone: looks for it to come back. */
  private rootPoll: NodeJS.Timeout | undefined;

  constructor(dir: string, opts: ManifestDirectoryOptions = {}) {
    super();
    if (typeof dir !== 'string' || dir === '') throw new KernwayError('KW_INVALID_ARGUMENT', 'manifest directory: expected a path');
    const debounceMs = opts.debounceMs ?? 20;
    if (!Number.isFinite(debounceMs) || debounceMs < 0) throw new KernwayError('KW_INVALID_ARGUMENT', `debounceMs: expected a number >= 0, got ${debounceMs}`);
    this.dir = dir.length > 1 && dir.endsWith(sep) ? dir.slice(0, -1) : dir;
    this.validate = opts.validate;
    this.debounceMs = debounceMs;
    this.log = opts.log;
    this.slim = opts.slim;
    this.limits = Object.freeze({ ...DEFAULT_LIMITS, ...opts.limits });
  }

  /** Read the whole tree (again) and return the snapshot. Throws KW_MANIFEST_DIR when `dir` is not a readable directory. */
  async load(): Promise<ManifestSnapshot> {
    this.checkRoot();
    await this.scanTree(this.dir, false);
    await this.yaml.release(); // the worker thread, if large files needed one, is not kept idle
    return this.snapshot();
  }

  /**
   * Watch the tree. Emits SNAPSHOT after each batch of changes (debounced by `debounceMs`
   * from the first event). Starts with a rescan, so nothing changed between load() and
   * watch() is missed (and watch() without load() emits the first snapshot).
   */
  watch(): void {
    if (this.closed) throw new KernwayError('KW_MANIFEST_CLOSED', `manifest directory ${this.dir}: watch() after close()`);
    if (this.watcher) return;
    this.checkRoot();
    this.watcher = new TreeWatcher(
      (dir, name) => this.onEvent(dir, name),
      (dir, err) => {
        this.log?.warn({ dir, err: err.message }, 'manifest directory: watch error');
        const hint = (err as NodeJS.ErrnoException).code === 'ENOSPC' ? ' (inotify watch limit reached: raise fs.inotify.max_user_watches)' : '';
        this.dirProblemsChanged = true;
        this.dirProblems.set(dir, { code: WATCH_ERROR, file: dir, message: `cannot watch ${dir}: ${err.message}${hint}; changes there are not seen` });
      },
    );
    this.markDirty(this.dir, null);
  }

  /**
   * Resolves once no change is waiting or being processed: after watch(), once its first
   * rescan is done. A consumer that compacts its heap after its first sync waits for it,
   * so the rescan's garbage (a stat per file) is not left in the compacted heap.
   */
  async idle(): Promise<void> {
    while (!this.closed && (this.timer || this.running || this.dirty.size > 0)) {
      if (this.running) await this.running;
      else await new Promise((r) => setTimeout(r, Math.max(1, this.debounceMs)));
    }
  }

  /** Stop watching. Pending changes are dropped; no more events. */
  close(): void {
    this.closed = true;
    this.yaml.close();
    if (this.rootPoll) clearInterval(this.rootPoll);
    this.rootPoll = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    this.dirty.clear();
  }

  /** The snapshot of what is in force now (objects in file name order, then document order). */
  private snapshot(): ManifestSnapshot {
    if (this.sortedFiles === undefined) this.sortedFiles = [...this.files.keys()].sort(compareStrings);
    const objects: Located[] = [];
    const problems: ManifestProblem[] = [...this.dirProblems.values()];
    const filter = this.losers.size > 0;
    for (const file of this.sortedFiles) {
      const st = this.files.get(file)!;
      const good = st.good;
      if (!isList(good)) { if (!filter || !this.losers.has(good)) objects.push(good); }
      else for (const loc of good) if (!filter || !this.losers.has(loc)) objects.push(loc);
      for (const p of st.problems) problems.push(p);
    }
    for (const id of this.dupIds.values()) {
      const [first, ...others] = this.claims.get(id.scope)!.all(id.name);
      for (const loc of others) {
        problems.push({ code: DUPLICATE_OBJECT, file: loc.file, object: objectRef(loc.object), field: 'metadata.name',
          message: `document ${loc.index}: ${objectRef(loc.object)} is also defined in ${first!.file} (document ${first!.index}); that one is used` });
      }
    }
    const changes = { added: [...this.pendingAdded], removed: [...this.pendingRemoved] };
    this.pendingAdded = new Set();
    this.pendingRemoved = new Set();
    return { objects, problems, changes };
  }

  /** Replace the content in force of a file, keeping claims, losers and pending changes up to date. */
  private setGood(st: FileState, located: Located[]): void {
    for (const loc of st.goods()) this.unclaim(identity(loc.object), loc);
    st.good = located.length === 1 ? located[0]! : located.length > 0 ? located : NOTHING;
    for (const loc of located) this.claim(identity(loc.object), loc);
  }

  private claim(id: Identity, loc: Located): void {
    let claims = this.claims.get(id.scope);
    if (!claims) this.claims.set(flat(id.scope), (claims = new Candidates<Located>(compareLoc)));
    const before = claims.first(id.name);
    claims.add(id.name, loc);
    if (before === undefined) { this.entered(loc); return; }
    this.dupIds.set(`${id.scope}\0${id.name}`, id);
    if (claims.first(id.name) === loc) { this.left(before); this.losers.add(before); this.entered(loc); }
    else this.losers.add(loc);
  }

  private unclaim(id: Identity, loc: Located): void {
    const claims = this.claims.get(id.scope);
    if (!claims) return;
    const wasFirst = claims.first(id.name) === loc;
    if (!claims.remove(id.name, loc)) return;
    if (!claims.contested(id.name)) this.dupIds.delete(`${id.scope}\0${id.name}`);
    if (claims.size === 0) this.claims.delete(id.scope);
    if (!wasFirst) { this.losers.delete(loc); return; }
    this.left(loc);
    const next = claims.first(id.name);
    if (next !== undefined) { this.losers.delete(next); this.entered(next); }
  }

  /** How many scopes and identities are claimed (tests: nothing is kept for an identity no file has). */
  claimCounts(): { scopes: number; identities: number; duplicated: number } {
    let n = 0;
    for (const c of this.claims.values()) n += c.size;
    return { scopes: this.claims.size, identities: n, duplicated: this.dupIds.size };
  }

  private entered(loc: Located): void {
    if (!this.pendingRemoved.delete(loc)) this.pendingAdded.add(loc);
  }

  private left(loc: Located): void {
    if (!this.pendingAdded.delete(loc)) this.pendingRemoved.add(loc);
  }

  private checkRoot(): void {
    let isDir: boolean;
    try {
      isDir = statSync(this.dir).isDirectory();
    } catch (e) {
      throw new KernwayError('KW_MANIFEST_DIR', `manifest directory ${this.dir}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (e as Error).message}`, { dir: this.dir });
    }
    if (!isDir) throw new KernwayError('KW_MANIFEST_DIR', `manifest directory ${this.dir}: is not a directory`, { dir: this.dir });
  }

  private rootIsDir(): boolean {
    try { return statSync(this.dir).isDirectory(); } catch { return false; }
  }

  /**
   * The watched directory is gone (removed, renamed, unmounted): what was read from it
   * stays in force, a problem says so, and it is looked for every ROOT_POLL_MS; when it is
   * back it is read again whole and watched again. Returns whether this is news.
   */
  private rootGone(): boolean {
    if (this.rootPoll) return false;
    this.watcher?.removeTree(this.dir);
    this.dirProblems.set(this.dir, { code: DIR_GONE, file: this.dir,
      message: `the manifest directory ${this.dir} is gone; what was read from it stays in force until it is back (looked for every ${ROOT_POLL_MS} ms)` });
    this.log?.warn({ dir: this.dir }, 'manifest directory gone; its last content stays in force');
    this.rootPoll = setInterval(() => {
      if (this.closed || !this.rootIsDir()) return;
      clearInterval(this.rootPoll);
      this.rootPoll = undefined;
      this.dirProblems.delete(this.dir);
      this.dirProblemsChanged = true;
      this.log?.info({ dir: this.dir }, 'manifest directory back; reading it again');
      this.markDirty(this.dir, null);
    }, ROOT_POLL_MS);
    this.rootPoll.unref();
    return true;
  }

  private onEvent(dir: string, name: string | null): void {
    if (this.closed) return;
    this.markDirty(dir, name);
  }

  private markDirty(dir: string, name: string | null): void {
    const cur = this.dirty.get(dir);
    // '..data' and friends: a ConfigMap volume's atomic swap, rescan. Other hidden names are
    // editors' temporary files: ignored (the rename onto the real name gives its own event).
    if (name !== null && name.startsWith('.') && !name.startsWith('..')) return;
    if (name === null || name.startsWith('..')) this.dirty.set(dir, ALL);
    else if (cur === undefined) this.dirty.set(dir, new Set([name]));
    else if (cur !== ALL) cur.add(name);
    this.schedule();
  }

  private schedule(): void {
    // Debounce from the first event, not the last: latency stays bounded under a stream of writes.
    if (this.timer || this.running || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.flush().finally(() => {
        this.running = undefined;
        if (this.dirty.size > 0) this.schedule();
      });
    }, this.debounceMs);
  }

  private async flush(): Promise<void> {
    const batch = this.dirty;
    this.dirty = new Map();
    const t0 = performance.now();
    let changed = false;
    try {
      // The directory itself is gone: nothing of the batch can be read; keep what is in force.
      if (!this.rootIsDir()) {
        if (this.rootGone()) changed = true;
        batch.clear();
      }
      for (const [dir, names] of batch) {
        if (this.closed) return;
        if (names === ALL) changed = (await this.scanTree(dir, true)) || changed;
        else for (const name of names) changed = (await this.refreshPath(join(dir, name))) || changed;
      }
    } catch (e) {
      this.log?.error({ err: (e as Error).message }, 'manifest directory: failed to process changes');
    }
    await this.yaml.release();
    if (this.dirProblemsChanged) { this.dirProblemsChanged = false; changed = true; }
    if (this.closed || !changed) return;
    const snap = this.snapshot();
    this.log?.debug({ dir: this.dir, objects: snap.objects.length, problems: snap.problems.length, ms: +(performance.now() - t0).toFixed(2) }, 'manifest directory changed');
    this.emit(SNAPSHOT, snap);
  }

  /** Something happened at `path`: a file added/changed/removed, or a directory added/removed. */
  private async refreshPath(path: string): Promise<boolean> {
    let st;
    try {
      st = await stat(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return this.forgetTree(path);
      return this.setReadProblem(path, e as Error);
    }
    if (st.isDirectory()) {
      if ((await lstat(path)).isSymbolicLink()) return false; // not followed: no loops
      return this.scanTree(path, true);
    }
    if (!st.isFile() || !hasManifestExt(path)) return false;
    return this.readFileState(path, sigOf(st), true);
  }

  /**
   * (Re)scan `dir` and everything below it: new files are read, changed files (by stat
   * signature) re-read, vanished files and directories forgotten. Returns whether the
   * content in force or the problems changed.
   */
  private async scanTree(dir: string, watching: boolean): Promise<boolean> {
    const seenFiles = new Set<string>();
    const seenDirs = new Set<string>();
    let changed = false;
    const walk = async (d: string): Promise<void> => {
      // Watch before listing, so a file created right after the listing is still seen.
      if (watching) this.watcher?.add(d);
      let entries;
      try {
        entries = await readdir(d, { withFileTypes: true });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code === 'ENOENT' || code === 'ENOTDIR') && d === this.dir && this.watcher) { rootMissing = true; return; }
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        if (d === this.dir) throw e;
        this.log?.warn({ dir: d, err: (e as Error).message }, 'manifest directory: cannot list a subdirectory');
        return;
      }
      seenDirs.add(d);
      const reads: Promise<void>[] = [];
      for (const ent of entries) {
        if (ent.name.startsWith('.')) continue;
        const p = join(d, ent.name);
        let isFile = ent.isFile();
        if (ent.isDirectory()) { await walk(p); continue; }
        if (ent.isSymbolicLink()) {
          // Symlinked files are followed (ConfigMap volumes are made of them); symlinked directories are not.
          try {
            const target = await stat(p);
            isFile = target.isFile();
            if (target.isDirectory() && await leadsBack(p, d)) { // `loop -> ..`: not followed anyway, but a mistake
              seenFiles.add(p);
              changed = this.setReadProblem(p, Object.assign(new Error('ELOOP'), { code: 'ELOOP' })) || changed;
            }
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ELOOP') { // a loop is a mistake, whatever its name: say so
              seenFiles.add(p);
              changed = this.setReadProblem(p, e as Error) || changed;
            }
            isFile = false;
          }
        }
        if (!isFile || !hasManifestExt(p)) continue;
        seenFiles.add(p);
        reads.push((async () => {
          let sig: Digest;
          try { sig = sigOf(await stat(p)); } catch (e) { changed = this.setReadProblem(p, e as Error) || changed; return; }
          const prev = this.files.get(p);
          if (prev && prev.sameSig(sig)) return;
          changed = (await this.readFileState(p, sig, false)) || changed;
        })());
        if (reads.length >= READ_CONCURRENCY) { await Promise.all(reads); reads.length = 0; }
      }
      await Promise.all(reads);
    };
    let rootMissing = false;
    await walk(dir);
    if (rootMissing) return this.rootGone();
    // Forget what is no longer there.
    const prefix = dir + sep;
    for (const f of [...this.files.keys()]) {
      if ((f.startsWith(prefix)) && !seenFiles.has(f)) { this.dropFile(f); changed = true; }
    }
    if (this.watcher) for (const d of this.watcher.dirs()) {
      if ((d === dir || d.startsWith(prefix)) && !seenDirs.has(d)) this.watcher.removeTree(d);
    }
    for (const d of [...this.dirProblems.keys()]) {
      if ((d === dir || d.startsWith(prefix)) && !seenDirs.has(d)) { this.dirProblems.delete(d); changed = true; }
    }
    return changed;
  }

  /** `path` is gone: forget it, or everything below it if it was a directory. */
  private forgetTree(path: string): boolean {
    let changed = false;
    if (this.dropFile(path)) changed = true;
    const prefix = path + sep;
    for (const f of [...this.files.keys()]) if (f.startsWith(prefix) && this.dropFile(f)) changed = true;
    this.watcher?.removeTree(path);
    for (const d of [...this.dirProblems.keys()]) {
      if (d === path || d.startsWith(prefix)) { this.dirProblems.delete(d); changed = true; }
    }
    return changed;
  }

  private dropFile(path: string): boolean {
    const st = this.files.get(path);
    if (!st) return false;
    this.setGood(st, []);
    this.files.delete(path);
    this.sortedFiles = undefined;
    return true;
  }

  private setReadProblem(path: string, err: Error): boolean {
    const st = this.ensure(path);
    st.setText(undefined);
    st.setSig(undefined);
    st.problems = [{ code: READ_ERROR, file: path, message: (err as NodeJS.ErrnoException).code === 'ELOOP'
      ? `cannot read: a symlink loop (${path} leads back to itself through symbolic links); fix or remove the link`
      : `cannot read: ${err.message}` }];
    return true;
  }

  private ensure(path: string): FileState {
    let st = this.files.get(path);
    if (!st) {
      st = new FileState();
      this.files.set(path, st);
      this.sortedFiles = undefined;
    }
    return st;
  }

  private async readFileState(path: string, sig: Digest, fromEvent: boolean): Promise<boolean> {
    let text: string;
    try {
      text = await readBounded(path, this.limits.fileBytes);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return this.forgetTree(path); // removed between the event and the read
      if (code === TOO_LARGE || code === 'NOT_REGULAR_FILE') {
        const st = this.ensure(path);
        st.setText(undefined);
        st.setSig(sig);
        st.problems = [{ code: code === TOO_LARGE ? TOO_LARGE : READ_ERROR, file: path, message: (e as Error).message }];
        return true;
      }
      return this.setReadProblem(path, e as Error);
    }
    const hash = digest(text);
    const prev = this.files.get(path);
    if (prev && prev.sameText(hash)) { prev.setSig(sig); return false; }
    const st = this.ensure(path);
    st.setText(hash);
    st.setSig(sig);
    const parsed = await parseManifestFile(path, text, this.yaml, this.limits);
    if (this.closed) return false;
    const problems = parsed.problems;
    let located: Located[] = parsed.documents.map((d) => ({ object: d.object, file: path, index: d.index }));
    if (this.validate) {
      for (const loc of located) {
        try {
          for (const p of this.validate(loc)) problems.push(p);
        } catch (e) {
          problems.push({ code: VALIDATOR_FAILED, file: path, object: objectRef(loc.object), message: `document ${loc.index}: validator failed: ${(e as Error).message}` });
        }
      }
    }
    if (problems.length === 0) {
      if (this.slim) located = located.map(this.slim);
      this.setGood(st, located);
      st.problems = NO_PROBLEMS;
    } else {
      st.problems = problems; // st.good stays: the previous good content is kept in force
      this.log?.debug({ file: path, problems: problems.length, kept: st.goods().length, fromEvent }, 'manifest file rejected; previous content kept');
    }
    return true;
  }
}

/**
 * A file's text, read through one descriptor: only a regular file (a FIFO or a device
 * would block or never end), and at most `max` bytes (a larger file is refused unread).
 */
async function readBounded(path: string, max: number): Promise<string> {
  // O_NONBLOCK: opening a FIFO never waits for a writer (a blocked open would hold a libuv thread for good).
  const fh = await open(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw Object.assign(new Error(`not a regular file (a FIFO, socket or device is never read)`), { code: 'NOT_REGULAR_FILE' });
    if (st.size > max) throw Object.assign(new Error(`${st.size} bytes, over the limit of ${max} bytes per manifest file; split it`), { code: TOO_LARGE });
    const buf = Buffer.alloc(Math.min(st.size, max) + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > max) throw Object.assign(new Error(`over the limit of ${max} bytes per manifest file (it grew while read); split it`), { code: TOO_LARGE });
      if (n === buf.length) break;
    }
    return buf.toString('utf8', 0, n);
  } finally {
    await fh.close();
  }
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareLoc(a: Located, b: Located): number {
  return a.file < b.file ? -1 : a.file > b.file ? 1 : a.index - b.index;
}

function hasManifestExt(p: string): boolean {
  for (const e of EXTENSIONS) if (p.endsWith(e)) return true;
  return false;
}

function sigOf(st: { ino: number; size: number; mtimeMs: number; ctimeMs: number }): Digest {
  return digest(`${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`);
}

/** A flat copy of a string built by concatenation (kept for long: no tree of pieces behind it). */
function flat(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
}

/** A short code per (API group, kind) seen, so that identities kept by the thousand stay short. */
const kindCodes = new Map<string, string>();

/** Identity of an object for duplicate detection: its scope (API group and kind as a short code, namespace: `3|bench`) and its name. */
interface Identity { scope: string; name: string }

/** An object's identity; the scope is made on each call (kept once per scope, as the claims' outer key). */
function identity(o: K8sObject): Identity {
  const slash = o.apiVersion.indexOf('/');
  const group = slash < 0 ? '' : o.apiVersion.slice(0, slash);
  const gk = `${group}|${o.kind}`;
  let code = kindCodes.get(gk);
  if (code === undefined) kindCodes.set(gk, (code = String(kindCodes.size)));
  // Namespaced unless the kind registry says otherwise: kinds kernway does not read only need a stable identity.
  const ns = o.metadata.namespace ?? (kindOf(o)?.namespaced === false ? '' : 'default');
  return { scope: `${code}|${ns}`, name: o.metadata.name };
}

/** Whether the directory symlink `link` (in directory `dir`) points at `dir` or one of its ancestors. */
async function leadsBack(link: string, dir: string): Promise<boolean> {
  try {
    const [target, here] = await Promise.all([realpath(link), realpath(dir)]);
    return here === target || here.startsWith(target.endsWith(sep) ? target : target + sep);
  } catch {
    return false;
  }
}
