/**
 * The kernel hands HTTP ports to the waypoint (issue 13), on one lab node, real kernel,
 * real `kernway waypoint`, unmodified clients: plain curl (HTTP/1.1 and h2c) and node in
 * the client pod dial the ClusterIP; an HTTPRoute with the Service as parent applies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GRPC_ECHO, GRPC_PORT, HandoffRig, PLAIN_VIP, VIP, VIP6 } from '../../bench/handoff/rig.js';

let rig: HandoffRig;

beforeAll(async () => {
  rig = await HandoffRig.start({ tag: 'handoff' });
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

const pods = (out: string): string[] => out.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { pod: string }).pod);

describe('hand-off: pod -> ClusterIP (HTTP port) -> kernel redirect -> waypoint -> backend', () => {
  it('HTTP/1.1: the header match of the HTTPRoute sends x-canary to v2; the access log names the client pod and the ClusterIP', async () => {
    const r = await rig.curl(['-H', 'x-canary: yes', `http://${VIP}/a`, `http://${VIP}/b`, `http://${VIP}/c`].flatMap((a) => (a.startsWith('http') ? [a, '-w', '\n'] : [a])));
    expect(r.code, r.err).toBe(0);
    expect(pods(r.out)).toEqual(['v2', 'v2', 'v2']);
    await rig.until(async () => rig.waypointOut.includes('"path":"/c"'), 'access log line');
    const line = rig.waypointOut.split('\n').find((l) => l.includes('"path":"/c"'))!;
    expect(line).toContain(`"sourceAddress":"${rig.client.ipv4}"`);
    expect(line).toContain('front/client');
    expect(line).toContain('shop/web:80');
  });

  it('HTTP/1.1: the weighted split holds (80/20 within ±10 points over 200 requests)', async () => {
    const urls: string[] = [];
    for (let i = 0; i < 200; i++) urls.push(`http://${VIP}/w${i}`, '-w', '\n');
    const r = await rig.curl(urls);
    expect(r.code, r.err).toBe(0);
    const got = pods(r.out);
    expect(got).toHaveLength(200);
    const v1 = got.filter((p) => p === 'v1').length / got.length;
    expect(v1).toBeGreaterThan(0.7);
    expect(v1).toBeLessThan(0.9);
  });

  it('h2c (prior knowledge) and IPv6 ClusterIP go through the waypoint too', async () => {
    const h2 = await rig.curl(['--http2-prior-knowledge', '-H', 'x-canary: yes', `http://${VIP}/h2`, '-w', '\n%{http_version}']);
    expect(h2.code, h2.err).toBe(0);
    expect(h2.out).toContain('"pod":"v2"');
    expect(h2.out.trim().endsWith('2')).toBe(true);
    const v6 = await rig.curl(['-H', 'x-canary: yes', `http://[${VIP6}]/v6`]);
    expect(v6.code, v6.err).toBe(0);
    expect(v6.out).toContain('"pod":"v2"');
  });

  it('gRPC (an unmodified grpc-js client, h2c): the HTTPRoute on the gRPC port applies: header match, 80/20 within ±10 points over 200 calls on one connection; metrics and access log name the source workload', async () => {
    const call = async (n: number, ...meta: string[]): Promise<{ answered: Record<string, number>; errors: Record<string, number> }> => {
      const r = await rig.lab.exec(rig.client, process.execPath, [GRPC_ECHO, 'call', `${VIP}:${GRPC_PORT}`, String(n), ...meta], { timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { answered: Record<string, number>; errors: Record<string, number> };
    };
    const redirected = rig.wpSync.stats().redirected;
    expect(await call(5, 'x-canary=yes')).toEqual({ answered: { v2: 5 }, errors: {} });
    const split = await call(200);
    expect(split.errors).toEqual({});
    expect((split.answered.v1 ?? 0) + (split.answered.v2 ?? 0)).toBe(200);
    expect(split.answered.v1 ?? 0).toBeGreaterThanOrEqual(140); // 80 % ± 10 points
    expect(split.answered.v1 ?? 0).toBeLessThanOrEqual(180);
    expect(rig.wpSync.stats().redirected).toBe(redirected + 2); // one HTTP/2 connection per client, through the kernel redirect
    await rig.until(async () => rig.waypointOut.includes('/kernway.test.Echo/Say'), 'gRPC access log line');
    const line = rig.waypointOut.split('\n').find((l) => l.includes('/kernway.test.Echo/Say'))!;
    expect(line).toContain(`"sourceAddress":"${rig.client.ipv4}"`);
    expect(line).toContain('front/client');
    expect(line).toContain(`shop/web:${GRPC_PORT}`);
    const m = await rig.lab.exec(rig.wp, 'curl', ['-s', 'http://127.0.0.1:15020/metrics']);
    const lines = m.stdout.split('\n').filter((l) => l.startsWith('kernway_waypoint_requests_total{') && l.includes('grpc-canary'));
    expect(lines.join('\n')).toMatch(/source_workload="front\/client/);
    const total = lines.filter((l) => /source_workload="front\/client/.test(l)).reduce((a, l) => a + Number(l.split(' ').pop()), 0);
    expect(total).toBeGreaterThanOrEqual(205);
  });

  it('getpeername() shows the ClusterIP, not the waypoint pod', async () => {
    const script = `const s=require('net').connect(80,'${VIP}',()=>{console.log(s.remoteAddress+':'+s.remotePort);s.write('GET / HTTP/1.1\\r\\nhost: x\\r\\nx-canary: yes\\r\\n\\r\\n')});let b='';s.on('data',d=>{b+=d;if(b.includes('}')){console.log(b.includes('"pod":"v2"')||b);s.destroy()}})`;
    const r = await rig.lab.exec(rig.client, process.execPath, ['-e', script], { timeoutMs: 10_000 });
    expect(r.stdout.trim().split('\n'), r.stderr).toEqual([`${VIP}:80`, 'true']);
  });

  it('the non-HTTP port of the same Service and a Service of an unlabelled namespace stay L4 (no header reaches them)', async () => {
    const script = `const s=require('net').connect(9000,'${VIP}',()=>s.write('hello\\n'));let b='';s.on('data',d=>{b+=d;if(b.split('\\n').length>2){console.log(JSON.stringify(b));s.destroy()}})`;
    const r = await rig.lab.exec(rig.client, process.execPath, ['-e', script], { timeoutMs: 10_000 });
    const text = JSON.parse(r.stdout.trim()) as string;
    expect(text).toMatch(/^(v1|v2)\n\1 hello\n$/);
    const plain = await rig.curl(['-H', 'x-canary: yes', `http://${PLAIN_VIP}/p`]);
    expect(plain.code, plain.err).toBe(0);
    expect(plain.out).toContain('"pod":"v1"'); // the only endpoint: the canary route is not applied
  });

  it('a direct connect() to the mesh port (a forged PROXY header) is refused with EPERM and reaches nothing', async () => {
    const before = rig.wpSync.stats().meshDenied;
    const script = `const s=require('net').connect(15019,'${rig.wp.ipv4}',()=>console.log('connected'));s.on('error',e=>console.log(e.code))`;
    const r = await rig.lab.exec(rig.client, process.execPath, ['-e', script], { timeoutMs: 10_000 });
    expect(r.stdout.trim()).toBe('EPERM');
    expect(rig.wpSync.stats().meshDenied).toBe(before + 1);
  });

  it('a PROXY header forged from outside the kernway cgroup (no connect() guard) naming a pod or a Service not bound to the waypoint is refused by the waypoint', async () => {
    const forge = (dst: string, port: number): string => `const ip=s=>Buffer.from(s.split('.').map(Number));
const h=Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a','hex'),Buffer.from([0x21,0x11,0,12]),ip('${rig.v2.ipv4}'),ip('${dst}'),Buffer.from([0x30,0x39,${port >> 8},${port & 255}])]);
const s=require('net').connect(15019,'${rig.wp.ipv4}',()=>s.write(Buffer.concat([h,Buffer.from('GET /forged HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n')])));
let b='';s.on('data',d=>{b+=d;if(b.includes('\\r\\n')){console.log(b.split('\\r\\n')[0]);s.destroy()}});s.on('error',e=>console.log(e.code))`;
    for (const [dst, port] of [[rig.v1.ipv4, 8080], [PLAIN_VIP, 80]] as const) {
      const r = await rig.lab.exec(rig.client, process.execPath, ['-e', forge(dst, port)], { cgroup: false, timeoutMs: 10_000 });
      expect(r.stdout.trim(), r.stderr).toBe('HTTP/1.1 403 Forbidden');
    }
    expect(rig.waypointOut).not.toContain('"path":"/forged","protocol":"HTTP/1.1","status":200');
  });

  it("the waypoint's own pod is not redirected (known by its network namespace): it reaches the backends at L4 and its own mesh port", async () => {
    const exemptBefore = rig.wpSync.stats().exempt;
    const urls: string[] = [];
    for (let i = 0; i < 30; i++) urls.push(`http://${VIP}/self${i}`, '-w', '\n');
    const r = await rig.lab.exec(rig.wp, 'curl', ['-s', '--max-time', '5', '-H', 'x-canary: yes', ...urls], { timeoutMs: 15_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(pods(r.stdout)).toHaveLength(30); // answered by a backend, not through the waypoint (no access log line below)
    expect(rig.wpSync.stats().exempt).toBeGreaterThan(exemptBefore);
    expect(rig.waypointOut).not.toContain('"path":"/self0"');
    const direct = await rig.lab.exec(rig.wp, process.execPath, ['-e', `const s=require('net').connect(15019,'${rig.wp.ipv4}',()=>{console.log('connected');s.destroy()});s.on('error',e=>console.log(e.code))`], { timeoutMs: 10_000 });
    expect(direct.stdout.trim()).toBe('connected');
  });

  it('a datapath restart (the agent restarting) while HTTP flows through the waypoint: no failed request', async () => {
    const script = `const http=require('http');let ok=0,fail=0,errs={};const end=Date.now()+5000;
(async()=>{while(Date.now()<end){await new Promise(r=>{const q=http.get({host:'${VIP}',port:80,path:'/r',agent:false,headers:{'x-canary':'yes'}},res=>{let b='';res.on('data',d=>b+=d);res.on('end',()=>{if(b.includes('"pod":"v2"'))ok++;else{fail++;errs[res.statusCode]=(errs[res.statusCode]||0)+1}r()})});q.on('error',e=>{fail++;errs[e.code]=(errs[e.code]||0)+1;r()})})}console.log(JSON.stringify({ok,fail,errs}))})()`;
    const load = rig.lab.exec(rig.client, process.execPath, ['-e', script], { timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 1000)); // the subject: traffic before, during and after the restart
    await rig.restartDatapath();
    const res = JSON.parse((await load).stdout) as { ok: number; fail: number; errs: Record<string, number> };
    expect(res.fail, JSON.stringify(res.errs)).toBe(0);
    expect(res.ok).toBeGreaterThan(20);
  });

  it('the counters: connections redirected and headers written', () => {
    const s = rig.wpSync.stats(); // kw_wp_stats is pinned: the counts survive the restart above
    // One connection per curl run (it reuses it for every URL), one per node client.
    expect(s.redirected).toBeGreaterThanOrEqual(5);
    expect(s.headersWritten).toBe(s.redirected);
    expect(s.headerFailed).toBe(0);
  });

  it('no ready waypoint pod: connect() fails at once with ECONNREFUSED (counted); when it comes back, new connections use it', async () => {
    const refusedBefore = rig.wpSync.stats().refused;
    rig.apply(rig.objects(false));
    const r = await rig.curl([`http://${VIP}/down`]);
    expect(r.code).toBe(7); // curl: failed to connect
    expect(r.ms).toBeLessThan(2000);
    expect(rig.wpSync.stats().refused).toBe(refusedBefore + 1);
    expect(rig.wpSync.frontends.find((f) => f.frontend === `${VIP}:80`)?.reason).toMatch(/no ready/);
    rig.apply(rig.objects(true));
    const back = await rig.curl(['-H', 'x-canary: yes', `http://${VIP}/back`]);
    expect(back.code, back.err).toBe(0);
    expect(back.out).toContain('"pod":"v2"');
  });
});
