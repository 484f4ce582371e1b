/**
 * Parameters live in ONE flat buffer (and gradients in another of the same layout), with named
 * views. One buffer makes the optimizer, gradient clipping and the data/sequence-parallel gradient
 * all-reduce a single call each.
 */
import type { Buf } from '../tensor/dtype.js';
import type { Arena } from '../tensor/arena.js';
import { Rng } from '../tensor/rng.js';
import { paramSpecs, type GPTConfig, type ParamSpec } from './config.js';

export interface ParamEntry extends ParamSpec {
  offset: number;
  size: number;
}

export class ParamStore {
  readonly entries: ParamEntry[];
  readonly byName = new Map<string, ParamEntry>();
  readonly size: number;

  constructor(readonly config: GPTConfig) {
    let offset = 0;
    this.entries = paramSpecs(config).map((s) => {
      const size = s.shape.reduce((a, b) => a * b, 1);
      const e = { ...s, offset, size };
      offset += size;
      this.byName.set(s.name, e);
      return e;
    });
    this.size = offset;
  }

  entry(name: string): ParamEntry {
    const e = this.byName.get(name);
    if (!e) throw new Error(`no parameter named ${name}`);
    return e;
  }

  /** View of tensor `name` inside a flat buffer of this layout (params or grads). */
  view(flat: Buf, name: string): Buf {
    const e = this.entry(name);
    return flat.subarray(e.offset, e.offset + e.size);
  }

  /** Like `view`, but null when the tensor does not exist (e.g. biases in a bias-free config). */
  maybeView(flat: Buf, name: string): Buf | null {
    const e = this.byName.get(name);
    return e ? flat.subarray(e.offset, e.offset + e.size) : null;
  }

  alloc(arena: Arena, category: 'params' | 'grads' | 'optimizer'): Buf {
    return arena.alloc(category, this.size);
  }

  /**
   * GPT-2 style init from a seed: N(0, 0.02), residual projections scaled by 1/sqrt(2L), norms 1,
   * biases 0. Values are drawn in float64 and rounded once, so f32 and f64 runs start from the
   * same numbers up to rounding.
   */
  init(flat: Buf, seed: number): void {
    const rng = new Rng(seed);
    const std = 0.02;
    const resStd = std / Math.sqrt(2 * this.config.layers);
    for (const e of this.entries) {
      const v = flat.subarray(e.offset, e.offset + e.size);
      if (e.init === 'zeros') v.fill(0);
      else if (e.init === 'ones') v.fill(1);
      else rng.fillNormal(v, e.init === 'residual' ? resStd : std);
    }
  }

  /** Mask with 1 where weight decay applies, in the flat layout. */
  decayMask(): Uint8Array {
    const m = new Uint8Array(this.size);
    for (const e of this.entries) if (e.decay) m.fill(1, e.offset, e.offset + e.size);
    return m;
  }
}
