/** Checkpoint, resume, and dtype agreement of whole training runs. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyOptions, trainLocal } from './util.js';
import { expectAllClose } from '../helpers.js';
import { decodeSafetensors, encodeSafetensors } from '../../src/train/safetensors.js';

describe('training runs', () => {
  for (const dtype of ['float64', 'float32'] as const) {
    it(`K steps, checkpoint, resume, K more equals 2K uninterrupted steps bit for bit (${dtype})`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'seqpar-resume-'));
      try {
        const K = 3;
        const full = await trainLocal(tinyOptions({ dtype, steps: 2 * K, checkpointEvery: K, out: join(dir, 'a') }));
        assert.deepEqual(readdirSync(join(dir, 'a')).filter((f) => f.startsWith('ckpt-')).sort(), ['ckpt-000003', 'ckpt-000006']);
        const resumed = await trainLocal(tinyOptions({ dtype, steps: 2 * K, checkpointEvery: K, out: join(dir, 'b'), resume: join(dir, 'a', 'ckpt-000003') }));
        assert.deepEqual(resumed.losses, full.losses.slice(K));
        assert.deepEqual(Array.from(resumed.params), Array.from(full.params));
        // The final checkpoints are byte-identical, and loss went down.
        const a = readFileSync(join(dir, 'a', 'ckpt-000006', 'model.safetensors'));
        const b = readFileSync(join(dir, 'b', 'ckpt-000006', 'model.safetensors'));
        assert.ok(a.equals(b), 'final model.safetensors differ');
        assert.ok(full.losses[2 * K - 1]! < full.losses[0]!, `loss did not fall: ${full.losses}`);
        // metrics.jsonl: one JSON object per step with the documented fields.
        const lines = readFileSync(join(dir, 'a', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
        assert.equal(lines.length, 2 * K);
        for (const k of ['step', 'loss', 'lr', 'tokensPerSec', 'peakBytes']) assert.ok(k in lines[0], `metrics lacks ${k}`);
        assert.ok('valBpb' in lines[K - 1] && !('valBpb' in lines[0]));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('a float32 run and a float64 run of a tiny config agree to float32 tolerance', async () => {
    const f64 = await trainLocal(tinyOptions({ dtype: 'float64', steps: 5 }));
    const f32 = await trainLocal(tinyOptions({ dtype: 'float32', steps: 5 }));
    expectAllClose(f32.losses, f64.losses, { rtol: 2e-5 }, 'losses f32 vs f64');
    expectAllClose(f32.params, f64.params, { rtol: 1e-3, atol: 1e-4 }, 'params f32 vs f64');
  });

  it('the checkpoint directory is replaced atomically: no temp dirs remain and latest names the newest', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'seqpar-ckpt-'));
    try {
      await trainLocal(tinyOptions({ steps: 4, checkpointEvery: 2, out: dir }));
      const names = readdirSync(dir);
      assert.ok(!names.some((n) => n.includes('.tmp')), `temp files left: ${names}`);
      assert.equal(readFileSync(join(dir, 'latest'), 'utf8').trim(), 'ckpt-000004');
      const st = decodeSafetensors(readFileSync(join(dir, 'ckpt-000004', 'model.safetensors')));
      assert.ok(st.tensors.has('wte') && st.tensors.has('h.0.attn.qkv.weight') && st.tensors.has('lm_head.weight'));
      assert.ok(existsSync(join(dir, 'ckpt-000004', 'optimizer.safetensors')));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('safetensors round-trips and rejects corrupt headers', () => {
    const buf = encodeSafetensors([
      { name: 'a', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
      { name: 'b', shape: [1], data: Float64Array.from([Math.PI]) },
    ]);
    const d = decodeSafetensors(buf);
    assert.deepEqual(Array.from(d.tensors.get('a')!.data), [1, 2, 3, 4, 5, 6]);
    assert.equal(d.tensors.get('b')!.data[0], Math.PI);
    assert.equal(Number(buf.readBigUInt64LE(0)) % 8, 0);
    assert.throws(() => decodeSafetensors(buf.subarray(0, 20)), /corrupt safetensors/);
  });
});
