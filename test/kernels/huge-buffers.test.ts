/**
 * Large buffers on huge pages: with the native backend loaded, allocBuf/allocLike give buffers of
 * 4 MiB and more from the addon's allocHuge (own mapping, 2 MiB-aligned, zeroed, advised for
 * transparent huge pages). They behave as plain arrays: exact length, zeros, the same kernel bits.
 * Whether the OS grants huge pages is its business (THP may be off), so that is not asserted.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { allocBuf, allocLike, LARGE_BUFFER_BYTES, setLargeBufferAllocator } from '../../src/tensor/dtype.js';
import { loadNativeKernels, nativeAddon } from '../../src/kernels/native/index.js';
import { native, skipReason } from './native-util.js';

describe('large buffers (native backend: 2 MiB-aligned huge-page mappings)', () => {
  it('allocBuf / allocLike of >= 4 MiB: exact length, zeroed, 2 MiB-aligned, own buffer; smaller ones plain', (t) => {
    if (!native) return t.skip(`native backend unavailable: ${skipReason}`);
    loadNativeKernels();
    const a = nativeAddon()!;
    const n = LARGE_BUFFER_BYTES / 4 + 5;  // not a whole number of 2 MiB pages
    for (const b of [allocBuf('float32', n), allocLike(new Float64Array(1), n), allocBuf('float64', n)]) {
      assert.equal(b.length, n);
      assert.equal(b.buffer.byteLength, n * b.BYTES_PER_ELEMENT, 'the buffer is exactly the array');
      assert.equal(a.addressOf!(b) % (2 << 20), 0, 'starts on a 2 MiB boundary');
      assert.ok(b.every((v) => v === 0), 'zeroed');
      b[n - 1] = 7;
      b[0] = -1;
      assert.equal(b[n - 1]! + b[0]!, 6);
    }
    const small = allocBuf('float32', 1000);
    assert.equal(small.buffer.byteLength, 4000);
    assert.equal(a.allocHuge!(0), null);
    assert.throws(() => a.allocHuge!(-1), /allocHuge\(bytes\): bytes must be a non-negative number/);
  });

  it('the kernels give the same bits on huge-page buffers as on plain ones (SGEMM 1024³)', (t) => {
    if (!native) return t.skip(`native backend unavailable: ${skipReason}`);
    const N = 1024;
    const fill = (x: Float32Array) => x.forEach((_, i) => (x[i] = ((i * 2654435761) % 1000) / 1000 - 0.5));
    const huge = [allocBuf('float32', N * N), allocBuf('float32', N * N), allocBuf('float32', N * N)] as Float32Array[];
    const plain = [new Float32Array(N * N), new Float32Array(N * N), new Float32Array(N * N)];
    for (const s of [huge, plain]) {
      fill(s[0]!);
      fill(s[1]!);
      native.matmulForward({ out: s[2]! }, { x: s[0]!, weight: s[1]! }, { N, K: N, M: N });
    }
    assert.deepEqual(huge[2], plain[2]);
  });

  it('an allocator that declines (null) falls back to a plain array', () => {
    setLargeBufferAllocator(() => null);
    try {
      const b = allocBuf('float32', LARGE_BUFFER_BYTES / 4);
      assert.equal(b.length, LARGE_BUFFER_BYTES / 4);
      assert.ok(b.every((v) => v === 0));
    } finally {
      setLargeBufferAllocator(null);
      if (native) loadNativeKernels(); // reinstall the native allocator for the rest of this file's process
    }
  });
});
