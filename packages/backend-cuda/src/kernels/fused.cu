// The ReLU encoder's fused passes with column sums (the Standard SAE's step), after the cuBLAS
// product: linearBiasReluSum's bias + ReLU in place with Σ_b f, and reluGradRowSum's
// dPre = (dF + row)·[f > 0] with Σ_b dPre. The values are the CPU kernels' (backend-cpu
// kernels/fused.ts), float32 op for float32 op; the column sums are deterministic: no atomics,
// every sum in an order fixed by the shapes alone, so a run reproduces bit for bit.
//
// Layout: a block is COL_TILE columns × ROW_THREADS rows of threads; a warp reads 32 consecutive
// columns of one row (coalesced), and block (x, y) covers its column tile over the rows of chunk
// y (rowsPerChunk rows, the host's choice, launch.ts colsumGrid). The reduction runs down the
// rows, across warps, so it is not a shuffle: each thread sums its rows in order, the block adds
// its ROW_THREADS partials in order through shared memory and writes one partial per chunk and
// column, and colsum_finish adds a column's chunk partials in chunk order. Sums are float64 (as
// the CPU's) and rounded to float32 once, at the end.
#include "common.cuh"

#define COL_TILE 32
#define ROW_THREADS 8

// Adds this block's ROW_THREADS per-thread sums (in threadIdx.y order) and stores the chunk's
// partial for column c.
__device__ __forceinline__ void store_chunk_partial(double acc, double *partials, unsigned c, unsigned F) {
  __shared__ double part[ROW_THREADS][COL_TILE];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < F) {
    double s = 0.0;
    for (int j = 0; j < ROW_THREADS; ++j) s += part[j][threadIdx.x];
    partials[(size_t)blockIdx.y * F + c] = s;
  }
}

// f [B, F] holds x·op(W) from cuBLAS; in place f ← relu(f + bias) as the CPU's linearBiasRelu
// kernel writes it (−∞ gives 0, NaN stays NaN, a negative value −0), and partials[chunk, c] the
// chunk's column sums.
extern "C" __global__ void bias_relu_colsum(float *f, const float *bias, double *partials, unsigned B,
                                            unsigned F, unsigned rowsPerChunk) {
  unsigned c = blockIdx.x * COL_TILE + threadIdx.x;
  unsigned r0 = blockIdx.y * rowsPerChunk;
  unsigned r1 = min(r0 + rowsPerChunk, B);
  double acc = 0.0;
  if (c < F) {
    float b = bias[c];
    for (unsigned r = r0 + threadIdx.y; r < r1; r += ROW_THREADS) {
      size_t i = (size_t)r * F + c;
      float v = __fadd_rn(f[i], b);
      v = v == -INFINITY ? 0.f : v * (v > 0.f ? 1.f : 0.f);
      f[i] = v;
      acc += (double)v;
    }
  }
  store_chunk_partial(acc, partials, c, F);
}

// dPre = (dF + row[c])·[f > 0] (the sum rounded to float32 first, as the add kernel stores it; a
// NaN f masks like any f ≤ 0, a NaN or infinite dF + row where f ≤ 0 gives NaN, as the CPU's
// multiply does), and partials[chunk, c] the chunk's column sums of dPre.
extern "C" __global__ void relu_grad_row_colsum(const float *dF, const float *row, const float *f, float *dPre,
                                                double *partials, unsigned B, unsigned F, unsigned rowsPerChunk) {
  unsigned c = blockIdx.x * COL_TILE + threadIdx.x;
  unsigned r0 = blockIdx.y * rowsPerChunk;
  unsigned r1 = min(r0 + rowsPerChunk, B);
  double acc = 0.0;
  if (c < F) {
    float rc = row[c];
    for (unsigned r = r0 + threadIdx.y; r < r1; r += ROW_THREADS) {
      size_t i = (size_t)r * F + c;
      float v = __fmul_rn(__fadd_rn(dF[i], rc), f[i] > 0.f ? 1.f : 0.f);
      dPre[i] = v;
      acc += (double)v;
    }
  }
  store_chunk_partial(acc, partials, c, F);
}

// out[c] = Σ over chunks, in chunk order, of partials[chunk, c], rounded to float32 (0 when there
// are no chunks).
extern "C" __global__ void colsum_finish(const double *partials, float *out, unsigned chunks, unsigned F) {
  FOR_EACH(c, F) {
    double s = 0.0;
    for (unsigned j = 0; j < chunks; ++j) s += partials[(size_t)j * F + c];
    out[c] = (float)s;
  }
}
