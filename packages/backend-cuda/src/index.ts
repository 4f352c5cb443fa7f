/**
 * `@dictlearn/backend-cuda`: every core op on NVIDIA GPUs — the CUDA driver API and cuBLAS
 * through koffi, the package's own kernels (CUDA C compiled to PTX at the package's build and
 * JIT-compiled by the driver for the GPU present), a caching allocator, one stream.
 *
 * ```ts
 * import '@dictlearn/backend-cuda/register';
 * import { useBackend } from '@dictlearn/core';
 * await useBackend('cuda'); // or 'auto': falls back, with the reason, where there is no GPU
 * ```
 * @packageDocumentation
 */
export {
  type AllocatorOptions,
  type AllocatorStats,
  CachingAllocator,
  type DeviceBlock,
  sizeClass,
} from './allocator.js';
export { type CudaBackend, type CudaBackendOptions, createCudaBackend } from './backend.js';
export {
  type CudaData,
  CudaDevice,
  type CudaDeviceOptions,
  type CudaDeviceStats,
  choosePtxTarget,
  loadPtx,
  type PtxSet,
  ptxEntries,
} from './device.js';
export {
  CU,
  CUBLAS,
  type CublasFunctions,
  type CudaDeviceInfo,
  type CudaDriver,
  CudaError,
  type CudaHandle,
  cublasCandidates,
  cublasProducts,
  type Dim3,
  DRIVER_LIBRARIES,
  type GemmCall,
  MATMUL_INPUT_EPS,
  type MatmulMath,
  type OpenDriverOptions,
  openCudaDriver,
} from './driver.js';
export type { Param, ParamValues } from './launch.js';
