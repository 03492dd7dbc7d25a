/**
 * Cgroup attach in the real kernel: a cgroup/connect4 program on a lab cgroup rewrites
 * the connect() of a process inside that cgroup and leaves one outside alone; sock_ops
 * and sk_msg see the sockets of processes inside.
 */
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../common/errors.js';
import { Lab } from '../../lab/index.js';
import { addon, BpfError, BpfObject, type BpfLink } from '../../native/index.js';
import { testObject, u32 } from './helpers.js';

/** Connects to 127.0.0.1:PORT and prints what the server says. */
const CLIENT = `
const c = require('node:net').connect({ host: '127.0.0.1', port: Number(process.argv[1]) });
let got = ''; c.on('data', (d) => { got += d; }); c.on('close', () => console.log(got));
c.on('error', (e) => { console.error(e.code); process.exit(3); });
`;

/** A TCP echo pair on loopback: sends N messages, waits for each echo, exits. */
const ECHO_PAIR = `
const net = require('node:net');
const n = Number(process.argv[1]);
const srv = net.createServer((s) => s.on('data', (d) => s.write(d))).listen(0, '127.0.0.1', () => {
  const c = net.connect(srv.address().port, '127.0.0.1', () => {
    let i = 0;
    const send = () => { if (i++ < n) c.write('ping' + i + ';'); else { c.destroy(); srv.close(); console.log('done'); } };
    c.on('data', () => setTimeout(send, 20));
    setTimeout(send, 50); // after sock_ops has put both ends in the sockhash
  });
});
`;

function serve(reply: string): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer((s) => s.end(reply)).listen(0, '127.0.0.1', () => {
      resolve({ server, port: (server.address() as { port: number }).port });
    });
  });
}

function connectHere(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    import('node:net').then(({ connect }) => {
      const c = connect({ host: '127.0.0.1', port });
      let got = '';
      c.on('data', (d) => { got += d; });
      c.on('close', () => resolve(got));
      c.on('error', reject);
    }, reject);
  });
}

let lab: Lab;
const links: BpfLink[] = [];
const objects: BpfObject[] = [];

beforeAll(async () => {
  lab = await Lab.create({ tag: 'test' });
});
afterAll(async () => {
  for (const l of links) if (!l.isClosed) l.detach();
  for (const o of objects) o.close();
  await lab?.destroy();
  expect(existsSync(lab.cgroupPath)).toBe(false); // and the links with it
  expect(existsSync(lab.bpffsDir)).toBe(false);
});

async function load(name: string, opts: Parameters<typeof BpfObject.open>[1] = {}): Promise<BpfObject> {
  const obj = BpfObject.open(testObject(name), opts);
  objects.push(obj);
  await obj.load();
  return obj;
}

describe('cgroup/connect4 on a lab cgroup', () => {
  it('rewrites connect() inside the cgroup, not outside, until detached', async () => {
    const a = await serve('A');
    const b = await serve('B');
    try {
      const obj = await load('connect4', { rodata: { kw_from_port: a.port, kw_to_port: b.port } });
      const prog = obj.program('kw_t_connect4');
      expect(prog.attachType).toBe('cgroup_inet4_connect');
      const link = prog.attachCgroup(lab.cgroupPath); // connect4, from SEC("cgroup/connect4")
      links.push(link);
      expect(link.kind).toBe('link');
      const info = link.info();
      expect(info.type).toBe('cgroup');
      expect(info.progId).toBe(prog.info().id);
      expect(addon().progQuery(lab.cgroupPath, 'cgroup_inet4_connect')).toEqual([prog.info().id]);

      const inside = await lab.exec('host', process.execPath, ['-e', CLIENT, String(a.port)], { cgroup: true, timeoutMs: 10_000 });
      expect(inside.stderr).toBe('');
      expect(inside.stdout.trim()).toBe('B');
      const outside = await lab.exec('host', process.execPath, ['-e', CLIENT, String(a.port)], { cgroup: false, timeoutMs: 10_000 });
      expect(outside.stdout.trim()).toBe('A');
      expect(await connectHere(a.port)).toBe('A'); // this test process is not in the lab cgroup
      expect(obj.map('kw_t_hits').lookup(u32(0))!.readBigUInt64LE()).toBe(1n);

      link.detach();
      expect(addon().progQuery(lab.cgroupPath, 'cgroup_inet4_connect')).toEqual([]);
      const after = await lab.exec('host', process.execPath, ['-e', CLIENT, String(a.port)], { cgroup: true, timeoutMs: 10_000 });
      expect(after.stdout.trim()).toBe('A');
    } finally {
      a.server.close();
      b.server.close();
    }
  });

  it('refuses a hook the program was not built for, and paths that are not cgroups', async () => {
    const obj = await load('connect4');
    const prog = obj.program('kw_t_connect4');
    const wrong = (() => { try { prog.attachCgroup(lab.cgroupPath, 'sendmsg4'); } catch (e) { return e; } })() as InvalidArgumentError;
    expect(wrong).toBeInstanceOf(InvalidArgumentError);
    expect(wrong.path).toBe('type');
    expect(wrong.message).toContain('connect4');
    const notCg = (() => { try { prog.attachCgroup('/tmp'); } catch (e) { return e; } })() as BpfError;
    expect(notCg).toBeInstanceOf(BpfError);
    expect(notCg.code).toBe('ENOTDIR');
    expect(notCg.op).toBe('link.attach_cgroup');
    expect(notCg.program).toBe('kw_t_connect4');
    const missing = (() => { try { prog.attachCgroup(lab.cgroupPath + '/nope'); } catch (e) { return e; } })() as BpfError;
    expect(missing.code).toBe('ENOENT');
    expect(addon().progQuery(lab.cgroupPath, 'cgroup_inet4_connect')).toEqual([]);
  });
});

describe('sock_ops and sk_msg', () => {
  async function echoInCgroup(n: number): Promise<void> {
    const r = await lab.exec('host', process.execPath, ['-e', ECHO_PAIR, String(n)], { cgroup: true, timeoutMs: 15_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('done');
  }

  it('sock_ops fills a sockhash and sk_msg sees the messages, as links', async () => {
    const obj = await load('sockmap');
    const socks = obj.map('kw_t_socks');
    const stat = obj.map('kw_t_sockstat');
    const sockops = obj.program('kw_t_sockops').attachCgroup(lab.cgroupPath);
    links.push(sockops);
    expect(sockops.info().type).toBe('cgroup');
    const skmsg = obj.program('kw_t_msg').attachSkMsg(socks);
    links.push(skmsg);
    expect(skmsg.kind).toBe('link'); // kernel >= 6.10 has sockmap links
    expect(skmsg.info()).toMatchObject({ type: 'sockmap', mapId: socks.info().id });

    await echoInCgroup(3);
    expect(stat.lookup(u32(0))!.readBigUInt64LE()).toBeGreaterThanOrEqual(2n); // both ends established
    expect(stat.lookup(u32(1))!.readBigUInt64LE()).toBeGreaterThanOrEqual(3n); // client's pings at least

    // A sockhash has no batch ops: batchLookup walks it key by key (empty once the sockets closed).
    expect(socks.batchLookup().keys).toEqual([]);
    skmsg.detach();
    sockops.detach();
    expect(addon().progQuery(lab.cgroupPath, 'cgroup_sock_ops')).toEqual([]);
    const msgs = stat.lookup(u32(1))!.readBigUInt64LE();
    await echoInCgroup(2);
    expect(stat.lookup(u32(1))!.readBigUInt64LE()).toBe(msgs);
  });

  it('sk_msg also attaches the pre-6.10 way (BPF_PROG_ATTACH on the map)', async () => {
    const obj = await load('sockmap');
    const socks = obj.map('kw_t_socks');
    const stat = obj.map('kw_t_sockstat');
    const sockops = obj.program('kw_t_sockops').attachCgroup(lab.cgroupPath, 'sock_ops');
    links.push(sockops);
    const skmsg = obj.program('kw_t_msg').attachSkMsg(socks, { mode: 'prog-attach' });
    links.push(skmsg);
    expect(skmsg.kind).toBe('prog-attach');
    const progId = obj.program('kw_t_msg').info().id;
    expect(addon().progQuery(socks.fd, 'sk_msg_verdict')).toEqual([progId]);
    const pin = (() => { try { skmsg.pin(lab.bpffsDir + '/x'); } catch (e) { return e; } })() as BpfError;
    expect(pin.code).toBe('EOPNOTSUPP');

    await echoInCgroup(3);
    expect(stat.lookup(u32(1))!.readBigUInt64LE()).toBeGreaterThanOrEqual(3n);

    skmsg.detach();
    sockops.detach();
    expect(addon().progQuery(socks.fd, 'sk_msg_verdict')).toEqual([]);
  });
});
