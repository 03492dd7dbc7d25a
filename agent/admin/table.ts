/**
 * Plain-text tables for CLI output (`kernway services`, `policies`, `status`):
 * upper-case headers, columns two spaces apart, numbers right-aligned, and cells that
 * hold a list printed one item per line (the other cells of the row left blank below).
 *
 *   formatTable(services, [
 *     { header: 'FRONTEND', value: (s) => s.frontend },
 *     { header: 'BACKENDS', value: (s) => s.backends.map((b) => `${b.ip}:${b.port}`), empty: '(none: refused)' },
 *   ]);
 */

export type Cell = string | number | boolean | null | undefined | readonly (string | number)[];

export interface Column<T> {
  header: string;
  value: (row: T) => Cell;
  /** Default: right for numbers, left otherwise. */
  align?: 'left' | 'right';
  /** What to print for undefined, null, '' or an empty list (default '-'). */
  empty?: string;
}

export interface TableOptions {
  /** Printed instead of a table without rows (default: just the header). */
  none?: string;
}

export function formatTable<T>(rows: readonly T[], columns: readonly Column<T>[], opts: TableOptions = {}): string {
  if (rows.length === 0 && opts.none !== undefined) return opts.none;
  // Each row becomes lines x columns of strings.
  const right = columns.map((c) => c.align === 'right');
  const blocks: string[][][] = rows.map((row) => {
    const cells = columns.map((c, i) => {
      const v = c.value(row);
      if (typeof v === 'number' && c.align === undefined) right[i] = true;
      return toLines(v, c.empty ?? '-');
    });
    const height = Math.max(1, ...cells.map((l) => l.length));
    return Array.from({ length: height }, (_, li) => cells.map((l) => l[li] ?? ''));
  });
  const header = columns.map((c) => c.header);
  const widths = header.map((h, i) => Math.max(width(h), ...blocks.flatMap((b) => b.map((line) => width(line[i]!)))));
  const render = (line: string[]) => line.map((cell, i) => {
    const last = i === line.length - 1;
    if (right[i]) return pad(cell, widths[i]!, true);
    return last ? cell : pad(cell, widths[i]!, false);
  }).join('  ').trimEnd();
  return [render(header), ...blocks.flatMap((b) => b.map(render))].join('\n');
}

function toLines(v: Cell, empty: string): string[] {
  if (Array.isArray(v)) return v.length === 0 ? [empty] : v.map((x) => clean(String(x)));
  if (v === undefined || v === null || v === '') return [empty];
  return clean(String(v)).split('\n');
}

/** No control characters in a cell (a name from a manifest must not move the cursor). */
function clean(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\t/g, ' ').replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '?');
}

function width(s: string): number {
  return [...s].length;
}

function pad(s: string, w: number, right: boolean): string {
  const n = w - width(s);
  if (n <= 0) return s;
  return right ? ' '.repeat(n) + s : s + ' '.repeat(n);
}
