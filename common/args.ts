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

/**
 * `--rounds -2` as `--rounds=-2`: parseArgs takes a value starting with '-' for an option
 * and refuses it as "ambiguous" (a message that names neither the value nor what is
 * expected). A negative number after a string option is surely its value, so it is joined
 * here and the option's own validator then says what is wrong with it, e.g.
 * `--rounds: expected an integer from 1 to 100, got "-2"`.
 */
export function joinNegativeValues(argv: readonly string[], options: Readonly<Record<string, { type: 'string' | 'boolean' }>>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (a === '--') { out.push(...argv.slice(i)); break; }
    if (a.startsWith('--') && !a.includes('=') && options[a.slice(2)]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}
