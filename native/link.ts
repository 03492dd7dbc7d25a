/**
 * BpfLink: one attachment of a program. Three kinds, by what the kernel offers:
 *  - 'link':        a bpf_link (cgroup, tcx, sockmap on kernels >= 6.10). Can be pinned and
 *                   atomically updated. Closing the last fd of an unpinned link detaches it.
 *  - 'tc-clsact':   a clsact filter (kernels without tcx). Updated in place by netlink;
 *                   stays attached when closed; cannot be pinned.
 *  - 'prog-attach': BPF_PROG_ATTACH (sk_msg on a sockmap before 6.10). Stays attached when
 *                   closed; cannot be pinned.
 */
import { unlinkSync } from 'node:fs';
import { InvalidArgumentError } from '../common/errors.js';
import type { RawLinkInfo } from './addon.js';
import { BpfError, pinCall, withContext } from './errors.js';
import { addon } from './load.js';
import { checkAbsolutePath } from './validate.js';

/** What a link needs of a program (a BpfProgram) to switch to it. */
export interface LinkableProgram { readonly name: string; readonly fd: number }

export type LinkKind = 'link' | 'tc-clsact' | 'prog-attach';

/** @internal What the addon returned for an attachment, plus what is needed to undo it. */
export type LinkState =
  | { kind: 'link'; fd: number }
  | { kind: 'tc-clsact'; ifindex: number; ingress: boolean; handle: number; priority: number; netns: string }
  | { kind: 'prog-attach'; progFd: number; targetFd: number; attachType: string };

export interface LinkInfo {
  kind: LinkKind;
  /** Kernel link type ('cgroup', 'tcx', 'sockmap', ...) or the attach kind for non-links. */
  type: string;
  id?: number;
  progId: number;
  ifindex?: number;
  cgroupId?: number;
  mapId?: number;
  handle?: number;
  priority?: number;
}

export class BpfLink {
  readonly kind: LinkKind;
  /** What it is attached to, in words (for errors and logs). */
  readonly target: string;
  /** The program attached (by name) when known. */
  program: string | undefined;
  private state: LinkState;
  private closed = false;
  private readonly pins = new Set<string>();

  /** @internal Made by BpfProgram.attach*() and BpfLink.openPinned(). */
  constructor(state: LinkState, target: string, program?: string) {
    this.state = state;
    this.kind = state.kind;
    this.target = target;
    this.program = program;
  }

  /** Opens a link pinned on bpffs (e.g. by an earlier agent), to update or detach it. */
  static openPinned(path: string): BpfLink {
    checkAbsolutePath('path', path);
    const raw = addon();
    const fd = pinCall('link.open_pinned', {}, () => raw.objGet(path));
    const kind = raw.fdKind(fd);
    if (kind !== 'link') {
      raw.closeFd(fd);
      throw BpfError.of('EINVAL', 22, 'link.open_pinned', `${path} holds a BPF ${kind}, not a link`);
    }
    return new BpfLink({ kind: 'link', fd }, `pinned link ${path}`);
  }

  /** The link's fd (kind 'link' only). */
  get fd(): number {
    const s = this.live('link.fd');
    if (s.kind !== 'link') throw this.unsupported('link.fd', 'has no fd');
    return s.fd;
  }

  get isClosed(): boolean { return this.closed; }

  info(): LinkInfo {
    const s = this.live('link.info');
    const raw = addon();
    switch (s.kind) {
      case 'link': {
        const li: RawLinkInfo = this.call(() => raw.linkInfo(s.fd));
        return { kind: 'link', ...li };
      }
      case 'tc-clsact':
        return {
          kind: s.kind, type: 'tc-clsact', ifindex: s.ifindex, handle: s.handle, priority: s.priority,
          progId: this.call(() => raw.tcQuery(s.ifindex, s.ingress, s.handle, s.priority, s.netns)),
        };
      case 'prog-attach':
        return { kind: s.kind, type: s.attachType, progId: this.call(() => raw.progInfo(s.progFd)).id };
    }
  }

  /** Pins the link on bpffs so it outlives this process (kind 'link' only). */
  pin(path: string): void {
    checkAbsolutePath('path', path);
    const s = this.live('link.pin');
    if (s.kind !== 'link') throw this.unsupported('link.pin', 'cannot be pinned (not a bpf_link)');
    pinCall('link.pin', this.ctx(), () => addon().objPin(s.fd, path));
    this.pins.add(path);
  }

  /** Removes a pin of this link; the link stays attached while an fd is open. */
  unpin(path: string): void {
    checkAbsolutePath('path', path);
    const s = this.live('link.unpin');
    if (s.kind !== 'link') throw this.unsupported('link.unpin', 'cannot be pinned (not a bpf_link)');
    const raw = addon();
    const fd = pinCall('link.unpin', this.ctx(), () => raw.objGet(path));
    try {
      if (raw.fdKind(fd) !== 'link' || raw.linkInfo(fd).id !== raw.linkInfo(s.fd).id) {
        throw BpfError.of('EINVAL', 22, 'link.unpin', `${path} does not pin this link`, this.ctx());
      }
    } finally {
      raw.closeFd(fd);
    }
    unlinkSync(path);
    this.pins.delete(path);
  }

  /** Replaces the attached program atomically: no packet or socket sees neither. */
  update(program: LinkableProgram): void {
    if (typeof program !== 'object' || program === null || typeof (program as { name?: unknown }).name !== 'string' || !('fd' in program)) {
      throw new InvalidArgumentError('program', 'a BpfProgram', program);
    }
    const s = this.live('link.update');
    const raw = addon();
    const progFd = program.fd;
    this.call(() => {
      switch (s.kind) {
        case 'link':
          raw.linkUpdate(s.fd, progFd);
          break;
        case 'tc-clsact':
          raw.tcReplace(progFd, s.ifindex, s.ingress, s.handle, s.priority, s.netns);
          break;
        case 'prog-attach': {
          raw.progAttach(progFd, s.targetFd, s.attachType); // replaces the map's program
          const old = s.progFd;
          s.progFd = raw.dupFd(progFd);
          raw.closeFd(old);
          break;
        }
      }
    }, program.name);
    this.program = program.name;
  }

  /**
   * Detaches for real (bpf_link_detach for links, even when pinned elsewhere), removes
   * the pins made through this BpfLink, and closes it.
   */
  detach(): void {
    const s = this.live('link.detach');
    const raw = addon();
    this.call(() => {
      switch (s.kind) {
        case 'link':
          raw.linkDetach(s.fd);
          break;
        case 'tc-clsact':
          raw.tcDetach(s.ifindex, s.ingress, s.handle, s.priority, s.netns);
          break;
        case 'prog-attach':
          raw.progDetach(s.progFd, s.targetFd, s.attachType);
          break;
      }
    });
    for (const p of this.pins) {
      try { unlinkSync(p); } catch { /* already removed */ }
    }
    this.pins.clear();
    this.close();
  }

  /** Drops our fds. An unpinned bpf_link goes with its last fd; the other kinds stay attached. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const s = this.state;
    const raw = addon();
    if (s.kind === 'link') raw.closeFd(s.fd);
    if (s.kind === 'prog-attach') {
      raw.closeFd(s.progFd);
      raw.closeFd(s.targetFd);
    }
  }

  private live(op: string): LinkState {
    if (this.closed) throw BpfError.of('EBADF', 9, op, `link to ${this.target} was closed`, this.ctx());
    return this.state;
  }

  private unsupported(op: string, what: string): BpfError {
    return BpfError.of('EOPNOTSUPP', 95, op, `a ${this.kind} attachment ${what}; ${this.target}`, this.ctx());
  }

  private ctx(program = this.program): { program?: string } {
    return program === undefined ? {} : { program };
  }

  private call<T>(fn: () => T, program?: string): T {
    return withContext(this.ctx(program), fn);
  }
}
