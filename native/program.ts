/**
 * BpfProgram: one loaded program, and the ways to attach it (cgroup, sk_msg, tc) or run
 * it on a test packet (BPF_PROG_TEST_RUN).
 */
import { existsSync } from 'node:fs';
import { InvalidArgumentError } from '../common/errors.js';
import type { RawProgInfo, RawTestRun } from './addon.js';
import { BpfError, pinCall, withContext } from './errors.js';
import { BpfLink } from './link.js';
import { addon } from './load.js';
import type { BpfMap } from './map.js';
import { checkAbsolutePath, checkBuffer, checkKeys, checkObject, checkOneOf, checkString, checkUint } from './validate.js';

/** Cgroup hooks, and the kernel attach type (libbpf's name) of each. */
export const CGROUP_ATTACH_TYPES = {
  connect4: 'cgroup_inet4_connect',
  connect6: 'cgroup_inet6_connect',
  sendmsg4: 'cgroup_udp4_sendmsg',
  sendmsg6: 'cgroup_udp6_sendmsg',
  recvmsg4: 'cgroup_udp4_recvmsg',
  recvmsg6: 'cgroup_udp6_recvmsg',
  getpeername4: 'cgroup_inet4_getpeername',
  getpeername6: 'cgroup_inet6_getpeername',
  getsockname4: 'cgroup_inet4_getsockname',
  getsockname6: 'cgroup_inet6_getsockname',
  sock_ops: 'cgroup_sock_ops',
} as const;
export type CgroupAttachType = keyof typeof CGROUP_ATTACH_TYPES;
const CGROUP_TYPES = Object.keys(CGROUP_ATTACH_TYPES) as CgroupAttachType[];

export type TcDirection = 'ingress' | 'egress';
export type TcMode = 'auto' | 'tcx' | 'clsact';
export interface TcAttachOptions {
  /** Network namespace of the interface: a path (/var/run/netns/NAME) or a name under /var/run/netns. */
  netns?: string;
  /** 'auto' (default): tcx where the kernel has it, else clsact. */
  mode?: TcMode;
}
export type SkMsgMode = 'auto' | 'link' | 'prog-attach';

export interface TestRunOptions {
  data: Buffer;
  /** Runs (default 1); durationNs is the mean per run. */
  repeat?: number;
  /** Context in (e.g. a struct __sk_buff for tc); its output comes back as `ctx`. */
  ctx?: Buffer;
}
export interface TestRunResult { retval: number; data: Buffer; durationNs: number; ctx?: Buffer }

const ETH_HLEN = 14;

export class BpfProgram {
  readonly name: string;
  /** libbpf's name of the program type: 'sched_cls', 'cgroup_sock_addr', 'sock_ops', 'sk_msg', ... */
  readonly type: string;
  /** The ELF section (SEC("...")) it came from, '' for a pinned program. */
  readonly section: string;
  /** libbpf's name of the expected attach type ('cgroup_inet4_connect', ...), '' when none. */
  readonly attachType: string;
  private readonly fd_: number;
  private readonly owned: boolean;
  /** The BpfObject whose fd this is: kept reachable so the GC cannot close the fd under us. */
  readonly owner: object | undefined;
  private readonly object: string | undefined;
  private closed = false;

  /** @internal Use BpfObject.program() or BpfProgram.openPinned(). */
  constructor(fd: number, desc: { name: string; type: string; section?: string; attachType?: string; object?: string; owned: boolean; owner?: object }) {
    this.fd_ = fd;
    this.owner = desc.owner;
    this.name = desc.name;
    this.type = desc.type;
    this.section = desc.section ?? '';
    this.attachType = desc.attachType ?? '';
    this.object = desc.object;
    this.owned = desc.owned;
  }

  static openPinned(path: string): BpfProgram {
    checkAbsolutePath('path', path);
    const raw = addon();
    const fd = pinCall('prog.open_pinned', {}, () => raw.objGet(path));
    if (raw.fdKind(fd) !== 'prog') {
      const kind = raw.fdKind(fd);
      raw.closeFd(fd);
      throw BpfError.of('EINVAL', 22, 'prog.open_pinned', `${path} holds a BPF ${kind}, not a program`);
    }
    const info = raw.progInfo(fd);
    return new BpfProgram(fd, { name: info.name, type: info.type, owned: true });
  }

  get fd(): number {
    if (this.closed) {
      throw BpfError.of('EBADF', 9, 'prog.fd', this.object ? 'program was closed with its object' : 'program was closed', this.ctx());
    }
    return this.fd_;
  }

  info(): RawProgInfo {
    return this.call(() => addon().progInfo(this.fd));
  }

  /**
   * Attaches to a cgroup v2 directory as a bpf_link. `type` defaults to what the
   * program's SEC() says (cgroup/connect4 -> 'connect4', sockops -> 'sock_ops').
   */
  attachCgroup(cgroupPath: string, type?: CgroupAttachType): BpfLink {
    checkAbsolutePath('cgroupPath', cgroupPath);
    const built = CGROUP_TYPES.find((t) => CGROUP_ATTACH_TYPES[t] === this.attachType);
    if (type !== undefined) checkOneOf('type', type, CGROUP_TYPES);
    const kind = type ?? built;
    if (kind === undefined) {
      throw new InvalidArgumentError('type', `one of ${CGROUP_TYPES.join(', ')} (program '${this.name}' from SEC("${this.section}") does not say)`, type);
    }
    if (built !== undefined && kind !== built) {
      throw new InvalidArgumentError('type', `'${built}' (program '${this.name}' was built for it: SEC("${this.section}"))`, type);
    }
    const wantType = kind === 'sock_ops' ? 'sock_ops' : 'cgroup_sock_addr';
    if (this.type !== wantType) {
      throw new InvalidArgumentError('type', `a hook for a ${this.type} program ('${this.name}' is not ${wantType})`, kind);
    }
    const fd = this.call(() => addon().cgroupAttach(this.fd, cgroupPath, CGROUP_ATTACH_TYPES[kind]));
    return new BpfLink({ kind: 'link', fd }, `cgroup ${cgroupPath} (${kind})`, this.name);
  }

  /**
   * Attaches an sk_msg verdict program to a sockhash/sockmap: a bpf_link when the kernel
   * has sockmap links (6.10+), else BPF_PROG_ATTACH ('prog-attach'). `mode` forces one.
   */
  attachSkMsg(map: BpfMap, opts: { mode?: SkMsgMode } = {}): BpfLink {
    if (!map || typeof (map as { fd?: unknown }).fd !== 'number') throw new InvalidArgumentError('map', 'a BpfMap', map);
    checkKeys('opts', checkObject('opts', opts), ['mode']);
    const mode = opts.mode === undefined ? 'auto' : checkOneOf('opts.mode', opts.mode, ['auto', 'link', 'prog-attach'] as const);
    if (this.type !== 'sk_msg') throw new InvalidArgumentError('program', `an sk_msg program ('${this.name}' is ${this.type})`, this.name);
    if (map.type !== 'sockhash' && map.type !== 'sockmap') {
      throw new InvalidArgumentError('map', `a sockhash or sockmap ('${map.name}' is ${map.type})`, map.name);
    }
    const r = this.call(() => addon().skMsgAttach(this.fd, map.fd, mode));
    const target = `sk_msg on map ${map.name}`;
    return r.kind === 'link' ? new BpfLink({ kind: 'link', fd: r.fd }, target, this.name) : new BpfLink(r, target, this.name);
  }

  /**
   * Attaches a raw tracepoint program (SEC("raw_tp/<tracepoint>"), or the BTF kind that
   * may use socket storage, SEC("tp_btf/<tracepoint>")) to its tracepoint, as
   * a bpf_link. It runs for every hit on the machine, whatever cgroup: the program must
   * select what it acts on itself.
   */
  attachRawTracepoint(): BpfLink {
    const m = /^raw_tp(?:oint)?\/([A-Za-z0-9_]+)$/.exec(this.section);
    const btf = /^tp_btf\/([A-Za-z0-9_]+)$/.exec(this.section);
    if (!(this.type === 'raw_tracepoint' && m) && !(this.type === 'tracing' && btf)) {
      throw new InvalidArgumentError('program', `a raw tracepoint program from SEC("raw_tp/<tracepoint>") or SEC("tp_btf/<tracepoint>") ('${this.name}' is ${this.type} from SEC("${this.section}"))`, this.name);
    }
    const tp = (m ?? btf)![1]!;
    // A BTF program (tp_btf) was given its tracepoint at load: the kernel wants no name then.
    const fd = this.call(() => addon().rawTracepointAttach(this.fd, m ? tp : ''));
    return new BpfLink({ kind: 'link', fd }, `raw tracepoint ${tp}`, this.name);
  }

  /**
   * Attaches a tc program to an interface (name or ifindex) as a tcx link where the kernel
   * has tcx (6.6+), else as a clsact filter. With opts.netns the interface is looked up,
   * and attached, in that network namespace.
   */
  attachTc(iface: string | number, direction: TcDirection, opts: TcAttachOptions = {}): BpfLink {
    if (typeof iface === 'number') checkUint('iface', iface, 0x7fffffff, 1);
    else if (typeof iface !== 'string' || iface.length === 0 || iface.length > 15 || /[\s/\0]/.test(iface)) {
      throw new InvalidArgumentError('iface', 'an interface name (1-15 characters) or an ifindex', iface);
    }
    checkOneOf('direction', direction, ['ingress', 'egress'] as const);
    checkKeys('opts', checkObject('opts', opts), ['netns', 'mode']);
    const mode = opts.mode === undefined ? 'auto' : checkOneOf('opts.mode', opts.mode, ['auto', 'tcx', 'clsact'] as const);
    const netns = opts.netns === undefined ? '' : netnsPath(opts.netns);
    if (this.type !== 'sched_cls' && this.type !== 'sched_act') {
      throw new InvalidArgumentError('program', `a tc (sched_cls) program ('${this.name}' is ${this.type})`, this.name);
    }
    const ingress = direction === 'ingress';
    const r = this.call(() => addon().tcAttach(this.fd, iface, ingress, netns, mode));
    const target = `tc ${direction} of ${iface}${netns ? ` in ${netns}` : ''}`;
    if (r.kind === 'link') return new BpfLink({ kind: 'link', fd: r.fd }, target, this.name);
    return new BpfLink({ kind: 'tc-clsact', ifindex: r.ifindex, ingress, handle: r.handle, priority: r.priority, netns }, target, this.name);
  }

  /** Runs the program once (or `repeat` times) on a packet: BPF_PROG_TEST_RUN. */
  testRun(opts: TestRunOptions): TestRunResult {
    checkKeys('opts', checkObject('opts', opts), ['data', 'repeat', 'ctx']);
    const data = checkBuffer('opts.data', opts.data);
    if ((this.type === 'sched_cls' || this.type === 'sched_act' || this.type === 'xdp') && data.length < ETH_HLEN) {
      throw new InvalidArgumentError('opts.data', `a packet of at least ${ETH_HLEN} bytes (an Ethernet header)`, data);
    }
    if (data.length > 0xffff) throw new InvalidArgumentError('opts.data', 'a packet of at most 65535 bytes', data);
    const repeat = opts.repeat === undefined ? 1 : checkUint('opts.repeat', opts.repeat, 1_000_000, 1);
    const ctx = opts.ctx === undefined ? null : checkBuffer('opts.ctx', opts.ctx);
    const r: RawTestRun = this.call(() => addon().progTestRun(this.fd, data, ctx, repeat, data.length + 4096));
    return r;
  }

  pin(path: string): void {
    checkAbsolutePath('path', path);
    pinCall('prog.pin', this.ctx(), () => addon().objPin(this.fd, path));
  }

  /** Closes the fd of a pinned program opened here; programs of a BpfObject close with it. */
  close(): void {
    if (this.closed || !this.owned) return;
    this.closed = true;
    addon().closeFd(this.fd_);
  }

  /** @internal Called by the owning BpfObject when it closes. */
  markClosed(): void {
    this.closed = true;
  }

  private ctx(): { program: string; object?: string } {
    return this.object === undefined ? { program: this.name } : { program: this.name, object: this.object };
  }

  private call<T>(fn: () => T): T {
    return withContext(this.ctx(), fn);
  }
}

/** A network namespace given as a path or as a name under /var/run/netns; must exist. */
export function netnsPath(v: unknown): string {
  checkString('opts.netns', v);
  const path = (v as string).startsWith('/') ? (v as string) : `/var/run/netns/${v as string}`;
  if ((v as string).includes('..') || !existsSync(path)) {
    throw new InvalidArgumentError('opts.netns', 'an existing network namespace (a path, or a name under /var/run/netns)', v);
  }
  return path;
}
