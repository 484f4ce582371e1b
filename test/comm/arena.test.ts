/** The threads transport's per-rank shared arena allocator (first-fit, coalescing, growable). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ArenaAlloc, newArena } from '../../src/comm/threads/shm.js';

describe('ArenaAlloc', () => {
  it('hands out disjoint 64-byte-aligned blocks and grows the SAB on demand', () => {
    const a = new ArenaAlloc(newArena());
    const sizes = [1, 100, 4096, 3 << 20, 7];
    const blocks = sizes.map((n) => ({ off: a.alloc(n), n }));
    for (const b of blocks) assert.equal(b.off % 64, 0);
    const sorted = [...blocks].sort((x, y) => x.off - y.off);
    for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i - 1]!.off + sorted[i - 1]!.n <= sorted[i]!.off, 'blocks overlap');
    const end = Math.max(...blocks.map((b) => b.off + b.n));
    assert.ok(a.sab.byteLength >= end, `arena ${a.sab.byteLength} B < end of last block ${end}`);
  });

  it('reuses freed memory first-fit and coalesces neighbours', () => {
    const a = new ArenaAlloc(newArena());
    const x = a.alloc(1000);
    const y = a.alloc(1000);
    const z = a.alloc(1000);
    a.alloc(64); // keeps the tail busy so x..z stay below the bump pointer
    a.release(x);
    a.release(z);
    a.release(y); // x, y, z merge into one free block
    assert.equal(a.alloc(3 * 1024), x, 'merged block of three is reused from its start');
  });

  it('a freed tail returns to the bump pointer; live bytes are tracked', () => {
    const a = new ArenaAlloc(newArena());
    const x = a.alloc(128);
    const y = a.alloc(256);
    assert.equal(a.liveBytes, 384);
    a.release(y);
    a.release(x);
    assert.equal(a.liveBytes, 0);
    assert.equal(a.alloc(64), 0);
  });

  it('rejects releasing something it did not hand out', () => {
    const a = new ArenaAlloc(newArena());
    const x = a.alloc(128);
    assert.throws(() => a.release(x + 64), /not an allocated block/);
    a.release(x);
    assert.throws(() => a.release(x), /not an allocated block/);
  });

  it('staging regions grow by at least 1.5x and give their old block back', () => {
    const a = new ArenaAlloc(newArena());
    const r0 = a.region(0, 1000);
    assert.equal(a.region(0, 500), r0, 'a smaller need reuses the region');
    a.region(0, 1100);
    assert.ok(a.liveBytes >= 1500 && a.liveBytes < 1000 + 1600, `live ${a.liveBytes}: the old region must be freed`);
  });
});
