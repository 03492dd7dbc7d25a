/**
 * `kernway probe`: the kernel features kernway relies on, as a table or as JSON. Never
 * fails on a missing feature or mount: it reports it (exit 0); only bad options exit 2.
 */
import { parseArgs } from 'node:util';
import type { Probe } from '../agent/datapath/probe.js';
import type { Command } from './command.js';

const USAGE = 'kernway probe [--json]';

function yes(b: boolean): string {
  return b ? 'yes' : 'NO';
}

/** Rows of feature, status, detail. */
export function probeRows(p: Probe): Array<[string, string, string]> {
  const rows: Array<[string, string, string]> = [
    ['kernel', /^\d+\.\d+/.exec(p.kernel)?.[0] ?? p.kernel, p.kernel],
    ['libbpf', p.libbpf || '?', p.libbpf ? '' : 'addon not loaded'],
    ['BTF', yes(p.btf), p.btf ? '/sys/kernel/btf/vmlinux' : 'no /sys/kernel/btf/vmlinux: CO-RE programs cannot load'],
    ['cgroup2', yes(p.cgroup2 !== undefined), p.cgroup2 ?? 'not mounted: socket programs need a cgroup v2 hierarchy'],
    ['bpffs', yes(p.bpffs !== undefined), p.bpffs ?? 'not mounted: pins need it (mount -t bpf bpf /sys/fs/bpf; the agent mounts it)'],
    ['tc attach', p.tcx ? 'tcx' : 'clsact', p.tcx ? 'tcx links (kernel 6.6+): pinnable, atomically replaced' : 'clsact filters (no tcx, kernel < 6.6)'],
    ['sk_msg attach', p.sockmapLink ? 'link' : 'prog-attach', p.sockmapLink ? 'sockmap links (kernel 6.10+)' : 'BPF_PROG_ATTACH on the map (no sockmap links, kernel < 6.10)'],
  ];
  for (const [t, ok] of Object.entries(p.programTypes)) rows.push([`program ${t}`, yes(ok), '']);
  for (const [t, ok] of Object.entries(p.mapTypes)) rows.push([`map ${t}`, yes(ok), '']);
  for (const [h, ok] of Object.entries(p.helpers)) rows.push([`helper ${h}`, yes(ok), '']);
  return rows;
}

export function formatProbe(p: Probe): string {
  const rows: Array<[string, string, string]> = [['FEATURE', 'STATUS', 'DETAIL'], ...probeRows(p)];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const lines = rows.map(([f, s, d]) => `${f.padEnd(w0)}  ${s.padEnd(w1)}  ${d}`.trimEnd());
  for (const e of p.errors) lines.push(`warning: ${e}`);
  return lines.join('\n');
}

export const command: Command = {
  summary: 'show the kernel features kernway uses (tcx, sockmap links, program/map types, helpers, mounts)',
  usage: USAGE,
  async run(argv: string[]): Promise<number> {
    let json: boolean;
    try {
      const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false } }, strict: true });
      json = values.json === true;
    } catch (e) {
      console.error(`kernway probe: ${(e as Error).message}\nusage: ${USAGE}`);
      return 2;
    }
    const { probeKernel } = await import('../agent/datapath/probe.js');
    const p = probeKernel();
    console.log(json ? JSON.stringify(p, null, 2) : formatProbe(p));
    return 0;
  },
};
