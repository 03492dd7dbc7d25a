/**
 * What the agent checks before it touches the kernel: every path it was given is usable
 * for what it is for. A start refused here has loaded, attached, pinned and created
 * nothing (docs/agent.md "Start order").
 *
 *   preflight(opts)   throws the coded error of the first unusable path
 *   ensureBpffsDir()  creates the --bpffs folder (only under an existing bpffs folder)
 */
import { accessSync, constants as fsc, existsSync, lstatSync, mkdirSync, statSync, statfsSync } from 'node:fs';
import { FS_MAGIC, MAX_UNIX_SOCKET_PATH, fsTypeOf, pseudoFs } from '../common/fs-types.js';
import { dirname } from 'node:path';
import { KernwayError, errorMessage } from '../common/errors.js';
import type { AgentOptions } from './options.js';

/** --standalone: an existing, readable directory on a real filesystem. */
export function checkManifestDir(dir: string): void {
  const fail = (why: string): never => { throw new KernwayError('KW_MANIFEST_DIR', `manifest directory ${dir} (--standalone): ${why}`, { dir }); };
  let st;
  try { st = statSync(dir); } catch (e) {
    fail((e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : errorMessage(e));
  }
  if (!st!.isDirectory()) fail('is not a directory');
  const pseudo = pseudoFs(dir);
  if (pseudo) fail(`is on the kernel's ${pseudo} filesystem, which holds no manifests; give a directory of YAML/JSON files`);
  try { accessSync(dir, fsc.R_OK | fsc.X_OK); } catch (e) { fail(`cannot be read: ${errorMessage(e)}`); }
}

/** --admin-socket: fits a Unix socket address, on a real filesystem, nothing else in its place. */
export function checkAdminSocketPath(path: string): void {
  const fail = (why: string): never => { throw new KernwayError('KW_ADMIN_SOCKET_PATH', `admin socket ${path} (--admin-socket): ${why}`, { path }); };
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_UNIX_SOCKET_PATH) fail(`is ${bytes} bytes long; a Unix socket path holds at most ${MAX_UNIX_SOCKET_PATH}: choose a shorter path`);
  const pseudo = pseudoFs(path);
  if (pseudo) fail(`is on the kernel's ${pseudo} filesystem, where no socket can be created`);
  let st;
  try { st = lstatSync(path); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') fail(errorMessage(e));
  }
  if (st && !st.isSocket()) fail('the path exists and is not a socket; refusing to replace it (remove it, or choose another path)');
  // The nearest existing ancestor must be a directory (a file in the way fails later, at listen).
  let p = dirname(path);
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  if (!statSync(p).isDirectory()) fail(`${p} is not a directory`);
}

/** --cgroup: a cgroup v2 directory. */
export function checkCgroup(path: string): void {
  let type: number;
  try { type = statfsSync(path).type; } catch (e) {
    throw new KernwayError('KW_BAD_CGROUP', `--cgroup ${path}: ${errorMessage(e)}`, { path });
  }
  if (type !== FS_MAGIC.cgroup2 || !statSync(path).isDirectory()) {
    throw new KernwayError('KW_BAD_CGROUP', `--cgroup ${path} is not a cgroup v2 directory (see the cgroup2 mount in /proc/mounts)`, { path });
  }
}

/** --bpffs: a folder on a bpf filesystem, or one that can be created under an existing bpffs folder. */
export function checkBpffs(path: string): void {
  let at: { type: number; at: string };
  try { at = fsTypeOf(path); } catch (e) {
    throw new KernwayError('KW_BAD_BPFFS', `--bpffs ${path}: ${errorMessage(e)}`, { path });
  }
  if (at.type !== FS_MAGIC.bpf) {
    throw new KernwayError('KW_BAD_BPFFS',
      `--bpffs ${path}: ${at.at === path ? 'is' : `would be created under ${at.at}, which is`} not on a bpf filesystem; ` +
      'give a folder under the bpffs mount (e.g. /sys/fs/bpf/kernway)', { path });
  }
  if (at.at === path && !statSync(path).isDirectory()) {
    throw new KernwayError('KW_BAD_BPFFS', `--bpffs ${path} is a pin, not a folder`, { path });
  }
}

/** Creates the --bpffs folder (its missing parents lie on bpffs: checked by checkBpffs). */
export function ensureBpffsDir(path: string): void {
  checkBpffs(path);
  try { mkdirSync(path, { recursive: true }); } catch (e) {
    throw new KernwayError('KW_BAD_BPFFS', `--bpffs ${path}: cannot create it: ${errorMessage(e)}`, { path });
  }
}

/** Every check of the agent's paths, in the order a user would fix them. */
export async function preflight(o: Readonly<AgentOptions>): Promise<void> {
  if (o.standalone !== undefined) checkManifestDir(o.standalone);
  // KW_KUBE_CONFIG before anything is touched; client-node is loaded only when it is used.
  else (await import('../sources/kube-config.js')).loadKubeConfig(o.kubeconfig);
  checkAdminSocketPath(o.adminSocket);
  checkCgroup(o.cgroup);
  checkBpffs(o.bpffs);
  if (o.objectPath !== undefined && !existsSync(o.objectPath)) {
    throw new KernwayError('KW_BPF_OBJECT', `BPF object ${o.objectPath} does not exist (run \`make bpf\`)`, { path: o.objectPath });
  }
}
