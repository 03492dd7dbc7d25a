/**
 * Upgrading the agent to a build whose map layout changed (docs/upgrade.md), in the real
 * kernel under real connections: build/bpf/test/sock_lb_v2.bpf.o is the load balancer
 * with a field added to kw_revnat's value (struct kw_revnat_val.gen, set to 2 by the new
 * programs). The new load migrates kw_revnat's entries into a new map by field name,
 * swaps the pinned links to the new programs in place and replaces the old pin — while
 * connections keep being made, and while connections made before keep working and keep
 * showing the ClusterIP they dialled.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, type Pod } from '../../lab/index.js';
import { buildModel } from '../../model/model.js';
import { buildServiceTable } from '../../model/service-table.js';
import type { SourcedObject } from '../../k8s/types.js';
import { ServiceSync } from '../../agent/datapath/service-sync.js';
import { checkSockLb, defaultObjectPath, loadSockLb, pinLayout, SOCK_LB_PROGRAMS, sockLbSpec, type SockLb } from '../../agent/datapath/sock-lb.js';
import { checkSubsystem, MIGRATION_PREFIX } from '../../agent/datapath/loader.js';
import { decodeRevnatVal } from '../../agent/datapath/codec.js';
import { serviceObject, sliceObject } from '../../agent/demo/manifests.js';
import { BpfLink, BpfMap } from '../../native/index.js';
import { Client, startEcho, type Counts } from '../fixtures/lb-harness.js';

const NODE = 'node-a';
const VIP = '10.96.0.10';
const V2 = fileURLToPath(new URL('../../build/bpf/test/sock_lb_v2.bpf.o', import.meta.url));
const HELD = 20;

let lab: Lab;
let lb: SockLb | undefined;
let client: Client;
let pods: Pod[];
let bpffs: string;

function opts(objectPath?: string) {
  return { cgroupPath: lab.cgroupPath, bpffsDir: bpffs, ...(objectPath ? { objectPath } : {}) };
}

/** Link id -> program id of every pinned cgroup link. */
function links(): Map<string, { id: number; progId: number }> {
  const dir = pinLayout(bpffs, lab.cgroupPath).cgroupLinks!;
  const out = new Map<string, { id: number; progId: number }>();
  for (const name of readdirSync(dir)) {
    const l = BpfLink.openPinned(join(dir, name));
    try {
      const i = l.info();
      out.set(name, { id: i.id!, progId: i.progId });
    } finally {
      l.close();
    }
  }
  return out;
}

/** kw_revnat as pinned: value size, BTF field names, entries (key hex -> value). */
function pinnedRevnat(): { id: number; valueSize: number; fields: string[]; entries: Map<string, Buffer> } {
  const m = BpfMap.openPinned(join(pinLayout(bpffs).maps, 'kw_revnat'));
  try {
    const { keys, values } = m.batchLookup();
    const entries = new Map<string, Buffer>();
    keys.forEach((k, i) => entries.set(k.toString('hex'), Buffer.from(values[i]!)));
    return { id: m.info().id, valueSize: m.valueSize, fields: (m.btf().value?.members ?? []).map((x) => x.name), entries };
  } finally {
    m.close();
  }
}

/** Runs `n` connections to the ClusterIP while `during` runs; says whether they overlapped. */
async function underLoad<T>(n: number, during: () => Promise<T>): Promise<{ load: Counts; result: T; overlapped: boolean }> {
  let done = false;
  const load = client.send<Counts>({ op: 'tcp', host: VIP, port: 80, n, concurrency: 8 }).finally(() => { done = true; });
  // The client has started when a first connection shows in kw_revnat's entry count growing.
  const before = pinnedRevnat().entries.size;
  for (let i = 0; i < 500 && pinnedRevnat().entries.size === before && !done; i++) await new Promise((r) => setTimeout(r, 5));
  const result = await during();
  const overlapped = !done;
  return { load: await load, result, overlapped };
}

beforeAll(async () => {
  lab = await Lab.create({ tag: 'upgrade' });
  const c = await lab.addPod('c');
  pods = [await lab.addPod('b1'), await lab.addPod('b2')];
  await Promise.all(pods.map((p) => startEcho(lab, p, `${p.name}:8080`, 8080, 5353)));
  bpffs = join(lab.bpffsDir, 'agent');
  lb = await loadSockLb(opts());
  const srcs: SourcedObject[] = [
    serviceObject({ name: 'web', clusterIPs: [VIP], ports: [{ name: 'http', port: 80, targetPort: 'http' }] }),
    sliceObject({ name: 'web-1', service: 'web', addressType: 'IPv4', ports: [{ name: 'http', port: 8080 }], endpoints: pods.map((p) => ({ ip: p.ipv4, nodeName: NODE })) }),
  ].map((object, index) => ({ object: object as SourcedObject['object'], file: 'web.yaml', index }));
  new ServiceSync(lb.maps).reconcile(buildServiceTable(buildModel(srcs), { nodeName: NODE }));
  client = new Client(lab, c);
  for (let i = 0; i < HELD; i++) {
    const r = await client.send<{ greeting: string; error?: string }>({ op: 'hold', id: i, host: VIP, port: 80 });
    expect(r.error).toBeUndefined();
  }
});

afterAll(async () => {
  client?.close();
  lb?.close();
  await lab?.destroy();
});

describe('upgrade to a build whose map layout changed', () => {
  it('checks first: only kw_revnat is to migrate, the other maps are reused; a map that may never be replaced is refused before anything changes', () => {
    const plan = checkSockLb(opts(V2));
    try {
      expect(plan.migrations.map((m) => m.map)).toEqual(['kw_revnat']);
      expect(plan.migrations[0]!.value.summary).toBe('added gen');
      expect(plan.migrations[0]!.key.summary).toBe('same layout');
      expect([...plan.reuse].sort()).toEqual(['kw_affinity', 'kw_backend', 'kw_maglev', 'kw_slot', 'kw_svc', 'kw_svc_stats', 'kw_wp_exempt', 'kw_wp_guard', 'kw_wp_sk', 'kw_wp_stats', 'kw_wp_svc']);
    } finally {
      plan.close();
    }
    const layout = pinLayout(bpffs, lab.cgroupPath);
    const spec = { ...sockLbSpec(opts(V2), { maps: layout.maps, cgroupLinks: layout.cgroupLinks! }), keep: ['kw_revnat'] };
    expect(() => checkSubsystem(spec)).toThrow(expect.objectContaining({
      code: 'KW_MAP_LAYOUT', message: expect.stringMatching(/map kw_revnat pinned at .* is a lru_hash of 32-byte keys and 20-byte values \(131072 entries\), .*sock_lb_v2\.bpf\.o has .*24-byte values .*never replaced/),
    }));
    // Checking changed nothing: the old map is pinned as it was, no new map is pinned.
    expect(pinnedRevnat().valueSize).toBe(20);
    expect(readdirSync(layout.maps).filter((f) => f.startsWith(MIGRATION_PREFIX))).toEqual([]);
  });

  it('v1 -> v2 under load: entries converted by field name, links swapped in place, old pin replaced; no connection fails', async () => {
    const linksBefore = links();
    expect(linksBefore.size).toBe(SOCK_LB_PROGRAMS.length);
    const old = pinnedRevnat();
    expect(old.valueSize).toBe(20);
    expect(old.fields).not.toContain('gen');
    expect(old.entries.size).toBeGreaterThanOrEqual(HELD);

    const { load, result: next, overlapped } = await underLoad(3000, () => loadSockLb(opts(V2)));
    lb!.close();
    lb = next;
    expect(overlapped).toBe(true); // the upgrade happened while connections were being made
    expect(load.errors).toEqual({});
    expect(Object.values(load.counts).reduce((a, b) => a + b, 0)).toBe(3000);
    expect(Object.keys(load.counts).sort()).toEqual(['b1:8080', 'b2:8080']);

    expect(next.migratedMaps).toEqual(['kw_revnat']);
    expect(next.reusedMaps).toBe(true);
    expect(next.createdLinks).toEqual([]);
    expect(next.updatedLinks.sort()).toEqual(SOCK_LB_PROGRAMS.map(([p]) => p).sort());
    // The same links (ids), each now running a new program.
    const linksAfter = links();
    for (const [name, b] of linksBefore) {
      expect(linksAfter.get(name)!.id).toBe(b.id);
      expect(linksAfter.get(name)!.progId).not.toBe(b.progId);
    }
    // The new map replaced the old pin; no temporary pin is left.
    const now = pinnedRevnat();
    expect(now.id).not.toBe(old.id);
    expect(now.valueSize).toBe(24);
    expect(now.fields).toEqual(['addr', 'port', 'pad', 'gen']);
    expect(readdirSync(pinLayout(bpffs).maps).filter((f) => f.startsWith(MIGRATION_PREFIX))).toEqual([]);
    // Every entry of the old map is there, its fields where the new layout has them, gen zero.
    for (const [k, v] of old.entries) {
      const n = now.entries.get(k);
      expect(n, `revnat entry ${k}`).toBeDefined();
      expect(decodeRevnatVal(n!)).toEqual(decodeRevnatVal(v));
      expect(n!.readUInt32LE(20)).toBe(0);
    }
    // Connections made during the upgrade: by the old programs (copied, gen 0) or the new ones (gen 2).
    const fresh = [...now.entries].filter(([k]) => !old.entries.has(k)).map(([, v]) => v.readUInt32LE(20));
    expect(fresh.length).toBeGreaterThan(0);
    expect(fresh.filter((g) => g !== 0 && g !== 2)).toEqual([]);
    // Connections made after it: only the new programs, writing into the new map.
    const after = await client.send<Counts>({ op: 'tcp', host: VIP, port: 80, n: 50, concurrency: 4 });
    expect(after.errors).toEqual({});
    const later = [...pinnedRevnat().entries].filter(([k]) => !now.entries.has(k)).map(([, v]) => v.readUInt32LE(20));
    expect(later.length).toBe(50);
    expect(new Set(later)).toEqual(new Set([2]));
    // Connections made before the upgrade still work and still see the ClusterIP (migrated entries).
    for (let i = 0; i < HELD; i++) {
      expect(await client.send({ op: 'ping', id: i, line: `after-${i}` })).toEqual({ reply: expect.stringMatching(new RegExp(`after-${i}$`)) });
      expect(await client.send({ op: 'held-peer', id: i })).toEqual({ remoteAddress: VIP, remotePort: 80 });
    }
  });

  it('a restart on the same build reuses everything; a downgrade (v2 -> v1) migrates back, dropping the added field', async () => {
    const same = await loadSockLb(opts(V2));
    expect(same.migratedMaps).toEqual([]);
    lb!.close();
    lb = same;

    const { load, result: back, overlapped } = await underLoad(2000, () => loadSockLb(opts(defaultObjectPath())));
    lb.close();
    lb = back;
    expect(overlapped).toBe(true);
    expect(load.errors).toEqual({});
    expect(back.migratedMaps).toEqual(['kw_revnat']);
    const now = pinnedRevnat();
    expect(now.valueSize).toBe(20);
    expect(now.fields).toEqual(['addr', 'port', 'pad']);
    for (let i = 0; i < HELD; i++) {
      expect(await client.send({ op: 'held-peer', id: i })).toEqual({ remoteAddress: VIP, remotePort: 80 });
    }
    expect(existsSync(join(pinLayout(bpffs).maps, `${MIGRATION_PREFIX}kw_revnat`))).toBe(false);
  });
});
