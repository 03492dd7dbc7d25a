/**
 * Keeping strings small. A string cut out of a larger one (a YAML scalar out of the file's
 * text) can keep the whole text alive in V8 (a "sliced string", for 13 characters or more);
 * and the same short value (a node name) read a hundred thousand times is as many copies.
 */

/** V8 copies substrings shorter than this instead of slicing them. */
const SLICE_MIN = 13;

/** A fresh flat copy of `s`, holding on to nothing else. */
function copy(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
}

/** `s`, detached from the text it was cut out of. For values that are mostly unique (names, addresses). */
export function own(s: string): string {
  // Not a string (a manifest's wrong type): handed back for the checks to name.
  return typeof s !== 'string' || s.length < SLICE_MIN ? s : copy(s);
}

const interned = new Map<string, string>();
const MAX_INTERNED = 100_000;

/** One shared copy of `s`. For values that repeat a lot (namespaces, node names, port names). */
export function intern(s: string): string {
  const hit = interned.get(s);
  if (hit !== undefined) return hit;
  const v = s.length < SLICE_MIN ? s : copy(s);
  if (interned.size < MAX_INTERNED) interned.set(v, v);
  return v;
}

const lists = new Map<string, readonly object[]>();
const MAX_LISTS = 10_000;

/**
 * One shared, frozen copy of a small list of flat records: port lists repeat across
 * Services and EndpointSlices (10,000 Services with the same `http: 80 → 8080` are one list).
 */
export function internList<T extends object>(items: T[]): T[] {
  if (items.length === 0) return NO_ITEMS as T[];
  const key = JSON.stringify(items);
  const hit = lists.get(key);
  if (hit !== undefined) return hit as T[];
  const v = Object.freeze(items.map((x) => Object.freeze({ ...x }))) as unknown as T[];
  if (lists.size < MAX_LISTS) lists.set(key, v);
  return v;
}
const NO_ITEMS: readonly object[] = Object.freeze([]);

const stringLists = new Map<string, readonly string[]>();
const NO_STRINGS: readonly string[] = Object.freeze([]);

/** One shared, frozen copy of a short list of strings (the node names of a slice repeat across slices). */
export function internStrings(items: readonly string[]): readonly string[] {
  if (items.length === 0) return NO_STRINGS;
  const key = items.join('\n');
  const hit = stringLists.get(key);
  if (hit !== undefined) return hit;
  const v = Object.freeze(items.map(intern));
  if (stringLists.size < MAX_LISTS) stringLists.set(key, v);
  return v;
}

let lastOrigin: Readonly<{ file: string; index: number }> | undefined;
/**
 * An object's origin `{ file, index }`, frozen, and the same object as the previous call's
 * when it is the same place: objects listed from the Kubernetes API share their list's
 * path (20,000 origins of 40 bytes were 0.76 MiB with 10,000 Services).
 */
export function originOf(src: { file: string; index: number }): { file: string; index: number } {
  const last = lastOrigin;
  if (last !== undefined && last.file === src.file && last.index === src.index) return last;
  return (lastOrigin = Object.freeze({ file: src.file, index: src.index }));
}
