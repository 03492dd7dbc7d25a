/**
 * deploy/monitoring against a real Prometheus (Debian's `prometheus`, started here on
 * loopback with a storage folder of its own): it scrapes a running agent (real kernel,
 * lab pods talking through a ClusterIP) and a running waypoint while traffic flows, and
 * PromQL over its HTTP API returns the L4 bytes between the two workloads that talked and
 * the requests by route. Every PromQL expression of the dashboards and alert rules runs
 * without error, the rules evaluate healthy, and `promtool test rules` passes (and fails
 * when a threshold is changed: the tests can see a wrong rule).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { projectRoot } from '../../common/version.js';
import { Lab, type Pod } from '../../lab/index.js';
import { Agent } from '../../agent/agent.js';
import { validateAgentOptions } from '../../agent/options.js';
import { uninstall } from '../../agent/datapath/sock-lb.js';
import { serviceObject, sliceObject, writeManifest } from '../../agent/demo/manifests.js';
import { Server, runClient } from '../sockmap/harness.js';
import { cartRoutesManifests, meshRequest, startRig, type Reply, type Rig } from '../waypoint/fixtures/rig.js';

const MON = join(projectRoot(), 'deploy', 'monitoring');
const RULES = join(MON, 'rules', 'kernway-alerts.yaml');
const RULE_TESTS = join(MON, 'rules', 'kernway-alerts.test.yaml');
const DASHBOARDS = readdirSync(join(MON, 'dashboards')).filter((f) => f.endsWith('.json')).map((f) => join(MON, 'dashboards', f));
const NODE = 'node-a';
const VIP = '10.96.0.40';
const OCTET = 98;

let lab: Lab;
let client: Pod, backend: Pod;
let root: string;
let bpffs: string;
let server: Server | undefined;
let agent: Agent | undefined;
let rig: Rig | undefined;
let prom: ChildProcess | undefined;
let promUrl = '';
let promLog = '';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 250)); // polling Prometheus, which scrapes every second
  }
  const diag = JSON.stringify({ age: (await query('time() - timestamp(up)')).data?.result, samples: (await query('scrape_samples_scraped')).data?.result, up: (await query('count_over_time(up[1m])')).data?.result });
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}\n${diag}\nprometheus log tail:\n${promLog.slice(-2000)}`);
}

interface PromResult { status: string; error?: string; data: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } }

async function query(expr: string): Promise<PromResult> {
  const r = await fetch(`${promUrl}/api/v1/query`, { method: 'POST', body: new URLSearchParams({ query: expr }) });
  return (await r.json()) as PromResult;
}

async function scalarOf(expr: string): Promise<number | undefined> {
  const r = await query(expr);
  if (r.status !== 'success') throw new Error(`${expr}: ${r.error}`);
  const v = r.data.result[0]?.value[1];
  return v === undefined ? undefined : Number(v);
}

function podObject(p: Pod, app: string) {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: `${app}-6c8d7f9b4-${p.name}`, namespace: 'shop', labels: { app }, annotations: { 'kernway.io/sockmap': 'on' } },
    spec: { nodeName: NODE, containers: [{ name: 'c', image: 'x' }] },
    status: { phase: 'Running', podIP: p.ipv4, podIPs: [{ ip: p.ipv4 }] },
  };
}

beforeAll(async () => {
  for (const bin of ['prometheus', 'promtool']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) throw new Error(`${bin} is not installed: run scripts/install-deps.sh (Debian package prometheus)`);
  }
  root = mkdtempSync(join(tmpdir(), 'kernway-prometheus-'));
  // The agent, on lab pods: a client and a backend behind a ClusterIP.
  lab = await Lab.create({ tag: 'prom' });
  client = await lab.addPod('c');
  backend = await lab.addPod('b');
  const dir = join(root, 'manifests');
  mkdirSync(dir);
  bpffs = join(lab.bpffsDir, 'agent');
  writeManifest(dir, 'objects.yaml', [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } },
    podObject(client, 'shopper'), podObject(backend, 'web'),
    serviceObject({ name: 'web', namespace: 'shop', clusterIPs: [VIP], ports: [{ name: 'http', port: 80, targetPort: 8080 }] }),
    sliceObject({ name: 'web-1', namespace: 'shop', service: 'web', ports: [{ name: 'http', port: 8080 }], endpoints: [{ ip: backend.ipv4, nodeName: NODE }] }),
  ]);
  agent = new Agent(validateAgentOptions({
    standalone: dir, nodeName: NODE, cgroup: lab.cgroupPath, bpffs, adminSocket: join(root, 'admin.sock'), metricsAddress: '127.0.0.1:0', debounceMs: 10,
  }), createLogger('test-agent', 'silent'));
  await agent.start();
  server = await Server.start(lab, backend, '::', [8080]);
  // The waypoint.
  rig = await startRig({ octet: OCTET, namespace: 'shop', backends: { cart: 1 }, manifests: (a) => cartRoutesManifests(a) });
  // Prometheus, scraping both every second and evaluating the alert rules.
  const port = await freePort();
  const am = agent.metricsAddress()!;
  const wm = { host: rig.a.gateway, port: rig.waypoint.adminPort! };
  const config = {
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: [RULES],
    scrape_configs: [
      { job_name: 'kernway-agent', static_configs: [{ targets: [`${am.host}:${am.port}`] }] },
      { job_name: 'kernway-waypoint', static_configs: [{ targets: [`${wm.host}:${wm.port}`] }] },
    ],
  };
  writeFileSync(join(root, 'prometheus.yml'), JSON.stringify(config));
  promUrl = `http://127.0.0.1:${port}`;
  prom = spawn('prometheus', [`--config.file=${join(root, 'prometheus.yml')}`, `--storage.tsdb.path=${join(root, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`,
    '--storage.tsdb.retention.time=1h', '--log.level=warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  prom.stdout!.on('data', (d: Buffer) => { promLog += d.toString(); });
  prom.stderr!.on('data', (d: Buffer) => { promLog += d.toString(); });
  await until('prometheus to be ready', async () => ((await fetch(`${promUrl}/-/ready`)).ok ? true : undefined));
}, 120_000);

afterAll(async () => {
  if (prom && prom.exitCode === null) {
    const exited = new Promise((r) => prom!.once('exit', r));
    prom.kill('SIGTERM');
    await exited;
  }
  await rig?.close();
  await agent?.drain().catch(() => undefined);
  await server?.stop();
  try { uninstall(bpffs); } catch { /* the lab removes the folder anyway */ }
  await lab?.destroy();
  if (root) rmSync(root, { recursive: true, force: true });
});

const L4 = 'reporter="source", source_workload="shopper", source_workload_namespace="shop", destination_workload="web", destination_workload_namespace="shop", destination_service="web.shop.svc.cluster.local"';
const mesh = (path: string): Promise<Reply> => meshRequest(rig!, rig!.a.caller(0), path);

describe('a real Prometheus scraping the agent and the waypoint', () => {
  it('finds the L4 bytes between the two workloads that talked, and the requests by route, while traffic flows', async () => {
    await until('both targets up', async () => ((await scalarOf('sum(up)')) === 2 ? true : undefined));
    // Traffic in rounds, scraped as it goes.
    let conns = 0;
    let requests = 0;
    let l4Sent = 0;
    for (let round = 0; round < 3; round++) {
      const [res] = await Promise.all([
        runClient(lab, client, { targets: [{ host: VIP, port: 80 }], conns: 10, concurrency: 5, min: 1000, max: 64 << 10 }),
        (async () => { for (let i = 0; i < 5; i++) { expect((await mesh(`/items/${i}`)).status).toBe(200); requests++; } })(),
      ]);
      expect(res.failures).toEqual([]);
      conns += res.ok;
      l4Sent += res.sent;
      // The series is new in round 0 (rate() counts from its first sample on); from round 1 on,
      // the rate over a window that saw traffic is not zero.
      if (round > 0) await until('a non-zero L4 rate', async () => ((await scalarOf(`sum(rate(kernway_tcp_connections_opened_total{${L4}}[1m]))`)) ?? 0) > 0 ? true : undefined);
      else await until('the L4 series', async () => ((await scalarOf(`sum(kernway_tcp_connections_opened_total{${L4}})`)) ?? 0) > 0 ? true : undefined);
    }
    // The last scrape after the traffic has all of it.
    const closed = await until(`${conns} closed connections in Prometheus`, async () => {
      const v = await scalarOf(`sum(kernway_tcp_connections_closed_total{${L4}})`);
      return v === conns ? v : undefined;
    });
    expect(closed).toBe(30);
    const up = (await scalarOf(`sum(kernway_tcp_received_bytes_total{${L4}})`))!;
    const down = (await scalarOf(`sum(kernway_tcp_sent_bytes_total{${L4}})`))!;
    expect(up).toBeGreaterThanOrEqual(l4Sent);
    expect(up).toBeLessThanOrEqual(l4Sent + conns * 66); // the test protocol's framing, SYN and FIN
    expect(down).toBeGreaterThan(0);
    // Nothing was reported between workloads that did not talk.
    expect((await query('kernway_tcp_connections_opened_total{source_workload="web", destination_workload="shopper"}')).data.result).toEqual([]);

    const byRoute = await until('requests by route', async () => {
      const r = await query('sum by (route) (kernway_waypoint_requests_total)');
      const v = r.data.result.find((x) => x.metric.route === 'shop/cart-routes')?.value[1];
      return v !== undefined && Number(v) === requests ? Number(v) : undefined;
    });
    expect(byRoute).toBe(15);
    const bySource = await query('sum by (source_workload) (kernway_waypoint_requests_total{route="shop/cart-routes"})');
    expect(bySource.data.result.map((x) => [x.metric.source_workload, Number(x.value[1])])).toEqual([['web/web', 15]]);
  });

  it('runs every PromQL expression of the dashboards and the alert rules without error; the rules evaluate healthy', async () => {
    const exprs: Array<{ where: string; expr: string }> = [];
    for (const f of DASHBOARDS) {
      const d = JSON.parse(readFileSync(f, 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
      for (const p of d.panels) for (const t of p.targets) exprs.push({ where: `${f.split('/').pop()}: ${p.title}`, expr: t.expr });
    }
    const groups = (parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> }).groups;
    for (const g of groups) for (const r of g.rules) exprs.push({ where: `alert ${r.alert}`, expr: r.expr });
    expect(exprs.length).toBeGreaterThan(40);
    const failed: string[] = [];
    const empty: string[] = [];
    for (const { where, expr } of exprs) {
      // Grafana's variables, as "All" and a one-minute window.
      const q = expr.replaceAll('$__rate_interval', '1m').replace(/\$(instance|service)\b/g, '.*');
      const r = await query(q);
      if (r.status !== 'success') failed.push(`${where}: ${r.error}`);
      else if (r.data.result.length === 0) empty.push(where);
    }
    expect(failed).toEqual([]);
    // The panels about traffic that flowed have data (alerts are expected to be quiet).
    for (const title of ['Connections opened /s, source → destination workload', 'Bytes /s between workloads (request →, ← response)', 'Requests /s by route',
      'Latency p99 by route', 'Configuration age', 'CPU (cores)', 'BPF map fill', 'Reconcile time p50 / p99']) {
      expect(empty.filter((w) => w.endsWith(`: ${title}`)), title).toEqual([]);
    }
    const rules = await until('the rules evaluated', async () => {
      const r = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as { data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string; lastEvaluation: string }> }> } };
      const all = r.data.groups.flatMap((g) => g.rules);
      return all.length > 0 && all.every((x) => !x.lastEvaluation.startsWith('0001')) ? all : undefined;
    });
    expect(rules.length).toBe(11);
    expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.lastError}`)).toEqual([]);
    // Healthy agent and waypoint: nothing fires.
    const alerts = (await (await fetch(`${promUrl}/api/v1/alerts`)).json()) as { data: { alerts: Array<{ labels: { alertname: string }; state: string }> } };
    expect(alerts.data.alerts.filter((a) => a.state === 'firing').map((a) => a.labels.alertname)).toEqual([]);
  });
});

describe('the alert rules', () => {
  it('pass promtool check and their unit tests (firing and not firing)', () => {
    const check = spawnSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const t = spawnSync('promtool', ['test', 'rules', RULE_TESTS], { encoding: 'utf8', cwd: join(MON, 'rules') });
    expect(t.status, t.stdout + t.stderr).toBe(0);
    expect(t.stdout).toMatch(/SUCCESS/);
  });

  it('the unit tests catch a wrong rule: a changed threshold fails them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kernway-promtool-'));
    try {
      copyFileSync(RULE_TESTS, join(dir, 'kernway-alerts.test.yaml'));
      writeFileSync(join(dir, 'kernway-alerts.yaml'), readFileSync(RULES, 'utf8').replace('kernway_bpf_map_max_entries > 0.9', 'kernway_bpf_map_max_entries > 0.99'));
      const t = spawnSync('promtool', ['test', 'rules', 'kernway-alerts.test.yaml'], { encoding: 'utf8', cwd: dir });
      expect(t.status).not.toBe(0);
      expect(t.stdout + t.stderr).toMatch(/KernwayBpfMapNearlyFull/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the PrometheusRule for the Operator carries exactly the rule file\'s groups; the kustomization names files that exist', () => {
    const pr = parse(readFileSync(join(MON, 'prometheusrule.yaml'), 'utf8')) as { kind: string; spec: { groups: unknown } };
    expect(pr.kind).toBe('PrometheusRule');
    expect(pr.spec.groups).toEqual((parse(readFileSync(RULES, 'utf8')) as { groups: unknown }).groups);
    const k = parse(readFileSync(join(MON, 'kustomization.yaml'), 'utf8')) as { resources: string[]; configMapGenerator: Array<{ files: string[] }> };
    for (const f of [...k.resources, ...k.configMapGenerator.flatMap((g) => g.files)]) expect(existsSync(join(MON, f)), f).toBe(true);
    expect(k.configMapGenerator.flatMap((g) => g.files).map((f) => join(MON, f)).sort()).toEqual([...DASHBOARDS].sort());
    const pms = parseAllDocuments(readFileSync(join(MON, 'podmonitors.yaml'), 'utf8')).map((d) => d.toJS() as { kind: string; spec: { selector: { matchLabels: Record<string, string> } } });
    expect(pms.map((p) => [p.kind, p.spec.selector.matchLabels['app.kubernetes.io/name']])).toEqual([['PodMonitor', 'kernway-agent'], ['PodMonitor', 'kernway-waypoint']]);
    const uids = DASHBOARDS.map((f) => (JSON.parse(readFileSync(f, 'utf8')) as { uid: string }).uid);
    expect(new Set(uids).size).toBe(3);
  });
});
