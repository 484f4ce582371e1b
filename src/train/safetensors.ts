/**
 * safetensors: an 8-byte little-endian header length, a JSON header
 * { name: { dtype: "F32"|"F64", shape, data_offsets: [begin, end] }, "__metadata__": {...} },
 * then the raw little-endian tensor bytes. Written and read without dependencies.
 */
import type { Buf } from '../tensor/dtype.js';

export interface NamedTensor {
  name: string;
  shape: number[];
  data: Buf;
}

export function encodeSafetensors(tensors: NamedTensor[], metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`safetensors: ${t.name} has ${t.data.length} values for shape [${t.shape}]`);
    const bytes = t.data.byteLength;
    header[t.name] = { dtype: t.data instanceof Float64Array ? 'F64' : 'F32', shape: t.shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so tensor data starts 8-byte aligned.
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const hbytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + hbytes.length + off);
  out.writeBigUInt64LE(BigInt(hbytes.length), 0);
  hbytes.copy(out, 8);
  let o = 8 + hbytes.length;
  for (const t of tensors) {
    Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).copy(out, o);
    o += t.data.byteLength;
  }
  return out;
}

export interface DecodedSafetensors {
  metadata: Record<string, string>;
  tensors: Map<string, NamedTensor>;
}

export function decodeSafetensors(buf: Buffer, what = 'safetensors'): DecodedSafetensors {
  const bad = (why: string) => new Error(`${what}: corrupt safetensors file (${why})`);
  if (buf.length < 8) throw bad('shorter than its header length');
  const hlen = Number(buf.readBigUInt64LE(0));
  if (hlen <= 0 || 8 + hlen > buf.length) throw bad(`header length ${hlen} exceeds file size ${buf.length}`);
  let header: Record<string, any>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8'));
  } catch {
    throw bad('header is not JSON');
  }
  const base = 8 + hlen;
  const tensors = new Map<string, NamedTensor>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets } = info as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const el = dtype === 'F64' ? 8 : dtype === 'F32' ? 4 : 0;
    if (!el) throw bad(`${name} has unsupported dtype ${dtype}`);
    const [b, e] = data_offsets;
    const n = shape.reduce((a, c) => a * c, 1);
    if (!(b >= 0 && e >= b && base + e <= buf.length && (e - b) === n * el)) throw bad(`${name} offsets [${b}, ${e}] do not fit`);
    const copy = new Uint8Array(buf.subarray(base + b, base + e));
    const data = el === 8 ? new Float64Array(copy.buffer) : new Float32Array(copy.buffer);
    tensors.set(name, { name, shape, data });
  }
  return { metadata: (header.__metadata__ ?? {}) as Record<string, string>, tensors };
}
