/**
 * The hand-off with the waypoint off the client's node (a lab remote host, reached by
 * plain pod-IP TCP through the node): the client's socket is not accelerated, so it joins
 * the sockhash stack-only for its sk_msg program, which writes the PROXY header.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HandoffRig, VIP, VIP6 } from '../../bench/handoff/rig.js';

let rig: HandoffRig;

beforeAll(async () => {
  rig = await HandoffRig.start({ tag: 'handoffr', remoteWaypoint: true });
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

describe('hand-off to a waypoint on another host', () => {
  it('HTTP/1.1, h2c and IPv6 to the ClusterIP reach the route through the remote waypoint; the header went out on a stack-only socket', async () => {
    const before = rig.sm.stats();
    const r = await rig.curl(['-H', 'x-canary: yes', `http://${VIP}/r1`, '-w', '\n', `http://${VIP}/r2`]);
    expect(r.code, r.err).toBe(0);
    expect(r.out.match(/"pod":"v2"/g)).toHaveLength(2);
    const h2 = await rig.curl(['--http2-prior-knowledge', '-H', 'x-canary: yes', `http://${VIP}/h2`]);
    expect(h2.code, h2.err).toBe(0);
    expect(h2.out).toContain('"pod":"v2"');
    const v6 = await rig.curl(['-H', 'x-canary: yes', `http://[${VIP6}]/v6`]);
    expect(v6.code, v6.err).toBe(0);
    expect(v6.out).toContain('"pod":"v2"');
    const s = rig.wpSync.stats();
    expect(s.redirected).toBe(3);
    expect(s.headersWritten).toBe(3);
    expect(s.hashFailed).toBe(0);
    // Not accelerated: the waypoint is no local pod, nothing was redirected between sockets.
    expect(rig.sm.stats().redirectedMessages).toBe(before.redirectedMessages);
    expect(rig.sm.stats().inserts).toBe(before.inserts); // stack-only sockets are not the accelerator's inserts
    await rig.until(async () => rig.waypointOut.includes('"path":"/r2"'), 'access log line');
    const line = rig.waypointOut.split('\n').find((l) => l.includes('"path":"/r2"'));
    expect(line).toContain(`"sourceAddress":"${rig.client.ipv4}"`);
  });

  it('a plain socket without the waypoint (the non-HTTP port) is untouched', async () => {
    const script = `const s=require('net').connect(9000,'${VIP}',()=>s.write('hi\\n'));let b='';s.on('data',d=>{b+=d;if(b.split('\\n').length>2){console.log(JSON.stringify(b));s.destroy()}})`;
    const r = await rig.lab.exec(rig.client, process.execPath, ['-e', script], { timeoutMs: 10_000 });
    expect(JSON.parse(r.stdout.trim()) as string).toMatch(/^(v1|v2)\n\1 hi\n$/);
  });
});
