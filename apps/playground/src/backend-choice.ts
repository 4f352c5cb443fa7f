/**
 * Which backend the page trains on, and why: WebGPU when the browser gives an adapter, else the
 * CPU backend, with the reason in the browser's own terms.
 */
import { useBackend } from '@dictlearn/core';

/** The backend chosen and the sentence the page shows about it. */
export interface BackendChoice {
  /** Backend name: `'webgpu'` or `'cpu'`. */
  name: 'webgpu' | 'cpu';
  /** What the page says, e.g. "WebGPU (SwiftShader)" or "CPU — WebGPU unavailable: …". */
  text: string;
}

/** Why this browser cannot give WebGPU, or undefined when an adapter is there. */
export async function webgpuUnavailable(nav: Navigator = navigator): Promise<string | undefined> {
  const gpu = (nav as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) {
    return window.isSecureContext
      ? 'navigator.gpu is undefined in this browser'
      : 'navigator.gpu is undefined: WebGPU needs a secure context (https or localhost)';
  }
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter)
      return 'navigator.gpu.requestAdapter() returned no adapter (the GPU is disabled or blocklisted in this browser)';
  } catch (e) {
    return `navigator.gpu.requestAdapter() failed: ${(e as Error).message}`;
  }
  return undefined;
}

/**
 * Starts the backend `wanted` asks for (`'auto'`: WebGPU when available, else CPU) and says which
 * one runs and why.
 */
export async function chooseBackend(wanted: 'auto' | 'webgpu' | 'cpu'): Promise<BackendChoice> {
  if (wanted === 'cpu') {
    await useBackend('cpu');
    return { name: 'cpu', text: 'CPU (chosen in the page)' };
  }
  const why = await webgpuUnavailable();
  if (!why) {
    try {
      const b = await useBackend('webgpu');
      const adapter = (b as { adapter?: string }).adapter;
      return { name: 'webgpu', text: `WebGPU${adapter ? ` (${adapter})` : ''}` };
    } catch (e) {
      await useBackend('cpu');
      return { name: 'cpu', text: `CPU — WebGPU failed to start: ${(e as Error).message}; running on CPU` };
    }
  }
  await useBackend('cpu');
  return { name: 'cpu', text: `CPU — WebGPU unavailable: ${why}; running on CPU` };
}
