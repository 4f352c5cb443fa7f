// Sparse codes: decode (sum of k weighted dictionary rows per input row), and its gradients
// sparseDot (y[row] . W[index] per entry) and sparseOuter (values * y[row] added into W's rows).
// Entries carry their row implicitly (entry e of a [B, k] code is in row e / k) or explicitly
// (`rows`, BatchTopK's layout, where a row holds any number of entries).
#include "common.cuh"

// The per-row layout: one block per output row, threads across d (coalesced reads of W's rows).
extern "C" __global__ void sparse_decode_rows(const float *vals, const int *idx, const float *W, const float *bias,
                                              float *o, unsigned B, unsigned d, unsigned F, unsigned k) {
  for (unsigned r = blockIdx.x; r < B; r += gridDim.x) {
    for (unsigned c = threadIdx.x; c < d; c += blockDim.x) {
      float acc = 0.f;
      for (unsigned e = r * k; e < (r + 1) * k; ++e) {
        int f = idx[e];
        if (f >= 0 && (unsigned)f < F) acc += vals[e] * W[(size_t)f * d + c];
      }
      o[(size_t)r * d + c] = bias ? acc + bias[c] : acc;
    }
  }
}

// o [B, d] = bias broadcast (or 0): the start of the batch layout's decode.
extern "C" __global__ void fill_rows(const float *bias, float *o, unsigned n, unsigned d) {
  FOR_EACH(i, n) o[i] = bias ? bias[i % d] : 0.f;
}

// The batch layout: one block per entry adds value * W[index] into its row (atomics: the sum
// order over a row's entries varies from run to run, within float32 rounding).
extern "C" __global__ void sparse_decode_entries(const float *vals, const int *idx, const int *rows, const float *W,
                                                 float *o, unsigned nEntries, unsigned B, unsigned d, unsigned F) {
  for (unsigned e = blockIdx.x; e < nEntries; e += gridDim.x) {
    int f = idx[e], r = rows[e];
    if (f < 0 || (unsigned)f >= F || r < 0 || (unsigned)r >= B) continue;
    float v = vals[e];
    for (unsigned c = threadIdx.x; c < d; c += blockDim.x) atomicAdd(o + (size_t)r * d + c, v * W[(size_t)f * d + c]);
  }
}

// One warp per entry: y[row] . W[index], shuffled to lane 0.
extern "C" __global__ void sparse_dot(const float *y, const int *idx, const float *W, const int *rows, float *o,
                                      unsigned nEntries, unsigned B, unsigned d, unsigned F, unsigned k) {
  unsigned lane = threadIdx.x & 31;
  unsigned warpsPerBlock = blockDim.x >> 5;
  for (unsigned e = blockIdx.x * warpsPerBlock + (threadIdx.x >> 5); e < nEntries; e += gridDim.x * warpsPerBlock) {
    int f = idx[e];
    int r = rows ? rows[e] : (int)(e / k);
    float acc = 0.f;
    if (f >= 0 && (unsigned)f < F && r >= 0 && (unsigned)r < B)
      for (unsigned c = lane; c < d; c += 32) acc += y[(size_t)r * d + c] * W[(size_t)f * d + c];
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(FULL_MASK, acc, off);
    if (lane == 0) o[e] = acc;
  }
}

// Into a zeroed o [F, d]: one block per entry adds value * y[row] into row index (atomics).
extern "C" __global__ void sparse_outer(const float *vals, const int *idx, const float *y, const int *rows, float *o,
                                        unsigned nEntries, unsigned B, unsigned d, unsigned F, unsigned k) {
  for (unsigned e = blockIdx.x; e < nEntries; e += gridDim.x) {
    int f = idx[e];
    int r = rows ? rows[e] : (int)(e / k);
    if (f < 0 || (unsigned)f >= F || r < 0 || (unsigned)r >= B) continue;
    float v = vals[e];
    for (unsigned c = threadIdx.x; c < d; c += blockDim.x) atomicAdd(o + (size_t)f * d + c, v * y[(size_t)r * d + c]);
  }
}
