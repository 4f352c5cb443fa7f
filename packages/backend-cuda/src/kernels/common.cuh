// Shared by every kernel file: the launch-parameter structs the host packs (src/launch.ts keeps
// the same layouts: every field is 4 bytes, so the offsets are the field order times 4) and the
// NaN-aware helpers that give the CPU oracle's semantics.
#pragma once
#include <stdint.h>
#include <math.h>

#define MAXR 8
#define FULL_MASK 0xffffffffu

// An elementwise launch over an output of `n` elements of shape `dims`: operand j's element of
// output element i is at base + sum(coord[ax] * s[j][ax]) (broadcast axes have stride 0). Bit j of
// `contig` says operand j is laid out like the output (its offset is i: no division needed).
struct Strided {
  int rank;
  unsigned n;
  int dims[MAXR];
  int s[3][MAXR];
  int base;
  int contig;
};

// A reduction: `nOut` outputs over the kept axes, each reducing `rs` elements over the reduced axes.
struct ReduceMeta {
  int kr;
  int rr;
  unsigned nOut;
  unsigned rs;
  int kd[MAXR];
  int ks[MAXR];
  int rd[MAXR];
  int rst[MAXR];
};

// Zero padding: output dims, the padding before each axis, the input's dims and strides.
struct PadMeta {
  int rank;
  unsigned n;
  int dims[MAXR];
  int before[MAXR];
  int xdims[MAXR];
  int xs[MAXR];
};

__device__ __forceinline__ unsigned strided_offset(const Strided &m, unsigned i, int which) {
  if (m.contig & (1 << which)) return i;
  unsigned rem = i, off = 0;
  for (int ax = m.rank - 1; ax >= 0; --ax) {
    unsigned d = (unsigned)m.dims[ax];
    off += (rem % d) * (unsigned)m.s[which][ax];
    rem /= d;
  }
  return off;
}

// Grid-stride loop over n elements: the host caps the grid (launch.ts grid1d), so any n fits.
#define FOR_EACH(i, n) \
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += blockDim.x * gridDim.x)

__device__ __forceinline__ float nanf_() { return __int_as_float(0x7fc00000); }

// relu that lets NaN through, as the CPU reference does (max(NaN, 0) would drop it).
__device__ __forceinline__ float relu_nan(float v) { return isnan(v) ? v : fmaxf(v, 0.f); }

// Ranks value a (index ia) before b: larger first, NaN largest, ties to the lower index (core's top-k order).
__device__ __forceinline__ bool ranks_before(float a, int ia, float b, int ib) {
  bool na = isnan(a), nb = isnan(b);
  if (na || nb) {
    if (na && nb) return ia < ib;
    return na;
  }
  return a > b || (a == b && ia < ib);
}
