/**
 * ES2024 shared-memory features Node 20 has but the project's ES2022 lib typings lack
 * (tsconfig is shared, so they are typed here instead of raising the lib level).
 */

type WaitAsyncResult = { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };

export function waitAsync(ta: Int32Array, index: number, value: number, timeoutMs?: number): WaitAsyncResult {
  return (Atomics as unknown as { waitAsync(t: Int32Array, i: number, v: number, ms?: number): WaitAsyncResult }).waitAsync(ta, index, value, timeoutMs);
}

export function growableSab(bytes: number, maxBytes: number): SharedArrayBuffer {
  const C = SharedArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => SharedArrayBuffer;
  return new C(bytes, { maxByteLength: maxBytes });
}

export function growSab(sab: SharedArrayBuffer, bytes: number): void {
  (sab as unknown as { grow(n: number): void }).grow(bytes);
}
