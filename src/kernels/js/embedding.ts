/** Token embedding lookup. tokens: [N]; weight: [V, C]; out: [N, C]. V is weight.length / C. */
import type { Buf } from '../../tensor/dtype.js';
import { dim, need } from './check.js';

function checkTokens(tokens: Int32Array, N: number, V: number, what: string): void {
  need(tokens, N, `${what} tokens [N]`);
  for (let n = 0; n < N; n++) {
    const t = tokens[n]!;
    if (t < 0 || t >= V) throw new RangeError(`${what}: tokens[${n}] = ${t} is outside the vocabulary [0, ${V})`);
  }
}

/** out[n, :] = weight[tokens[n], :]. A token outside [0, V) throws. */
export function embeddingForward(o: { out: Buf }, i: { tokens: Int32Array; weight: Buf }, d: { N: number; C: number }): void {
  const { out } = o;
  const { tokens, weight } = i;
  const { N, C } = d;
  dim(N, 'embedding N');
  dim(C, 'embedding C');
  need(out, N * C, 'embedding out [N, C]');
  if (C === 0) return;
  checkTokens(tokens, N, Math.floor(weight.length / C), 'embedding');
  for (let n = 0; n < N; n++) {
    const wo = tokens[n]! * C;
    const oo = n * C;
    for (let c = 0; c < C; c++) out[oo + c] = weight[wo + c]!;
  }
}

/** dWeight[tokens[n], :] += dOut[n, :]; a token repeated in [N] receives the sum of its rows. */
export function embeddingBackward(g: { dWeight: Buf }, i: { dOut: Buf; tokens: Int32Array }, d: { N: number; C: number }): void {
  const { dWeight } = g;
  const { dOut, tokens } = i;
  const { N, C } = d;
  dim(N, 'embeddingBackward N');
  dim(C, 'embeddingBackward C');
  need(dOut, N * C, 'embeddingBackward dOut [N, C]');
  if (C === 0) return;
  checkTokens(tokens, N, Math.floor(dWeight.length / C), 'embeddingBackward');
  for (let n = 0; n < N; n++) {
    const wo = tokens[n]! * C;
    const go = n * C;
    for (let c = 0; c < C; c++) dWeight[wo + c] += dOut[go + c]!;
  }
}
