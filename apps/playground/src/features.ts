/**
 * What the feature view shows, computed on the host (the page's dictionaries are small): each
 * learned decoder row matched to its nearest true feature, firing frequencies, and the samples
 * that activate a feature most.
 */

/** A learned feature and the true feature nearest to it. */
export interface FeatureMatch {
  /** Learned feature (decoder row) index. */
  learned: number;
  /** Index of the true feature with the largest cosine (-1 without ground truth). */
  truth: number;
  /** That cosine, in [-1, 1] (NaN without ground truth). */
  cos: number;
}

function rowNorms(m: Float32Array, rows: number, d: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += m[r * d + k] ** 2;
    out[r] = Math.sqrt(s);
  }
  return out;
}

/**
 * For each learned row [F, d], the true feature [G, d] with the largest cosine, sorted by that
 * cosine, largest first (ties by learned index). A zero row has cosine 0 to everything.
 */
export function matchFeatures(learned: Float32Array, truth: Float32Array, d: number): FeatureMatch[] {
  const F = learned.length / d;
  const G = truth.length / d;
  const ln = rowNorms(learned, F, d);
  const tn = rowNorms(truth, G, d);
  const out: FeatureMatch[] = [];
  for (let j = 0; j < F; j++) {
    let best = -1;
    let bestCos = -Infinity;
    for (let g = 0; g < G; g++) {
      let dot = 0;
      for (let k = 0; k < d; k++) dot += learned[j * d + k] * truth[g * d + k];
      const denom = ln[j] * tn[g];
      const c = denom > 1e-12 ? dot / denom : 0;
      if (c > bestCos) {
        bestCos = c;
        best = g;
      }
    }
    out.push({ learned: j, truth: best, cos: Math.max(-1, Math.min(1, bestCos)) });
  }
  return out.sort((a, b) => b.cos - a.cos || a.learned - b.learned);
}

/** Per feature of codes [N, F]: the fraction of the N samples on which it is non-zero. */
export function firingFrequency(codes: Float32Array, n: number, F: number): Float64Array {
  const out = new Float64Array(F);
  for (let i = 0; i < n; i++) for (let j = 0; j < F; j++) if (codes[i * F + j] !== 0) out[j]++;
  for (let j = 0; j < F; j++) out[j] /= n;
  return out;
}

/** A sample and a feature's activation on it. */
export interface TopSample {
  /** Sample index within the evaluated batch. */
  sample: number;
  /** The feature's activation. */
  activation: number;
}

/** The `count` samples of codes [N, F] with the largest activation of feature j (non-zero only). */
export function topSamples(codes: Float32Array, n: number, F: number, j: number, count: number): TopSample[] {
  const all: TopSample[] = [];
  for (let i = 0; i < n; i++) {
    const a = codes[i * F + j];
    if (a !== 0) all.push({ sample: i, activation: a });
  }
  return all.sort((a, b) => b.activation - a.activation || a.sample - b.sample).slice(0, count);
}

/** Row r of a row-major [rows, d] matrix, scaled to unit norm (a zero row stays zero). */
export function unitRow(m: Float32Array, r: number, d: number): number[] {
  const row = Array.from(m.subarray(r * d, (r + 1) * d));
  const norm = Math.sqrt(row.reduce((s, v) => s + v * v, 0));
  return norm > 1e-12 ? row.map((v) => v / norm) : row;
}
