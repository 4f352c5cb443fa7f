/**
 * Set-up shared by the kernel tests (not part of the package's build): WebGPU backends under
 * the test's names, one with subgroups and one without (the workgroup-memory fallbacks), started,
 * or the reason they cannot start here; and deterministic test values.
 *
 * @module
 */
import { initBackend, registerBackend } from '@dictlearn/core';
import { createWebGPUBackend, type WebGPUBackend } from './backend.js';
import type { MatmulKernel } from './matmul.js';

/** The started backends, or `skip` saying why WebGPU is unavailable here. */
export interface KernelTestBackends {
  withSg: WebGPUBackend;
  noSg: WebGPUBackend;
  skip?: string;
}

/** Registers and starts `name` (subgroups where the adapter has them) and `${name}-nosg` (none). */
export async function kernelTestBackends(name: string): Promise<KernelTestBackends> {
  const withSg = registerBackend(createWebGPUBackend({ name })) as WebGPUBackend;
  const noSg = registerBackend(
    createWebGPUBackend({ name: `${name}-nosg`, subgroups: false }),
  ) as WebGPUBackend;
  try {
    await initBackend(withSg);
    await initBackend(noSg);
    return { withSg, noSg };
  } catch (e) {
    return { withSg, noSg, skip: `no WebGPU here: ${(e as Error).message}` };
  }
}

/** Deterministic values in [-1, 1) (core's linear congruential test inputs). */
export { lcgValues as values } from '@dictlearn/core/testing';

/**
 * The matmul kernels a sweep of shapes should reach for an adapter with `subgroupSize`-lane
 * subgroups (0: none): subgroups narrower than 8 lanes (SwiftShader: 4) get the scalar subgroup
 * kernel only.
 */
export function expectedMatmulKernels(subgroupSize: number): MatmulKernel[] {
  if (subgroupSize >= 8) return ['subgroup-vec4', 'vec4', 'subgroup', 'tiled'];
  return subgroupSize > 0 ? ['vec4', 'subgroup', 'tiled'] : ['vec4', 'tiled'];
}
