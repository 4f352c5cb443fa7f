/**
 * Test helpers: paths of the checked-in tiny models and readers for their torch reference data
 * (made by `fixtures/make-test-models.py`). Not part of the package's API.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { npyDataOffset, parseNpyHeader } from '@dictlearn/buffer';

/** The fixtures folder. */
export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

/** The test models (a folder each, with torch's reference data). */
export const MODELS = ['gpt-neox', 'gpt2', 'llama'] as const;

/** One checked-in ONNX export of a test model. */
export interface FixtureExport {
  /** What the tests call it. */
  readonly name: string;
  /** The model folder (its torch references). */
  readonly model: (typeof MODELS)[number];
  /** The ONNX file in that folder. */
  readonly file: string;
}

/**
 * Every checked-in export: the TorchScript exports (`model.onnx`, module paths in node names) and
 * the Llama model from the dynamo exporter (module paths in node metadata, weights in the external
 * data file `model-dynamo.onnx.data`), all checked against the same torch references.
 */
export const EXPORTS: readonly FixtureExport[] = [
  ...MODELS.map((model) => ({ name: model, model, file: 'model.onnx' })),
  { name: 'llama (dynamo exporter, external data)', model: 'llama', file: 'model-dynamo.onnx' },
];

/** One model's reference data (reference.json). */
export interface Reference {
  model: string;
  vocab: number;
  contexts: number[][];
  ce_loss: number[];
  hooks: { hook: string; file: string; dim: number }[];
  training: Record<string, number>;
}

/** reference.json of a model. */
export function reference(model: string): Reference {
  return JSON.parse(readFileSync(`${FIXTURES}${model}/reference.json`, 'utf8')) as Reference;
}

/** A float32 .npy file's values and shape. */
export function readNpy(path: string): { data: Float32Array; shape: number[] } {
  const bytes = new Uint8Array(readFileSync(path));
  const header = parseNpyHeader(bytes, path);
  const offset = npyDataOffset(bytes, path);
  if (header.dtype !== 'float32') throw new Error(`${path}: expected float32, got ${header.dtype}`);
  const n = header.shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(
    bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + 4 * n),
  );
  return { data, shape: header.shape };
}

export { contextLoss, maxAbsDiff } from './fixture-math.js';
