/** Label shift before sharding; the corpus split; window sampling. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { shardBatch, windows, stripBrownTags, loadBrownCorpus, evalStarts } from '../../src/train/data.js';
import { zigzagLayout, stripeLayout, contiguousLayout } from '../../src/parallel/layout.js';

describe('data', () => {
  it('shifts labels on the global sequence, then shards: no target is lost at shard boundaries', () => {
    const src = new Uint8Array(Array.from({ length: 100 }, (_, i) => i));
    const S = 16;
    const batch = windows(src, [5, 40], S);
    for (const layout of [contiguousLayout(S, 4), zigzagLayout(S, 4), stripeLayout(S, 4)]) {
      const seen = new Map<number, number>();
      for (let r = 0; r < 4; r++) {
        const pos = layout.positions(r);
        const sh = shardBatch(batch, 0, 2, pos);
        for (let b = 0; b < 2; b++) {
          for (let i = 0; i < pos.length; i++) {
            // Each local token's target is the byte after it in the GLOBAL sequence.
            assert.equal(sh.targets[b * pos.length + i], sh.tokens[b * pos.length + i]! + 1);
            seen.set(b * S + pos[i]!, sh.targets[b * pos.length + i]!);
          }
        }
      }
      assert.equal(seen.size, 2 * S, 'every global target appears exactly once');
    }
  });

  it('strips Brown POS tags into plain text', () => {
    assert.equal(stripBrownTags("\n\n\tThe/at jury/nn said/vbd ``/`` no/at ''/'' ./.\n"), 'The jury said "no".');
  });

  it('loads the embedded corpus with a deterministic document split', () => {
    const c = loadBrownCorpus();
    assert.ok(c.train.length > 4_000_000 && c.val.length > 400_000, `${c.train.length} / ${c.val.length}`);
    const text = new TextDecoder().decode(c.train.subarray(0, 2000));
    assert.ok(!/\/(at|nn|vbd)\b/.test(text), 'POS tags remain');
    assert.deepEqual(loadBrownCorpus().val.subarray(0, 100), c.val.subarray(0, 100));
    assert.deepEqual(evalStarts(1000, 10, 3), [0, 329, 659]);
  });
});
