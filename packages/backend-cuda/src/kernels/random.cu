// Random draws on the device from core's Philox stream. Uniform values are bit for bit the
// host's: u = (word >> 8) * 2^-24 is exact; the host computes fround(low + fround(scale * u))
// with low a float64, so: the float32 product rounded once (__fmul_rn, no FMA contraction), the
// sum in float64 (the same IEEE operation as V8's), rounded to float32 once.
#include "common.cuh"
#include "philox.cuh"

extern "C" __global__ void philox_words(unsigned *o, unsigned n, unsigned k0, unsigned k1, unsigned stream) {
  FOR_EACH(i, n) o[i] = philox_word(i, k0, k1, stream);
}

extern "C" __global__ void philox_uniform(float *o, unsigned n, unsigned k0, unsigned k1, unsigned stream, double low,
                                          float scale) {
  // One thread per block of four words: one Philox evaluation for four values.
  unsigned blocks = (n + 3) / 4;
  FOR_EACH(b, blocks) {
    uint32_t ctr[4] = {b, 0u, stream, 0u};
    uint32_t w[4];
    philox4x32_10(ctr, k0, k1, w);
    for (int j = 0; j < 4; ++j) {
      unsigned i = b * 4 + j;
      if (i < n) o[i] = __double2float_rn(__dadd_rn(low, (double)__fmul_rn(scale, (float)(w[j] >> 8) * 5.9604644775390625e-8f)));
    }
  }
}
