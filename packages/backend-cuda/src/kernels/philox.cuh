// Philox-4x32-10 exactly as core's random.ts defines the stream (see its module comment):
// key = [k0, k1], counter of block b = [b lo, b hi, stream, 0], four words per block.
// __host__ __device__ so that test/philox-host.cu checks these very lines against core's
// known-answer vectors on a machine without a GPU.
#pragma once
#include <stdint.h>

#ifdef __CUDACC__
#define PHILOX_FN __host__ __device__ __forceinline__
#else
#define PHILOX_FN inline
#endif

PHILOX_FN void philox4x32_10(const uint32_t ctr[4], uint32_t k0, uint32_t k1, uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = (uint64_t)0xd2511f53u * c0;
    uint64_t p1 = (uint64_t)0xcd9e8d57u * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9e3779b9u;
    k1 += 0xbb67ae85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// Word i of a draw.
PHILOX_FN uint32_t philox_word(uint64_t i, uint32_t k0, uint32_t k1, uint32_t stream) {
  uint64_t b = i >> 2;
  uint32_t ctr[4] = {(uint32_t)b, (uint32_t)(b >> 32), stream, 0u};
  uint32_t w[4];
  philox4x32_10(ctr, k0, k1, w);
  return w[i & 3];
}
