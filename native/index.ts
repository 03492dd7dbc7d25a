/**
 * The addon's TypeScript face: BPF objects, programs, maps and links over libbpf.
 * Arguments are validated here (InvalidArgumentError naming the argument); kernel-side
 * failures are BpfError with the errno name as `code`. See docs/native.md.
 */
export { BpfError, type BpfErrorInit } from './errors.js';
export { BpfObject, type OpenOptions, type RodataValue } from './object.js';
export { BpfMap, UpdateFlags, type MapInfo, type MapType } from './map.js';
export {
  BpfProgram, CGROUP_ATTACH_TYPES, type CgroupAttachType, type TcAttachOptions, type TcDirection, type TcMode,
  type SkMsgMode, type TestRunOptions, type TestRunResult,
} from './program.js';
export { BpfLink, type LinkInfo, type LinkKind } from './link.js';
export { BpfRingBuffer } from './ringbuf.js';
export { mallocTrim, netnsCookie, probe, type Probe } from './probe.js';
export { ensureBpffs, mountsOfType, cgroup2Mount } from '../common/mounts.js';
export { addon } from './load.js';
export type { RawBtfMember as BtfMember, RawBtfType as BtfType, RawMapBtf as MapBtf } from './addon.js';
