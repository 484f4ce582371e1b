/** Layouts, permutations, tile rules and load balance (algorithms.md §2.2–2.4, §8.3, §12.2 M1/M3, N5). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  allowedPairs,
  contiguousLayout,
  gatherTokens,
  hybridLayout,
  inversePermutation,
  layoutFor,
  layoutOrder,
  shardTokens,
  stripeLayout,
  tileRules,
  unshardTokens,
  zigzagLayout,
  type RingKind,
} from '../../src/parallel/index.js';
import { randn } from '../helpers.js';

const arr = (p: Int32Array) => Array.from(p);

describe('layouts', () => {
  it('zigzag: rank r holds chunks r and 2P−1−r (P = 4 example and TE docstring example)', () => {
    const z = zigzagLayout(16, 4);
    assert.deepEqual(arr(z.positions(0)), [0, 1, 14, 15]);
    assert.deepEqual(arr(z.positions(1)), [2, 3, 12, 13]);
    assert.deepEqual(arr(z.positions(3)), [6, 7, 8, 9]);
    const te = zigzagLayout(12, 2);
    assert.deepEqual(arr(te.positions(0)), [0, 1, 2, 9, 10, 11]);
    assert.deepEqual(arr(te.positions(1)), [3, 4, 5, 6, 7, 8]);
  });

  it('stripe: local index a on rank r is global a·P + r; contiguous: blocks', () => {
    assert.deepEqual(arr(stripeLayout(12, 3).positions(1)), [1, 4, 7, 10]);
    assert.deepEqual(arr(contiguousLayout(12, 3).positions(2)), [8, 9, 10, 11]);
  });

  it('hybrid: the ulysses group of ring rank ρ together holds exactly the zigzag pair of ρ', () => {
    for (const [S, u, r] of [[16, 2, 2], [24, 2, 3], [48, 4, 2], [48, 2, 4]] as const) {
      const h = hybridLayout(S, u, r);
      const z = zigzagLayout(S, r);
      for (let rho = 0; rho < r; rho++) {
        const gathered = Array.from({ length: u }, (_, v) => arr(h.positions(rho * u + v))).flat();
        assert.deepEqual(gathered, arr(z.positions(rho)), `S=${S} u=${u} r=${r} ρ=${rho}`);
      }
    }
  });

  it('permutation and inverse are exact inverses; shard/unshard round-trips, for every layout and (S, P)', () => {
    for (const P of [1, 2, 3, 4, 5, 8]) {
      for (const S of [2 * P, 6 * P, 10 * P]) {
        const layouts = [contiguousLayout(S, P), zigzagLayout(S, P), stripeLayout(S, P)];
        if (P % 2 === 0 && S % (2 * (P / 2)) === 0) layouts.push(hybridLayout(S, 2, P / 2));
        for (const L of layouts) {
          const order = layoutOrder(L);
          const inv = inversePermutation(order);
          for (let i = 0; i < S; i++) {
            assert.equal(inv[order[i]!], i);
            assert.equal(order[inv[i]!], i);
          }
          const B = 2;
          const row = 3;
          const x = randn('float64', B * S * row, S + P);
          const sharded = gatherTokens(x, order, B, S, row);
          assert.deepEqual(gatherTokens(sharded, inv, B, S, row), x);
          const shards = Array.from({ length: P }, (_, r) => shardTokens(L, x, B, row, r));
          assert.deepEqual(unshardTokens(L, shards, B, row), x, `${L.kind} S=${S} P=${P}`);
        }
      }
    }
  });

  it('clear errors for lengths that do not divide', () => {
    assert.throws(() => zigzagLayout(30, 4), { message: 'zigzag: S=30 not divisible by 2*sp=8' });
    assert.throws(() => contiguousLayout(30, 4, 'ring'), { message: 'ring: S=30 not divisible by sp=4' });
    assert.throws(() => stripeLayout(10, 3), { message: 'stripe: S=10 not divisible by sp=3' });
    assert.throws(() => layoutFor('ulysses', 10, 4), { message: 'ulysses: S=10 not divisible by sp=4' });
    assert.throws(() => layoutFor('allgather', 9, 2), { message: 'allgather: S=9 not divisible by sp=2' });
    assert.throws(() => layoutFor('rsa', 7, 2), { message: 'rsa: S=7 not divisible by sp=2' });
    assert.throws(() => hybridLayout(20, 2, 4), { message: 'hybrid: S=20 not divisible by 2*ring=8' });
    assert.throws(() => hybridLayout(12, 4, 2), { message: 'hybrid: S=12 not divisible by sp=8 (ulysses=4 x ring=2)' });
    assert.throws(() => layoutFor('hybrid', 16, 4), /hybrid: ulysses=undefined must be a positive divisor of sp=4/);
    assert.throws(() => inversePermutation(Int32Array.from([0, 2, 2])), /not a permutation/);
    assert.throws(() => zigzagLayout(16, 4).positions(4), /rank 4 outside/);
  });
});

/** Does the (query chunk, key chunk) tile hold any causally allowed pair? Judged on positions alone. */
function tileHasPair(qPos: Int32Array, kPos: Int32Array): boolean {
  return Math.min(...kPos) <= Math.max(...qPos);
}

describe('ring tile rules and load balance', () => {
  for (const kind of ['ring', 'zigzag', 'stripe'] as RingKind[]) {
    it(`${kind}: the tile rule skips exactly the tiles with no allowed (q, k) pair`, () => {
      for (const P of [1, 2, 3, 4, 8]) {
        const L = layoutFor(kind, 4 * P, P);
        const c = L.chunks;
        const chunk = (r: number, i: number) => L.positions(r).subarray((i * L.T) / c, ((i + 1) * L.T) / c);
        for (let r = 0; r < P; r++) {
          for (let j = 0; j < P; j++) {
            for (let qc = 0; qc < c; qc++) {
              for (let kc = 0; kc < c; kc++) {
                const has = tileHasPair(chunk(r, qc), chunk(j, kc));
                const rule = tileRules[kind](r, j, qc, kc);
                // Stripe keeps its (rare) empty tiles: only the one-row shift makes them empty.
                if (kind === 'stripe') assert.ok(rule || !has);
                else assert.equal(rule, has, `${kind} P=${P} r=${r} j=${j} tile (${qc},${kc})`);
              }
            }
          }
        }
      }
    });
  }

  it('allgather: zigzag layout (equal causal pairs per rank) by default when S splits into 2P chunks, contiguous otherwise or on request', () => {
    for (const P of [2, 3, 4]) {
      const S = 8 * P;
      const L = layoutFor('allgather', S, P);
      for (let r = 0; r < P; r++) assert.deepEqual(arr(L.positions(r)), arr(zigzagLayout(S, P).positions(r)), `P=${P} rank ${r}`);
      const pairs = Array.from({ length: P }, (_, r) => allowedPairs(L.positions(r), S, true));
      assert.ok(pairs.every((x) => x === pairs[0]), `allgather P=${P}: pairs per rank ${pairs.join(',')}`);
      const odd = layoutFor('allgather', 3 * P, P); // 3P tokens: 2P chunks do not divide them
      assert.deepEqual(arr(odd.positions(P - 1)), arr(contiguousLayout(3 * P, P).positions(P - 1)));
      const asked = layoutFor('allgather', S, P, { allgatherLayout: 'contiguous' });
      assert.deepEqual(arr(asked.positions(0)), arr(contiguousLayout(S, P).positions(0)));
    }
  });

  it('zigzag: every rank has the same number of causal (q, k) pairs and the same tile area per step; plain ring does not', () => {
    for (const P of [2, 3, 4, 8]) {
      const S = 16 * P;
      const z = zigzagLayout(S, P);
      const pairs = Array.from({ length: P }, (_, r) => allowedPairs(z.positions(r), S, true));
      assert.ok(pairs.every((x) => x === pairs[0]), `zigzag P=${P}: pairs per rank ${pairs.join(',')}`);
      // Per step: each rank computes the same number of chunk tiles (2 for j ≠ r, 3 on the diagonal).
      for (let s = 0; s < P; s++) {
        const tiles = Array.from({ length: P }, (_, r) => {
          const j = (r - s + P) % P;
          let n = 0;
          for (let qc = 0; qc < 2; qc++) for (let kc = 0; kc < 2; kc++) if (tileRules.zigzag(r, j, qc, kc)) n++;
          return n;
        });
        assert.ok(tiles.every((x) => x === tiles[0]), `zigzag P=${P} step ${s}: tiles ${tiles.join(',')}`);
      }
      const c = contiguousLayout(S, P);
      const cp = Array.from({ length: P }, (_, r) => allowedPairs(c.positions(r), S, true));
      // Contiguous: rank P−1 does (2P−1)× the work of rank 0 — the imbalance zigzag removes.
      assert.equal(cp[P - 1]! / cp[0]!, (2 * P * 16 - 16 + 1) / 17);
      const st = stripeLayout(S, P);
      const sp = Array.from({ length: P }, (_, r) => allowedPairs(st.positions(r), S, true));
      // Stripe: row a of rank r sees a·P + r + 1 keys — at most P−1 more than rank 0's row, T·(P−1) in all.
      assert.equal(Math.max(...sp) - Math.min(...sp), (S / P) * (P - 1), `stripe P=${P}`);
    }
  });
  it('allowedPairs counts what the mask allows: causal or not, with a window, padding none (brute force)', () => {
    const S = 20;
    const qPos = Int32Array.from([0, 3, 7, 19, -1, 12]);
    for (const causal of [true, false]) {
      for (const window of [undefined, 0, 2, 5, 30]) {
        let n = 0;
        for (const q of qPos) for (let k = 0; k < S; k++) if (q >= 0 && (!causal || k <= q) && (window === undefined || k >= q - window)) n++;
        assert.equal(allowedPairs(qPos, S, causal, window), n, `causal=${causal} window=${window}`);
      }
    }
  });
});
