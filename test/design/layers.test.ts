/** DESIGN.md §2 enforced from the imports: who may import whom, and no async in kernels. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const SRC = join(ROOT, 'src');

/** Layers each layer may import (value imports). `import type` is listed separately. */
const ALLOWED: Record<string, string[]> = {
  tensor: [],
  kernels: ['tensor'],
  comm: ['tensor'],
  parallel: ['kernels', 'comm', 'tensor'],
  model: ['kernels', 'tensor'],
  train: ['model', 'parallel', 'comm', 'kernels', 'tensor'],
  plan: ['model', 'parallel', 'kernels', 'comm', 'tensor'],
  cli: ['train', 'model', 'parallel', 'comm', 'kernels', 'tensor', 'plan'],
};
const TYPE_ONLY: Record<string, string[]> = { model: ['parallel'], kernels: [], comm: [] };

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('layering (DESIGN.md §2)', () => {
  const all = files(SRC);
  it('finds the source tree', () => assert.ok(all.length > 20));
  for (const f of all) {
    const rel = relative(SRC, f);
    const layer = rel.split(/[\\/]/)[0]!;
    if (!(layer in ALLOWED)) continue;
    it(`${rel} imports only what its layer may`, () => {
      const text = readFileSync(f, 'utf8');
      const re = /^\s*(import|export)\s+(type\s+)?[^'"]*?from\s+'([^']+)'/gm;
      for (const m of text.matchAll(re)) {
        const spec = m[3]!;
        if (!spec.startsWith('.')) continue;
        const target = relative(SRC, resolve(dirname(f), spec)).split(/[\\/]/)[0]!;
        if (target === layer || target.startsWith('..')) continue;
        const isType = !!m[2];
        const ok = ALLOWED[layer]!.includes(target) || (isType && (TYPE_ONLY[layer] ?? []).includes(target));
        assert.ok(ok, `${rel}: ${layer}/ may not ${isType ? 'type-' : ''}import ${target}/ (${spec})`);
      }
      if (layer === 'kernels') assert.ok(!/\basync\b/.test(text), `${rel}: kernels are synchronous`);
    });
  }
});
