// Host-side check of src/kernels/philox.cuh (the same lines the device kernels run), built by
// nvcc as a host program: reads "k0 k1 stream n" lines or "block c0 c1 c2 c3 k0 k1" lines from
// stdin, prints the words. src/philox.test.ts compares them with core's known-answer fixture.
#include <cstdio>
#include <cstring>
#include "../src/kernels/philox.cuh"

int main() {
  char kind[16];
  while (scanf("%15s", kind) == 1) {
    if (strcmp(kind, "block") == 0) {
      unsigned c[4], k0, k1, w[4];
      if (scanf("%u %u %u %u %u %u", &c[0], &c[1], &c[2], &c[3], &k0, &k1) != 6) return 1;
      uint32_t ctr[4] = {c[0], c[1], c[2], c[3]};
      uint32_t out[4];
      philox4x32_10(ctr, k0, k1, out);
      for (int i = 0; i < 4; ++i) w[i] = out[i];
      printf("%u %u %u %u\n", w[0], w[1], w[2], w[3]);
    } else {
      unsigned k0, k1, stream, n;
      if (scanf("%u %u %u %u", &k0, &k1, &stream, &n) != 4) return 1;
      for (unsigned i = 0; i < n; ++i) printf("%u%c", philox_word(i, k0, k1, stream), i + 1 < n ? ' ' : '\n');
    }
  }
  return 0;
}
