// The host side of the CUDA backend against a fake driver (fake-driver.ts): no GPU needed.
// Launch arguments are checked against the parameter lists nvcc wrote into the shipped PTX, the
// row-major → cuBLAS mapping against a column-major SGEMM written from the BLAS definition.
import { readFileSync } from 'node:fs';
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
import { OP_FIXTURES, OP_TABLE } from '@dictlearn/core/testing';
import koffi from 'koffi';
import { describe, expect, it } from 'vitest';
import { CachingAllocator, sizeClass } from './allocator.js';
import { createCudaBackend } from './backend.js';
import { CudaDevice, choosePtxTarget, loadPtx, ptxEntries, readPtxManifest } from './device.js';
import { CU, CUBLAS_PROTOTYPES, CudaError, DRIVER_PROTOTYPES, openCudaDriver } from './driver.js';
import { FakeDriver, ptxParamBytes, ptxParams } from './fake-driver.js';
import { f32bits, rowMajorGemm } from './kernels.js';
import { f32, f64, grid1d, grid2d, i32, ints, packParams, ptr, stridedMeta, u32 } from './launch.js';

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
    // batchTopkEncode, and arch-standard's linearBiasReluSum / reluGradRowSum (plugin ops; fusing
    // them on CUDA is future work).
    const composedHere = new Set(['batchTopkEncode', 'linearBiasReluSum', 'reluGradRowSum']);
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
