/**
 * A fake {@link CudaDriver} for testing the host side without a GPU: device memory is host
 * memory, stream work (copies, memsets, launches, products) is queued and runs only at
 * `synchronize()` as on a real stream, every call is recorded, and each launch's argument
 * buffer is checked against the parameter list nvcc declared in the PTX. Not exported from the
 * package's entry points.
 */
import { CU, type CudaDriver, CudaError, type Dim3, type GemmCall, type MatmulMath } from './driver.js';

/** A recorded driver call. */
export interface FakeCall {
  /** The call, e.g. `memAlloc`, `launch`, `synchronize`. */
  op: string;
  /** Kernel name (launches). */
  kernel?: string;
  /** Device address involved (alloc/free/copies). */
  ptr?: bigint;
  /** Bytes (alloc). */
  bytes?: number;
  /** Grid and block (launches). */
  grid?: Dim3;
  /** Block. */
  block?: Dim3;
  /** Packed arguments (launches). */
  params?: Uint8Array;
  /** The product (gemm). */
  gemm?: GemmCall;
}

/** One parameter of a kernel as the PTX declares it. */
export interface PtxParam {
  /** Byte size. */
  size: number;
  /** Alignment. */
  align: number;
}

/**
 * The parameter list of kernel `name` as declared in PTX: `.param .u64 .ptr .align 1 x` (8
 * bytes), `.param .u32 x`, `.param .f32 x`, `.param .f64 x`, `.param .align 4 .b8 x[144]` (a
 * struct by value). The ABI aligns each to its natural alignment (pointers 8 whatever `.ptr .align` says).
 */
export function ptxParams(ptx: string, name: string): PtxParam[] | undefined {
  const m = new RegExp(`\\.entry\\s+${name}\\s*\\(([^)]*)\\)`).exec(ptx);
  if (!m) return undefined;
  return m[1]
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((p) => {
      const arr = /\.align\s+(\d+)\s+\.b8\s+\S+\[(\d+)\]/.exec(p);
      if (arr) return { size: Number(arr[2]), align: Number(arr[1]) };
      const t = /\.param\s+\.([usbf])(\d+)/.exec(p);
      if (!t) throw new Error(`ptxParams: cannot read parameter '${p}' of ${name}`);
      const size = Number(t[2]) / 8;
      return { size, align: size };
    });
}

/** Byte size of a parameter list laid out by the ABI (each aligned; total rounded to the largest alignment). */
export function ptxParamBytes(params: readonly PtxParam[]): number {
  let size = 0;
  let maxAlign = 1;
  for (const p of params) {
    size = Math.ceil(size / p.align) * p.align + p.size;
    maxAlign = Math.max(maxAlign, p.align);
  }
  return Math.ceil(size / maxAlign) * maxAlign;
}

/** Options of {@link FakeDriver}. */
export interface FakeDriverOptions {
  /** Device memory in bytes (default 1 GiB); allocations past it fail with CUDA_ERROR_OUT_OF_MEMORY. */
  capacity?: number;
  /** Compute capability (default 8.0). */
  computeCapability?: [number, number];
  /** Kernels emulated in JavaScript: run at synchronize() with the packed arguments and the launch's shape. */
  kernels?: Record<string, FakeKernel>;
  /** Compute the products at synchronize() (column-major, float64 sums rounded to float32), not only record them. */
  gemm?: boolean;
}

/** A kernel emulated in JavaScript: its packed arguments, the driver (for memory) and its grid and block. */
export type FakeKernel = (params: DataView, driver: FakeDriver, launch: { grid: Dim3; block: Dim3 }) => void;

/** The fake driver. */
export class FakeDriver implements CudaDriver {
  readonly calls: FakeCall[] = [];
  readonly device;
  readonly description = 'fake driver (host memory)';
  readonly memory = new Map<bigint, Uint8Array>();
  private next = 0x1000_0000n;
  private used = 0;
  private readonly capacity: number;
  private queue: (() => void)[] = [];
  private readonly kernels: NonNullable<FakeDriverOptions['kernels']>;
  private readonly computeGemm: boolean;
  /** Errors to throw from the next call of a function: fn → CUresult. */
  readonly failNext = new Map<string, number>();
  /** Set after a sticky error: every call fails like a lost context. */
  private lostWith: number | undefined;
  /** Kernel launches rejected because their argument size did not match the PTX. */
  readonly badLaunches: string[] = [];

  constructor(options: FakeDriverOptions = {}) {
    this.capacity = options.capacity ?? 1 << 30;
    this.kernels = options.kernels ?? {};
    this.computeGemm = options.gemm ?? false;
    this.device = {
      ordinal: 0,
      name: 'Fake GPU',
      computeCapability: options.computeCapability ?? ([8, 0] as const),
      totalBytes: this.capacity,
    };
  }

  private maybeFail(fn: string): void {
    if (this.lostWith !== undefined) throw new CudaError(fn, this.lostWith, codeName(this.lostWith));
    const code = this.failNext.get(fn);
    if (code !== undefined) {
      this.failNext.delete(fn);
      if (code >= 700 && code < 720) this.lostWith = code;
      throw new CudaError(fn, code, codeName(code));
    }
  }

  /** The bytes at a device address (the whole block containing it). */
  view(ptr: bigint, bytes: number): Uint8Array {
    for (const [base, mem] of this.memory) {
      if (ptr >= base && ptr + BigInt(bytes) <= base + BigInt(mem.length)) {
        return mem.subarray(Number(ptr - base), Number(ptr - base) + bytes);
      }
    }
    throw new Error(`fake driver: no device memory at 0x${ptr.toString(16)} (+${bytes})`);
  }

  /** Float32 view of device memory. */
  f32(ptr: bigint, n: number): Float32Array {
    const v = this.view(ptr, n * 4);
    return new Float32Array(v.buffer, v.byteOffset, n);
  }

  /** Float64 view of device memory (8-byte aligned). */
  f64(ptr: bigint, n: number): Float64Array {
    const v = this.view(ptr, n * 8);
    return new Float64Array(v.buffer, v.byteOffset, n);
  }

  memGetInfo() {
    this.calls.push({ op: 'memGetInfo' });
    return { free: this.capacity - this.used, total: this.capacity };
  }
  memAlloc(bytes: number): bigint {
    this.maybeFail('memAlloc');
    if (this.used + bytes > this.capacity) {
      this.calls.push({ op: 'memAlloc-oom', bytes });
      throw new CudaError('cuMemAlloc', CU.ERROR_OUT_OF_MEMORY, 'CUDA_ERROR_OUT_OF_MEMORY');
    }
    const ptr = this.next;
    this.next += BigInt(Math.ceil(bytes / 4096) * 4096 + 4096);
    this.memory.set(ptr, new Uint8Array(bytes));
    this.used += bytes;
    this.calls.push({ op: 'memAlloc', ptr, bytes });
    return ptr;
  }
  memFree(ptr: bigint): void {
    this.maybeFail('memFree');
    const m = this.memory.get(ptr);
    if (!m) throw new Error(`fake driver: cuMemFree of unknown pointer 0x${ptr.toString(16)}`);
    this.used -= m.length;
    this.memory.delete(ptr);
    this.calls.push({ op: 'memFree', ptr });
  }
  memcpyHtoD(dst: bigint, src: ArrayBufferView): void {
    this.maybeFail('memcpyHtoD');
    // Pageable memory is staged at the call: copy now, land at synchronize.
    const staged = new Uint8Array(src.buffer.slice(src.byteOffset, src.byteOffset + src.byteLength));
    this.calls.push({ op: 'memcpyHtoD', ptr: dst, bytes: staged.length });
    this.queue.push(() => this.view(dst, staged.length).set(staged));
  }
  memcpyDtoH(dst: ArrayBufferView, src: bigint): void {
    this.maybeFail('memcpyDtoH');
    this.calls.push({ op: 'memcpyDtoH', ptr: src, bytes: dst.byteLength });
    this.queue.push(() =>
      new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength).set(this.view(src, dst.byteLength)),
    );
  }
  memcpyDtoD(dst: bigint, src: bigint, bytes: number): void {
    this.maybeFail('memcpyDtoD');
    this.calls.push({ op: 'memcpyDtoD', ptr: dst, bytes });
    this.queue.push(() => this.view(dst, bytes).set(this.view(src, bytes).slice()));
  }
  memsetD32(dst: bigint, value: number, count: number): void {
    this.maybeFail('memsetD32');
    this.calls.push({ op: 'memsetD32', ptr: dst, bytes: count * 4 });
    this.queue.push(() => {
      const v = this.view(dst, count * 4);
      new Uint32Array(v.buffer, v.byteOffset, count).fill(value >>> 0);
    });
  }
  loadModule(ptx: string) {
    this.maybeFail('loadModule');
    this.calls.push({ op: 'loadModule' });
    return { ptx };
  }
  getFunction(module: unknown, name: string) {
    this.maybeFail('getFunction');
    const params = ptxParams((module as { ptx: string }).ptx, name);
    if (!params) throw new CudaError('cuModuleGetFunction', 500, 'CUDA_ERROR_NOT_FOUND');
    return { name, bytes: ptxParamBytes(params) };
  }
  launch(fn: unknown, grid: Dim3, block: Dim3, _shared: number, params: Uint8Array): void {
    const f = fn as { name: string; bytes: number };
    this.maybeFail('launch');
    if (params.byteLength !== f.bytes) {
      this.badLaunches.push(`${f.name}: packed ${params.byteLength} bytes, the PTX declares ${f.bytes}`);
    }
    if (
      grid.some((g) => g < 1) ||
      grid[1] > 65535 ||
      grid[2] > 65535 ||
      block[0] * block[1] * block[2] > 1024
    ) {
      this.badLaunches.push(`${f.name}: invalid grid [${grid}] / block [${block}]`);
    }
    const copy = params.slice();
    this.calls.push({ op: 'launch', kernel: f.name, grid, block, params: copy });
    const emulate = this.kernels[f.name];
    if (emulate) this.queue.push(() => emulate(new DataView(copy.buffer), this, { grid, block }));
  }
  synchronize(): void {
    this.maybeFail('synchronize');
    this.calls.push({ op: 'synchronize' });
    const q = this.queue;
    this.queue = [];
    for (const job of q) job();
  }
  record() {
    this.calls.push({ op: 'record' });
    return { t: this.calls.length };
  }
  elapsedMs(): number {
    this.synchronize();
    return 0;
  }
  destroyEvent(): void {}
  gemm(call: GemmCall): void {
    this.maybeFail('gemm');
    this.calls.push({ op: 'gemm', gemm: call });
    if (this.computeGemm) this.queue.push(() => this.runGemm(call));
  }
  /** C = op(A)·op(B) per batch, column-major as cuBLAS defines it (alpha 1, beta 0). */
  private runGemm(g: GemmCall): void {
    for (let p = 0; p < g.batch; p++) {
      const A = this.f32(g.a + BigInt(4 * p * g.strideA), g.transA ? g.lda * g.m : g.lda * g.k);
      const B = this.f32(g.b + BigInt(4 * p * g.strideB), g.transB ? g.ldb * g.k : g.ldb * g.n);
      const C = this.f32(g.c + BigInt(4 * p * g.strideC), g.ldc * g.n);
      for (let i = 0; i < g.m; i++)
        for (let j = 0; j < g.n; j++) {
          let s = 0;
          for (let l = 0; l < g.k; l++)
            s +=
              (g.transA ? A[l + i * g.lda] : A[i + l * g.lda]) *
              (g.transB ? B[j + l * g.ldb] : B[l + j * g.ldb]);
          C[i + j * g.ldc] = s;
        }
    }
  }
  setMathMode(mode: MatmulMath): void {
    this.calls.push({ op: `setMathMode:${mode}` });
  }
  destroy(): void {
    this.calls.push({ op: 'destroy' });
  }
  /** Calls of one kind. */
  ops(op: string): FakeCall[] {
    return this.calls.filter((c) => c.op === op);
  }
}

function codeName(code: number): string {
  const entry = Object.entries(CU).find(([, v]) => v === code);
  return entry ? `CUDA_${entry[0]}` : `CUDA error ${code}`;
}
