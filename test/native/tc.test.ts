/**
 * tc attach in the real kernel: counting programs on a lab pod's host-side veth (in the
 * lab's node netns) count the pod's real pings, as tcx links and as clsact filters;
 * links are pinned, atomically updated and detached.
 */
import { existsSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../common/errors.js';
import { Lab, NODE_IPV4, type Pod } from '../../lab/index.js';
import { addon, BpfError, BpfLink, BpfObject, type BpfMap, type BpfProgram } from '../../native/index.js';
import { testObject, u32 } from './helpers.js';

const ALL = 0, ECHO_REQ = 1, ECHO_REPLY = 2, ALL_B = 3; // slots of kw_t_count (bpf/test/tc_count.bpf.c)

let lab: Lab;
let pod: Pod;
let obj: BpfObject;
let counts: BpfMap;
let countA: BpfProgram;
let countB: BpfProgram;
const links: BpfLink[] = [];

beforeAll(async () => {
  lab = await Lab.create({ tag: 'test' });
  pod = await lab.addPod('a');
  obj = BpfObject.open(testObject('tc_count'));
  await obj.load();
  counts = obj.map('kw_t_count');
  countA = obj.program('kw_t_count_a');
  countB = obj.program('kw_t_count_b');
});
afterAll(async () => {
  for (const l of links) if (!l.isClosed) l.detach();
  obj?.close();
  await lab?.destroy();
  // Nothing of the run is left: namespaces (and their veths), cgroups, pins.
  expect(existsSync(lab.nodeNsPath) || existsSync(pod.netnsPath)).toBe(false);
  expect(existsSync(lab.cgroupPath)).toBe(false);
  expect(existsSync(lab.bpffsDir)).toBe(false);
});

function count(slot: number): number {
  return Number(counts.lookup(u32(slot))!.readBigUInt64LE());
}

function resetCounts(): void {
  for (let i = 0; i < 4; i++) counts.update(u32(i), Buffer.alloc(8));
}

async function ping(n: number): Promise<void> {
  const r = await lab.exec(pod, 'ping', ['-c', String(n), '-i', '0.05', '-W', '2', NODE_IPV4], { timeoutMs: 20_000 });
  expect(r.code, r.stdout + r.stderr).toBe(0);
}

const threadNetns = (): string => readlinkSync('/proc/thread-self/ns/net');

describe('tc on a pod veth (node netns)', () => {
  it('tcx links count real traffic, ingress and egress', async () => {
    resetCounts();
    const before = threadNetns();
    const ingress = countA.attachTc(pod.hostVeth, 'ingress', { netns: lab.nodeNsPath });
    links.push(ingress);
    const egress = countA.attachTc(pod.hostIfindex, 'egress', { netns: lab.nodeNs }); // by ifindex, netns by name
    links.push(egress);
    expect(threadNetns()).toBe(before); // back in our own namespace
    expect(ingress.kind).toBe('link');
    expect(ingress.info()).toMatchObject({ type: 'tcx', ifindex: pod.hostIfindex, progId: countA.info().id });
    expect(addon().tcxQuery(pod.hostVeth, true, lab.nodeNsPath)).toEqual([countA.info().id]);

    await ping(5);
    expect(count(ECHO_REQ)).toBeGreaterThanOrEqual(5); // pod -> node enters the host veth (ingress)
    expect(count(ECHO_REPLY)).toBeGreaterThanOrEqual(5); // node -> pod leaves by it (egress)
    expect(count(ALL)).toBeGreaterThanOrEqual(10);

    ingress.detach();
    egress.detach();
    expect(addon().tcxQuery(pod.hostVeth, true, lab.nodeNsPath)).toEqual([]);
    expect(addon().tcxQuery(pod.hostVeth, false, lab.nodeNsPath)).toEqual([]);
    const seen = count(ALL);
    await ping(2);
    expect(count(ALL)).toBe(seen);
  });

  it('a pinned tcx link survives its fd and is updated atomically through the pin', async () => {
    resetCounts();
    const pin = join(lab.bpffsDir, 'tc_ingress');
    const link = countA.attachTc(pod.hostVeth, 'ingress', { netns: lab.nodeNsPath });
    links.push(link);
    link.pin(pin);
    link.close(); // pinned: stays attached
    expect(addon().tcxQuery(pod.hostVeth, true, lab.nodeNsPath)).toEqual([countA.info().id]);

    const again = BpfLink.openPinned(pin);
    links.push(again);
    again.update(countB);
    expect(again.info().progId).toBe(countB.info().id);
    await ping(3);
    expect(count(ECHO_REQ)).toBe(0); // countA no longer runs there
    expect(count(ALL_B)).toBeGreaterThanOrEqual(3);

    const bad = (() => { try { again.update({} as never); } catch (e) { return e; } })() as InvalidArgumentError;
    expect(bad.path).toBe('program');
    again.unpin(pin);
    again.detach();
    expect(addon().tcxQuery(pod.hostVeth, true, lab.nodeNsPath)).toEqual([]);
  });

  it('clsact filters (the pre-tcx way) count, update in place and detach', async () => {
    resetCounts();
    const link = countA.attachTc(pod.hostVeth, 'ingress', { netns: lab.nodeNsPath, mode: 'clsact' });
    links.push(link);
    expect(link.kind).toBe('tc-clsact');
    const info = link.info();
    expect(info.progId).toBe(countA.info().id);
    const pin = (() => { try { link.pin(join(lab.bpffsDir, 'x')); } catch (e) { return e; } })() as BpfError;
    expect(pin).toBeInstanceOf(BpfError);
    expect(pin.code).toBe('EOPNOTSUPP');

    await ping(3);
    expect(count(ECHO_REQ)).toBeGreaterThanOrEqual(3);
    link.update(countB);
    expect(link.info().progId).toBe(countB.info().id);
    await ping(2);
    expect(count(ALL_B)).toBeGreaterThanOrEqual(2);

    link.detach();
    expect(addon().tcQuery(info.ifindex!, true, info.handle!, info.priority!, lab.nodeNsPath)).toBe(0);
  });

  it('bad interfaces and namespaces give clear errors, and our thread stays home', () => {
    const before = threadNetns();
    const noDev = (() => { try { countA.attachTc('kwnope0', 'ingress', { netns: lab.nodeNsPath }); } catch (e) { return e; } })() as BpfError;
    expect(noDev).toBeInstanceOf(BpfError);
    expect(noDev.code).toBe('ENODEV');
    expect(noDev.message).toContain('kwnope0');
    expect(noDev.program).toBe('kw_t_count_a');
    expect(threadNetns()).toBe(before);
    // The pod's veth does not exist in our own namespace.
    const notHere = (() => { try { countA.attachTc(pod.hostVeth, 'ingress'); } catch (e) { return e; } })() as BpfError;
    expect(notHere.code).toBe('ENODEV');
    const err = (fn: () => unknown): InvalidArgumentError => {
      try { fn(); } catch (e) { return e as InvalidArgumentError; }
      throw new Error('expected an error');
    };
    expect(err(() => countA.attachTc(pod.hostVeth, 'ingress', { netns: 'kw-no-such-ns' })).path).toBe('opts.netns');
    expect(err(() => countA.attachTc(pod.hostVeth, 'sideways' as never)).path).toBe('direction');
    expect(err(() => countA.attachTc('', 'ingress')).path).toBe('iface');
    expect(err(() => countA.attachTc(pod.hostVeth, 'ingress', { mode: 'xdp' as never })).path).toBe('opts.mode');
    expect(addon().tcxQuery(pod.hostVeth, true, lab.nodeNsPath)).toEqual([]);
  });
});
