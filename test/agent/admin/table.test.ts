/** The CLI table printer. */
import { describe, expect, it } from 'vitest';
import { formatTable } from '../../../agent/admin/table.js';

interface Svc { name: string; frontend: string; backends: string[]; conns: number }
const rows: Svc[] = [
  { name: 'default/web', frontend: '10.96.0.10:80/TCP', backends: ['10.0.0.1:8080', '10.0.0.2:8080'], conns: 12 },
  { name: 'kube-system/dns', frontend: '10.96.0.53:53/UDP', backends: [], conns: 3456 },
];

describe('formatTable', () => {
  it('aligns columns, right-aligns numbers, prints lists one item per line and empty cells as told', () => {
    const out = formatTable(rows, [
      { header: 'SERVICE', value: (r) => r.name },
      { header: 'FRONTEND', value: (r) => r.frontend },
      { header: 'CONNECTIONS', value: (r) => r.conns },
      { header: 'BACKENDS', value: (r) => r.backends, empty: '(none: connect refused)' },
    ]);
    expect(out).toBe([
      'SERVICE          FRONTEND           CONNECTIONS  BACKENDS',
      'default/web      10.96.0.10:80/TCP           12  10.0.0.1:8080',
      '                                                 10.0.0.2:8080',
      'kube-system/dns  10.96.0.53:53/UDP         3456  (none: connect refused)',
    ].join('\n'));
  });

  it('prints the none text for no rows, the header otherwise', () => {
    expect(formatTable([], [{ header: 'A', value: () => 1 }], { none: 'no services' })).toBe('no services');
    expect(formatTable([], [{ header: 'A', value: () => 1 }])).toBe('A');
  });

  it('defaults empty cells to -, and neutralises control characters', () => {
    const out = formatTable([{ a: undefined, b: 'x\u001b[2Jy\tz' }], [{ header: 'A', value: (r) => r.a }, { header: 'B', value: (r) => r.b }]);
    expect(out).toBe('A  B\n-  x?[2Jy z');
  });
});
