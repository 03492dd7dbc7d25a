/**
 * The registry of the kinds kernway reads: for each, its group, versions and kind, whether
 * it is namespaced, and its parser (checks with file/object/field problems, then the slim
 * form: only what kernway uses). Every source takes its list of kinds from here, and every
 * reader parses through `parseObject`, memoised once on the raw object's identity: an
 * unchanged object handed over again costs nothing and yields the same slim object, which
 * lets later stages memoise in turn.
 */
import { parseEndpointSlice, parseNamespace, parsePod, parseService, type CoreObject } from './core.js';
import {
  GATEWAY_VERSIONS, GRANT_VERSIONS, parseGateway, parseGatewayClass, parseHTTPRoute, parseReferenceGrant, type GatewayApiObject,
} from './gateway-api.js';
import { GATEWAY_GROUP } from './gateway-api-types.js';
import { parseAuthorizationPolicy } from './policy.js';
import { POLICY_GROUP } from './policy-types.js';
import { parseBackendTrafficPolicy } from './traffic-policy.js';
import { intern, own } from './strings.js';
import type { K8sObject, ParseResult, Problem, SourcedObject } from './types.js';

/** Every object kernway reads, in its slim form. */
export type KnownObject = CoreObject | GatewayApiObject | { kind: 'AuthorizationPolicy'; value: import('./policy-types.js').AuthorizationPolicy }
  | { kind: 'BackendTrafficPolicy'; value: import('./traffic-policy-types.js').BackendTrafficPolicy };
export type KnownKind = KnownObject['kind'];
export type Parsed = ParseResult<KnownObject>;

export interface KindInfo {
  /** '' for the core group. */
  group: string;
  /** The versions read, preferred first. */
  versions: readonly string[];
  kind: KnownKind;
  namespaced: boolean;
  parse(src: SourcedObject): Parsed;
}

export const KINDS: readonly KindInfo[] = Object.freeze([
  { group: '', versions: ['v1'], kind: 'Namespace', namespaced: false, parse: parseNamespace },
  { group: '', versions: ['v1'], kind: 'Service', namespaced: true, parse: parseService },
  { group: 'discovery.k8s.io', versions: ['v1'], kind: 'EndpointSlice', namespaced: true, parse: parseEndpointSlice },
  { group: '', versions: ['v1'], kind: 'Pod', namespaced: true, parse: parsePod },
  { group: POLICY_GROUP, versions: ['v1alpha1'], kind: 'AuthorizationPolicy', namespaced: true, parse: parseAuthorizationPolicy },
  { group: POLICY_GROUP, versions: ['v1alpha1'], kind: 'BackendTrafficPolicy', namespaced: true, parse: parseBackendTrafficPolicy },
  { group: GATEWAY_GROUP, versions: GATEWAY_VERSIONS, kind: 'GatewayClass', namespaced: false, parse: parseGatewayClass },
  { group: GATEWAY_GROUP, versions: GATEWAY_VERSIONS, kind: 'Gateway', namespaced: true, parse: parseGateway },
  { group: GATEWAY_GROUP, versions: GATEWAY_VERSIONS, kind: 'HTTPRoute', namespaced: true, parse: parseHTTPRoute },
  { group: GATEWAY_GROUP, versions: GRANT_VERSIONS, kind: 'ReferenceGrant', namespaced: true, parse: parseReferenceGrant },
] satisfies KindInfo[]);

/** 'apiVersion kind' → its entry. */
const BY_TYPE = new Map<string, KindInfo>();
for (const k of KINDS) for (const v of k.versions) BY_TYPE.set(`${k.group === '' ? v : `${k.group}/${v}`} ${k.kind}`, k);

/** apiVersion → the kinds kernway reads in it. */
const KINDS_OF_VERSION = new Map<string, KnownKind[]>();
for (const k of KINDS) {
  for (const v of k.versions) {
    const av = k.group === '' ? v : `${k.group}/${v}`;
    KINDS_OF_VERSION.set(av, [...(KINDS_OF_VERSION.get(av) ?? []), k.kind]);
  }
}

/** Real kinds of those apiVersions that kernway does not read: never a typo, however near (TCPRoute ~ HTTPRoute). */
const OTHER_REAL_KINDS = new Set([
  'Binding', 'ComponentStatus', 'ConfigMap', 'Endpoints', 'Event', 'LimitRange', 'Node', 'PersistentVolume',
  'PersistentVolumeClaim', 'PodTemplate', 'ReplicationController', 'ResourceQuota', 'Secret', 'ServiceAccount',
  'GRPCRoute', 'TCPRoute', 'TLSRoute', 'UDPRoute', 'BackendTLSPolicy', 'BackendLBPolicy', 'ListenerSet',
]);

/** Edit distance (insert, delete, substitute), for "did you mean". */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * A problem for a kind kernway does not read in an apiVersion it does read, when that kind
 * is surely a mistake: a near miss of a kind it reads (`Servicee`, `service`, `HttpRoute`),
 * or any kind of kernway's own group. Other kinds of those apiVersions (v1 ConfigMap,
 * gateway.networking.k8s.io/v1 GRPCRoute) and every kind of other groups (apps/v1
 * Deployment) are not kernway's business: no problem.
 */
export function unknownKindProblem(src: SourcedObject): Problem | undefined {
  const { apiVersion, kind } = src.object as { apiVersion: unknown; kind: unknown };
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return undefined;
  const known = KINDS_OF_VERSION.get(apiVersion);
  if (known === undefined || known.includes(kind as KnownKind) || OTHER_REAL_KINDS.has(kind)) return undefined;
  const near = known.find((k) => k.toLowerCase() === kind.toLowerCase()) ??
    known.map((k) => ({ k, d: distance(k.toLowerCase(), kind.toLowerCase()) })).filter((x) => x.d <= 2 && x.d < x.k.length / 2).sort((a, b) => a.d - b.d)[0]?.k;
  const ownGroup = apiVersion.startsWith(`${POLICY_GROUP}/`);
  if (near === undefined && !ownGroup) return undefined;
  const md = (src.object as { metadata?: { name?: unknown; namespace?: unknown } }).metadata;
  const name = typeof md?.name === 'string' ? `${typeof md.namespace === 'string' ? `${md.namespace}/` : ''}${md.name}` : '(unnamed)';
  return {
    code: 'KW_MANIFEST_UNKNOWN_KIND', file: src.file, object: `${kind} ${name}`, field: 'kind',
    message: `document ${src.index}: kind ${JSON.stringify(kind)} is not a kind kernway reads in ${apiVersion} (it reads ${known.join(', ')})` +
      (near !== undefined ? `; did you mean ${near}?` : ''),
  };
}

/** The registry's entry for an object's apiVersion and kind, or undefined: not kernway's business (no object, no problem). */
export function kindOf(o: { apiVersion: unknown; kind: unknown }): KindInfo | undefined {
  return typeof o.apiVersion === 'string' && typeof o.kind === 'string' ? BY_TYPE.get(`${o.apiVersion} ${o.kind}`) : undefined;
}

export function isKnownKind(o: { apiVersion: unknown; kind: unknown }): boolean {
  return kindOf(o) !== undefined;
}

const NO_PROBLEMS: Problem[] = Object.freeze([]) as unknown as Problem[];
const NOT_OURS: Parsed = Object.freeze({ object: undefined, problems: NO_PROBLEMS }) as Parsed;

/** Raw object → its slim object, or its problems, or null (not a known kind). Compact on purpose. */
const cache = new WeakMap<object, KnownObject | Problem[] | null>();

/** What a stub holds of its parse: the slim value, the problems, or null (not a kind kernway reads). */
type Held = KnownObject['value'] | Problem[] | null;

/**
 * What a stub holds when the slim value does not hold its name and namespace (objects with
 * problems, kinds not read, a namespace defaulted by the parse): the parse's result and the
 * identity, the name (no namespace) or [name, namespace]. Rare: an object of its own for
 * them, so that every other stub has one field less.
 */
class WithId {
  constructor(readonly held: Held, readonly id: string | readonly [string, string]) {}
}

/** Where a slim value holds its name and namespace (the Gateway API kinds in `meta`). */
function identityOf(value: object): { name?: unknown; namespace?: unknown } {
  const meta = (value as { meta?: unknown }).meta;
  return typeof meta === 'object' && meta !== null ? meta as { name?: unknown; namespace?: unknown } : value as { name?: unknown; namespace?: unknown };
}

/**
 * What a source keeps of a parsed object (`slimObject`, `stubOf`): apiVersion, kind, name
 * and namespace, and the parse's result in a private field (not enumerable, not in JSON),
 * so a stub needs no entry in the WeakMap: 20,000 stubs held one of 1 MiB (its table
 * sized for twice its entries at 16 bytes each), more than the stubs themselves.
 *
 * A stub is one object of one field (32 bytes): the slim value is held without its
 * `{ kind, value }` wrapper; `metadata` is made on each read from the name and namespace,
 * read from the slim value when it holds the same ones (else kept with the parse's result
 * in a `WithId`, for the few stubs that need one: 8 bytes per stub less); apiVersion
 * and kind are getters of a class per kind of the registry (`typedStub`: 16 bytes per stub
 * less; assigning one makes it the stub's own), own properties for other kinds. A metadata
 * object and a wrapper per stub were 80 bytes more each: 1.5 MiB for the agent bench's
 * 20,000 stubs; name, namespace, apiVersion and kind as fields 32 bytes more (0.6 MiB).
 */
class Stub implements K8sObject {
  [k: string]: unknown;
  /** The parse's result; a WithId when the slim value does not hold this stub's name and namespace. */
  readonly #parsed: Held | WithId;
  declare apiVersion: string;
  declare kind: string;
  constructor(_apiVersion: string, _kind: string, name: string, namespace: string | undefined, parsed: KnownObject | Problem[] | null) {
    const value = parsed === null || Array.isArray(parsed) ? undefined : parsed.value;
    const result = value ?? parsed as Problem[] | null;
    const held = value === undefined ? undefined : identityOf(value);
    this.#parsed = held !== undefined && held.name === name && held.namespace === namespace ? result
      : new WithId(result, namespace === undefined ? name : [name, namespace]);
  }

  /** `{ name, namespace }` (namespace only when set): a new object on each read, as small as the raw object's. */
  get metadata(): K8sObject['metadata'] {
    const p = this.#parsed;
    if (!(p instanceof WithId)) {
      const held = identityOf(p as object) as { name: string; namespace?: string };
      return held.namespace === undefined ? { name: held.name } : { name: held.name, namespace: held.namespace };
    }
    const id = p.id;
    return typeof id === 'string' ? { name: id } : { name: id[0], namespace: id[1] };
  }

  /** Kept out of JSON as the private field is; `metadata` is written as a raw object's would be. */
  toJSON(): { apiVersion: string; kind: string; metadata: K8sObject['metadata'] } {
    return { apiVersion: this.apiVersion, kind: this.kind, metadata: this.metadata };
  }

  /** See stubKey. */
  static keyOf(o: object): string | undefined {
    if (!(#parsed in o)) return undefined;
    const p = (o as Stub).#parsed;
    if (p !== null && !Array.isArray(p) && !(p instanceof WithId)) {
      // The slim value holds this stub's name and namespace: its key is 'namespace/name' (or the name) of them.
      const v = p as { key?: unknown; name?: unknown; namespace?: unknown; meta?: { key?: unknown } };
      if (typeof v.key === 'string') return v.key;
      if (typeof v.meta?.key === 'string') return v.meta.key;
      if (v.namespace === undefined && typeof v.name === 'string') return v.name;
    }
    const md = (o as Stub).metadata;
    return md.namespace === undefined ? md.name : `${md.namespace}/${md.name}`;
  }

  static parsedOf(o: unknown): KnownObject | Problem[] | null | undefined {
    if (typeof o !== 'object' || o === null || !(#parsed in o)) return undefined;
    const q = (o as Stub).#parsed;
    const p = q instanceof WithId ? q.held : q;
    return p === null || Array.isArray(p) ? p : ({ kind: (o as Stub).kind, value: p } as KnownObject);
  }
}

/**
 * Check and normalise one object. Objects of kinds kernway does not read give no object
 * and no problem, unless the kind is surely a mistake (see unknownKindProblem). The origin recorded is that of the first call for a raw object.
 */
export function parseObject(src: SourcedObject): Parsed {
  let hit = Stub.parsedOf(src.object);
  if (hit === undefined) hit = cache.get(src.object);
  if (hit === undefined) {
    const unknown = kindOf(src.object) === undefined ? unknownKindProblem(src) : undefined;
    const r = unknown !== undefined ? { object: undefined, problems: [unknown] } : kindOf(src.object)?.parse(src) ?? NOT_OURS;
    hit = r.object ?? (r.problems.length > 0 ? r.problems : null);
    cache.set(src.object, hit);
  }
  if (hit === null) return NOT_OURS;
  if (Array.isArray(hit)) return { object: undefined, problems: hit };
  return { object: hit, problems: NO_PROBLEMS };
}

/** The problems of `parseObject` (a source's object validator: any problem keeps the file's last good content). */
export function validateObject(src: SourcedObject): Problem[] {
  return parseObject(src).problems;
}

/**
 * What a source keeps of an object once parsed: a stub (apiVersion, kind, name, namespace)
 * that `parseObject()` maps to the same slim object, so the raw content (spec, status,
 * endpoints) can be freed. An object with problems, or of a kind not read, keeps nothing
 * more than its stub either; only its identity matters to the source. The raw object is
 * forgotten by the parse cache: parsing it again parses it anew (parse the stub instead).
 */
export function slimObject(src: SourcedObject): K8sObject {
  return slimInto(src, undefined);
}

/**
 * A stub that is its own sourced object: `object` is the stub itself, with the file and
 * index of `src`. What the manifest directory keeps per object: one object of 80 bytes
 * instead of a stub and a `{ object, file, index }` record (48 bytes; 0.6 MiB less for the
 * agent bench's 20,000 objects). Its JSON is the stub's.
 */
export function slimSourced(src: SourcedObject): SourcedObject {
  return slimInto(src, src) as LocatedStub;
}

/**
 * A stub with its file and index (see slimSourced). `object` is a getter on the prototype,
 * so the stub's own properties are the same as a plain stub's but `file` and `index`.
 */
class LocatedStub extends Stub implements SourcedObject {
  readonly file: string;
  readonly index: number;
  constructor(apiVersion: string, kind: string, name: string, namespace: string | undefined, parsed: KnownObject | Problem[] | null, file: string, index: number) {
    super(apiVersion, kind, name, namespace, parsed);
    this.file = file;
    this.index = index;
  }

  /** The stub itself (its JSON is a plain stub's: `file` and `index` say where it was read, they are not content). */
  get object(): K8sObject { return this; }
}

/**
 * A located stub with the object's resourceVersion (k8s/kinds.ts `slimVersioned`): one
 * object instead of a stub and an `{ object, file, index, rv }` entry (120 bytes; 0.6 MiB for
 * 20,000 objects). The Kubernetes API source's objects are PlacedStubs (below), which hold
 * their place through their class; this is for the others.
 */
class VersionedStub extends LocatedStub {
  readonly rv: string | number;
  constructor(apiVersion: string, kind: string, name: string, namespace: string | undefined, parsed: KnownObject | Problem[] | null, file: string, index: number, rv: string | number) {
    super(apiVersion, kind, name, namespace, parsed, file, index);
    this.rv = rv;
  }
}

/**
 * A versioned stub whose file and index are its class's (getters on the prototype), not
 * fields: what the Kubernetes API source keeps per object, whose place is the same for all
 * its objects (the API server). 40 bytes (its parse and resourceVersion) where a VersionedStub
 * takes 56: 0.3 MiB less at 20,000 objects.
 */
class PlacedStub extends Stub implements SourcedObject {
  readonly rv: string | number;
  declare readonly file: string;
  declare readonly index: number;
  constructor(apiVersion: string, kind: string, name: string, namespace: string | undefined, parsed: KnownObject | Problem[] | null, _file: string, _index: number, rv: string | number) {
    super(apiVersion, kind, name, namespace, parsed);
    this.rv = rv;
  }

  get object(): K8sObject { return this; }
}

/** Classes of PlacedStub at most (one per type and place; a source has one place): past it, stubs hold their place as fields. */
const MAX_PLACED_CLASSES = 256;

type StubClass = new (apiVersion: string, kind: string, name: string, namespace: string | undefined, parsed: KnownObject | Problem[] | null, file: string, index: number, rv: string | number) => Stub;

/** Makes `apiVersion` or `kind` the stub's own property (a stub whose type is assigned). */
function ownProperty(o: object, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, writable: true, enumerable: true, configurable: true });
}

/** Per stub class and registry type, its class with `apiVersion` and `kind` on the prototype; per stub class, the one with own properties. */
const typedClasses = new Map<string, StubClass>();

/**
 * The class of stubs of `Base` for `apiVersion` and `kind` (a bounded number: the registry's
 * types, and one for the others); with `at`, also for that place (PlacedStub: file and index
 * on the prototype).
 */
function typedStub(Base: StubClass, tag: string, apiVersion: string, kind: string, at?: { file: string; index: number }): StubClass {
  const known = BY_TYPE.has(`${apiVersion} ${kind}`);
  const key = known ? `${tag} ${apiVersion} ${kind}${at ? ` ${at.index} ${at.file}` : ''}` : tag;
  let C = typedClasses.get(key);
  if (C) return C;
  if (known) {
    C = { [tag]: class extends Base {} }[tag]!; // named as its base in heap snapshots
    const accessor = (name: string, value: string): PropertyDescriptor => ({
      get: () => value, set(this: object, v: unknown) { ownProperty(this, name, v); }, enumerable: false, configurable: true,
    });
    Object.defineProperty(C.prototype, 'apiVersion', accessor('apiVersion', apiVersion));
    Object.defineProperty(C.prototype, 'kind', accessor('kind', kind));
    if (at) {
      const { file, index } = at;
      Object.defineProperty(C.prototype, 'file', { get: () => file, enumerable: false, configurable: true });
      Object.defineProperty(C.prototype, 'index', { get: () => index, enumerable: false, configurable: true });
    }
  } else {
    C = { [tag]: class extends Base {
      constructor(apiVersion: string, kind: string, name: string, namespace: string | undefined, parsed: KnownObject | Problem[] | null, file: string, index: number, rv: string | number) {
        super(apiVersion, kind, name, namespace, parsed, file, index, rv);
        this.apiVersion = apiVersion;
        this.kind = kind;
      }
    } }[tag]!;
  }
  typedClasses.set(key, C);
  return C;
}

/**
 * A stub that is its own sourced object (as slimSourced), read from `at`, with a
 * resourceVersion. Stubs of the registry's kinds read from the same place share it through
 * their class (PlacedStub).
 */
export function slimVersioned(src: SourcedObject, at: { file: string; index: number }, rv: string | number): SourcedObject & { rv: string | number } {
  return slimInto(src, at, rv) as VersionedStub;
}

function slimInto(src: SourcedObject, at: { file: string; index: number } | undefined, rv?: string | number): K8sObject {
  const o = src.object;
  const parsed = parseObject(src);
  const v = parsed.object?.value as { name?: unknown; namespace?: unknown } | undefined;
  const ns = o.metadata.namespace;
  // The slim value's copies when they are the same text (no second string per stub).
  const name = v?.name === o.metadata.name ? v.name as string : own(o.metadata.name);
  const namespace = ns === undefined ? undefined : v?.namespace === ns ? v.namespace as string : intern(ns);
  const result = parsed.object ?? (parsed.problems.length > 0 ? parsed.problems : null);
  const apiVersion = intern(o.apiVersion), kind = intern(o.kind);
  const placed = rv !== undefined && at !== undefined && BY_TYPE.has(`${apiVersion} ${kind}`) &&
    (typedClasses.size < MAX_PLACED_CLASSES || typedClasses.has(`PlacedStub ${apiVersion} ${kind} ${at.index} ${at.file}`));
  const C = at === undefined ? typedStub(Stub, 'Stub', apiVersion, kind)
    : rv === undefined ? typedStub(LocatedStub as StubClass, 'LocatedStub', apiVersion, kind)
    : placed ? typedStub(PlacedStub as StubClass, 'PlacedStub', apiVersion, kind, at)
    : typedStub(VersionedStub as StubClass, 'VersionedStub', apiVersion, kind);
  const stub = new C(apiVersion, kind, name, namespace, result, at?.file ?? '', at?.index ?? 0, rv ?? 0);
  // The stub carries the parse from now on; the raw object is about to be dropped. Deleting
  // its cache entry now lets the WeakMap's table shrink (entries of dead keys cleared by the
  // GC leave it at its peak size: 0.25 MiB after 20,000 objects).
  cache.delete(o);
  return stub;
}

/**
 * A stub standing for an object another kernway process has already parsed (the agent's
 * feed sends slim objects): `parseObject` maps it to `value`, as if it had been read here.
 * The caller has checked that `value` is of `kind`'s slim shape.
 */
export function stubOf(kind: KnownKind, name: string, namespace: string | undefined, value: KnownObject['value']): K8sObject {
  const info = KINDS.find((k) => k.kind === kind)!;
  const apiVersion = info.group === '' ? info.versions[0]! : `${info.group}/${info.versions[0]!}`;
  const C = typedStub(Stub, 'Stub', apiVersion, kind);
  return new C(apiVersion, kind, own(name), namespace === undefined ? undefined : intern(namespace), { kind, value } as KnownObject, '', 0, 0);
}

/**
 * A stub's key: 'namespace/name', or the name of a cluster-scoped object, as the slim value
 * spells it when it holds one (Service, EndpointSlice, Pod and policy `key`, the Gateway API
 * kinds' `meta.key`, a Namespace's or GatewayClass's name: no string made), else made from
 * the stub's metadata. Undefined for an object that is not a stub.
 */
export function stubKey(o: object): string | undefined {
  return Stub.keyOf(o);
}

/** The registry's entry of a kind, by name. */
export function kindInfo(kind: string): KindInfo | undefined {
  return KINDS.find((k) => k.kind === kind);
}
