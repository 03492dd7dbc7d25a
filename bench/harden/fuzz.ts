/**
 * Fuzzing the manifest reader and the agent's command line (issue 19), for minutes:
 *
 *   node dist/bench/harden/fuzz.js [--minutes 3] [--seed 19]
 *
 * 1. The manifest reader, in this process: every input (bench/harden/fuzz-inputs.ts) is
 *    parsed and checked by the model and the agent's address checks; it must not throw,
 *    and the slowest input is reported (the bound: the reader's 20 s budget).
 * 2. `kernway agent` with seeded arguments against a lab (its own cgroup and bpffs folder),
 *    each run bounded (20 s): it must exit or run; after a refused start nothing may be
 *    attached to the cgroup or pinned under the bpffs folder (a start that succeeds is
 *    stopped and uninstalled).
 * Prints one JSON summary; exits 1 on any violation.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseManifestText } from '../../sources/manifest-parse.js';
import { validateObject } from '../../k8s/kinds.js';
import { addressProblems, parseServiceRange, DEFAULT_SERVICE_CIDR } from '../../k8s/service-range.js';
import { Lab } from '../../lab/index.js';
import { projectRoot } from '../../common/version.js';
import { agentArgv, manifestInput, Rng, type ArgvContext } from './fuzz-inputs.js';

/** `kernway ...args` (the built CLI), killed after timeoutMs. */
function runKernway(args: string[], opts: { timeoutMs: number }): Promise<{ code: number | null; stderr: string; ms: number; killed: boolean }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const c = spawn(process.execPath, [join(projectRoot(), 'dist', 'cli', 'main.js'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => { killed = true; c.kill('SIGKILL'); }, opts.timeoutMs);
    c.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    c.once('close', (code) => { clearTimeout(timer); resolve({ code, stderr, ms: Date.now() - t0, killed }); });
  });
}

export interface ManifestFuzzResult { inputs: number; failures: string[]; slowestMs: number; slowestKind: string; byKind: Record<string, number> }

/** Feeds `count` inputs (or until `deadline`, ms since epoch) to the reader and the checks. */
export function fuzzManifests(r: Rng, count: number, deadline = Infinity): ManifestFuzzResult {
  const range = parseServiceRange(DEFAULT_SERVICE_CIDR);
  const res: ManifestFuzzResult = { inputs: 0, failures: [], slowestMs: 0, slowestKind: '', byKind: {} };
  for (let i = 0; i < count && Date.now() < deadline; i++) {
    const input = manifestInput(r);
    const t0 = performance.now();
    try {
      const parsed = parseManifestText(input.file, input.text);
      for (const d of parsed.documents) {
        const src = { object: d.object, file: input.file, index: d.index };
        for (const p of [...validateObject(src), ...addressProblems(range, src)]) {
          if (typeof p.code !== 'string' || !p.code.startsWith('KW_') || typeof p.message !== 'string') throw new Error(`malformed problem ${JSON.stringify(p)}`);
        }
      }
      for (const p of parsed.problems) if (!p.code.startsWith('KW_')) throw new Error(`uncoded problem ${JSON.stringify(p)}`);
    } catch (e) {
      res.failures.push(`${input.kind} ${input.file} (${input.text.length} chars): ${(e as Error).stack ?? String(e)}`);
    }
    const ms = performance.now() - t0;
    if (ms > res.slowestMs) { res.slowestMs = ms; res.slowestKind = input.kind; }
    res.inputs++;
    res.byKind[input.kind] = (res.byKind[input.kind] ?? 0) + 1;
  }
  res.slowestMs = +res.slowestMs.toFixed(1);
  return res;
}

export interface AgentFuzzResult { runs: number; refused: number; started: number; failures: string[]; slowestMs: number; exitCodes: Record<string, number> }

/** Programs attached directly to a cgroup (bpftool). */
export function attachedTo(cgroup: string): unknown[] {
  const out = execFileSync('bpftool', ['cgroup', 'show', cgroup, '-j'], { encoding: 'utf8' }).trim();
  return out === '' ? [] : JSON.parse(out) as unknown[];
}

function entries(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir, { recursive: true }) as string[] : [];
}

/**
 * Runs `kernway agent` with seeded arguments. A run that starts (still running after the
 * bound, or ready) is stopped and uninstalled; one that exits with an error must leave
 * no program attached to the lab's cgroups and nothing under its bpffs folders.
 */
export async function fuzzAgentStarts(r: Rng, lab: Lab, scratch: string, count: number, deadline = Infinity): Promise<AgentFuzzResult> {
  const manifests = join(scratch, 'manifests');
  mkdirSync(manifests, { recursive: true });
  writeFileSync(join(manifests, 'web.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80 }] } }));
  writeFileSync(join(scratch, 'file.yaml'), 'x: 1\n');
  const ctx: ArgvContext = {
    manifests, scratch,
    cgroups: [lab.cgroupPath, join(lab.cgroupPath, 'node')],
    bpffs: [join(lab.bpffsDir, 'fuzz'), join(lab.bpffsDir, 'fuzz2')],
  };
  const res: AgentFuzzResult = { runs: 0, refused: 0, started: 0, failures: [], slowestMs: 0, exitCodes: {} };
  for (let i = 0; i < count && Date.now() < deadline; i++) {
    const argv = agentArgv(r, ctx);
    // Ready within the bound counts as started: the run is then killed by the timeout.
    const run = await runKernway(argv, { timeoutMs: 8000 });
    res.runs++;
    res.slowestMs = Math.max(res.slowestMs, run.ms);
    const key = run.killed ? 'running' : String(run.code);
    res.exitCodes[key] = (res.exitCodes[key] ?? 0) + 1;
    if (run.killed || run.code === 0) {
      res.started++;
      for (const b of ctx.bpffs) for (const cg of ctx.cgroups) await runKernway(['uninstall', '--cgroup', cg, '--bpffs', b], { timeoutMs: 20_000 });
    } else {
      res.refused++;
      if (!/KW_[A-Z_]+|usage:/.test(run.stderr)) res.failures.push(`no code or usage for ${JSON.stringify(argv)}: ${run.stderr.slice(0, 300)}`);
      for (const cg of ctx.cgroups) {
        const a = attachedTo(cg);
        if (a.length > 0) res.failures.push(`refused start left ${a.length} program(s) on ${cg}: ${JSON.stringify(argv)}`);
      }
      for (const b of ctx.bpffs) {
        const left = entries(b);
        if (left.length > 0) res.failures.push(`refused start left pins under ${b} (${left.join(', ')}): ${JSON.stringify(argv)}`);
      }
    }
    // Whatever happened, the next run starts clean.
    for (const b of ctx.bpffs) for (const cg of ctx.cgroups) {
      if (entries(b).length > 0 || attachedTo(cg).length > 0) await runKernway(['uninstall', '--cgroup', cg, '--bpffs', b], { timeoutMs: 20_000 });
    }
  }
  return res;
}

async function main(argv: string[]): Promise<number> {
  const arg = (name: string, def: number): number => { const i = argv.indexOf(name); return i >= 0 ? Number(argv[i + 1]) : def; };
  const minutes = arg('--minutes', 3);
  const seed = arg('--seed', 19);
  const r = new Rng(seed);
  const end = Date.now() + minutes * 60_000;
  const manifests = fuzzManifests(r, Infinity, Date.now() + (minutes * 60_000) / 2);
  const lab = await Lab.create({ tag: 'hfuzz' });
  const scratch = mkdtempSync(join(tmpdir(), 'kernway-fuzz-'));
  let agent: AgentFuzzResult;
  try {
    agent = await fuzzAgentStarts(r, lab, scratch, Infinity, end);
  } finally {
    await lab.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
  const summary = { seed, minutes, manifests: { ...manifests, failures: manifests.failures.slice(0, 10) }, agent: { ...agent, failures: agent.failures.slice(0, 10) } };
  console.log(JSON.stringify(summary, null, 2));
  return manifests.failures.length + agent.failures.length === 0 ? 0 : 1;
}

if (process.argv[1]?.endsWith('bench/harden/fuzz.js')) {
  main(process.argv.slice(2)).then((c) => { process.exitCode = c; }, (e: unknown) => { console.error(e); process.exitCode = 1; });
}
