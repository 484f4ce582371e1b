/** A crash in one rank of a training job stops every rank promptly, naming the rank. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runRanks } from '../../src/comm/run.js';
import { tinyOptions } from './util.js';

describe('training faults', () => {
  // ulysses: the shared path, whose ranks wait at barriers and map each other's tensors
  for (const [transport, spScheme] of [['inproc', 'zigzag'], ['threads', 'zigzag'], ['threads', 'ulysses']] as const) {
    it(`a rank that throws stops the job within 10 s, naming the rank (${transport}, ${spScheme})`, async () => {
      const options = tinyOptions({ data: null, ranks: 2, sp: 2, spScheme, steps: 1000, transport });
      const t0 = performance.now();
      await assert.rejects(
        runRanks(2, { module: new URL('./fault-entry.js', import.meta.url), fn: 'faultyTrainEntry', args: { options, failRank: 1 } }, { transport, timeoutMs: 0 }),
        (e: Error) => {
          assert.match(e.message, /rank 1 failed.*simulated out-of-memory/);
          return true;
        },
      );
      assert.ok(performance.now() - t0 < 10_000, 'took longer than 10 s to stop');
    });
  }
});
