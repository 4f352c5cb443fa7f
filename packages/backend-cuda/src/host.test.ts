// The host side of the CUDA backend against a fake driver (fake-driver.ts): no GPU needed.
// Launch arguments are checked against the parameter lists nvcc wrote into the shipped PTX, the
// row-major → cuBLAS mapping against a column-major SGEMM written from the BLAS definition.
import { existsSync, readFileSync } from 'node:fs';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  DictlearnError,
  initBackend,
  kernelsOf,
  ops,
  registerBackend,
  scope,
  type Tensor,
  tensor,
  useBackend,
} from '@dictlearn/core';
import { compareValues, OP_FIXTURES, OP_TABLE } from '@dictlearn/core/testing';
import koffi from 'koffi';
import { describe, expect, it } from 'vitest';
import { CachingAllocator, sizeClass } from './allocator.js';
import { createCudaBackend } from './backend.js';
import { CudaDevice, choosePtxTarget, loadPtx, ptxEntries, readPtxManifest } from './device.js';
import {
  CU,
  CUBLAS,
  CUBLAS_PROTOTYPES,
  type CublasFunctions,
  CudaError,
  cublasProducts,
  DRIVER_PROTOTYPES,
  MATMUL_INPUT_EPS,
  openCudaDriver,
} from './driver.js';
import { type FakeCall, FakeDriver, type FakeKernel, ptxParamBytes, ptxParams } from './fake-driver.js';
import { f32bits, rowMajorGemm } from './kernels.js';
import {
  colsumGrid,
  f32,
  f64,
  grid1d,
  grid2d,
  groupChunks,
  i32,
  ints,
  packParams,
  ptr,
  stridedMeta,
  u32,
} from './launch.js';

registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
const PTX = loadPtx([8, 0]);

/** A started CUDA backend on a fake driver, registered under a fresh name. */
async function fakeBackend(name: string, driver = new FakeDriver()) {
  const b = registerBackend(createCudaBackend({ name, driver, ptx: PTX }));
  await initBackend(b);
  return { backend: b, driver };
}

describe('launch parameters', () => {
  it('are packed at the offsets nvcc gives the parameter list (8-byte pointers and doubles, 4-byte scalars)', () => {
    const p = packParams([u32(7), ptr(0x1122334455667788n), f32(1.5), f64(-0.25), i32(-2), ptr(1n)]);
    // u32 at 0, pointer aligned to 8, f32 at 16, f64 aligned to 24, i32 at 32, pointer at 40; 48 bytes.
    expect(p.byteLength).toBe(48);
    const v = new DataView(p.buffer);
    expect(v.getUint32(0, true)).toBe(7);
    expect(v.getBigUint64(8, true)).toBe(0x1122334455667788n);
    expect(v.getFloat32(16, true)).toBe(1.5);
    expect(v.getFloat64(24, true)).toBe(-0.25);
    expect(v.getInt32(32, true)).toBe(-2);
    expect(v.getBigUint64(40, true)).toBe(1n);
    // A struct of ints after a 4-byte scalar needs no padding; the total rounds up to 8.
    expect(packParams([ptr(0n), i32(1), ints(new Int32Array(36))]).byteLength).toBe(8 + 4 + 144 + 4);
  });

  it('the Strided struct is the 144 bytes every kernel taking it declares, with contiguity flags', () => {
    const m = stridedMeta(
      'add',
      [2, 3],
      [
        [3, 1],
        [0, 1],
      ],
    );
    expect(m.length * 4).toBe(144);
    expect(ptxParams(PTX.modules.elementwise, 'binary_f32')?.at(-1)).toEqual({ size: 144, align: 4 });
    expect([...m.slice(0, 4)]).toEqual([2, 6, 2, 3]);
    // Operand 0 is laid out like the output (offset = i); operand 1 is broadcast over rows.
    expect(m[35]).toBe(1);
  });

  it('every launch an op makes matches the PTX parameter list, on every op fixture', async () => {
    const { driver } = await fakeBackend('cuda-fake-ops');
    const ran = new Set<string>();
    for (const c of OP_FIXTURES) {
      scope(() => {
        const inputs = c.inputs.map((t) =>
          tensor(t.dtype === 'int32' ? Int32Array.from(t.values) : Float32Array.from(t.values), t.shape, {
            dtype: t.dtype,
            backend: 'cuda-fake-ops',
          }),
        );
        OP_TABLE[c.op](inputs, c.attrs);
      });
      ran.add(c.op);
    }
    const kernels = new Set(driver.ops('launch').map((l) => l.kernel));
    expect(driver.badLaunches).toEqual([]);
    // The fixtures reach most kernels; every kernel name resolves in the PTX (getFunction would throw).
    expect(kernels.size).toBeGreaterThan(25);
    expect(driver.ops('synchronize')).toHaveLength(0);
  });

  it('a kernel for every op the CPU oracle has one for, and the fused SAE kernels', async () => {
    const { backend } = await fakeBackend('cuda-fake-table');
    const have = new Set(kernelsOf(backend));
    // Ops the CPU fuses that run as their compositions here, from kernels CUDA has: core's
    // batchTopkEncode (its selection across the batch is topk over the flattened batch), and the
    // Standard SAE's encode–decode op and its backward (linearBiasReluSum and matmul; matmul and
    // reluGradRowSum), whose CPU kernels exist to write f's gradient over f in host memory, and
    // sumSquaredDifference and scaledDifference (sub, then square and sum, or mul).
    const composedHere = new Set([
      'scaledDifference',
      'batchTopkEncode',
      'linearBiasReluSumDecode',
      'reluDecodeGrad',
      'sumSquaredDifference',
    ]);
    const missing = kernelsOf('cpu').filter((op) => !have.has(op) && !composedHere.has(op));
    expect(missing).toEqual([]);
    for (const op of [
      'topkEncode',
      'sparseDecode',
      'sparseDot',
      'sparseOuter',
      'adamUpdate',
      'clipByGlobalNorm',
      'linearBiasRelu',
      'linearBiasReluSum',
      'reluGradRowSum',
      'biasRelu',
      'normalizeRows',
      'removeParallelComponent',
    ] as const) {
      expect(have.has(op)).toBe(true);
    }
  });

  it('ptxParams reads pointers, scalars and structs; the ABI size rounds to the widest alignment', () => {
    expect(ptxParams(PTX.modules.random, 'philox_uniform')).toEqual([
      { size: 8, align: 8 },
      { size: 4, align: 4 },
      { size: 4, align: 4 },
      { size: 4, align: 4 },
      { size: 4, align: 4 },
      { size: 8, align: 8 },
      { size: 4, align: 4 },
    ]);
    expect(
      ptxParamBytes([
        { size: 8, align: 8 },
        { size: 4, align: 4 },
      ]),
    ).toBe(16);
  });
});

describe('launch shapes', () => {
  it('grid1d caps the grid (kernels stride over the rest)', () => {
    expect(grid1d(1)).toEqual({ grid: [1, 1, 1], block: [256, 1, 1] });
    expect(grid1d(257).grid).toEqual([2, 1, 1]);
    expect(grid1d(2 ** 31 - 1).grid[0]).toBe(1 << 20);
  });
  it('grid2d splits row tiles past 65535 onto grid.z', () => {
    expect(grid2d(100, 100, 16, 16).grid).toEqual([7, 7, 1]);
    const g = grid2d(16, 65536 * 16 + 1, 16, 16).grid;
    expect(g[1]).toBeLessThanOrEqual(65535);
    expect(g[1] * g[2]).toBeGreaterThanOrEqual(65537);
    expect(g).toEqual([1, 65535, 2]);
  });
});

/** Column-major SGEMM from the BLAS definition: C = op(A) op(B), alpha 1, beta 0. */
function blasSgemm(g: ReturnType<typeof rowMajorGemm>, A: Float32Array, B: Float32Array): Float32Array {
  const C = new Float32Array(g.ldc * g.n);
  for (let i = 0; i < g.m; i++)
    for (let j = 0; j < g.n; j++) {
      let s = 0;
      for (let l = 0; l < g.k; l++) {
        const a = g.transA ? A[l + i * g.lda] : A[i + l * g.lda];
        const b = g.transB ? B[j + l * g.ldb] : B[l + j * g.ldb];
        s += a * b;
      }
      C[i + j * g.ldc] = s;
    }
  return C;
}

describe('row-major products through column-major cuBLAS', () => {
  for (const [transA, transB] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ] as const) {
    it(`transA=${transA} transB=${transB}: the same as the row-major product`, () => {
      const M = 3;
      const N = 4;
      const K = 5;
      const a = Float32Array.from({ length: M * K }, (_, i) => ((i * 7) % 11) - 5);
      const b = Float32Array.from({ length: K * N }, (_, i) => ((i * 5) % 13) - 6);
      // Row-major element (i, l) of op(A), (l, j) of op(B).
      const opA = (i: number, l: number) => (transA ? a[l * M + i] : a[i * K + l]);
      const opB = (l: number, j: number) => (transB ? b[j * K + l] : b[l * N + j]);
      const g = rowMajorGemm(1n, 2n, 3n, M, N, K, transA, transB, 1, false, false);
      // cuBLAS's A is our B and vice versa.
      const cm = blasSgemm(g, b, a);
      for (let i = 0; i < M; i++)
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let l = 0; l < K; l++) s += opA(i, l) * opB(l, j);
          // Column-major C[N, M] with ldc N is row-major C[M, N].
          expect(cm[j + i * N]).toBe(s);
        }
    });
  }
  it('batched: a 2-D operand has stride 0, a 3-D one its matrix size', () => {
    const g = rowMajorGemm(1n, 2n, 3n, 3, 4, 5, false, false, 7, true, false);
    expect([g.strideA, g.strideB, g.strideC, g.batch]).toEqual([0, 15, 12, 7]);
  });
});

describe('caching allocator', () => {
  it('size classes: 512-byte steps to 1 MiB, then 2 MiB steps', () => {
    expect([sizeClass(0), sizeClass(1), sizeClass(512), sizeClass(513), sizeClass(1 << 20)]).toEqual([
      0,
      512,
      512,
      1024,
      1 << 20,
    ]);
    expect(sizeClass((1 << 20) + 1)).toBe(2 << 20);
    expect(sizeClass(5 << 20)).toBe(6 << 20);
  });

  it('a freed block is handed out again without a device call', () => {
    const d = new FakeDriver();
    const a = new CachingAllocator(d);
    const x = a.alloc(1000);
    a.release(x);
    const y = a.alloc(900); // same class (1024)
    expect(y.ptr).toBe(x.ptr);
    expect(d.ops('memAlloc')).toHaveLength(1);
    expect(d.ops('memFree')).toHaveLength(0);
    expect(a.stats).toMatchObject({ reuses: 1, deviceAllocs: 1, liveBytes: 1024, cachedBytes: 0 });
    const z = a.alloc(3000); // another class: a new block
    expect(z.ptr).not.toBe(x.ptr);
    expect(a.alloc(0)).toEqual({ ptr: 0n, bytes: 0 });
    expect(d.ops('memAlloc')).toHaveLength(2);
  });

  it('out of memory: the cache is released, then the allocation retried', () => {
    const d = new FakeDriver({ capacity: 4096 });
    const a = new CachingAllocator(d);
    const x = a.alloc(2048);
    a.release(x); // cached: the device still holds 2048
    const y = a.alloc(3000); // 3072 > 4096 − 2048: fails once, frees the cache, succeeds
    expect(y.bytes).toBe(3072);
    expect(d.calls.map((c) => c.op)).toEqual(['memAlloc', 'memAlloc-oom', 'memFree', 'memAlloc']);
    expect(a.stats.oomRetries).toBe(1);
  });

  it('out of memory after the retry: a clear error with the sizes', () => {
    const d = new FakeDriver({ capacity: 4096 });
    const a = new CachingAllocator(d);
    a.alloc(2048);
    expect(() => a.alloc(3000, 'the output of matmul')).toThrow(
      /out of memory allocating 3000 bytes for the output of matmul \(free 2048 of 4096 bytes/,
    );
    expect(() => a.alloc(3000)).toThrow(DictlearnError);
  });

  it('frees past the cache limit go back to the device', () => {
    const d = new FakeDriver();
    const a = new CachingAllocator(d, { cacheLimitBytes: 1024 });
    const x = a.alloc(1024);
    const y = a.alloc(1024);
    a.release(x);
    a.release(y);
    expect(d.ops('memFree').map((c) => c.ptr)).toEqual([y.ptr]);
    expect(a.stats.cachedBytes).toBe(1024);
  });
});

describe('stream order and reads', () => {
  it('ops only queue work; data() copies back and synchronizes, once', async () => {
    const { driver } = await fakeBackend('cuda-fake-stream');
    const x = tensor([1, 2, 3, 4], [4], { backend: 'cuda-fake-stream' });
    const y = ops.add(x, x);
    y.dispose();
    expect(driver.ops('synchronize')).toHaveLength(0);
    // Without the synchronize the queued upload would not have landed: the values prove the order.
    expect(Array.from(await x.data())).toEqual([1, 2, 3, 4]);
    const order = driver.calls.map((c) => c.op).filter((o) => o !== 'loadModule');
    expect(order.slice(-2)).toEqual(['memcpyDtoH', 'synchronize']);
    expect(driver.ops('synchronize')).toHaveLength(1);
    x.dispose();
  });

  it("a disposed tensor's block is reused by the next op's output of the same size", async () => {
    const { driver, backend } = await fakeBackend('cuda-fake-reuse');
    const x = tensor(new Float32Array(300), [300], { backend: 'cuda-fake-reuse' });
    const y = ops.neg(x);
    const first = driver.ops('launch').at(-1)!;
    const yPtr = new DataView(first.params!.buffer).getBigUint64(8, true);
    y.dispose();
    const z = ops.neg(x);
    const second = driver.ops('launch').at(-1)!;
    expect(new DataView(second.params!.buffer).getBigUint64(8, true)).toBe(yPtr);
    expect(driver.ops('memAlloc')).toHaveLength(2);
    z.dispose();
    x.dispose();
    expect((backend as ReturnType<typeof createCudaBackend>).stats?.liveTensors).toBe(0);
  });

  it('fill writes the float bits with a memset; matmul goes to cuBLAS with the row-major mapping', async () => {
    const { driver } = await fakeBackend('cuda-fake-fill');
    const f = ops.fill([3, 2], 0.5, { backend: 'cuda-fake-fill' } as never) as Tensor;
    expect(Array.from(await f.data())).toEqual([0.5, 0.5, 0.5, 0.5, 0.5, 0.5]);
    expect(f32bits(0.5)).toBe(0x3f000000);
    const a = tensor(new Float32Array(6), [2, 3], { backend: 'cuda-fake-fill' });
    const m = ops.matmul(a, f);
    const g = driver.ops('gemm').at(-1)!.gemm!;
    expect([g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.transA, g.transB]).toEqual([
      2,
      2,
      3,
      2,
      3,
      2,
      false,
      false,
    ]);
    for (const t of [f, a, m]) t.dispose();
  });
});

describe('errors', () => {
  it('a kernel fault names the kernel, and the backend refuses work afterwards', async () => {
    const { driver } = await fakeBackend('cuda-fake-fault');
    const x = tensor([1, 2], [2], { backend: 'cuda-fake-fault' });
    driver.failNext.set('launch', CU.ERROR_ILLEGAL_ADDRESS);
    expect(() => ops.exp(x)).toThrow(
      /kernel fault in unary_f32: CUDA_ERROR_ILLEGAL_ADDRESS: the context is unusable; restart the process/,
    );
    expect(() => ops.exp(x)).toThrow(/kernel fault in unary_f32/);
    await expect(x.data()).rejects.toThrow(/restart the process/);
    x.dispose(); // freeing after the fault must not throw
  });

  it('a fault that surfaces at a read names the last kernel queued', async () => {
    const { driver } = await fakeBackend('cuda-fake-late');
    const x = tensor([1, 2], [2], { backend: 'cuda-fake-late' });
    const y = ops.sqrt(x);
    driver.failNext.set('synchronize', CU.ERROR_LAUNCH_FAILED);
    await expect(y.data()).rejects.toThrow(/the last kernel queued was unary_f32.*restart the process/);
  });

  it('other CUDA errors say what was being done and leave the backend usable', async () => {
    const { driver } = await fakeBackend('cuda-fake-soft');
    const x = tensor([1, 2], [2], { backend: 'cuda-fake-soft' });
    driver.failNext.set('gemm', 13);
    expect(() => ops.matmul(ops.reshape(x, [1, 2]), ops.reshape(x, [2, 1]))).toThrow(/cublasSgemm/);
    expect(Array.from(await x.data())).toEqual([1, 2]);
    x.dispose();
  });

  it("no driver: init fails with 'no NVIDIA driver: libcuda.so.1 not found', and 'auto' falls back with it", async () => {
    const missing = registerBackend(
      createCudaBackend({
        name: 'cuda-missing',
        priority: 1000,
        driver: () => openCudaDriver({ driverLibraries: ['/nonexistent/libcuda.so.1'] }),
      }),
    );
    const logs: string[] = [];
    const chosen = await useBackend('auto', { log: (m) => logs.push(m) });
    expect(chosen.name).not.toBe('cuda-missing');
    expect(logs.join('\n')).toMatch(
      /'cuda-missing' unavailable: cuda: no NVIDIA driver: libcuda\.so\.1 not found/,
    );
    await expect(useBackend('cuda-missing')).rejects.toThrow(/no NVIDIA driver: libcuda\.so\.1 not found/);
    expect(missing.priority).toBe(1000);
    await useBackend('cpu');
  });

  it('CudaError carries the function and code', () => {
    const e = new CudaError('cuMemAlloc', 2, 'CUDA_ERROR_OUT_OF_MEMORY');
    expect(e.message).toBe('cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY (2)');
  });
});

describe('FFI declarations and PTX selection', () => {
  it('every driver and cuBLAS prototype parses as a koffi function type', () => {
    for (const proto of [...Object.values(DRIVER_PROTOTYPES), ...Object.values(CUBLAS_PROTOTYPES)]) {
      expect(() => koffi.proto(proto.replace(/^int (\w+)\(/, 'int __proto_$1(')), proto).not.toThrow();
    }
    // Device pointers are 64-bit integers and the launch buffer size a 64-bit word.
    expect(DRIVER_PROTOTYPES.cuMemAlloc).toContain('uint64_t *dptr');
    expect(koffi.sizeof('size_t')).toBe(8);
  });

  it('the PTX of the highest target not above the GPU is chosen', () => {
    expect(choosePtxTarget(['75', '80', '90'], [8, 6])).toBe('80');
    expect(choosePtxTarget(['75', '80', '90'], [12, 0])).toBe('90');
    expect(choosePtxTarget(['75', '80', '90'], [7, 5])).toBe('75');
    expect(() => choosePtxTarget(['75', '80', '90'], [7, 0])).toThrow(
      /older than the oldest PTX target shipped \(compute_75\)/,
    );
  });

  it('the shipped PTX defines every kernel the host launches, for every target', () => {
    const src = readFileSync(new URL('./kernels.ts', import.meta.url), 'utf8');
    const launched = new Set(
      [
        ...src.matchAll(/launch\(\s*'([a-z0-9_]+)'/g),
        ...src.matchAll(/`((?:reduce_block|reduce_thread|scatter_add_rows|scatter_last)_)\$/g),
      ].map((m) => m[1]),
    );
    const manifest = readPtxManifest();
    for (const t of manifest.targets) {
      const set = loadPtx([Number(t[0]), Number(t.slice(1))]);
      expect(set.target).toBe(t);
      const entries = Object.values(set.modules).flatMap(ptxEntries);
      for (const k of launched) {
        if (k.endsWith('_')) expect(entries.filter((e) => e.startsWith(k)).length).toBeGreaterThanOrEqual(2);
        else expect(entries, k).toContain(k);
      }
    }
  });

  it('the device loads each module once, lazily', () => {
    const d = new FakeDriver();
    const dev = new CudaDevice(d, { ptx: PTX });
    const x = dev.alloc(4);
    dev.launch('unary_f32', grid1d(4), [ptr(x.ptr), ptr(x.ptr), u32(4), i32(0), f32(0), f32(0), i32(0)]);
    dev.launch('unary_f32', grid1d(4), [ptr(x.ptr), ptr(x.ptr), u32(4), i32(1), f32(0), f32(0), i32(0)]);
    dev.launch('bias_relu', grid1d(4), [ptr(x.ptr), ptr(x.ptr), ptr(x.ptr), u32(4), u32(4)]);
    expect(d.ops('loadModule')).toHaveLength(1);
    expect(d.badLaunches).toEqual([]);
    expect(() => dev.launch('no_such_kernel', grid1d(1), [])).toThrow(/no kernel named 'no_such_kernel'/);
  });
});

/** The packed arguments of a launch. */
const argsOf = (l: FakeCall) => new DataView(l.params!.buffer);

// fused.cu's block shape (COL_TILE × ROW_THREADS), as its #defines say.
const COL_TILE = 32;
const ROW_THREADS = 8;

/**
 * Emulates a column-sum kernel of fused.cu block by block and thread by thread, as its loops are
 * written: `cell(i, c)` computes (and stores) element i of column c and returns the value summed.
 * A grid or rowsPerChunk from the host that misses rows or columns gives wrong sums here.
 */
function emulateChunks(
  grid: readonly number[],
  B: number,
  F: number,
  rowsPerChunk: number,
  partials: Float64Array,
  cell: (i: number, c: number) => number,
): void {
  for (let by = 0; by < grid[1]; by++)
    for (let bx = 0; bx < grid[0]; bx++) {
      const part = new Float64Array(ROW_THREADS * COL_TILE);
      for (let ty = 0; ty < ROW_THREADS; ty++)
        for (let tx = 0; tx < COL_TILE; tx++) {
          const c = bx * COL_TILE + tx;
          const r0 = by * rowsPerChunk;
          const r1 = Math.min(r0 + rowsPerChunk, B);
          let acc = 0;
          if (c < F) for (let r = r0 + ty; r < r1; r += ROW_THREADS) acc += cell(r * F + c, c);
          part[ty * COL_TILE + tx] = acc;
        }
      for (let tx = 0; tx < COL_TILE; tx++) {
        const c = bx * COL_TILE + tx;
        if (c >= F) continue;
        let sum = 0;
        for (let j = 0; j < ROW_THREADS; j++) sum += part[j * COL_TILE + tx];
        partials[by * F + c] = sum;
      }
    }
}

const FUSED_KERNELS: Record<string, FakeKernel> = {
  // (f, bias, partials, B, F, rowsPerChunk)
  bias_relu_colsum: (p, d, { grid }) => {
    const [B, F, rpc] = [p.getUint32(24, true), p.getUint32(28, true), p.getUint32(32, true)];
    const f = d.f32(p.getBigUint64(0, true), B * F);
    const bias = d.f32(p.getBigUint64(8, true), F);
    const partials = d.f64(p.getBigUint64(16, true), Math.ceil(B / rpc) * F);
    emulateChunks(grid, B, F, rpc, partials, (i, c) => {
      const v = Math.fround(f[i] + bias[c]);
      f[i] = v === Number.NEGATIVE_INFINITY ? 0 : v * (v > 0 ? 1 : 0);
      return f[i];
    });
  },
  // (dF, row, f, dPre, partials, B, F, rowsPerChunk)
  relu_grad_row_colsum: (p, d, { grid }) => {
    const [B, F, rpc] = [p.getUint32(40, true), p.getUint32(44, true), p.getUint32(48, true)];
    const dF = d.f32(p.getBigUint64(0, true), B * F);
    const row = d.f32(p.getBigUint64(8, true), F);
    const f = d.f32(p.getBigUint64(16, true), B * F);
    const dPre = d.f32(p.getBigUint64(24, true), B * F);
    const partials = d.f64(p.getBigUint64(32, true), Math.ceil(B / rpc) * F);
    emulateChunks(grid, B, F, rpc, partials, (i, c) => {
      dPre[i] = Math.fround(dF[i] + row[c]) * (f[i] > 0 ? 1 : 0);
      return dPre[i];
    });
  },
  // (partials, out, chunks, F), grid-stride over columns
  colsum_finish: (p, d, { grid, block }) => {
    const [chunks, F] = [p.getUint32(16, true), p.getUint32(20, true)];
    const partials = d.f64(p.getBigUint64(0, true), chunks * F);
    const out = d.f32(p.getBigUint64(8, true), F);
    const threads = grid[0] * block[0];
    for (let t = 0; t < threads; t++)
      for (let c = t; c < F; c += threads) {
        let s = 0;
        for (let j = 0; j < chunks; j++) s += partials[j * F + c];
        out[c] = s;
      }
  },
};

/** Deterministic test values in [−1, 1) with about a third of them ≤ 0 after a shift. */
const values = (n: number, seed: number) =>
  Float32Array.from({ length: n }, (_, i) => (((i * 7919 + seed * 104729) % 2003) / 1001.5 - 1) * 1.25);

describe('fused encoder with column sums (linearBiasReluSum, reluGradRowSum)', () => {
  it('colsumGrid: 32-column tiles by 128-row chunks; chunks grow only to keep grid.y ≤ 65535', () => {
    expect(colsumGrid(300, 70)).toEqual({
      launch: { grid: [3, 3, 1], block: [32, 8, 1] },
      rowsPerChunk: 128,
      chunks: 3,
    });
    expect(colsumGrid(1, 1).launch.grid).toEqual([1, 1, 1]);
    const tall = colsumGrid(10_000_000, 1);
    expect(tall.rowsPerChunk).toBe(153);
    expect(tall.chunks).toBeLessThanOrEqual(65535);
    expect(tall.chunks * tall.rowsPerChunk).toBeGreaterThanOrEqual(10_000_000);
    expect((tall.chunks - 1) * tall.rowsPerChunk).toBeLessThan(10_000_000);
  });

  it('linearBiasReluSum: the cuBLAS product, bias_relu_colsum in place on its output, colsum_finish; values as the CPU oracle', async () => {
    const driver = new FakeDriver({ gemm: true, kernels: FUSED_KERNELS });
    await fakeBackend('cuda-fake-lbrs', driver);
    const [B, d, F] = [300, 7, 70];
    const xv = values(B * d, 1);
    const wv = values(d * F, 2);
    const bv = values(F, 3).map((v) => v * 0.5);
    const on = (backend: string) => ({
      x: tensor(xv, [B, d], { backend }),
      w: tensor(wv, [d, F], { backend }),
      b: tensor(bv, [F], { backend }),
    });
    const g = on('cuda-fake-lbrs');
    const launchesBefore = driver.ops('launch').length;
    const [f, sums] = ops.linearBiasReluSum(g.x, g.w, g.b);
    const gemm = driver.ops('gemm').at(-1)!.gemm!;
    // One product and exactly two kernels: no separate bias + ReLU pass.
    const [epi, fin, ...more] = driver.ops('launch').slice(launchesBefore);
    expect([epi.kernel, fin.kernel, ...more.map((l) => l.kernel)]).toEqual([
      'bias_relu_colsum',
      'colsum_finish',
    ]);
    expect(epi.grid).toEqual([3, 3, 1]);
    expect(epi.block).toEqual([32, 8, 1]);
    const ea = argsOf(epi);
    const fa = argsOf(fin);
    // In place on the product's output; the bias as uploaded; the partials handed to the finish.
    expect(ea.getBigUint64(0, true)).toBe(gemm.c);
    expect(ea.getBigUint64(8, true)).toBe(driver.ops('memcpyHtoD')[2].ptr);
    expect(fa.getBigUint64(0, true)).toBe(ea.getBigUint64(16, true));
    expect([ea.getUint32(24, true), ea.getUint32(28, true), ea.getUint32(32, true)]).toEqual([B, F, 128]);
    expect(fin.grid).toEqual(grid1d(F).grid);
    expect([fa.getUint32(16, true), fa.getUint32(20, true)]).toEqual([3, F]);
    expect(driver.ops('synchronize')).toHaveLength(0);
    expect(driver.badLaunches).toEqual([]);

    const gotF = await f.data();
    const gotSums = await sums.data();
    const c = on('cpu');
    const [cf, cs] = ops.linearBiasReluSum(c.x, c.w, c.b, {});
    const wantF = await cf.data();
    const wantSums = await cs.data();
    for (let i = 0; i < B * F; i++) expect(Math.abs(gotF[i] - wantF[i]), `f[${i}]`).toBeLessThanOrEqual(1e-6);
    let active = 0;
    for (let j = 0; j < F; j++) {
      let exact = 0;
      for (let r = 0; r < B; r++) exact += gotF[r * F + j];
      // The column sums of the f returned, in float64, rounded once.
      expect(Math.abs(gotSums[j] - exact), `sum ${j}`).toBeLessThanOrEqual(2 ** -24 * Math.abs(exact));
      expect(Math.abs(gotSums[j] - wantSums[j]), `sum ${j} vs CPU`).toBeLessThanOrEqual(
        1e-5 * (1 + wantSums[j]),
      );
      if (exact > 0) active++;
    }
    expect(active).toBeGreaterThan(F / 2);
    for (const t of [f, sums, cf, cs, ...Object.values(g), ...Object.values(c)]) t.dispose();
  });

  it('reluGradRowSum: one pass writing dPre and the chunk partials, then colsum_finish; the numpy fixture exactly, and the CPU oracle over 3 chunks', async () => {
    const driver = new FakeDriver({ kernels: FUSED_KERNELS });
    await fakeBackend('cuda-fake-rgrs', driver);
    const fixture = OP_FIXTURES.find((c) => c.name === 'reluGradRowSum')!;
    const [dF0, row0, f0] = fixture.inputs.map((t) =>
      tensor(Float32Array.from(t.values), t.shape, { backend: 'cuda-fake-rgrs' }),
    );
    const [dPre0, sums0] = ops.reluGradRowSum(dF0, row0, f0);
    const launch = driver.ops('launch').at(-2)!;
    expect(launch.kernel).toBe('relu_grad_row_colsum');
    // Exactly numpy's values (the fixture loader keeps no −0, so zeros compare unsigned here; the
    // CPU comparison below checks the signs).
    expect(Array.from(await dPre0.data(), (v) => v + 0)).toEqual(fixture.outputs[0].values);
    const s0 = await sums0.data();
    for (const [j, v] of fixture.outputs[1].values.entries())
      expect(Math.abs(s0[j] - v), `sum ${j}`).toBeLessThanOrEqual(1e-6);

    const [B, F] = [300, 70];
    const inputs = (backend: string) => [
      tensor(values(B * F, 4), [B, F], { backend }),
      tensor(values(F, 5), [F], { backend }),
      tensor(
        values(B * F, 6).map((v) => Math.max(v, 0)),
        [B, F],
        { backend },
      ),
    ];
    const gi = inputs('cuda-fake-rgrs');
    const [dPre, sums] = ops.reluGradRowSum(gi[0], gi[1], gi[2]);
    const big = driver.ops('launch').at(-2)!;
    expect(big.grid).toEqual([3, 3, 1]);
    const a = argsOf(big);
    expect([a.getUint32(40, true), a.getUint32(44, true), a.getUint32(48, true)]).toEqual([B, F, 128]);
    const ci = inputs('cpu');
    const [cd, cs] = ops.reluGradRowSum(ci[0], ci[1], ci[2]);
    expect(Array.from(await dPre.data())).toEqual(Array.from(await cd.data()));
    const got = await sums.data();
    const want = await cs.data();
    for (let j = 0; j < F; j++) expect(Math.abs(got[j] - want[j]), `sum ${j}`).toBeLessThanOrEqual(1e-6);

    // inPlace (the backward pass gave dF up): dPre is written over dF, no new allocation, same values
    const donated = inputs('cuda-fake-rgrs');
    const [dIn, sIn] = ops.reluGradRowSum(donated[0], donated[1], donated[2], { inPlace: true });
    expect(argsOf(driver.ops('launch').at(-2)!).getBigUint64(24, true)).toBe(
      argsOf(driver.ops('launch').at(-2)!).getBigUint64(0, true),
    );
    expect(Array.from(await dIn.data())).toEqual(Array.from(await cd.data()));
    expect(Array.from(await sIn.data())).toEqual(Array.from(got));
    expect(driver.badLaunches).toEqual([]);
  });

  it('an empty batch: zero column sums by a memset, no kernel', async () => {
    const { driver } = await fakeBackend('cuda-fake-lbrs0');
    const x = tensor(new Float32Array(0), [0, 3], { backend: 'cuda-fake-lbrs0' });
    const w = tensor(new Float32Array(12), [3, 4], { backend: 'cuda-fake-lbrs0' });
    const b = tensor([1, 2, 3, 4], [4], { backend: 'cuda-fake-lbrs0' });
    const launches = driver.ops('launch').length;
    const [f, sums] = ops.linearBiasReluSum(x, w, b);
    expect(f.shape).toEqual([0, 4]);
    expect(Array.from(await sums.data())).toEqual([0, 0, 0, 0]);
    expect(driver.ops('launch')).toHaveLength(launches);
  });

  it('the fused kernels sum without atomics (a run reproduces bit for bit), for every target', () => {
    for (const t of readPtxManifest().targets) {
      const ptx = loadPtx([Number(t[0]), Number(t.slice(1))]).modules.fused;
      expect(ptxEntries(ptx).sort()).toEqual(['bias_relu_colsum', 'colsum_finish', 'relu_grad_row_colsum']);
      expect(ptx).not.toMatch(/\b(atom|red)\./);
    }
  });
});

describe('product precision (math: fp32, tf32, bf16)', () => {
  /** A cuBLAS function table that records every call's arguments. */
  function recordingCublas() {
    const calls: [string, unknown[]][] = [];
    const fn =
      (name: string) =>
      (...args: unknown[]) => {
        calls.push([name, args.map((a) => (a instanceof Float32Array ? Array.from(a) : a))]);
        return 0;
      };
    const table: CublasFunctions = {
      cublasSetMathMode: fn('cublasSetMathMode'),
      cublasSgemm: fn('cublasSgemm'),
      cublasSgemmStridedBatched: fn('cublasSgemmStridedBatched'),
      cublasGemmEx: fn('cublasGemmEx'),
      cublasGemmStridedBatchedEx: fn('cublasGemmStridedBatchedEx'),
    };
    return { calls, table };
  }
  const single = rowMajorGemm(0x10n, 0x20n, 0x30n, 3, 4, 5, false, true, 1, false, false);
  const batched = rowMajorGemm(0x10n, 0x20n, 0x30n, 3, 4, 5, true, false, 2, true, true);
  // cuBLAS's view of `single`: A = our B (transposed), B = our A; m = N, n = M.
  const sgemmArgs = ['h', 1, 0, 4, 3, 5, [1], 0x20n, 5, 0x10n, 5, [0], 0x30n, 4];

  it('fp32 (default): SGEMM, and no math-mode call', () => {
    const { calls, table } = recordingCublas();
    const p = cublasProducts(table, 'h', () => {});
    p.gemm(single);
    expect(calls).toEqual([['cublasSgemm', sgemmArgs]]);
  });

  it('tf32: cublasSetMathMode(handle, CUBLAS_TF32_TENSOR_OP_MATH = 3), then SGEMM', () => {
    const { calls, table } = recordingCublas();
    const p = cublasProducts(table, 'h', () => {});
    p.setMathMode('tf32');
    p.gemm(single);
    expect(calls).toEqual([
      ['cublasSetMathMode', ['h', 3]],
      ['cublasSgemm', sgemmArgs],
    ]);
    p.setMathMode('fp32');
    expect(calls.at(-1)).toEqual(['cublasSetMathMode', ['h', 0]]);
  });

  it('bf16: GemmEx on the float32 tensors (CUDA_R_32F = 0) with CUBLAS_COMPUTE_32F_FAST_16BF = 75, CUBLAS_GEMM_DEFAULT = −1; batched: the strided-batched form', () => {
    const { calls, table } = recordingCublas();
    const p = cublasProducts(table, 'h', () => {});
    p.setMathMode('bf16');
    p.gemm(single);
    p.gemm(batched);
    expect(calls).toEqual([
      ['cublasSetMathMode', ['h', 0]],
      ['cublasGemmEx', ['h', 1, 0, 4, 3, 5, [1], 0x20n, 0, 5, 0x10n, 0, 5, [0], 0x30n, 0, 4, 75, -1]],
      [
        'cublasGemmStridedBatchedEx',
        ['h', 0, 1, 4, 3, 5, [1], 0x20n, 0, 4, 20, 0x10n, 0, 3, 15, [0], 0x30n, 0, 4, 12, 2, 75, -1],
      ],
    ]);
    expect(CUBLAS).toMatchObject({
      R_32F: 0,
      COMPUTE_32F_FAST_16BF: 75,
      TF32_TENSOR_OP_MATH: 3,
      GEMM_DEFAULT: -1,
    });
  });

  it('a failing status and an unknown mode are errors', () => {
    const { table } = recordingCublas();
    table.cublasGemmEx = () => 15;
    const p = cublasProducts(table, 'h', (fn, status) => {
      if (status !== 0) throw new CudaError(fn, status, 'CUBLAS_STATUS_NOT_SUPPORTED');
    });
    p.setMathMode('bf16');
    expect(() => p.gemm(single)).toThrow(/cublasGemmEx failed: CUBLAS_STATUS_NOT_SUPPORTED \(15\)/);
    expect(() => p.setMathMode('fp16' as never)).toThrow(/unknown math mode 'fp16'/);
  });

  const libraryTypes = '/usr/local/cuda/include/library_types.h';
  it.skipIf(!existsSync(libraryTypes))(
    `CUDA_R_32F is cudaDataType 0 in the toolkit's library_types.h${existsSync(libraryTypes) ? '' : ' (skipped: no CUDA toolkit headers)'}`,
    () => {
      const h = readFileSync(libraryTypes, 'utf8');
      expect(Number(/CUDA_R_32F\s*=\s*(\d+)/.exec(h)?.[1])).toBe(CUBLAS.R_32F);
    },
  );

  it('createCudaBackend({ math }) sets the mode once at init; fp32 leaves cuBLAS as it is', async () => {
    for (const math of ['fp32', 'tf32', 'bf16'] as const) {
      const driver = new FakeDriver();
      await initBackend(createCudaBackend({ name: `cuda-fake-math-${math}`, driver, ptx: PTX, math }));
      expect(driver.calls.filter((c) => c.op.startsWith('setMathMode')).map((c) => c.op)).toEqual(
        math === 'fp32' ? [] : [`setMathMode:${math}`],
      );
    }
  });

  it('the error bound each mode documents: 2ε + K·2⁻²⁴ of Σ|a||b|, ε = 2⁻¹⁰ (tf32), 2⁻⁷ (bf16)', () => {
    expect(MATMUL_INPUT_EPS).toEqual({ fp32: 0, tf32: 2 ** -10, bf16: 2 ** -7 });
  });
});

/** Int32 / Uint32 views of fake device memory. */
const i32At = (d: FakeDriver, p: bigint, n: number) => {
  const v = d.view(p, n * 4);
  return new Int32Array(v.buffer, v.byteOffset, n);
};
const u32At = (d: FakeDriver, p: bigint, n: number) => {
  const v = d.view(p, n * 4);
  return new Uint32Array(v.buffer, v.byteOffset, n);
};

/** What sparse_*_grouped kernels were handed: the grouped order and the key offsets. */
const seenGroupings: { order: number[]; start: number[] }[] = [];

// Emulators of sparse.cu's stable grouping and grouped sums, written from its loops (grid-stride
// over chunks, keys and output rows as the kernels are), so the host's chunking, offsets and
// argument order are checked by what the kernels compute with them.
const GROUP_KERNELS: Record<string, FakeKernel> = {
  // (key, n, nKeys, chunk, counts)
  group_count: (p, d, { grid }) => {
    const [n, nKeys, chunk] = [p.getUint32(8, true), p.getUint32(12, true), p.getUint32(16, true)];
    const key = i32At(d, p.getBigUint64(0, true), n);
    const counts = u32At(d, p.getBigUint64(24, true), Math.ceil(n / chunk) * nKeys);
    for (let bx = 0; bx < grid[0]; bx++)
      for (let b = bx; b * chunk < n; b += grid[0])
        for (let e = b * chunk; e < Math.min(b * chunk + chunk, n); e++)
          if (key[e] >= 0 && key[e] < nKeys) counts[b * nKeys + key[e]]++;
  },
  // (counts, chunks, nKeys, start)
  group_chunk_offsets: (p, d, { grid, block }) => {
    const [chunks, nKeys] = [p.getUint32(8, true), p.getUint32(12, true)];
    const counts = u32At(d, p.getBigUint64(0, true), chunks * nKeys);
    const start = u32At(d, p.getBigUint64(16, true), nKeys + 1);
    const threads = grid[0] * block[0];
    for (let t = 0; t < threads; t++)
      for (let q = t; q < nKeys; q += threads) {
        let run = 0;
        for (let b = 0; b < chunks; b++) {
          const c = counts[b * nKeys + q];
          counts[b * nKeys + q] = run;
          run += c;
        }
        start[q] = run;
      }
  },
  // (v, n): one block of 1024, contiguous spans, a scan of the span sums
  exclusive_scan_u32: (p, d, { grid, block }) => {
    expect([grid[0], block[0]]).toEqual([1, 1024]);
    const n = p.getUint32(8, true);
    const v = u32At(d, p.getBigUint64(0, true), n + 1);
    const T = 1024;
    const span = Math.ceil(n / T);
    const sums = Array.from({ length: T }, (_, t) => {
      let s = 0;
      for (let i = Math.min(t * span, n); i < Math.min(t * span + span, n); i++) s += v[i];
      return s;
    });
    let run = 0;
    for (let t = 0; t < T; t++)
      for (let i = Math.min(t * span, n); i < Math.min(t * span + span, n); i++) {
        const c = v[i];
        v[i] = run;
        run += c;
      }
    v[n] = sums.reduce((a, b) => a + b, 0);
  },
  // (key, n, nKeys, chunk, counts, start, order)
  group_place: (p, d, { grid }) => {
    const [n, nKeys, chunk] = [p.getUint32(8, true), p.getUint32(12, true), p.getUint32(16, true)];
    const key = i32At(d, p.getBigUint64(0, true), n);
    const counts = u32At(d, p.getBigUint64(24, true), Math.ceil(n / chunk) * nKeys);
    const start = u32At(d, p.getBigUint64(32, true), nKeys + 1);
    const order = i32At(d, p.getBigUint64(40, true), n);
    for (let bx = 0; bx < grid[0]; bx++)
      for (let b = bx; b * chunk < n; b += grid[0]) {
        const e0 = b * chunk;
        const len = Math.min(chunk, n - e0);
        for (let i = 0; i < len; i++) {
          const q = key[e0 + i];
          if (q < 0 || q >= nKeys) continue;
          let rank = 0;
          for (let j = 0; j < i; j++) rank += key[e0 + j] === q ? 1 : 0;
          order[start[q] + counts[b * nKeys + q] + rank] = e0 + i;
        }
      }
  },
  // (vals, y, rows, order, start, o, B, d, F, k)
  sparse_outer_grouped: (p, d, { grid }) => {
    const [B, dd, F, k] = [48, 52, 56, 60].map((o) => p.getUint32(o, true));
    const start = Array.from(u32At(d, p.getBigUint64(32, true), F + 1));
    const order = Array.from(i32At(d, p.getBigUint64(24, true), start[F]));
    seenGroupings.push({ order, start });
    const rowsPtr = p.getBigUint64(16, true);
    const rows = rowsPtr ? i32At(d, rowsPtr, Math.max(...order, 0) + 1) : undefined;
    const vals = d.f32(p.getBigUint64(0, true), Math.max(...order, 0) + 1);
    const y = d.f32(p.getBigUint64(8, true), B * dd);
    const o = d.f32(p.getBigUint64(40, true), F * dd);
    for (let bx = 0; bx < grid[0]; bx++)
      for (let f = bx; f < F; f += grid[0])
        for (let c = 0; c < dd; c++) {
          let acc = 0;
          for (let q = start[f]; q < start[f + 1]; q++) {
            const e = order[q];
            const r = rows ? rows[e] : Math.floor(e / k);
            if (r >= 0 && r < B) acc = Math.fround(vals[e] * y[r * dd + c] + acc);
          }
          o[f * dd + c] = acc;
        }
  },
  // (vals, idx, W, bias, order, start, o, B, d, F)
  sparse_decode_grouped: (p, d, { grid }) => {
    const [B, dd, F] = [56, 60, 64].map((o) => p.getUint32(o, true));
    const start = Array.from(u32At(d, p.getBigUint64(40, true), B + 1));
    const order = Array.from(i32At(d, p.getBigUint64(32, true), start[B]));
    seenGroupings.push({ order, start });
    const n = Math.max(...order, 0) + 1;
    const vals = d.f32(p.getBigUint64(0, true), n);
    const idx = i32At(d, p.getBigUint64(8, true), n);
    const W = d.f32(p.getBigUint64(16, true), F * dd);
    const biasPtr = p.getBigUint64(24, true);
    const bias = biasPtr ? d.f32(biasPtr, dd) : undefined;
    const o = d.f32(p.getBigUint64(48, true), B * dd);
    for (let bx = 0; bx < grid[0]; bx++)
      for (let r = bx; r < B; r += grid[0])
        for (let c = 0; c < dd; c++) {
          let acc = 0;
          for (let q = start[r]; q < start[r + 1]; q++) {
            const e = order[q];
            if (idx[e] >= 0 && idx[e] < F) acc = Math.fround(vals[e] * W[idx[e] * dd + c] + acc);
          }
          o[r * dd + c] = bias ? Math.fround(acc + bias[c]) : acc;
        }
  },
};

/** The stable grouping of entries by key, written directly: entries sorted by (key, entry). */
function stableGrouping(keys: ArrayLike<number>, nKeys: number) {
  const order = Array.from(keys, (_, e) => e)
    .filter((e) => keys[e] >= 0 && keys[e] < nKeys)
    .sort((a, b) => keys[a] - keys[b] || a - b);
  const start = Array.from({ length: nKeys + 1 }, (_, q) => order.filter((e) => keys[e] < q).length);
  return { order, start };
}

describe('sparse gradients grouped by key (deterministic: no float atomics)', () => {
  it('groupChunks: 1024-entry chunks up to 256 of them, then longer ones up to 8192 entries', () => {
    expect(groupChunks(1)).toEqual({ chunk: 1024, chunks: 1 });
    expect(groupChunks(2500)).toEqual({ chunk: 1024, chunks: 3 });
    expect(groupChunks(256 * 1024)).toEqual({ chunk: 1024, chunks: 256 });
    expect(groupChunks(256 * 1024 + 1)).toEqual({ chunk: 2048, chunks: 129 });
    expect(groupChunks(10_000_000)).toEqual({ chunk: 8192, chunks: 1221 });
  });

  it('the sparse kernels add no floats with atomics (only the grouping counts, integers), for every target', () => {
    for (const t of readPtxManifest().targets) {
      const ptx = loadPtx([Number(t[0]), Number(t.slice(1))]).modules.sparse;
      expect(ptx).not.toMatch(/\b(atom|red)(\.\w+)*\.f(16|32|64)\b/);
      expect(ptx).toMatch(/\batom\.global\.add\.u32\b/);
    }
  });

  it('sparseOuter and the batch layout of sparseDecode give the numpy fixtures', async () => {
    const driver = new FakeDriver({ kernels: GROUP_KERNELS });
    await fakeBackend('cuda-fake-group-fix', driver);
    for (const name of ['sparseOuter', 'sparseOuter_rows', 'sparseDecode_rows']) {
      const c = OP_FIXTURES.find((f) => f.name === name)!;
      const inputs = c.inputs.map((t) =>
        tensor(t.dtype === 'int32' ? Int32Array.from(t.values) : Float32Array.from(t.values), t.shape, {
          dtype: t.dtype,
          backend: 'cuda-fake-group-fix',
        }),
      );
      const got = await OP_TABLE[c.op](inputs, c.attrs)[0].data();
      expect(got.length).toBe(c.outputs[0].values.length);
      for (const [i, v] of c.outputs[0].values.entries())
        expect(Math.abs(got[i] - v), `${name}[${i}]`).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(v)));
    }
    expect(driver.badLaunches).toEqual([]);
  });

  it('over 3 chunks, both layouts: the entries grouped stably (by key, then entry), sums as the CPU oracle', async () => {
    const driver = new FakeDriver({ kernels: GROUP_KERNELS });
    await fakeBackend('cuda-fake-group', driver);
    const [B, k, F, d] = [500, 5, 37, 6];
    const n = B * k;
    // Features and rows in a scrambled order, so every chunk holds every key, out of order.
    const idx = Int32Array.from({ length: n }, (_, e) => (e * 7919 + 11) % F);
    const rows = Int32Array.from({ length: n }, (_, e) => (e * 104729 + 3) % B);
    const vals = values(n, 7);
    const yv = values(B * d, 8);
    const wv = values(F * d, 9);
    const bv = values(d, 10);
    const run = async (backend: string) => {
      const t = (v: Float32Array | Int32Array, shape: number[]) =>
        tensor(v, shape, { backend, dtype: v instanceof Int32Array ? 'int32' : 'float32' });
      const outer = ops.sparseOuter(t(vals, [B, k]), t(idx, [B, k]), t(yv, [B, d]), F);
      const outerRows = ops.sparseOuter(t(vals, [n]), t(idx, [n]), t(yv, [B, d]), F, { rows: t(rows, [n]) });
      const decode = ops.sparseDecode(t(vals, [n]), t(idx, [n]), t(wv, [F, d]), t(bv, [d]), {
        rows: t(rows, [n]),
        batch: B,
      });
      return Promise.all([outer, outerRows, decode].map((x) => x.data()));
    };
    seenGroupings.length = 0;
    const got = await run('cuda-fake-group');
    const want = await run('cpu');
    // Grouped by feature (per-row and batch layouts alike), then by row for the decode.
    expect(seenGroupings).toEqual([stableGrouping(idx, F), stableGrouping(idx, F), stableGrouping(rows, B)]);
    for (const [j, what] of ['sparseOuter', 'sparseOuter rows', 'sparseDecode rows'].entries())
      expect(compareValues(got[j], want[j], { rtol: 1e-5, atol: 1e-5 }, what)).toBeNull();
    const place = driver.ops('launch').filter((l) => l.kernel === 'group_place');
    expect(place.map((l) => [l.grid![0], l.block![0], argsOf(l).getUint32(16, true)])).toEqual([
      [3, 1024, 1024],
      [3, 1024, 1024],
      [3, 1024, 1024],
    ]);
    expect(driver.badLaunches).toEqual([]);
  });
});
