/* Built-in callbacks: their decisions replayed against real Keras (tests/fixtures/
 * keras_callbacks.txt: stop epochs, restored weights, learning rates, logs, CSV files,
 * messages and warnings word for word), then inside lm_fit (restore_best_weights on a
 * model whose val_loss turns worse, CSV files, schedules, a mid-epoch stop), LambdaCallback,
 * Python's float formatting, and bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "train/callbacks/monitor.h"
#include <lamina/lamina.h>

#define assert_contains(haystack, needle)                                                   \
  do {                                                                                      \
    const char *h_ = (haystack), *n_ = (needle);                                            \
    if (!h_ || !strstr(h_, n_)) {                                                           \
      print_error("\"%s\" does not contain \"%s\"\n", h_ ? h_ : "(null)", n_);             \
      fail();                                                                               \
    }                                                                                       \
  } while (0)

#define assert_text(what, got, want)                                                        \
  do {                                                                                      \
    const char *g_ = (got), *w_ = (want);                                                   \
    if (strcmp(g_, w_)) {                                                                   \
      print_error("%s: %s differs\n--- lamina ---\n%s\n--- Keras ---\n%s\n", case_name, what, g_, w_); \
      fail();                                                                               \
    }                                                                                       \
  } while (0)

static const char *case_name = "";

/* ---- Capturing stdout and stderr at the descriptor level ---- */
typedef struct capture {
  int saved_out, saved_err;
  FILE *out, *err;
} capture;

static char *slurp(FILE *f) {
  fflush(f);
  long n = ftell(f);
  char *s = calloc((size_t)(n > 0 ? n : 0) + 1, 1);
  assert_non_null(s);
  rewind(f);
  if (n > 0) assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  return s;
}

static void capture_begin(capture *c) {
  fflush(stdout);
  fflush(stderr);
  c->out = tmpfile();
  c->err = tmpfile();
  assert_non_null(c->out);
  assert_non_null(c->err);
  c->saved_out = dup(1);
  c->saved_err = dup(2);
  dup2(fileno(c->out), 1);
  dup2(fileno(c->err), 2);
}

/* Restores the descriptors; *out and *err are the captured texts (free them). */
static void capture_end(capture *c, char **out, char **err) {
  fflush(stdout);
  fflush(stderr);
  dup2(c->saved_out, 1);
  dup2(c->saved_err, 2);
  close(c->saved_out);
  close(c->saved_err);
  *out = slurp(c->out);
  *err = slurp(c->err);
  fclose(c->out);
  fclose(c->err);
}

/* ---- Fixture helpers ---- */
static fx_file fixtures;

static int setup(void **state) {
  (void)state;
  char path[1024];
  if (fx_load(&fixtures, fx_source_path(path, sizeof path, "tests/fixtures/keras_callbacks.txt"))) {
    fprintf(stderr, "%s\n", fixtures.error);
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  fx_free(&fixtures);
  return 0;
}

/* The text held in attrs key.0, key.1, ... percent-decoded; "" when absent. Free it. */
static char *fx_text(const fx_case *c, const char *key) {
  size_t cap = 256, len = 0;
  char *s = malloc(cap);
  assert_non_null(s);
  for (int i = 0;; i++) {
    char k[96];
    snprintf(k, sizeof k, "%s.%d", key, i);
    const char *piece = fx_attr_get(c, k);
    if (!piece) break;
    for (const char *p = piece; *p; p++) {
      if (len + 2 > cap) assert_non_null(s = realloc(s, cap *= 2));
      if (*p == '%' && p[1] && p[2]) {
        char hex[3] = {p[1], p[2], 0};
        s[len++] = (char)strtol(hex, NULL, 16);
        p += 2;
      } else {
        s[len++] = *p;
      }
    }
  }
  s[len] = 0;
  return s;
}

static const char *attr_or(const fx_case *c, const char *key, const char *fallback) {
  const char *v = fx_attr_get(c, key);
  return v ? v : fallback;
}
static int attr_int(const fx_case *c, const char *key, int fallback) {
  const char *v = fx_attr_get(c, key);
  return v ? atoi(v) : fallback;
}
static double attr_double(const fx_case *c, const char *key, double fallback) {
  const char *v = fx_attr_get(c, key);
  return v && strcmp(v, "None") ? strtod(v, NULL) : fallback;
}

/* Keras's warnings as lamina prints them. */
static char *expected_warnings(const fx_case *c) {
  char *w = fx_text(c, "warnings");
  size_t n = 0;
  for (const char *p = w; *p; p++) n += *p == '\n';
  char *s = calloc(strlen(w) + n * 16 + 1, 1);
  assert_non_null(s);
  for (char *line = w, *nl; (nl = strchr(line, '\n')); line = nl + 1)
    sprintf(s + strlen(s), "UserWarning: %.*s\n", (int)(nl - line), line);
  free(w);
  return s;
}

/* Logs of one row of the fixture's "logs" array, keys from attr "keys". */
static void row_logs(const fx_case *c, int row, lm_logs *logs) {
  char keys[512];
  snprintf(keys, sizeof keys, "%s", fx_attr_get(c, "keys"));
  const fx_array *a = fx_array_get(c, "logs");
  assert_non_null(a);
  memset(logs, 0, sizeof *logs);
  int k = 0;
  for (char *save = NULL, *key = strtok_r(keys, ",", &save); key; key = strtok_r(NULL, ",", &save), k++)
    lm__logs_set(logs, key, (double)a->f[row * a->dim[1] + k]);
  assert_int_equal(k, a->dim[1]);
}

/* Dense(2) on 3 features, compiled with SGD(lr): what the fixture's callbacks saw. */
static lm_model *tiny_model(double lr) {
  lm_tensor *in = lm_input(LM_SHAPE(3));
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(lm_call(lm_dense(2), in)));
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm_compile(m, .optimizer = lm_sgd(.learning_rate = lr), .loss = LM_LOSSES("mse")), LM_OK);
  return m;
}

static lm_array *first_weight(lm_model *m) {
  for (int i = 0; i < lm_model_n_layers(m); i++) {
    lm_array *w = lm_layer_weight(lm_model_get_layer(m, i), 0, NULL);
    if (w) return w;
  }
  fail();
  return NULL;
}

static void mark_weights(lm_model *m, float value) {
  for (int i = 0; i < lm_model_n_layers(m); i++) {
    lm_array *w;
    for (int k = 0; (w = lm_layer_weight(lm_model_get_layer(m, i), k, NULL)); k++)
      for (int64_t j = 0; j < w->size; j++) lm_array_f32(w)[j] = value;
  }
}

static void reset_fit_state(lm_callback *cb, lm_model *m) {
  cb->model = m;
  m->stop_training = false;
}

/* ---- EarlyStopping against Keras ---- */
static void test_early_stopping_matches_keras(void **state) {
  (void)state;
  int cases = 0;
  for (int ci = 0; ci < fixtures.n_cases; ci++) {
    fx_case *c = &fixtures.cases[ci];
    if (!fx_has_prefix(c->name, "early_stopping/")) continue;
    case_name = c->name;
    lm_model *m = tiny_model(0.1);
    mark_weights(m, 0);
    const char *baseline = attr_or(c, "baseline", "None");
    capture cap;
    capture_begin(&cap);
    lm_callback *cb = lm_early_stopping(.monitor = attr_or(c, "monitor", NULL),
                                        .min_delta = attr_double(c, "min_delta", 0),
                                        .patience = attr_int(c, "patience", 0), .verbose = attr_int(c, "verbose", 0),
                                        .mode = attr_or(c, "mode", NULL), .baseline = attr_double(c, "baseline", 0),
                                        .has_baseline = strcmp(baseline, "None") != 0,
                                        .restore_best_weights = attr_int(c, "restore_best_weights", 0),
                                        .start_from_epoch = attr_int(c, "start_from_epoch", 0));
    int ran = 0;
    if (cb) {
      reset_fit_state(cb, m);
      lm_logs logs = {0};
      cb->on_train_begin(cb, &logs);
      const fx_array *rows = fx_array_get(c, "logs");
      for (int e = attr_int(c, "first_epoch", 0); e < rows->dim[0]; e++) {
        mark_weights(m, (float)(e + 1));
        row_logs(c, e, &logs);
        cb->on_epoch_end(cb, e, &logs);
        ran++;
        if (m->stop_training) break;
      }
      cb->on_train_end(cb, &logs);
    }
    char *out, *err;
    capture_end(&cap, &out, &err);
    assert_non_null(cb);
    char *want_out = fx_text(c, "stdout"), *want_err = expected_warnings(c);
    if (ran != attr_int(c, "ran", -1)) {
      print_error("%s: ran %d epochs, Keras %d\n", c->name, ran, attr_int(c, "ran", -1));
      fail();
    }
    double after = lm_array_f32(first_weight(m))[0];
    if (after != attr_double(c, "weights_after", NAN)) {
      print_error("%s: weights of epoch %g after training, Keras %g\n", c->name, after - 1,
                  attr_double(c, "weights_after", NAN) - 1);
      fail();
    }
    assert_text("stdout", out, want_out);
    assert_text("warnings", err, want_err);
    free(out), free(err), free(want_out), free(want_err);
    lm_callback_free(cb);
    lm_session_clear();
    cases++;
  }
  assert_true(cases >= 20);
}

/* ---- ReduceLROnPlateau against Keras ---- */
static void test_reduce_lr_matches_keras(void **state) {
  (void)state;
  int cases = 0;
  for (int ci = 0; ci < fixtures.n_cases; ci++) {
    fx_case *c = &fixtures.cases[ci];
    if (!fx_has_prefix(c->name, "reduce_lr/") || fx_has_prefix(c->name, "reduce_lr/bad_factor")) continue;
    case_name = c->name;
    lm_model *m = tiny_model(attr_double(c, "lr0", 0));
    const char *min_delta = attr_or(c, "min_delta", "default");
    /* Keras's patience=0 acts as 1; lamina's 0 is the default 10. */
    int patience = fx_attr_get(c, "patience") ? attr_int(c, "patience", 0) : 0;
    if (fx_attr_get(c, "patience") && patience == 0) patience = 1;
    capture cap;
    capture_begin(&cap);
    lm_callback *cb = lm_reduce_lr_on_plateau(
        .monitor = attr_or(c, "monitor", NULL), .factor = attr_double(c, "factor", 0), .patience = patience,
        .verbose = attr_int(c, "verbose", 0), .mode = attr_or(c, "mode", NULL),
        .min_delta = strcmp(min_delta, "default") ? strtod(min_delta, NULL) : 0,
        .zero_min_delta = strcmp(min_delta, "default") && strtod(min_delta, NULL) == 0,
        .cooldown = attr_int(c, "cooldown", 0), .min_lr = attr_double(c, "min_lr", 0));
    const fx_array *rows = fx_array_get(c, "logs"), *logged = fx_array_get(c, "logged_lr"),
                   *after = fx_array_get(c, "lr_after");
    int bad = 0;
    if (cb) {
      reset_fit_state(cb, m);
      lm_logs logs = {0};
      cb->on_train_begin(cb, &logs);
      for (int e = 0; e < rows->dim[0]; e++) {
        row_logs(c, e, &logs);
        cb->on_epoch_end(cb, e, &logs);
        double lr_logged = NAN;
        lm_logs_get(&logs, "learning_rate", &lr_logged);
        float lr_now = (float)lm_model_learning_rate(m);
        if (lr_logged != (double)logged->f[e] || lr_now != after->f[e]) {
          if (bad++ < 4)
            fprintf(stderr, "%s: epoch %d: logged %.17g (Keras %.17g), rate after %.9g (Keras %.9g)\n", c->name, e,
                    lr_logged, (double)logged->f[e], (double)lr_now, (double)after->f[e]);
        }
      }
    }
    char *out, *err;
    capture_end(&cap, &out, &err);
    assert_non_null(cb);
    assert_int_equal(bad, 0);
    char *want_out = fx_text(c, "stdout"), *want_err = expected_warnings(c);
    assert_text("stdout", out, want_out);
    assert_text("warnings", err, want_err);
    free(out), free(err), free(want_out), free(want_err);
    lm_callback_free(cb);
    lm_session_clear();
    cases++;
  }
  assert_true(cases >= 12);
}

static void test_reduce_lr_bad_factor_matches_keras(void **state) {
  (void)state;
  int cases = 0;
  for (int ci = 0; ci < fixtures.n_cases; ci++) {
    fx_case *c = &fixtures.cases[ci];
    if (!fx_has_prefix(c->name, "reduce_lr/bad_factor")) continue;
    case_name = c->name;
    assert_null(lm_reduce_lr_on_plateau(.factor = attr_double(c, "factor", 0)));
    char *want = fx_text(c, "error");
    assert_text("error", lm_last_error(), want);
    free(want);
    cases++;
  }
  assert_int_equal(cases, 2);
  assert_null(lm_reduce_lr_on_plateau(.factor = -0.5));
  assert_contains(lm_last_error(), "ReduceLROnPlateau");
  assert_null(lm_reduce_lr_on_plateau(.patience = -1));
  assert_null(lm_reduce_lr_on_plateau(.min_lr = -1));
}

/* ---- LearningRateScheduler against Keras ---- */
static double halve_from_2(int epoch, double lr, void *user) { return epoch >= 2 ? lr * 0.5 : lr; }
static double inverse(int epoch, double lr, void *user) { return 0.1 / (epoch + 1); }
static double exp_decay(int epoch, double lr, void *user) { return lr * exp(-0.1); }
static double step(int epoch, double lr, void *user) { return epoch < 4 ? 0.05 : 0.005; }

static void test_lr_scheduler_matches_keras(void **state) {
  (void)state;
  static const struct {
    const char *name;
    lm_lr_schedule fn;
  } schedules[] = {{"halve_from_2", halve_from_2}, {"inverse", inverse}, {"exp_decay", exp_decay}, {"step", step}};
  int cases = 0;
  for (int ci = 0; ci < fixtures.n_cases; ci++) {
    fx_case *c = &fixtures.cases[ci];
    if (!fx_has_prefix(c->name, "lr_scheduler/")) continue;
    case_name = c->name;
    lm_lr_schedule fn = NULL;
    for (size_t k = 0; k < sizeof schedules / sizeof schedules[0]; k++)
      if (!strcmp(schedules[k].name, fx_attr_get(c, "schedule"))) fn = schedules[k].fn;
    assert_non_null(fn);
    lm_model *m = tiny_model(attr_double(c, "lr0", 0));
    const fx_array *rows = fx_array_get(c, "logs"), *logged = fx_array_get(c, "logged_lr");
    int first = attr_int(c, "first_epoch", 0), bad = 0;
    capture cap;
    capture_begin(&cap);
    lm_callback *cb = lm_learning_rate_scheduler(fn, .verbose = attr_int(c, "verbose", 0));
    if (cb) {
      reset_fit_state(cb, m);
      lm_logs logs = {0};
      for (int e = first; e < rows->dim[0]; e++) {
        memset(&logs, 0, sizeof logs);
        cb->on_epoch_begin(cb, e, &logs);
        row_logs(c, e, &logs);
        cb->on_epoch_end(cb, e, &logs);
        double lr = NAN;
        lm_logs_get(&logs, "learning_rate", &lr);
        if (lr != (double)logged->f[e - first] && bad++ < 4)
          fprintf(stderr, "%s: epoch %d: logged %.17g, Keras %.17g\n", c->name, e, lr, (double)logged->f[e - first]);
      }
    }
    char *out, *err;
    capture_end(&cap, &out, &err);
    assert_non_null(cb);
    assert_int_equal(bad, 0);
    assert_int_equal(logged->n, rows->dim[0] - first);
    char *want_out = fx_text(c, "stdout");
    assert_text("stdout", out, want_out);
    assert_text("warnings", err, "");
    free(out), free(err), free(want_out);
    lm_callback_free(cb);
    lm_session_clear();
    cases++;
  }
  assert_int_equal(cases, 5);
}

/* ---- TerminateOnNaN against Keras, through the batch hook ---- */
static void test_terminate_on_nan_matches_keras(void **state) {
  (void)state;
  int cases = 0;
  for (int ci = 0; ci < fixtures.n_cases; ci++) {
    fx_case *c = &fixtures.cases[ci];
    if (!fx_has_prefix(c->name, "terminate_on_nan/")) continue;
    case_name = c->name;
    lm_model *m = tiny_model(0.1);
    const fx_array *rows = fx_array_get(c, "logs");
    lm__fail(NULL, LM_OK, "%s", ""); /* clears the last error */
    capture cap;
    capture_begin(&cap);
    lm_callback *cb = lm_terminate_on_nan(.raise_error = attr_int(c, "raise_error", 0));
    int ran = 0;
    if (cb) {
      reset_fit_state(cb, m);
      lm_logs logs = {0};
      for (int b = 0; b < rows->dim[0]; b++) {
        row_logs(c, b, &logs);
        ran++;
        cb->on_train_batch_end(cb, b, &logs);
        if (m->stop_training) break;
      }
    }
    char *out, *err;
    capture_end(&cap, &out, &err);
    assert_non_null(cb);
    assert_int_equal(ran, attr_int(c, "ran", -1));
    assert_int_equal(m->stop_training, attr_int(c, "stopped", -1));
    char *want_out = fx_text(c, "stdout"), *want_error = fx_text(c, "error");
    assert_text("stdout", out, want_out);
    assert_text("error", lm_last_error(), want_error);
    free(out), free(err), free(want_out), free(want_error);
    lm_callback_free(cb);
    lm_session_clear();
    cases++;
  }
  assert_int_equal(cases, 5);

  /* No "loss" in the logs: nothing to judge. */
  lm_callback *cb = lm_terminate_on_nan();
  lm_logs logs = {0};
  lm__logs_set(&logs, "val_loss", NAN);
  cb->on_train_batch_end(cb, 0, &logs);
  lm_callback_free(cb);
}

/* ---- CSVLogger against Keras: the file, byte for byte ---- */
static char tmp_dir[64];

static void make_tmp_dir(void) {
  snprintf(tmp_dir, sizeof tmp_dir, "/tmp/lamina_callbacks_XXXXXX");
  assert_non_null(mkdtemp(tmp_dir));
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  char *s = slurp(f);
  fclose(f);
  return s;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_csv_logger_matches_keras(void **state) {
  (void)state;
  make_tmp_dir();
  char path[128];
  snprintf(path, sizeof path, "%s/log.csv", tmp_dir);
  int cases = 0;
  for (int ci = 0; ci < fixtures.n_cases; ci++) {
    fx_case *c = &fixtures.cases[ci];
    if (!fx_has_prefix(c->name, "csv_logger/")) continue;
    case_name = c->name;
    remove(path);
    if (fx_attr_get(c, "initial")) {
      char *initial = fx_text(c, "initial");
      write_file(path, initial);
      free(initial);
    }
    lm_model *m = tiny_model(0.1);
    lm_callback *cb =
        lm_csv_logger(path, .separator = fx_attr_get(c, "separator")[0], .append = attr_int(c, "append", 0));
    assert_non_null(cb);
    for (int r = 0; r < attr_int(c, "runs", 0); r++) {
      char key[64];
      snprintf(key, sizeof key, "run%d.first", r);
      int first = attr_int(c, key, 0);
      snprintf(key, sizeof key, "run%d.epochs", r);
      int epochs = attr_int(c, key, 0);
      reset_fit_state(cb, m);
      lm_logs logs = {0};
      cb->on_train_begin(cb, &logs);
      for (int e = 0; e < epochs; e++) {
        snprintf(key, sizeof key, "run%d.logs%d", r, e);
        char *text = fx_text(c, key);
        memset(&logs, 0, sizeof logs);
        for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
          *nl = 0;
          char *tab = strchr(line, '\t');
          assert_non_null(tab);
          *tab = 0;
          lm__logs_set(&logs, line, strtod(tab + 1, NULL));
        }
        free(text);
        cb->on_epoch_end(cb, first + e, &logs);
      }
      cb->on_train_end(cb, &logs);
    }
    assert_false(m->stop_training);
    char *got = read_file(path), *want = fx_text(c, "csv");
    assert_non_null(got);
    assert_text("csv", got, want);
    free(got), free(want);
    lm_callback_free(cb);
    lm_session_clear();
    cases++;
  }
  assert_int_equal(cases, 11);
  remove(path);
  rmdir(tmp_dir);
}

/* ---- Python's float repr ---- */
static void test_python_float_repr(void **state) {
  (void)state;
  static const struct {
    const char *repr;
    double v;
  } cases[] = {
      {"5e-324", 0x0.0000000000001p-1022},     {"1.7976931348623157e+308", 0x1.fffffffffffffp+1023},
      {"0.30000000000000004", 0x1.3333333333334p-2}, {"0.0001", 0x1.a36e2eb1c432dp-14},
      {"9.999999999999999e-05", 0x1.a36e2eb1c432cp-14}, {"1e+16", 0x1.1c37937e08000p+53},
      {"9999999999999998.0", 0x1.1c37937e07fffp+53}, {"123.456", 0x1.edd2f1a9fbe77p+6},
      {"-2.5e-10", -0x1.12e0be826d695p-32},      {"0.3333333333333333", 0x1.5555555555555p-2},
      {"9.5367431640625e-07", 0x1.0000000000000p-20}, {"1e+100", 0x1.249ad2594c37dp+332},
      {"1.2345678901234568e+16", 0x1.5ee2a2eb5a5c4p+53}, {"0.5", 0.5},
      {"1e-07", 0x1.ad7f29abcaf48p-24},          {"4.35", 0x1.1666666666666p+2},
      {"-1e+22", -0x1.0f0cf064dd592p+73},        {"0.0", 0.0},
      {"-0.0", -0.0},                            {"nan", NAN},
      {"-inf", -INFINITY},                       {"100.0", 100.0},
      {"0.10000000149011612", (double)0.1f},     {"12.0", 12.0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[40];
    assert_string_equal(lm__py_float(cases[i].v, buf, sizeof buf), cases[i].repr);
  }
}

/* ---- Inside fit ---- */

/* y = 2 (x0 + x1) to train on, y = x0 + x1 to validate: from zero weights the model passes
 * the validation optimum on its way, so val_loss falls, then rises. */
typedef struct fit_data {
  float x[96 * 2], y[96], vx[32 * 2], vy[32];
  lm_array *xa, *ya, *vxa, *vya;
} fit_data;

static void fit_data_init(fit_data *d) {
  uint64_t s = 7;
  for (int i = 0; i < 96 + 32; i++) {
    float a[2];
    for (int k = 0; k < 2; k++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      a[k] = (float)((double)(s >> 11) * 0x1.0p-53 * 2 - 1);
    }
    float *x = i < 96 ? d->x + 2 * i : d->vx + 2 * (i - 96);
    x[0] = a[0], x[1] = a[1];
    if (i < 96) d->y[i] = 2 * (a[0] + a[1]);
    else d->vy[i - 96] = a[0] + a[1];
  }
  d->xa = lm_array_wrap(LM_FLOAT32, LM_SHAPE(96, 2), d->x);
  d->ya = lm_array_wrap(LM_FLOAT32, LM_SHAPE(96, 1), d->y);
  d->vxa = lm_array_wrap(LM_FLOAT32, LM_SHAPE(32, 2), d->vx);
  d->vya = lm_array_wrap(LM_FLOAT32, LM_SHAPE(32, 1), d->vy);
}

static void fit_data_free(fit_data *d) {
  lm_array_free(d->xa), lm_array_free(d->ya), lm_array_free(d->vxa), lm_array_free(d->vya);
}

static lm_model *line_model(double lr, const char *metric) {
  lm_tensor *in = lm_input(LM_SHAPE(2));
  lm_tensor *out = lm_call(lm_dense(1, .kernel_initializer = LM_INIT(LM_ZEROS)), in);
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(out));
  lm_status st = metric ? lm_compile(m, .optimizer = lm_sgd(.learning_rate = lr), .loss = LM_LOSSES("mse"),
                                     .metrics = LM_METRICS(metric))
                        : lm_compile(m, .optimizer = lm_sgd(.learning_rate = lr), .loss = LM_LOSSES("mse"));
  assert_int_equal(st, LM_OK);
  return m;
}

/* Weights (kernel 2, bias 1) at each epoch's end, through a LambdaCallback. */
typedef struct snapshots {
  lm_model *m;
  float w[64][3];
  int n;
} snapshots;

static void snapshot(int epoch, const lm_logs *logs, void *user) {
  snapshots *s = user;
  lm_layer *dense = lm_model_get_layer(s->m, 1);
  memcpy(s->w[epoch], lm_array_f32(lm_layer_weight(dense, 0, NULL)), 2 * sizeof(float));
  s->w[epoch][2] = lm_array_f32(lm_layer_weight(dense, 1, NULL))[0];
  s->n = epoch + 1;
}

static void test_fit_early_stopping_restores_best_weights(void **state) {
  (void)state;
  lm_session_clear();
  lm_set_seed(3);
  fit_data d;
  fit_data_init(&d);
  lm_model *m = line_model(0.05, NULL);
  snapshots snaps = {.m = m};
  lm_callback *snap = lm_lambda_callback(.on_epoch_end = snapshot, .user = &snaps);
  lm_callback *es = lm_early_stopping(.patience = 2, .restore_best_weights = true, .verbose = 1);
  capture cap;
  capture_begin(&cap);
  lm_history *h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 40, .batch_size = 16, .verbose = LM_SILENT,
                         .validation_x = LM_FEED(d.vxa), .validation_y = LM_FEED(d.vya),
                         .callbacks = LM_CALLBACKS(snap, es));
  char *out, *err;
  capture_end(&cap, &out, &err);
  assert_non_null(h);
  const double *val = lm_history_get(h, "val_loss");
  int n = lm_history_n_epochs(h), best = 0;
  for (int e = 1; e < n; e++)
    if ((float)val[e] < (float)val[best]) best = e;
  /* val_loss fell for a while, then rose for patience + 1 epochs: fit stopped early. */
  assert_true(best >= 2);
  assert_int_equal(n, best + 3);
  assert_int_equal(snaps.n, n);
  lm_layer *dense = lm_model_get_layer(m, 1);
  const float *kernel = lm_array_f32(lm_layer_weight(dense, 0, NULL));
  const float *bias = lm_array_f32(lm_layer_weight(dense, 1, NULL));
  assert_memory_equal(kernel, snaps.w[best], 2 * sizeof(float));
  assert_true(bias[0] == snaps.w[best][2]);
  assert_true(memcmp(snaps.w[best], snaps.w[n - 1], sizeof snaps.w[0]) != 0);
  char want[256];
  snprintf(want, sizeof want,
           "Epoch %d: early stopping\nRestoring model weights from the end of the best epoch: %d.\n", n, best + 1);
  assert_string_equal(out, want);
  assert_string_equal(err, "");
  free(out), free(err);
  lm_history_free(h);

  /* The same callback serves a second fit from scratch (Keras resets it at train begin):
   * from the best weights, val_loss only rises, so epoch 1's weights are restored after epoch 3. */
  capture_begin(&cap);
  h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 10, .batch_size = 16, .verbose = LM_SILENT,
             .validation_x = LM_FEED(d.vxa), .validation_y = LM_FEED(d.vya), .callbacks = LM_CALLBACKS(es));
  capture_end(&cap, &out, &err);
  assert_non_null(h);
  assert_int_equal(lm_history_n_epochs(h), 3);
  assert_string_equal(out, "Epoch 3: early stopping\nRestoring model weights from the end of the best epoch: 1.\n");
  free(out), free(err);
  lm_history_free(h);
  lm_callback_free(snap);
  lm_callback_free(es);
  fit_data_free(&d);
  lm_session_clear();
}

/* Every cell of a CSV row as a double, by column; returns the number of cells. */
static int csv_split(char *line, char sep, char **cells, int max) {
  int n = 0;
  for (char *p = line; n < max;) {
    cells[n++] = p;
    char *e = strchr(p, sep);
    if (!e) break;
    *e = 0;
    p = e + 1;
  }
  return n;
}

static void test_fit_csv_logger(void **state) {
  (void)state;
  lm_session_clear();
  lm_set_seed(5);
  make_tmp_dir();
  char path[128];
  snprintf(path, sizeof path, "%s/train.csv", tmp_dir);
  fit_data d;
  fit_data_init(&d);
  lm_model *m = line_model(0.05, "mae");
  lm_callback *plateau = lm_reduce_lr_on_plateau(.patience = 1, .factor = 0.5, .monitor = "loss");
  lm_callback *csv = lm_csv_logger(path);
  lm_history *h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 3, .batch_size = 32, .verbose = LM_SILENT,
                         .validation_x = LM_FEED(d.vxa), .validation_y = LM_FEED(d.vya),
                         .callbacks = LM_CALLBACKS(plateau, csv));
  assert_non_null(h);
  lm_callback_free(csv);

  /* Appending from epoch 3: no second header. */
  csv = lm_csv_logger(path, .append = true);
  lm_history *h2 = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 5, .initial_epoch = 3, .batch_size = 32,
                          .verbose = LM_SILENT, .validation_x = LM_FEED(d.vxa), .validation_y = LM_FEED(d.vya),
                          .callbacks = LM_CALLBACKS(plateau, csv));
  assert_non_null(h2);
  char *text = read_file(path);
  assert_non_null(text);
  char *lines[8];
  int n_lines = 0;
  for (char *p = text, *e; n_lines < 8 && (e = strstr(p, "\r\n")); p = e + 2) {
    *e = 0;
    lines[n_lines++] = p;
  }
  assert_int_equal(n_lines, 1 + 3 + 2);
  assert_string_equal(lines[0], "epoch,learning_rate,loss,mae,val_loss,val_mae");
  for (int r = 1; r < n_lines; r++) {
    char *cells[8];
    assert_int_equal(csv_split(lines[r], ',', cells, 8), 6);
    const lm_history *hr = r <= 3 ? h : h2;
    int e = r <= 3 ? r - 1 : r - 4;
    assert_int_equal(atoi(cells[0]), r - 1);
    static const char *keys[] = {"learning_rate", "loss", "mae", "val_loss", "val_mae"};
    for (int k = 0; k < 5; k++) {
      /* Python's repr reads back as the very double in the History. */
      double want = lm_history_get(hr, keys[k])[e];
      if (strtod(cells[k + 1], NULL) != want) {
        print_error("row %d, %s: %s vs %.17g\n", r, keys[k], cells[k + 1], want);
        fail();
      }
    }
  }
  free(text);
  lm_history_free(h);
  lm_history_free(h2);
  lm_callback_free(csv);

  /* A separator of one's own. */
  csv = lm_csv_logger(path, .separator = ';');
  h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 1, .batch_size = 32, .verbose = LM_SILENT,
             .callbacks = LM_CALLBACKS(csv));
  assert_non_null(h);
  text = read_file(path);
  assert_non_null(text);
  assert_true(!strncmp(text, "epoch;loss;mae;val_loss;val_mae\r\n0;", 35));
  assert_non_null(strstr(text, ";NA;NA\r\n"));
  free(text);
  lm_history_free(h);
  lm_callback_free(csv);
  lm_callback_free(plateau);
  remove(path);
  rmdir(tmp_dir);
  fit_data_free(&d);
  lm_session_clear();
}

static double first_epoch_only(int epoch, double lr, void *user) {
  (*(int *)user)++;
  return epoch == 0 ? 0.1 : 0.0;
}

static void test_fit_learning_rate_scheduler(void **state) {
  (void)state;
  lm_session_clear();
  lm_set_seed(9);
  fit_data d;
  fit_data_init(&d);
  lm_model *m = line_model(0.01, NULL);
  snapshots snaps = {.m = m};
  int calls = 0;
  lm_callback *sched = lm_learning_rate_scheduler(first_epoch_only, .user = &calls);
  lm_callback *snap = lm_lambda_callback(.on_epoch_end = snapshot, .user = &snaps);
  lm_history *h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 3, .batch_size = 32, .verbose = LM_SILENT,
                         .callbacks = LM_CALLBACKS(sched, snap));
  assert_non_null(h);
  assert_int_equal(calls, 3);
  const double *lr = lm_history_get(h, "learning_rate");
  assert_non_null(lr);
  assert_true(lr[0] == (double)0.1f && lr[1] == 0 && lr[2] == 0);
  assert_true(lm_model_learning_rate(m) == 0);
  /* The optimizer used the rates: epoch 0 moved the weights, epochs 1 and 2 at rate 0 did not. */
  assert_true(snaps.w[0][0] != 0);
  assert_memory_equal(snaps.w[0], snaps.w[1], sizeof snaps.w[0]);
  assert_memory_equal(snaps.w[1], snaps.w[2], sizeof snaps.w[0]);
  lm_history_free(h);

  /* Keras's order on screen: the scheduler's message, the epoch's line, then the progress
   * bar's last line, which shows the rate the scheduler logged. */
  lm_callback *loud = lm_learning_rate_scheduler(first_epoch_only, .user = &calls, .verbose = 1);
  capture cap;
  capture_begin(&cap);
  h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 1, .batch_size = 32, .verbose = 2,
             .callbacks = LM_CALLBACKS(loud));
  char *out, *err;
  capture_end(&cap, &out, &err);
  assert_non_null(h);
  const char *head = "\nEpoch 1: LearningRateScheduler setting learning rate to 0.1.\nEpoch 1/1\n";
  assert_true(!strncmp(out, head, strlen(head)));
  assert_contains(out, "learning_rate: 0.1000");
  free(out), free(err);
  lm_history_free(h);
  lm_callback_free(loud);
  lm_callback_free(sched);
  lm_callback_free(snap);
  fit_data_free(&d);
  lm_session_clear();
}

/* A callback that stops training mid-epoch ends that epoch there, as in Keras: the epoch's
 * end (with validation) still comes, no batch after it. */
typedef struct batch_count {
  int batches, epochs_ended, stop_at;
  lm_model *m;
  bool saw_val;
} batch_count;

static void count_batch(int batch, const lm_logs *logs, void *user) {
  batch_count *b = user;
  b->batches++;
  if (batch == b->stop_at) lm_model_stop_training(b->m);
}
static void count_epoch(int epoch, const lm_logs *logs, void *user) {
  batch_count *b = user;
  b->epochs_ended++;
  b->saw_val = lm_logs_get(logs, "val_loss", NULL);
}

static void test_fit_stops_mid_epoch(void **state) {
  (void)state;
  lm_session_clear();
  lm_set_seed(2);
  fit_data d;
  fit_data_init(&d);
  lm_model *m = line_model(0.01, NULL);
  batch_count b = {.stop_at = 2, .m = m};
  lm_callback *cb = lm_lambda_callback(.on_train_batch_end = count_batch, .on_epoch_end = count_epoch, .user = &b);
  lm_callback *nan = lm_terminate_on_nan();
  lm_history *h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 4, .batch_size = 8, .verbose = LM_SILENT,
                         .validation_split = 0.25, .callbacks = LM_CALLBACKS(nan, cb));
  assert_non_null(h);
  assert_int_equal(b.batches, 3);
  assert_int_equal(b.epochs_ended, 1);
  assert_true(b.saw_val);
  assert_int_equal(lm_history_n_epochs(h), 1);
  lm_history_free(h);

  /* Finite losses: TerminateOnNaN lets every epoch run. */
  h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 2, .batch_size = 8, .verbose = LM_SILENT,
             .callbacks = LM_CALLBACKS(nan));
  assert_non_null(h);
  assert_int_equal(lm_history_n_epochs(h), 2);
  lm_history_free(h);
  lm_callback_free(cb);
  lm_callback_free(nan);
  fit_data_free(&d);
  lm_session_clear();
}

/* ---- LambdaCallback: every hook, Keras's arguments, the user pointer ---- */
typedef struct hook_log {
  char text[4096];
  int freed;
} hook_log;

static void hl_add(void *user, const char *what, int i, const lm_logs *logs) {
  hook_log *l = user;
  char index[16] = "";
  if (i >= 0) snprintf(index, sizeof index, "%d", i);
  size_t at = strlen(l->text);
  snprintf(l->text + at, sizeof l->text - at, "%s%s%s;", what, index,
           logs && lm_logs_get(logs, "loss", NULL) ? "+" : "");
}
#define H0(name)                                                                            \
  static void h_##name(const lm_logs *logs, void *user) { hl_add(user, #name, -1, logs); }
#define H1(name)                                                                            \
  static void h_##name(int i, const lm_logs *logs, void *user) { hl_add(user, #name, i, logs); }
H0(on_train_begin)
H0(on_train_end)
H1(on_epoch_begin)
H1(on_epoch_end)
H1(on_train_batch_begin)
H1(on_train_batch_end)
H0(on_test_begin)
H0(on_test_end)
H1(on_test_batch_begin)
H1(on_test_batch_end)
H0(on_predict_begin)
H0(on_predict_end)
H1(on_predict_batch_begin)
H1(on_predict_batch_end)
static void free_log(void *user) { ((hook_log *)user)->freed++; }

static void test_lambda_callback(void **state) {
  (void)state;
  lm_session_clear();
  lm_set_seed(4);
  fit_data d;
  fit_data_init(&d);
  lm_model *m = line_model(0.01, NULL);
  hook_log log = {0};
  lm_callback *cb = lm_lambda_callback(
      .on_train_begin = h_on_train_begin, .on_train_end = h_on_train_end, .on_epoch_begin = h_on_epoch_begin,
      .on_epoch_end = h_on_epoch_end, .on_train_batch_begin = h_on_train_batch_begin,
      .on_train_batch_end = h_on_train_batch_end, .on_test_begin = h_on_test_begin, .on_test_end = h_on_test_end,
      .on_test_batch_begin = h_on_test_batch_begin, .on_test_batch_end = h_on_test_batch_end,
      .on_predict_begin = h_on_predict_begin, .on_predict_end = h_on_predict_end,
      .on_predict_batch_begin = h_on_predict_batch_begin, .on_predict_batch_end = h_on_predict_batch_end,
      .user = &log, .free_user = free_log);
  lm_history *h = lm_fit(m, LM_FEED(d.vxa), LM_FEED(d.vya), .epochs = 1, .batch_size = 16, .verbose = LM_SILENT,
                         .validation_split = 0.5, .callbacks = LM_CALLBACKS(cb));
  assert_non_null(h);
  lm_history_free(h);
  assert_string_equal(log.text, "on_train_begin;on_epoch_begin0;on_train_batch_begin0;on_train_batch_end0+;"
                                "on_test_begin;on_test_batch_begin0;on_test_batch_end0+;on_test_end+;"
                                "on_epoch_end0+;on_train_end+;");
  log.text[0] = 0;
  lm_outputs o = lm_predict(m, LM_FEED(d.vxa), .batch_size = 20, .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(cb));
  assert_int_equal(o.n, 1);
  lm_outputs_free(&o);
  assert_string_equal(log.text, "on_predict_begin;on_predict_batch_begin0;on_predict_batch_end0;"
                                "on_predict_batch_begin1;on_predict_batch_end1;on_predict_end;");

  /* Only the hooks given are installed. */
  lm_callback *one = lm_lambda_callback(.on_epoch_end = h_on_epoch_end, .user = &log);
  assert_non_null(one->on_epoch_end);
  assert_null(one->on_train_begin);
  assert_null(one->on_predict_batch_end);
  lm_callback_free(one);
  assert_int_equal(log.freed, 0);
  lm_callback_free(cb);
  assert_int_equal(log.freed, 1);
  lm_callback_free(NULL);
  fit_data_free(&d);
  lm_session_clear();
}

/* ---- Bad input ---- */
static double nan_schedule(int epoch, double lr, void *user) { return epoch == 1 ? NAN : lr; }

static void test_bad_input(void **state) {
  (void)state;
  lm_session_clear();
  lm_set_seed(6);
  fit_data d;
  fit_data_init(&d);
  lm_model *m = line_model(0.01, NULL);

  /* An unknown mode: Keras's warning, then "auto". */
  capture cap;
  capture_begin(&cap);
  lm_callback *es = lm_early_stopping(.mode = "maxx", .monitor = "val_acc");
  lm_callback *rl = lm_reduce_lr_on_plateau(.mode = "sideways");
  char *out, *err;
  capture_end(&cap, &out, &err);
  assert_non_null(es);
  assert_non_null(rl);
  assert_string_equal(err, "UserWarning: EarlyStopping mode 'maxx' is unknown, fallback to auto mode.\n"
                           "UserWarning: ReduceLROnPlateau mode 'sideways' is unknown, fallback to auto mode.\n");
  assert_string_equal(out, "");
  free(out), free(err);
  lm_callback_free(es);
  lm_callback_free(rl);

  /* A monitored key that never appears: a warning once, and training runs to the end. */
  es = lm_early_stopping(.monitor = "val_f1");
  capture_begin(&cap);
  lm_history *h =
      lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 3, .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(es));
  capture_end(&cap, &out, &err);
  assert_non_null(h);
  assert_int_equal(lm_history_n_epochs(h), 3);
  assert_string_equal(err, "UserWarning: Early stopping conditioned on metric `val_f1` which is not available. "
                           "Available metrics are: loss\n");
  free(out), free(err);
  lm_history_free(h);
  lm_callback_free(es);

  /* Invalid settings. */
  assert_null(lm_early_stopping(.patience = -1));
  assert_contains(lm_last_error(), "EarlyStopping");
  assert_null(lm_learning_rate_scheduler(NULL));
  assert_contains(lm_last_error(), "LearningRateScheduler");
  assert_null(lm_csv_logger(NULL));
  assert_null(lm_csv_logger(""));
  assert_null(lm_csv_logger("x.csv", .separator = '"'));
  assert_contains(lm_last_error(), "CSVLogger");

  /* An unwritable CSV path: the error in lm_last_error, and no epoch runs. */
  lm_callback *csv = lm_csv_logger("/nonexistent-lamina-dir/sub/log.csv");
  h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 3, .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(csv));
  assert_non_null(h);
  assert_int_equal(lm_history_n_epochs(h), 0);
  assert_contains(lm_last_error(), "CSVLogger: cannot open for writing '/nonexistent-lamina-dir/sub/log.csv'");
  lm_history_free(h);
  lm_callback_free(csv);
  /* The model is unharmed. */
  h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 1, .verbose = LM_SILENT);
  assert_non_null(h);
  assert_int_equal(lm_history_n_epochs(h), 1);
  lm_history_free(h);

  /* A schedule that returns NaN stops training before that epoch trains. */
  lm_callback *sched = lm_learning_rate_scheduler(nan_schedule);
  h = lm_fit(m, LM_FEED(d.xa), LM_FEED(d.ya), .epochs = 4, .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(sched));
  assert_non_null(h);
  assert_contains(lm_last_error(), "LearningRateScheduler: the schedule returned nan for epoch 1");
  assert_true(lm_history_n_epochs(h) <= 2);
  lm_history_free(h);
  lm_callback_free(sched);
  fit_data_free(&d);
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_early_stopping_matches_keras),
      cmocka_unit_test(test_reduce_lr_matches_keras),
      cmocka_unit_test(test_reduce_lr_bad_factor_matches_keras),
      cmocka_unit_test(test_lr_scheduler_matches_keras),
      cmocka_unit_test(test_terminate_on_nan_matches_keras),
      cmocka_unit_test(test_csv_logger_matches_keras),
      cmocka_unit_test(test_python_float_repr),
      cmocka_unit_test(test_fit_early_stopping_restores_best_weights),
      cmocka_unit_test(test_fit_csv_logger),
      cmocka_unit_test(test_fit_learning_rate_scheduler),
      cmocka_unit_test(test_fit_stops_mid_epoch),
      cmocka_unit_test(test_lambda_callback),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
