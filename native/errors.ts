/**
 * BpfError: every failure of the kernel side (libbpf, bpf(2), netlink) surfaces as one of
 * these, built by the addon (native/src/common.cc MakeError) from this class. `code` is
 * the errno name and stable; the message says what failed, on what, and why.
 */
import { KernwayError, type ErrnoCode } from '../common/errors.js';

export interface BpfErrorInit {
  code: ErrnoCode;
  errno: number;
  op: string;
  /** Why, in words: the errno's text and what libbpf or the kernel added. */
  detail: string;
  object?: string;
  program?: string;
  map?: string;
  verifierLog?: string;
}

export interface BpfErrorContext { object?: string; program?: string; map?: string }

export class BpfError extends KernwayError {
  override readonly code: ErrnoCode;
  readonly errno: number;
  /** 'object.open' | 'object.load' | 'map.update' | 'link.attach_cgroup' | ... */
  readonly op: string;
  readonly detail: string;
  object?: string;
  program?: string;
  map?: string;
  /** Tail of the verifier log (last 4 KiB) when the kernel rejected a program. */
  readonly verifierLog?: string;

  constructor(init: BpfErrorInit) {
    super(init.code, '', { op: init.op });
    this.name = 'BpfError';
    this.code = init.code;
    this.errno = init.errno;
    this.op = init.op;
    this.detail = init.detail;
    if (init.object !== undefined) this.object = init.object;
    if (init.program !== undefined) this.program = init.program;
    if (init.map !== undefined) this.map = init.map;
    if (init.verifierLog !== undefined) this.verifierLog = init.verifierLog;
    this.message = this.compose();
  }

  /** Fills in what the addon could not know (the map or program behind an fd). */
  withContext(ctx: BpfErrorContext): this {
    this.object ??= ctx.object;
    this.program ??= ctx.program;
    this.map ??= ctx.map;
    this.message = this.compose();
    return this;
  }

  private compose(): string {
    const what: string[] = [];
    if (this.program !== undefined) what.push(`program '${this.program}'`);
    if (this.map !== undefined) what.push(`map '${this.map}'`);
    if (this.object !== undefined) what.push(`${what.length ? 'of ' : ''}object '${this.object}'`);
    return `${this.op} failed${what.length ? ' for ' + what.join(' ') : ''}: ${this.detail}`;
  }

  /** A BpfError raised on the TypeScript side (state checks, not bad arguments). */
  static of(code: ErrnoCode, errno: number, op: string, detail: string, ctx: BpfErrorContext = {}): BpfError {
    return new BpfError({ code, errno, op, detail, ...ctx });
  }
}

/** Runs `fn`, adding `ctx` to any BpfError it throws. */
export function withContext<T>(ctx: BpfErrorContext, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof BpfError) e.withContext(ctx);
    throw e;
  }
}

/** The same error under another op name, with an optional hint appended to the detail. */
export function renamed(e: unknown, op: string, hint?: string): unknown {
  if (!(e instanceof BpfError)) return e;
  const init: BpfErrorInit = { code: e.code, errno: e.errno, op, detail: hint ? `${e.detail} (${hint})` : e.detail };
  if (e.object !== undefined) init.object = e.object;
  if (e.program !== undefined) init.program = e.program;
  if (e.map !== undefined) init.map = e.map;
  if (e.verifierLog !== undefined) init.verifierLog = e.verifierLog;
  return new BpfError(init);
}

/** Runs a pin/unpin/open-pinned call under `op`, explaining the usual bpffs mistakes. */
export function pinCall<T>(op: string, ctx: BpfErrorContext, fn: () => T): T {
  try {
    return withContext(ctx, fn);
  } catch (e) {
    const hint = e instanceof BpfError && (e.code === 'EPERM' || e.code === 'ENOENT')
      ? 'pins live on a bpffs mount, in a folder that exists'
      : e instanceof BpfError && e.code === 'EEXIST' ? 'something is already pinned there' : undefined;
    throw renamed(e, op, hint);
  }
}
