/**
 * Certificates and kubeconfigs of one lab cluster, made with openssl in the run's folder:
 * a CA, the API server's serving certificate, the ServiceAccount signing key, and one
 * client certificate (ECDSA P-256) per component: admin (system:masters),
 * kube-controller-manager, kube-scheduler, kube-proxy and each node's kubelet
 * (system:node:<name> in system:nodes).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../system.js';

export interface Identity { name: string; cn: string; org?: string }

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function makeCa(dir: string): Promise<void> {
  await run('openssl', ['req', '-x509', ...EC, '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt'), '-days', '3650', '-subj', '/CN=kernway-lab-ca']);
}

async function makeLeaf(dir: string, name: string, subject: string, ext: string[]): Promise<void> {
  await run('openssl', [
    'req', '-x509', ...EC, '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'),
    '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`), '-days', '365', '-subj', subject,
    '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment', ...ext.flatMap((e) => ['-addext', e]),
  ]);
}

/** Writes ca, apiserver, sa (.key, .pub) and one client pair per identity into dir. */
export async function makePki(dir: string, apiserverSans: string[], identities: Identity[]): Promise<void> {
  await makeCa(dir);
  const san = 'subjectAltName=' + apiserverSans.map((s) => (/^[\d.]+$|:/.test(s) ? `IP:${s}` : `DNS:${s}`)).join(',');
  await Promise.all([
    makeLeaf(dir, 'apiserver', '/CN=kube-apiserver', ['extendedKeyUsage=serverAuth', san]),
    run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', join(dir, 'sa.key')])
      .then(() => run('openssl', ['pkey', '-in', join(dir, 'sa.key'), '-pubout', '-out', join(dir, 'sa.pub')])),
    ...identities.map((id) => makeLeaf(dir, id.name, `${id.org ? `/O=${id.org}` : ''}/CN=${id.cn}`, ['extendedKeyUsage=clientAuth'])),
  ]);
}

/** A kubeconfig with inline certificate data. */
export function writeKubeconfig(dir: string, identity: string, server: string, path: string): void {
  const b64 = (f: string): string => readFileSync(join(dir, f)).toString('base64');
  writeFileSync(path, [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: lab',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64('ca.crt')}`,
    'users:',
    `- name: ${identity}`,
    '  user:',
    `    client-certificate-data: ${b64(`${identity}.crt`)}`,
    `    client-key-data: ${b64(`${identity}.key`)}`,
    'contexts:',
    '- name: lab',
    '  context:',
    '    cluster: lab',
    `    user: ${identity}`,
    'current-context: lab',
    '',
  ].join('\n'), { mode: 0o600 });
}
