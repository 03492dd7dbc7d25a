/**
 * Negative controls: the traffic checks of these tests do catch what the rules of
 * bpf/include/sockmap.h prevent. Each rule is broken on purpose (test knob
 * kw_sm_test_break) and the same checks that pass elsewhere must now see the damage.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Lab, type Pod } from '../../lab/index.js';
import type { Sockmap } from '../../agent/datapath/sockmap.js';
import { Server, loadSockmap, localPodsOf, runClient } from './harness.js';

let lab: Lab | undefined;
let sm: Sockmap | undefined;
let server: Server | undefined;

async function setup(opts: Parameters<typeof loadSockmap>[1]): Promise<Array<{ host: string; port: number }>> {
  lab = await Lab.create({ tag: 'smctl' });
  const a: Pod = await lab.addPod('a');
  const b: Pod = await lab.addPod('b');
  sm = await loadSockmap(lab, opts);
  sm.setLocalPods(localPodsOf(a, b));
  server = await Server.start(lab, b, '::', [7001]);
  return [{ host: b.ipv4, port: 7001 }, { host: b.ipv6, port: 7001 }];
}

afterEach(async () => {
  await server?.stop();
  sm?.close();
  await lab?.destroy();
  lab = undefined; sm = undefined; server = undefined;
});

describe('sockmap: negative controls', () => {
  it('without rule 3 (switching to redirection while stack bytes are unread) streams are reordered', async () => {
    const targets = await setup({ testFirstMiss: true, testBreak: 'order' });
    // eager: the client writes right after its header (the first message, forced onto the stack).
    const res = await runClient(lab!, lab!.pod('a'), { targets, mode: 'echo', conns: 40, concurrency: 20, tinyCount: 300, eager: true });
    // Reordered bytes show as a bad echo, or as a garbled header the server resets.
    expect(res.failed).toBeGreaterThan(0);
  });

  it('without rule 4 (deleting entries at TCP_CLOSE) a half-closed socket loses its unread reply', async () => {
    const targets = await setup({ testBreak: 'unhash' });
    const res = await runClient(lab!, lab!.pod('a'), { targets, mode: 'halfclose', conns: 20, concurrency: 20, min: 1 << 10, max: 1 << 20, readDelayMs: 300 });
    expect(res.failed).toBeGreaterThan(0);
    expect(Object.keys(res.errors)).toContain('SHORT_READ');
  });
});
