/**
 * kubectl's conventions for finding the API server: --kubeconfig, KUBECONFIG (a list,
 * merged), ~/.kube/config, then the in-cluster configuration; nothing found (or a file
 * without a server) is KW_KUBE_CONFIG naming what was tried. And the agent's options: one
 * source, --standalone DIR or the API.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadKubeConfig } from '../../sources/kube-config.js';
import { validateAgentOptions } from '../../agent/options.js';

const dir = mkdtempSync(join(tmpdir(), 'kernway-kubeconfig-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function kubeconfig(name: string, server: string | undefined, context = 'lab'): string {
  const f = join(dir, name);
  writeFileSync(f, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': context,
    clusters: [{ name: 'c', cluster: server === undefined ? {} : { server, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'u', user: { token: 'abc' } }],
    contexts: [{ name: context, context: { cluster: 'c', user: 'u' } }],
  }));
  return f;
}

describe('loadKubeConfig', () => {
  it('--kubeconfig PATH wins over KUBECONFIG', () => {
    const a = kubeconfig('a', 'https://10.0.0.1:6443');
    const b = kubeconfig('b', 'https://10.0.0.2:6443');
    const r = loadKubeConfig(a, { KUBECONFIG: b, HOME: dir });
    expect(r).toMatchObject({ origin: 'flag', server: 'https://10.0.0.1:6443' });
  });

  it('KUBECONFIG, then ~/.kube/config, then in-cluster; nothing: KW_KUBE_CONFIG', () => {
    const b = kubeconfig('b2', 'https://10.0.0.2:6443/');
    // A missing file in the list is skipped, as kubectl does.
    expect(loadKubeConfig(undefined, { KUBECONFIG: `${join(dir, 'missing')}:${b}`, HOME: dir })).toMatchObject({ origin: 'KUBECONFIG', server: 'https://10.0.0.2:6443' });
    const home = join(dir, 'home');
    mkdirSync(join(home, '.kube'), { recursive: true });
    expect(() => loadKubeConfig(undefined, { HOME: home })).toThrow(/no --kubeconfig, no KUBECONFIG, no ~\/.kube\/config, and not in a pod/);
    writeFileSync(join(home, '.kube', 'config'), JSON.stringify({ apiVersion: 'v1', kind: 'Config', 'current-context': 'x',
      clusters: [{ name: 'c', cluster: { server: 'https://10.0.0.3:6443' } }], users: [{ name: 'u', user: {} }], contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }] }));
    expect(loadKubeConfig(undefined, { HOME: home })).toMatchObject({ origin: 'home', server: 'https://10.0.0.3:6443' });
  });

  it('a missing file or one without a server is KW_KUBE_CONFIG', () => {
    expect(() => loadKubeConfig(join(dir, 'nope'))).toThrow(expect.objectContaining({ code: 'KW_KUBE_CONFIG', message: expect.stringContaining(`${join(dir, 'nope')} does not exist`) }));
    const f = kubeconfig('noserver', undefined);
    expect(() => loadKubeConfig(f)).toThrow(expect.objectContaining({ code: 'KW_KUBE_CONFIG' }));
  });
});

describe('agent options: one source', () => {
  const base = { nodeName: 'node-a', cgroup: '/sys/fs/cgroup', bpffs: '/sys/fs/bpf/kernway', adminSocket: '/run/kernway/admin.sock', metricsAddress: '0.0.0.0:9464' };
  it('the API by default, --kubeconfig PATH, or --standalone DIR; not both', () => {
    expect(validateAgentOptions(base).standalone).toBeUndefined();
    expect(validateAgentOptions({ ...base, kubeconfig: 'rel/kubeconfig' }).kubeconfig).toBe('rel/kubeconfig');
    expect(validateAgentOptions({ ...base, standalone: '/etc/kernway' }).standalone).toBe('/etc/kernway');
    expect(() => validateAgentOptions({ ...base, standalone: '/etc/kernway', kubeconfig: '/k' })).toThrow(/--kubeconfig.*not both --standalone DIR and --kubeconfig PATH/);
  });
});
