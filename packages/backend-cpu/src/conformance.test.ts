import { findBackend, registerBackend } from '@dictlearn/core';
import { conformanceSuite } from '@dictlearn/core/testing';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from './backend.js';
import { loadBlasMatmul } from './fast/blas-matmul.js';
import { loadOrtMatmul } from './fast/ort-matmul.js';

// The reference backend itself, the float64 oracle the gradient checker differentiates on,
// and the float32 backend with each native matmul route (compared op by op with plain TS).
registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
registerBackend(createCpuBackend({ name: 'cpu64', precision: 'float64' }));
registerBackend(createCpuBackend({ name: 'cpu-blas', fastMatmul: 'blas' }));
registerBackend(createCpuBackend({ name: 'cpu-ort', fastMatmul: 'ort' }));
// The elementwise closures that serve where a content-security policy forbids `new Function`:
// the same suite, so they cannot drift from the generated loops.
const closures = registerBackend(
  createCpuBackend({ name: 'cpu-closures', fastMatmul: false, codegen: false }),
);

const unavailable = (r: unknown) => (typeof r === 'string' ? r : undefined);

conformanceSuite({ backend: 'cpu', gradientBackend: 'cpu64' });
conformanceSuite({ backend: 'cpu64', reference: 'cpu', gradientBackend: 'cpu64' });
conformanceSuite({ backend: 'cpu-closures', reference: 'cpu', gradientBackend: 'cpu64' });

describe('elementwise code generation', () => {
  it('is on by default where the runtime allows it, and off with codegen: false', () => {
    expect(findBackend('cpu')).toMatchObject({ codegen: true });
    expect(closures.codegen).toBe(false);
  });
});
conformanceSuite({
  backend: 'cpu-ort',
  reference: 'cpu',
  gradientBackend: 'cpu64',
  skip: unavailable(loadOrtMatmul()),
});
conformanceSuite({
  backend: 'cpu-blas',
  reference: 'cpu',
  gradientBackend: 'cpu64',
  skip: unavailable(loadBlasMatmul()),
});
