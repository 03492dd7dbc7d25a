/** Where the lab finds the Kubernetes binaries built by scripts/build-kube.sh. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KernwayError } from '../../common/errors.js';

export const KUBE_VERSION = '1.20.2';
export const KUBE_BINARIES = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kube-proxy', 'kubectl', 'etcd'] as const;

/** $KERNWAY_KUBE_DIR/bin, default /var/cache/kernway/kube-1.20.2/bin; checked once. */
export function kubeBinDir(): string {
  const dir = join(process.env.KERNWAY_KUBE_DIR ?? `/var/cache/kernway/kube-${KUBE_VERSION}`, 'bin');
  const missing = KUBE_BINARIES.filter((b) => !existsSync(join(dir, b)));
  if (missing.length) {
    throw new KernwayError('KW_LAB_KUBE_MISSING', `the lab cluster needs Kubernetes ${KUBE_VERSION} in ${dir} (missing: ${missing.join(', ')}); build it once with scripts/build-kube.sh (make kube, ~6.5 min)`, { dir, missing });
  }
  return dir;
}

export function kubeBin(name: (typeof KUBE_BINARIES)[number]): string {
  return join(kubeBinDir(), name);
}
