/* Keras's initializers, drawn from the session's seeded stream. */
#include "model/internal.h"
#include <math.h>

/* Keras's fans: receptive field size times input / output channels. */
static void fans(lm_shape s, double *fan_in, double *fan_out) {
  if (s.rank < 1) *fan_in = *fan_out = 1;
  else if (s.rank == 1) *fan_in = *fan_out = (double)s.dim[0];
  else {
    double receptive = (double)lm__dims_product(&s, 0, s.rank - 2);
    *fan_in = receptive * (double)s.dim[s.rank - 2];
    *fan_out = receptive * (double)s.dim[s.rank - 1];
  }
}

/* Keras's truncated normal: redraw outside two standard deviations. */
static double truncated(lm_rng *rng) {
  double x;
  do x = lm__rng_normal(rng);
  while (fabs(x) > 2.0);
  return x;
}

static void orthogonal(lm_array *a, double gain, lm_rng *rng) {
  float *w = lm_array_f32(a);
  int64_t cols = a->shape.rank ? a->shape.dim[a->shape.rank - 1] : 1, rows = a->size / cols;
  /* Orthonormalize the longer side's vectors (Gram-Schmidt on a normal matrix equals QR
   * with a positive diagonal, which is Keras's sign-corrected QR). */
  int64_t n = rows > cols ? rows : cols, k = rows > cols ? cols : rows;
  double *q = calloc((size_t)(n * k), sizeof *q);
  if (!q) return;
  for (int64_t i = 0; i < n * k; i++) q[i] = lm__rng_normal(rng);
  for (int64_t j = 0; j < k; j++) { /* column j of the n x k matrix: q[i*k + j] */
    for (int64_t p = 0; p < j; p++) {
      double dot = 0;
      for (int64_t i = 0; i < n; i++) dot += q[i * k + j] * q[i * k + p];
      for (int64_t i = 0; i < n; i++) q[i * k + j] -= dot * q[i * k + p];
    }
    double norm = 0;
    for (int64_t i = 0; i < n; i++) norm += q[i * k + j] * q[i * k + j];
    norm = sqrt(norm) > 0 ? sqrt(norm) : 1;
    for (int64_t i = 0; i < n; i++) q[i * k + j] /= norm;
  }
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++)
      w[r * cols + c] = (float)(gain * (rows >= cols ? q[r * k + c] : q[c * k + r]));
  free(q);
}

void lm__init_fill(lm_initializer init, lm_init_kind default_kind, lm_array *a) {
  lm_init_kind kind = init.kind == LM_INIT_DEFAULT ? default_kind : init.kind;
  bool given = init.a != 0 || init.b != 0;
  lm_rng *rng = lm__global_rng();
  float *w = lm_array_f32(a);
  double fan_in, fan_out;
  fans(a->shape, &fan_in, &fan_out);
  double limit = 0, stddev = 0;
  switch (kind) {
  case LM_INIT_DEFAULT:
  case LM_ZEROS: memset(w, 0, (size_t)a->size * sizeof *w); return;
  case LM_ONES:
    for (int64_t i = 0; i < a->size; i++) w[i] = 1;
    return;
  case LM_CONSTANT:
    for (int64_t i = 0; i < a->size; i++) w[i] = (float)init.a;
    return;
  case LM_ORTHOGONAL: orthogonal(a, given ? init.a : 1.0, rng); return;
  case LM_RANDOM_UNIFORM: {
    double lo = given ? init.a : -0.05, hi = given ? init.b : 0.05;
    for (int64_t i = 0; i < a->size; i++) w[i] = (float)(lo + (hi - lo) * lm__rng_uniform(rng));
    return;
  }
  case LM_RANDOM_NORMAL: {
    double mean = given ? init.a : 0, sd = given ? init.b : 0.05;
    for (int64_t i = 0; i < a->size; i++) w[i] = (float)(mean + sd * lm__rng_normal(rng));
    return;
  }
  case LM_TRUNCATED_NORMAL: {
    double mean = given ? init.a : 0, sd = given ? init.b : 0.05;
    for (int64_t i = 0; i < a->size; i++) w[i] = (float)(mean + sd * truncated(rng));
    return;
  }
  case LM_GLOROT_UNIFORM: limit = sqrt(6.0 / (fan_in + fan_out)); break;
  case LM_HE_UNIFORM: limit = sqrt(6.0 / fan_in); break;
  case LM_LECUN_UNIFORM: limit = sqrt(3.0 / fan_in); break;
  /* Keras divides by the stddev of a unit normal truncated at 2 sigma. */
  case LM_GLOROT_NORMAL: stddev = sqrt(2.0 / (fan_in + fan_out)) / .87962566103423978; break;
  case LM_HE_NORMAL: stddev = sqrt(2.0 / fan_in) / .87962566103423978; break;
  case LM_LECUN_NORMAL: stddev = sqrt(1.0 / fan_in) / .87962566103423978; break;
  }
  for (int64_t i = 0; i < a->size; i++)
    w[i] = limit > 0 ? (float)(limit * (2 * lm__rng_uniform(rng) - 1)) : (float)(stddev * truncated(rng));
}
