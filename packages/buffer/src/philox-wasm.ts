/**
 * Philox-4x32-10 blocks in WebAssembly: the same function as core's `philox4x32`, several times
 * faster than JavaScript because WebAssembly multiplies 32-bit words into 64 bits natively.
 * The module is assembled from `scripts/philox.wat` by `scripts/build-philox-wasm.mjs`; the
 * tests check it word for word against core.
 */

/** The assembled `scripts/philox.wat` (base64). */
const PHILOX_WASM =
  'AGFzbQEAAAABDAFgCH9/f39/f39/AAMCAQAFAwEAAQcTAgZtZW1vcnkCAAZwaGlsb3gAAArMAQHJAQMHfwJ+AX8gACABQQR0aiERAkADQCAAIBFPDQEgAiEIIAMhCSAEIQogBSELIAYhDCAHIQ1BCiEOA0BC077Ekg0gCK1+IQ9C15r67AwgCq1+IRAgEEIgiKcgCXMgDHMhCCAQpyEJIA9CIIinIAtzIA1zIQogD6chCyAMQbnz3fF5aiEMIA1Bhd2e23tqIQ0gDkEBayEOIA4NAAsgACAINgIAIAAgCTYCBCAAIAo2AgggACALNgIMIAJBAWohAiAAQRBqIQAMAAsLCw==';

/** Writes `n` blocks at byte offset `out` of its memory: counters [c0 + b, c1, c2, c3], key [k0, k1]. */
export type PhiloxFill = (
  out: number,
  n: number,
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
) => void;

/** One instance of the module: its fill function and the words of its 64 KiB memory. */
export interface PhiloxWasm {
  /** The block function. */
  fill: PhiloxFill;
  /** The memory as 16384 words (4096 blocks). */
  words: Uint32Array;
}

/** The part of the WebAssembly JS API used here (typed locally: the Node typings lack it). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}

let compiled: object | null | undefined;

/** A new instance with its own memory, or `null` where WebAssembly is unavailable. */
export function philoxWasm(): PhiloxWasm | null {
  const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (compiled === undefined) {
    try {
      if (!api) throw new Error('no WebAssembly');
      const bytes = Uint8Array.from(atob(PHILOX_WASM), (c) => c.charCodeAt(0));
      compiled = new api.Module(bytes);
    } catch {
      compiled = null;
    }
  }
  if (compiled === null || !api) return null;
  const { exports } = new api.Instance(compiled, {});
  const memory = exports.memory as { buffer: ArrayBuffer };
  return { fill: exports.philox as PhiloxFill, words: new Uint32Array(memory.buffer) };
}
