/**
 * Every benchmark mode, set up for real in its own lab: a request from the client pod
 * reaches the server pod through the mode's path (and the mode's own counters show it
 * went that way), then closing the mode leaves nothing behind: no process, namespace,
 * cgroup or pin, and the machine's own iptables as they were.
 *
 * The ebpf and waypoint modes run `kernway agent` / `kernway waypoint` from dist/
 * (make build).
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KERNWAY_MAIN } from '../fixtures/cli.js';
import { createLogger } from '../../common/log.js';
import { processesIn } from '../../lab/cgroup.js';
import { pidAlive, run } from '../../lab/system.js';
import { MODES, modeDef, type ModeInstance, type ModeName } from '../../bench/modes.js';
import { benchServices, TARGET_PORTS } from '../../bench/services.js';
import { workload } from '../../bench/workloads.js';
import { sidecarIptables, sidecarNginxConf, sidecarPorts } from '../../bench/sidecar.js';

const GET = `
fetch(process.argv[1]).then(async (r) => console.log(r.status + ' ' + (await r.text()).trim()), (e) => { console.error(String(e.cause ?? e)); process.exit(3); });
`;

async function rootIptables(): Promise<string> {
  return (await run('iptables-save', [])).stdout.replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, '');
}

async function netnsNames(): Promise<string[]> {
  return (await run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
}

describe('sidecar rules and proxy configuration', () => {
  it('lets the proxy\'s own uid through before redirecting, one REDIRECT per Service port', () => {
    const ports = sidecarPorts(['http', 'sockperf']);
    const lines = sidecarIptables(ports).split('\n');
    const out = lines.filter((l) => l.startsWith('-A ISTIO_OUTPUT '));
    const uidReturn = out.indexOf('-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN');
    expect(uidReturn).toBeGreaterThanOrEqual(0);
    expect(out.indexOf('-A ISTIO_OUTPUT -j ISTIO_REDIRECT')).toBeGreaterThan(uidReturn);
    expect(lines).toContain('-A OUTPUT -p tcp -j ISTIO_OUTPUT');
    expect(lines).toContain('-A PREROUTING -p tcp -j ISTIO_INBOUND');
    expect(lines).toContain(`-A ISTIO_REDIRECT -d 10.96.0.10/32 -p tcp --dport ${TARGET_PORTS.http} -j REDIRECT --to-ports ${ports[0]!.outbound}`);
    expect(lines).toContain(`-A ISTIO_IN_REDIRECT -p tcp --dport ${TARGET_PORTS.sockperf} -j REDIRECT --to-ports ${ports[1]!.inbound}`);
    const conf = sidecarNginxConf(ports, '10.244.0.3', '/x');
    expect(conf).toContain('load_module /usr/lib/nginx/modules/ngx_stream_module.so;');
    expect(conf).toContain(`proxy_pass 10.244.0.3:${TARGET_PORTS.sockperf};`);
    expect(conf).toContain(`upstream out_http { server 10.244.0.3:${TARGET_PORTS.http}; keepalive 256; }`);
    expect(conf).toContain('master_process off;');
  });
});

describe('benchmark modes: setup, path, teardown', () => {
  const dir = mkdtempSync(join(tmpdir(), `kernway-test-bench-${process.pid}-`));
  const log = createLogger('test-bench', 'warn');
  let rootBefore = '';
  const open: ModeInstance[] = [];

  beforeAll(async () => { rootBefore = await rootIptables(); });
  afterAll(async () => {
    for (const m of open) await m.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const name of MODES.map((m) => m.name) as ModeName[]) {
    it(`${name}: carries HTTP from the client pod to the server pod, then leaves nothing behind`, async () => {
      const env = { dir: join(dir, name), log, node: process.execPath, kernwayMain: KERNWAY_MAIN };
      const m = await modeDef(name).create(env);
      open.push(m);
      const conf = await m.configure(benchServices(10, m.server.ipv4));
      expect(conf.ms).toBeGreaterThanOrEqual(0);

      const to = m.endpoint(workload('http1'));
      expect(to.host).toBe(name === 'direct' ? m.server.ipv4 : '10.96.0.10');
      const res = await m.lab.exec(m.client, process.execPath, ['-e', GET, `http://${to.host}:${to.port}/`], { timeoutMs: 20_000 });
      expect(res.stderr).toBe('');
      expect(res.stdout.trim()).toBe('200 ok');

      const ev = JSON.stringify(await m.evidence());
      // The real kube-proxy in the lab cluster's node DNATed it to the server pod.
      if (name === 'iptables') expect(ev).toMatch(new RegExp(`"${m.server.ipv4.replace(/\./g, '\\.')}:8080":[1-9]`));
      if (name === 'sidecar') expect(ev).toMatch(/"8080":[1-9]/);
      if (name === 'ebpf') expect(ev).toMatch(/"10\.96\.0\.10:8080 -> 10\.244\.0\.3:8080":[1-9]/);
      // The Service's endpoint is the server pod, but the kernel handed its HTTP port to the
      // waypoint pod (10.244.0.4, mesh port) at connect() and wrote the PROXY header.
      if (name === 'waypoint') {
        expect(ev).toContain('"10.96.0.10:8080 -> 10.244.0.4:15019"');
        expect(ev).toMatch(/"10\.96\.0\.10:8080 -> 10\.244\.0\.3:8080":/);
        expect(ev).toMatch(/"redirected":[1-9]/);
        expect(ev).toMatch(/"headersWritten":[1-9]/);
      }

      const pids = processesIn(m.lab.cgroupPath);
      expect(pids.length).toBeGreaterThan(0);
      await m.close();
      open.splice(open.indexOf(m), 1);
      for (const pid of pids) expect(pidAlive(pid), `pid ${pid} of mode ${name}`).toBe(false);
      expect(existsSync(m.lab.cgroupPath)).toBe(false);
      expect(existsSync(m.lab.bpffsDir)).toBe(false);
      expect((await netnsNames()).filter((n) => n.startsWith(`kw-${m.lab.id}-`))).toEqual([]);
      expect(await rootIptables()).toBe(rootBefore);
      expect(readdirSync(tmpdir()).filter((n) => n.startsWith(`kernway-sidecar-${process.pid}-`))).toEqual([]);
    }, name === 'iptables' ? 240_000 : 60_000); // iptables starts a lab cluster
  }
});
