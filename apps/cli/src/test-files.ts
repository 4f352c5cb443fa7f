import { writeFile } from 'node:fs/promises';

/**
 * Writes float32 `values` of `shape` as a version-1.0 `.npy` file, laid out as numpy's format
 * specification says (magic, version, little-endian header length, a Python-literal dict
 * padded with spaces and a newline to a multiple of 64 bytes, then the C-order data). Tests only.
 */
export async function writeNpy(path: string, values: Float32Array, shape: number[]): Promise<void> {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const unpadded = 10 + dict.length + 1;
  const header = `${dict}${' '.repeat((64 - (unpadded % 64)) % 64)}\n`;
  const bytes = new Uint8Array(10 + header.length + values.byteLength);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  bytes.set(new TextEncoder().encode(header), 10);
  bytes.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), 10 + header.length);
  await writeFile(path, bytes);
}

/** `rows` × `dim` float32 values where row r holds r + c/1000 in column c (rows identify themselves). Tests only. */
export function indexedRows(rows: number, dim: number): Float32Array {
  const v = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) for (let c = 0; c < dim; c++) v[r * dim + c] = r + c / 1000;
  return v;
}
