/**
 * V8 heap behaviour of kernway's long-running processes, set from inside the process so
 * that it holds with default Node.js flags (a DaemonSet or a `kernway agent` run by hand
 * needs no NODE_OPTIONS).
 *
 * Node.js 24's V8 grows the young generation (the semi-spaces) up to 2 x 64 MiB while
 * objects survive scavenges — as they do when a model of 100,000 endpoints is built — and
 * does not give that memory back while the process is idle: measured, an agent holding
 * 10,000 Services x 10 endpoints sat at 252 MiB RSS of which 128 MiB was an empty young
 * generation (docs/agent-model.md). Keeping the semi-space growth factor at 1 keeps the
 * young generation at its initial size (1 MiB per semi-space): scavenges are more frequent
 * and promote more, which costs a little CPU at load and saves the 126 MiB for good.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let applied = false;

/** Keeps V8's young generation at its initial size from now on (idempotent). */
export function keepYoungGenerationSmall(): void {
  if (applied) return;
  setFlagsFromString('--semi-space-growth-factor=1');
  applied = true;
}

/**
 * V8 optimizes a function with TurboFan after about 3,000 calls (`--invocation-count-for-turbofan`,
 * scaled by its size). Until the waypoint's forwarding path is optimized so, 25-50 % of each
 * young generation survives its scavenge although nothing holds those requests' objects (a heap
 * snapshot taken then finds none; a full GC frees them): V8 keeps them across scavenges while
 * the code runs in its lower tiers, grows the young generation to its 2 x 64 MiB for the
 * survivors, and each scavenge then copies 10-28 MB, pausing the process 15-150 ms under load.
 * Measured (docs/waypoint-bench.md, "Stalls"): that phase lasts the first 12,000-15,000
 * requests, longer when the machine is loaded (TurboFan compiles on a background thread) and
 * again after a deoptimization; afterwards the same scavenges keep less than 0.1 MB. Waypoints
 * with no route answering locally (no backend) never enter it.
 *
 * From 500 calls, TurboFan takes the path within the first few thousand requests, before the
 * young generation has grown: one such scavenge in three runs copied more than 1 MB.
 */
export const TURBOFAN_AFTER_CALLS = 500;

let tieringApplied = false;

/** Hot functions are optimized with TurboFan after TURBOFAN_AFTER_CALLS calls instead of V8's 3,000 (idempotent). */
export function optimizeHotCodeSooner(): void {
  if (tieringApplied) return;
  setFlagsFromString(`--invocation-count-for-turbofan=${TURBOFAN_AFTER_CALLS}`);
  tieringApplied = true;
}

/**
 * After a burst (a first sync that read, parsed and dropped the whole state), V8 keeps the
 * old generation as the burst left it: pages of dead objects and half-empty pages, which
 * its memory reducer gives back only after minutes of idleness, if ever (measured: the
 * agent holding 10,000 Services x 10 endpoints idled at heap total 89 MiB for 49 MiB live).
 * A "last resort" major GC (the one V8 runs before failing an allocation: mark-compact
 * repeated until nothing more is freed, pages compacted and released) gives them back at
 * once; it takes a few hundred ms on that heap, so call it after a burst, not per change.
 *
 * Node.js exposes no such call without `--expose-gc`; the flag is set from inside the
 * process for the time it takes to fetch `gc` from a fresh context, then cleared again (as
 * Jest's leak detector does), so the process still runs with default flags and its own
 * global has no `gc`.
 */
/**
 * V8's top tier, TurboFan, is ~5 MiB of the node binary's code: once it compiles anything
 * (the ESM loader's and the parsers' hot functions already do while an agent imports its
 * modules) those pages count in the process's RSS for good. Measured on the agent's model
 * of 10,000 Services x 10 endpoints (docs/agent-model.md): file pages 49.6 -> 44.4 MiB.
 * Maglev, the mid tier, stays: the agent's hot code (parse, model, plans) still gets
 * optimised, at a cost in CPU measured in the same page.
 *
 * Sparkplug, the baseline tier (bytecode turned into machine code after ~1,000 calls, ahead
 * of Maglev), is left out as well: its code is anonymous memory, ~1 MiB of the agent's for
 * the functions its sync and scrapes ran. Measured on the agent on the API with 10,000
 * Services x 10 endpoints (bench/kube-api --ab, same run, docs/kubernetes-api.md
 * "Thirteenth session"): JIT code 1.5-1.6 -> 0.6-0.7 MiB, RSS between scrapes 79.8-80.4 ->
 * 78.2-79.1 MiB; first sync's CPU and change latency unchanged within the run's noise.
 *
 * Set from inside the process, so the agent keeps default Node.js flags; it must run before
 * the modules are imported (set after, it saves nothing: TurboFan has already run), so
 * `kernway agent`'s loader in cli/main.ts calls it first. Idempotent.
 *
 * `builtins` (e.g. 'node:http') are loaded first: a built-in module loaded once any V8 flag
 * differs from node's build is compiled from its source instead of node's embedded code cache
 * (cli/agent-builtins.ts; measured 0.85-1.2 MiB of RSS for the agent's).
 */
let tiersApplied = false;
export function leaveOutTurbofanAndSparkplug(builtins: readonly string[] = []): void {
  if (tiersApplied) return;
  for (const m of builtins) process.getBuiltinModule(m);
  setFlagsFromString('--no-turbofan');
  setFlagsFromString('--no-sparkplug');
  tiersApplied = true;
}

let collect: ((o: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void) | undefined;

/**
 * Runs a compacting full GC that returns freed heap pages to the OS; returns its duration in ms.
 *
 * `flushCode`: the same GC also drops the bytecode of every function not running now (V8's
 * code flushing, forced for this one GC: `--stress-flush-code`, set and cleared around it as
 * `--expose-gc` above). V8 flushes a function's bytecode by itself only after it went unused
 * through 6 major GCs (`--bytecode-old-age`), which an idle process does not run: start-up
 * code (option checks, loaders, the first build) otherwise keeps its bytecode, feedback and
 * source positions for good. Measured on the agent with an empty manifest directory
 * (docs/agent-model.md, "Ninth session"): bytecode 0.93 -> 0.23 MiB, heap used -1.2 MiB. A
 * flushed function still works: its next call compiles it again, lazily, as at its first.
 */
export function compactHeap(opts: { flushCode?: boolean } = {}): number {
  if (!collect) {
    setFlagsFromString('--expose-gc');
    try {
      collect = runInNewContext('gc') as typeof collect;
    } finally {
      setFlagsFromString('--no-expose-gc');
    }
  }
  const t0 = performance.now();
  if (opts.flushCode) setFlagsFromString('--stress-flush-code');
  try {
    collect!({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  } finally {
    if (opts.flushCode) setFlagsFromString('--no-stress-flush-code');
  }
  return performance.now() - t0;
}

/** Committed bytes of V8's young generation (new space and, in V8's newer layouts, its large-object space). */
export function youngGenerationBytes(): number {
  let n = 0;
  for (const s of getHeapSpaceStatistics()) if (s.space_name === 'new_space' || s.space_name === 'new_large_object_space') n += s.space_size;
  return n;
}
