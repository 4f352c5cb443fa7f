// Reductions (sum / max / min over any axes, float32 and int32), argmax, and the row-wise
// kernels of the optimizers (normalizeRows, ConstrainedAdam's projection) and clipByGlobalNorm.
// Large reductions give each output one block: threads stride over its elements, then warp
// shuffles and one pass over the warps' partials. Small ones give each output one thread.
#include "common.cuh"

enum { R_SUM, R_MAX, R_MIN };

template <typename T> struct Lim;
template <> struct Lim<float> {
  __device__ static float init(int k) { return k == R_SUM ? 0.f : k == R_MAX ? -INFINITY : INFINITY; }
  __device__ static bool isnan_(float v) { return isnan(v); }
  __device__ static float nan_() { return nanf_(); }
};
template <> struct Lim<int> {
  __device__ static int init(int k) { return k == R_SUM ? 0 : k == R_MAX ? (int)0x80000000 : 0x7fffffff; }
  __device__ static bool isnan_(int) { return false; }
  __device__ static int nan_() { return 0; }
};

// NaN-propagating combine (fmaxf would drop a NaN; the CPU's max keeps it).
template <typename T> __device__ __forceinline__ T combine(int kind, T a, T b) {
  if (kind == R_SUM) return a + b;
  if (Lim<T>::isnan_(a) || Lim<T>::isnan_(b)) return Lim<T>::nan_();
  return kind == R_MAX ? (a > b ? a : b) : (a < b ? a : b);
}

__device__ __forceinline__ unsigned kept_base(const ReduceMeta &m, unsigned o) {
  unsigned base = 0, rem = o;
  for (int ax = m.kr - 1; ax >= 0; --ax) {
    base += (rem % (unsigned)m.kd[ax]) * (unsigned)m.ks[ax];
    rem /= (unsigned)m.kd[ax];
  }
  return base;
}

__device__ __forceinline__ unsigned reduced_offset(const ReduceMeta &m, unsigned r) {
  unsigned off = 0, rem = r;
  for (int ax = m.rr - 1; ax >= 0; --ax) {
    off += (rem % (unsigned)m.rd[ax]) * (unsigned)m.rst[ax];
    rem /= (unsigned)m.rd[ax];
  }
  return off;
}

template <typename T> __device__ __forceinline__ T warp_combine(int kind, T v) {
  for (int off = 16; off > 0; off >>= 1) v = combine(kind, v, __shfl_down_sync(FULL_MASK, v, off));
  return v;
}

// One block (a multiple of 32 threads, at most 1024) per output element.
template <typename T> __device__ void reduce_block(const T *x, T *o, int kind, const ReduceMeta &m) {
  __shared__ T part[32];
  for (unsigned out = blockIdx.x; out < m.nOut; out += gridDim.x) {
    unsigned base = kept_base(m, out);
    T acc = Lim<T>::init(kind);
    for (unsigned r = threadIdx.x; r < m.rs; r += blockDim.x) acc = combine(kind, acc, x[base + reduced_offset(m, r)]);
    acc = warp_combine(kind, acc);
    unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    if (lane == 0) part[warp] = acc;
    __syncthreads();
    if (warp == 0) {
      acc = lane < warps ? part[lane] : Lim<T>::init(kind);
      acc = warp_combine(kind, acc);
      if (lane == 0) o[out] = acc;
    }
    __syncthreads();
  }
}

template <typename T> __device__ void reduce_thread(const T *x, T *o, int kind, const ReduceMeta &m) {
  FOR_EACH(out, m.nOut) {
    unsigned base = kept_base(m, out);
    T acc = Lim<T>::init(kind);
    for (unsigned r = 0; r < m.rs; ++r) acc = combine(kind, acc, x[base + reduced_offset(m, r)]);
    o[out] = acc;
  }
}

extern "C" __global__ void reduce_block_f32(const float *x, float *o, int kind, ReduceMeta m) { reduce_block<float>(x, o, kind, m); }
extern "C" __global__ void reduce_block_i32(const int *x, int *o, int kind, ReduceMeta m) { reduce_block<int>(x, o, kind, m); }
extern "C" __global__ void reduce_thread_f32(const float *x, float *o, int kind, ReduceMeta m) { reduce_thread<float>(x, o, kind, m); }
extern "C" __global__ void reduce_thread_i32(const int *x, int *o, int kind, ReduceMeta m) { reduce_thread<int>(x, o, kind, m); }

// Index of the first maximum along an axis of length n (inner = product of the later axes);
// a NaN wins at once, as in the CPU reference.
extern "C" __global__ void argmax_f32(const float *x, int *o, unsigned nOut, unsigned n, unsigned inner) {
  FOR_EACH(i, nOut) {
    unsigned base = (i / inner) * n * inner + (i % inner);
    unsigned best = 0;
    float bv = x[base];
    if (!isnan(bv)) {
      for (unsigned r = 1; r < n; ++r) {
        float v = x[base + r * inner];
        if (isnan(v)) { best = r; break; }
        if (v > bv) { bv = v; best = r; }
      }
    }
    o[i] = (int)best;
  }
}

// Block sum of one value per thread (every thread gets the total).
__device__ float block_sum(float v) {
  __shared__ float part[32];
  __shared__ float total;
  v = warp_combine(R_SUM, v);
  unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? part[lane] : 0.f;
    v = warp_combine(R_SUM, v);
    if (lane == 0) total = v;
  }
  __syncthreads();
  float t = total;
  __syncthreads();
  return t;
}

// Rows to unit L2 norm: w / (||w|| + 1e-12), one block per row.
extern "C" __global__ void normalize_rows(const float *w, float *o, unsigned rows, unsigned cols) {
  for (unsigned r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *row = w + (size_t)r * cols;
    float ss = 0.f;
    for (unsigned j = threadIdx.x; j < cols; j += blockDim.x) ss += row[j] * row[j];
    float inv = 1.f / (sqrtf(block_sum(ss)) + 1e-12f);
    for (unsigned j = threadIdx.x; j < cols; j += blockDim.x) o[(size_t)r * cols + j] = row[j] * inv;
  }
}

// ConstrainedAdam's projection: g - (g.w / (||w|| + 1e-12)^2) w per row, one block per row.
extern "C" __global__ void remove_parallel(const float *w, const float *g, float *o, unsigned rows, unsigned cols) {
  for (unsigned r = blockIdx.x; r < rows; r += gridDim.x) {
    size_t b = (size_t)r * cols;
    float ss = 0.f, dot = 0.f;
    for (unsigned j = threadIdx.x; j < cols; j += blockDim.x) {
      ss += w[b + j] * w[b + j];
      dot += g[b + j] * w[b + j];
    }
    ss = block_sum(ss);
    dot = block_sum(dot);
    float norm = sqrtf(ss) + 1e-12f;
    float coef = dot / (norm * norm);
    for (unsigned j = threadIdx.x; j < cols; j += blockDim.x) o[b + j] = g[b + j] - coef * w[b + j];
  }
}

// clipByGlobalNorm, pass 1: adds sum(x^2) of one tensor into acc[0] (one atomic per block).
extern "C" __global__ void sumsq_accum(const float *x, unsigned n, float *acc) {
  float s = 0.f;
  FOR_EACH(i, n) s += x[i] * x[i];
  s = block_sum(s);
  if (threadIdx.x == 0) atomicAdd(acc, s);
}

// Pass 2: o = x * min(maxNorm / (norm + 1e-6), 1), norm = sqrt(acc[0]) (a NaN norm gives NaN).
extern "C" __global__ void clip_scale(const float *x, float *o, unsigned n, const float *acc, float maxNorm) {
  float norm = sqrtf(acc[0]);
  float coef = maxNorm / (norm + 1e-6f);
  float capped = isnan(coef) ? coef : fminf(coef, 1.f);
  FOR_EACH(i, n) o[i] = x[i] * capped;
}

extern "C" __global__ void clip_norm_out(const float *acc, float *o) {
  if (blockIdx.x == 0 && threadIdx.x == 0) o[0] = sqrtf(acc[0]);
}

// One Adam step (torch.optim.Adam's arithmetic, as the CPU backend): m, v updated, then
// p - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps).
extern "C" __global__ void adam_update(const float *p, const float *g, const float *m, const float *v, float *p2,
                                       float *m2, float *v2, unsigned n, float b1, float b2, float stepSize,
                                       float sqrtBc2, float eps) {
  FOR_EACH(i, n) {
    float gi = g[i];
    float mi = b1 * m[i] + (1.f - b1) * gi;
    float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m2[i] = mi;
    v2[i] = vi;
    p2[i] = p[i] - (stepSize * mi) / (sqrtf(vi) / sqrtBc2 + eps);
  }
}
