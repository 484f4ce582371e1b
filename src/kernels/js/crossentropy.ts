/**
 * Fused softmax cross-entropy over the vocabulary. logits, dLogits: [N, V]; targets, losses, lse: [N].
 * lse is the stable log-sum-exp (max subtracted first) of every row, ignored rows included;
 * losses are 0 on ignored rows, which also receive no gradient. The caller normalises by the GLOBAL
 * count of counted rows (DESIGN §8), passing 1/count as `scale` to backward.
 */
import type { Buf } from '../../tensor/dtype.js';
import { dim, need } from './check.js';

function check(N: number, V: number, logits: Buf, targets: Int32Array, what: string): void {
  dim(N, `${what} N`);
  dim(V, `${what} V`);
  need(logits, N * V, `${what} logits [N, V]`);
  need(targets, N, `${what} targets [N]`);
}

function checkTarget(t: number, n: number, V: number, what: string): void {
  if (t < 0 || t >= V) throw new RangeError(`${what}: targets[${n}] = ${t} is outside [0, ${V}) and is not the ignore index`);
}

/** losses[n] = lse[n] − logits[n, targets[n]] (0 where ignored). Returns the number of counted rows. */
export function crossEntropyForward(
  o: { losses: Buf; lse: Buf },
  i: { logits: Buf; targets: Int32Array },
  d: { N: number; V: number; ignoreIndex: number },
): number {
  const { losses, lse } = o;
  const { logits, targets } = i;
  const { N, V, ignoreIndex } = d;
  check(N, V, logits, targets, 'crossEntropy');
  need(losses, N, 'crossEntropy losses [N]');
  need(lse, N, 'crossEntropy lse [N]');
  let count = 0;
  for (let n = 0; n < N; n++) {
    const lo = n * V;
    let mx = -Infinity;
    for (let v = 0; v < V; v++) {
      const z = logits[lo + v]!;
      if (z > mx) mx = z;
    }
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[lo + v]! - mx);
    const l = mx + Math.log(s);
    lse[n] = l;
    const t = targets[n]!;
    if (t === ignoreIndex) {
      losses[n] = 0;
      continue;
    }
    checkTarget(t, n, V, 'crossEntropy');
    losses[n] = l - logits[lo + t]!;
    count++;
  }
  return count;
}

/** dLogits[n, v] += scale·(exp(logits[n, v] − lse[n]) − [v == targets[n]]) on counted rows. */
export function crossEntropyBackward(
  g: { dLogits: Buf },
  i: { logits: Buf; lse: Buf; targets: Int32Array },
  d: { N: number; V: number; ignoreIndex: number; scale: number },
): void {
  const { dLogits } = g;
  const { logits, lse, targets } = i;
  const { N, V, ignoreIndex, scale } = d;
  check(N, V, logits, targets, 'crossEntropyBackward');
  need(lse, N, 'crossEntropyBackward lse [N]');
  need(dLogits, N * V, 'crossEntropyBackward dLogits [N, V]');
  for (let n = 0; n < N; n++) {
    const t = targets[n]!;
    if (t === ignoreIndex) continue;
    checkTarget(t, n, V, 'crossEntropyBackward');
    const lo = n * V;
    const l = lse[n]!;
    for (let v = 0; v < V; v++) dLogits[lo + v] += scale * Math.exp(logits[lo + v]! - l);
    dLogits[lo + t] -= scale;
  }
}
