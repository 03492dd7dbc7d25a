/**
 * The raw kernway addon (build/Release/kernway.node), as native/src/*.cc exports it.
 * Use native/index.ts instead: it validates arguments, names things in errors and owns
 * the file descriptors. Everything here trusts its caller; fds are plain numbers.
 */

export interface RawRodataVar { name: string; offset: number; size: number; kind: 'int' | 'uint' | 'bool' | 'bytes' }
export interface RawProgram { name: string; section: string; type: string; attachType: string; fd: number }
export interface RawObjectMap {
  name: string; type: string; keySize: number; valueSize: number; maxEntries: number; internal: boolean; fd: number;
}
/** A BTF type, modifiers and typedefs skipped (native/src/btf.cc). Offsets and sizes in bytes. */
export interface RawBtfType {
  kind: 'int' | 'enum' | 'ptr' | 'array' | 'struct' | 'union' | 'void' | 'other';
  name: string;
  size: number;
  encoding?: 'signed' | 'unsigned' | 'bool';
  members?: RawBtfMember[];
  elem?: RawBtfType;
  len?: number;
}
export interface RawBtfMember { name: string; offset: number; bitOffset?: number; bitSize?: number; type: RawBtfType }
/** A map's key and value types; absent when the map has no BTF for them. */
export interface RawMapBtf { key?: RawBtfType; value?: RawBtfType }
export interface RawMapInfo { id: number; name: string; type: string; keySize: number; valueSize: number; maxEntries: number; flags: number }
export interface RawProgInfo { id: number; name: string; type: string; tag: string }
export interface RawLinkInfo { id: number; type: string; progId: number; ifindex?: number; cgroupId?: number; mapId?: number }
export interface RawTestRun { retval: number; data: Buffer; durationNs: number; ctx?: Buffer }
export type RawTcAttach =
  | { kind: 'link'; fd: number; ifindex: number }
  | { kind: 'tc-clsact'; ifindex: number; handle: number; priority: number };
export type RawSkMsgAttach =
  | { kind: 'link'; fd: number }
  | { kind: 'prog-attach'; progFd: number; targetFd: number; attachType: string };

export declare class ObjectHandle {
  /** Parses the ELF object (throws BpfError op 'object.open'). */
  constructor(path: string);
  readonly name: string;
  readonly state: 'open' | 'loading' | 'loaded' | 'failed' | 'closed';
  rodataVars(): RawRodataVar[];
  /** Patches `value` into .rodata at `offset` (before load). */
  setRodata(offset: number, value: Buffer): void;
  setMaxEntries(map: string, maxEntries: number): void;
  /** Loads on a worker thread; `reuse` maps are taken from their pins when present, `pin` maps pinned after. */
  load(reuse: Array<[string, string]>, pin: Array<[string, string]>): Promise<{ reused: string[]; pinned: string[] }>;
  programs(): RawProgram[];
  maps(): RawObjectMap[];
  /** The map's key and value types in the object's BTF (works before load). */
  mapBtf(map: string): RawMapBtf;
  close(): void;
}

export interface RawAddon {
  setErrorClass(ctor: new (init: never) => Error): void;
  ObjectHandle: typeof ObjectHandle;

  mapInfo(fd: number): RawMapInfo;
  /** The key and value types the map was created with (kernel BTF); {} without BTF. */
  mapBtf(fd: number): RawMapBtf;
  mapLookup(fd: number, key: Buffer, keySize: number, valueBytes: number): Buffer | undefined;
  mapLookupInto(fd: number, key: Buffer, keySize: number, out: Buffer, valueBytes: number): boolean;
  mapUpdate(fd: number, key: Buffer, keySize: number, value: Buffer, valueBytes: number, flags: number): void;
  mapDelete(fd: number, key: Buffer, keySize: number): boolean;
  mapNextKey(fd: number, key: Buffer | null, keySize: number): Buffer | undefined;
  mapBatchUpdate(fd: number, keys: Buffer, keySize: number, values: Buffer, valueBytes: number, count: number, flags: number): number;
  mapBatchLookup(fd: number, keySize: number, valueBytes: number, maxEntries: number): { keys: Buffer; values: Buffer; count: number };
  mapBatchDelete(fd: number, keys: Buffer, keySize: number, count: number): number;
  objPin(fd: number, path: string): void;
  objGet(path: string): number;
  fdKind(fd: number): 'map' | 'prog' | 'link' | 'other';
  closeFd(fd: number): void;
  dupFd(fd: number): number;
  numPossibleCpus(): number;
  /** flock(fd, LOCK_EX|LOCK_NB) (or LOCK_SH): false when another open file holds the lock. */
  flockTry(fd: number, exclusive: boolean): boolean;
  flockRelease(fd: number): void;
  /** libbpf ring_buffer on a BPF_MAP_TYPE_RINGBUF map fd, for records of `recordSize` bytes -> an id. */
  ringbufOpen(mapFd: number, recordSize: number): number;
  /** Every record available now, back to back (no blocking); records of another size are skipped and counted. */
  ringbufConsume(id: number): { data: Buffer; count: number; skipped: number };
  ringbufClose(id: number): void;
  /** SO_PEERCRED of a connected Unix socket: who connected. */
  peerCred(fd: number): { pid: number; uid: number; gid: number };

  cgroupAttach(progFd: number, cgroupPath: string, attachType: string): number;
  skMsgAttach(progFd: number, mapFd: number, mode: 'auto' | 'link' | 'prog-attach'): RawSkMsgAttach;
  /** Raw tracepoint program on a tracepoint ('sock_recv_length'; '' for a tp_btf program) -> bpf_link fd. */
  rawTracepointAttach(progFd: number, tracepoint: string): number;
  progAttach(progFd: number, targetFd: number, attachType: string): void;
  progDetach(progFd: number, targetFd: number, attachType: string): void;
  progQuery(target: number | string, attachType: string): number[];
  tcAttach(progFd: number, iface: string | number, ingress: boolean, netns: string, mode: 'auto' | 'tcx' | 'clsact'): RawTcAttach;
  tcDetach(ifindex: number, ingress: boolean, handle: number, priority: number, netns: string): void;
  tcReplace(progFd: number, ifindex: number, ingress: boolean, handle: number, priority: number, netns: string): void;
  tcQuery(ifindex: number, ingress: boolean, handle: number, priority: number, netns: string): number;
  tcxQuery(iface: string | number, ingress: boolean, netns: string): number[];
  /** The cookie of the network namespace at `netns` (a path; '' for the caller's), as bpf_get_netns_cookie() sees it. */
  netnsCookie(netns: string): bigint;
  /** glibc malloc_trim(0): free()d memory back to the kernel; whether any was released. */
  mallocTrim(): boolean;
  linkDetach(fd: number): void;
  linkUpdate(fd: number, progFd: number): void;
  linkInfo(fd: number): RawLinkInfo;

  progInfo(fd: number): RawProgInfo;
  progTestRun(fd: number, data: Buffer, ctx: Buffer | null, repeat: number, outSize: number): RawTestRun;
  probeProgType(name: string): boolean | null;
  probeMapType(name: string): boolean | null;
  probeHelper(progType: string, helper: string): boolean | null;
  probeTcx(): boolean;
  probeSockmapLink(): boolean;
  libbpfVersion(): string;
}
