/* Losses and metrics against hand-computed values, numerical gradients, and Keras's AUC.
 * Expected numbers come from plain-Python re-implementations of Keras's formulas; the
 * expressions are quoted next to each value. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "train/losses.h"

#define assert_near(a, b, tol)                                                              \
  do {                                                                                      \
    double a_ = (a), b_ = (b);                                                              \
    if (!(fabs(a_ - b_) <= (tol))) {                                                        \
      print_error("%s = %.17g, expected %.17g (tol %g)\n", #a, a_, b_, (double)(tol));     \
      fail();                                                                               \
    }                                                                                       \
  } while (0)

#define N_OF(a) ((int64_t)(sizeof(a) / sizeof((a)[0])))

static lm_loss_spec spec_of(const char *name) {
  lm_loss_spec s;
  lm_error err = {0};
  assert_int_equal(lm__loss_parse(name, &s, &err), 0);
  assert_int_equal(err.code, LM_OK);
  return s;
}

static double loss_of(const char *name, const float *p, const float *y, int64_t rows,
                      int64_t cols) {
  lm_loss_spec s = spec_of(name);
  return lm__loss_compute(&s, p, y, rows, cols, NULL, 1.0f);
}

/* ---- Parsing ---- */

static void test_parse_names(void **state) {
  (void)state;
  struct {
    const char *name;
    lm_loss_kind kind;
    int logits;
  } cases[] = {
      {"mse", LM_LOSS_MSE, 0},
      {"mean_squared_error", LM_LOSS_MSE, 0},
      {"mae", LM_LOSS_MAE, 0},
      {"mean_absolute_error", LM_LOSS_MAE, 0},
      {"huber", LM_LOSS_HUBER, 0},
      {"binary_crossentropy", LM_LOSS_BINARY_CE, 0},
      {"binary_crossentropy:logits", LM_LOSS_BINARY_CE, 1},
      {"categorical_crossentropy", LM_LOSS_CATEGORICAL_CE, 0},
      {"categorical_crossentropy:logits", LM_LOSS_CATEGORICAL_CE, 1},
      {"sparse_categorical_crossentropy", LM_LOSS_SPARSE_CATEGORICAL_CE, 0},
      {"sparse_categorical_crossentropy:logits", LM_LOSS_SPARSE_CATEGORICAL_CE, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    lm_loss_spec s = spec_of(cases[i].name);
    assert_int_equal(s.kind, cases[i].kind);
    assert_int_equal(s.from_logits, cases[i].logits);
    assert_true(s.huber_delta == 1.0f);
  }
  assert_string_equal(lm__loss_name(LM_LOSS_MSE), "mean_squared_error");
  assert_string_equal(lm__loss_name(LM_LOSS_SPARSE_CATEGORICAL_CE),
                      "sparse_categorical_crossentropy");
}

static void test_parse_errors(void **state) {
  (void)state;
  const char *bad[] = {"msq", "mse:logits", "binary_crossentropy:logit", "", "categorical"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    lm_loss_spec s;
    lm_error err = {0};
    char quoted[128];
    snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
    assert_int_equal(lm__loss_parse(bad[i], &s, &err), -1);
    assert_int_equal(err.code, LM_ERROR_VALUE);
    assert_non_null(strstr(err.msg, quoted));
    assert_non_null(strstr(lm_last_error(), quoted));
  }
  lm_loss_spec s;
  lm_error err = {0};
  assert_int_equal(lm__loss_parse(NULL, &s, &err), -1);
  assert_int_equal(err.code, LM_ERROR_VALUE);
}

/* ---- Values ---- */

static void test_mse_mae(void **state) {
  (void)state;
  const float p[] = {1, 2, 3, 5}, y[] = {1, 1, 1, 1};
  float d[4];
  /* rows: (0 + 1)/2 = 0.5 and (4 + 16)/2 = 10 -> 5.25 */
  lm_loss_spec s = spec_of("mse");
  assert_near(lm__loss_compute(&s, p, y, 2, 2, d, 1.0f), 5.25, 1e-12);
  /* 2 (p - y) / (cols * rows) */
  const float dmse[] = {0, 0.5f, 1, 2};
  for (int i = 0; i < 4; i++) assert_near(d[i], dmse[i], 1e-7);
  /* rows: 0.5 and 3 -> 1.75; gradient sign(p - y)/4, zero where p == y */
  s = spec_of("mae");
  assert_near(lm__loss_compute(&s, p, y, 2, 2, d, 2.0f), 1.75, 1e-12);
  const float dmae[] = {0, 0.5f, 0.5f, 0.5f}; /* scale 2 */
  for (int i = 0; i < 4; i++) assert_near(d[i], dmae[i], 1e-7);
}

static void test_huber(void **state) {
  (void)state;
  const float p[] = {0.5f, 3}, y[] = {0, 0};
  float d[2];
  /* delta 1: 0.5*0.25 = 0.125 and 1*3 - 0.5 = 2.5 -> 1.3125 */
  lm_loss_spec s = spec_of("huber");
  assert_near(lm__loss_compute(&s, p, y, 1, 2, d, 1.0f), 1.3125, 1e-12);
  assert_near(d[0], 0.5 / 2, 1e-7);
  assert_near(d[1], 1.0 / 2, 1e-7);
  /* delta 0 means the default 1 */
  s.huber_delta = 0;
  assert_near(lm__loss_compute(&s, p, y, 1, 2, NULL, 1.0f), 1.3125, 1e-12);
  /* delta 2: 0.125 and 2*3 - 2 = 4 -> 2.0625 */
  s.huber_delta = 2;
  assert_near(lm__loss_compute(&s, p, y, 1, 2, d, 1.0f), 2.0625, 1e-12);
  assert_near(d[1], 2.0 / 2, 1e-7);
}

static void test_binary_crossentropy(void **state) {
  (void)state;
  /* mean(-(y log p + (1-y) log(1-p))) per row, then over rows: 0.4389050995477089 */
  const float p[] = {0.9f, 0.2f, 0.6f, 0.4f}, y[] = {1, 0, 1, 1};
  assert_near(loss_of("binary_crossentropy", p, y, 2, 2), 0.4389050995477089, 1e-7);
  /* Clipped to [1e-7f, float(1 - 1e-7) = 1 - 2^-23]:
   * (-log(1.0000000116860974e-07) - log(2^-23)) / 2 = 16.030240396075484 */
  const float pc[] = {0, 1}, yc[] = {1, 0}, yok[] = {0, 1};
  float d[2] = {9, 9};
  lm_loss_spec s = spec_of("binary_crossentropy");
  assert_near(lm__loss_compute(&s, pc, yc, 1, 2, d, 1.0f), 16.030240396075484, 1e-9);
  assert_true(d[0] == 0 && d[1] == 0); /* the clip cuts the gradient */
  /* correct and saturated: (-log(1 - 1e-7f) - log(1 - 2^-23)) / 2 = 1.0960465141240969e-07 */
  assert_near(loss_of("binary_crossentropy", pc, yok, 1, 2), 1.0960465141240969e-07, 1e-14);
}

static void test_binary_crossentropy_logits(void **state) {
  (void)state;
  /* max(x,0) - x y + log1p(exp(-|x|)), mean: 0.2954810576737207 */
  const float x[] = {2, -1, 0, 3}, y[] = {1, 0, 0, 1};
  float d[4];
  lm_loss_spec s = spec_of("binary_crossentropy:logits");
  assert_near(lm__loss_compute(&s, x, y, 2, 2, d, 1.0f), 0.2954810576737207, 1e-9);
  /* (sigmoid(x) - y) / 4 */
  const double dx[] = {-0.02980073050552942, 0.06723535534249878, 0.125, -0.011856468294391659};
  for (int i = 0; i < 4; i++) assert_near(d[i], dx[i], 1e-7);
  /* Large logits must not overflow: both rows lose exactly |x|. */
  const float xl[] = {1000, -1000}, yl[] = {0, 1};
  assert_near(lm__loss_compute(&s, xl, yl, 2, 1, d, 1.0f), 1000, 1e-9);
  assert_near(d[0], 0.5, 1e-7);
  assert_near(d[1], -0.5, 1e-7);
}

static void test_categorical_crossentropy(void **state) {
  (void)state;
  /* (-log 0.3 - log 0.8) / 2 = 0.7135581654024389 (from the float inputs) */
  const float p[] = {0.2f, 0.3f, 0.5f, 0.1f, 0.1f, 0.8f}, y[] = {0, 1, 0, 0, 0, 1};
  assert_near(loss_of("categorical_crossentropy", p, y, 2, 3), 0.7135581654024389, 1e-9);
  /* Unnormalized predictions are divided by their sum: -log(2/4) */
  const float pu[] = {1, 1, 2}, yu[] = {0, 0, 1};
  assert_near(loss_of("categorical_crossentropy", pu, yu, 1, 3), log(2.0), 1e-12);
  /* Soft target: -sum y log p = 1.0296530140645737 */
  const float ps[] = {0.2f, 0.3f, 0.5f};
  assert_near(loss_of("categorical_crossentropy", ps, ps, 1, 3), 1.0296530140645737, 1e-7);
  /* Clipping: -log(1e-7f) = 16.118095639272223, no gradient through the clipped entry */
  const float pc[] = {0, 0, 1}, yc[] = {1, 0, 0};
  float d[3] = {9, 9, 9};
  lm_loss_spec s = spec_of("categorical_crossentropy");
  assert_near(lm__loss_compute(&s, pc, yc, 1, 3, d, 1.0f), 16.118095639272223, 1e-9);
  for (int i = 0; i < 3; i++) assert_true(d[i] == 0);
  /* -log(1 - 2^-23) = 1.1920929665620916e-07 */
  assert_near(loss_of("categorical_crossentropy", pc, yu, 1, 3),
              1.1920929665620916e-07, 1e-15);
}

static void test_categorical_crossentropy_logits(void **state) {
  (void)state;
  /* rows: lse(1,2,3) - 3 and lse(0.5,-1,0) - 0.5; mean 0.5058682848905545 */
  const float x[] = {1, 2, 3, 0.5f, -1, 0}, y[] = {0, 0, 1, 1, 0, 0};
  float d[6];
  lm_loss_spec s = spec_of("categorical_crossentropy:logits");
  assert_near(lm__loss_compute(&s, x, y, 2, 3, d, 1.0f), 0.5058682848905545, 1e-9);
  /* (softmax - y) / rows for row 0 */
  const double d0[] = {0.04501528658519024, 0.12236423552739885, -0.167379522112589};
  for (int i = 0; i < 3; i++) assert_near(d[i], d0[i], 1e-7);
  /* Huge logits stay finite. */
  const float xl[] = {1000, 0, -1000}, yl[] = {0, 1, 0};
  assert_near(lm__loss_compute(&s, xl, yl, 1, 3, d, 1.0f), 1000, 1e-9);
}

static void test_sparse_categorical_crossentropy(void **state) {
  (void)state;
  const float p[] = {0.2f, 0.3f, 0.5f, 0.1f, 0.1f, 0.8f}, y[] = {1, 2};
  assert_near(loss_of("sparse_categorical_crossentropy", p, y, 2, 3), 0.7135581654024389, 1e-9);
  const float x[] = {1, 2, 3, 0.5f, -1, 0}, yx[] = {2, 0};
  assert_near(loss_of("sparse_categorical_crossentropy:logits", x, yx, 2, 3),
              0.5058682848905545, 1e-9);
}

static void test_sparse_out_of_range(void **state) {
  (void)state;
  /* A class id outside [0, cols) (or NaN) adds 0 loss and 0 gradient, but still counts
   * as a row: (-log 0.3 + 0) / 2 = 0.601986389745334 */
  const float bad[] = {3, -1, 1e30f, NAN, -0.5f};
  for (int logits = 0; logits < 2; logits++) {
    lm_loss_spec s = spec_of(logits ? "sparse_categorical_crossentropy:logits"
                                    : "sparse_categorical_crossentropy");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      /* Exactly sized buffers so ASan sees any stray read. */
      float *p = malloc(6 * sizeof *p), *y = malloc(2 * sizeof *y), d[6];
      const float pv[] = {0.2f, 0.3f, 0.5f, 0.1f, 0.1f, 0.8f};
      memcpy(p, pv, sizeof pv);
      y[0] = 1;
      y[1] = bad[i];
      for (int j = 0; j < 6; j++) d[j] = 9;
      double l = lm__loss_compute(&s, p, y, 2, 3, d, 1.0f);
      if (!logits) assert_near(l, 0.601986389745334, 1e-9);
      assert_true(isfinite(l) && l > 0);
      for (int j = 3; j < 6; j++) assert_true(d[j] == 0);
      assert_true(d[1] != 0);
      free(p);
      free(y);
    }
  }
}

static void test_empty_batch(void **state) {
  (void)state;
  lm_loss_spec s = spec_of("mse");
  float p[1] = {1}, y[1] = {0};
  assert_near(lm__loss_compute(&s, p, y, 0, 1, NULL, 1.0f), 0, 0);
}

/* ---- Gradients by central differences ---- */

static void check_gradient(const char *name, float delta, const float *p0, const float *y,
                           int64_t rows, int64_t cols, float scale) {
  lm_loss_spec s = spec_of(name);
  if (delta > 0) s.huber_delta = delta;
  int64_t n = rows * cols;
  float *p = malloc((size_t)n * sizeof *p), *d = malloc((size_t)n * sizeof *d);
  memcpy(p, p0, (size_t)n * sizeof *p);
  lm__loss_compute(&s, p, y, rows, cols, d, scale);
  for (int64_t i = 0; i < n; i++) {
    float keep = p[i];
    p[i] = keep + 1e-3f;
    double hi = lm__loss_compute(&s, p, y, rows, cols, NULL, 1.0f), h = (double)p[i] - keep;
    p[i] = keep - 1e-3f;
    double lo = lm__loss_compute(&s, p, y, rows, cols, NULL, 1.0f);
    h += keep - (double)p[i];
    p[i] = keep;
    double num = scale * (hi - lo) / h;
    if (!(fabs(d[i] - num) <= 1e-4 + 1e-2 * fabs(num))) {
      print_error("%s: d[%lld] = %.9g, numerical %.9g\n", name, (long long)i, d[i], num);
      fail();
    }
  }
  free(p);
  free(d);
}

static void test_gradients(void **state) {
  (void)state;
  /* Away from kinks (|p - y| vs 0 and delta) and from the clip bounds. */
  const float p[] = {0.3f, 0.55f, 0.15f, 0.7f, 0.2f, 0.45f};
  const float y[] = {0.1f, 1.0f, 0.0f, 0.0f, 1.0f, 0.5f};
  const float yb[] = {1, 0, 0, 1, 1, 0};
  const float x[] = {1.5f, -0.3f, 2.2f, -1.7f, 0.4f, 3.0f};
  const float yc[] = {0.0f, 1.0f, 0.0f, 0.2f, 0.3f, 0.5f};   /* soft, row sums 1 and 1 */
  const float yw[] = {0.5f, 0.0f, 1.0f, 0.0f, 0.0f, 0.25f};  /* row sums 1.5 and 0.25 */
  const float pu[] = {0.6f, 1.1f, 0.3f, 2.0f, 0.5f, 1.5f};    /* rows not summing to 1 */
  const float ys[] = {1, 2}, ysb[] = {0, 7};
  for (int k = 0; k < 2; k++) {
    float scale = k ? 2.5f : 1.0f;
    check_gradient("mse", 0, p, y, 2, 3, scale);
    check_gradient("mae", 0, p, y, 2, 3, scale);
    check_gradient("huber", 0, x, y, 2, 3, scale);   /* both sides of delta = 1 */
    check_gradient("huber", 0.5f, p, y, 2, 3, scale); /* both sides of delta = 0.5 */
    check_gradient("binary_crossentropy", 0, p, yb, 2, 3, scale);
    check_gradient("binary_crossentropy", 0, p, y, 3, 2, scale);
    check_gradient("binary_crossentropy:logits", 0, x, y, 2, 3, scale);
    check_gradient("categorical_crossentropy", 0, p, yc, 2, 3, scale);
    check_gradient("categorical_crossentropy", 0, pu, yw, 2, 3, scale);
    check_gradient("categorical_crossentropy:logits", 0, x, yc, 2, 3, scale);
    check_gradient("categorical_crossentropy:logits", 0, x, yw, 2, 3, scale);
    check_gradient("sparse_categorical_crossentropy", 0, pu, ys, 2, 3, scale);
    check_gradient("sparse_categorical_crossentropy", 0, pu, ysb, 2, 3, scale);
    check_gradient("sparse_categorical_crossentropy:logits", 0, x, ys, 2, 3, scale);
  }
}

/* ---- Metrics ---- */

static lm_metric metric_of(const char *name, const char *loss, int64_t cols) {
  lm_metric m;
  lm_error err = {0};
  lm_loss_spec s = spec_of(loss);
  assert_int_equal(lm__metric_init(&m, name, &s, cols, &err), 0);
  return m;
}

static void test_metric_resolution(void **state) {
  (void)state;
  struct {
    const char *name, *loss;
    int64_t cols;
    lm_metric_kind kind;
    const char *log;
  } cases[] = {
      {"acc", "binary_crossentropy", 3, LM_METRIC_BINARY_ACCURACY, "acc"},
      {"accuracy", "mse", 1, LM_METRIC_BINARY_ACCURACY, "accuracy"},
      {"acc", "sparse_categorical_crossentropy", 10, LM_METRIC_SPARSE_CATEGORICAL_ACCURACY, "acc"},
      {"accuracy", "categorical_crossentropy:logits", 10, LM_METRIC_CATEGORICAL_ACCURACY, "accuracy"},
      {"binary_accuracy", "mse", 4, LM_METRIC_BINARY_ACCURACY, "binary_accuracy"},
      {"categorical_accuracy", "mse", 4, LM_METRIC_CATEGORICAL_ACCURACY, "categorical_accuracy"},
      {"sparse_categorical_accuracy", "mse", 4, LM_METRIC_SPARSE_CATEGORICAL_ACCURACY,
       "sparse_categorical_accuracy"},
      {"mae", "mse", 2, LM_METRIC_MAE, "mae"},
      {"mean_absolute_error", "mse", 2, LM_METRIC_MAE, "mean_absolute_error"},
      {"mse", "mae", 2, LM_METRIC_MSE, "mse"},
      {"mean_squared_error", "mae", 2, LM_METRIC_MSE, "mean_squared_error"},
      {"auc", "binary_crossentropy", 1, LM_METRIC_AUC, "auc"},
      {"AUC", "binary_crossentropy", 1, LM_METRIC_AUC, "auc"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    lm_metric m = metric_of(cases[i].name, cases[i].loss, cases[i].cols);
    assert_int_equal(m.kind, cases[i].kind);
    assert_string_equal(m.name, cases[i].log);
  }
  /* Without a loss, acc goes by width. */
  lm_metric m;
  lm_error err = {0};
  assert_int_equal(lm__metric_init(&m, "acc", NULL, 5, &err), 0);
  assert_int_equal(m.kind, LM_METRIC_CATEGORICAL_ACCURACY);
}

static void test_metric_unknown(void **state) {
  (void)state;
  lm_metric m;
  lm_error err = {0};
  assert_int_equal(lm__metric_init(&m, "precision_at_7", NULL, 1, &err), -1);
  assert_int_equal(err.code, LM_ERROR_VALUE);
  assert_non_null(strstr(err.msg, "'precision_at_7'"));
  assert_non_null(strstr(err.msg, "sparse_categorical_accuracy")); /* lists the known ones */
  assert_non_null(strstr(lm_last_error(), "'precision_at_7'"));
}

static void test_binary_accuracy(void **state) {
  (void)state;
  lm_metric m = metric_of("binary_accuracy", "mse", 1);
  /* 0.5 is not > 0.5, so it predicts 0: matches 1, 1, 0, 0 */
  const float p[] = {0.6f, 0.4f, 0.5f, 0.9f}, y[] = {1, 0, 1, 0};
  lm__metric_update(&m, p, y, 4, 1);
  assert_near(lm__metric_result(&m), 0.5, 1e-12);
  /* Streams: rows (0.5, 1) of a 2-wide batch; all 6 samples weigh the same:
   * (1 + 1 + 0 + 0 + 0.5 + 1) / 6 */
  const float p2[] = {0.7f, 0.2f, 0.1f, 0.9f}, y2[] = {1, 1, 0, 1};
  lm__metric_update(&m, p2, y2, 2, 2);
  assert_near(lm__metric_result(&m), 3.5 / 6, 1e-12);
  lm__metric_reset(&m);
  assert_near(lm__metric_result(&m), 0, 0);
  /* Like Keras, a soft label never equals the 0/1 prediction. */
  const float ps[] = {0.9f}, ys[] = {0.7f};
  lm__metric_update(&m, ps, ys, 1, 1);
  assert_near(lm__metric_result(&m), 0, 0);
}

static void test_categorical_accuracy(void **state) {
  (void)state;
  lm_metric m = metric_of("categorical_accuracy", "categorical_crossentropy", 3);
  /* Keras's docstring example: 0.5 */
  const float p[] = {0.1f, 0.9f, 0.8f, 0.05f, 0.95f, 0}, y[] = {0, 0, 1, 0, 1, 0};
  lm__metric_update(&m, p, y, 2, 3);
  assert_near(lm__metric_result(&m), 0.5, 1e-12);
  /* Ties: the first maximum wins. */
  lm__metric_reset(&m);
  const float pt[] = {0.5f, 0.5f, 0, 0.5f, 0.5f, 0}, yt[] = {1, 0, 0, 0, 1, 0};
  lm__metric_update(&m, pt, yt, 2, 3);
  assert_near(lm__metric_result(&m), 0.5, 1e-12);
}

static void test_sparse_categorical_accuracy(void **state) {
  (void)state;
  lm_metric m = metric_of("acc", "sparse_categorical_crossentropy", 3);
  /* Keras's docstring example: 0.5 */
  const float p[] = {0.1f, 0.6f, 0.3f, 0.05f, 0.95f, 0}, y[] = {2, 1};
  lm__metric_update(&m, p, y, 2, 3);
  assert_near(lm__metric_result(&m), 0.5, 1e-12);
  /* A non-integer or out-of-range id never matches (and is not cast). */
  const float y2[] = {1.5f, 1e30f};
  lm__metric_update(&m, p, y2, 2, 3);
  assert_near(lm__metric_result(&m), 0.25, 1e-12);
}

static void test_mae_mse_metrics(void **state) {
  (void)state;
  const float p[] = {1, 2, 3, 5}, y[] = {1, 1, 1, 1};
  lm_metric a = metric_of("mae", "mse", 2), b = metric_of("mse", "mse", 2);
  /* fed in two batches of one row: same as the loss over both rows */
  lm__metric_update(&a, p, y, 1, 2);
  lm__metric_update(&a, p + 2, y + 2, 1, 2);
  lm__metric_update(&b, p, y, 2, 2);
  assert_near(lm__metric_result(&a), 1.75, 1e-12);
  assert_near(lm__metric_result(&b), 5.25, 1e-12);
}

static double auc_of(const float *p, const float *y, int64_t n) {
  lm_metric m = metric_of("auc", "binary_crossentropy", 1);
  lm__metric_update(&m, p, y, n, 1);
  return lm__metric_result(&m);
}

/* Keras re-implemented in Python (Keras 3 _update_confusion_matrix_variables_optimized
 * plus AUC.result for ROC/interpolation), cross-checked with a direct "pred > t_i" count
 * over the 200 float32 thresholds:
 *   bucket = max(ceil(f32(p * 199)) - 1, 0); tp[i] = #positives with bucket >= i, ...
 *   tpr = tp/(tp+fn), fpr = fp/(fp+tn); sum (fpr[i]-fpr[i+1]) * (tpr[i]+tpr[i+1]) / 2 */
static void test_auc(void **state) {
  (void)state;
  const float p[] = {0.1f, 0.2f, 0.8f, 0.9f}, y[] = {0, 0, 1, 1}, yr[] = {1, 1, 0, 0};
  assert_near(auc_of(p, y, 4), 1.0, 1e-12);  /* perfectly separated */
  assert_near(auc_of(p, yr, 4), 0.0, 1e-12); /* reversed */
  /* Keras's docstring data: 3 of the 4 positive/negative pairs are ordered: 0.75 */
  const float p3[] = {0, 0.5f, 0.3f, 0.9f};
  assert_near(auc_of(p3, y, 4), 0.75, 1e-12);
  /* A positive and a negative in the same bucket count half: 0.5 */
  const float pt[] = {0.3f, 0.3f}, yt[] = {1, 0};
  assert_near(auc_of(pt, yt, 2), 0.5, 1e-12);
  /* Mixed, with a tie at 0.5: 0.84375 */
  const float pm[] = {0.1f, 0.4f, 0.35f, 0.8f, 0.5f, 0.5f, 0.65f, 0.2f};
  const float ym[] = {0, 0, 1, 1, 1, 0, 1, 0};
  assert_near(auc_of(pm, ym, 8), 0.84375, 1e-12);
  /* The end points 0 and 1, and 0.7 / 0.702 falling in one bucket: 0.425 */
  const float pe[] = {0.0f, 1.0f, 0.7f, 0.702f, 0.1f, 0.9f, 0.45f, 0.55f, 0.3f};
  const float ye[] = {1, 0, 1, 0, 0, 1, 0, 1, 1};
  assert_near(auc_of(pe, ye, 9), 0.425, 1e-12);
  /* Streaming over batches, and a 2-wide layout flattened, give the same answer. */
  lm_metric m = metric_of("AUC", "binary_crossentropy", 2);
  lm__metric_update(&m, pm, ym, 2, 2);
  lm__metric_update(&m, pm + 4, ym + 4, 2, 2);
  assert_near(lm__metric_result(&m), 0.84375, 1e-12);
  /* Out-of-range predictions are clipped to [0, 1] as in Keras; NaN goes to 0. */
  const float po[] = {-3, 7, NAN, 0.5f}, yo[] = {0, 1, 0, 1};
  assert_near(auc_of(po, yo, 4), 1.0, 1e-12);
  lm__metric_reset(&m);
  assert_near(lm__metric_result(&m), 0, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_names),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_mse_mae),
      cmocka_unit_test(test_huber),
      cmocka_unit_test(test_binary_crossentropy),
      cmocka_unit_test(test_binary_crossentropy_logits),
      cmocka_unit_test(test_categorical_crossentropy),
      cmocka_unit_test(test_categorical_crossentropy_logits),
      cmocka_unit_test(test_sparse_categorical_crossentropy),
      cmocka_unit_test(test_sparse_out_of_range),
      cmocka_unit_test(test_empty_batch),
      cmocka_unit_test(test_gradients),
      cmocka_unit_test(test_metric_resolution),
      cmocka_unit_test(test_metric_unknown),
      cmocka_unit_test(test_binary_accuracy),
      cmocka_unit_test(test_categorical_accuracy),
      cmocka_unit_test(test_sparse_categorical_accuracy),
      cmocka_unit_test(test_mae_mse_metrics),
      cmocka_unit_test(test_auc),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
