/**
 * The WGSL matmul programs: C[z] = op(A[z]) · op(B[z]) for row-major A, B (transposes by
 * indexing, batch on z), with an optional epilogue C = relu(C + bias[col]) (the SAE encoder),
 * which can also sum each workgroup's rows of the result per column into a partial-sum row (the
 * encoder's column sums Σ_b f, finished by a small reduction over the partial rows).
 *
 * Four kernels, picked per call by {@link matmulKernelFor}:
 * - `subgroup-vec4` (fixed-width subgroups of ≥ 8 lanes, layouts where every load can be a vec4):
 *   one workgroup is one subgroup computing a 16-row × (SG·4)-column tile; each lane keeps a 16×4
 *   block of C in registers. Per 4 values of k, lanes 0..7 each load two vec4s of A (16 rows × 4 k
 *   between them) and `subgroupBroadcast` hands every A value to every lane; each lane loads its own
 *   4 columns of B as four vec4s. 6 loads feed 256 multiply-adds per lane.
 * - `vec4` (no usable subgroups, same layouts): 8×8 threads, each a 4×4 block of C from vec4 loads.
 * - `subgroup`, `tiled`: scalar kernels for any layout (dimensions that are not multiples of 4).
 *
 * Why vec4 loads and register blocks: on Mesa's lavapipe (the CPU Vulkan driver CI runs on), a
 * storage-buffer load whose address differs across lanes is a loop over the lanes, each lane one
 * scalar load with its own checks, while all components of a vecN load share one lane iteration;
 * the multiply-adds themselves run 8 lanes wide. Loads, not arithmetic, set the speed there, so
 * the kernels load as vec4s and reuse each loaded value in as many multiply-adds as registers
 * allow. On GPUs the same shapes are the usual ones: vec4 (16-byte) coalesced loads, a register
 * block per thread, and subgroup broadcasts instead of a workgroup-memory round trip with barriers.
 */
import { bindings, PRELUDE } from './wgsl.js';

/** Which matmul kernel runs (see the module comment). */
export type MatmulKernel = 'subgroup-vec4' | 'vec4' | 'subgroup' | 'tiled';

/** Sizes of one product: C is [batch, M, N]; K the inner dimension. */
export interface MatmulDims {
  /** Rows of C. */
  M: number;
  /** Columns of C. */
  N: number;
  /** Inner dimension. */
  K: number;
  /** A is stored [K, M] (transposed) rather than [M, K]. */
  transA: boolean;
  /** B is stored [N, K] (transposed) rather than [K, N]. */
  transB: boolean;
}

/**
 * What the kernel does with each element of the product before storing it: nothing, · +
 * bias[col], relu(· + bias[col]), or that and a column sum of the workgroup's rows into
 * `PART[workgroup row, col]` (NaN if any summed value is NaN; rows past M add nothing).
 * `reluGradColsum` reads C first: C ← (· + bias[col]) where the old C > 0 (not NaN), else 0 —
 * the ReLU's backward written over f, each element read and written by one thread — with the
 * column sums (BIAS is then the row added to every row).
 */
export type MatmulEpilogue = 'none' | 'bias' | 'biasRelu' | 'biasReluColsum' | 'reluGradColsum';

/** Whether an epilogue writes column sums into PART. */
const hasColsum = (epilogue: MatmulEpilogue) =>
  epilogue === 'biasReluColsum' || epilogue === 'reluGradColsum';

/** A compiled-to-be program: its WGSL and the workgroups to dispatch for `batch` products. */
export interface MatmulProgram {
  /** The kernel chosen. */
  kernel: MatmulKernel;
  /**
   * WGSL source (bindings A, B[, BIAS], C[, PART], then the u32 parameters). With the
   * `biasReluColsum` epilogue, PART holds `groups[1]` partial rows of N column sums.
   */
  code: string;
  /** Workgroups in x, y, z. */
  groups: [number, number, number];
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * Whether every load can be a vec4: the contiguous axis of A and of B, and K (the kernels step
 * k by 4), must be multiples of 4. Batch strides M·K and K·N then are too.
 */
export function vec4Layout(d: MatmulDims): boolean {
  return d.K % 4 === 0 && (!d.transA || d.M % 4 === 0) && (d.transB || d.N % 4 === 0);
}

/** The kernel a product runs on, given the device's fixed subgroup width (0: none). */
export function matmulKernelFor(d: MatmulDims, subgroupSize: number): MatmulKernel {
  const sg = subgroupSize >= 8;
  if (vec4Layout(d)) return sg ? 'subgroup-vec4' : 'vec4';
  return subgroupSize ? 'subgroup' : 'tiled';
}

// Parameters (prm): M, N, K, transA, transB, batch stride of A, batch stride of B (0: broadcast).
const PARAMS =
  'let M = prm[0]; let N = prm[1]; let K = prm[2]; let ta = prm[3]; let tb = prm[4]; let sA = prm[5]; let sB = prm[6];';

const matmulBindings = (epilogue: MatmulEpilogue, t: 'f32' | 'vec4f') =>
  bindings(
    epilogue === 'none'
      ? [
          ['A', t],
          ['B', t],
        ]
      : [
          ['A', t],
          ['B', t],
          ['BIAS', 'f32'],
        ],
    hasColsum(epilogue)
      ? [
          ['C', 'f32'],
          ['PART', 'f32'],
        ]
      : [['C', 'f32']],
  );

/**
 * The store of one element (`row`, `col`, `z` in scope), with the optional epilogue. With the
 * column sum, the stored value is added to `s{sum}` and its NaN noted in `n{sum}` (WGSL lets
 * compilers assume finite math, so NaN is tracked from the bits rather than trusted to the adds).
 */
const storeC = (epilogue: MatmulEpilogue, acc: string, sum = '') => {
  const at = 'z * M * N + row * N + col';
  if (epilogue === 'none') return `C[${at}] = ${acc};`;
  const y =
    epilogue === 'bias'
      ? `let y = ${acc} + BIAS[col];`
      : epilogue === 'reluGradColsum'
        ? `let fo = C[${at}]; let y = select(0.0, ${acc} + BIAS[col], fo > 0.0 && !isnan_(fo));`
        : `let v = ${acc} + BIAS[col]; let y = select(max(v, 0.0), v, isnan_(v));`;
  const store = `${y} C[${at}] = y;`;
  return hasColsum(epilogue) ? `${store} s${sum} = s${sum} + y; n${sum} = n${sum} || isnan_(y);` : store;
};

/** Column-sum registers s{c} / NaN flags n{c} of the `biasReluColsum` epilogue, for `cols` columns. */
const colsumVars = (epilogue: MatmulEpilogue, cols: number) =>
  hasColsum(epilogue)
    ? range(cols)
        .map((c) => `var s${c} = 0.0; var n${c} = false;`)
        .join(' ')
    : '';

/** A partial sum with its NaN flag folded in. */
const partial = (c: number | string) => `select(s${c}, nan_(), n${c})`;

/** Guarded stores of a rows × (4·quads) register block c{r}_{q} (vec4s) at row0, col0. */
const storeBlock = (epilogue: MatmulEpilogue, rows: number, quads: number) =>
  range(rows)
    .flatMap((r) =>
      range(4 * quads).map(
        (c) =>
          `{ let row = row0 + ${r}u; let col = col0 + ${c}u; if (row < M && col < N) { ${storeC(epilogue, `c${r}_${c >> 2}[${c & 3}]`, `${c}`)} } }`,
      ),
    )
    .join('\n  ');

/** WGSL helpers an epilogue needs (the NaN-aware adds of the column sums). */
const colsumHelpers = (epilogue: MatmulEpilogue) => (hasColsum(epilogue) ? ADD_NAN : '');

/** Adds NaN-aware: NaN if either side is (see {@link storeC}); vec4 or scalar. */
const ADD_NAN = /* wgsl */ `
fn addNan(a: f32, b: f32) -> f32 { return select(a + b, nan_(), isnan_(a) || isnan_(b)); }
fn addNan4(a: vec4f, b: vec4f) -> vec4f {
  let bad = ((bitcast<vec4u>(a) & vec4u(0x7fffffffu)) > vec4u(0x7f800000u)) | ((bitcast<vec4u>(b) & vec4u(0x7fffffffu)) > vec4u(0x7f800000u));
  return select(a + b, vec4f(nan_()), bad);
}`;

/**
 * Loads of B for one step of 4 k (k4 = 4·g): b{q}_{j} is the vec4 of columns col0 + 4q.. at
 * k4 + j. Untransposed B ([K, N]) gives them directly; transposed B ([N, K]) gives, per column, a
 * vec4 along k, and the 4×4 block is transposed in registers.
 */
const loadB = (transB: boolean, quads: number): string[] => {
  if (!transB)
    return range(4).flatMap((j) =>
      range(quads).map((q) => `let b${q}_${j} = B[bBase + (k4 + ${j}u) * Nq + bq${q}];`),
    );
  const lines = range(4 * quads).map((c) => `let bt${c} = B[bBase + bc${c} + g];`);
  for (const j of range(4))
    for (const q of range(quads))
      lines.push(
        `let b${q}_${j} = vec4f(${range(4)
          .map((i) => `bt${4 * q + i}[${j}]`)
          .join(', ')});`,
      );
  return lines;
};

/** Column indices of B for the lane's 4·quads columns from col0 (clamped: the stores are guarded). */
const bIndices = (transB: boolean, quads: number) =>
  transB
    ? range(4 * quads)
        .map((c) => `let bc${c} = min(col0 + ${c}u, N - 1u) * Kq;`)
        .join(' ')
    : range(quads)
        .map((q) => `let bq${q} = min(col0 / 4u + ${q}u, Nq - 1u);`)
        .join(' ');

const accumulators = (rows: number, quads: number) =>
  range(rows)
    .flatMap((r) => range(quads).map((q) => `var c${r}_${q} = vec4f(0.0);`))
    .join(' ');

/** Rows (of 8) each subgroup lane loads A for: 16 rows per subgroup. */
const SG_ROW_BLOCKS = 2;
const SG_ROWS = 8 * SG_ROW_BLOCKS;

function subgroupVec4Shader(d: MatmulDims, epilogue: MatmulEpilogue, SG: number): string {
  const H = SG_ROW_BLOCKS;
  const R = SG_ROWS;
  const body: string[] = [];
  // Lane l8 = lane % 8 loads, per 8-row block h: untransposed A, row 8h + l8 at k4..k4+3;
  // transposed A ([K, M]), k4 + l8/2 at rows 8h + 4·(l8 % 2)..+3. Lanes ≥ 8 repeat lanes 0..7.
  for (const h of range(H))
    body.push(
      d.transA ? `let av${h} = A[aBase + (k4 + aj) * Mq + aq${h}];` : `let av${h} = A[aBase + ar${h} + g];`,
    );
  body.push(...loadB(d.transB, 1));
  for (const j of range(4))
    for (const r of range(R)) {
      const rr = r % 8;
      const h = r >> 3;
      const [lane, comp] = d.transA ? [2 * j + (rr >> 2), rr % 4] : [rr, j];
      body.push(
        `{ let a = vec4f(subgroupBroadcast(av${h}[${comp}], ${lane}u)); c${r}_0 = fma(a, b0_${j}, c${r}_0); }`,
      );
    }
  const aIdx = d.transA
    ? `let aj = l8 / 2u; ${range(H)
        .map((h) => `let aq${h} = min(row0 / 4u + ${2 * h}u + l8 % 2u, Mq - 1u);`)
        .join(' ')}`
    : range(H)
        .map((h) => `let ar${h} = min(row0 + ${8 * h}u + l8, M - 1u) * Kq;`)
        .join(' ');
  return `enable subgroups;
${PRELUDE}${colsumHelpers(epilogue)}
${matmulBindings(epilogue, 'vec4f')}
@compute @workgroup_size(${SG})
fn main(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3u) {
  ${PARAMS}
  let z = wid.z; let Kq = K / 4u; let Mq = M / 4u; let Nq = N / 4u;
  let row0 = wid.y * ${R}u; let col0 = (wid.x * ${SG}u + lane) * 4u;
  let aBase = z * (sA / 4u); let bBase = z * (sB / 4u);
  let l8 = lane % 8u;
  ${aIdx}
  ${bIndices(d.transB, 1)}
  ${accumulators(R, 1)}
  for (var g = 0u; g < Kq; g++) {
    let k4 = g * 4u;
    ${body.join('\n    ')}
  }
  ${colsumVars(epilogue, 4)}
  ${storeBlock(epilogue, R, 1)}
  ${
    // Each lane owns its 4 columns over the workgroup's R rows: its sums are the partial row.
    hasColsum(epilogue)
      ? range(4)
          .map((c) => `{ let col = col0 + ${c}u; if (col < N) { PART[wid.y * N + col] = ${partial(c)}; } }`)
          .join(' ')
      : ''
  }
}`;
}

/** Threads per workgroup (x, y) and the rows × columns each thread keeps, of the `vec4` kernel. */
const V4 = { WX: 8, WY: 8, TM: 4 } as const;

function vec4Shader(d: MatmulDims, epilogue: MatmulEpilogue): string {
  const { WX, WY, TM } = V4;
  const body: string[] = [];
  // a(r, j): A at row row0 + r, k4 + j. Untransposed: one vec4 along k per row; transposed: one
  // vec4 along rows per k.
  if (!d.transA) body.push(...range(TM).map((r) => `let a${r} = A[aBase + ar${r} + g];`));
  else
    body.push(
      ...range(4).flatMap((j) =>
        range(TM / 4).map((q) => `let a${q}_${j} = A[aBase + (k4 + ${j}u) * Mq + aq${q}];`),
      ),
    );
  const aj = (r: number, j: number) => (d.transA ? `a${r >> 2}_${j}[${r % 4}]` : `a${r}[${j}]`);
  body.push(...loadB(d.transB, 1));
  for (const j of range(4))
    for (const r of range(TM)) body.push(`c${r}_0 = fma(vec4f(${aj(r, j)}), b0_${j}, c${r}_0);`);
  const aIdx = d.transA
    ? range(TM / 4)
        .map((q) => `let aq${q} = min(row0 / 4u + ${q}u, Mq - 1u);`)
        .join(' ')
    : range(TM)
        .map((r) => `let ar${r} = min(row0 + ${r}u, M - 1u) * Kq;`)
        .join(' ');
  // The WY threads of a column quad each hold TM rows' sums: added in workgroup memory, in order.
  const colsum = hasColsum(epilogue);
  return `${PRELUDE}${colsumHelpers(epilogue)}
${matmulBindings(epilogue, 'vec4f')}
${colsum ? `var<workgroup> red: array<vec4f, ${WX * WY}>;` : ''}
@compute @workgroup_size(${WX}, ${WY})
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  ${PARAMS}
  let z = wid.z; let Kq = K / 4u; let Mq = M / 4u; let Nq = N / 4u;
  let row0 = (wid.y * ${WY}u + lid.y) * ${TM}u; let col0 = (wid.x * ${WX}u + lid.x) * 4u;
  let aBase = z * (sA / 4u); let bBase = z * (sB / 4u);
  ${aIdx}
  ${bIndices(d.transB, 1)}
  ${accumulators(TM, 1)}
  for (var g = 0u; g < Kq; g++) {
    let k4 = g * 4u;
    ${body.join('\n    ')}
  }
  ${colsumVars(epilogue, 4)}
  ${storeBlock(epilogue, TM, 1)}
  ${
    colsum
      ? `red[lid.y * ${WX}u + lid.x] = vec4f(${range(4).map(partial).join(', ')});
  workgroupBarrier();
  if (lid.y == 0u) {
    var t = red[lid.x];
    for (var yy = 1u; yy < ${WY}u; yy++) { t = addNan4(t, red[yy * ${WX}u + lid.x]); }
    ${range(4)
      .map((c) => `{ let col = col0 + ${c}u; if (col < N) { PART[wid.y * N + col] = t[${c}]; } }`)
      .join(' ')}
  }`
      : ''
  }
}`;
}

// Scalar kernels for any layout: a 16×16 tiled product in workgroup memory, and a subgroup one.
function tiledShader(epilogue: MatmulEpilogue): string {
  return `${PRELUDE}${colsumHelpers(epilogue)}
${matmulBindings(epilogue, 'f32')}
var<workgroup> As: array<array<f32, 16>, 16>;
var<workgroup> Bs: array<array<f32, 16>, 16>;
@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  ${PARAMS}
  let row = wid.y * 16u + lid.y; let col = wid.x * 16u + lid.x; let z = wid.z;
  var acc = 0.0;
  let tiles = (K + 15u) / 16u;
  for (var t = 0u; t < tiles; t++) {
    let ka = t * 16u + lid.x;
    if (row < M && ka < K) { As[lid.y][lid.x] = A[z * sA + select(row * K + ka, ka * M + row, ta == 1u)]; } else { As[lid.y][lid.x] = 0.0; }
    let kb = t * 16u + lid.y;
    if (kb < K && col < N) { Bs[lid.y][lid.x] = B[z * sB + select(kb * N + col, col * K + kb, tb == 1u)]; } else { Bs[lid.y][lid.x] = 0.0; }
    workgroupBarrier();
    for (var k = 0u; k < 16u; k++) { acc = acc + As[lid.y][k] * Bs[k][lid.x]; }
    workgroupBarrier();
  }
  ${colsumVars(epilogue, 1)}
  if (row < M && col < N) {
    ${storeC(epilogue, 'acc', '0')}
  }
  ${
    // The 16 rows of a column, through As (free again after the last barrier), added in order.
    hasColsum(epilogue)
      ? `As[lid.y][lid.x] = ${partial(0)};
  workgroupBarrier();
  if (lid.y == 0u && col < N) {
    var t = As[0][lid.x];
    for (var yy = 1u; yy < 16u; yy++) { t = addNan(t, As[yy][lid.x]); }
    PART[wid.y * N + col] = t;
  }`
      : ''
  }
}`;
}

/**
 * The scalar subgroup product: a workgroup is one subgroup of SG lanes computing an 8 × SG tile
 * of C; lane l owns column l. For each chunk of SG values of k, lane l loads A[r, k0 + l] for the
 * tile's 8 rows, and `subgroupShuffle` hands every lane the A value of each k in turn.
 */
function subgroupShader(epilogue: MatmulEpilogue, SG: number): string {
  return `enable subgroups;
${PRELUDE}${colsumHelpers(epilogue)}
${matmulBindings(epilogue, 'f32')}
const SG = ${SG}u;
const R = 8u;
@compute @workgroup_size(${SG})
fn main(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3u) {
  ${PARAMS}
  let col = wid.x * SG + lane; let row0 = wid.y * R; let z = wid.z;
  var acc: array<f32, 8>;
  var a: array<f32, 8>;
  for (var k0 = 0u; k0 < K; k0 += SG) {
    let ka = k0 + lane;
    for (var r = 0u; r < R; r++) {
      let row = row0 + r;
      var v = 0.0;
      if (row < M && ka < K) { v = A[z * sA + select(row * K + ka, ka * M + row, ta == 1u)]; }
      a[r] = v;
    }
    for (var j = 0u; j < SG; j++) {
      let kb = k0 + j;
      var b = 0.0;
      if (kb < K && col < N) { b = B[z * sB + select(kb * N + col, col * K + kb, tb == 1u)]; }
      for (var r = 0u; r < R; r++) { acc[r] = acc[r] + subgroupShuffle(a[r], j) * b; }
    }
  }
  ${colsumVars(epilogue, 1)}
  for (var r = 0u; r < R; r++) {
    let row = row0 + r;
    if (row < M && col < N) {
      ${storeC(epilogue, 'acc[r]', '0')}
    }
  }
  ${hasColsum(epilogue) ? `if (col < N) { PART[wid.y * N + col] = ${partial(0)}; }` : ''}
}`;
}

/**
 * The program for one product (`batch` of them on z): which kernel, its WGSL, and the
 * workgroups. `subgroupSize` is the device's fixed subgroup width (0: none); `epilogue` adds
 * C = relu(C + bias[col]), and with `biasReluColsum` (batch 1 only) writes `groups[1]` partial
 * rows of column sums (see {@link MatmulEpilogue}). Parameters to pass: M, N, K, transA, transB,
 * batch strides of A and B.
 */
export function matmulProgram(
  d: MatmulDims,
  batch: number,
  subgroupSize: number,
  epilogue: MatmulEpilogue,
  kernel: MatmulKernel = matmulKernelFor(d, subgroupSize),
): MatmulProgram {
  const { M, N } = d;
  const SG = subgroupSize;
  switch (kernel) {
    case 'subgroup-vec4':
      return {
        kernel,
        code: subgroupVec4Shader(d, epilogue, SG),
        groups: [Math.ceil(N / (SG * 4)), Math.ceil(M / SG_ROWS), batch],
      };
    case 'vec4':
      return {
        kernel,
        code: vec4Shader(d, epilogue),
        groups: [Math.ceil(N / (V4.WX * 4)), Math.ceil(M / (V4.WY * V4.TM)), batch],
      };
    case 'subgroup':
      return {
        kernel,
        code: subgroupShader(epilogue, SG),
        groups: [Math.ceil(N / SG), Math.ceil(M / 8), batch],
      };
    default:
      return { kernel, code: tiledShader(epilogue), groups: [Math.ceil(N / 16), Math.ceil(M / 16), batch] };
  }
}
