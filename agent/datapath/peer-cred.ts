/**
 * Who is at the other end of a Unix socket: SO_PEERCRED through the addon (pid, uid, gid as
 * of connect()), and the pod it runs in, from its cgroup (the kubelet's
 * `.../kubepods[-qos]/pod<uid>/<container>`; systemd's `kubepods-…-pod<uid_with_underscores>.slice`).
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { addon } from '../../native/index.js';

export interface PeerCred { pid: number; uid: number; gid: number }

/** SO_PEERCRED of a connected Unix socket (undefined when the socket has no descriptor). */
export function peerCredOf(socket: Socket): PeerCred | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  return addon().peerCred(fd);
}

/** The pod uid in a process's cgroup path, or undefined (a process of the host, not of a pod). */
export function podUidOfPid(pid: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return undefined;
  }
  return podUidOfCgroup(text);
}

export function podUidOfCgroup(text: string): string | undefined {
  const m = /\/(?:[^/\n]*-)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?(?:\/|$)/m.exec(text);
  return m ? m[1]!.replace(/_/g, '-') : undefined;
}
