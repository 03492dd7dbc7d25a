/**
 * Issue 19 case 4: addresses validated as the API server would, in the real kernel. A
 * manifest can no longer take over loopback, the metadata address or any address outside
 * the service range inside the balanced cgroup; each refusal names file, object and field.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { Lab, type Pod } from '../../lab/index.js';
import { Agent } from '../../agent/agent.js';
import { validateAgentOptions } from '../../agent/options.js';
import { uninstallAgent } from '../../agent/uninstall.js';
import { forbiddenAddress, parseIP } from '../../k8s/ip.js';
import { parseServiceRange, inServiceRange } from '../../k8s/service-range.js';
import { serviceObject, sliceObject, writeManifest } from '../../agent/demo/manifests.js';
import { Client, startEcho, type Counts } from '../fixtures/lb-harness.js';

let lab: Lab;
let root: string;
let dir: string;
let b1: Pod;
let client: Client;
const agents: Agent[] = [];

function agent(extra: { serviceCidr?: string } = {}): Agent {
  const a = new Agent(validateAgentOptions({
    standalone: dir, nodeName: 'node-a', cgroup: lab.cgroupPath, bpffs: join(lab.bpffsDir, 'agent'),
    adminSocket: join(root, `admin-${agents.length}.sock`), metricsAddress: '127.0.0.1:0', debounceMs: 10, ...extra,
  }), createLogger('test-agent', 'silent'));
  agents.push(a);
  return a;
}

/** One Service (and its slice to b1:8080) per file, named after the file. */
function service(file: string, ip: string, port: number, endpoint?: string): void {
  writeManifest(dir, `${file}.yaml`, [
    serviceObject({ name: file, clusterIPs: [ip], ports: [{ port, targetPort: 8080 }] }),
    sliceObject({ name: `${file}-1`, service: file, ports: [{ port: 8080 }], endpoints: [{ ip: endpoint ?? b1.ipv4, nodeName: 'node-a' }] }),
  ]);
}

beforeAll(async () => {
  lab = await Lab.create({ tag: 'haddr' });
  const c = await lab.addPod('c');
  b1 = await lab.addPod('b1');
  await startEcho(lab, b1, 'b1', 8080, 5353);
  client = new Client(lab, c);
  root = mkdtempSync(join(tmpdir(), 'kernway-addr-test-'));
  dir = join(root, 'manifests');
  mkdirSync(dir);
});

afterAll(async () => {
  for (const a of agents) await a.drain().catch(() => undefined);
  client?.close();
  try { uninstallAgent(join(lab.bpffsDir, 'agent'), lab.cgroupPath); } catch { /* the lab removes the folder anyway */ }
  await lab?.destroy();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('address classes (as the API server refuses them)', () => {
  it('names each class', () => {
    const why = (s: string) => forbiddenAddress(parseIP(s)!);
    expect(why('127.0.0.1')).toMatch(/loopback/);
    expect(why('169.254.169.254')).toMatch(/link-local/);
    expect(why('0.0.0.0')).toMatch(/unspecified/);
    expect(why('224.0.0.1')).toMatch(/multicast/);
    expect(why('255.255.255.255')).toMatch(/broadcast/);
    expect(why('::1')).toMatch(/loopback/);
    expect(why('::')).toMatch(/unspecified/);
    expect(why('fe80::1')).toMatch(/link-local/);
    expect(why('ff02::1')).toMatch(/multicast/);
    expect(why('::ffff:127.0.0.1')).toMatch(/IPv4-mapped/);
    for (const ok of ['10.96.0.10', '10.244.0.5', 'fd00:10:96::1', '2001:db8::1']) expect(why(ok), ok).toBeUndefined();
  });

  it('--service-cidr: one block per family, refused when malformed', () => {
    const r = parseServiceRange('10.96.0.0/12,fd00:10:96::/112');
    expect(inServiceRange(r, '10.111.255.254')).toBe(true);
    expect(inServiceRange(r, '10.112.0.1')).toBe(false);
    expect(inServiceRange(r, 'fd00:10:96::ffff')).toBe(true);
    expect(inServiceRange(r, 'fd00:10:97::1')).toBe(false);
    for (const bad of ['10.96.0.0', '10.96.0.1/12', '10.0.0.0/8,10.96.0.0/12', 'nonsense/12', '127.0.0.0/8', '']) {
      expect(() => parseServiceRange(bad), bad).toThrow(/--service-cidr/);
    }
  });
});

describe('dangerous addresses in manifests (case 4)', () => {
  it('are refused with file, object and field; inside the cgroup loopback is not hijacked', async () => {
    service('good', '10.96.0.10', 80);
    service('hijack-loopback', '127.0.0.1', 41999);
    service('hijack-metadata', '169.254.169.254', 80);
    service('unspecified', '0.0.0.0', 80);
    service('multicast', '224.0.0.1', 80);
    service('broadcast', '255.255.255.255', 80);
    service('outside', '10.200.0.1', 80);
    service('v6-loopback', '::1', 80);
    service('to-loopback', '10.96.0.20', 80, '127.0.0.1');
    service('to-metadata', '10.96.0.21', 80, '169.254.169.254');
    const a = agent();
    await a.start();
    const problems = a.status().problems;
    const of = (file: string) => problems.find((p) => p.file.endsWith(`/${file}.yaml`));
    for (const [file, field, re] of [
      ['hijack-loopback', 'spec.clusterIPs[0]', /loopback/], ['hijack-metadata', 'spec.clusterIPs[0]', /link-local/],
      ['unspecified', 'spec.clusterIPs[0]', /unspecified/], ['multicast', 'spec.clusterIPs[0]', /multicast/],
      ['broadcast', 'spec.clusterIPs[0]', /broadcast/], ['outside', 'spec.clusterIPs[0]', /service range \(--service-cidr 10\.96\.0\.0\/12/],
      ['v6-loopback', 'spec.clusterIPs[0]', /loopback/],
    ] as const) {
      expect(of(file), file).toMatchObject({ code: 'KW_INVALID_FIELD', object: `Service default/${file}`, field });
      expect(of(file)!.message, file).toMatch(re);
    }
    expect(of('to-loopback')).toMatchObject({ object: 'EndpointSlice default/to-loopback-1', field: 'endpoints[0].addresses[0]' });
    expect(of('to-loopback')!.message).toMatch(/loopback/);
    expect(of('to-metadata')!.message).toMatch(/link-local/);
    // Only the good Service reached the kernel.
    expect(a.services().map((s) => s.frontend)).toEqual(['10.96.0.10:80/TCP']);
    const good = await client.send<Counts>({ op: 'tcp', host: '10.96.0.10', port: 80, n: 5 });
    expect(good.counts).toEqual({ b1: 5 });
    // The pod's own loopback stays its own: nothing listens there, nothing answers.
    const lo = await client.send<{ results: Array<{ code: string }> }>({ op: 'refused', host: '127.0.0.1', port: 41999, n: 1 });
    expect(lo.results[0]!.code).toBe('ECONNREFUSED');
    await a.drain();
  });

  it('--service-cidr changes the range', async () => {
    const a = agent({ serviceCidr: '10.200.0.0/16' });
    await a.start();
    expect(a.services().map((s) => s.frontend)).toEqual(['10.200.0.1:80/TCP']);
    expect(a.status().problems.find((p) => p.file.endsWith('/good.yaml'))!.message).toMatch(/--service-cidr 10\.200\.0\.0\/16/);
    const r = await client.send<Counts>({ op: 'tcp', host: '10.200.0.1', port: 80, n: 3 });
    expect(r.counts).toEqual({ b1: 3 });
    await a.drain();
  });
});
