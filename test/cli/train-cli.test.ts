/** `seqpar train` as a user runs it: invalid input exits 2 with one line and writes nothing. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const TINY = ['--steps', '2', '--seq-len', '16', '--batch', '2', '--width', '16', '--layers', '1', '--heads', '2', '--ffn', '32', '--eval-batches', '1', '--quiet', '--backend', 'js'];

function run(args: string[]): { code: number | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stderr: r.stderr, stdout: r.stdout };
}

describe('seqpar train CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'seqpar-cli-'));
  const dataFile = join(dir, 'data.txt');
  writeFileSync(dataFile, 'hello sequence parallel world. '.repeat(400));
  const corrupt = join(dir, 'corrupt');
  mkdirSync(corrupt);
  writeFileSync(join(corrupt, 'state.json'), '{"format": "seqpar-checkpoint/1", "step": 1, "files": {}}');
  writeFileSync(join(corrupt, 'model.safetensors'), 'garbage');
  writeFileSync(join(corrupt, 'optimizer.safetensors'), 'garbage');
  const badJson = join(dir, 'bad.json');
  writeFileSync(badJson, '{"width": 96, "nonsense": 1}');

  const cases: [string, string[], RegExp][] = [
    ['unknown flag', ['--bogus', '3'], /unknown option --bogus/],
    ['negative steps', ['--steps', '-1'], /--steps -1: must be a positive integer/],
    ['non-numeric value', ['--lr', 'fast'], /--lr fast: must be a number/],
    ['heads not dividing width', ['--width', '96', '--heads', '5'], /--heads 5: must divide --width 96/],
    ['kv-heads not dividing heads', ['--heads', '4', '--kv-heads', '3'], /--kv-heads 3: must divide --heads 4/],
    ['bad choice', ['--dtype', 'float16'], /--dtype float16: must be one of float32\|float64/],
    ['missing data file', ['--data', join(dir, 'nope.txt')], /--data .*nope\.txt: no such file/],
    ['corrupt checkpoint', ['--resume', corrupt], /corrupt checkpoint/],
    ['missing checkpoint', ['--resume', join(dir, 'nothing')], /no checkpoint found/],
    ['unknown key in --config', ['--config', badJson], /unknown option 'nonsense'/],
    ['ranks not matching dp × sp', ['--ranks', '3', '--dp', '2'], /--ranks 3: must equal --dp 2 × --sp 1 = 2/],
    ['seq-len the zigzag layout does not split', ['--sp', '2', '--sp-scheme', 'zigzag', '--seq-len', '13'], /zigzag: S=13 not divisible by 2\*sp=4 \(--pad pads it/],
  ];
  for (const [name, args, msg] of cases) {
    it(`exits 2 with one line for: ${name}`, () => {
      const out = join(dir, `out-${name.replace(/\W+/g, '-')}`);
      const r = run(['train', ...args, '--out', out]);
      assert.equal(r.code, 2, `exit code ${r.code}; stderr: ${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `expected one line, got: ${r.stderr}`);
      assert.match(lines[0]!, msg);
      assert.ok(!existsSync(out), 'wrote output despite invalid input');
    });
  }

  it('trains on a user file, writes metrics and a checkpoint, and resumes from it', () => {
    const out = join(dir, 'run');
    const r = run(['train', ...TINY, '--data', dataFile, '--out', out, '--checkpoint-every', '1']);
    assert.equal(r.code, 0, r.stderr);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
    assert.equal(metrics.length, 2);
    assert.deepEqual(readdirSync(out).filter((f) => f.startsWith('ckpt')).sort(), ['ckpt-000001', 'ckpt-000002']);
    const r2 = run(['train', '--resume', out, '--steps', '3', '--quiet']);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 3);
    const r3 = run(['train', '--resume', out, '--width', '32']);
    assert.equal(r3.code, 2);
    assert.match(r3.stderr, /--width 32: differs from the checkpoint's 16/);
  });

  it('--pad trains a --seq-len the layout does not split (zigzag sp=2 on worker threads, 13 tokens padded to 16)', () => {
    const args = TINY.map((a, i) => (TINY[i - 1] === '--seq-len' ? '13' : a));
    const r = run(['train', ...args, '--data', dataFile, '--ranks', '2', '--sp', '2', '--sp-scheme', 'zigzag', '--pad']);
    assert.equal(r.code, 0, r.stderr);
  });

  it('resumes a checkpoint written before --pad and --window existed (their defaults apply)', () => {
    const out = join(dir, 'old-run');
    assert.equal(run(['train', ...TINY, '--data', dataFile, '--out', out]).code, 0);
    const statePath = join(out, 'ckpt-000002', 'state.json');
    const state = JSON.parse(readFileSync(statePath, 'utf8'));
    delete state.train.pad;
    delete state.train.window;
    writeFileSync(statePath, JSON.stringify(state));
    const r = run(['train', '--resume', out, '--steps', '3', '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 3);
  });

  it('prints help and exits 0', () => {
    const r = run(['train', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--seq-len/);
  });

  it.after?.(() => rmSync(dir, { recursive: true, force: true }));
});
