/**
 * Blocking clients through the kernel hand-off (issue 13) with the agent's sockmap
 * programs: the hand-off adds a blocking client's socket to the sockhash "stack-only" so
 * that sk_msg writes the PROXY header, and its reads then go through tcp_bpf_recvmsg
 * (docs/sockmap.md, rule 5). Nothing is ever redirected to such a socket; these runs
 * check that what a blocking reader sees is TCP's: recv(MSG_WAITALL) waits for all it
 * asked for (or EOF), a client reading to EOF gets the whole response, and one that
 * shuts down writing first never sees EAGAIN: such a socket leaves the sockhash as soon
 * as its header is written (sockmap.bpf.c, KW_SM_HDR_ONLY). Python, blocking sockets,
 * every byte counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HandoffRig, PLAIN_VIP, VIP } from '../../bench/handoff/rig.js';

/**
 * argv: MODE HOST N. Each of N requests on a new blocking connection: GET with
 * Connection: close; 'eof' reads with recv() to EOF, 'shut' shuts down writing first then
 * reads to EOF, 'waitall' reads once with recv(1 MiB, MSG_WAITALL) (TCP: returns at EOF
 * with everything). Prints one JSON line: complete responses, errors by name.
 */
const CLIENT = String.raw`
import json, socket, sys
mode, host, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ok, errors, short = 0, {}, []
for i in range(n):
    try:
        c = socket.create_connection((host, 80))
        c.setblocking(True)
        c.sendall(b'GET /b%d HTTP/1.1\r\nHost: web.shop\r\nConnection: close\r\n\r\n' % i)
        if mode == 'shut':
            c.shutdown(socket.SHUT_WR)
        if mode == 'waitall':
            data = c.recv(1 << 20, socket.MSG_WAITALL)
        else:
            data = b''
            while True:
                d = c.recv(65536)
                if not d:
                    break
                data += d
        c.close()
        head, _, body = data.partition(b'\r\n\r\n')
        length = [int(l.split(b':')[1]) for l in head.split(b'\r\n') if l.lower().startswith(b'content-length:')]
        if head.startswith(b'HTTP/1.1 200') and length and len(body) == length[0] and b'"pod"' in body:
            ok += 1
        else:
            short.append(len(data))
    except OSError as e:
        k = type(e).__name__ + ':' + str(e.errno)
        errors[k] = errors.get(k, 0) + 1
print(json.dumps({'ok': ok, 'errors': errors, 'short': short[:5]}))
`;

let rig: HandoffRig;

beforeAll(async () => {
  rig = await HandoffRig.start({ tag: 'smhoblk' });
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

describe('sockmap + hand-off: blocking clients read as from TCP', () => {
  it('blocking client, shutdown(SHUT_WR) then recv() to EOF: 400 connections, never EAGAIN (the socket left the sockhash once its header was written)', async () => {
    // Before header-only sockets were taken out of the sockhash, the wake-up by the ACK of
    // the client's own FIN made tcp_bpf_recvmsg return EAGAIN (BlockingIOError) to ~1 % of them.
    const run = async (host: string) => {
      const r = await rig.lab.exec(rig.client, 'python3', ['-c', CLIENT, 'shut', host, '200'], { timeoutMs: 120_000 });
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout.trim()) as { ok: number; errors: Record<string, number>; short: number[] };
    };
    // Plain TCP to the backend (a Node.js server) answers a half-closed request.
    expect(await run(PLAIN_VIP)).toEqual({ ok: 200, errors: {}, short: [] });
    const before = rig.sm.stats();
    for (let i = 0; i < 2; i++) {
      // Through the hand-off the waypoint answers the half-closed request as plain TCP to the
      // backend does, and no read fails.
      expect(await run(VIP)).toEqual({ ok: 200, errors: {}, short: [] });
    }
    expect(rig.sm.stats().headerOnlyOut - before.headerOnlyOut).toBe(400);
  }, 300_000);

  for (const mode of ['eof', 'waitall'] as const) {
    it(`blocking client, ${mode === 'eof' ? 'recv() to EOF' : 'one recv(MSG_WAITALL)'}: 200 requests, every response whole`, async () => {
      const wp0 = rig.sm.stats();
      const r = await rig.lab.exec(rig.client, 'python3', ['-c', CLIENT, mode, VIP, '200'], { timeoutMs: 120_000 });
      expect(r.stderr).toBe('');
      const got = JSON.parse(r.stdout.trim()) as { ok: number; errors: Record<string, number>; short: number[] };
      expect(got).toEqual({ ok: 200, errors: {}, short: [] });
      // The client sockets were blocking at connect: not accelerated (rule 5), only stack-only for the header.
      const st = rig.sm.stats();
      expect(st.skippedBlocking - wp0.skippedBlocking).toBeGreaterThanOrEqual(200);
      // ... and taken out of the sockhash again once the header was written.
      expect(st.headerOnlyOut - wp0.headerOnlyOut).toBe(200);
    }, 180_000);
  }
});
