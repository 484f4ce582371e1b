/** Every benchmark runs one tiny iteration in CI (checks included) so none of them rots. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

describe('benchmarks (smoke mode)', () => {
  for (const theme of ['kernels', 'step', 'comm', 'sp', 'sp-attn']) {
    it(`seqpar bench ${theme} --smoke exits 0`, () => {
      const r = spawnSync(process.execPath, [CLI, 'bench', theme, '--smoke'], { encoding: 'utf8', timeout: 180_000 });
      assert.equal(r.status, 0, `seqpar bench ${theme} --smoke failed:\n${r.stderr}`);
    });
  }
  it('bench kernels --only sgemm runs the SGEMM cases alone; a bad --only is a usage error', () => {
    const r = spawnSync(process.execPath, [CLI, 'bench', 'kernels', '--smoke', '--only', 'sgemm'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /sgemm 64x64x64/);
    assert.doesNotMatch(r.stderr, /attn|train step/);
    const bad = spawnSync(process.execPath, [CLI, 'bench', 'kernels', '--only', 'gemm'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--only gemm: must be sgemm, attention or step/);
  });
  it('bench/kernels/huge-ab compares huge-page and plain SGEMM operands and checks they agree', async (t) => {
    const { loadNativeKernels } = await import('../../src/kernels/native/index.js');
    const loaded = loadNativeKernels();
    if ('error' in loaded) return t.skip(loaded.error);
    const { runHugePageAb } = await import('../../bench/kernels/huge-ab.js');
    const rows = runHugePageAb(true, () => {});
    assert.equal(rows.length, 1);
    assert.ok(rows[0]!['sameBits'] === true && Number(rows[0]!['hugeOverPlain']) > 0);
  });
  it('bench/e2e/zero-ab times the sharded against the replicated optimizer step after checking they update alike', async (t) => {
    const { loadNativeKernels } = await import('../../src/kernels/native/index.js');
    const loaded = loadNativeKernels();
    if ('error' in loaded) return t.skip(loaded.error);
    const { runZeroAb } = await import('../../bench/e2e/zero-ab.js');
    const rec = await runZeroAb(true);
    assert.ok(Number(rec['shardedMs']) > 0 && Number(rec['replicatedMs']) > 0);
    assert.ok(Number(rec['maxParamDiff']) < 1e-6);
  });
  it('bench/e2e/ulysses-ab times the shared path against the exchange after checking they train alike; the shared one holds less', async () => {
    const { runUlyssesAb } = await import('../../bench/e2e/ulysses-ab.js');
    const rec = await runUlyssesAb({ smoke: true });
    assert.ok(Number(rec['sharedSec']) > 0 && Number(rec['exchangeSec']) > 0);
    assert.ok(Number(rec['firstLossRelDiff']) < 1e-4);
    assert.ok(Number(rec['sharedPeakBytes']) < Number(rec['exchangePeakBytes']), 'no saved slot on the shared path');
  });
  it('bench sp --window trains every case with the window (the loss check holds against the windowed one-rank step)', () => {
    const r = spawnSync(process.execPath, [CLI, 'bench', 'sp', '--smoke', '--schemes', 'ring,ulysses', '--window', '8'], { encoding: 'utf8', timeout: 180_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /N=64 window=8 one rank/);
    assert.match(r.stderr, /ring +P=2: /);
  });
  it('bench sp --rounds interleaves one-rank and P-rank runs and reports each round and its ceiling', () => {
    const r = spawnSync(process.execPath, [CLI, 'bench', 'sp', '--smoke', '--schemes', 'zigzag', '--rounds', '2', '--ceiling', 'on'], { encoding: 'utf8', timeout: 180_000 });
    assert.equal(r.status, 0, r.stderr);
    // the reported speedup is the median (for two: the mean) of the two rounds' ratios it lists
    const m = /zigzag +P=2: [0-9.]+ s\/step, ×([0-9.]+) \(median of 2 interleaved rounds: ([0-9.]+), ([0-9.]+);/.exec(r.stderr);
    assert.ok(m, r.stderr);
    assert.ok(Math.abs(Number(m[1]) - (Number(m[2]) + Number(m[3])) / 2) <= 0.011, m[0]);
    // the ceiling of each round (2 independent one-rank steps at once), and the speedup's fraction
    // of it: the mean of the two rounds' speedup / ceiling
    const c = /2 independent one-rank steps at once: ×([0-9.]+) \(rounds ([0-9.]+), ([0-9.]+)\), so ([0-9]+) % of that ceiling/.exec(r.stderr);
    assert.ok(c, r.stderr);
    const [c1, c2] = [Number(c[2]), Number(c[3])];
    assert.ok(c1 > 0 && c2 > 0 && Number.isFinite(c1) && Number.isFinite(c2), c[0]);
    const frac = 100 * (Number(m[2]) / c1 + Number(m[3]) / c2) / 2;
    assert.ok(Math.abs(Number(c[4]) - frac) <= 0.02 * frac + 1, `${c[0]} vs ${frac.toFixed(1)}`);
  });
  it('bench/kernels/ab/ab.sh builds two kernel revisions into one process and checks they agree', (t) => {
    const root = fileURLToPath(new URL('../../..', import.meta.url));
    const git = spawnSync('git', ['-C', root, 'rev-parse', 'HEAD'], { encoding: 'utf8' });
    const gxx = spawnSync('g++', ['--version'], { encoding: 'utf8' });
    if (git.status !== 0 || gxx.status !== 0) return t.skip('needs a git checkout and g++');
    const r = spawnSync('bash', [`${root}/bench/kernels/ab/ab.sh`, 'HEAD', '--smoke'], { encoding: 'utf8', timeout: 300_000 });
    if (r.status === 2 && /needs AVX2/.test(r.stderr)) return t.skip(r.stderr.trim());
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { kernel: string; relDiff: number; checkOk: boolean; newOverOld: number });
    assert.deepEqual(lines.map((l) => l.kernel), ['matmulForward', 'matmulBackward dx', 'matmulBackward dW', 'sgemm', 'attnForward', 'attnBackward']);
    // HEAD against itself: the same code, so the same bits, and a finite ratio
    for (const l of lines) {
      assert.equal(l.relDiff, 0, l.kernel);
      assert.ok(l.checkOk && Number.isFinite(l.newOverOld) && l.newOverOld > 0, l.kernel);
    }
  });
  it('bench/e2e/ab-step.sh runs the model steps of two revisions in one process and checks they agree', (t) => {
    const root = fileURLToPath(new URL('../../..', import.meta.url));
    const git = spawnSync('git', ['-C', root, 'rev-parse', 'HEAD'], { encoding: 'utf8' });
    if (git.status !== 0) return t.skip('needs a git checkout');
    const r = spawnSync('bash', [`${root}/bench/e2e/ab-step.sh`, 'HEAD', '128', '1', '--smoke'], { encoding: 'utf8', timeout: 300_000 });
    assert.equal(r.status, 0, r.stderr);
    const l = JSON.parse(r.stdout.trim()) as { bench: string; relDiff: number; checkOk: boolean; newOverOld: number };
    // HEAD's committed model code against the working tree's: the same step, so the same numbers
    assert.equal(l.bench, 'train-step-ab');
    assert.ok(l.checkOk && l.relDiff < 1e-5 && Number.isFinite(l.newOverOld) && l.newOverOld > 0, r.stdout);
  });
  it('bench kernels takes every case against the highest FMA peak probed in the run', async (t) => {
    const { loadNativeKernels } = await import('../../src/kernels/native/index.js');
    const loaded = loadNativeKernels();
    if ('error' in loaded) return t.skip(loaded.error);
    const { runKernelBench } = await import('../../bench/kernels/index.js');
    const records = runKernelBench({ smoke: true, threads: 2, log: () => {} });
    assert.ok(records.length > 0);
    // every attention shape has its forward timed inside the forward+backward loop and alone
    const kinds = (k: string) => records.filter((r) => r.kernel === k).map((r) => `${r.threads} ${JSON.stringify(r.shape)}`);
    assert.ok(kinds('attn_fwd').length > 0);
    assert.deepEqual(kinds('attn_fwd_alone'), kinds('attn_fwd'));
    assert.deepEqual(kinds('attn_fwdbwd'), kinds('attn_fwd'));
    const peak = records[0]!.peakGflops / records[0]!.threads;
    for (const r of records) {
      assert.ok(Math.abs(r.peakGflops / r.threads - peak) <= 1e-9 * peak, `${r.case}: one peak for the whole run`);
      assert.ok(r.peakNearGflops <= r.peakGflops * (1 + 1e-12), `${r.case}: the probe before it is at most the run's peak`);
      assert.ok(Math.abs(r.pctOfPeak - (100 * r.gflopsCpu) / r.peakGflops) <= 1e-9 * r.pctOfPeak, r.case);
      // paired: each timed run's rate per CPU second (per core) against the mean of the probes
      // around it, median over runs
      assert.equal(r.probes.length, r.cpuRunsSec.length + 1, `${r.case}: one probe before each run and one after`);
      const paired = r.cpuRunsSec.map((c, i) => (100 * r.flops) / c / 1e9 / ((r.probes[i]! + r.probes[i + 1]!) / 2)).sort((a, b) => a - b);
      const mid = paired.length >> 1;
      const want = paired.length % 2 ? paired[mid]! : (paired[mid - 1]! + paired[mid]!) / 2;
      assert.ok(Math.abs(r.pctOfPeakPaired - want) <= 1e-9 * want, `${r.case}: paired ${r.pctOfPeakPaired} vs ${want}`);
    }
  });
  it('prints the usage for --help after a theme instead of running it', () => {
    for (const theme of ['sp', 'kernels']) {
      const r = spawnSync(process.execPath, [CLI, 'bench', theme, '--help'], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 0);
      assert.match(r.stdout, /^Usage: seqpar bench <theme>/);
      assert.equal(r.stderr, '');
    }
  });
  it('rejects an unknown theme and an unknown flag with exit 2', () => {
    for (const args of [['bench', 'nope'], ['bench', 'sp', '--bogus'], ['bench', 'sp', '--rounds', '0'], ['bench', 'sp', '--ceiling', 'maybe']]) {
      const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
      assert.equal(r.status, 2);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
  });
});
