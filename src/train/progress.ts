/** One-line progress: step, loss, validation bits/byte, tokens/s, ETA, peak memory. */
import type { StepMetrics } from './trainer.js';

export function formatBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${u[i]}`;
}

export function formatSec(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  const r = Math.round(s % 60);
  return m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

export class Progress {
  private t0 = performance.now();
  private firstStep = -1;
  private lastVal: number | undefined;
  private tty: boolean;

  constructor(private stream: NodeJS.WriteStream, private every: number, private quiet: boolean) {
    this.tty = !!stream.isTTY;
  }

  update(m: StepMetrics, total: number): void {
    if (this.quiet) return;
    if (this.firstStep < 0) {
      this.firstStep = m.step - 1;
      this.t0 = performance.now() - m.stepSec * 1000;
    }
    if (m.valBpb !== undefined) this.lastVal = m.valBpb;
    const done = m.step - this.firstStep;
    const elapsed = (performance.now() - this.t0) / 1000;
    const eta = ((total - m.step) * elapsed) / Math.max(1, done);
    const width = 20;
    const fill = Math.round((m.step / total) * width);
    const bar = '#'.repeat(fill) + '.'.repeat(width - fill);
    const val = this.lastVal !== undefined ? ` val ${this.lastVal.toFixed(3)} bpb` : '';
    const tps = m.tokensPerSec >= 1000 ? `${(m.tokensPerSec / 1000).toFixed(1)}k` : m.tokensPerSec.toFixed(0);
    const line = `step ${m.step}/${total} [${bar}] loss ${m.loss.toFixed(4)}${val} | ${tps} tok/s | ETA ${formatSec(eta)} | peak ${formatBytes(m.peakBytes)}`;
    const last = m.step === total;
    if (this.tty) {
      this.stream.write('\r' + line + '\x1b[K' + (last ? '\n' : ''));
    } else if (last || m.valBpb !== undefined || m.step % this.every === 0) {
      this.stream.write(line + '\n');
    }
  }
}
