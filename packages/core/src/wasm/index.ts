/**
 * `@dictlearn/core/wasm`: a few WebAssembly opcodes and encoders, enough to assemble small SIMD
 * modules byte by byte (no toolchain and no binary blob: every instruction is spelled out where it
 * is used). Opcode numbers are the core specification's and the fixed-width SIMD proposal's final
 * ones. backend-cpu's kernels and buffer's random streams and synthetic sums are built with it;
 * it touches no host API but `globalThis.WebAssembly` (browser-safe); a module may import
 * functions its instantiator passes (buffer's imports `Math.log` and `Math.exp`, so its
 * values are the host's own, bit for bit).
 *
 * @packageDocumentation
 */

/** Value types. */
export const I32 = 0x7f;
export const F32 = 0x7d;
export const F64 = 0x7c;
export const V128 = 0x7b;

/** Control. */
export const UNREACHABLE = 0x00;
export const BLOCK = 0x02;
export const LOOP = 0x03;
export const IF = 0x04;
export const ELSE = 0x05;
export const VOID = 0x40;
export const END = 0x0b;
export const BR = 0x0c;
export const BR_IF = 0x0d;
export const RETURN = 0x0f;
export const CALL = 0x10;
export const DROP = 0x1a;
export const SELECT = 0x1b;

/** Locals. */
export const GET = 0x20;
export const SET = 0x21;
export const TEE = 0x22;

/** Memory. */
export const I32_LOAD = 0x28;
export const F32_LOAD = 0x2a;
export const F64_LOAD = 0x2b;
export const I32_STORE = 0x36;
export const F32_STORE = 0x38;
export const F64_STORE = 0x39;

/** Scalar arithmetic and comparisons. */
export const I32_CONST = 0x41;
export const F32_CONST = 0x43;
export const F64_CONST = 0x44;
export const I32_EQZ = 0x45;
export const I32_EQ = 0x46;
export const I32_NE = 0x47;
export const I32_LT_S = 0x48;
export const I32_LT_U = 0x49;
export const I32_GT_S = 0x4a;
export const I32_GT_U = 0x4b;
export const I32_LE_U = 0x4d;
export const I32_GE_S = 0x4e;
export const I32_GE_U = 0x4f;
export const F32_EQ = 0x5b;
export const F32_NE = 0x5c;
export const F32_LT = 0x5d;
export const F32_GT = 0x5e;
export const F32_LE = 0x5f;
export const F32_GE = 0x60;
export const I32_ADD = 0x6a;
export const I32_SUB = 0x6b;
export const I32_MUL = 0x6c;
export const I32_AND = 0x71;
export const I32_OR = 0x72;
export const I32_XOR = 0x73;
export const I32_SHL = 0x74;
export const I32_SHR_S = 0x75;
export const I32_SHR_U = 0x76;
export const F32_SQRT = 0x91;
export const F32_ADD = 0x92;
export const F32_SUB = 0x93;
export const F32_MUL = 0x94;
export const F32_DIV = 0x95;
export const F32_MAX = 0x97;
export const F64_EQ = 0x61;
export const F64_LT = 0x63;
export const F64_GT = 0x64;
export const F64_LE = 0x65;
export const F64_GE = 0x66;
export const F64_NEG = 0x9a;
export const F64_CEIL = 0x9b;
export const F64_FLOOR = 0x9c;
export const F64_ADD = 0xa0;
export const F64_SUB = 0xa1;
export const F64_MUL = 0xa2;
export const F64_DIV = 0xa3;
export const I32_TRUNC_F64_S = 0xaa;
export const F32_DEMOTE_F64 = 0xb6;
export const F64_CONVERT_I32_S = 0xb7;
export const F64_CONVERT_I32_U = 0xb8;
export const F64_PROMOTE_F32 = 0xbb;
export const I32_REINTERPRET_F32 = 0xbc;
export const F32_REINTERPRET_I32 = 0xbe;

/** SIMD (prefix 0xfd, then the opcode as unsigned LEB128). */
export const SIMD = 0xfd;
export const V128_LOAD = [SIMD, 0x00];
export const V128_STORE = [SIMD, 0x0b];
export const I8X16_SHUFFLE = [SIMD, 0x0d];
/**
 * i8x16.shuffle of two v128 picking 32-bit lanes: 0–3 of the first operand, 4–7 of the second
 * (e.g. `[0, 4, 1, 5]` interleaves their low halves).
 */
export const shuffle32 = (lanes: number[]): number[] => [
  ...I8X16_SHUFFLE,
  ...lanes.flatMap((x) => [4 * x, 4 * x + 1, 4 * x + 2, 4 * x + 3]),
];
export const F32X4_SPLAT = [SIMD, 0x13];
export const F32X4_EXTRACT = [SIMD, 0x1f];
export const F64X2_SPLAT = [SIMD, 0x14];
export const F64X2_EXTRACT = [SIMD, 0x21];
export const F32X4_EQ = [SIMD, 0x41];
export const F32X4_NE = [SIMD, 0x42];
export const F32X4_LT = [SIMD, 0x43];
export const F32X4_GT = [SIMD, 0x44];
export const F32X4_LE = [SIMD, 0x45];
export const F32X4_GE = [SIMD, 0x46];
export const V128_NOT = [SIMD, 0x4d];
export const V128_AND = [SIMD, 0x4e];
export const V128_OR = [SIMD, 0x50];
export const V128_XOR = [SIMD, 0x51];
export const V128_BITSELECT = [SIMD, 0x52];
export const V128_ANY_TRUE = [SIMD, 0x53];
export const I32X4_ALL_TRUE = [SIMD, 0xa3, 0x01];
export const I32X4_SPLAT = [SIMD, 0x11];
export const I32X4_EXTRACT = [SIMD, 0x1b];
export const I32X4_LT_S = [SIMD, 0x39];
export const I32X4_GE_S = [SIMD, 0x3f];
export const I32X4_ADD = [SIMD, 0xae, 0x01];
export const I32X4_SUB = [SIMD, 0xb1, 0x01];
/** i32x4.mul: the low 32 bits of each lane's product. */
export const I32X4_MUL = [SIMD, 0xb5, 0x01];
/** i64x2.extmul_low_i32x4_u: the full 64-bit products of lanes 0 and 1 (unsigned). */
export const I64X2_EXTMUL_LOW_I32X4_U = [SIMD, 0xde, 0x01];
/** i64x2.extmul_high_i32x4_u: the full 64-bit products of lanes 2 and 3 (unsigned). */
export const I64X2_EXTMUL_HIGH_I32X4_U = [SIMD, 0xdf, 0x01];
/** v128.const of four i32 lanes. */
export const i32x4c = (lanes: number[]): number[] => [
  SIMD,
  0x0c,
  ...new Uint8Array(Int32Array.from(lanes).buffer),
];
export const F32X4_DEMOTE_F64X2_ZERO = [SIMD, 0x5e];
export const F64X2_PROMOTE_LOW_F32X4 = [SIMD, 0x5f];
export const F32X4_ABS = [SIMD, 0xe0, 0x01];
export const F32X4_NEG = [SIMD, 0xe1, 0x01];
export const F32X4_SQRT = [SIMD, 0xe3, 0x01];
export const F32X4_ADD = [SIMD, 0xe4, 0x01];
export const F32X4_SUB = [SIMD, 0xe5, 0x01];
export const F32X4_MUL = [SIMD, 0xe6, 0x01];
export const F32X4_DIV = [SIMD, 0xe7, 0x01];
/**
 * f32x4.pmax(a, b) = a < b ? b : a (maxps): f32x4.max's NaN and signed-zero rules cost V8 about
 * three times as much. pmax(0, v) is relu(v) for every non-NaN v (−0 gives +0); pmax(acc, v)
 * keeps acc where v is NaN.
 */
export const F32X4_PMAX = [SIMD, 0xeb, 0x01];
export const F64X2_ADD = [SIMD, 0xf0, 0x01];
export const F64X2_SUB = [SIMD, 0xf1, 0x01];
export const F64X2_MUL = [SIMD, 0xf2, 0x01];

/** Unsigned LEB128. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128. */
export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** i32.const v. */
export const i32c = (v: number): number[] => [I32_CONST, ...sleb(v)];
/** f32.const v (little-endian IEEE bytes). */
export function f32c(v: number): number[] {
  const b = new Uint8Array(new Float32Array([v]).buffer);
  return [F32_CONST, ...b];
}
/** f64.const v (little-endian IEEE bytes). */
export function f64c(v: number): number[] {
  const b = new Uint8Array(new Float64Array([v]).buffer);
  return [F64_CONST, ...b];
}
/** local.get l. */
export const get = (l: number): number[] => [GET, ...uleb(l)];
/** local.set l. */
export const set = (l: number): number[] => [SET, ...uleb(l)];
/** local.tee l. */
export const tee = (l: number): number[] => [TEE, ...uleb(l)];
/** memarg: alignment exponent 2 (4 bytes: every operand is a 32-bit array) and offset. */
export const mem = (offset = 0): number[] => [2, ...uleb(offset)];
/** memarg with the alignment exponent given (3 for float64, 4 for v128) and an offset. */
export const memAligned = (alignExponent: number, offset = 0): number[] => [alignExponent, ...uleb(offset)];
/** A section: id, byte length, body. */
export const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
/** A vector: count, then the items. */
export const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
/** A name (ASCII). */
export const name = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
/** The 16 bytes of an all-zero v128 constant (v128.const 0). */
export const V128_ZERO = [SIMD, 0x0c, ...new Array<number>(16).fill(0)];

/** `while (get(a) < get(b), unsigned) { body }`: branch depth 0 inside body continues, 1 breaks. */
export function whileLtU(a: number[], b: number[], body: number[]): number[] {
  return [BLOCK, VOID, LOOP, VOID, ...a, ...b, I32_GE_U, BR_IF, 1, ...body, BR, 0, END, END];
}

/** `local += step` (i32). */
export const addTo = (l: number, step: number): number[] => [...get(l), ...i32c(step), I32_ADD, ...set(l)];

/** A function body: its locals (runs of [count, type]) and code, with the closing `end`. */
export function funcBody(locals: [number, number][], code: number[]): number[] {
  return [...vec(locals.map(([n, t]) => [...uleb(n), t])), ...code, END];
}

/** A function type: params and results. */
export const funcType = (params: number[], results: number[]): number[] => [
  0x60,
  ...vec(params.map((p) => [p])),
  ...vec(results.map((r) => [r])),
];

/** A function a module imports: `module`.`name`, of the module's function type `type`. */
export interface FuncImport {
  module: string;
  name: string;
  type: number;
}

/** `call f`: f indexes the module's functions, its imports first (see {@link moduleBytes}). */
export const call = (f: number): number[] => [CALL, ...uleb(f)];

/**
 * A whole module of one memory, the given function types and functions (each naming its type by
 * index), exporting functions by name. The memory is its own (exported as `mem`, 1 page to
 * start, growable), or with `sharedMaxPages` imported as `env.mem`: a shared memory of at most
 * that many pages, which worker threads instantiate the same module on. `funcImports` come first
 * in the function index space: with k of them, `funcs[i]` is function k + i.
 */
export function moduleBytes(
  types: number[][],
  funcs: { type: number; body: number[]; export?: string }[],
  sharedMaxPages?: number,
  funcImports: FuncImport[] = [],
): Uint8Array {
  const first = funcImports.length;
  const exports = [
    ...(sharedMaxPages === undefined ? [[...name('mem'), 0x02, 0]] : []),
    ...funcs.flatMap((f, i) => (f.export ? [[...name(f.export), 0x00, ...uleb(first + i)]] : [])),
  ];
  const sharedMemory =
    sharedMaxPages === undefined
      ? []
      : [[...name('env'), ...name('mem'), 0x02, 0x03, 1, ...uleb(sharedMaxPages)]];
  const importEntries = [
    ...funcImports.map((f) => [...name(f.module), ...name(f.name), 0x00, ...uleb(f.type)]),
    ...sharedMemory,
  ];
  const imports = importEntries.length > 0 ? section(2, vec(importEntries)) : [];
  const memories = sharedMaxPages === undefined ? section(5, vec([[0x00, 1]])) : [];
  return Uint8Array.from([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, vec(types)),
    ...imports,
    ...section(3, vec(funcs.map((f) => uleb(f.type)))),
    ...memories,
    ...section(7, vec(exports)),
    ...section(10, vec(funcs.map((f) => [...uleb(f.body.length), ...f.body]))),
  ]);
}

/** The slice of the WebAssembly JS API the assembled modules need (the project's TypeScript libs do not declare it). */
export interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}

/** A module's own memory as the JS API shows it (the buffer is replaced, and old views detached, on growth). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

/** `globalThis.WebAssembly`, or undefined where the runtime has none (or a policy hides it). */
export function wasmApi(): WasmApi | undefined {
  return (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
}
