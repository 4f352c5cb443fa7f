// A backend of your own: storage plus kernels, registered into core. This one keeps tensors in
// plain Float32Arrays and implements three ops (matmul, add, relu), enough for a ReLU encoder;
// any other op on it fails with an error naming the op and the backend, never a silent CPU
// round-trip. The CPU backend is the oracle it is checked against.
// Run from the repository root: pnpm --filter @dictlearn/examples run custom-backend
import '@dictlearn/backend-cpu/register';
import {
  add,
  type Backend,
  type KernelTensor,
  matmul,
  registerBackend,
  registerKernel,
  relu,
  sum,
  type Tensor,
  tensor,
  useBackend,
} from '@dictlearn/core';

// Storage: every tensor's values are one Float32Array (int32 tensors would need their own).
const mini: Backend = {
  name: 'mini',
  priority: 10, // below cpu (100), so useBackend('auto') never picks it
  async init() {},
  upload: (values) => Float32Array.from(values),
  read: async (data) => (data as Float32Array).slice(),
  free() {}, // garbage-collected memory: nothing to release
};
registerBackend(mini);

const values = (t: KernelTensor) => t.data as Float32Array;

registerKernel('relu', mini, ([x]) => ({
  data: values(x).map((v) => Math.max(v, 0)),
  shape: x.shape,
  dtype: 'float32',
}));

// add: the output shape comes in the attributes; this kernel handles a row vector broadcast
// over the rows of a matrix, and equal shapes.
registerKernel('add', mini, ([a, b], { shape }) => {
  const out = new Float32Array(shape.reduce((n, s) => n * s, 1));
  const [av, bv] = [values(a), values(b)];
  for (let i = 0; i < out.length; i++) out[i] = av[i % av.length] + bv[i % bv.length];
  return { data: out, shape, dtype: 'float32' };
});

registerKernel('matmul', mini, ([a, b], { transA, transB, shape }) => {
  if (transA || transB) throw new Error('mini: matmul with transposes is not implemented');
  const [m, k] = a.shape;
  const n = b.shape[1];
  const [av, bv] = [values(a), values(b)];
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++)
    for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) out[i * n + j] += av[i * k + p] * bv[p * n + j];
  return { data: out, shape, dtype: 'float32' };
});

/** relu(x·W + b) on one backend. */
async function encode(backend: string): Promise<Float32Array> {
  await useBackend(backend);
  const x = tensor([1, -2, 0.5, 3, 0, -1], [2, 3]);
  const w = tensor([0.2, -0.4, 1, 0.3, -0.5, 0.1, 0.8, 0.6, -0.7, 0.25, 0.05, -0.3], [3, 4]);
  const b = tensor([0.1, -0.1, 0.2, 0]);
  const f: Tensor = relu(add(matmul(x, w), b));
  const out = (await f.data()) as Float32Array;
  for (const t of [x, w, b, f]) t.dispose();
  return out;
}

const ours = await encode('mini');
const oracle = await encode('cpu');
const worst = Math.max(...ours.map((v, i) => Math.abs(v - oracle[i])));
console.log(`mini: ${Array.from(ours, (v) => v.toFixed(3)).join(' ')}`);
console.log(`largest difference from the cpu backend: ${worst}`);

// An op the backend has no kernel for is a clear error.
await useBackend('mini');
const t = tensor([1, 2, 3]);
try {
  sum(t);
} catch (e) {
  console.log(`sum on mini: ${(e as Error).message}`);
} finally {
  t.dispose();
}
await useBackend('cpu');
