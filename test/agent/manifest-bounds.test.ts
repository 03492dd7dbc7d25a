/**
 * Issue 19 cases 5 and 8, with real agents in the real kernel: big or hostile manifests
 * cost bounded work and never stop the agent answering health probes or SIGTERM; a
 * watched directory that disappears is reported (problem, /readyz, metric), its last
 * state stays in force, and it is picked up again when it comes back.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { Lab } from '../../lab/index.js';
import { Agent } from '../../agent/agent.js';
import { validateAgentOptions } from '../../agent/options.js';
import { uninstallAgent } from '../../agent/uninstall.js';
import { parseManifestText } from '../../sources/manifest-parse.js';
import { serviceObject, sliceObject, writeManifest } from '../../agent/demo/manifests.js';
import { adminRequest } from '../../agent/admin/client.js';
import { startAgentProcess } from '../fixtures/cli.js';

let lab: Lab;
let root: string;
const children: ChildProcess[] = [];

async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A YAML document with one mapping of `n` keys (what made the old parser quadratic). */
function bigMapping(n: number, dupAt?: number): string {
  const lines = ['apiVersion: v1', 'kind: ConfigMap', 'metadata: {name: big}', 'data:'];
  for (let i = 0; i < n; i++) lines.push(`  k${i === dupAt ? 0 : i}: "v${i}"`);
  return lines.join('\n') + '\n';
}

function web(ip: string) {
  return [
    serviceObject({ name: 'web', clusterIPs: [ip], ports: [{ port: 80, targetPort: 8080 }] }),
    sliceObject({ name: 'web-1', service: 'web', ports: [{ port: 8080 }], endpoints: [{ ip: '10.244.0.5', nodeName: 'node-a' }] }),
  ];
}

beforeAll(async () => {
  lab = await Lab.create({ tag: 'hbound' });
  root = mkdtempSync(join(tmpdir(), 'kernway-bounds-test-'));
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const c of children) if (c.exitCode === null && c.signalCode === null) await new Promise((r) => c.once('exit', r));
  for (const [d, cg] of [['proc', lab.cgroupPath], ['inproc', join(lab.cgroupPath, 'node')]] as const) {
    try { uninstallAgent(join(lab.bpffsDir, d), cg); } catch { /* the lab removes it */ }
  }
  await lab?.destroy();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('YAML parsing is linear and refuses what is too big (case 5)', () => {
  it('a mapping of 40,000 keys parses; a duplicate key is still refused, with its line', () => {
    const r = parseManifestText('big.yaml', bigMapping(40_000));
    expect(r.problems).toEqual([]);
    expect(Object.keys((r.documents[0]!.object as unknown as { data: object }).data).length).toBe(40_000);
    const d = parseManifestText('dup.yaml', bigMapping(40_000, 39_999));
    expect(d.problems[0]!.message).toMatch(/line 40004, column 3 \(document 0\).*"k0" appears more than once/);
  });

  it('a document over the object limit is refused before conversion; the others of the file are read', () => {
    const r = parseManifestText('x.yaml', `${bigMapping(10)}---\n${bigMapping(2000)}`, { fileBytes: 1 << 20, objectBytes: 10_000, parseBudgetMs: 5000 });
    expect(r.problems).toMatchObject([{ code: 'KW_MANIFEST_TOO_LARGE', message: expect.stringMatching(/^document 1: \d+ bytes, over the limit of 10000 bytes per object/) }]);
    expect(r.documents.length).toBe(1);
  });
});

describe('an agent fed big and hostile files keeps answering (case 5)', () => {
  it('health probes answered and SIGTERM obeyed while big files are parsed; a file over the limit refused unread', async () => {
    const dir = join(root, 'proc-manifests');
    mkdirSync(dir);
    writeManifest(dir, 'web.yaml', web('10.96.0.10'));
    const socket = join(root, 'proc.sock');
    const a = await startAgentProcess(['--standalone', dir, '--node-name', 'node-a', '--cgroup', lab.cgroupPath,
      '--bpffs', join(lab.bpffsDir, 'proc')], socket);
    children.push(a.child);
    // Written aside and renamed in, so that the agent never reads half a file.
    const put = (name: string, text: string | Buffer) => { writeFileSync(join(root, name), text); renameSync(join(root, name), join(dir, name)); };
    // Over the file limit (8 MiB): refused without being read.
    put('huge.yaml', Buffer.alloc(9 << 20, '# padding\n'));
    // A 2.5 MB mapping (the old parser: minutes) and a FIFO named like a manifest.
    put('big.yaml', bigMapping(120_000));
    execFileSync('mkfifo', [join(dir, 'pipe.yaml')]);
    const probes: number[] = [];
    let slowest = 0;
    const status = await until('both files judged', async () => {
      const t0 = Date.now();
      const r = await fetch(`${a.metrics}/healthz`, { signal: AbortSignal.timeout(2000) });
      slowest = Math.max(slowest, Date.now() - t0);
      probes.push(r.status);
      const s = await adminRequest<{ problems: Array<{ code: string; file: string }> }>(socket, '/v1/status');
      return s.problems.some((p) => p.file.endsWith('huge.yaml')) && probes.length > 3 && s.problems.length === 1 ? s : undefined;
    }, 60_000);
    expect(status.problems.find((p) => p.file.endsWith('huge.yaml'))).toMatchObject({ code: 'KW_MANIFEST_TOO_LARGE' });
    expect(probes.every((p) => p === 200)).toBe(true);
    expect(slowest).toBeLessThan(2000);
    // SIGTERM in the middle of another big parse: the agent stops at once.
    put('big2.yaml', bigMapping(150_000));
    await new Promise((r) => setTimeout(r, 50)); // let the debounce pick it up
    const t0 = Date.now();
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe('a watched directory that disappears (case 8)', () => {
  it('is reported (problem, /readyz, metric), keeps its last state, and is read again when back', async () => {
    const dir = join(root, 'inproc-manifests');
    mkdirSync(dir);
    writeManifest(dir, 'web.yaml', web('10.96.0.10'));
    const agent = new Agent(validateAgentOptions({
      standalone: dir, nodeName: 'node-a', cgroup: join(lab.cgroupPath, 'node'), bpffs: join(lab.bpffsDir, 'inproc'),
      adminSocket: join(root, 'inproc.sock'), metricsAddress: '127.0.0.1:0', debounceMs: 10,
    }), createLogger('test-agent', 'silent'));
    await agent.start();
    try {
      const base = `http://127.0.0.1:${agent.metricsAddress()!.port}`;
      const present = async () => Number(/^kernway_manifest_directory_present (\d+)$/m.exec(await (await fetch(`${base}/metrics`)).text())?.[1]);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect(await present()).toBe(1);

      rmSync(dir, { recursive: true });
      const p = await until('reported gone', () => agent.status().problems.find((x) => x.code === 'KW_MANIFEST_DIR_GONE'));
      expect(p.file).toBe(dir);
      expect((await fetch(`${base}/readyz`)).status).toBe(503);
      expect(await present()).toBe(0);
      expect(agent.services().map((s) => s.frontend)).toEqual(['10.96.0.10:80/TCP']); // the last state stays

      // Back, with other content (made aside and renamed in, as a ConfigMap volume swaps).
      const aside = join(root, 'aside');
      mkdirSync(aside);
      writeManifest(aside, 'web.yaml', web('10.96.0.11'));
      renameSync(aside, dir);
      await until('picked up again', () => agent.services().some((s) => s.frontend === '10.96.0.11:80/TCP') && agent.status().problems.length === 0);
      expect(agent.services().map((s) => s.frontend)).toEqual(['10.96.0.11:80/TCP']);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect(await present()).toBe(1);
      // And watched again.
      writeManifest(dir, 'web.yaml', web('10.96.0.12'));
      await until('changes seen again', () => agent.services().some((s) => s.frontend === '10.96.0.12:80/TCP'));
    } finally {
      await agent.drain();
    }
  });
});
