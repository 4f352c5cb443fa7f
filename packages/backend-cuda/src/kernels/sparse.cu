// Sparse codes: decode (sum of k weighted dictionary rows per input row), and its gradients
// sparseDot (y[row] . W[index] per entry) and sparseOuter (values * y[row] added into W's rows).
// Entries carry their row implicitly (entry e of a [B, k] code is in row e / k) or explicitly
// (`rows`, BatchTopK's layout, where a row holds any number of entries).
//
// Where entries add into shared output rows (sparseOuter: by feature; the batch layout's decode:
// by row) they are first grouped by that key with a stable counting sort, as the CPU does
// (group_count, group_chunk_offsets, exclusive_scan_u32, group_place), and each output row then
// sums its entries in entry order: no float atomics, the same bits on every run.
#include "common.cuh"

// counts[chunk, key] = entries of the chunk (`chunk` consecutive entries) with that key; keys
// outside [0, nKeys) are left out. Integer atomics: a count does not depend on the order.
extern "C" __global__ void group_count(const int *key, unsigned n, unsigned nKeys, unsigned chunk, unsigned *counts) {
  for (unsigned b = blockIdx.x; (size_t)b * chunk < n; b += gridDim.x) {
    unsigned e1 = min(b * chunk + chunk, n);
    for (unsigned e = b * chunk + threadIdx.x; e < e1; e += blockDim.x) {
      int q = key[e];
      if (q >= 0 && (unsigned)q < nKeys) atomicAdd(counts + (size_t)b * nKeys + q, 1u);
    }
  }
}

// Per key, over the chunks in order: counts[chunk, key] becomes the count in the chunks before it,
// and start[key] the key's total (exclusive_scan_u32 turns the totals into offsets).
extern "C" __global__ void group_chunk_offsets(unsigned *counts, unsigned chunks, unsigned nKeys, unsigned *start) {
  FOR_EACH(q, nKeys) {
    unsigned run = 0;
    for (unsigned b = 0; b < chunks; ++b) {
      size_t i = (size_t)b * nKeys + q;
      unsigned c = counts[i];
      counts[i] = run;
      run += c;
    }
    start[q] = run;
  }
}

// In place over v[0 .. n): exclusive prefix sums, and v[n] = the total. One block of
// GROUP_SCAN_THREADS: each thread a contiguous span, a scan of the spans' sums in shared memory.
#define GROUP_SCAN_THREADS 1024
extern "C" __global__ void exclusive_scan_u32(unsigned *v, unsigned n) {
  __shared__ unsigned part[GROUP_SCAN_THREADS];
  unsigned t = threadIdx.x;
  unsigned span = (n + GROUP_SCAN_THREADS - 1) / GROUP_SCAN_THREADS;
  unsigned lo = min(t * span, n), hi = min(lo + span, n);
  unsigned s = 0;
  for (unsigned i = lo; i < hi; ++i) s += v[i];
  part[t] = s;
  __syncthreads();
  for (unsigned off = 1; off < GROUP_SCAN_THREADS; off <<= 1) {
    unsigned add = t >= off ? part[t - off] : 0u;
    __syncthreads();
    part[t] += add;
    __syncthreads();
  }
  unsigned run = part[t] - s;
  for (unsigned i = lo; i < hi; ++i) {
    unsigned c = v[i];
    v[i] = run;
    run += c;
  }
  if (t == GROUP_SCAN_THREADS - 1) v[n] = part[t];
}

// order[start[key] + counts[chunk, key] + rank] = e, where rank counts the entries of the same key
// before e in its chunk (read from the chunk's keys in shared memory, `chunk` ints): the grouped
// order keeps entry order within each key.
extern "C" __global__ void group_place(const int *key, unsigned n, unsigned nKeys, unsigned chunk,
                                       const unsigned *counts, const unsigned *start, int *order) {
  extern __shared__ int keys[];
  for (unsigned b = blockIdx.x; (size_t)b * chunk < n; b += gridDim.x) {
    unsigned e0 = b * chunk, len = min(chunk, n - e0);
    __syncthreads();
    for (unsigned i = threadIdx.x; i < len; i += blockDim.x) keys[i] = key[e0 + i];
    __syncthreads();
    for (unsigned i = threadIdx.x; i < len; i += blockDim.x) {
      int q = keys[i];
      if (q < 0 || (unsigned)q >= nKeys) continue;
      unsigned rank = 0;
      for (unsigned j = 0; j < i; ++j) rank += keys[j] == q;
      order[start[q] + counts[(size_t)b * nKeys + q] + rank] = (int)(e0 + i);
    }
  }
}

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

// The batch layout, entries grouped by row: one block per output row sums its entries' value *
// W[index] in entry order, then adds the bias (the CPU's order).
extern "C" __global__ void sparse_decode_grouped(const float *vals, const int *idx, const float *W, const float *bias,
                                                 const int *order, const unsigned *start, float *o, unsigned B,
                                                 unsigned d, unsigned F) {
  for (unsigned r = blockIdx.x; r < B; r += gridDim.x) {
    unsigned p0 = start[r], p1 = start[r + 1];
    for (unsigned c = threadIdx.x; c < d; c += blockDim.x) {
      float acc = 0.f;
      for (unsigned p = p0; p < p1; ++p) {
        int e = order[p];
        int f = idx[e];
        if (f >= 0 && (unsigned)f < F) acc = fmaf(vals[e], W[(size_t)f * d + c], acc);
      }
      o[(size_t)r * d + c] = bias ? acc + bias[c] : acc;
    }
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

// o [F, d], entries grouped by feature: one block per feature sums its entries' value * y[row]
// in entry order (every row of o written, 0 for a feature without entries).
extern "C" __global__ void sparse_outer_grouped(const float *vals, const float *y, const int *rows, const int *order,
                                                const unsigned *start, float *o, unsigned B, unsigned d, unsigned F,
                                                unsigned k) {
  for (unsigned f = blockIdx.x; f < F; f += gridDim.x) {
    unsigned p0 = start[f], p1 = start[f + 1];
    for (unsigned c = threadIdx.x; c < d; c += blockDim.x) {
      float acc = 0.f;
      for (unsigned p = p0; p < p1; ++p) {
        int e = order[p];
        int r = rows ? rows[e] : (int)((unsigned)e / k);
        if (r >= 0 && (unsigned)r < B) acc = fmaf(vals[e], y[(size_t)r * d + c], acc);
      }
      o[(size_t)f * d + c] = acc;
    }
  }
}
