/**
 * YAML documents with bounded work (issue 19), parsed one at a time (issue 10):
 *
 * - Linear in the input: the `yaml` package's own duplicate-key check (`uniqueKeys`)
 *   compares each key with every earlier key of its mapping (quadratic: 14 s for a 1 MB
 *   mapping, measured in bench/manifest-fuzz.ts); it is switched off and replaced by one
 *   Set per mapping. Duplicate keys are still refused, as the API server refuses them.
 * - Documents over a size limit are refused before they are converted to objects.
 * - Large texts are parsed in a worker thread (YamlWorker), with a time budget: the
 *   agent's event loop keeps answering health probes and signals while a big file is
 *   parsed, and a parse over budget is abandoned (the worker is terminated).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import * as YAML from 'yaml';
import { KernwayError } from '../common/errors.js';

/** One document of a file: its plain value, or what is wrong with it. */
export interface RawDoc {
  index: number;
  value?: unknown;
  /** A syntax error (first line of the parser's message), a duplicate key, or a conversion error. */
  error?: string;
  line?: number;
  col?: number;
  /** Set when the document is over the size limit (its size in bytes, UTF-16 units). */
  tooLarge?: number;
}

/**
 * Parses every document of `text`. Self-contained on purpose: its source text also runs
 * in the worker (YamlWorker), with the worker's own copy of the `yaml` module.
 */
export function parseYamlDocs(yaml: typeof YAML, text: string, maxDocBytes: number): RawDoc[] {
  const out: RawDoc[] = [];
  // One document at a time: the parser and composer are generators, so each document's
  // syntax tree is converted to a plain value and dropped before the next is built.
  const lines = new yaml.LineCounter();
  const composer = new yaml.Composer({ uniqueKeys: false });
  const lineOf = (offset: number): { line: number; col: number } => lines.linePos(offset);
  let i = -1;
  for (const doc of composer.compose(new yaml.Parser(lines.addNewLine).parse(text))) {
    i++;
    if (doc.errors.length > 0) {
      // The first error only: the ones after it are mostly its consequences.
      const err = doc.errors[0]!;
      const r: RawDoc = { index: i, error: err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '') };
      if (err.pos[0] >= 0) Object.assign(r, lineOf(err.pos[0]));
      out.push(r);
      continue;
    }
    const size = doc.range ? doc.range[2] - doc.range[0] : 0;
    if (size > maxDocBytes) { out.push({ index: i, tooLarge: size }); continue; }
    let dup: { key: string; offset: number } | undefined;
    yaml.visit(doc, {
      Map(_key, map) {
        const seen = new Set<string>();
        for (const pair of map.items) {
          const k = pair.key;
          if (!yaml.isScalar(k)) continue;
          const key = String(k.value);
          if (seen.has(key)) { dup = { key, offset: k.range?.[0] ?? 0 }; return yaml.visit.BREAK; }
          seen.add(key);
        }
        return undefined;
      },
    });
    if (dup) {
      out.push({ index: i, error: `map keys must be unique: ${JSON.stringify(dup.key)} appears more than once`, ...lineOf(dup.offset) });
      continue;
    }
    try {
      out.push({ index: i, value: doc.toJS({ maxAliasCount: 100 }) as unknown });
    } catch (e) {
      out.push({ index: i, error: (e as Error).message });
    }
  }
  return out;
}

/** Texts up to this size are parsed on the calling thread (a few ms); larger ones in the worker. */
export const IN_THREAD_MAX_CHARS = 128 * 1024;

interface Pending { resolve: (d: RawDoc[]) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }

/** One worker thread parsing YAML texts in turn; terminated (and replaced on demand) when a parse runs over budget. */
export class YamlWorker {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  parse(text: string, maxDocBytes: number, budgetMs: number, what: string): Promise<RawDoc[]> {
    const w = this.start();
    const id = this.nextId++;
    w.ref();
    return new Promise<RawDoc[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new KernwayError('KW_MANIFEST_TOO_SLOW', `${what}: parsing took longer than ${budgetMs} ms; abandoned (split the file)`));
        this.kill();
      }, budgetMs);
      this.pending.set(id, { resolve, reject, timer });
      w.postMessage({ id, text, maxDocBytes });
    });
  }

  /** Stops the worker; pending parses fail. */
  close(): void {
    this.kill();
  }

  /**
   * Stops the worker if no parse is pending; the next large text starts one again. An idle
   * worker is a whole V8 isolate with its own copy of `yaml`: the agent that read one 1.7 MB
   * file of 10,000 Services kept ≈ 17 MiB more RSS for good (docs/agent-model.md).
   */
  async release(): Promise<void> {
    const w = this.worker;
    if (!w || this.pending.size > 0) return;
    this.worker = undefined;
    await w.terminate();
  }

  /** Whether a worker thread is running (for tests). */
  get running(): boolean {
    return this.worker !== undefined;
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const yamlPath = createRequire(import.meta.url).resolve('yaml');
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const yaml = require(workerData.yamlPath);
      const parseYamlDocs = (${parseYamlDocs.toString()});
      parentPort.on('message', (m) => {
        let r;
        try { r = { id: m.id, docs: parseYamlDocs(yaml, m.text, m.maxDocBytes) }; }
        catch (e) { r = { id: m.id, fail: String((e && e.message) || e) }; }
        parentPort.postMessage(r);
      });`;
    const w = new Worker(code, { eval: true, workerData: { yamlPath } });
    w.unref();
    w.on('message', (m: { id: number; docs?: RawDoc[]; fail?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (this.pending.size === 0) w.unref();
      if (m.docs) p.resolve(m.docs); else p.reject(new Error(m.fail ?? 'the YAML worker failed'));
    });
    // A worker already replaced (released, killed) fails nothing: the pending parses are its successor's.
    w.on('error', (e) => { if (this.worker !== w) return; this.failAll(e); this.worker = undefined; });
    w.on('exit', () => { if (this.worker !== w) return; this.failAll(new Error('the YAML worker exited')); this.worker = undefined; });
    this.worker = w;
    return w;
  }

  private kill(): void {
    const w = this.worker;
    this.worker = undefined;
    this.failAll(new Error('the YAML worker was stopped'));
    void w?.terminate();
  }

  private failAll(e: Error): void {
    for (const [id, p] of this.pending) { clearTimeout(p.timer); this.pending.delete(id); p.reject(e); }
  }
}

export { YAML };
