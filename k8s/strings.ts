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
