/** The transport-independent comm suite: registered once per transport by *.test.ts files. */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { runRanks, ThreadsPool } from '../../src/comm/index.js';

const CASES = new URL('./cases.js', import.meta.url).href;
const PS = [1, 2, 3, 4, 8];

export function commSuite(transport: 'inproc' | 'threads'): void {
  // One pool of 8 workers serves every P ≤ 8 (faults terminate it; the next run restarts it).
  const pool = transport === 'threads' ? new ThreadsPool(8) : undefined;
  after(() => pool?.close());
  const run = <T>(P: number, fn: string, args?: unknown, timeoutMs = 20_000) =>
    runRanks<T>(P, { module: CASES, fn, args }, { transport, pool, timeoutMs });

  describe(`comm on ${transport}`, () => {
    for (const P of PS) {
      it(`every collective, every dtype, uneven sizes vs sequential definitions (P=${P})`, async () => {
        const errs = await run<string[]>(P, 'allCollectives');
        assert.deepEqual(errs.flat().slice(0, 10), []);
      });
    }
    for (const P of [1, 2, 3, 4, 8]) {
      it(`every collective with buffers from allocBuffer (zero-copy path) (P=${P})`, async () => {
        const errs = await run<string[]>(P, 'allCollectivesShared');
        assert.deepEqual(errs.flat().slice(0, 10), []);
      });
    }
    for (const P of [2, 4]) {
      it(`a send buffer from allocBuffer may be overwritten as soon as the call settles (P=${P})`, async () => {
        assert.deepEqual((await run<string[]>(P, 'overwriteAfterSettle')).flat(), []);
      });
      it(`... and with the native memmove as the bulk copy (P=${P})`, async () => {
        assert.deepEqual((await run<string[]>(P, 'overwriteAfterSettleNativeCopy')).flat(), []);
      });
      it(`large float sums through the native bulk add are bitwise the sequential ones (P=${P})`, async () => {
        assert.deepEqual((await run<string[]>(P, 'largeSumsNativeAdd')).flat(), []);
      });
    }
    for (const P of [1, 2, 3, 4]) {
      it(`ordinary buffers of ~100-200 KB: one copy, read by address where the op allows (P=${P})`, async () => {
        assert.deepEqual((await run<string[]>(P, 'largeOrdinaryRaw')).flat().slice(0, 10), []);
      });
    }
    for (const P of [1, 2, 3, 4]) {
      for (const fn of ['rowsOrdinary', 'rowsShared', 'rowsRaw']) {
        it(`allToAllRows: gathers, scatters, sums of repeated rows, every dtype (${fn}, P=${P})`, async () => {
          const errs = await run<string[]>(P, fn);
          assert.deepEqual(errs.flat().slice(0, 10), []);
        });
      }
    }
    for (const P of [1, 2, 3, 4]) {
      it(`peerBuffers: every member's buffer mapped, written in place by the others (P=${P})`, async () => {
        assert.deepEqual((await run<string[]>(P, 'peerBuffersCase')).flat(), []);
      });
    }
    for (const P of [1, 3, 4]) {
      it(`reduceScatter∘allGather == allReduce; allToAll twice is the identity (P=${P})`, async () => {
        assert.deepEqual((await run<string[]>(P, 'properties')).flat(), []);
      });
    }
    for (const P of [1, 2, 3, 8]) {
      it(`ring sendRecv with overlap (P=${P})`, async () => {
        assert.deepEqual((await run<string[]>(P, 'ringOverlap')).flat(), []);
      });
    }
    it('mesh dp2×sp2×tp1: all axes concurrently', async () => {
      assert.deepEqual((await run<string[]>(4, 'meshConcurrent', { dp: 2, sp: 2, tp: 1 })).flat(), []);
    });
    it('mesh dp2×(ulysses2×ring2): all axes concurrently', async () => {
      assert.deepEqual((await run<string[]>(8, 'meshConcurrent', { dp: 2, sp: 4, tp: 1, ulysses: 2, ring: 2 })).flat(), []);
    });
    it('args are delivered and results returned in rank order', async () => {
      const res = await run<{ rank: number; size: number; transport: string; args: unknown }>(3, 'returnArgs', { a: [1, 2] });
      assert.deepEqual(res, [0, 1, 2].map((rank) => ({ rank, size: 3, transport, args: { a: [1, 2] } })));
    });

    describe('faults (timeout 2 s)', () => {
      const expectFail = async (P: number, fn: string, re: RegExp, args?: unknown, limitMs = 1500) => {
        const t0 = performance.now();
        await assert.rejects(run(P, fn, args, 2000), (e: Error) => {
          assert.match(e.message, re);
          return true;
        });
        const ms = performance.now() - t0;
        assert.ok(ms < limitMs, `took ${ms.toFixed(0)} ms (limit ${limitMs})`);
      };
      it('a rank throws while the others are in allReduce', () => expectFail(4, 'throwMidAllReduce', /^rank 2 failed: boom on rank 2$/));
      it('a rank skips a collective: timeout names the missing rank', () =>
        expectFail(3, 'skipCollective', /^rank [02] failed in allReduce #1 \(axis world\): allReduce #1 on axis world timed out after 2000 ms: rank 1 has not arrived \(arrived: 0, 2\)$/, { sleepMs: 3000 }, 3500));
      it('a rank issues a different size: mismatch names both', () =>
        // With 3 ranks on threads, whichever pair is compared first is named: rank 1 (4096 B)
        // against rank 0 or rank 2 (1024 B), in either order.
        expectFail(3, 'wrongSize', /^rank \d failed in allReduce #1 \(axis world\): (rank 1 called allReduce\(4096 B\) but rank [02] called allReduce\(1024 B\)|rank [02] called allReduce\(1024 B\) but rank 1 called allReduce\(4096 B\)) at seq 1 on axis world$/));
      it('a rank issues a different op: mismatch names both', () =>
        expectFail(2, 'wrongOp', /rank 1 called allGather\(4096 B\) but rank 0 called allReduce\(1024 B\) at seq 0 on axis world$/));
      it('allToAllRows with another row size on one rank: mismatch names both', () =>
        expectFail(2, 'rowsWrongRow', /rank \d called allToAll\(64 B float32 rows of [24]\) but rank \d called allToAll\(64 B float32 rows of [24]\) at seq 0 on axis world$/, undefined, 2500));
      it('allToAllRows against a plain allToAll: mismatch', () => expectFail(2, 'rowsAgainstPlain', /rank \d called allToAll\(64 B float32( rows of 2)?\) but rank \d called allToAll\(64 B float32( rows of 2)?\) at seq 0 on axis world$/, undefined, 2500));
      it('allToAllRows with a row past the input: one clear line', () =>
        expectFail(2, 'rowsOutOfRange', /row map: send\[5\] = 6 is not a row of input \(6 rows of 2\)/, undefined, 2500));
      it('a rank returns while others wait for it', () => expectFail(3, 'returnEarly', /barrier #0 on axis world: rank 0 returned without calling it$/));
      // inproc shares one thread: a synchronous endless loop there would block everything.
      it('a rank throws while a peer spins synchronously', { skip: transport === 'inproc' }, () =>
        expectFail(2, 'spinWhilePeerFails', /^rank 1 failed: boom on rank 1$/, undefined, 10_000));
      it('a non-cloneable result fails the rank', async () => {
        // inproc returns values as they are; threads must clone them.
        if (transport === 'inproc') return;
        await expectFail(2, 'badResult', /^rank \d failed: result is not structured-cloneable/);
      });
      it('a rank throws while a peer offers its buffer by address', () => expectFail(2, 'throwWhilePeerOffersRaw', /^rank 1 failed: boom on rank 1$/));
      it('a peer arriving after the offering rank timed out never reads its buffer', () =>
        expectFail(2, 'lateReaderAfterTimeout', /^rank 0 failed in sendRecv #1 \(axis world\): sendRecv #1 on axis world timed out after 2000 ms: rank 1 has not arrived/, undefined, 3500));
      it('runs again after faults', async () => {
        assert.deepEqual((await run<string[]>(4, 'properties')).flat(), []);
      });
    });
  });
}
