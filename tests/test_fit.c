/* Training: multi-input / multi-output fit with weighted losses, feeding by name, shared
 * layers' gradients, validation_split, batching and callbacks, errors, optimizers,
 * predict / evaluate, determinism. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lamina/lamina.h>

#define assert_near(a, b, tol)                                                              \
  do {                                                                                      \
    double a_ = (a), b_ = (b);                                                              \
    if (!(fabs(a_ - b_) <= (tol))) {                                                        \
      print_error("%s = %.9g, expected %.9g (tol %g)\n", #a, a_, b_, (double)(tol));       \
      fail();                                                                               \
    }                                                                                       \
  } while (0)

#define assert_contains(haystack, needle)                                                   \
  do {                                                                                      \
    const char *h_ = (haystack), *n_ = (needle);                                            \
    if (!h_ || !strstr(h_, n_)) {                                                           \
      print_error("\"%s\" does not contain \"%s\"\n", h_ ? h_ : "(null)", n_);             \
      fail();                                                                               \
    }                                                                                       \
  } while (0)

#define assert_fit_ok(h)                                                                    \
  do {                                                                                      \
    if (!(h)) {                                                                             \
      print_error("fit/evaluate failed: %s\n", lm_last_error());                            \
      fail();                                                                               \
    }                                                                                       \
  } while (0)

/* A small deterministic generator for the test data, independent of the library's. */
static uint64_t data_state;
static void data_seed(uint64_t s) { data_state = s * 0x9E3779B97F4A7C15ull + 1; }
static float data_uniform(void) { /* [-1, 1) */
  data_state = data_state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((double)(data_state >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static lm_array *new_array(lm_shape shape) {
  lm_array *a = lm_array_new(LM_FLOAT32, shape);
  assert_non_null(a);
  return a;
}

static double last(const lm_history *h, const char *key) {
  const double *v = lm_history_get(h, key);
  if (!v) {
    print_error("History has no key '%s'\n", key);
    fail();
  }
  return v[lm_history_n_epochs(h) - 1];
}

static double first(const lm_history *h, const char *key) {
  const double *v = lm_history_get(h, key);
  if (!v) {
    print_error("History has no key '%s'\n", key);
    fail();
  }
  return v[0];
}

/* Every key and value the same, bit for bit. */
static void assert_same_history(const lm_history *a, const lm_history *b) {
  assert_int_equal(lm_history_n_keys(a), lm_history_n_keys(b));
  assert_int_equal(lm_history_n_epochs(a), lm_history_n_epochs(b));
  for (int k = 0; k < lm_history_n_keys(a); k++) {
    const char *key = lm_history_key(a, k);
    const double *va = lm_history_get(a, key), *vb = lm_history_get(b, key);
    assert_non_null(vb);
    for (int e = 0; e < lm_history_n_epochs(a); e++)
      if (va[e] != vb[e]) {
        print_error("%s[%d]: %.17g vs %.17g\n", key, e, va[e], vb[e]);
        fail();
      }
  }
}

/* ---- The two-input, three-output model ---- */

typedef struct multi_data {
  int64_t n;
  lm_array *a, *b, *reg, *cls, *bin;
} multi_data;

/* Targets follow a fixed rule of the inputs: reg = a0 + 2 a1 - b0, cls = one-hot argmax of
 * (a2, b1, a3), bin = [a0 + b2 > 0]. */
static multi_data multi_data_new(int64_t n, uint64_t seed) {
  multi_data d = {.n = n};
  d.a = new_array(LM_SHAPE(n, 4));
  d.b = new_array(LM_SHAPE(n, 3));
  d.reg = new_array(LM_SHAPE(n, 1));
  d.cls = new_array(LM_SHAPE(n, 3));
  d.bin = new_array(LM_SHAPE(n, 1));
  data_seed(seed);
  for (int64_t i = 0; i < n; i++) {
    float *a = lm_array_f32(d.a) + i * 4, *b = lm_array_f32(d.b) + i * 3;
    for (int j = 0; j < 4; j++) a[j] = data_uniform();
    for (int j = 0; j < 3; j++) b[j] = data_uniform();
    lm_array_f32(d.reg)[i] = a[0] + 2 * a[1] - b[0];
    float c[3] = {a[2], b[1], a[3]};
    int best = c[1] > c[0] ? 1 : 0;
    if (c[2] > c[best]) best = 2;
    lm_array_f32(d.cls)[i * 3 + best] = 1;
    lm_array_f32(d.bin)[i] = a[0] + b[2] > 0 ? 1.0f : 0.0f;
  }
  return d;
}

static void multi_data_free(multi_data *d) {
  lm_array_free(d->a);
  lm_array_free(d->b);
  lm_array_free(d->reg);
  lm_array_free(d->cls);
  lm_array_free(d->bin);
}

static lm_model *multi_model(void) {
  lm_tensor *a = lm_input(LM_SHAPE(4), .name = "a");
  lm_tensor *b = lm_input(LM_SHAPE(3), .name = "b");
  lm_tensor *h = lm_concatenate(LM_TENSORS(a, b));
  h = lm_call(lm_dense(16, .activation = LM_RELU), h);
  lm_tensor *reg = lm_call(lm_dense(1, .name = "reg"), h);
  lm_tensor *cls = lm_call(lm_dense(3, .activation = LM_SOFTMAX, .name = "cls"), h);
  lm_tensor *bin = lm_call(lm_dense(1, .activation = LM_SIGMOID, .name = "bin"), h);
  lm_model *m = lm_model_new(LM_TENSORS(a, b), LM_TENSORS(reg, cls, bin));
  assert_int_equal(lm_model_status(m), LM_OK);
  return m;
}

static void compile_multi_list(lm_model *m) {
  lm_status st = lm_compile(m, .optimizer = lm_adam(.learning_rate = 0.01),
                            .loss = LM_LOSSES("mse", "categorical_crossentropy", "binary_crossentropy"),
                            .loss_weights = LM_LOSS_WEIGHTS(0.25, 1.0, 10.0),
                            .metrics = LM_METRIC_DICT("cls", "acc", "bin", "acc", "reg", "mae"));
  if (st != LM_OK) print_error("compile: %s\n", lm_last_error());
  assert_int_equal(st, LM_OK);
}

static void compile_multi_dict(lm_model *m) {
  lm_status st = lm_compile(
      m, .optimizer = lm_adam(.learning_rate = 0.01),
      .loss = LM_LOSS_DICT("bin", "binary_crossentropy", "reg", "mse", "cls", "categorical_crossentropy"),
      .loss_weights = LM_LOSS_WEIGHT_DICT({"cls", 1.0}, {"bin", 10.0}, {"reg", 0.25}),
      .metrics = LM_METRIC_DICT("cls", "acc", "bin", "acc", "reg", "mae"));
  if (st != LM_OK) print_error("compile: %s\n", lm_last_error());
  assert_int_equal(st, LM_OK);
}

static const char *const MULTI_KEYS[] = {"loss",    "reg_loss", "cls_loss", "bin_loss",
                                         "cls_acc", "bin_acc",  "reg_mae"};
#define N_MULTI_KEYS ((int)(sizeof MULTI_KEYS / sizeof MULTI_KEYS[0]))

static lm_history *fit_multi(lm_model *m, const multi_data *d, int epochs) {
  lm_history *h = lm_fit(m, LM_FEED(d->a, d->b), LM_FEED(d->reg, d->cls, d->bin), .epochs = epochs, .batch_size = 32,
                         .validation_split = 0.2, .verbose = LM_SILENT);
  assert_fit_ok(h);
  return h;
}

static void check_multi_history(const lm_history *h, int epochs) {
  assert_int_equal(lm_history_n_epochs(h), epochs);
  assert_int_equal(lm_history_n_keys(h), 2 * N_MULTI_KEYS);
  char key[64];
  for (int k = 0; k < N_MULTI_KEYS; k++) {
    assert_non_null(lm_history_get(h, MULTI_KEYS[k]));
    snprintf(key, sizeof key, "val_%s", MULTI_KEYS[k]);
    assert_non_null(lm_history_get(h, key));
    for (int e = 0; e < epochs; e++) {
      assert_true(isfinite(lm_history_get(h, MULTI_KEYS[k])[e]));
      assert_true(isfinite(lm_history_get(h, key)[e]));
    }
  }
  /* The loss falls clearly, and so does every head's. */
  assert_true(last(h, "loss") < 0.6 * first(h, "loss"));
  assert_true(last(h, "val_loss") < 0.6 * first(h, "val_loss"));
  assert_true(last(h, "reg_loss") < first(h, "reg_loss"));
  assert_true(last(h, "cls_loss") < first(h, "cls_loss"));
  assert_true(last(h, "bin_loss") < first(h, "bin_loss"));
  assert_true(last(h, "bin_acc") > 0.8);
  /* The total is the weighted sum of the heads, each epoch. */
  for (int e = 0; e < epochs; e++) {
    double total = lm_history_get(h, "loss")[e];
    double sum = 0.25 * lm_history_get(h, "reg_loss")[e] + lm_history_get(h, "cls_loss")[e] +
                 10.0 * lm_history_get(h, "bin_loss")[e];
    assert_near(total, sum, 1e-5 * fabs(sum));
  }
}

static void test_multi_output_list(void **state) {
  (void)state;
  lm_session_clear();
  multi_data d = multi_data_new(200, 1);
  lm_set_seed(42);
  lm_model *m = multi_model();
  compile_multi_list(m);
  lm_history *h = fit_multi(m, &d, 15);
  check_multi_history(h, 15);

  /* evaluate: the same keys as fit (without val_), and total = weighted sum of the heads. */
  lm_history *e = lm_evaluate(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT);
  assert_fit_ok(e);
  assert_int_equal(lm_history_n_epochs(e), 1);
  assert_int_equal(lm_history_n_keys(e), N_MULTI_KEYS);
  for (int k = 0; k < N_MULTI_KEYS; k++) assert_non_null(lm_history_get(e, MULTI_KEYS[k]));
  double sum = 0.25 * last(e, "reg_loss") + last(e, "cls_loss") + 10.0 * last(e, "bin_loss");
  assert_near(last(e, "loss"), sum, 1e-5 * sum);
  assert_true(last(e, "reg_loss") > 0);
  /* evaluate does not depend on its batch size beyond rounding */
  lm_history *e7 = lm_evaluate(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .batch_size = 7,
                               .verbose = LM_SILENT);
  assert_fit_ok(e7);
  for (int k = 0; k < N_MULTI_KEYS; k++)
    assert_near(last(e7, MULTI_KEYS[k]), last(e, MULTI_KEYS[k]), 1e-5 * fmax(1, fabs(last(e, MULTI_KEYS[k]))));
  lm_history_free(e7);
  lm_history_free(e);
  lm_history_free(h);
  multi_data_free(&d);
  lm_session_clear();
}

/* Losses and weights given by output name configure the same training as lists. */
static void test_multi_output_dict(void **state) {
  (void)state;
  lm_session_clear();
  multi_data d = multi_data_new(200, 1);
  lm_set_seed(42);
  lm_model *m = multi_model();
  compile_multi_dict(m);
  lm_history *h = fit_multi(m, &d, 15);
  check_multi_history(h, 15);

  lm_session_clear();
  lm_set_seed(42);
  m = multi_model();
  compile_multi_list(m);
  lm_history *h2 = fit_multi(m, &d, 15);
  assert_same_history(h, h2);

  /* A loss dict naming an output that does not exist. */
  assert_int_equal(lm_compile(m, .loss = LM_LOSS_DICT("reg", "mse", "nope", "mse")), LM_ERROR_NAME);
  assert_contains(lm_last_error(), "nope");
  assert_contains(lm_last_error(), "'reg', 'cls', 'bin'");
  assert_int_equal(lm_compile(m, .loss = LM_LOSSES("mse"), .loss_weights = LM_LOSS_WEIGHT_DICT({"nope", 1.0})),
                   LM_ERROR_NAME);
  assert_contains(lm_last_error(), "nope");
  assert_int_not_equal(lm_compile(m, .loss = LM_LOSSES("mse"), .loss_weights = LM_LOSS_WEIGHTS(1.0, 2.0)), LM_OK);
  assert_contains(lm_last_error(), "loss weights");
  lm_history_free(h);
  lm_history_free(h2);
  multi_data_free(&d);
  lm_session_clear();
}

static void test_feed_by_name(void **state) {
  (void)state;
  lm_session_clear();
  multi_data d = multi_data_new(96, 2);
  lm_set_seed(9);
  lm_model *m = multi_model();
  compile_multi_list(m);
  lm_history *h1 = lm_fit(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .epochs = 3, .batch_size = 16,
                          .verbose = LM_SILENT);
  assert_fit_ok(h1);
  lm_history *e1 = lm_evaluate(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT);
  assert_fit_ok(e1);

  lm_session_clear();
  lm_set_seed(9);
  m = multi_model();
  compile_multi_list(m);
  lm_history *h2 = lm_fit(m, LM_FEED_NAMED("b", d.b, "a", d.a), LM_FEED_NAMED("bin", d.bin, "reg", d.reg, "cls", d.cls),
                          .epochs = 3, .batch_size = 16, .verbose = LM_SILENT);
  assert_fit_ok(h2);
  assert_same_history(h1, h2);
  lm_history *e2 = lm_evaluate(m, LM_FEED_NAMED("a", d.a, "b", d.b), LM_FEED_NAMED("cls", d.cls, "bin", d.bin, "reg", d.reg),
                               .verbose = LM_SILENT);
  assert_fit_ok(e2);
  assert_same_history(e1, e2);
  lm_outputs p1 = lm_predict(m, LM_FEED(d.a, d.b), .verbose = LM_SILENT);
  lm_outputs p2 = lm_predict(m, LM_FEED_NAMED("b", d.b, "a", d.a), .verbose = LM_SILENT);
  assert_int_equal(p1.n, 3);
  assert_int_equal(p2.n, 3);
  for (int k = 0; k < 3; k++)
    assert_memory_equal(lm_array_f32(p1.a[k]), lm_array_f32(p2.a[k]), (size_t)p1.a[k]->size * sizeof(float));
  /* A name missing from the feed. */
  assert_null(lm_fit(m, LM_FEED_NAMED("a", d.a), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "'b'");
  lm_outputs_free(&p1);
  lm_outputs_free(&p2);
  lm_history_free(h1);
  lm_history_free(h2);
  lm_history_free(e1);
  lm_history_free(e2);
  multi_data_free(&d);
  lm_session_clear();
}

/* ---- A shared layer receives the gradients of both branches ---- */

enum { SHARED_N = 8 };

/* in1, in2 -> shared Dense(2) -> o1 = Dense(1), o2 = Dense(1); one SGD step over all the
 * samples in one batch; returns the change of the shared kernel and bias (6 + 2 values). */
static void shared_step(double w1, double w2, const lm_array *x1, const lm_array *x2, const lm_array *y1,
                        const lm_array *y2, float *delta) {
  lm_session_clear();
  lm_set_seed(21);
  lm_tensor *in1 = lm_input(LM_SHAPE(3)), *in2 = lm_input(LM_SHAPE(3));
  lm_layer *shared = lm_dense(2, .activation = LM_TANH, .name = "shared",
                              .bias_initializer = LM_INIT(LM_CONSTANT, .a = 0.1));
  lm_tensor *o1 = lm_call(lm_dense(1, .name = "o1"), lm_call(shared, in1));
  lm_tensor *o2 = lm_call(lm_dense(1, .name = "o2"), lm_call(shared, in2));
  lm_model *m = lm_model_new(LM_TENSORS(in1, in2), LM_TENSORS(o1, o2));
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm_compile(m, .optimizer = lm_sgd(.learning_rate = 0.1), .loss = LM_LOSSES("mse"),
                              .loss_weights = LM_LOSS_WEIGHTS(w1, w2)),
                   LM_OK);
  float before[8];
  memcpy(before, lm_array_f32(lm_layer_weight(shared, 0, NULL)), 6 * sizeof(float));
  memcpy(before + 6, lm_array_f32(lm_layer_weight(shared, 1, NULL)), 2 * sizeof(float));
  lm_history *h = lm_fit(m, LM_FEED(x1, x2), LM_FEED(y1, y2), .epochs = 1, .batch_size = SHARED_N, .no_shuffle = true,
                         .verbose = LM_SILENT);
  assert_fit_ok(h);
  assert_int_equal(lm_history_n_epochs(h), 1);
  const float *k = lm_array_f32(lm_layer_weight(shared, 0, NULL)), *b = lm_array_f32(lm_layer_weight(shared, 1, NULL));
  for (int i = 0; i < 6; i++) delta[i] = k[i] - before[i];
  for (int i = 0; i < 2; i++) delta[6 + i] = b[i] - before[6 + i];
  lm_history_free(h);
}

static void test_shared_layer_gradients(void **state) {
  (void)state;
  float x1v[SHARED_N * 3], x2v[SHARED_N * 3], y1v[SHARED_N], y2v[SHARED_N];
  data_seed(5);
  for (int i = 0; i < SHARED_N; i++) {
    for (int j = 0; j < 3; j++) x1v[i * 3 + j] = data_uniform(), x2v[i * 3 + j] = data_uniform();
    y1v[i] = 0;                                        /* branch 1 already has nothing to learn... */
    y2v[i] = 3 * x2v[i * 3] - 2 * x2v[i * 3 + 2] + 1; /* ...the target depends on branch 2 */
  }
  lm_array *x1 = lm_array_wrap(LM_FLOAT32, LM_SHAPE(SHARED_N, 3), x1v);
  lm_array *x2 = lm_array_wrap(LM_FLOAT32, LM_SHAPE(SHARED_N, 3), x2v);
  lm_array *y1 = lm_array_wrap(LM_FLOAT32, LM_SHAPE(SHARED_N, 1), y1v);
  lm_array *y2 = lm_array_wrap(LM_FLOAT32, LM_SHAPE(SHARED_N, 1), y2v);
  float d10[8], d01[8], d11[8], d00[8];
  shared_step(1, 0, x1, x2, y1, y2, d10);
  shared_step(0, 1, x1, x2, y1, y2, d01);
  shared_step(1, 1, x1, x2, y1, y2, d11);
  shared_step(0, 0, x1, x2, y1, y2, d00);
  double norm01 = 0, norm10 = 0;
  for (int i = 0; i < 8; i++) {
    norm01 += fabs(d01[i]);
    norm10 += fabs(d10[i]);
    assert_near(d00[i], 0, 0);                 /* no loss, no change */
    assert_near(d11[i], d10[i] + d01[i], 1e-5); /* gradients of both uses add up */
  }
  assert_true(norm01 > 1e-3); /* branch 2 alone moves the shared kernel */
  assert_true(norm10 > 1e-4); /* and so does branch 1 */
  lm_array_free(x1);
  lm_array_free(x2);
  lm_array_free(y1);
  lm_array_free(y2);
  lm_session_clear();
}

/* ---- validation_split takes the last samples ---- */

static lm_model *small_regressor(int features, lm_optimizer *opt) {
  lm_tensor *in = lm_input(LM_SHAPE(features));
  lm_tensor *h = lm_call(lm_dense(8, .activation = LM_TANH), in);
  lm_tensor *out = lm_call(lm_dense(1), h);
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(out));
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm_compile(m, .optimizer = opt, .loss = LM_LOSSES("mse"), .metrics = LM_METRICS("mae")), LM_OK);
  return m;
}

static void test_validation_split_takes_last(void **state) {
  (void)state;
  lm_session_clear();
  enum { N = 100, F = 3 };
  float xs[N * F], ys[N];
  data_seed(7);
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < F; j++) xs[i * F + j] = data_uniform();
    ys[i] = i < 75 ? xs[i * F] + xs[i * F + 1] : 5.0f + xs[i * F + 2]; /* the last 25 stand apart */
  }
  lm_array *x = lm_array_wrap(LM_FLOAT32, LM_SHAPE(N, F), xs), *y = lm_array_wrap(LM_FLOAT32, LM_SHAPE(N, 1), ys);
  lm_set_seed(3);
  lm_model *m = small_regressor(F, lm_sgd(.learning_rate = 0.05));
  lm_history *h = lm_fit(m, LM_FEED(x), LM_FEED(y), .epochs = 3, .batch_size = 10, .validation_split = 0.25,
                         .verbose = LM_SILENT);
  assert_fit_ok(h);
  assert_non_null(lm_history_get(h, "val_loss"));
  assert_non_null(lm_history_get(h, "val_mae"));
  assert_non_null(lm_history_get(h, "mae"));

  lm_array *x_last = lm_array_wrap(LM_FLOAT32, LM_SHAPE(25, F), xs + 75 * F);
  lm_array *y_last = lm_array_wrap(LM_FLOAT32, LM_SHAPE(25, 1), ys + 75);
  lm_array *x_first = lm_array_wrap(LM_FLOAT32, LM_SHAPE(25, F), xs);
  lm_array *y_first = lm_array_wrap(LM_FLOAT32, LM_SHAPE(25, 1), ys);
  lm_history *e_last = lm_evaluate(m, LM_FEED(x_last), LM_FEED(y_last), .batch_size = 10, .verbose = LM_SILENT);
  lm_history *e_first = lm_evaluate(m, LM_FEED(x_first), LM_FEED(y_first), .batch_size = 10, .verbose = LM_SILENT);
  assert_fit_ok(e_last);
  assert_fit_ok(e_first);
  double val = last(h, "val_loss");
  assert_near(val, last(e_last, "loss"), 1e-5 * fmax(1, val));
  assert_near(last(h, "val_mae"), last(e_last, "mae"), 1e-5 * fmax(1, val));
  assert_true(fabs(val - last(e_first, "loss")) > 1.0); /* the last samples are far from the first */

  /* A split that leaves nothing to train on is refused. */
  assert_null(lm_fit(m, LM_FEED(x_last), LM_FEED(y_last), .validation_split = 0.99, .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "validation_split");
  /* validation data given explicitly gives the same val_loss as evaluate on it */
  lm_history *h2 = lm_fit(m, LM_FEED(x_first), LM_FEED(y_first), .epochs = 1, .batch_size = 10,
                          .validation_x = LM_FEED(x_last), .validation_y = LM_FEED(y_last), .verbose = LM_SILENT);
  assert_fit_ok(h2);
  lm_history *e2 = lm_evaluate(m, LM_FEED(x_last), LM_FEED(y_last), .batch_size = 10, .verbose = LM_SILENT);
  assert_fit_ok(e2);
  assert_near(last(h2, "val_loss"), last(e2, "loss"), 1e-5 * fmax(1, last(e2, "loss")));
  lm_history_free(h2);
  lm_history_free(e2);
  lm_history_free(h);
  lm_history_free(e_last);
  lm_history_free(e_first);
  lm_array_free(x);
  lm_array_free(y);
  lm_array_free(x_last);
  lm_array_free(y_last);
  lm_array_free(x_first);
  lm_array_free(y_first);
  lm_session_clear();
}

/* ---- Callbacks ---- */

typedef struct recorder {
  char log[8192];
  int train_batches, test_batches, predict_batches, epochs_begun;
  int last_batch;
  int stop_after_epoch; /* -1: never */
  int saw_val_loss, saw_loss, model_set;
  lm_model *expect_model;
} recorder;

static recorder *rec_of(lm_callback *cb) { return (recorder *)cb->user; }

static void rec_add(lm_callback *cb, const char *what, int index) {
  recorder *r = rec_of(cb);
  size_t at = strlen(r->log);
  if (index >= 0) snprintf(r->log + at, sizeof r->log - at, "%s%d;", what, index);
  else snprintf(r->log + at, sizeof r->log - at, "%s;", what);
}

static void on_train_begin(lm_callback *cb, const lm_logs *logs) {
  rec_add(cb, "train_begin", -1);
  rec_of(cb)->model_set = cb->model == rec_of(cb)->expect_model;
}
static void on_train_end(lm_callback *cb, const lm_logs *logs) { rec_add(cb, "train_end", -1); }
static void on_epoch_begin(lm_callback *cb, int epoch, const lm_logs *logs) {
  rec_add(cb, "epoch_begin", epoch);
  rec_of(cb)->epochs_begun++;
}
static void on_epoch_end(lm_callback *cb, int epoch, const lm_logs *logs) {
  recorder *r = rec_of(cb);
  rec_add(cb, "epoch_end", epoch);
  double v;
  r->saw_loss += lm_logs_get(logs, "loss", &v) && isfinite(v);
  r->saw_val_loss += lm_logs_get(logs, "val_loss", &v) && isfinite(v);
  if (r->stop_after_epoch == epoch) lm_model_stop_training(cb->model);
}
static void on_train_batch_begin(lm_callback *cb, int batch, const lm_logs *logs) { rec_add(cb, "batch_begin", batch); }
static void on_train_batch_end(lm_callback *cb, int batch, const lm_logs *logs) {
  recorder *r = rec_of(cb);
  rec_add(cb, "batch_end", batch);
  r->train_batches++;
  r->last_batch = batch;
  assert_true(lm_logs_get(logs, "loss", NULL));
}
static void on_test_begin(lm_callback *cb, const lm_logs *logs) { rec_add(cb, "test_begin", -1); }
static void on_test_end(lm_callback *cb, const lm_logs *logs) { rec_add(cb, "test_end", -1); }
static void on_test_batch_end(lm_callback *cb, int batch, const lm_logs *logs) {
  rec_add(cb, "test_batch_end", batch);
  rec_of(cb)->test_batches++;
}
static void on_predict_batch_end(lm_callback *cb, int batch, const lm_logs *logs) { rec_of(cb)->predict_batches++; }
static void on_predict_begin(lm_callback *cb, const lm_logs *logs) { rec_add(cb, "predict_begin", -1); }
static void on_predict_end(lm_callback *cb, const lm_logs *logs) { rec_add(cb, "predict_end", -1); }

static lm_callback recorder_callback(recorder *r) {
  memset(r, 0, sizeof *r);
  r->stop_after_epoch = -1;
  return (lm_callback){.on_train_begin = on_train_begin,
                       .on_train_end = on_train_end,
                       .on_epoch_begin = on_epoch_begin,
                       .on_epoch_end = on_epoch_end,
                       .on_train_batch_begin = on_train_batch_begin,
                       .on_train_batch_end = on_train_batch_end,
                       .on_test_begin = on_test_begin,
                       .on_test_end = on_test_end,
                       .on_test_batch_end = on_test_batch_end,
                       .on_predict_begin = on_predict_begin,
                       .on_predict_end = on_predict_end,
                       .on_predict_batch_end = on_predict_batch_end,
                       .user = r};
}

typedef struct small_data {
  float x[64 * 2], y[64];
  lm_array *xa, *ya;
} small_data;

static void small_data_init(small_data *d, int n) {
  data_seed(11);
  for (int i = 0; i < n; i++) {
    d->x[i * 2] = data_uniform();
    d->x[i * 2 + 1] = data_uniform();
    d->y[i] = 2 * d->x[i * 2] - d->x[i * 2 + 1] + 0.5f;
  }
  d->xa = lm_array_wrap(LM_FLOAT32, LM_SHAPE(n, 2), d->x);
  d->ya = lm_array_wrap(LM_FLOAT32, LM_SHAPE(n, 1), d->y);
}

static void small_data_free(small_data *d) {
  lm_array_free(d->xa);
  lm_array_free(d->ya);
}

static void test_partial_batch_and_callback_order(void **state) {
  (void)state;
  lm_session_clear();
  small_data d;
  small_data_init(&d, 10);
  lm_set_seed(1);
  lm_model *m = small_regressor(2, lm_sgd());
  recorder r;
  lm_callback cb = recorder_callback(&r);
  r.expect_model = m;

  /* 10 samples, batches of 4: 3 steps an epoch, the last one of 2 samples. */
  lm_history *h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 2, .batch_size = 4, .verbose = LM_SILENT,
                         .callbacks = LM_CALLBACKS(&cb));
  assert_fit_ok(h);
  assert_int_equal(r.train_batches, 6);
  assert_int_equal(r.last_batch, 2);
  assert_int_equal(r.test_batches, 0);
  assert_true(r.model_set);
  assert_string_equal(r.log,
                      "train_begin;epoch_begin0;batch_begin0;batch_end0;batch_begin1;batch_end1;batch_begin2;"
                      "batch_end2;epoch_end0;epoch_begin1;batch_begin0;batch_end0;batch_begin1;batch_end1;"
                      "batch_begin2;batch_end2;epoch_end1;train_end;");
  lm_history_free(h);

  /* With validation: 8 samples train in 2 batches, 2 validate in 1, before epoch_end. */
  cb = recorder_callback(&r);
  r.expect_model = m;
  h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 1, .batch_size = 4, .validation_split = 0.2,
             .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(&cb));
  assert_fit_ok(h);
  assert_string_equal(r.log, "train_begin;epoch_begin0;batch_begin0;batch_end0;batch_begin1;batch_end1;test_begin;"
                             "test_batch_end0;test_end;epoch_end0;train_end;");
  assert_int_equal(r.saw_loss, 1);
  assert_int_equal(r.saw_val_loss, 1);
  lm_history_free(h);

  /* evaluate and predict call their own hooks: 10 samples in batches of 4 -> 3 batches. */
  cb = recorder_callback(&r);
  lm_history *e = lm_evaluate(m, LM_FEED(d.xa), LM_FEED(d.ya), .batch_size = 4, .verbose = LM_SILENT,
                              .callbacks = LM_CALLBACKS(&cb));
  assert_fit_ok(e);
  assert_int_equal(r.test_batches, 3);
  assert_string_equal(r.log, "test_begin;test_batch_end0;test_batch_end1;test_batch_end2;test_end;");
  lm_history_free(e);
  cb = recorder_callback(&r);
  lm_outputs o = lm_predict(m, LM_FEED(d.xa), .batch_size = 4, .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(&cb));
  assert_int_equal(o.n, 1);
  assert_int_equal(r.predict_batches, 3);
  assert_string_equal(r.log, "predict_begin;predict_end;");
  lm_outputs_free(&o);
  lm_callback_free(&cb); /* no free hook: nothing to do */
  small_data_free(&d);
  lm_session_clear();
}

static void test_initial_epoch_and_stop_training(void **state) {
  (void)state;
  lm_session_clear();
  small_data d;
  small_data_init(&d, 32);
  lm_set_seed(1);
  lm_model *m = small_regressor(2, lm_sgd());
  recorder r;
  lm_callback cb = recorder_callback(&r);
  lm_history *h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 5, .initial_epoch = 3, .batch_size = 8,
                         .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(&cb));
  assert_fit_ok(h);
  assert_int_equal(lm_history_n_epochs(h), 2);
  assert_int_equal(r.epochs_begun, 2);
  assert_non_null(strstr(r.log, "epoch_begin3;"));
  assert_non_null(strstr(r.log, "epoch_end4;"));
  assert_null(strstr(r.log, "epoch_begin0;"));
  lm_history_free(h);

  /* Stopping from on_epoch_end ends training after that epoch (train_end still runs). */
  cb = recorder_callback(&r);
  r.stop_after_epoch = 1;
  h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 10, .batch_size = 8, .verbose = LM_SILENT,
             .callbacks = LM_CALLBACKS(&cb));
  assert_fit_ok(h);
  assert_int_equal(lm_history_n_epochs(h), 2);
  assert_int_equal(r.epochs_begun, 2);
  assert_non_null(strstr(r.log, "epoch_end1;train_end;"));
  lm_history_free(h);

  /* The flag does not carry over to the next fit. */
  cb = recorder_callback(&r);
  h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 3, .batch_size = 8, .verbose = LM_SILENT,
             .callbacks = LM_CALLBACKS(&cb));
  assert_fit_ok(h);
  assert_int_equal(lm_history_n_epochs(h), 3);
  lm_history_free(h);

  /* The learning rate can be read and changed, as a scheduler would. */
  assert_near(lm_model_learning_rate(m), 0.01, 1e-12);
  lm_model_set_learning_rate(m, 0.005);
  assert_near(lm_model_learning_rate(m), 0.005, 1e-12);
  small_data_free(&d);
  lm_session_clear();
}

/* ---- Errors ---- */

static void test_errors(void **state) {
  (void)state;
  lm_session_clear();
  multi_data d = multi_data_new(100, 3);
  lm_set_seed(4);
  lm_model *m = multi_model();

  /* fit, evaluate before compile; predict needs no compile, and does not count as one */
  assert_null(lm_fit(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "compile");
  assert_null(lm_evaluate(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "compile");
  lm_outputs o = lm_predict(m, LM_FEED(d.a, d.b), .verbose = LM_SILENT);
  assert_int_equal(o.n, 3);
  lm_outputs_free(&o);
  assert_null(lm_fit(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "compile");
  assert_null(lm_evaluate(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT));
  assert_near(lm_model_learning_rate(m), 0, 0);
  lm_model_set_learning_rate(m, 0.5); /* nothing to set yet */

  /* compile errors leave the model uncompiled */
  assert_int_equal(lm_compile(m, .loss = LM_LOSSES("msee")), LM_ERROR_VALUE);
  assert_contains(lm_last_error(), "msee");
  assert_contains(lm_last_error(), "mse");
  assert_int_equal(lm_compile(m, .loss = LM_LOSSES("mse"), .metrics = LM_METRICS("accurcy")), LM_ERROR_VALUE);
  assert_contains(lm_last_error(), "accurcy");
  assert_int_equal(lm_compile(m, .loss = LM_LOSSES("mse", "mse")), LM_ERROR_VALUE);
  assert_contains(lm_last_error(), "3 outputs");
  assert_int_equal(lm_compile(m, .loss = LM_LOSSES("mse:logits")), LM_ERROR_VALUE);
  assert_int_not_equal(lm_compile(m), LM_OK); /* no loss */
  assert_null(lm_fit(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "compile");
  compile_multi_list(m);

  /* wrong number of arrays */
  assert_null(lm_fit(m, LM_FEED(d.a), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "2 input(s)");
  assert_contains(lm_last_error(), "'a', 'b'");
  assert_contains(lm_last_error(), "1 array");
  assert_null(lm_fit(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "3 output(s)");
  /* an unknown input name, with the real ones */
  assert_null(lm_fit(m, LM_FEED_NAMED("a", d.a, "zzz", d.b), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "'zzz'");
  assert_contains(lm_last_error(), "'a', 'b'");
  assert_null(lm_fit(m, LM_FEED(d.a, d.b), LM_FEED_NAMED("reg", d.reg, "cls", d.cls, "binn", d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "'binn'");
  assert_contains(lm_last_error(), "'reg', 'cls', 'bin'");

  /* mismatched sample counts: x 100, y 99 */
  lm_array *y99 = lm_array_wrap(LM_FLOAT32, LM_SHAPE(99, 1), lm_array_f32(d.reg));
  lm_array *c99 = lm_array_wrap(LM_FLOAT32, LM_SHAPE(99, 3), lm_array_f32(d.cls));
  lm_array *b99 = lm_array_wrap(LM_FLOAT32, LM_SHAPE(99, 1), lm_array_f32(d.bin));
  assert_null(lm_fit(m, LM_FEED(d.a, d.b), LM_FEED(y99, c99, b99), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "100");
  assert_contains(lm_last_error(), "99");
  assert_null(lm_fit(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, c99, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "99");
  lm_array *a99 = lm_array_wrap(LM_FLOAT32, LM_SHAPE(99, 4), lm_array_f32(d.a));
  assert_null(lm_fit(m, LM_FEED(a99, d.b), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "99");
  assert_int_equal(lm_predict(m, LM_FEED(a99, d.b), .verbose = LM_SILENT).n, 0);

  /* wrong target shape */
  lm_array *c2 = lm_array_wrap(LM_FLOAT32, LM_SHAPE(100, 2), lm_array_f32(d.cls));
  assert_null(lm_fit(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, c2, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "cls");
  assert_contains(lm_last_error(), "(100, 2)");
  assert_contains(lm_last_error(), "(None, 3)");
  assert_null(lm_evaluate(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, c2, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "(100, 2)");

  /* an input of the wrong shape: both shapes in the message */
  lm_array *a5 = lm_array_wrap(LM_FLOAT32, LM_SHAPE(80, 5), lm_array_f32(d.a));
  assert_null(lm_fit(m, LM_FEED(a5, d.b), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "(None, 4)");
  assert_contains(lm_last_error(), "(80, 5)");
  assert_int_equal(lm_predict(m, LM_FEED(a5, d.b), .verbose = LM_SILENT).n, 0);
  assert_contains(lm_last_error(), "(80, 5)");
  lm_array *a3d = lm_array_wrap(LM_FLOAT32, LM_SHAPE(100, 2, 2), lm_array_f32(d.a));
  assert_null(lm_fit(m, LM_FEED(a3d, d.b), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "(100, 2, 2)");

  /* bad settings */
  assert_null(lm_fit(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .validation_split = 1.5, .verbose = LM_SILENT));
  assert_null(lm_fit(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .batch_size = -3, .verbose = LM_SILENT));
  assert_null(lm_fit(NULL, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .verbose = LM_SILENT));

  /* None of that broke the model. */
  lm_history *h = lm_fit(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .epochs = 2, .verbose = LM_SILENT);
  assert_fit_ok(h);
  assert_int_equal(lm_history_n_epochs(h), 2);
  assert_true(isfinite(last(h, "loss")));
  lm_history_free(h);
  lm_array_free(y99);
  lm_array_free(c99);
  lm_array_free(b99);
  lm_array_free(a99);
  lm_array_free(c2);
  lm_array_free(a5);
  lm_array_free(a3d);
  multi_data_free(&d);
  lm_session_clear();
}

static void test_nan_input(void **state) {
  (void)state;
  lm_session_clear();
  small_data d;
  small_data_init(&d, 32);
  lm_set_seed(2);
  lm_model *m = small_regressor(2, lm_sgd());
  float saved = d.x[17];
  d.x[17] = NAN;
  assert_null(lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 2, .batch_size = 8, .verbose = LM_SILENT));
  assert_contains(lm_last_error(), "nan");
  assert_contains(lm_last_error(), "loss");
  /* infinite targets are reported too */
  d.x[17] = saved;
  float ysaved = d.y[3];
  d.y[3] = INFINITY;
  assert_null(lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 1, .batch_size = 8, .verbose = LM_SILENT));
  assert_true(strstr(lm_last_error(), "inf") || strstr(lm_last_error(), "nan"));
  d.y[3] = ysaved;
  /* The failed fits stopped before updating: the weights are clean and training goes on. */
  lm_history *h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 2, .batch_size = 8, .verbose = LM_SILENT);
  assert_fit_ok(h);
  assert_true(isfinite(last(h, "loss")));
  lm_history_free(h);
  small_data_free(&d);
  lm_session_clear();
}

/* ---- Optimizers ---- */

static void test_optimizers_lower_loss(void **state) {
  (void)state;
  small_data d;
  small_data_init(&d, 64);
  lm_optimizer *opts[6];
  const char *names[6] = {"sgd momentum", "sgd nesterov", "rmsprop", "adam", "adamw", "adagrad"};
  for (int c = 0; c < 6; c++) {
    lm_session_clear();
    lm_set_seed(8);
    switch (c) {
    case 0: opts[c] = lm_sgd(.learning_rate = 0.05, .momentum = 0.9); break;
    case 1: opts[c] = lm_sgd(.learning_rate = 0.05, .momentum = 0.9, .nesterov = true); break;
    case 2: opts[c] = lm_rmsprop(.learning_rate = 0.01); break;
    case 3: opts[c] = lm_adam(.learning_rate = 0.03); break;
    case 4: opts[c] = lm_adamw(.learning_rate = 0.03); break;
    default: opts[c] = lm_adagrad(.learning_rate = 0.3); break;
    }
    assert_non_null(opts[c]);
    lm_tensor *in = lm_input(LM_SHAPE(2));
    lm_tensor *out = lm_call(lm_dense(1), in);
    lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(out));
    assert_int_equal(lm_compile(m, .optimizer = opts[c], .loss = LM_LOSSES("mse")), LM_OK);
    lm_history *h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 20, .batch_size = 16, .verbose = LM_SILENT);
    assert_fit_ok(h);
    double l0 = first(h, "loss"), l1 = last(h, "loss");
    if (!(l1 < 0.3 * l0)) {
      print_error("%s: loss %g -> %g\n", names[c], l0, l1);
      fail();
    }
    lm_history_free(h);
  }
  /* by name, and an unknown one */
  lm_optimizer *o = lm_optimizer_from_name("Adam");
  assert_non_null(o);
  lm_optimizer_free(o);
  assert_null(lm_optimizer_from_name("adamax"));
  assert_contains(lm_last_error(), "adamax");
  assert_null(lm_sgd(.learning_rate = -1));
  assert_null(lm_sgd(.momentum = 2));
  small_data_free(&d);
  lm_session_clear();
}

/* ---- predict and evaluate ---- */

static void test_predict_and_evaluate(void **state) {
  (void)state;
  lm_session_clear();
  multi_data d = multi_data_new(37, 4);
  lm_set_seed(6);
  lm_model *m = multi_model();
  compile_multi_list(m);
  lm_history *h = lm_fit(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .epochs = 2, .batch_size = 8,
                         .verbose = LM_SILENT);
  assert_fit_ok(h);

  /* 37 samples in batches of 8: 5 batches, the last of 5 */
  lm_outputs p8 = lm_predict(m, LM_FEED(d.a, d.b), .batch_size = 8, .verbose = LM_SILENT);
  lm_outputs pall = lm_predict(m, LM_FEED(d.a, d.b), .batch_size = 64, .verbose = LM_SILENT);
  lm_outputs p1 = lm_predict(m, LM_FEED(d.a, d.b), .batch_size = 1, .verbose = LM_SILENT);
  assert_int_equal(p8.n, 3);
  assert_int_equal(pall.n, 3);
  assert_int_equal(p1.n, 3);
  const int64_t cols[3] = {1, 3, 1};
  for (int k = 0; k < 3; k++) {
    assert_int_equal(p8.a[k]->shape.rank, 2);
    assert_int_equal(p8.a[k]->shape.dim[0], 37);
    assert_int_equal(p8.a[k]->shape.dim[1], cols[k]);
    assert_int_equal(p8.a[k]->size, 37 * cols[k]);
    for (int64_t i = 0; i < p8.a[k]->size; i++) {
      assert_near(lm_array_f32(p8.a[k])[i], lm_array_f32(pall.a[k])[i], 1e-5);
      assert_near(lm_array_f32(p1.a[k])[i], lm_array_f32(pall.a[k])[i], 1e-5);
    }
  }
  for (int i = 0; i < 37; i++) {
    const float *c = lm_array_f32(p8.a[1]) + i * 3;
    assert_near(c[0] + c[1] + c[2], 1.0, 1e-5);
    float b = lm_array_f32(p8.a[2])[i];
    assert_true(b > 0 && b < 1);
  }

  /* evaluate's keys are fit's */
  lm_history *e = lm_evaluate(m, LM_FEED(d.a, d.b), LM_FEED(d.reg, d.cls, d.bin), .batch_size = 8, .verbose = LM_SILENT);
  assert_fit_ok(e);
  assert_int_equal(lm_history_n_keys(e), lm_history_n_keys(h));
  for (int k = 0; k < lm_history_n_keys(h); k++) assert_non_null(lm_history_get(e, lm_history_key(h, k)));
  /* the losses agree with the predictions: mse of the reg head by hand */
  double mse = 0;
  for (int i = 0; i < 37; i++) {
    double diff = lm_array_f32(pall.a[0])[i] - lm_array_f32(d.reg)[i];
    mse += diff * diff;
  }
  assert_near(last(e, "reg_loss"), mse / 37, 1e-5 * fmax(1, mse / 37));
  assert_true(isnan(lm_history_last(e, "nope")));
  assert_null(lm_history_get(e, "nope"));
  assert_null(lm_history_key(e, 99));

  /* a single-output model logs plain names: loss, mae */
  lm_outputs_free(&p8);
  lm_outputs_free(&pall);
  lm_outputs_free(&p1);
  lm_history_free(e);
  lm_history_free(h);
  multi_data_free(&d);

  lm_session_clear();
  small_data s;
  small_data_init(&s, 20);
  m = small_regressor(2, lm_rmsprop());
  h = lm_fit(m, LM_FEED(s.xa), LM_FEED(s.ya), .epochs = 1, .verbose = LM_SILENT);
  assert_fit_ok(h);
  e = lm_evaluate(m, LM_FEED(s.xa), LM_FEED(s.ya), .verbose = LM_SILENT);
  assert_fit_ok(e);
  assert_int_equal(lm_history_n_keys(h), 2);
  assert_int_equal(lm_history_n_keys(e), 2);
  assert_non_null(lm_history_get(h, "loss"));
  assert_non_null(lm_history_get(h, "mae"));
  assert_non_null(lm_history_get(e, "loss"));
  assert_non_null(lm_history_get(e, "mae"));
  lm_history_free(h);
  lm_history_free(e);
  small_data_free(&s);
  lm_session_clear();
}

/* ---- Determinism ---- */

static lm_history *seeded_run(uint64_t seed, const small_data *d) {
  lm_session_clear();
  lm_set_seed(seed);
  lm_tensor *in = lm_input(LM_SHAPE(2));
  lm_tensor *h = lm_call(lm_dense(16, .activation = LM_RELU), in);
  h = lm_call(lm_dropout(0.3), h);
  lm_tensor *out = lm_call(lm_dense(1), h);
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(out));
  assert_int_equal(lm_compile(m, .optimizer = lm_adam(), .loss = LM_LOSSES("mse"), .metrics = LM_METRICS("mae")), LM_OK);
  lm_history *hist = lm_fit(m, LM_FEED(d->xa), LM_FEED(d->ya), .epochs = 4, .batch_size = 8, .validation_split = 0.25,
                            .verbose = LM_SILENT);
  assert_fit_ok(hist);
  return hist;
}

static void test_determinism(void **state) {
  (void)state;
  small_data d;
  small_data_init(&d, 64);
  lm_history *a = seeded_run(123, &d);
  lm_history *b = seeded_run(123, &d);
  lm_history *c = seeded_run(124, &d);
  assert_same_history(a, b);
  assert_int_equal(lm_history_n_keys(a), 4); /* loss, mae, val_loss, val_mae */
  assert_true(lm_history_get(a, "loss")[0] != lm_history_get(c, "loss")[0]);
  lm_history_free(a);
  lm_history_free(b);
  lm_history_free(c);
  small_data_free(&d);
  lm_session_clear();
}

/* Callbacks see the validation arrays: for validation_split, the last rows of x and y. */
typedef struct seen_validation {
  int n_x, n_y;
  int64_t rows;
  float first_x, first_y;
} seen_validation;

static void record_validation(lm_callback *cb, const lm_logs *logs) {
  (void)logs;
  seen_validation *seen = cb->user;
  seen->n_x = cb->n_validation_x, seen->n_y = cb->n_validation_y;
  if (seen->n_x) {
    seen->rows = cb->validation_x[0]->shape.dim[0];
    seen->first_x = lm_array_f32(cb->validation_x[0])[0];
    seen->first_y = lm_array_f32(cb->validation_y[0])[0];
  }
}

static void test_callbacks_see_validation_data(void **state) {
  (void)state;
  lm_tensor *in = lm_input(LM_SHAPE(3));
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(lm_call(lm_dense(1), in)));
  lm_compile(m, .optimizer = lm_sgd(), .loss = LM_LOSSES("mse"));
  lm_array *x = lm_array_new(LM_FLOAT32, LM_SHAPE(20, 3)), *y = lm_array_new(LM_FLOAT32, LM_SHAPE(20, 1));
  for (int i = 0; i < 60; i++) lm_array_f32(x)[i] = (float)i;
  for (int i = 0; i < 20; i++) lm_array_f32(y)[i] = (float)(100 + i);
  seen_validation seen = {0};
  lm_callback cb = {.on_train_begin = record_validation, .user = &seen};
  lm_history *h = lm_fit(m, LM_FEED(x), LM_FEED(y), .validation_split = 0.25, .callbacks = LM_CALLBACKS(&cb),
                         .verbose = LM_SILENT);
  assert_non_null(h);
  assert_int_equal(seen.n_x, 1);
  assert_int_equal(seen.n_y, 1);
  assert_int_equal(seen.rows, 5);
  assert_true(seen.first_x == 45.0f && seen.first_y == 115.0f); /* row 15 */
  lm_history_free(h);
  /* Without validation the callback is told so. */
  h = lm_fit(m, LM_FEED(x), LM_FEED(y), .callbacks = LM_CALLBACKS(&cb), .verbose = LM_SILENT);
  assert_int_equal(seen.n_x, 0);
  lm_history_free(h);
  lm_array_free(x);
  lm_array_free(y);
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_multi_output_list),
      cmocka_unit_test(test_multi_output_dict),
      cmocka_unit_test(test_feed_by_name),
      cmocka_unit_test(test_shared_layer_gradients),
      cmocka_unit_test(test_validation_split_takes_last),
      cmocka_unit_test(test_partial_batch_and_callback_order),
      cmocka_unit_test(test_initial_epoch_and_stop_training),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_nan_input),
      cmocka_unit_test(test_optimizers_lower_loss),
      cmocka_unit_test(test_predict_and_evaluate),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_callbacks_see_validation_data),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
