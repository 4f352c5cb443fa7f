// Layout and indexing kernels. They move 32-bit words, so one kernel serves float32 and int32.
// Out-of-range indices read 0 / are skipped (core checks indices before they reach a kernel).
#include "common.cuh"

// o[i] = x[base + offset of i]: transpose, slice and broadcastTo.
extern "C" __global__ void gather_strided(const unsigned *x, unsigned *o, Strided m) {
  FOR_EACH(i, m.n) o[i] = x[m.base + strided_offset(m, i, 0)];
}

// o[base + offset of i] = x[i]: one piece of a concat (strides are the output's).
extern "C" __global__ void scatter_strided(const unsigned *x, unsigned *o, Strided m) {
  FOR_EACH(i, m.n) o[m.base + strided_offset(m, i, 0)] = x[i];
}

extern "C" __global__ void pad32(const unsigned *x, unsigned *o, PadMeta m) {
  FOR_EACH(i, m.n) {
    unsigned rem = i, off = 0;
    bool inside = true;
    for (int ax = m.rank - 1; ax >= 0; --ax) {
      int c = (int)(rem % (unsigned)m.dims[ax]) - m.before[ax];
      rem /= (unsigned)m.dims[ax];
      if (c < 0 || c >= m.xdims[ax]) inside = false;
      else off += (unsigned)c * (unsigned)m.xs[ax];
    }
    o[i] = inside ? x[off] : 0u;
  }
}

// Rows of x [R, row] by index.
extern "C" __global__ void gather_rows(const unsigned *x, const int *idx, unsigned *o, unsigned n, unsigned row, unsigned R) {
  FOR_EACH(i, n) {
    int src = idx[i / row];
    o[i] = src < 0 || (unsigned)src >= R ? 0u : x[(size_t)src * row + i % row];
  }
}

// o (a copy of x) += updates[u] at row idx[u]: one thread per update element, atomics.
extern "C" __global__ void scatter_add_rows_f32(const int *idx, const float *upd, float *o, unsigned n, unsigned row, unsigned R) {
  FOR_EACH(i, n) {
    int dst = idx[i / row];
    if (dst >= 0 && (unsigned)dst < R) atomicAdd(o + (size_t)dst * row + i % row, upd[i]);
  }
}
extern "C" __global__ void scatter_add_rows_i32(const int *idx, const int *upd, int *o, unsigned n, unsigned row, unsigned R) {
  FOR_EACH(i, n) {
    int dst = idx[i / row];
    if (dst >= 0 && (unsigned)dst < R) atomicAdd(o + (size_t)dst * row + i % row, upd[i]);
  }
}

// o[r, j] = x[r, idx[j]] (the same columns for every row).
extern "C" __global__ void index_columns(const unsigned *x, const int *idx, unsigned *o, unsigned n, unsigned cols, unsigned k) {
  FOR_EACH(i, n) {
    int c = idx[i % k];
    o[i] = c < 0 || (unsigned)c >= cols ? 0u : x[(size_t)(i / k) * cols + c];
  }
}

// take_along_axis on the last axis: o[r, j] = x[r, idx[r, j]].
extern "C" __global__ void gather_last(const unsigned *x, const int *idx, unsigned *o, unsigned n, unsigned width, unsigned k) {
  FOR_EACH(i, n) {
    int c = idx[i];
    o[i] = c < 0 || (unsigned)c >= width ? 0u : x[(size_t)(i / k) * width + c];
  }
}

// The inverse of gather_last into a zeroed o [rows, width]: o[r, idx[r, j]] += v[r, j].
extern "C" __global__ void scatter_last_f32(const int *idx, const float *v, float *o, unsigned n, unsigned width, unsigned k) {
  FOR_EACH(i, n) {
    int c = idx[i];
    if (c >= 0 && (unsigned)c < width) atomicAdd(o + (size_t)(i / k) * width + c, v[i]);
  }
}
extern "C" __global__ void scatter_last_i32(const int *idx, const int *v, int *o, unsigned n, unsigned width, unsigned k) {
  FOR_EACH(i, n) {
    int c = idx[i];
    if (c >= 0 && (unsigned)c < width) atomicAdd(o + (size_t)(i / k) * width + c, v[i]);
  }
}
