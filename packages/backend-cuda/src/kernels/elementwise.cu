// Elementwise kernels: unary ops (one kernel, the op chosen by a code), broadcasting binary ops
// over strided operands, where, cast, fill-by-sequence (arange) and the encoder's bias + ReLU.
#include "common.cuh"

// Op codes: the same order as UNARY_OPS / BINARY_OPS in src/kernels.ts.
enum { U_NEG, U_ABS, U_SIGN, U_SQUARE, U_SQRT, U_EXP, U_LOG, U_POW, U_RELU, U_STEP };
enum { B_ADD, B_SUB, B_MUL, B_DIV, B_MAX, B_MIN, B_GT, B_GE, B_LT, B_LE, B_EQ, B_NE, B_RELUGRAD };

// x^p with the CPU's conventions: flags bit 0 = p is an integer, bit 1 = p is odd.
__device__ float pow_(float x, float p, int flags) {
  if (isnan(x) || isnan(p)) return nanf_();
  if (p == 0.f) return 1.f;
  if (x == 0.f) return p < 0.f ? INFINITY : 0.f;
  float r = powf(fabsf(x), p);
  if (x < 0.f) {
    if ((flags & 1) == 0) return nanf_();
    return (flags & 2) ? -r : r;
  }
  return r;
}

__device__ __forceinline__ float unary_f(int op, float x, float p, float th, int flags) {
  switch (op) {
    case U_NEG: return -x;
    case U_ABS: return fabsf(x);
    case U_SIGN: return isnan(x) ? x : (x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f));
    case U_SQUARE: return x * x;
    case U_SQRT: return x < 0.f ? nanf_() : sqrtf(x);
    case U_EXP: return expf(x);
    case U_LOG: return isnan(x) || x < 0.f ? nanf_() : (x == 0.f ? -INFINITY : logf(x));
    case U_POW: return pow_(x, p, flags);
    case U_RELU: return relu_nan(x);
    default: return isnan(x) ? x : (x > th ? 1.f : 0.f);  // U_STEP
  }
}

extern "C" __global__ void unary_f32(const float *x, float *o, unsigned n, int op, float p, float th, int flags) {
  FOR_EACH(i, n) o[i] = unary_f(op, x[i], p, th, flags);
}

extern "C" __global__ void unary_i32(const int *x, int *o, unsigned n, int op) {
  FOR_EACH(i, n) {
    int v = x[i];
    o[i] = op == U_NEG ? -v : op == U_ABS ? abs(v) : op == U_SIGN ? (v > 0) - (v < 0) : v * v;
  }
}

__device__ __forceinline__ float binary_f(int op, float a, float b) {
  bool nan = isnan(a) || isnan(b);
  switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_MAX: return nan ? nanf_() : fmaxf(a, b);
    case B_MIN: return nan ? nanf_() : fminf(a, b);
    case B_GT: return !nan && a > b ? 1.f : 0.f;
    case B_GE: return !nan && a >= b ? 1.f : 0.f;
    case B_LT: return !nan && a < b ? 1.f : 0.f;
    case B_LE: return !nan && a <= b ? 1.f : 0.f;
    case B_EQ: return !nan && a == b ? 1.f : 0.f;
    case B_NE: return nan || a != b ? 1.f : 0.f;
    default: return !isnan(b) && b > 0.f ? a : 0.f;  // B_RELUGRAD: dy where x > 0
  }
}

extern "C" __global__ void binary_f32(const float *a, const float *b, float *o, int op, Strided m) {
  FOR_EACH(i, m.n) o[i] = binary_f(op, a[strided_offset(m, i, 0)], b[strided_offset(m, i, 1)]);
}

// int32 operands: arithmetic gives int32, comparisons give float32 0/1 (core's comparison dtype).
extern "C" __global__ void binary_i32(const int *a, const int *b, void *o, int op, Strided m) {
  FOR_EACH(i, m.n) {
    int x = a[strided_offset(m, i, 0)], y = b[strided_offset(m, i, 1)];
    if (op >= B_GT && op <= B_NE) {
      bool r = op == B_GT ? x > y : op == B_GE ? x >= y : op == B_LT ? x < y : op == B_LE ? x <= y : op == B_EQ ? x == y : x != y;
      ((float *)o)[i] = r ? 1.f : 0.f;
    } else {
      ((int *)o)[i] = op == B_ADD ? x + y : op == B_SUB ? x - y : op == B_MUL ? x * y : op == B_MAX ? max(x, y) : min(x, y);
    }
  }
}

// cond ? a : b over 32-bit words (either dtype); a float condition is true when != 0 (NaN is true).
extern "C" __global__ void where32(const void *c, int condInt, const unsigned *a, const unsigned *b, unsigned *o, Strided m) {
  FOR_EACH(i, m.n) {
    unsigned ic = strided_offset(m, i, 0);
    bool t = condInt ? ((const int *)c)[ic] != 0 : ((const float *)c)[ic] != 0.f;
    o[i] = t ? a[strided_offset(m, i, 1)] : b[strided_offset(m, i, 2)];
  }
}

// float32 -> int32 truncates toward zero, saturates, NaN -> 0 (the CPU's conversion).
extern "C" __global__ void cast_f32_i32(const float *x, int *o, unsigned n) {
  FOR_EACH(i, n) {
    float v = x[i];
    o[i] = isnan(v) ? 0 : (int)fminf(fmaxf(truncf(v), -2147483648.f), 2147483520.f);
  }
}

extern "C" __global__ void cast_i32_f32(const int *x, float *o, unsigned n) {
  FOR_EACH(i, n) o[i] = (float)x[i];
}

extern "C" __global__ void arange_f32(float *o, unsigned n, float start, float step) {
  FOR_EACH(i, n) o[i] = start + (float)i * step;
}

extern "C" __global__ void arange_i32(int *o, unsigned n, int start, int step) {
  FOR_EACH(i, n) o[i] = start + (int)i * step;
}

// The encoder epilogue after the cuBLAS product: o = relu(x + bias[col]) (in place when o == x).
extern "C" __global__ void bias_relu(const float *x, const float *bias, float *o, unsigned n, unsigned cols) {
  FOR_EACH(i, n) o[i] = relu_nan(x[i] + bias[i % cols]);
}
