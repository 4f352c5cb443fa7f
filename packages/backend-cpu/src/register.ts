/**
 * Side-effect entry: creates the default CPU backend (`'cpu'`), registers it and starts it, so
 * ops work right after `import '@dictlearn/backend-cpu/register'`.
 * @packageDocumentation
 */
import { initBackend, registerBackend } from '@dictlearn/core';
import { createCpuBackend } from './backend.js';

/** The default CPU backend registered by this module. */
export const cpu = createCpuBackend();
registerBackend(cpu);
await initBackend(cpu);
