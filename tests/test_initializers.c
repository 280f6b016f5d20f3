/* Keras's initializers: ranges, spreads and orthogonality, and reproducibility by seed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "model/internal.h"
#include <math.h>

static lm_array *draw(lm_initializer init, lm_init_kind fallback, lm_shape shape) {
  lm_array *a = lm_array_new(LM_FLOAT32, shape);
  lm__init_fill(init, fallback, a);
  return a;
}

static void moments(const lm_array *a, double *mean, double *sd, double *lo, double *hi) {
  double s = 0, s2 = 0;
  *lo = INFINITY, *hi = -INFINITY;
  for (int64_t i = 0; i < a->size; i++) {
    double v = lm_array_f32(a)[i];
    s += v, s2 += v * v;
    *lo = fmin(*lo, v), *hi = fmax(*hi, v);
  }
  *mean = s / (double)a->size;
  *sd = sqrt(s2 / (double)a->size - *mean * *mean);
}

static void test_variance_scaling(void **state) {
  (void)state;
  lm_set_seed(3);
  double mean, sd, lo, hi;
  /* glorot_uniform on (300, 200): U(-l, l), l = sqrt(6 / 500) */
  lm_array *a = draw(LM_INIT(LM_GLOROT_UNIFORM), LM_ZEROS, LM_SHAPE(300, 200));
  double limit = sqrt(6.0 / 500);
  moments(a, &mean, &sd, &lo, &hi);
  assert_true(lo >= -limit && hi <= limit && hi > 0.99 * limit);
  assert_true(fabs(sd - limit / sqrt(3.0)) < 0.01 * limit);
  lm_array_free(a);
  /* he_normal: truncated at two sigma, rescaled so the spread is sqrt(2 / fan_in). */
  a = draw(LM_INIT(LM_HE_NORMAL), LM_ZEROS, LM_SHAPE(400, 300));
  moments(a, &mean, &sd, &lo, &hi);
  double want = sqrt(2.0 / 400);
  assert_true(fabs(sd - want) < 0.02 * want);
  assert_true(fabs(mean) < 0.01 * want);
  assert_true(hi <= 2 * want / .87962566103423978 + 1e-6);
  lm_array_free(a);
  /* Convolution kernels: fan_in is receptive field times input channels. */
  a = draw(LM_INIT(LM_LECUN_UNIFORM), LM_ZEROS, LM_SHAPE(3, 3, 16, 8));
  moments(a, &mean, &sd, &lo, &hi);
  assert_true(hi <= sqrt(3.0 / (9 * 16)) && lo >= -sqrt(3.0 / (9 * 16)));
  lm_array_free(a);
}

static void test_orthogonal(void **state) {
  (void)state;
  lm_shape shapes[] = {LM_SHAPE(64, 32), LM_SHAPE(32, 64), LM_SHAPE(16, 16)};
  for (int s = 0; s < 3; s++) {
    lm_array *a = draw(LM_INIT(LM_ORTHOGONAL), LM_ZEROS, shapes[s]);
    int64_t rows = shapes[s].dim[0], cols = shapes[s].dim[1], k = rows < cols ? rows : cols;
    const float *w = lm_array_f32(a);
    /* The shorter side's vectors are orthonormal. */
    for (int64_t i = 0; i < k; i++) {
      for (int64_t j = 0; j < k; j++) {
        double dot = 0;
        for (int64_t t = 0; t < (rows >= cols ? rows : cols); t++)
          dot += rows >= cols ? (double)w[t * cols + i] * w[t * cols + j] : (double)w[i * cols + t] * w[j * cols + t];
        assert_true(fabs(dot - (i == j)) < 1e-5);
      }
    }
    lm_array_free(a);
  }
}

static void test_fixed_kinds_and_defaults(void **state) {
  (void)state;
  double mean, sd, lo, hi;
  lm_array *a = draw(LM_INIT(LM_CONSTANT, .a = 0.5), LM_ZEROS, LM_SHAPE(10));
  moments(a, &mean, &sd, &lo, &hi);
  assert_true(lo == 0.5 && hi == 0.5);
  lm_array_free(a);
  a = draw(LM_INIT(LM_INIT_DEFAULT), LM_ONES, LM_SHAPE(10));
  moments(a, &mean, &sd, &lo, &hi);
  assert_true(lo == 1 && hi == 1);
  lm_array_free(a);
  /* RandomUniform defaults to (-0.05, 0.05); given bounds are honoured. */
  a = draw(LM_INIT(LM_RANDOM_UNIFORM), LM_ZEROS, LM_SHAPE(1000));
  moments(a, &mean, &sd, &lo, &hi);
  assert_true(lo >= -0.05 && hi <= 0.05 && hi > 0.04);
  lm_array_free(a);
  a = draw(LM_INIT(LM_RANDOM_UNIFORM, .a = 2, .b = 3), LM_ZEROS, LM_SHAPE(1000));
  moments(a, &mean, &sd, &lo, &hi);
  assert_true(lo >= 2 && hi <= 3);
  lm_array_free(a);
}

/* A seed gives the same model weights; another seed other weights. */
static void test_seeded(void **state) {
  (void)state;
  float first[20];
  for (int round = 0; round < 3; round++) {
    lm_set_seed(round < 2 ? 11 : 12);
    lm_layer *dense = lm_dense(5);
    lm_call(dense, lm_input(LM_SHAPE(4)));
    const float *w = lm_array_f32(lm_layer_weight(dense, 0, NULL));
    if (round == 0) memcpy(first, w, sizeof first);
    else if (round == 1) assert_memory_equal(first, w, sizeof first);
    else assert_memory_not_equal(first, w, sizeof first);
    lm_session_clear();
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_variance_scaling),
      cmocka_unit_test(test_orthogonal),
      cmocka_unit_test(test_fixed_kinds_and_defaults),
      cmocka_unit_test(test_seeded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
