/**
 * Side-effect entry: registers the CUDA backend as `'cuda'` (priority 300, started by `useBackend`).
 * @packageDocumentation
 */
import { registerBackend } from '@dictlearn/core';
import { createCudaBackend } from './backend.js';

/** The backend registered by this module. */
export const cuda = createCudaBackend();
registerBackend(cuda);
