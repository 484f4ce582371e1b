/**
 * A smaller sweep on the threads transport (one worker per rank, js kernels): the same strategy
 * code must give the same results as inproc — bitwise, since reductions and folds run in the same
 * order — and log the same bytes. Skipped while the transport is not available.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { distributedAttention } from '../../src/parallel/distributed.js';
import { runRanks } from '../../src/comm/run.js';
import type { SchemeName } from '../../src/parallel/types.js';
import { makeInputs, type Case } from './harness.js';

async function threadsAvailable(): Promise<string | null> {
  try {
    await runRanks(1, { module: new URL('../../src/parallel/distributed.js', import.meta.url), fn: 'distributedAttentionRank', args: probeArgs() }, { transport: 'threads', timeoutMs: 20_000 });
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

function probeArgs() {
  const c: Case = { B: 1, S: 4, H: 1, G: 1, D: 2, causal: true, dtype: 'float64' };
  return { o: { scheme: 'local', P: 1, ...makeInputs(c), ...c } };
}

describe('schemes on the threads transport', async () => {
  const why = await threadsAvailable();
  const runs: { scheme: SchemeName; P: number; ulysses?: number }[] = [
    { scheme: 'ring', P: 3 },
    { scheme: 'zigzag', P: 4 },
    { scheme: 'stripe', P: 2 },
    { scheme: 'ulysses', P: 4 },
    { scheme: 'allgather', P: 3 },
    { scheme: 'rsa', P: 2 },
    { scheme: 'hybrid', P: 4, ulysses: 2 },
  ];
  for (const run of runs) {
    it(`${run.scheme} P=${run.P}: threads == inproc bitwise, same comm bytes`, { skip: why ? `threads transport unavailable: ${why}` : false }, async () => {
      for (const dtype of ['float32', 'float64'] as const) {
        const c: Case = { B: 2, S: 24, H: 4, G: 2, D: 4, causal: true, dtype };
        const x = makeInputs(c, 31);
        const a = await distributedAttention({ ...run, ...x, ...c, transport: 'inproc' });
        const b = await distributedAttention({ ...run, ...x, ...c, transport: 'threads', timeoutMs: 30_000 });
        for (const f of ['out', 'lse', 'dq', 'dk', 'dv'] as const) assert.deepEqual(b[f], a[f], `${run.scheme} ${dtype}: ${f}`);
        assert.deepEqual(b.commBytes, a.commBytes);
      }
    });
  }
});
