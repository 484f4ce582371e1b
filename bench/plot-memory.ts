/**
 * Draws peak memory per rank vs sequence length, one line per scheme, from the sp-train results
 * (bench/results/sp-train_*.jsonl; the newest record per (scheme, P, N) wins) into an SVG:
 *   node dist/bench/plot-memory.js [P] [out.svg]
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RESULTS_DIR } from './util.js';

interface Row {
  scheme: string;
  N: number;
  P: number;
  peakBytes: number;
  time: string;
  smoke?: boolean;
}

const COLORS: Record<string, string> = {
  local: '#000000', ulysses: '#1f77b4', ring: '#ff7f0e', zigzag: '#2ca02c', stripe: '#d62728', allgather: '#9467bd', rsa: '#8c564b', hybrid: '#e377c2',
};

export function loadRows(dir = RESULTS_DIR): Row[] {
  const rows: Row[] = [];
  for (const f of readdirSync(dir).filter((f) => f.startsWith('sp-train_') && f.endsWith('.jsonl'))) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) if (line.trim()) rows.push(JSON.parse(line) as Row);
  }
  const latest = new Map<string, Row>();
  for (const r of rows.filter((r) => !r.smoke)) {
    const k = `${r.scheme}|${r.P}|${r.N}`;
    const prev = latest.get(k);
    if (!prev || prev.time < r.time) latest.set(k, r);
  }
  return [...latest.values()];
}

export function memorySvg(rows: Row[], P: number): string {
  const sel = rows.filter((r) => r.P === P || r.scheme === 'local');
  const Ns = [...new Set(sel.map((r) => r.N))].sort((a, b) => a - b);
  const W = 640, H = 400, L = 70, R = 130, T = 30, Bm = 50;
  const ys = sel.map((r) => r.peakBytes / 2 ** 20);
  const lx = (n: number) => Math.log2(n);
  const x0 = lx(Ns[0]!), x1 = lx(Ns[Ns.length - 1]!);
  const y0 = Math.log2(Math.min(...ys) * 0.8), y1 = Math.log2(Math.max(...ys) * 1.25);
  const px = (n: number) => L + ((lx(n) - x0) / Math.max(1e-9, x1 - x0)) * (W - L - R);
  const py = (mib: number) => T + (1 - (Math.log2(mib) - y0) / (y1 - y0)) * (H - T - Bm);
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`];
  out.push(`<text x="${W / 2}" y="18" text-anchor="middle" font-size="14">Peak memory per rank vs sequence length (P = ${P}; local = one rank)</text>`);
  for (const n of Ns) out.push(`<line x1="${px(n)}" y1="${T}" x2="${px(n)}" y2="${H - Bm}" stroke="#ddd"/><text x="${px(n)}" y="${H - Bm + 16}" text-anchor="middle">${n >= 1024 ? `${n / 1024}K` : n}</text>`);
  for (let e = Math.ceil(y0); e <= Math.floor(y1); e++) out.push(`<line x1="${L}" y1="${py(2 ** e)}" x2="${W - R}" y2="${py(2 ** e)}" stroke="#eee"/><text x="${L - 6}" y="${py(2 ** e) + 4}" text-anchor="end">${2 ** e} MiB</text>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">sequence length N (tokens, log scale)</text>`);
  const schemes = [...new Set(sel.map((r) => r.scheme))];
  schemes.forEach((s, i) => {
    const pts = sel.filter((r) => r.scheme === s).sort((a, b) => a.N - b.N);
    const c = COLORS[s] ?? '#555';
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="2"${s === 'local' ? ' stroke-dasharray="5,4"' : ''} points="${pts.map((r) => `${px(r.N).toFixed(1)},${py(r.peakBytes / 2 ** 20).toFixed(1)}`).join(' ')}"/>`);
    for (const r of pts) out.push(`<circle cx="${px(r.N).toFixed(1)}" cy="${py(r.peakBytes / 2 ** 20).toFixed(1)}" r="3" fill="${c}"/>`);
    out.push(`<line x1="${W - R + 12}" y1="${T + 14 + i * 18}" x2="${W - R + 32}" y2="${T + 14 + i * 18}" stroke="${c}" stroke-width="2"/><text x="${W - R + 38}" y="${T + 18 + i * 18}">${s}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

if (process.argv[1]?.endsWith('plot-memory.js')) {
  const P = Number(process.argv[2] ?? 2);
  const file = process.argv[3] ?? join(RESULTS_DIR, `sp-memory-P${P}.svg`);
  writeFileSync(file, memorySvg(loadRows(), P));
  console.log(`wrote ${file}`);
}
