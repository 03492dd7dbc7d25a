/**
 * The hand-off across nodes (issue 13): three lab nodes (each its own node namespace,
 * cgroup and bpffs folder, joined by links with routes to each other's pod addresses),
 * one real `kernway agent` per node on the same standalone manifests (each with its own
 * --node-name), the client on node 0, `kernway waypoint` on node 1, the backends on node 2.
 * Plain curl in the client pod dials the ClusterIP; node 0's kernel hands the connection
 * to the waypoint pod on node 1 (plain pod-IP TCP) with the PROXY header; the waypoint
 * routes to the backends on node 2.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pod } from '../../lab/index.js';
import { PLAIN_WEB_VIP, WEB_VIP, answeredBy, curlMany, type HandoffPods } from '../../agent/demo/handoff.js';
import { NodesRig } from '../../bench/handoff/nodes.js';
import { DIRECT_PORT } from '../../bench/handoff/rig.js';

let rig: NodesRig;
let pods: HandoffPods;

beforeAll(async () => {
  rig = await NodesRig.start('handoffn');
  pods = rig.pods;
}, 240_000);

afterAll(async () => {
  await rig?.stop();
});

const labs = () => rig.labs;
const labOf = (p: Pod) => rig.labOf(p);
const status = (i: number) => rig.status(i);
const until = (what: string, f: () => Promise<boolean>) => rig.until(what, f);
const curl = (p: Pod, args: string[]) => rig.curl(p, args);
const wpFrontend = (i: number) => rig.frontend(i);

describe('hand-off across nodes: client (node 0) -> ClusterIP -> kernel redirect -> waypoint (node 1) -> backends (node 2)', () => {
  it('three nodes, each with its own agent, cgroup and bpffs folder; pod addresses by node', () => {
    expect(new Set(labs().map((l) => l.cgroupPath)).size).toBe(3);
    expect(new Set(labs().map((l) => l.bpffsDir)).size).toBe(3);
    expect([pods.client.ipv4, pods.wp.ipv4, pods.v1.ipv4]).toEqual(['10.244.0.2', '10.244.2.2', '10.244.4.2']);
  });

  it('HTTP/1.1: the header match of the HTTPRoute; the access log names the client pod on node 0 by its address', async () => {
    const r = await curl(pods.client, ['-H', 'x-canary: yes', ...curlMany(`http://${WEB_VIP}/x`, 3)]);
    expect(r.code, r.err + rig.waypointOut).toBe(0);
    expect(answeredBy(r.out)).toEqual({ 'web-v2': 3 });
    await until('access log line', async () => rig.waypointOut.includes('"path":"/x2"'));
    const line = rig.waypointOut.split('\n').find((l) => l.includes('"path":"/x2"'))!;
    expect(line).toContain(`"sourceAddress":"${pods.client.ipv4}"`);
    expect(line).toContain('"source":"demo/client');
    expect(line).toContain('"parent":"shop/web:80"');
    expect(line).toContain(`"upstream":"${pods.v2.ipv4}:8080"`);
  });

  it('HTTP/1.1: the weighted split holds (80/20 within ±12 points over 100 requests)', async () => {
    const r = await curl(pods.client, curlMany(`http://${WEB_VIP}/w`, 100));
    expect(r.code, r.err).toBe(0);
    const c = answeredBy(r.out);
    expect((c['web-v1'] ?? 0) + (c['web-v2'] ?? 0)).toBe(100);
    expect(c['web-v1']).toBeGreaterThanOrEqual(68);
    expect(c['web-v1']).toBeLessThanOrEqual(92);
  });

  it('h2c (prior knowledge) through the waypoint on the other node', async () => {
    const r = await curl(pods.client, ['--http2-prior-knowledge', '-H', 'x-canary: yes', `http://${WEB_VIP}/h2`, '-w', '\n%{http_version}']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('"pod":"web-v2"');
    expect(r.out.trim().endsWith('2')).toBe(true);
  });

  it('a Service of a namespace without the label is balanced in node 0\'s kernel to node 2 (no route applied, no access log line)', async () => {
    const r = await curl(pods.client, ['-H', 'x-canary: yes', '-H', 'connection: close', ...curlMany(`http://${PLAIN_WEB_VIP}/plain`, 20)]);
    expect(r.code, r.err).toBe(0);
    const c = answeredBy(r.out);
    expect((c['web-v1'] ?? 0) + (c['web-v2'] ?? 0)).toBe(20);
    expect(c['web-v1'] ?? 0).toBeGreaterThan(0);
    expect(rig.waypointOut).not.toContain('"path":"/plain');
  });

  it('node 0 counted the redirects and wrote a header on each (stack-only sockets: the waypoint is not a local pod)', async () => {
    const s = (await status(0)).waypoints!.stats;
    expect(s.redirected).toBeGreaterThanOrEqual(3);
    expect(s.headersWritten).toBe(s.redirected);
    expect(s.headerFailed).toBe(0);
    expect(s.hashFailed).toBe(0);
    // Node 2 redirected nothing: its pods made no connection to a ClusterIP.
    expect((await status(2)).waypoints!.stats.redirected).toBe(0);
  });

  it('a direct connect() to the remote waypoint\'s mesh port is refused with EPERM, on the client\'s node and on the backends\' node', async () => {
    const script = `const s=require('net').connect(15019,'${pods.wp.ipv4}',()=>{console.log('connected');s.destroy()});s.on('error',e=>console.log(e.code))`;
    for (const [i, p] of [[0, pods.client], [2, pods.v1]] as const) {
      const before = (await status(i)).waypoints!.stats.meshDenied;
      const r = await labOf(p).exec(p, process.execPath, ['-e', script], { timeoutMs: 20_000 });
      expect(r.stdout.trim(), `from node ${i}: ${r.stderr}`).toBe('EPERM');
      expect((await status(i)).waypoints!.stats.meshDenied).toBe(before + 1);
    }
  });

  it('the SYN guard on the waypoint\'s veth: a host that is no pod (outside every kernway cgroup) cannot open the mesh port, so its forged PROXY header never reaches the waypoint; it still reaches the waypoint\'s Gateway listener; pods still get through', async () => {
    const n1 = labs()[1]!;
    const outsider = n1.pods.get('outsider') ?? await n1.addPod('outsider', { remote: true });
    const forge = `const ip=s=>Buffer.from(s.split('.').map(Number));
const h=Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a','hex'),Buffer.from([0x21,0x11,0,12]),ip('${pods.client.ipv4}'),ip('${WEB_VIP}'),Buffer.from([0x30,0x39,0,80])]);
const s=require('net').connect({port:15019,host:'${pods.wp.ipv4}',timeout:3000},()=>{console.log('connected');s.write(Buffer.concat([h,Buffer.from('GET /forged HTTP/1.1\\r\\nhost: x\\r\\nx-canary: yes\\r\\n\\r\\n')]))});
s.on('timeout',()=>{console.log('timeout');s.destroy()});s.on('data',d=>{console.log(String(d).split('\\r\\n')[0]);s.destroy()});s.on('error',e=>console.log(e.code))`;
    const before = (await status(1)).waypoints!.stats.synDropped;
    const r = await n1.exec(outsider, process.execPath, ['-e', forge], { cgroup: false, timeoutMs: 20_000 });
    expect(r.stdout.trim(), r.stderr).toBe('timeout'); // the SYN (and its retry) dropped: no connection at all
    expect((await status(1)).waypoints!.stats.synDropped).toBeGreaterThan(before);
    expect(rig.waypointOut).not.toContain('/forged');
    // The same host reaches the waypoint pod on its Gateway listener: only the mesh port is guarded.
    const direct = await n1.exec(outsider, 'curl', ['-s', '--max-time', '5', `http://${pods.wp.ipv4}:${DIRECT_PORT}/direct`], { cgroup: false, timeoutMs: 20_000 });
    expect(direct.code, direct.stderr).toBe(0);
    expect(direct.stdout).toContain('"pod":"web-v2"');
    // Pods (here: the client on node 0, redirected by its kernel) still get through.
    const ok = await curl(pods.client, ['-H', 'x-canary: yes', `http://${WEB_VIP}/after-guard`]);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toContain('"pod":"web-v2"');
  });

  it('the waypoint\'s own outbound connections are not redirected (its network namespace is exempt on node 1): the backends answer, no access log line', async () => {
    const before = (await status(1)).waypoints!.stats.exempt;
    const r = await curl(pods.wp, ['-H', 'x-canary: yes', '-H', 'connection: close', ...curlMany(`http://${WEB_VIP}/self`, 20)]);
    expect(r.code, r.err).toBe(0);
    const c = answeredBy(r.out);
    expect((c["web-v1"] ?? 0) + (c["web-v2"] ?? 0)).toBe(20);
    expect(c['web-v1'] ?? 0).toBeGreaterThan(0); // balanced at L4 (a new connection each): the canary header match does not apply
    expect((await status(1)).waypoints!.stats.exempt).toBeGreaterThan(before);
    expect(rig.waypointOut).not.toContain('"path":"/self');
  });

  it('the agents of the client\'s and the waypoint\'s nodes restart (real processes, SIGTERM then a new one) while HTTP flows through the waypoint: no failed request', async () => {
    // A new connection per request: each one is redirected at connect() during the restarts.
    const script = `const http=require('http');let ok=0,fail=0,stop=false;const errs={};process.stdin.on('data',()=>{stop=true});process.stdin.resume();
(async()=>{while(!stop){await new Promise(r=>{const q=http.get({host:'${WEB_VIP}',port:80,path:'/restart',agent:false,headers:{'x-canary':'yes'}},res=>{let b='';res.on('data',d=>b+=d);res.on('end',()=>{if(b.includes('"pod":"web-v2"'))ok++;else{fail++;errs[res.statusCode]=(errs[res.statusCode]||0)+1}r()})});q.on('error',e=>{fail++;errs[e.code]=(errs[e.code]||0)+1;r()})})}console.log(JSON.stringify({ok,fail,errs}));process.exit(0)})()`;
    const load = labOf(pods.client).spawn(pods.client, process.execPath, ['-e', script]);
    let out = '';
    load.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const done = new Promise<void>((resolve) => load.once('exit', () => resolve()));
    try {
      await until('traffic flowing', async () => rig.waypointOut.includes('"path":"/restart"'));
      await rig.restartAgent(0);
      await rig.restartAgent(1);
      await until('node 0 still hands shop/web:80 to the waypoint', async () => (await wpFrontend(0))?.pods.includes(pods.wp.ipv4) === true);
    } finally {
      load.stdin!.write('stop\n');
      await done;
    }
    const res = JSON.parse(out) as { ok: number; fail: number; errs: Record<string, number> };
    expect(res.fail, JSON.stringify(res.errs)).toBe(0);
    expect(res.ok).toBeGreaterThan(20);
  });

  it('no ready waypoint pod: node 0 refuses at once (ECONNREFUSED, counted); when it is back, new connections use it', async () => {
    const before = (await status(0)).waypoints!.stats.refused;
    rig.apply(rig.objects(false));
    await until('node 0 without a waypoint pod', async () => (await wpFrontend(0))?.pods.length === 0);
    const r = await curl(pods.client, [`http://${WEB_VIP}/down`]);
    expect(r.code).toBe(7); // curl: failed to connect
    expect(r.ms).toBeLessThan(2000);
    expect((await status(0)).waypoints!.stats.refused).toBe(before + 1);
    rig.apply(rig.objects(true));
    await until('node 0 with the waypoint pod again', async () => (await wpFrontend(0))?.pods.includes(pods.wp.ipv4) === true);
    const back = await curl(pods.client, ['-H', 'x-canary: yes', `http://${WEB_VIP}/back`]);
    expect(back.code, back.err).toBe(0);
    expect(back.out).toContain('"pod":"web-v2"');
  });
});
