/**
 * Test helpers for the browser tests: the checked-in fixtures fetched from the test server (vitest
 * serves the repository), onnxruntime-web set up to load without network, and a dictionary built
 * from fetched files. `fixtures.ts` reads the same files with `node:fs`, which a page cannot
 * import. Not part of the package's API (left out of the published files).
 *
 * @module
 */
import { npyDataOffset, parseNpyHeader } from '@dictlearn/buffer';
import {
  createArchitecture,
  DICTIONARY_FILES,
  Dictionary,
  decodeSafetensors,
  parseConfig,
  tensor,
  verifyChecksum,
} from '@dictlearn/core';
// @ts-expect-error Vite's `?url` import (the README's way): the file's URL on the dev server. The
// repository's TypeScript setup has no declaration for the suffix (that comes with `vite/client`).
import ortWasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.wasm?url';
import * as ort from 'onnxruntime-web/wasm';
import type { OrtModule } from './runtime.js';

/** The fixtures folder as a URL on the test server. */
export const FIXTURES_URL = new URL('../fixtures/', moduleUrl());

/**
 * This module's URL. Not written as `new URL('../x/', import.meta.url)`: Vite rewrites that
 * pattern at build time (as an asset reference) and drops a folder's trailing slash.
 */
function moduleUrl(): string {
  return import.meta.url;
}

/**
 * The one file onnxruntime-web's wasm bundle fetches: its WebAssembly binary, served by the test
 * server from node_modules (the `.mjs` loader is inlined in `ort.wasm.bundle`).
 */
export const ORT_WASM_URL: string = ortWasmUrl;

/**
 * onnxruntime-web (the wasm execution provider) set up for a page without network and without
 * cross-origin isolation: the binary from the local server, one thread (threads need
 * SharedArrayBuffer, which only a cross-origin-isolated page has).
 */
export function webRuntime(): OrtModule {
  ort.env.wasm.wasmPaths = { wasm: ORT_WASM_URL };
  ort.env.wasm.numThreads = 1;
  // No cast: onnxruntime-web's module type must fit `OrtModule` as the README passes it.
  const runtime: OrtModule = ort;
  return runtime;
}

/** A fixture file's bytes (path relative to `fixtures/`). */
export async function fixtureBytes(path: string): Promise<Uint8Array> {
  const url = new URL(path, FIXTURES_URL);
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** A fixture JSON file. */
export async function fixtureJson<T>(path: string): Promise<T> {
  return JSON.parse(new TextDecoder().decode(await fixtureBytes(path))) as T;
}

/** A float32 .npy fixture's values and shape. */
export async function fixtureNpy(path: string): Promise<{ data: Float32Array; shape: number[] }> {
  const bytes = await fixtureBytes(path);
  const header = parseNpyHeader(bytes, path);
  if (header.dtype !== 'float32') throw new Error(`${path}: expected float32, got ${header.dtype}`);
  const offset = npyDataOffset(bytes, path);
  const n = header.shape.reduce((a, b) => a * b, 1);
  return {
    data: new Float32Array(bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + 4 * n)),
    shape: header.shape,
  };
}

/**
 * A dictionary folder (`config.json` + `sae.safetensors`) fetched from the fixtures: what
 * `Dictionary.load` does with files, checksum included (its architecture must be registered).
 */
export async function fixtureDictionary(dir: string): Promise<Dictionary> {
  const configPath = `${dir}/${DICTIONARY_FILES.config}`;
  const config = parseConfig(new TextDecoder().decode(await fixtureBytes(configPath)), configPath);
  const weightsPath = `${dir}/${DICTIONARY_FILES.weights}`;
  const bytes = await fixtureBytes(weightsPath);
  await verifyChecksum(config, DICTIONARY_FILES.weights, bytes, weightsPath);
  const arch = createArchitecture(config.architecture.name, config.architecture.config);
  const sizes = { activationDim: config.activationDim, dictSize: config.dictSize };
  const file = decodeSafetensors(bytes, weightsPath);
  const params = Object.fromEntries(
    Object.entries(arch.paramShapes(sizes)).map(([name, shape]) => [
      name,
      tensor(Float32Array.from(file.tensors[name].data as ArrayLike<number>), shape),
    ]),
  );
  // The dictionary owns the parameters (disposed with it).
  return new Dictionary(arch, params, sizes, { scale: config.normalization?.scale ?? 1 });
}

export { contextLoss, maxAbsDiff } from './fixture-math.js';
