/* Activation kernels over [rows, cols] buffers (softmax normalizes each row). */
#ifndef LAMINA_ACTIVATIONS_H
#define LAMINA_ACTIVATIONS_H

#include "core/core.h"
#include <lamina/layers.h>
#include <math.h>

/* exp, sigmoid and tanh as straight-line float code that vectorizes in LM_VECTORIZE loops
 * (libm's calls do not). exp is Cephes's: x = n ln2 + r, |r| <= ln2 / 2, a degree-7
 * polynomial for e^r, 2^n from the exponent bits; within 2 ulp of expf over its range.
 * Kernels that inline them (the recurrent cells) get the same bits as the activation op. */
static inline float lm__exp_poly(float x) {
  /* 2^n must stay a normal float (n in [-126, 127]): past the ends the answer is 0 or
   * infinity, and just below overflow e^88.3 stands for the last 0.4 of the range. */
  float xc = x < -87.3f ? -87.3f : x > 88.3f ? 88.3f : x;
  float n = floorf(xc * 1.44269504088896341f + 0.5f);
  n = n == n ? n : 0.0f; /* NaN in, NaN out (through r), without converting NaN to int */
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  union {
    int32_t i;
    float f;
  } scale = {.i = ((int32_t)n + 127) * (1 << 23)};
  float e = p * scale.f;
  return x < -87.3f ? 0.0f : x > 88.72f ? INFINITY : e;
}

static inline float lm__sigmoid_poly(float x) { /* e^-|x| never overflows */
  float e = lm__exp_poly(x < 0 ? x : -x), s = 1.0f / (1.0f + e);
  return x >= 0 ? s : e * s;
}

/* Cephes's tanhf: an odd polynomial below 0.625, 1 - 2 / (e^2|x| + 1) above. */
static inline float lm__tanh_poly(float x) {
  float ax = x < 0 ? -x : x, z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  float small = x + x * z * p;
  float big = 1.0f - 2.0f / (lm__exp_poly(2.0f * ax) + 1.0f);
  big = x < 0 ? -big : big;
  return ax < 0.625f ? small : big;
}

LM_INTERNAL void lm__act_forward(lm_activation act, const float *x, float *y, int64_t rows, int64_t cols);
/* dx += dy * act'(x), using whichever of x and y is cheaper. */
LM_INTERNAL void lm__act_backward(lm_activation act, const float *x, const float *y, const float *dy,
                                  float *dx, int64_t rows, int64_t cols);

/* Activations whose derivative follows from their output alone (relu, sigmoid, tanh,
 * softmax, elu, selu, linear): an op may apply them to its own output in place. */
LM_INTERNAL bool lm__act_fusable(lm_activation act);
/* dy *= act'(x), computed from y = act(x), in place: the gradient before a fused activation. */
LM_INTERNAL void lm__act_grad_from_output(lm_activation act, const float *y, float *dy, int64_t rows, int64_t cols);

/* The epilogue of a matrix op (dense, convolution) over its output y (rows, cols):
 * y = act(y + bias), bias NULL for none. Threaded over rows. */
LM_INTERNAL void lm__bias_act_forward(lm_activation act, const float *bias, float *y, int64_t rows, int64_t cols);
/* Its adjoint: dy *= act'(y) in place, then db += the column sums of dy (db NULL for none).
 * The sums are threaded over columns, each column adding its rows in order, so the bits do
 * not depend on the thread count. */
LM_INTERNAL void lm__bias_act_backward(lm_activation act, const float *y, float *dy, float *db, int64_t rows,
                                       int64_t cols);

#endif
