/** WGSL building blocks shared by every kernel. */

/** NaN-safe helpers: NaN is detected from the bits, since WGSL lets compilers assume finite math. */
export const PRELUDE = /* wgsl */ `
fn isnan_(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
// Private variables, not constants: WGSL constant evaluation rejects NaN and infinities.
var<private> NAN_BITS: u32 = 0x7fc00000u;
var<private> INF_BITS: u32 = 0x7f800000u;
var<private> NINF_BITS: u32 = 0xff800000u;
fn nan_() -> f32 { return bitcast<f32>(NAN_BITS); }
fn inf_() -> f32 { return bitcast<f32>(INF_BITS); }
fn ninf_() -> f32 { return bitcast<f32>(NINF_BITS); }
fn f_(bits: u32) -> f32 { return bitcast<f32>(bits); }
`;

/** WGSL element type of a dtype. */
export function wgslType(dtype: 'float32' | 'int32'): 'f32' | 'i32' {
  return dtype === 'int32' ? 'i32' : 'f32';
}

/** Declares bindings: inputs (read-only), outputs (read-write), then `prm: array<u32>`. */
export function bindings(inputs: [string, string][], outputs: [string, string][]): string {
  const lines: string[] = [];
  let b = 0;
  for (const [name, t] of inputs)
    lines.push(`@group(0) @binding(${b++}) var<storage, read> ${name}: array<${t}>;`);
  for (const [name, t] of outputs)
    lines.push(`@group(0) @binding(${b++}) var<storage, read_write> ${name}: array<${t}>;`);
  lines.push(`@group(0) @binding(${b}) var<storage, read> prm: array<u32>;`);
  return lines.join('\n');
}

/** A 1-D kernel over `prm[0]` threads; `body` sees `i` (bounds already checked). */
export function kernel1d(decls: string, body: string, extra = ''): string {
  return `${PRELUDE}
${decls}
${extra}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= prm[0]) { return; }
  ${body}
}`;
}

/**
 * WGSL that decomposes the flat output index `i` over a shape of rank `prm[1]` stored at
 * prm[2..] and accumulates offsets with per-axis strides stored after it, one stride table per
 * name in `offsets` (e.g. ['ia', 'ib'] reads prm[2+rank..] and prm[2+2·rank..]).
 */
export function stridedOffsets(offsets: string[], shapeAt = '2u'): string {
  const decl = offsets.map((o) => `var ${o} = 0u;`).join(' ');
  const acc = offsets.map((o, k) => `${o} += c * prm[${shapeAt} + ${k + 1}u * rank + ax];`).join(' ');
  return `let rank = prm[1]; var rem = i; ${decl}
  for (var q = 0u; q < rank; q++) { let ax = rank - 1u - q; let d = prm[${shapeAt} + ax]; let c = rem % d; rem = rem / d; ${acc} }`;
}

/**
 * The top-k selection over rows of `n` floats (core's order: larger first, NaN largest, ties to
 * the lower index): one thread per row makes k sweeps, each taking the best element ranked after
 * the one taken before. Rows are read as vec4s where n is a multiple of 4 (on lavapipe a load
 * costs more than the comparisons it feeds), the elements still visited in index order.
 * Bindings X, VALS, IDXS; prm: rows, n, k.
 */
export function topkSelectShader(n: number): string {
  const width = n % 4 === 0 ? 4 : 1;
  const visit = (v: string, c: string) => `{ let v = ${v}; let c = ${c};
        if (pi < 0 || before(pv, u32(pi), v, c)) { if (bi < 0 || before(v, c, bv, u32(bi))) { bv = v; bi = i32(c); } } }`;
  const sweep =
    width === 4
      ? `for (var c4 = 0u; c4 < n / 4u; c4++) {
      let v4 = X[base + c4];
      ${[0, 1, 2, 3].map((l) => visit(`v4[${l}]`, `c4 * 4u + ${l}u`)).join('\n      ')}
    }`
      : `for (var c1 = 0u; c1 < n; c1++) {
      ${visit('X[base + c1]', 'c1')}
    }`;
  return kernel1d(
    bindings(
      [['X', width === 4 ? 'vec4f' : 'f32']],
      [
        ['VALS', 'f32'],
        ['IDXS', 'i32'],
      ],
    ),
    `let n = prm[1]; let k = prm[2]; let base = i * (n / ${width}u);
  var pv = 0.0; var pi = -1;
  for (var j = 0u; j < k; j++) {
    var bv = 0.0; var bi = -1;
    ${sweep}
    VALS[i * k + j] = bv; IDXS[i * k + j] = bi; pv = bv; pi = bi;
  }`,
    `
fn before(a: f32, ia: u32, b: f32, ib: u32) -> bool {
  let na = isnan_(a); let nb = isnan_(b);
  if (na || nb) { if (na && nb) { return ia < ib; } return na; }
  return a > b || (a == b && ia < ib);
}`,
  );
}
