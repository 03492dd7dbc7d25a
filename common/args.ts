/** Strict option parsing shared by every command: a repeated option is an error. */

/**
 * Throws when an option that is not `multiple` appears twice in parseArgs' tokens: taking
 * the last silently is risky (a second `--cgroup` would win unnoticed).
 */
export function refuseRepeated(tokens: ReadonlyArray<{ kind: string; name?: string }> | undefined, multiple: ReadonlySet<string> = new Set()): void {
  const seen = new Set<string>();
  for (const t of tokens ?? []) {
    if (t.kind !== 'option' || t.name === undefined || multiple.has(t.name)) continue;
    if (seen.has(t.name)) throw new Error(`option '--${t.name}' is given more than once; give it once`);
    seen.add(t.name);
  }
}
