/**
 * Kernel launches: packing arguments the way nvcc lays out a kernel's parameters, the structs the
 * kernels take by value (src/kernels/common.cuh), and grid shapes.
 */
import { DictlearnError } from '@dictlearn/core';
import type { Dim3 } from './driver.js';

/** One kernel argument. Pointers and doubles are 8 bytes, aligned to 8; other scalars and int structs 4 bytes, aligned to 4. */
export type Param = {
  [K in keyof ParamValues]: {
    /** How the argument is packed. */
    kind: K;
    /** The argument's value. */
    value: ParamValues[K];
  };
}[keyof ParamValues];

/** The value type of each {@link Param} kind. */
export interface ParamValues {
  /** A device pointer (8 bytes). */
  ptr: bigint;
  /** An unsigned 32-bit integer. */
  u32: number;
  /** A signed 32-bit integer. */
  i32: number;
  /** A float32. */
  f32: number;
  /** A float64 (8 bytes). */
  f64: number;
  /** A struct of int32 fields, passed by value. */
  ints: Int32Array;
}

/** A device pointer argument (0n for a null pointer). */
export const ptr = (value: bigint): Param => ({ kind: 'ptr', value });
/** An `unsigned` argument. */
export const u32 = (value: number): Param => ({ kind: 'u32', value });
/** An `int` argument. */
export const i32 = (value: number): Param => ({ kind: 'i32', value });
/** A `float` argument. */
export const f32 = (value: number): Param => ({ kind: 'f32', value });
/** A `double` argument. */
export const f64 = (value: number): Param => ({ kind: 'f64', value });
/** A struct of 4-byte fields passed by value. */
export const ints = (value: Int32Array): Param => ({ kind: 'ints', value });

/**
 * Packs arguments into the buffer `cuLaunchKernel` takes with `CU_LAUNCH_PARAM_BUFFER_POINTER`:
 * each at the next offset aligned to its alignment (8 for pointers and doubles, 4 otherwise), little-endian,
 * total size rounded up to 8 when it holds a pointer — the layout nvcc gives the parameter list.
 */
export function packParams(params: readonly Param[]): Uint8Array {
  let size = 0;
  let maxAlign = 4;
  const offsets: number[] = [];
  for (const p of params) {
    const wide = p.kind === 'ptr' || p.kind === 'f64';
    const align = wide ? 8 : 4;
    const bytes = wide ? 8 : p.kind === 'ints' ? p.value.length * 4 : 4;
    maxAlign = Math.max(maxAlign, align);
    size = Math.ceil(size / align) * align;
    offsets.push(size);
    size += bytes;
  }
  size = Math.ceil(size / maxAlign) * maxAlign;
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  params.forEach((p, i) => {
    const o = offsets[i];
    switch (p.kind) {
      case 'ptr':
        view.setBigUint64(o, p.value, true);
        break;
      case 'u32':
        view.setUint32(o, p.value >>> 0, true);
        break;
      case 'i32':
        view.setInt32(o, p.value | 0, true);
        break;
      case 'f32':
        view.setFloat32(o, p.value, true);
        break;
      case 'f64':
        view.setFloat64(o, p.value, true);
        break;
      case 'ints':
        for (let j = 0; j < p.value.length; j++) view.setInt32(o + 4 * j, p.value[j], true);
        break;
    }
  });
  return buf;
}

/** Threads per block of the elementwise kernels. */
export const BLOCK = 256;
/** Largest grid.y and grid.z (grid.x goes to 2³¹ − 1). */
export const MAX_GRID_YZ = 65535;
/**
 * Blocks of a grid-stride launch at most: enough to fill any current GPU many times over; larger
 * n loop inside the kernel (FOR_EACH in common.cuh).
 */
export const MAX_BLOCKS_1D = 1 << 20;

/** Grid and block of a grid-stride elementwise launch over n elements (n > 0). */
export function grid1d(n: number, block = BLOCK): { grid: Dim3; block: Dim3 } {
  return { grid: [Math.max(1, Math.min(Math.ceil(n / block), MAX_BLOCKS_1D)), 1, 1], block: [block, 1, 1] };
}

/**
 * Grid of 2-D tiles over `cols` × `rows` (tile tx × ty). Rows of tiles past 65535 go on to
 * grid.z: the kernel's tile row is blockIdx.y + blockIdx.z · gridDim.y (tiles past the end return).
 */
export function grid2d(cols: number, rows: number, tx: number, ty: number): { grid: Dim3; block: Dim3 } {
  const gx = Math.ceil(cols / tx);
  const tilesY = Math.ceil(rows / ty);
  if (gx > 2 ** 31 - 1) throw new RangeError(`grid2d: ${gx} column tiles exceed grid.x's limit`);
  const gy = Math.min(tilesY, MAX_GRID_YZ);
  const gz = Math.ceil(tilesY / gy);
  if (gz > MAX_GRID_YZ) throw new RangeError(`grid2d: ${tilesY} row tiles exceed grid.y × grid.z`);
  return { grid: [Math.max(1, gx), Math.max(1, gy), Math.max(1, gz)], block: [tx, ty, 1] };
}

/** One block per row, for row-wise kernels whose rows loop inside (grid-stride over rows). */
export function gridRows(rows: number, block = BLOCK): { grid: Dim3; block: Dim3 } {
  return { grid: [Math.max(1, Math.min(rows, MAX_BLOCKS_1D)), 1, 1], block: [block, 1, 1] };
}

/** Columns per block of the fused column-sum kernels (COL_TILE in fused.cu: one warp's coalesced read). */
export const COLSUM_COL_TILE = 32;
/** Rows of threads per block of the fused column-sum kernels (ROW_THREADS in fused.cu). */
export const COLSUM_ROW_THREADS = 8;
/**
 * Rows a block of the fused column-sum kernels covers: 128 gives 32 chunks at a batch of 4096
 * (24576 blocks at F = 24576, enough to fill any GPU) while the float64 partials stay ~3% of the
 * traffic over f.
 */
export const COLSUM_CHUNK_ROWS = 128;

/** The launch of a fused column-sum kernel over a [rows, cols] matrix (rows, cols > 0). */
export interface ColsumLaunch {
  /** Grid and block: column tiles along x, row chunks along y. */
  launch: { grid: Dim3; block: Dim3 };
  /** Rows per chunk (the kernels' rowsPerChunk). */
  rowsPerChunk: number;
  /** Row chunks: the partials are [chunks, cols] float64. */
  chunks: number;
}

/**
 * Grid of the fused column-sum kernels (fused.cu): a function of the shape alone, so the order of
 * every column sum, and its float64 roundings, is the same on every run. Chunks grow past
 * {@link COLSUM_CHUNK_ROWS} rows only to keep grid.y within 65535.
 */
export function colsumGrid(rows: number, cols: number): ColsumLaunch {
  const rowsPerChunk = Math.max(COLSUM_CHUNK_ROWS, Math.ceil(rows / MAX_GRID_YZ));
  const chunks = Math.ceil(rows / rowsPerChunk);
  const tiles = Math.ceil(cols / COLSUM_COL_TILE);
  if (tiles > 2 ** 31 - 1) throw new RangeError(`colsumGrid: ${tiles} column tiles exceed grid.x's limit`);
  return {
    launch: { grid: [tiles, chunks, 1], block: [COLSUM_COL_TILE, COLSUM_ROW_THREADS, 1] },
    rowsPerChunk,
    chunks,
  };
}

/** Threads of a group_place block (one chunk of entries per block). */
export const GROUP_THREADS = 1024;
/** Threads of the one exclusive_scan_u32 block (GROUP_SCAN_THREADS in sparse.cu). */
export const GROUP_SCAN_THREADS = 1024;
/** Chunks of entries at most, while chunks can grow (the [chunks, keys] counts stay small). */
export const GROUP_MAX_CHUNKS = 256;
/** Entries per chunk at most: its keys fill group_place's shared memory (32 KiB of the 48 the launch may use). */
export const GROUP_MAX_CHUNK = 8192;

/** How the stable grouping of sparse.cu splits n entries: chunks of `chunk` consecutive entries. */
export interface GroupChunks {
  /** Entries per chunk (a multiple of {@link GROUP_THREADS}). */
  chunk: number;
  /** Chunks (the counts are [chunks, keys] words). */
  chunks: number;
}

/**
 * Chunks of the stable grouping (n > 0): one block each in group_count and group_place, whose
 * rank of an entry reads the chunk's earlier keys (work n × chunk / 2). Chunks of 1024 entries
 * until there would be more than {@link GROUP_MAX_CHUNKS}, then longer ones up to
 * {@link GROUP_MAX_CHUNK}, trading that work against the counts' memory.
 */
export function groupChunks(n: number): GroupChunks {
  const want = Math.ceil(n / GROUP_MAX_CHUNKS / GROUP_THREADS) * GROUP_THREADS;
  const chunk = Math.min(GROUP_MAX_CHUNK, Math.max(GROUP_THREADS, want));
  return { chunk, chunks: Math.ceil(n / chunk) };
}

/** Most axes a kernel struct holds (MAXR in common.cuh). */
export const MAX_RANK = 8;

function checkRank(op: string, rank: number): void {
  if (rank > MAX_RANK) {
    throw new DictlearnError(op, `the CUDA kernels take tensors of at most ${MAX_RANK} axes, got ${rank}`);
  }
}

/** Largest element count the 32-bit index arithmetic of the kernels covers. */
export const MAX_ELEMENTS = 2 ** 31 - 1;

/** Throws a DictlearnError when a tensor is too large for the kernels' 32-bit indices. */
export function checkSize(op: string, n: number): void {
  if (n > MAX_ELEMENTS) {
    throw new DictlearnError(
      op,
      `tensor of ${n} elements is larger than the CUDA kernels' limit of ${MAX_ELEMENTS}`,
    );
  }
}

/**
 * The `Strided` struct (common.cuh): rank, n, dims[8], s[3][8], base, contig — 36 ints.
 * `strides[j]` are operand j's element strides over the output's axes (0 on broadcast axes).
 */
export function stridedMeta(
  op: string,
  shape: readonly number[],
  strides: readonly (readonly number[])[],
  base = 0,
): Int32Array {
  checkRank(op, shape.length);
  const m = new Int32Array(2 + MAX_RANK + 3 * MAX_RANK + 2);
  const n = shape.reduce((a, b) => a * b, 1);
  checkSize(op, n);
  m[0] = shape.length;
  m[1] = n;
  shape.forEach((d, i) => {
    m[2 + i] = d;
  });
  const contiguous = contiguousStrides(shape);
  let contig = 0;
  strides.forEach((s, j) => {
    s.forEach((v, i) => {
      m[2 + MAX_RANK + j * MAX_RANK + i] = v;
    });
    // Laid out like the output (same strides on every axis of extent > 1): offset = i.
    if (s.every((v, i) => shape[i] <= 1 || v === contiguous[i])) contig |= 1 << j;
  });
  m[2 + 4 * MAX_RANK] = base;
  m[3 + 4 * MAX_RANK] = contig;
  return m;
}

/** Row-major strides of a shape. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** The `ReduceMeta` struct: kr, rr, nOut, rs, kd[8], ks[8], rd[8], rst[8] — 36 ints. */
export function reduceMeta(op: string, xShape: readonly number[], axes: readonly number[]): Int32Array {
  checkRank(op, xShape.length);
  const xs = contiguousStrides(xShape);
  const kept = xShape.map((_, i) => i).filter((i) => !axes.includes(i));
  const m = new Int32Array(4 + 4 * MAX_RANK);
  m[0] = kept.length;
  m[1] = axes.length;
  m[2] = kept.reduce((p, a) => p * xShape[a], 1);
  m[3] = axes.reduce((p, a) => p * xShape[a], 1);
  kept.forEach((a, i) => {
    m[4 + i] = xShape[a];
    m[4 + MAX_RANK + i] = xs[a];
  });
  axes.forEach((a, i) => {
    m[4 + 2 * MAX_RANK + i] = xShape[a];
    m[4 + 3 * MAX_RANK + i] = xs[a];
  });
  return m;
}

/** The `PadMeta` struct: rank, n, dims[8], before[8], xdims[8], xs[8] — 34 ints. */
export function padMeta(
  op: string,
  shape: readonly number[],
  before: readonly number[],
  xShape: readonly number[],
): Int32Array {
  checkRank(op, shape.length);
  const m = new Int32Array(2 + 4 * MAX_RANK);
  m[0] = shape.length;
  m[1] = shape.reduce((a, b) => a * b, 1);
  const xs = contiguousStrides(xShape);
  for (let i = 0; i < shape.length; i++) {
    m[2 + i] = shape[i];
    m[2 + MAX_RANK + i] = before[i];
    m[2 + 2 * MAX_RANK + i] = xShape[i];
    m[2 + 3 * MAX_RANK + i] = xs[i];
  }
  return m;
}
