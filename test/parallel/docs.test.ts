/**
 * Packed documents: with `docs`, every scheme's out, lse, dq, dk, dv on a sequence of several
 * documents equal each document's attention computed on its own, as a sequence of its own (f64,
 * 1e-10): causal and full, MHA and GQA, with a window, padded, single-token documents included.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { distributedAttention } from '../../src/parallel/distributed.js';
import type { Buf } from '../../src/tensor/dtype.js';
import { expectAllClose, toF64 } from '../helpers.js';
import { close32, native, skipReason } from '../kernels/native-util.js';
import { FIELDS, caseName, kernelReference, makeInputs, runLabel, tolFor, type Case, type Grads, type Inputs, type Run } from './harness.js';

const RUNS: Run[] = [
  { scheme: 'local', P: 1 },
  ...[2, 3, 4].flatMap((P): Run[] => (['ring', 'zigzag', 'stripe', 'ulysses', 'allgather', 'rsa'] as const).map((scheme) => ({ scheme, P }))),
  { scheme: 'hybrid', P: 4, ulysses: 2 },
];

/** docs [S] from document lengths (the last one takes the rest). */
function docsOf(S: number, lens: number[]): Int32Array {
  const docs = new Int32Array(S);
  let p = 0;
  lens.forEach((n, d) => {
    for (let i = 0; i < n && p < S; i++) docs[p++] = d;
  });
  for (; p < S; p++) docs[p] = lens.length;
  return docs;
}

/** Rows [a, b) of a [S, row] tensor (B = 1). */
const rows = (x: Buf, a: number, b: number, row: number): Buf => x.slice(a * row, b * row);

/** The oracle: every document on its own through the single-device reference, put back in place. */
function perDocument(c: Case, x: Inputs, docs: Int32Array): Grads {
  const { S, H, G, D } = c;
  const out: Grads = { out: x.q.slice().fill(0), lse: x.q.slice(0, S * H).fill(0), dq: x.q.slice().fill(0), dk: x.k.slice().fill(0), dv: x.v.slice().fill(0) };
  for (let a = 0; a < S; ) {
    let b = a;
    while (b < S && docs[b] === docs[a]) b++;
    const cd: Case = { ...c, S: b - a };
    const r = kernelReference(cd, { q: rows(x.q, a, b, H * D), k: rows(x.k, a, b, G * D), v: rows(x.v, a, b, G * D), dOut: rows(x.dOut, a, b, H * D) });
    out.out.set(r.out, a * H * D);
    out.lse.set(r.lse, a * H);
    out.dq.set(r.dq, a * H * D);
    out.dk.set(r.dk, a * G * D);
    out.dv.set(r.dv, a * G * D);
    a = b;
  }
  return out;
}

async function check(run: Run, c: Case, lens: number[], pad = false): Promise<void> {
  const x = makeInputs(c, 17 * c.S + lens.length);
  const docs = docsOf(c.S, lens);
  const ref = perDocument(c, x, docs);
  const got = await distributedAttention({ ...run, ...x, B: 1, S: c.S, H: c.H, G: c.G, D: c.D, causal: c.causal, window: c.window, docs, pad });
  for (const f of FIELDS) expectAllClose(got[f]!, ref[f], tolFor(c.dtype), `${runLabel(run)} ${caseName(c)} docs ${lens.join('+')}${pad ? ' padded' : ''}: ${f}`);
}

describe('packed documents: attention stays within each document, as if each were its own sequence', () => {
  for (const run of RUNS) {
    it(`${runLabel(run)}: f64, causal/full, G ∈ {1, H}, documents of 1 to S/2 tokens, a window, padding`, async () => {
      const H = run.P === 3 ? 6 : 4;
      const S = 8 * run.P;
      let ran = 0;
      for (const causal of [true, false]) {
        for (const G of [1, H]) {
          if (run.scheme === 'ulysses' && G % run.P !== 0 && run.P % G !== 0) continue;
          for (const lens of [[S / 2 - 1, 1, 3], [1, 1, 5, S / 4]]) {
            await check(run, { B: 1, S, H, G, D: 4, causal, dtype: 'float64' }, lens);
            ran++;
          }
        }
      }
      await check(run, { B: 1, S, H, G: H, D: 4, causal: true, window: 2, dtype: 'float64' }, [5, 2, 7]);
      if (run.scheme !== 'local') await check(run, { B: 1, S: S + 1, H, G: H, D: 4, causal: true, dtype: 'float64' }, [3, S / 2], true);
      assert.ok(ran >= 4, `${runLabel(run)}: only ${ran} cases ran`);
    });
  }

  it('float32 on the native kernels: zigzag, ulysses, ring, allgather at P = 2, documents of 1-40 tokens, padded', async (t) => {
    if (!native) return t.skip(`native backend unavailable: ${skipReason}`);
    for (const scheme of ['zigzag', 'ulysses', 'ring', 'allgather'] as const) {
      const c: Case = { B: 1, S: 97, H: 4, G: 2, D: 32, causal: true, dtype: 'float32' };
      const x = makeInputs(c, 9);
      const docs = docsOf(c.S, [40, 1, 17, 3]);
      const ref = perDocument({ ...c, dtype: 'float64' }, { q: toF64(x.q), k: toF64(x.k), v: toF64(x.v), dOut: toF64(x.dOut) }, docs);
      const got = await distributedAttention({ scheme, P: 2, ...x, B: 1, S: c.S, H: 4, G: 2, D: 32, docs, pad: true, kernels: native });
      for (const f of FIELDS) close32(got[f]!, ref[f], `${scheme} native docs padded: ${f}`);
    }
  });

  it('positions past the native limit are a clear error', async () => {
    const S = 4097;
    const c: Case = { B: 1, S, H: 1, G: 1, D: 2, causal: true, dtype: 'float64' };
    const x = makeInputs(c, 1);
    const docs = Int32Array.from({ length: S }, (_, p) => p);  // one-token documents: position p maps to p + p·S
    await assert.rejects(distributedAttention({ scheme: 'local', P: 1, ...x, B: 1, S, H: 1, G: 1, D: 2, docs }), /packed documents: position 4095 of document 4095 maps to 16781310 >= 2\^24 \(S=4097\)/);
  });

  it('one document is plain attention; documents change the result; bad docs are errors naming the entry', async () => {
    const c: Case = { B: 1, S: 16, H: 2, G: 2, D: 4, causal: true, dtype: 'float64' };
    const x = makeInputs(c, 4);
    const plain = await distributedAttention({ scheme: 'zigzag', P: 2, ...x, B: 1, S: 16, H: 2, G: 2, D: 4 });
    const one = await distributedAttention({ scheme: 'zigzag', P: 2, ...x, B: 1, S: 16, H: 2, G: 2, D: 4, docs: new Int32Array(16) });
    for (const f of FIELDS) expectAllClose(one[f]!, plain[f]!, tolFor('float64'), `one document: ${f}`);
    const two = await distributedAttention({ scheme: 'zigzag', P: 2, ...x, B: 1, S: 16, H: 2, G: 2, D: 4, docs: docsOf(16, [8]) });
    assert.ok(two.out.some((v, i) => Math.abs(v - plain.out[i]!) > 1e-3), 'two documents gave the one-document result');
    await assert.rejects(distributedAttention({ scheme: 'zigzag', P: 2, ...x, B: 1, S: 16, H: 2, G: 2, D: 4, docs: Int32Array.from({ length: 16 }, (_, i) => (i < 8 ? 0 : 2)) }), /docs\[8\]=2 after 0: documents must count up from 0 by steps of 1/);
    const x2 = makeInputs({ ...c, B: 2 }, 4);
    await assert.rejects(distributedAttention({ scheme: 'zigzag', P: 2, ...x2, B: 2, S: 16, H: 2, G: 2, D: 4, docs: new Int32Array(16) }), /packed documents need B=1/);
  });
});
