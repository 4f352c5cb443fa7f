/**
 * The backend's WebAssembly assembler: core's `@dictlearn/core/wasm` (opcodes, LEB128, module
 * bytes), which buffer's modules use too. Re-exported here so the kernels import it from one
 * local place.
 *
 * @module
 */
export * from '@dictlearn/core/wasm';
