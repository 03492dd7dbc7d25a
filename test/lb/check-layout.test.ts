/** checkLayout: maps the agent writes must match its codecs exactly; maps it only reads may have grown (an upgrade added a field). */
import { describe, expect, it } from 'vitest';
import { checkLayout, LB_MAP_NAMES, type LbMaps, type MapLike } from '../../agent/datapath/lb-maps.js';
import { LB_LAYOUTS } from '../../agent/datapath/codec.js';
import { layoutSize } from '../../agent/datapath/layout.js';

function maps(over: Partial<Record<string, { key: number; value: number }>> = {}): LbMaps {
  const out: Record<string, MapLike> = {};
  for (const name of LB_MAP_NAMES) {
    const l = LB_LAYOUTS[name]!;
    const size = over[name] ?? (name === 'kw_maglev' ? { key: 4, value: 4 * 1021 } : { key: layoutSize(l.key!)!, value: layoutSize(l.value!)! });
    out[name] = { name, info: () => ({ maxEntries: 16, keySize: size.key, valueSize: size.value }) } as unknown as MapLike;
  }
  return out as LbMaps;
}

describe('checkLayout', () => {
  it('accepts the codecs\' layout, and read-only maps whose value grew (kw_revnat v2 of the upgrade)', () => {
    expect(checkLayout(maps())).toEqual({ maglevM: 1021 });
    expect(checkLayout(maps({ kw_revnat: { key: 32, value: 24 }, kw_affinity: { key: 24, value: 24 } }))).toEqual({ maglevM: 1021 });
  });
  it('refuses other sizes of maps the agent writes, a shrunk value or another key', () => {
    expect(() => checkLayout(maps({ kw_svc: { key: 20, value: 24 } }))).toThrow(/KW_MAP_LAYOUT|map kw_svc has key\/value sizes 20\/24, expected 20\/20/);
    expect(() => checkLayout(maps({ kw_revnat: { key: 32, value: 16 } }))).toThrow(/map kw_revnat has key\/value sizes 32\/16/);
    expect(() => checkLayout(maps({ kw_revnat: { key: 40, value: 20 } }))).toThrow(/map kw_revnat/);
  });
});
