import { registerBackend } from '@dictlearn/core';
import { conformanceSuite } from '@dictlearn/core/testing';
import { createCpuBackend } from './backend.js';

// The reference backend itself, the float64 oracle the gradient checker differentiates on,
// and the float32 backend with its onnxruntime fast path (compared op by op with plain TS).
registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
registerBackend(createCpuBackend({ name: 'cpu64', precision: 'float64' }));
registerBackend(createCpuBackend({ name: 'cpu-fast' }));

conformanceSuite({ backend: 'cpu', gradientBackend: 'cpu64' });
conformanceSuite({ backend: 'cpu64', reference: 'cpu', gradientBackend: 'cpu64' });
conformanceSuite({ backend: 'cpu-fast', reference: 'cpu', gradientBackend: 'cpu64' });
