/**
 * Inputs for fuzzing the manifest reader and the agent's command line (issue 19): seeded,
 * so a failure replays. The test runs a short sequence (test/agent/fuzz.test.ts);
 * `bench/harden/fuzz.ts` runs for minutes.
 *
 *   manifestInput(r)   a hostile or mutated manifest file: field/type/size mutations of
 *                      valid manifests (bench/chaos/mutate.ts), YAML bombs (aliases, deep
 *                      nesting, huge mappings, duplicate keys), dangerous addresses, garbage
 *   agentArgv(r, ctx)  `kernway agent` arguments, good and bad, that can only ever name the
 *                      test's own cgroups and bpffs folder (never the machine's root cgroup)
 */
import { Rng, mutate } from '../chaos/mutate.js';
import { serviceObject, sliceObject } from '../../agent/demo/manifests.js';

export { Rng };

const VALID = [
  JSON.stringify(serviceObject({ name: 'web', namespace: 'shop', clusterIPs: ['10.96.0.10', 'fd00:10:96::10'], ports: [{ name: 'http', port: 80, targetPort: 'http' }] })),
  JSON.stringify(sliceObject({ name: 'web-1', namespace: 'shop', service: 'web', ports: [{ name: 'http', port: 8080 }],
    endpoints: [{ ip: '10.244.0.5', nodeName: 'node-a' }, { ip: '10.244.0.6' }] })),
  JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'shop', labels: { app: 'web' } },
    spec: { nodeName: 'node-a' }, status: { podIP: '10.244.0.5', podIPs: [{ ip: '10.244.0.5' }] } }),
];

const BAD_IPS = ['127.0.0.1', '169.254.169.254', '0.0.0.0', '224.0.0.1', '255.255.255.255', '::1', 'fe80::1', 'ff02::1', '::ffff:127.0.0.1', '8.8.8.8', '10.96.0.10/32', ''];

function repeat(s: string, n: number): string {
  return new Array<string>(n).fill(s).join('');
}

/** One input for the manifest reader: a file name and its text. */
export function manifestInput(r: Rng): { kind: string; file: string; text: string } {
  const ext = r.pick(['.yaml', '.yml', '.json']);
  switch (r.int(9)) {
    case 0: case 1: case 2: {
      const m = mutate(r, r.pick(VALID));
      return { kind: `mutate:${m.kind}`, file: `m${ext}`, text: m.text };
    }
    case 3: { // alias bomb
      const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
      for (let i = 1; i < 12; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [*${String.fromCharCode(96 + i)},*${String.fromCharCode(96 + i)},*${String.fromCharCode(96 + i)}]`);
      return { kind: 'aliases', file: 'bomb.yaml', text: `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n${lines.join('\n')}\n` };
    }
    case 4: { // deep nesting
      const d = 100 + r.int(5000);
      return { kind: 'deep', file: `deep${ext}`, text: `${repeat('[', d)}${repeat(']', d)}` };
    }
    case 5: { // a big mapping, maybe with a duplicate key
      const n = 1000 + r.int(20_000);
      const dup = r.int(2) === 0;
      const body = Array.from({ length: n }, (_, i) => `  k${dup && i === n - 1 ? 0 : i}: v`).join('\n');
      return { kind: 'mapping', file: 'map.yaml', text: `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\ndata:\n${body}\n` };
    }
    case 6: { // dangerous addresses in a Service or an EndpointSlice
      const ip = r.pick(BAD_IPS);
      const o = r.int(2) === 0
        ? serviceObject({ name: 's', clusterIPs: [ip], ports: [{ port: 1 + r.int(65535) }] })
        : sliceObject({ name: 's-1', service: 's', ports: [{ port: 80 }], endpoints: [{ ip }] });
      return { kind: 'address', file: `a${ext}`, text: JSON.stringify(o) };
    }
    case 7: { // many documents, some broken
      const docs = Array.from({ length: 1 + r.int(200) }, () => (r.int(5) === 0 ? mutate(r, r.pick(VALID)).text : r.pick(VALID)));
      return { kind: 'documents', file: 'docs.yaml', text: docs.join('\n---\n') };
    }
    default: { // unicode, control bytes, long lines
      const b = Buffer.alloc(1 + r.int(20_000));
      for (let i = 0; i < b.length; i++) b[i] = r.int(4) === 0 ? r.pick([10, 58, 45, 32, 123, 125, 91, 93, 38, 42, 33, 124, 62]) : r.int(256);
      return { kind: 'garbage', file: `g${ext}`, text: b.toString('utf8') };
    }
  }
}

/** Where the agent may point: the test's own paths only. */
export interface ArgvContext {
  manifests: string;
  /** cgroups the test created (the agent may attach there). */
  cgroups: readonly string[];
  /** bpffs folders of the test (under its lab folder). */
  bpffs: readonly string[];
  /** A scratch folder for sockets and files (not bpffs, not a cgroup). */
  scratch: string;
}

const BAD_VALUES = ['', '-1', '-', '--', '0', 'relative/path', '/proc/self', '/proc/kernway.sock', '/dev/null', '\u00e9\u0000x', 'x'.repeat(300),
  '999999999999', '[::1:80', 'foo:80', ':99999', 'on', 'off', 'maybe', '10.96.0.0/12,10.0.0.0/8', 'not a cidr'];

/**
 * `kernway agent ...` arguments. --cgroup is always given, and only ever names one of the
 * test's cgroups or a path that is not a cgroup: the default (the machine's root cgroup)
 * is never reached.
 */
export function agentArgv(r: Rng, c: ArgvContext): string[] {
  const cgroupValues = [...c.cgroups, c.scratch, `${c.scratch}/nope`, 'relative'];
  const bpffsValues = [...c.bpffs, `${c.scratch}/not-bpffs`, `${c.bpffs[0]}/a/b`, '/dev/null'];
  const socketValues = [`${c.scratch}/a.sock`, `${c.scratch}/${'x'.repeat(120)}.sock`, `${c.scratch}/file.yaml`, '/proc/a.sock'];
  // Ours first, always: a later --cgroup, --bpffs or --admin-socket is refused as repeated,
  // so the defaults (the machine's root cgroup, /sys/fs/bpf/kernway, /run/kernway) are never reached.
  const args: string[] = ['agent', '--cgroup', r.pick(cgroupValues), '--bpffs', r.pick(bpffsValues), '--admin-socket', r.pick(socketValues)];
  const good: Record<string, () => string> = {
    '--standalone': () => r.pick([c.manifests, `${c.manifests}/typo`, `${c.scratch}/file.yaml`, '/proc', c.scratch]),
    '--node-name': () => r.pick(['node-a', 'Bad_Name', '']),
    '--bpffs': () => r.pick(bpffsValues),
    '--admin-socket': () => r.pick(socketValues),
    '--metrics-address': () => r.pick(['127.0.0.1:0', 'localhost:0', '[::1]:0', '0.0.0.0:99999', '127.0.0.1:1']),
    '--sockmap': () => r.pick(['on', 'off']),
    '--service-cidr': () => r.pick(['10.96.0.0/12', '10.96.0.0/12,fd00:10:96::/112', '10.200.0.0/16']),
  };
  const names = Object.keys(good);
  // Half the runs get only well-formed options (their values may still name bad paths), so
  // that starts reach the path checks and the kernel, not only the option parser.
  const wellFormed = r.int(2) === 0;
  const chosen = wellFormed ? names.filter((n) => n !== '--bpffs' && n !== '--admin-socket' && r.int(3) !== 0) : Array.from({ length: r.int(8) }, () => r.pick(names));
  for (const name of chosen) {
    const what = wellFormed ? 9 : r.int(10);
    if (what === 0) args.push(r.pick(['--bogus', '-x', '--help=no', 'positional', '--standalone=']));
    else {
      args.push(name);
      if (what !== 1) args.push(what === 2 ? r.pick(BAD_VALUES) : good[name]!());
    }
  }
  if (wellFormed && !chosen.includes('--standalone')) args.push('--standalone', c.manifests);
  // Never the root cgroup, a real bpffs folder or socket: a value after --cgroup, --bpffs or
  // --admin-socket is always one of ours (a missing value would let the default in).
  const ours: Record<string, readonly string[]> = {
    '--cgroup': cgroupValues,
    '--bpffs': bpffsValues,
  };
  for (let i = 0; i < args.length; i++) {
    const allowed = ours[args[i]!];
    if (allowed && (i + 1 >= args.length || !allowed.includes(args[i + 1]!))) args.splice(i + 1, i + 1 >= args.length ? 0 : 1, allowed[0]!);
    if (args[i] === '--admin-socket' && (i + 1 >= args.length || !args[i + 1]!.startsWith(c.scratch) && !args[i + 1]!.startsWith('/proc/'))) args.splice(i + 1, i + 1 >= args.length ? 0 : 1, `${c.scratch}/a.sock`);
  }
  if (!args.includes('--metrics-address')) args.push('--metrics-address', '127.0.0.1:0');
  return args;
}
