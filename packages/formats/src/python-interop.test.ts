// What dictlearn writes loads in Python as each library loads it: ae.pt with
// torch.load(weights_only=True) and the DL class's load_state_dict(strict=True), SAELens and
// sparsify weights with safetensors (fixtures/check-written.py). Every tensor is checked against
// the key names and layouts of REFERENCE (written out below, independently of the writers), and
// each library's forward pass (fixtures/reference.py) against Dictionary.forward. Skipped, with
// the reason, where no Python with torch and safetensors exists.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tensor } from '@dictlearn/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDictionary } from './api.js';
import { type DictionaryParts, dictionaryFromParts, type FormatName, transpose2d } from './parts.js';
import {
  expectClose,
  findPython,
  holds,
  randomParts,
  seededRandom,
  TEST_ARCHS,
  useCpu,
} from './test-support.js';

const py = findPython();
const skip = 'reason' in py ? py.reason : undefined;
const script = fileURLToPath(new URL('../fixtures/check-written.py', import.meta.url));

type Want = Record<string, { dtype: string; shape: number[]; values: ArrayLike<number> }>;

/** The tensors each library's file must hold for a dictionary (REFERENCE "Checkpoint key names"). */
function wantTensors(format: FormatName, p: DictionaryParts): Want {
  const { activationDim: d, dictSize: F } = p;
  const v = (k: string) => p.params[k]?.values;
  const f32 = (shape: number[], values: ArrayLike<number>) => ({ dtype: 'float32', shape, values });
  const T = (k: string, rows: number, cols: number) => transpose2d(v(k), rows, cols);
  const wEnc = p.architecture === 'tied' ? T('W_dec', F, d) : v('W_enc');
  const theta =
    p.architecture === 'jumprelu'
      ? v('log_threshold').map((x) => Math.fround(Math.exp(x)))
      : p.params.threshold
        ? new Float32Array(F).fill(v('threshold')[0])
        : undefined;
  const gated = p.architecture.startsWith('gated');
  if (format === 'sparsify') {
    return {
      'encoder.weight': f32([F, d], transpose2d(wEnc, d, F)),
      'encoder.bias': f32([F], v('b_enc')),
      W_dec: f32([F, d], v('W_dec')),
      b_dec: f32([d], v('b_dec')),
    };
  }
  if (format === 'saelens') {
    return {
      W_enc: f32([d, F], wEnc),
      W_dec: f32([F, d], v('W_dec')),
      b_dec: f32([d], v('b_dec')),
      ...(gated
        ? { b_gate: f32([F], v('b_gate')), r_mag: f32([F], v('r_mag')), b_mag: f32([F], v('b_mag')) }
        : { b_enc: f32([F], v('b_enc')) }),
      ...(theta ? { threshold: f32([F], theta) } : {}),
    };
  }
  const k = { dtype: 'int32', shape: [], values: [p.config.k as number] };
  switch (p.architecture) {
    case 'topk':
    case 'batch-topk':
      return {
        b_dec: f32([d], v('b_dec')),
        k,
        threshold: f32([], [theta ? theta[0] : -1]),
        'decoder.weight': f32([d, F], T('W_dec', F, d)),
        'encoder.weight': f32([F, d], T('W_enc', d, F)),
        'encoder.bias': f32([F], v('b_enc')),
      };
    case 'matryoshka-batch-topk':
      return {
        W_enc: f32([d, F], v('W_enc')),
        b_enc: f32([F], v('b_enc')),
        W_dec: f32([F, d], v('W_dec')),
        b_dec: f32([d], v('b_dec')),
        k,
        threshold: f32([], [v('threshold')[0]]),
        group_sizes: { dtype: 'int64', shape: [3], values: p.config.groups as number[] },
      };
    case 'jumprelu':
      return {
        W_enc: f32([d, F], v('W_enc')),
        b_enc: f32([F], v('b_enc')),
        W_dec: f32([F, d], v('W_dec')),
        b_dec: f32([d], v('b_dec')),
        threshold: f32([F], theta!),
      };
    case 'gated':
    case 'gated-anneal':
      return {
        decoder_bias: f32([d], v('b_dec')),
        r_mag: f32([F], v('r_mag')),
        gate_bias: f32([F], v('b_gate')),
        mag_bias: f32([F], v('b_mag')),
        'encoder.weight': f32([F, d], T('W_enc', d, F)),
        'decoder.weight': f32([d, F], T('W_dec', F, d)),
      };
    default:
      return {
        bias: f32([d], v('b_dec')),
        'encoder.weight': f32([F, d], transpose2d(wEnc, d, F)),
        'encoder.bias': f32([F], v('b_enc')),
        'decoder.weight': f32([d, F], T('W_dec', F, d)),
      };
  }
}

let root: string;
beforeAll(async () => {
  await useCpu();
  root = await mkdtemp(join(tmpdir(), 'dl-formats-py-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

describe(`dictlearn's files in Python${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it.skipIf(skip !== undefined)(
    'torch.load(weights_only=True) / safetensors load every tensor as REFERENCE names it, and each library’s forward equals Dictionary.forward',
    async () => {
      const cases: {
        format: FormatName;
        path: string;
        x: number[][];
        parts: DictionaryParts;
        f: Float32Array;
        r: Float32Array;
        label: string;
      }[] = [];
      let seed = 100;
      for (const [name, config] of TEST_ARCHS) {
        for (const format of ['dictionary_learning', 'saelens', 'sparsify'] as FormatName[]) {
          if (!holds(format, name, config)) continue;
          const parts = randomParts(name, config, ++seed);
          const dict = dictionaryFromParts(parts, 'test');
          const path = join(root, `${format}-${name}-${seed}`);
          await writeDictionary(dict, path, format);
          const rand = seededRandom(seed);
          const x = Array.from({ length: 5 }, () => Array.from({ length: 8 }, () => (rand() - 0.5) * 3));
          const xt = tensor(x.flat(), [5, 8]);
          const out = dict.forward(xt);
          cases.push({
            format,
            path,
            x,
            parts,
            f: Float32Array.from(await out.features.data()),
            r: Float32Array.from(await out.reconstruction.data()),
            label: `${format} ${name} ${JSON.stringify(config)}`,
          });
          for (const t of [xt, out.features, out.reconstruction]) t.dispose();
          dict.dispose();
        }
      }
      const run = spawnSync((py as { cmd: string }).cmd, [script], {
        input: JSON.stringify(cases.map(({ format, path, x }) => ({ format, path, x }))),
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      });
      expect(run.status, run.stderr).toBe(0);
      const results = JSON.parse(run.stdout) as {
        tensors: Want;
        features: number[];
        reconstruction: number[];
      }[];
      expect(results.length).toBe(cases.length);
      results.forEach((res, i) => {
        const c = cases[i];
        const want = wantTensors(c.format, c.parts);
        expect(Object.keys(res.tensors).sort(), c.label).toEqual(Object.keys(want).sort());
        for (const [k, w] of Object.entries(want)) {
          const got = res.tensors[k];
          expect({ dtype: got.dtype, shape: got.shape }, `${c.label} ${k}`).toEqual({
            dtype: w.dtype,
            shape: w.shape,
          });
          expect(got.values, `${c.label} ${k}`).toEqual(Array.from(w.values));
        }
        expectClose(res.features, c.f);
        expectClose(res.reconstruction, c.r);
        expect(c.f.some((v) => v !== 0) && c.f.some((v) => v === 0), c.label).toBe(true);
      });
      expect(cases.length).toBe(22);
    },
    120_000,
  );
});
