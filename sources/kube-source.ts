/**
 * The Kubernetes API as a Source (`kernway agent --kubeconfig PATH`, or in a pod the
 * in-cluster configuration). One reflector per kind of the registry (k8s/kinds.ts):
 *
 * - discovery picks the version the server serves (EndpointSlice discovery.k8s.io/v1, or
 *   v1beta1 on servers without v1, converted on arrival); a kind the server does not serve
 *   (its CRD is not installed) is a problem (KW_KUBE_KIND_MISSING), counts as synced and
 *   empty, and is looked for again until it appears;
 * - a paginated list (limit/continue), then a watch from its resourceVersion with
 *   bookmarks and a server timeout; an expired resourceVersion (410 Gone) relists;
 * - any other failure (connection refused or reset, 5xx, 403) retries with exponential
 *   backoff and full jitter, never giving up; while the API server is unreachable a
 *   problem (KW_KUBE_UNREACHABLE) says since when;
 * - every object is checked and turned into its slim stub on arrival (only its
 *   resourceVersion and stub are kept, never the whole object); Pods are cut down before
 *   that to what identities need (this node's pods keep their annotations).
 *
 * Batches: nothing is delivered before every kind has listed once; then one batch holds
 * the whole state (synced). After that, what changed is delivered as it changes, coalesced
 * over a few milliseconds; a relist delivers only the difference between what the consumer
 * had and what the API server lists (what vanished is deleted, what is unchanged is not
 * delivered at all), so the kernel is reconciled entry by entry and never flushed.
 */
import { errorMessage } from '../common/errors.js';
import { compactHeap } from '../common/heap.js';
import type { Logger } from '../common/log.js';
import { KeyedTable } from '../k8s/keyed-table.js';
import { KINDS, slimVersioned, stubKey, validateObject, type KindInfo } from '../k8s/kinds.js';
import type { K8sObject, Problem, SourcedObject } from '../k8s/types.js';
import { KubeClient, KubeHttpError, loadKubeConfig, type KubeConfigOrigin } from './kube-config.js';
import type { ObjectValidator } from './manifest-dir.js';
import type { Source, SourceBatch } from './source.js';

/** Services (and their EndpointSlices) handed to another proxy are not kernway's (as kube-proxy). */
export const SERVICE_PROXY_NAME = 'service.kubernetes.io/service-proxy-name';

/**
 * Objects per list page. A page is parsed whole (JSON.parse of the answer) and its objects
 * live until they are slimmed; with V8's young generation kept at 1 MiB (common/heap.ts) a
 * page of 500 EndpointSlices (~0.6 MB of JSON, several MB parsed) is promoted and left as
 * old-generation garbage: measured with 10,000 Services x 10 endpoints, peak RSS 197 MiB
 * with pages of 500, 160 MiB with pages of 100 (the post-sync model build's own peak; the
 * manifest directory's is 154), first list 10.4 -> 17.5 s at load ~20 (more requests).
 */
const PAGE_SIZE = 200;

/** Versions read beyond the registry's (which lists what manifests may use), converted on arrival. */
const EXTRA_VERSIONS: Partial<Record<string, readonly string[]>> = { EndpointSlice: ['v1beta1'] };

export interface KubeSourceOptions {
  /** --kubeconfig PATH; else KUBECONFIG, ~/.kube/config or the in-cluster configuration. */
  kubeconfig?: string | undefined;
  /** This node: its pods keep their annotations (others only kernway.io/ ones). */
  nodeName: string;
  log?: Logger | undefined;
  /** More checks than the registry's: an object with problems is not delivered. */
  validate?: ObjectValidator | undefined;
  /** Objects per list page (default PAGE_SIZE). */
  pageSize?: number;
  /** The watch's server timeout, s (default 300, each watch up to 20% longer at random). */
  watchTimeoutSeconds?: number;
  /** Retry backoff: first delay and cap, ms (default 250 and 30000), full jitter. */
  backoff?: { initialMs: number; maxMs: number };
  /** Changes are coalesced this long before a batch is delivered, ms (default 5). */
  batchMs?: number;
  /** How often a kind the server does not serve is looked for again, ms (default 10000). */
  missingRetryMs?: number;
  /** The process's environment (tests). */
  env?: NodeJS.ProcessEnv;
}

export interface KubeKindStatus {
  kind: string;
  /** 'group/version' read, or undefined while unknown or missing. */
  apiVersion?: string;
  state: 'discovering' | 'listing' | 'watching' | 'missing' | 'retrying';
  objects: number;
  /** Lists after the first (410 Gone, or a reconnection that needed one). */
  relists: number;
  /** Watches opened. */
  watches: number;
  lastError?: string;
  /** Why the last relist was needed (the 410's message). */
  lastRelistReason?: string;
}

export interface KubeSourceStatus {
  server: string;
  config: KubeConfigOrigin;
  /** How the API is read: 'HTTP/2, JSON' or 'HTTP/1.1, JSON' (absent before the first request). */
  protocol?: string;
  synced: boolean;
  /** Since when the API server cannot be reached (ISO time), absent while it can. */
  unreachableSince?: string;
  kinds: KubeKindStatus[];
}

/**
 * What a reflector keeps per object: its resourceVersion (to skip what a relist or a watch
 * repeats) and its slim form as delivered (the stub and where it came from: the entry is
 * the SourcedObject the consumer gets) or its problems. A numeric resourceVersion (etcd's)
 * is kept as a number: compared for equality only, as the API conventions allow, and free
 * of a string per object. What the consumer has under a key is the entry's slim form,
 * except for the keys changed since the last batch (Reflector.dirty).
 */
type Entry = Delivered | Troubled;
interface Delivered extends SourcedObject { rv: string | number }
interface Troubled { key: string; rv: string | number; problems: Problem[] }

/** An entry's key ('namespace/name'): a stub's is read from its slim value (k8s/kinds.ts stubKey), so the reflector keeps no key string. */
function entryKey(e: Entry): string {
  return 'problems' in e ? e.key : stubKey(e)!;
}

/** The slim form an entry delivers (undefined: it has problems, or there is none). */
function delivered(e: Entry | undefined): SourcedObject | undefined {
  return e !== undefined && 'object' in e ? e : undefined;
}

/** resourceVersion as kept: a number when it is a plain decimal one (within double precision), else the string. */
function rvOf(o: K8sObject): string | number {
  const s = String(o.metadata?.resourceVersion ?? '');
  return /^[1-9]\d{0,14}$/.test(s) ? Number(s) : s;
}

interface WatchEvent { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'; object: Record<string, unknown> }

class Expired extends Error {}
class Closed extends Error {}

const sleep = (ms: number, signal: AbortSignal): Promise<void> => new Promise((resolve, reject) => {
  if (signal.aborted) { reject(new Closed()); return; }
  const t = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
  const onAbort = (): void => { clearTimeout(t); reject(new Closed()); };
  signal.addEventListener('abort', onAbort, { once: true });
});

/** A network failure or a server error: the API server is not reachable (as opposed to 403, 404, a bad object). */
function unreachable(e: unknown): boolean {
  if (e instanceof KubeHttpError) return e.status >= 500 || e.status === 429;
  return !(e instanceof Expired) && !(e instanceof Closed);
}

export class KubeSource implements Source {
  readonly description: string;
  readonly client: KubeClient;
  private readonly log: Logger | undefined;
  private readonly ctl = new AbortController();
  private readonly reflectors: Reflector[];
  private onBatch: ((b: SourceBatch) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private synced = false;
  private resolveSynced: (() => void) | undefined;
  private lastProblems = '';
  unreachableSince: Date | undefined;
  private unreachableError = '';
  private startedAt = 0;
  /** How long the consumer took with the last batch, and when it finished (the next batch starts at least that long after). */
  private lastBatchMs = 0;
  private lastBatchEnd = 0;

  constructor(readonly opts: KubeSourceOptions) {
    this.client = new KubeClient(loadKubeConfig(opts.kubeconfig, opts.env));
    this.log = opts.log;
    this.description = `Kubernetes API ${this.client.server} (${this.client.loaded.origin} configuration)`;
    this.reflectors = KINDS.map((k) => new Reflector(this, k));
  }

  async start(onBatch: (batch: SourceBatch) => void): Promise<void> {
    this.onBatch = onBatch;
    this.startedAt = performance.now();
    const synced = new Promise<void>((r) => (this.resolveSynced = r));
    for (const r of this.reflectors) void r.run();
    await Promise.race([synced, new Promise<void>((r) => this.ctl.signal.addEventListener('abort', () => r(), { once: true }))]);
  }

  close(): void {
    this.ctl.abort();
    if (this.timer) clearTimeout(this.timer);
    this.onBatch = undefined;
  }

  get signal(): AbortSignal {
    return this.ctl.signal;
  }

  status(): KubeSourceStatus {
    const st: KubeSourceStatus = { server: this.client.server, config: this.client.loaded.origin, synced: this.synced, kinds: this.reflectors.map((r) => r.status()) };
    if (this.client.protocol) st.protocol = `${this.client.protocol}, JSON`;
    if (this.unreachableSince) st.unreachableSince = this.unreachableSince.toISOString();
    return st;
  }

  // ---- called by the reflectors

  logger(): Logger | undefined {
    return this.log;
  }

  /** A request failed (e) or succeeded (undefined): tracks since when the API server is unreachable. */
  reachability(e: unknown): void {
    if (e === undefined) {
      if (this.unreachableSince) {
        this.log?.info({ server: this.client.server, since: this.unreachableSince.toISOString(), seconds: Math.round((Date.now() - this.unreachableSince.getTime()) / 1000) }, 'the API server is reachable again');
        this.unreachableSince = undefined;
        this.changed();
      }
      return;
    }
    if (!unreachable(e)) return;
    this.unreachableError = errorMessage(e);
    if (!this.unreachableSince) {
      this.unreachableSince = new Date();
      this.log?.warn({ server: this.client.server, err: this.unreachableError }, 'the API server is unreachable; the datapath keeps the last state');
      this.changed();
    }
  }

  /** Something changed in a reflector (its objects, marked dirty there, or its problems). */
  changed(): void {
    if (!this.synced) {
      if (!this.reflectors.every((r) => r.synced)) return;
      this.synced = true;
      // The lists' garbage (parsed pages) is collected before the consumer builds its model
      // from the first batch, so that the build's own garbage does not come on top of it.
      compactHeap();
      const objects = this.flush();
      this.log?.info({ ms: Math.round(performance.now() - this.startedAt), objects,
        kinds: Object.fromEntries(this.reflectors.map((r) => [r.info.kind, r.items.size])) }, 'Kubernetes API synced: every kind listed once');
      this.resolveSynced?.();
      return;
    }
    // Coalesce: at least batchMs; and between two batches at least as long a pause as the
    // consumer took with the last one, so that a burst (thousands of Pods) is not applied one
    // costly batch per event. The pause counts from the end of the last batch: a change after
    // a quiet spell waits batchMs only.
    if (!this.timer) {
      const pause = Math.min(this.lastBatchMs, 1000) - (performance.now() - this.lastBatchEnd);
      this.timer = setTimeout(() => this.flush(), Math.max(this.opts.batchMs ?? 5, pause));
    }
  }

  private problems(): Problem[] {
    const out: Problem[] = [];
    if (this.unreachableSince) {
      out.push({ code: 'KW_KUBE_UNREACHABLE', file: this.client.server,
        message: `the API server is unreachable since ${this.unreachableSince.toISOString()} (${this.unreachableError}); the datapath keeps the last state and changes arrive when it is back` });
    }
    for (const r of this.reflectors) r.problems(out);
    return out;
  }

  /** Delivers what changed since the last batch; returns how many objects were upserted. */
  private flush(): number {
    this.timer = undefined;
    if (!this.onBatch || this.ctl.signal.aborted) return 0;
    const upserted: SourcedObject[] = [];
    const deleted: SourcedObject[] = [];
    for (const r of this.reflectors) r.drain(upserted, deleted);
    const problems = this.problems();
    const digest = JSON.stringify(problems);
    if (upserted.length === 0 && deleted.length === 0 && digest === this.lastProblems && this.lastProblems !== '') return 0;
    this.lastProblems = digest;
    const t0 = performance.now();
    this.onBatch({ upserted, deleted, problems, synced: true });
    this.lastBatchEnd = performance.now();
    this.lastBatchMs = this.lastBatchEnd - t0;
    return upserted.length;
  }
}

/** List+watch of one kind. */
class Reflector {
  /**
   * Entries by 'namespace/name', each holding its key (k8s/keyed-table.ts): one word per slot
   * where a Map keeps 3.5 and a key string (10,000 EndpointSlices: 128 KiB instead of 448).
   * The key is the string the model keys the object by (its slim value's key): one string
   * per object for both.
   */
  readonly items = new KeyedTable<Entry>(entryKey);
  /** Keys of the items with problems (so a batch does not walk every item to collect them). */
  private readonly troubled = new Set<string>();
  /** Keys changed since the last batch, with what the consumer had under each before the first of those changes. */
  private readonly dirty = new Map<string, SourcedObject | undefined>();
  synced = false;
  private apiVersion: string | undefined;
  private path: string | undefined;
  private rv = '';
  private state: KubeKindStatus['state'] = 'discovering';
  private relists = 0;
  private watches = 0;
  private lists = 0;
  private lastError: string | undefined;
  private missing = false;
  private problem: Problem | undefined;
  private failures = 0;
  private relistReason = '';

  constructor(private readonly src: KubeSource, readonly info: KindInfo) {}

  status(): KubeKindStatus {
    const st: KubeKindStatus = { kind: this.info.kind, state: this.state, objects: this.items.size, relists: this.relists, watches: this.watches };
    if (this.apiVersion) st.apiVersion = this.apiVersion;
    if (this.lastError) st.lastError = this.lastError;
    if (this.relistReason) st.lastRelistReason = this.relistReason;
    return st;
  }

  /** Adds the dirty keys' differences from what the consumer has to a batch, which it will then have. */
  drain(upserted: SourcedObject[], deleted: SourcedObject[]): void {
    for (const [key, before] of this.dirty) {
      const now = delivered(this.items.get(key));
      if (now === before) continue;
      if (before) deleted.push(before);
      if (now) upserted.push(now);
    }
    this.dirty.clear();
  }

  /** Notes what the consumer has under the key before its first change since the last batch. */
  private touch(key: string): void {
    if (!this.dirty.has(key)) this.dirty.set(key, delivered(this.items.get(key)));
  }

  /** An entry in place of the key's current one (if any). */
  private put(key: string, e: Entry): void {
    this.touch(key);
    this.items.set(key, e); // throws if the entry's own key is another (a parser's key not 'namespace/name')
    if ('problems' in e) this.troubled.add(key); else this.troubled.delete(key);
  }

  /** Removes the key's entry; whether there was one. */
  private drop(key: string): boolean {
    if (!this.items.has(key)) return false;
    this.touch(key);
    this.items.delete(key);
    this.troubled.delete(key);
    return true;
  }

  problems(out: Problem[]): void {
    if (this.problem) out.push(this.problem);
    for (const k of this.troubled) { const e = this.items.get(k); if (e && 'problems' in e) out.push(...e.problems); }
  }

  private get selector(): string {
    return this.info.kind === 'Service' || this.info.kind === 'EndpointSlice' ? `&labelSelector=${encodeURIComponent(`!${SERVICE_PROXY_NAME}`)}` : '';
  }

  async run(): Promise<void> {
    const signal = this.src.signal;
    const opts = this.src.opts;
    for (;;) {
      try {
        if (!this.path) await this.discover();
        if (this.missing) {
          await sleep(opts.missingRetryMs ?? 10_000, signal);
          continue;
        }
        await this.list();
        for (;;) await this.watch();
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof Expired || (e instanceof KubeHttpError && e.status === 410)) {
          this.relistReason = errorMessage(e);
          this.src.logger()?.info({ kind: this.info.kind, rv: this.rv }, 'watch expired (410 Gone): relisting');
          this.failures = 0;
          continue;
        }
        this.src.reachability(e);
        this.lastError = errorMessage(e);
        this.state = 'retrying';
        if (e instanceof KubeHttpError && e.status === 404) {
          // The kind went away (CRD removed) or the version did: discover again.
          this.path = undefined;
        }
        const reported = e instanceof KubeHttpError && !unreachable(e);
        const p: Problem | undefined = reported
          ? { code: 'KW_KUBE_REQUEST', file: this.src.client.server, object: this.info.kind, message: `reading ${this.info.kind}: ${this.lastError}; retrying` }
          : undefined;
        if (JSON.stringify(p) !== JSON.stringify(this.problem)) { this.problem = p; this.src.changed(); }
        const b = opts.backoff ?? { initialMs: 250, maxMs: 30_000 };
        const cap = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(this.failures++, 20));
        const delay = cap / 2 + Math.random() * (cap / 2);
        this.src.logger()?.debug({ kind: this.info.kind, err: this.lastError, retryMs: Math.round(delay) }, 'list/watch failed; retrying');
        try { await sleep(delay, signal); } catch { return; }
      }
    }
  }

  /** Finds the first of the kind's versions the server serves, or marks the kind missing. */
  private async discover(): Promise<void> {
    this.state = 'discovering';
    const versions = [...this.info.versions, ...(EXTRA_VERSIONS[this.info.kind] ?? [])];
    for (const v of versions) {
      const gv = this.info.group === '' ? v : `${this.info.group}/${v}`;
      const base = this.info.group === '' ? `/api/${v}` : `/apis/${gv}`;
      let list: { resources?: Array<{ name: string; kind: string }> };
      try {
        list = await this.src.client.get(base, this.src.signal);
      } catch (e) {
        if (e instanceof KubeHttpError && e.status === 404) continue;
        throw e;
      }
      this.src.reachability(undefined);
      const res = list.resources?.find((r) => r.kind === this.info.kind && !r.name.includes('/'));
      if (!res) continue;
      this.apiVersion = gv;
      this.path = `${base}/${res.name}`;
      if (this.missing) this.src.logger()?.info({ kind: this.info.kind, apiVersion: gv }, 'kind now served by the API server: reading it');
      this.missing = false;
      this.problem = undefined;
      return;
    }
    const was = this.missing;
    this.missing = true;
    this.state = 'missing';
    this.apiVersion = undefined;
    const what = `${this.info.kind} (${this.info.group === '' ? 'core' : this.info.group} ${versions.join(', ')})`;
    this.problem = { code: 'KW_KUBE_KIND_MISSING', file: this.src.client.server, object: this.info.kind,
      message: `the API server does not serve ${what}: its CRD is not installed; kernway reads it once it appears` };
    const had = this.items.size;
    for (const k of [...this.items.keys()]) this.drop(k);
    this.synced = true;
    if (!was || had > 0) this.src.changed();
  }

  /** Lists every page into a fresh view, then marks what differs from the current one. */
  private async list(): Promise<void> {
    this.state = 'listing';
    const limit = this.src.opts.pageSize ?? PAGE_SIZE;
    const fresh = new Map<string, Entry>();
    let cont = '';
    let rv = '';
    do {
      const page = await this.src.client.get<{ metadata?: { continue?: string; resourceVersion?: string }; items?: Array<Record<string, unknown>> }>(
        `${this.path}?limit=${limit}${cont ? `&continue=${encodeURIComponent(cont)}` : ''}${this.selector}`, this.src.signal);
      this.src.reachability(undefined);
      for (const raw of page.items ?? []) {
        const o = raw as unknown as K8sObject;
        const key = keyOf(o);
        const old = this.items.get(key);
        fresh.set(key, old !== undefined && old.rv === rvOf(o) ? old : this.item(o));
      }
      cont = page.metadata?.continue ?? '';
      rv = page.metadata?.resourceVersion ?? rv;
    } while (cont);
    let changed = 0;
    for (const k of [...this.items.keys()]) if (!fresh.has(k)) { this.drop(k); changed++; }
    this.items.reserve(fresh.size); // at once, not by doubling
    for (const [k, it] of fresh) if (this.items.get(k) !== it) { this.put(k, it); changed++; }
    this.rv = rv;
    if (this.lists++ > 0) this.relists++;
    this.failures = 0;
    this.lastError = undefined;
    const hadProblem = this.problem !== undefined;
    this.problem = undefined;
    this.synced = true;
    if (changed > 0 || hadProblem || this.relists === 0) this.src.changed();
    this.src.logger()?.debug({ kind: this.info.kind, objects: fresh.size, changed, rv }, 'listed');
  }

  /** One watch from this.rv until the server ends it; throws Expired on 410. */
  private async watch(): Promise<void> {
    const t = this.src.opts.watchTimeoutSeconds ?? 300;
    const timeout = Math.max(1, Math.round(t * (1 + Math.random() * 0.2)));
    const ctl = new AbortController();
    const onAbort = (): void => ctl.abort();
    this.src.signal.addEventListener('abort', onAbort, { once: true });
    // A connection that stays silent past the server's timeout is dead (a half-open TCP connection).
    let idle: NodeJS.Timeout | undefined;
    const arm = (): void => { clearTimeout(idle); idle = setTimeout(() => ctl.abort(new Error('the watch was silent past its timeout')), (timeout + 30) * 1000); };
    try {
      arm();
      const res = await this.src.client.open(
        `${this.path}?watch=1&allowWatchBookmarks=true&timeoutSeconds=${timeout}&resourceVersion=${encodeURIComponent(this.rv)}${this.selector}`, ctl.signal);
      this.src.reachability(undefined);
      this.state = 'watching';
      this.watches++;
      // Newline-delimited JSON events; a reset connection rejects the iteration.
      res.setEncoding('utf8');
      let buf = '';
      for await (const chunk of res as AsyncIterable<string>) {
        arm();
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line.trim() === '') continue;
          this.event(JSON.parse(line) as WatchEvent);
          this.failures = 0;
        }
      }
      if (res.errored) throw res.errored;
      if (!res.complete) throw new Error('the watch connection was cut');
    } catch (e) {
      if (ctl.signal.aborted && ctl.signal.reason instanceof Error && !this.src.signal.aborted) throw ctl.signal.reason;
      throw e;
    } finally {
      clearTimeout(idle);
      this.src.signal.removeEventListener('abort', onAbort);
    }
  }

  private event(ev: WatchEvent): void {
    if (ev.type === 'ERROR') {
      const st = ev.object as { code?: number; reason?: string; message?: string };
      if (st.code === 410 || st.reason === 'Expired' || st.reason === 'Gone') throw new Expired(st.message ?? '410 Gone');
      throw new KubeHttpError(st.code ?? 500, st.reason ?? '', `watch ${this.path}: ${st.code} ${st.reason}: ${st.message}`);
    }
    const o = ev.object as unknown as K8sObject;
    const rv = String(o.metadata?.resourceVersion ?? '');
    if (rv) this.rv = rv;
    if (ev.type === 'BOOKMARK') return;
    const key = keyOf(o);
    if (ev.type === 'DELETED') {
      if (this.drop(key)) this.src.changed();
      return;
    }
    if (this.items.get(key)?.rv === rvOf(o)) return;
    this.put(key, this.item(o));
    this.src.changed();
  }

  /** The raw object checked and slimmed: only its stub (or problems) is kept. */
  private item(raw: K8sObject): Entry {
    const rv = rvOf(raw);
    const o = this.info.kind === 'Pod' ? slimPod(raw, this.src.opts.nodeName)
      : this.info.kind === 'EndpointSlice' ? sliceV1(raw)
      : withKind(raw, this.apiVersion!, this.info.kind);
    // Policies are ordered by origin (file): each its own path; other kinds share their list's.
    const src: SourcedObject = { object: o, file: this.info.kind === 'AuthorizationPolicy' ? objectPath(this.path!, o) : this.path!, index: 0 };
    let problems = validateObject(src);
    const extra = this.src.opts.validate?.(src) ?? [];
    if (extra.length > 0) problems = problems.concat(extra);
    if (problems.length > 0) {
      const file = objectPath(this.path!, o);
      return { key: keyOf(raw), rv, problems: problems.map((p) => ({ ...p, file })) };
    }
    return slimVersioned(src, { file: this.src.client.server, index: 0 }, rv);
  }
}

function keyOf(o: K8sObject): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

/** /apis/g/v/namespaces/ns/plural/name of an object read from /apis/g/v/plural. */
function objectPath(listPath: string, o: K8sObject): string {
  const i = listPath.lastIndexOf('/');
  return o.metadata.namespace
    ? `${listPath.slice(0, i)}/namespaces/${o.metadata.namespace}${listPath.slice(i)}/${o.metadata.name}`
    : `${listPath}/${o.metadata.name}`;
}

/** Items of a list have no apiVersion and kind: set them. */
function withKind(o: K8sObject, apiVersion: string, kind: string): K8sObject {
  if (o.apiVersion !== apiVersion || o.kind !== kind) { o.apiVersion = apiVersion; o.kind = kind; }
  return o;
}

/** discovery.k8s.io/v1beta1 → v1: topology's hostname and zone become nodeName and zone. */
function sliceV1(o: K8sObject): K8sObject {
  const r = o as K8sObject & { endpoints?: Array<Record<string, unknown>> };
  for (const e of r.endpoints ?? []) {
    const topo = e.topology as Record<string, string> | undefined;
    if (topo) {
      if (e.nodeName === undefined && topo['kubernetes.io/hostname']) e.nodeName = topo['kubernetes.io/hostname'];
      if (e.zone === undefined && topo['topology.kubernetes.io/zone']) e.zone = topo['topology.kubernetes.io/zone'];
      delete e.topology;
    }
  }
  o.apiVersion = 'discovery.k8s.io/v1';
  o.kind = 'EndpointSlice';
  return o;
}

/**
 * What kernway needs of a Pod: identity (namespace, name, labels, service account, node,
 * addresses, phase, hostNetwork). This node's pods keep their uid (their cgroup and network
 * namespace are found by it; the feed knows a waypoint's Unix socket peer by it) and their
 * annotations; others have no uid (a 36-character string each: ~0.5 MiB per 10,000 Pods)
 * and only kernway.io annotations.
 */
export function slimPod(o: K8sObject, nodeName: string): K8sObject {
  const raw = o as K8sObject & { spec?: Record<string, unknown>; status?: Record<string, unknown> };
  const spec = raw.spec ?? {};
  const status = raw.status ?? {};
  const md = o.metadata as K8sObject['metadata'] & { uid?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  let annotations = md.annotations;
  if (annotations && spec.nodeName !== nodeName) {
    const keep = Object.entries(annotations).filter(([k]) => k.includes('kernway.io/'));
    annotations = keep.length > 0 ? Object.fromEntries(keep) : undefined;
  }
  const metadata: Record<string, unknown> = { name: md.name, namespace: md.namespace };
  if (md.uid !== undefined && spec.nodeName === nodeName) metadata.uid = md.uid;
  if (md.labels !== undefined) metadata.labels = md.labels;
  if (annotations !== undefined) metadata.annotations = annotations;
  const slimSpec: Record<string, unknown> = {};
  for (const f of ['nodeName', 'serviceAccountName', 'hostNetwork']) if (spec[f] !== undefined) slimSpec[f] = spec[f];
  const slimStatus: Record<string, unknown> = {};
  for (const f of ['phase', 'podIP', 'podIPs']) if (status[f] !== undefined) slimStatus[f] = status[f];
  return { apiVersion: 'v1', kind: 'Pod', metadata, spec: slimSpec, status: slimStatus } as unknown as K8sObject;
}
