import { describe, expect, it } from 'vitest';
import { parseHostPort, validateAgentOptions } from '../../agent/options.js';

const good = {
  standalone: '/etc/kernway/manifests', nodeName: 'node-a', cgroup: '/sys/fs/cgroup', bpffs: '/sys/fs/bpf/kernway',
  adminSocket: '/run/kernway/admin.sock', metricsAddress: '0.0.0.0:9464',
};

describe('agent options, checked at the door', () => {
  it('accepts good options and freezes them', () => {
    const o = validateAgentOptions(good);
    expect(o.metrics).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(Object.isFrozen(o)).toBe(true);
    expect(() => { (o as { nodeName: string }).nodeName = 'x'; }).toThrow();
  });

  it('names the bad option', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ nodeName: 'Node_A' }, /^--node-name: /],
      [{ nodeName: undefined }, /^--node-name: /],
      [{ cgroup: 'sys/fs/cgroup' }, /^--cgroup: expected an absolute path/],
      [{ bpffs: '' }, /^--bpffs: /],
      [{ adminSocket: 42 }, /^--admin-socket: /],
      [{ metricsAddress: '9464' }, /^--metrics-address: /],
      [{ metricsAddress: 'example.com:9464' }, /^--metrics-address: /],
      [{ metricsAddress: '0.0.0.0:70000' }, /^--metrics-address: /],
      [{ capacities: { kw_nope: 5 } }, /^--map-capacity kw_nope: /],
      [{ capacities: { kw_svc: 0 } }, /^--map-capacity kw_svc: expected a positive integer/],
      [{ debounceMs: -1 }, /^debounceMs: /],
    ];
    for (const [patch, re] of cases) expect(() => validateAgentOptions({ ...good, ...patch })).toThrow(re);
  });

  it('parses HOST:PORT forms', () => {
    expect(parseHostPort('x', '[::1]:9464')).toEqual({ host: '::1', port: 9464 });
    expect(parseHostPort('x', ':9464')).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(parseHostPort('x', 'localhost:0')).toEqual({ host: 'localhost', port: 0 });
  });
});
