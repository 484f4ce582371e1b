/**
 * Checkpoints: DIR/ckpt-<step>/{model.safetensors, optimizer.safetensors, state.json} plus
 * DIR/latest naming the newest. A checkpoint is written into a temporary directory and renamed
 * into place, and `latest` is replaced by rename too, so a crash at any moment leaves either the
 * previous complete checkpoint or the new complete one — never a torn one.
 *
 * Tensor names: model.safetensors holds the parameters under their ParamStore names (wte,
 * h.<l>.ln1.weight, h.<l>.attn.qkv.weight, ..., lnf.weight, lm_head.weight); optimizer.safetensors
 * holds AdamW moments as "m.<name>" and "v.<name>".
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, statSync, fsyncSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import type { Buf } from '../tensor/dtype.js';
import type { ParamStore } from '../model/params.js';
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from './safetensors.js';

export const CHECKPOINT_FORMAT = 'seqpar-checkpoint/1';

export interface CheckpointState {
  format: string;
  step: number;
  dtype: 'float32' | 'float64';
  /** Model config and training options needed to continue exactly. */
  config: Record<string, unknown>;
  train: Record<string, unknown>;
  dataRng: number[];
  optimizer: { step: number; beta1: number; beta2: number; eps: number; weightDecay: number };
  files: Record<string, { bytes: number; sha256: string }>;
}

function named(store: ParamStore, flat: Buf, prefix = ''): NamedTensor[] {
  return store.entries.map((e) => ({ name: prefix + e.name, shape: e.shape, data: flat.subarray(e.offset, e.offset + e.size) }));
}

function writeDurable(path: string, data: Buffer | string): void {
  writeFileSync(path, data);
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function saveCheckpoint(
  dir: string,
  store: ParamStore,
  tensors: { params: Buf; m: Buf; v: Buf },
  state: Omit<CheckpointState, 'files' | 'format'>,
): string {
  mkdirSync(dir, { recursive: true });
  const name = `ckpt-${String(state.step).padStart(6, '0')}`;
  const final = join(dir, name);
  const tmp = join(dir, `.${name}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  const model = encodeSafetensors(named(store, tensors.params), { format: CHECKPOINT_FORMAT });
  const optim = encodeSafetensors([...named(store, tensors.m, 'm.'), ...named(store, tensors.v, 'v.')], { format: CHECKPOINT_FORMAT });
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  writeDurable(join(tmp, 'model.safetensors'), model);
  writeDurable(join(tmp, 'optimizer.safetensors'), optim);
  const full: CheckpointState = {
    format: CHECKPOINT_FORMAT,
    ...state,
    files: {
      'model.safetensors': { bytes: model.length, sha256: sha(model) },
      'optimizer.safetensors': { bytes: optim.length, sha256: sha(optim) },
    },
  };
  writeDurable(join(tmp, 'state.json'), JSON.stringify(full, null, 1));
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  const latestTmp = join(dir, `.latest.tmp-${process.pid}`);
  writeDurable(latestTmp, name + '\n');
  renameSync(latestTmp, join(dir, 'latest'));
  return final;
}

/** DIR may be a run directory (uses DIR/latest) or a checkpoint directory itself. */
export function resolveCheckpointDir(dir: string): string {
  if (existsSync(join(dir, 'state.json'))) return dir;
  const latest = join(dir, 'latest');
  if (existsSync(latest)) {
    const name = readFileSync(latest, 'utf8').trim();
    const p = join(dir, name);
    if (existsSync(join(p, 'state.json'))) return p;
  }
  throw new Error(`--resume ${dir}: no checkpoint found (expected state.json or a 'latest' file)`);
}

export interface LoadedCheckpoint {
  dir: string;
  state: CheckpointState;
  params: Map<string, NamedTensor>;
  optimizer: Map<string, NamedTensor>;
}

/** Reads and verifies (sizes and sha256) a checkpoint. Throws one line on any corruption. */
export function loadCheckpoint(dirArg: string): LoadedCheckpoint {
  const dir = resolveCheckpointDir(dirArg);
  let state: CheckpointState;
  try {
    state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
  } catch {
    throw new Error(`--resume ${dirArg}: corrupt checkpoint (state.json is not valid JSON)`);
  }
  if (state.format !== CHECKPOINT_FORMAT) throw new Error(`--resume ${dirArg}: corrupt checkpoint (format '${state.format}', expected '${CHECKPOINT_FORMAT}')`);
  const read = (f: string) => {
    const p = join(dir, f);
    if (!existsSync(p)) throw new Error(`--resume ${dirArg}: corrupt checkpoint (${f} missing)`);
    const b = readFileSync(p);
    const want = state.files?.[f];
    const sha = createHash('sha256').update(b).digest('hex');
    if (!want || want.bytes !== b.length || want.sha256 !== sha) throw new Error(`--resume ${dirArg}: corrupt checkpoint (${f} does not match its recorded size/sha256)`);
    return decodeSafetensors(b, `--resume ${dirArg}: ${f}`).tensors;
  };
  return { dir, state, params: read('model.safetensors'), optimizer: read('optimizer.safetensors') };
}

/** Copies named tensors into a flat buffer of the store's layout, checking every shape. */
export function restoreFlat(store: ParamStore, flat: Buf, tensors: Map<string, NamedTensor>, prefix = ''): void {
  for (const e of store.entries) {
    const t = tensors.get(prefix + e.name);
    if (!t) throw new Error(`checkpoint has no tensor ${prefix + e.name}`);
    if (t.shape.join(',') !== e.shape.join(',')) throw new Error(`checkpoint tensor ${prefix + e.name} has shape [${t.shape}], model expects [${e.shape}]`);
    flat.set(t.data, e.offset);
  }
}

export function checkpointExists(dir: string): boolean {
  try {
    resolveCheckpointDir(dir);
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}
