/** Filesystem types (statfs f_type), to refuse paths on the kernel's pseudo filesystems. */
import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';

export const FS_MAGIC = {
  bpf: 0xcafe4a11,
  cgroup2: 0x63677270,
  proc: 0x9fa0,
  sysfs: 0x62656572,
  debugfs: 0x64626720,
  tracefs: 0x74726163,
  cgroup: 0x27e0eb,
  devpts: 0x1cd1,
  securityfs: 0x73636673,
  configfs: 0x62656570,
  pstore: 0x6165676c,
  efivarfs: 0xde5e81e4,
} as const;

/** Kernel pseudo filesystems: their files are not manifests or sockets (reads may block or never end). */
const PSEUDO = new Map<number, string>(
  (['proc', 'sysfs', 'debugfs', 'tracefs', 'cgroup', 'cgroup2', 'bpf', 'devpts', 'securityfs', 'configfs', 'pstore', 'efivarfs'] as const)
    .map((n) => [FS_MAGIC[n], n]));

/** sun_path is 108 bytes with its terminating NUL. */
export const MAX_UNIX_SOCKET_PATH = 107;

/** The filesystem type (statfs f_type) of path, or of its nearest existing ancestor. */
export function fsTypeOf(path: string): { type: number; at: string } {
  let p = path;
  for (;;) {
    try {
      return { type: statfsSync(p).type, at: p };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || dirname(p) === p) throw e;
      p = dirname(p);
    }
  }
}

/** The pseudo filesystem name path lies on (or would be created on), or undefined. */
export function pseudoFs(path: string): string | undefined {
  try { return PSEUDO.get(fsTypeOf(path).type); } catch { return undefined; }
}

