/**
 * `kernway lab up [--nodes N] [--kube-proxy] | exec [-n NS] [-c CONTAINER] POD -- CMD... | down`:
 * a Kubernetes cluster on this machine to try kernway in (docs/lab.md). `up` starts a
 * background process that owns the cluster (`kernway lab serve`, its state in
 * /run/kernway/lab.json) and prints the kubeconfig; `down` stops it and removes everything.
 * `kernway lab kubelet CONFIG` is the lab kubelet of one node (started by the cluster).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { KernwayError, errorMessage } from '../common/errors.js';
import { joinNegativeValues } from '../common/args.js';
import type { Command } from './command.js';

const LAB_OPTIONS = { nodes: { type: 'string' }, 'kube-proxy': { type: 'boolean' } } as const;

const USAGE = 'kernway lab up [--nodes N] [--kube-proxy] | kernway lab exec [-n NAMESPACE] [-c CONTAINER] POD -- CMD [ARGS...] | kernway lab down';
export const LAB_STATE = process.env.KERNWAY_LAB_STATE ?? '/run/kernway/lab.json';

interface LabState { pid: number; kubeconfig: string; dir: string; server: string; nodes: Array<{ name: string }>; timingsMs: Record<string, number> }

function readState(): LabState | undefined {
  try {
    return JSON.parse(readFileSync(LAB_STATE, 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

function parseNodes(v: string | undefined): number {
  const n = Number(v ?? '2');
  if (!Number.isInteger(n) || n < 1 || n > 8) throw new KernwayError('KW_INVALID_ARGUMENT', `--nodes: expected an integer from 1 to 8, got ${JSON.stringify(v)}`);
  return n;
}

async function up(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: joinNegativeValues(argv, LAB_OPTIONS), strict: true, options: LAB_OPTIONS });
  const nodes = parseNodes(values.nodes);
  const st = readState();
  if (st && alive(st.pid)) {
    throw new KernwayError('KW_LAB_RUNNING', `a lab cluster is already running (pid ${st.pid}); use it (export KUBECONFIG=${st.kubeconfig}) or run 'kernway lab down' first`);
  }
  rmSync(LAB_STATE, { force: true });
  mkdirSync(dirname(LAB_STATE), { recursive: true, mode: 0o700 });
  const logPath = join(dirname(LAB_STATE), 'lab.log');
  const fd = openSync(logPath, 'w');
  const main = join(dirname(fileURLToPath(import.meta.url)), 'main.js');
  const child = spawn(process.execPath, [main, 'lab', 'serve', `--nodes=${nodes}`, ...(values['kube-proxy'] ? ['--kube-proxy'] : [])], {
    detached: true, stdio: ['ignore', fd, fd], env: process.env,
  });
  closeSync(fd);
  const exited = new Promise<number>((r) => child.once('exit', (code) => r(code ?? 1)));
  child.unref();
  for (;;) {
    const s = readState();
    if (s && s.pid === child.pid) {
      console.log(`# kernway lab: ${s.nodes.length} node(s), API server ${s.server}, started in ${(s.timingsMs.total! / 1000).toFixed(1)} s`);
      console.log(`# logs and pod output under ${s.dir}; stop with: kernway lab down`);
      console.log(`export KUBECONFIG=${s.kubeconfig}`);
      return 0;
    }
    const r = await Promise.race([exited, new Promise<undefined>((res) => setTimeout(() => res(undefined), 100))]);
    if (r !== undefined) {
      const tail = readFileSync(logPath, 'utf8').trim().split('\n').slice(-5).join('\n');
      throw new KernwayError('KW_LAB_START', `the lab cluster did not start (exit ${r}); ${logPath}:\n${tail}`);
    }
  }
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: joinNegativeValues(argv, LAB_OPTIONS), strict: true, options: LAB_OPTIONS });
  const { Cluster } = await import('../lab/cluster/index.js');
  const { sweepLeftovers } = await import('../lab/sweep.js');
  await sweepLeftovers();
  const cluster = await Cluster.start({ tag: 'lab', nodes: parseNodes(values.nodes), kubeProxy: values['kube-proxy'] === true });
  let stopping = false;
  const done = new Promise<void>((resolve) => {
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      void cluster.stop().finally(() => { rmSync(LAB_STATE, { force: true }); resolve(); });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  writeFileSync(LAB_STATE, JSON.stringify(cluster.describe(), null, 2) + '\n', { mode: 0o600 });
  console.log(JSON.stringify({ msg: 'lab cluster up', ...cluster.describe() }));
  await done;
  return 0;
}

async function down(): Promise<number> {
  const st = readState();
  if (!st || !alive(st.pid)) {
    rmSync(LAB_STATE, { force: true });
    const { sweepLeftovers } = await import('../lab/sweep.js');
    const swept = await sweepLeftovers();
    console.log(`kernway lab: no lab cluster running; swept ${swept.cgroups.length + swept.netns.length + swept.bpffs.length} leftover(s)`);
    return 0;
  }
  process.kill(st.pid, 'SIGTERM');
  const deadline = Date.now() + 60_000;
  while (alive(st.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (alive(st.pid)) throw new KernwayError('KW_LAB_STOP', `the lab cluster (pid ${st.pid}) did not stop within 60 s`);
  console.log('kernway lab: stopped and removed');
  return 0;
}

async function exec(argv: string[]): Promise<number> {
  const sep = argv.indexOf('--');
  if (sep < 0 || sep === argv.length - 1) throw new KernwayError('KW_INVALID_ARGUMENT', `kernway lab exec: expected POD -- CMD [ARGS...]\nusage: ${USAGE}`);
  const { values, positionals } = parseArgs({
    args: argv.slice(0, sep), strict: true, allowPositionals: true,
    options: { namespace: { type: 'string', short: 'n' }, container: { type: 'string', short: 'c' } },
  });
  if (positionals.length !== 1) throw new KernwayError('KW_INVALID_ARGUMENT', `kernway lab exec: expected one POD before --, got ${positionals.length}`);
  const st = readState();
  if (!st || !alive(st.pid)) throw new KernwayError('KW_LAB_NOT_RUNNING', "no lab cluster is running; start one with 'kernway lab up'");
  const { KubeApi, credentialsFromKubeconfig } = await import('../lab/cluster/kube-api.js');
  const { execInPod } = await import('../lab/cluster/exec.js');
  const api = new KubeApi(credentialsFromKubeconfig(st.kubeconfig));
  try {
    const child = await execInPod(api, values.namespace ?? 'default', positionals[0]!, values.container, argv.slice(sep + 1), { stdio: 'inherit' });
    return await new Promise<number>((r) => child.once('exit', (code, sig) => r(code ?? (sig ? 128 : 1))));
  } finally {
    api.close();
  }
}

export const command: Command = {
  summary: 'a Kubernetes cluster on this machine: lab up [--nodes N], lab exec POD -- CMD, lab down',
  usage: USAGE,
  async run(argv) {
    const [sub, ...rest] = argv;
    try {
      switch (sub) {
        case 'up': return await up(rest);
        case 'down': return await down();
        case 'exec': return await exec(rest);
        case 'serve': return await serve(rest);
        case 'kubelet': {
          if (rest.length !== 1 || !existsSync(rest[0]!)) throw new KernwayError('KW_INVALID_ARGUMENT', 'kernway lab kubelet: expected the path of a kubelet config file');
          const { runKubelet } = await import('../lab/cluster/kubelet.js');
          return await runKubelet(rest[0]!);
        }
        default:
          console.error(`kernway lab: expected up, exec or down, got ${JSON.stringify(sub ?? '')}\nusage: ${USAGE}`);
          return 2;
      }
    } catch (e) {
      if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        console.error(`kernway lab: ${errorMessage(e)}\nusage: ${USAGE}`);
        return 2;
      }
      throw e;
    }
  },
};
