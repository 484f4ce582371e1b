/**
 * Naive float64 references for the dense kernels: obvious loops straight from the formulas, written
 * without the fast kernels' blocking or saved statistics. Inputs may be any array of numbers;
 * outputs are fresh Float64Arrays. Shapes use DESIGN §3 letters.
 */

type Arr = ArrayLike<number>;

/** out[N, M] = x[N, K] · w[M, K]ᵀ + bias[M]. */
export function refMatmul(x: Arr, w: Arr, bias: Arr | null, N: number, K: number, M: number): Float64Array {
  const out = new Float64Array(N * M);
  for (let n = 0; n < N; n++) {
    for (let m = 0; m < M; m++) {
      let s = bias ? bias[m]! : 0;
      for (let k = 0; k < K; k++) s += x[n * K + k]! * w[m * K + k]!;
      out[n * M + m] = s;
    }
  }
  return out;
}

/** LayerNorm rows of x [N, C]; returns out [N, C], mean [N], rstd [N]. */
export function refLayerNorm(x: Arr, w: Arr, b: Arr, N: number, C: number, eps: number) {
  const out = new Float64Array(N * C);
  const mean = new Float64Array(N);
  const rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    const row = Array.from({ length: C }, (_, c) => x[n * C + c]!);
    const mu = row.reduce((a, v) => a + v, 0) / C;
    const variance = row.reduce((a, v) => a + (v - mu) ** 2, 0) / C;
    const r = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < C; c++) out[n * C + c] = ((row[c]! - mu) / Math.sqrt(variance + eps)) * w[c]! + b[c]!;
    mean[n] = mu;
    rstd[n] = r;
  }
  return { out, mean, rstd };
}

/** RMSNorm rows of x [N, C]; returns out [N, C], rstd [N]. */
export function refRmsNorm(x: Arr, w: Arr, N: number, C: number, eps: number) {
  const out = new Float64Array(N * C);
  const rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let ms = 0;
    for (let c = 0; c < C; c++) ms += x[n * C + c]! ** 2;
    const rms = Math.sqrt(ms / C + eps);
    for (let c = 0; c < C; c++) out[n * C + c] = (x[n * C + c]! / rms) * w[c]!;
    rstd[n] = 1 / rms;
  }
  return { out, rstd };
}

/** GELU, tanh approximation. */
export function refGelu(x: Arr): Float64Array {
  return Float64Array.from(x, (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))));
}

/** x [N, 2F] = [gate | up] -> silu(gate)·up [N, F]. */
export function refSwiglu(x: Arr, N: number, F: number): Float64Array {
  const out = new Float64Array(N * F);
  for (let n = 0; n < N; n++) {
    for (let f = 0; f < F; f++) {
      const g = x[n * 2 * F + f]!;
      const u = x[n * 2 * F + F + f]!;
      out[n * F + f] = (g / (1 + Math.exp(-g))) * u;
    }
  }
  return out;
}

/** Rows of weight [V, C] picked by tokens [N]. */
export function refEmbedding(tokens: ArrayLike<number>, w: Arr, C: number): Float64Array {
  const out = new Float64Array(tokens.length * C);
  for (let n = 0; n < tokens.length; n++) for (let c = 0; c < C; c++) out[n * C + c] = w[tokens[n]! * C + c]!;
  return out;
}

/** RoPE of x [B, T, H, D] at global positions pos [T], pairs (j, j + D/2). sign −1 rotates back. */
export function refRope(x: Arr, pos: ArrayLike<number>, B: number, T: number, H: number, D: number, base: number, sign = 1): Float64Array {
  const out = new Float64Array(B * T * H * D);
  const half = D / 2;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        const o = ((b * T + t) * H + h) * D;
        for (let j = 0; j < half; j++) {
          const theta = sign * pos[t]! * base ** (-(2 * j) / D);
          const a = x[o + j]!;
          const c = x[o + j + half]!;
          out[o + j] = a * Math.cos(theta) - c * Math.sin(theta);
          out[o + j + half] = a * Math.sin(theta) + c * Math.cos(theta);
        }
      }
    }
  }
  return out;
}

/** Cross-entropy of logits [N, V] against targets [N]; ignored rows get loss 0. */
export function refCrossEntropy(logits: Arr, targets: ArrayLike<number>, N: number, V: number, ignoreIndex: number) {
  const losses = new Float64Array(N);
  const lse = new Float64Array(N);
  let count = 0;
  for (let n = 0; n < N; n++) {
    const row = Array.from({ length: V }, (_, v) => logits[n * V + v]!);
    const mx = Math.max(...row);
    lse[n] = mx + Math.log(row.reduce((a, z) => a + Math.exp(z - mx), 0));
    if (targets[n] === ignoreIndex) continue;
    losses[n] = lse[n]! - row[targets[n]!]!;
    count++;
  }
  return { losses, lse, count };
}

export interface AdamConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** One AdamW step on plain number arrays (mutated), step 1-based, decoupled weight decay. */
export function refAdamw(param: number[], m: number[], v: number[], grad: ArrayLike<number>, c: AdamConfig, step: number): void {
  for (let j = 0; j < param.length; j++) {
    const g = grad[j]!;
    m[j] = c.beta1 * m[j]! + (1 - c.beta1) * g;
    v[j] = c.beta2 * v[j]! + (1 - c.beta2) * g * g;
    const mHat = m[j]! / (1 - c.beta1 ** step);
    const vHat = v[j]! / (1 - c.beta2 ** step);
    const decayed = param[j]! - c.lr * c.weightDecay * param[j]!;
    param[j] = decayed - (c.lr * mHat) / (Math.sqrt(vHat) + c.eps);
  }
}
