// Top-k per row, and the fused TopK encoder's selection: one block per row makes k sweeps; each
// sweep every thread finds its best element ranked after the previous pick, then warp shuffles
// and one pass over the warps' partials pick the block's best. With a bias, each element is
// relu(x + bias[c]) on the fly: the encoder's epilogue and the selection in one read of the row.
#include "common.cuh"

__device__ __forceinline__ void better(float &bv, int &bi, float ov, int oi) {
  if (oi >= 0 && (bi < 0 || ranks_before(ov, oi, bv, bi))) {
    bv = ov;
    bi = oi;
  }
}

extern "C" __global__ void topk_rows(const float *x, const float *bias, float *vals, int *idxs, unsigned rows,
                                     unsigned n, unsigned k) {
  __shared__ float sv[32];
  __shared__ int si[32];
  __shared__ float pickV;
  __shared__ int pickI;
  unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (unsigned r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *row = x + (size_t)r * n;
    float pv = 0.f;
    int pi = -1;
    for (unsigned j = 0; j < k; ++j) {
      float bv = 0.f;
      int bi = -1;
      for (unsigned c = threadIdx.x; c < n; c += blockDim.x) {
        float v = row[c];
        if (bias) v = relu_nan(v + bias[c]);
        if (pi >= 0 && !ranks_before(pv, pi, v, (int)c)) continue;
        better(bv, bi, v, (int)c);
      }
      for (int off = 16; off > 0; off >>= 1) {
        float ov = __shfl_down_sync(FULL_MASK, bv, off);
        int oi = __shfl_down_sync(FULL_MASK, bi, off);
        better(bv, bi, ov, oi);
      }
      if (lane == 0) { sv[warp] = bv; si[warp] = bi; }
      __syncthreads();
      if (warp == 0) {
        bv = lane < warps ? sv[lane] : 0.f;
        bi = lane < warps ? si[lane] : -1;
        for (int off = 16; off > 0; off >>= 1) {
          float ov = __shfl_down_sync(FULL_MASK, bv, off);
          int oi = __shfl_down_sync(FULL_MASK, bi, off);
          better(bv, bi, ov, oi);
        }
        if (lane == 0) {
          vals[(size_t)r * k + j] = bv;
          idxs[(size_t)r * k + j] = bi;
          pickV = bv;
          pickI = bi;
        }
      }
      __syncthreads();
      pv = pickV;
      pi = pickI;
    }
    __syncthreads();
  }
}
