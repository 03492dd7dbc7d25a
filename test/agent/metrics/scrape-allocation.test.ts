/**
 * What a /metrics scrape of 10,000 Services allocates in the agent, which runs without V8's
 * top tier (common/heap.ts leaveOutTurbofanAndSparkplug): there, node's Buffer methods that check their
 * arguments (buf.write, readUInt32LE, writeUInt32LE) and a RegExp test allocate on every call,
 * which TurboFan would have optimised away. The per-Service families' text and counter sums
 * allocated ~25 MiB per scrape so (V8's sampling heap profiler, agent on 10,000 Services:
 * docs/kubernetes-api.md), most of it from those calls, and the young generation grew under it.
 * Measured here in a node without TurboFan, as the agent, with the profiler counting garbage too.
 */
import { describe, expect, it } from 'vitest';
import { allocatedPerCall, dist } from '../../fixtures/allocation.js';

describe('a scrape of 10,000 Services allocates little without TurboFan', () => {
  it("a per-Service line written into the text's chunks: under 40 bytes (buf.write and ESCAPE.test: ~600)", async () => {
    const setup = `
      const { TextChunks, recycle } = await import(${dist('common/metrics-text.js')});
      const names = Array.from({ length: 10000 }, (_, i) => 'bench/svc-' + i);
      const w = new TextChunks((chunk) => recycle(chunk));`;
    // As registry.ts writes a sample of a family with a service label.
    const body = `
      w.text('kernway_lb_connections_balanced_total'); w.text('{'); w.text('service'); w.text('="');
      w.label(names[i % 10000]); w.text('"'); w.text('}'); w.text(' '); w.value(i * 7); w.text('\\n');
      if (w.full) w.flush();`;
    const bytes = await allocatedPerCall(setup, body, 40_000);
    expect(bytes).toBeLessThan(40);
  });

  it("a Service's counters summed from its per-CPU value: under 40 bytes (readUInt32LE: ~80 per read)", async () => {
    const setup = `
      const { sumSvcStatPerCpu } = await import(${dist('agent/datapath/codec.js')});
      const v = Buffer.alloc(4 * 16); // 4 CPUs of kw_svc_stats
      for (let o = 0; o < v.length; o += 4) v.writeUInt32LE(o * 1000, o);`;
    const bytes = await allocatedPerCall(setup, `sumSvcStatPerCpu(v, 'balanced'); sumSvcStatPerCpu(v, 'refused');`, 20_000);
    expect(bytes).toBeLessThan(40);
  });
});
