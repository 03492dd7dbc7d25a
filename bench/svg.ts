/**
 * Two small SVG charts for the report, with no dependency: grouped bars with min-max
 * whiskers (latency percentiles per mode), and lines over categories (a metric against
 * the number of Services, per mode).
 */

export interface Series {
  name: string;
  /** One point per category; NaN leaves a gap. */
  values: Array<{ median: number; min: number; max: number }>;
}

export interface ChartOptions {
  title: string;
  categories: string[];
  series: Series[];
  yLabel: string;
  /** Logarithmic y axis (latency percentiles span decades). */
  log?: boolean;
  width?: number;
  height?: number;
}

const COLORS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return '';
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}

interface Scale { y(v: number): number; ticks: number[] }

function yScale(all: number[], top: number, bottom: number, log: boolean): Scale {
  const finite = all.filter((v) => Number.isFinite(v) && (!log || v > 0));
  if (finite.length === 0) return { y: () => bottom, ticks: [] };
  if (log) {
    const lo = Math.floor(Math.log10(Math.min(...finite)));
    const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...finite))));
    const y = (v: number): number => bottom - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * (bottom - top);
    const ticks: number[] = [];
    for (let e = lo; e <= hi; e++) for (const m of [1, 2, 5]) if (e < hi || m === 1) ticks.push(m * 10 ** e);
    return { y, ticks };
  }
  const max = Math.max(...finite) * 1.1 || 1;
  const step = 10 ** Math.floor(Math.log10(max / 5));
  const nice = [1, 2, 5, 10].map((k) => k * step).find((s) => max / s <= 6) ?? step * 10;
  const ticks: number[] = [];
  for (let t = 0; t <= max; t += nice) ticks.push(+t.toPrecision(6));
  const hi = ticks[ticks.length - 1]! < max ? ticks[ticks.length - 1]! + nice : ticks[ticks.length - 1]!;
  if (ticks[ticks.length - 1]! < hi) ticks.push(hi);
  return { y: (v: number) => bottom - (v / hi) * (bottom - top), ticks };
}

function frame(o: ChartOptions, w: number, h: number, left: number, top: number, right: number, bottom: number, s: Scale): string[] {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${w}" height="${h}" fill="white"/>`,
    `<text x="${w / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(o.title)}</text>`,
    `<text x="14" y="${(top + bottom) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(top + bottom) / 2})">${esc(o.yLabel)}</text>`,
  ];
  for (const t of s.ticks) {
    const y = s.y(t);
    out.push(`<line x1="${left}" x2="${right}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end">${fmt(t)}</text>`);
  }
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${bottom}" stroke="#333"/>`, `<line x1="${left}" x2="${right}" y1="${bottom}" y2="${bottom}" stroke="#333"/>`);
  o.series.forEach((se, i) => {
    const x = left + i * 110;
    out.push(`<rect x="${x}" y="${h - 22}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`, `<text x="${x + 16}" y="${h - 12}">${esc(se.name)}</text>`);
  });
  return out;
}

/** Grouped bars: one group per category, one bar per series, whiskers from min to max. */
export function barChart(o: ChartOptions): string {
  const w = o.width ?? 760;
  const h = o.height ?? 380;
  const [left, top, right, bottom] = [70, 36, w - 20, h - 60];
  const all = o.series.flatMap((s) => s.values.flatMap((v) => [v.min, v.max, v.median]));
  const s = yScale(all, top, bottom, o.log ?? false);
  const out = frame(o, w, h, left, top, right, bottom, s);
  const groupW = (right - left) / Math.max(1, o.categories.length);
  const barW = Math.min(28, (groupW * 0.8) / Math.max(1, o.series.length));
  o.categories.forEach((c, ci) => {
    const gx = left + ci * groupW + (groupW - barW * o.series.length) / 2;
    out.push(`<text x="${(left + ci * groupW + groupW / 2).toFixed(1)}" y="${bottom + 16}" text-anchor="middle">${esc(c)}</text>`);
    o.series.forEach((se, si) => {
      const v = se.values[ci];
      if (!v || !Number.isFinite(v.median)) return;
      const x = gx + si * barW;
      const y = s.y(v.median);
      out.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(bottom - y).toFixed(1)}" fill="${COLORS[si % COLORS.length]}"><title>${esc(`${se.name} ${c}: ${fmt(v.median)} (${fmt(v.min)}-${fmt(v.max)})`)}</title></rect>`);
      if (Number.isFinite(v.min) && Number.isFinite(v.max)) {
        const cx = (x + (barW - 2) / 2).toFixed(1);
        out.push(`<line x1="${cx}" x2="${cx}" y1="${s.y(v.min).toFixed(1)}" y2="${s.y(v.max).toFixed(1)}" stroke="#222"/>`);
      }
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Lines over categories (e.g. 10, 1,000, 10,000 Services), one per series, with min-max whiskers. */
export function lineChart(o: ChartOptions): string {
  const w = o.width ?? 760;
  const h = o.height ?? 380;
  const [left, top, right, bottom] = [70, 36, w - 20, h - 60];
  const all = o.series.flatMap((s) => s.values.flatMap((v) => [v.min, v.max, v.median]));
  const s = yScale(all, top, bottom, o.log ?? false);
  const out = frame(o, w, h, left, top, right, bottom, s);
  const n = o.categories.length;
  const x = (i: number): number => (n <= 1 ? (left + right) / 2 : left + 40 + (i * (right - left - 80)) / (n - 1));
  o.categories.forEach((c, i) => out.push(`<text x="${x(i).toFixed(1)}" y="${bottom + 16}" text-anchor="middle">${esc(c)}</text>`));
  o.series.forEach((se, si) => {
    const color = COLORS[si % COLORS.length];
    const pts = se.values.map((v, i) => (Number.isFinite(v.median) ? `${x(i).toFixed(1)},${s.y(v.median).toFixed(1)}` : '')).filter(Boolean);
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(' ')}"/>`);
    se.values.forEach((v, i) => {
      if (!Number.isFinite(v.median)) return;
      out.push(`<circle cx="${x(i).toFixed(1)}" cy="${s.y(v.median).toFixed(1)}" r="4" fill="${color}"><title>${esc(`${se.name} ${o.categories[i]}: ${fmt(v.median)} (${fmt(v.min)}-${fmt(v.max)})`)}</title></circle>`);
      if (Number.isFinite(v.min) && Number.isFinite(v.max)) out.push(`<line x1="${x(i).toFixed(1)}" x2="${x(i).toFixed(1)}" y1="${s.y(v.min).toFixed(1)}" y2="${s.y(v.max).toFixed(1)}" stroke="${color}"/>`);
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
