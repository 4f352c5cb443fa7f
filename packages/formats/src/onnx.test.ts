// ONNX export: the encode, decode and forward models of every architecture, run by
// onnxruntime-node, give Dictionary.forward's features and reconstructions (float32 sums in
// another order: 1e-5). Skipped, with the reason, where onnxruntime-node cannot load.
import { tensor } from '@dictlearn/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { exportOnnx } from './onnx.js';
import { dictionaryFromParts } from './parts.js';
import { expectClose, randomParts, seededRandom, TEST_ARCHS, useCpu } from './test-support.js';

type Ort = typeof import('onnxruntime-node');
let ort: Ort | undefined;
let why = '';
try {
  ort = await import('onnxruntime-node');
} catch (e) {
  why = `onnxruntime-node cannot load: ${(e as Error).message.split('\n')[0]}`;
}

beforeAll(useCpu);

describe(`ONNX export${ort ? '' : ` (skipped: ${why})`}`, () => {
  it.skipIf(!ort).each(TEST_ARCHS)(
    '%s %j: encode, decode and forward equal Dictionary.forward',
    async (name, config) => {
      const o = ort!;
      const parts = randomParts(name, config, 77);
      const dict = dictionaryFromParts(parts, 'test');
      const B = 6;
      const r = seededRandom(3);
      const xv = Float32Array.from({ length: B * 8 }, () => (r() - 0.5) * 3);
      const x = tensor(xv, [B, 8]);
      const want = dict.forward(x);
      const f = Float32Array.from(await want.features.data());
      const xhat = Float32Array.from(await want.reconstruction.data());
      expect(f.some((v) => v !== 0) && f.some((v) => v === 0)).toBe(true);
      const run = async (graph: 'encode' | 'decode' | 'forward', feeds: Record<string, Float32Array>) => {
        const session = await o.InferenceSession.create(exportOnnx(parts, graph));
        const inputs = Object.fromEntries(
          Object.entries(feeds).map(([k, v]) => [k, new o.Tensor('float32', v, [B, v.length / B])]),
        );
        const out = await session.run(inputs);
        await session.release();
        return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as Float32Array]));
      };
      const enc = await run('encode', { x: xv });
      expectClose(enc.features, f);
      const decd = await run('decode', { features: f });
      expectClose(decd.reconstruction, xhat);
      const fwd = await run('forward', { x: xv });
      expectClose(fwd.features, f);
      expectClose(fwd.reconstruction, xhat);
      for (const t of [x, want.features, want.reconstruction]) t.dispose();
      dict.dispose();
    },
  );
});
