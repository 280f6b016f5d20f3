/* Data sources (Keras's PyDataset / generators): fitting, evaluating and predicting from a
 * source that yields the same batches as arrays gives the same History, weights and
 * outputs, bit for bit; sources of unknown length; steps_per_epoch carrying on across
 * epochs as Keras's EpochIterator does; on_epoch_end; the progress bar's "Unknown"; bad
 * batches and failing sources are errors naming the batch, never crashes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lamina/lamina.h>

#define N 90 /* samples: batches of 16 leave a short last batch of 10 */
#define NV 40

static lm_array *xa, *xb, *ycls, *yreg, *vxa, *vxb, *vycls, *vyreg;

static uint64_t rs;
static float uniform(void) {
  rs = rs * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((double)(rs >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static lm_array *fill(lm_shape s, int classes) {
  lm_array *a = lm_array_new(LM_FLOAT32, s);
  for (int64_t i = 0; i < a->size; i++)
    lm_array_f32(a)[i] = classes ? (float)((int)((uniform() + 1) * classes / 2) % classes) : uniform();
  return a;
}

static int setup(void **state) {
  (void)state;
  rs = 42;
  xa = fill(LM_SHAPE(N, 6), 0), xb = fill(LM_SHAPE(N, 3), 0), ycls = fill(LM_SHAPE(N), 3), yreg = fill(LM_SHAPE(N, 1), 0);
  vxa = fill(LM_SHAPE(NV, 6), 0), vxb = fill(LM_SHAPE(NV, 3), 0), vycls = fill(LM_SHAPE(NV), 3), vyreg = fill(LM_SHAPE(NV, 1), 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  lm_array *all[] = {xa, xb, ycls, yreg, vxa, vxb, vycls, vyreg};
  for (int i = 0; i < 8; i++) lm_array_free(all[i]);
  return 0;
}

/* Two inputs, two outputs, dropout (masks follow the optimizer step), momentum. */
static lm_model *build(void) {
  lm_session_clear();
  lm_set_seed(7);
  lm_tensor *a = lm_input(LM_SHAPE(6), .name = "a");
  lm_tensor *b = lm_input(LM_SHAPE(3), .name = "b");
  lm_tensor *x = lm_concatenate(LM_TENSORS(a, b));
  x = lm_call(lm_dense(8, .activation = LM_RELU), x);
  x = lm_call(lm_dropout(0.25), x);
  lm_tensor *cls = lm_call(lm_dense(3, .activation = LM_SOFTMAX, .name = "cls"), x);
  lm_tensor *reg = lm_call(lm_dense(1, .name = "reg"), x);
  lm_model *m = lm_model_new(LM_TENSORS(a, b), LM_TENSORS(cls, reg));
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm_compile(m, .optimizer = lm_sgd(.learning_rate = 0.1, .momentum = 0.5),
                              .loss = LM_LOSS_DICT("cls", "sparse_categorical_crossentropy", "reg", "mse"),
                              .metrics = LM_METRIC_DICT("cls", "acc", "reg", "mae")),
                   LM_OK);
  return m;
}

/* Every weight of the model, concatenated (caller frees). */
static float *weights(lm_model *m, int64_t *n) {
  float *out = NULL;
  *n = 0;
  for (int i = 0; i < lm_model_n_layers(m); i++) {
    lm_array *w;
    for (int k = 0; (w = lm_layer_weight(lm_model_get_layer(m, i), k, NULL)); k++) {
      out = realloc(out, (size_t)(*n + w->size) * sizeof *out);
      memcpy(out + *n, w->data, (size_t)w->size * sizeof *out);
      *n += w->size;
    }
  }
  return out;
}

static void assert_same_history(const lm_history *a, const lm_history *b) {
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(lm_history_n_keys(a), lm_history_n_keys(b));
  assert_int_equal(lm_history_n_epochs(a), lm_history_n_epochs(b));
  for (int k = 0; k < lm_history_n_keys(a); k++) {
    const char *key = lm_history_key(a, k);
    assert_string_equal(key, lm_history_key(b, k));
    const double *va = lm_history_get(a, key), *vb = lm_history_get(b, key);
    for (int e = 0; e < lm_history_n_epochs(a); e++)
      if (memcmp(&va[e], &vb[e], sizeof va[e])) fail_msg("%s, epoch %d: %.17g vs %.17g", key, e + 1, va[e], vb[e]);
  }
}

#define CHECK(h)                                                                            \
  do {                                                                                      \
    if (!(h)) fail_msg("failed: %s", lm_last_error());                                      \
  } while (0)

/* fit on arrays (no shuffle, validation arrays) and on array sources give the same run. */
static void test_fit_matches_arrays(void **state) {
  (void)state;
  lm_model *m = build();
  lm_history *ha = lm_fit(m, LM_FEED_NAMED("a", xa, "b", xb), LM_FEED_NAMED("cls", ycls, "reg", yreg), .epochs = 3,
                          .batch_size = 16, .no_shuffle = true, .verbose = LM_SILENT,
                          .validation_x = LM_FEED(vxa, vxb), .validation_y = LM_FEED(vycls, vyreg));
  CHECK(ha);
  int64_t nw;
  float *wa = weights(m, &nw);

  m = build();
  lm_source *train = lm_array_source(LM_FEED_NAMED("a", xa, "b", xb), LM_FEED_NAMED("cls", ycls, "reg", yreg), .batch_size = 16);
  lm_source *val = lm_array_source(LM_FEED(vxa, vxb), LM_FEED(vycls, vyreg), .batch_size = 16); /* fit validates in batch_size */
  assert_non_null(train);
  assert_non_null(val);
  assert_int_equal(train->n_batches, 6);
  lm_history *hs = lm_fit_source(m, train, .epochs = 3, .verbose = LM_SILENT, .validation_source = val);
  CHECK(hs);
  assert_same_history(ha, hs);
  assert_non_null(lm_history_get(hs, "val_cls_acc"));
  int64_t nw2;
  float *ws = weights(m, &nw2);
  assert_int_equal(nw, nw2);
  assert_memory_equal(wa, ws, (size_t)nw * sizeof *wa);

  /* evaluate and predict from sources agree with the array versions. */
  lm_history *ea = lm_evaluate(m, LM_FEED(vxa, vxb), LM_FEED(vycls, vyreg), .batch_size = 16, .verbose = LM_SILENT);
  lm_history *es = lm_evaluate_source(m, val, .verbose = LM_SILENT);
  CHECK(ea);
  CHECK(es);
  assert_same_history(ea, es);
  lm_source *px = lm_array_source(LM_FEED(vxa, vxb), (lm_feed){0}, .batch_size = 32);
  lm_outputs pa = lm_predict(m, LM_FEED(vxa, vxb), .verbose = LM_SILENT), ps = lm_predict_source(m, px, .verbose = LM_SILENT);
  assert_int_equal(pa.n, 2);
  assert_int_equal(ps.n, 2);
  for (int k = 0; k < 2; k++) {
    assert_int_equal(pa.a[k]->size, ps.a[k]->size);
    assert_int_equal(ps.a[k]->shape.dim[0], NV);
    assert_memory_equal(pa.a[k]->data, ps.a[k]->data, (size_t)pa.a[k]->size * 4);
  }
  /* steps bounds evaluate and predict, on arrays and sources alike. */
  lm_outputs p1 = lm_predict_source(m, px, .steps = 1, .verbose = LM_SILENT); /* px: batches of 32 */
  assert_int_equal(p1.a[0]->shape.dim[0], 32);
  lm_outputs_free(&p1);
  p1 = lm_predict(m, LM_FEED(vxa, vxb), .steps = 1, .batch_size = 8, .verbose = LM_SILENT);
  assert_int_equal(p1.a[0]->shape.dim[0], 8);
  lm_outputs_free(&p1);
  lm_outputs_free(&pa);
  lm_outputs_free(&ps);
  lm_history_free(ea);
  lm_history_free(es);
  free(wa);
  free(ws);
  lm_history_free(ha);
  lm_history_free(hs);
  lm_source_free(train);
  lm_source_free(val);
  lm_source_free(px);
  lm_session_clear();
}

/* A generator: its length is unknown; it ends a pass by returning LM_SOURCE_END. Batches
 * are made on each call (copied rows), as a reader of files would. */
typedef struct gen {
  lm_source base;
  int64_t rows, batch;
  lm_array *bx[2], *by[2];
  int calls, epoch_ends, fail_at, bad_shape_at;
  int64_t asked[64];
} gen;

static int gen_get(lm_source *src, int64_t index, lm_batch *b) {
  gen *g = (gen *)src;
  if (g->calls < 64) g->asked[g->calls] = index;
  g->calls++;
  if (index == g->fail_at) {
    snprintf(src->error, sizeof src->error, "disk on fire");
    return -1;
  }
  int64_t start = index * g->batch;
  if (start >= g->rows) return LM_SOURCE_END;
  int64_t n = g->rows - start < g->batch ? g->rows - start : g->batch;
  const lm_array *src_arrays[4] = {xa, xb, ycls, yreg};
  lm_array **dst[4] = {&g->bx[0], &g->bx[1], &g->by[0], &g->by[1]};
  for (int k = 0; k < 4; k++) {
    lm_array_free(*dst[k]);
    lm_shape s = src_arrays[k]->shape;
    int64_t per = src_arrays[k]->size / s.dim[0];
    s.dim[0] = n;
    if (k == 0 && index == g->bad_shape_at) s.dim[1] = 5, per = 5;
    *dst[k] = lm_array_new(LM_FLOAT32, s);
    if (k == 0 && index == g->bad_shape_at) continue;
    memcpy((*dst[k])->data, lm_array_f32(src_arrays[k]) + start * per, (size_t)(n * per) * 4);
  }
  b->x = LM_FEED(g->bx[0], g->bx[1]);
  b->y = LM_FEED_NAMED("reg", g->by[1], "cls", g->by[0]);
  return 0;
}

static void gen_epoch_end(lm_source *src, int epoch) { ((gen *)src)->epoch_ends++; }

static void gen_free(gen *g) {
  for (int k = 0; k < 2; k++) {
    lm_array_free(g->bx[k]), lm_array_free(g->by[k]);
    g->bx[k] = g->by[k] = NULL;
  }
}

/* (Re)starts g, which must be zeroed or initialized before. */
static void gen_init(gen *g, int64_t batch) {
  gen_free(g);
  memset(g, 0, sizeof *g);
  g->base.n_batches = -1;
  g->base.get = gen_get;
  g->base.on_epoch_end = gen_epoch_end;
  g->rows = N;
  g->batch = batch;
  g->fail_at = g->bad_shape_at = -1;
}

static void test_unknown_length(void **state) {
  (void)state;
  lm_model *m = build();
  lm_history *ha = lm_fit(m, LM_FEED(xa, xb), LM_FEED(ycls, yreg), .epochs = 2, .batch_size = 20, .no_shuffle = true,
                          .verbose = LM_SILENT);
  CHECK(ha);
  int64_t nw;
  float *wa = weights(m, &nw);
  m = build();
  gen g = {0};
  gen_init(&g, 20);
  lm_history *hg = lm_fit_source(m, &g.base, .epochs = 2, .verbose = LM_SILENT);
  CHECK(hg);
  assert_same_history(ha, hg);
  float *wg = weights(m, &nw);
  assert_memory_equal(wa, wg, (size_t)nw * sizeof *wa);
  /* Each epoch asks for batches 0..4 and learns the end at 5. */
  assert_int_equal(g.calls, 12);
  assert_int_equal(g.asked[5], 5);
  assert_int_equal(g.asked[6], 0);
  assert_int_equal(g.epoch_ends, 2);
  lm_history *eg = lm_evaluate_source(m, &g.base, .verbose = LM_SILENT);
  lm_history *ea = lm_evaluate(m, LM_FEED(xa, xb), LM_FEED(ycls, yreg), .batch_size = 20, .verbose = LM_SILENT);
  CHECK(eg);
  assert_same_history(ea, eg);
  lm_outputs pg = lm_predict_source(m, &g.base, .verbose = LM_SILENT);
  assert_int_equal(pg.n, 2);
  assert_int_equal(pg.a[0]->shape.dim[0], N);
  assert_int_equal(pg.a[0]->shape.dim[1], 3);
  lm_outputs_free(&pg);
  free(wa);
  free(wg);
  lm_history_free(ha);
  lm_history_free(hg);
  lm_history_free(ea);
  lm_history_free(eg);
  gen_free(&g);
  lm_session_clear();
}

/* steps_per_epoch: an epoch goes on where the last stopped; a source of known length that
 * runs out ends the epoch early (Keras warns), and the next starts a new pass. */
static void test_steps_per_epoch(void **state) {
  (void)state;
  lm_model *m = build();
  gen g = {0};
  gen_init(&g, 20);
  g.base.n_batches = 5;
  lm_history *h = lm_fit_source(m, &g.base, .epochs = 4, .steps_per_epoch = 2, .verbose = LM_SILENT);
  CHECK(h);
  static const int64_t want[] = {0, 1, 2, 3, 4, 0, 1};
  assert_int_equal(g.calls, 7);
  assert_memory_equal(g.asked, want, sizeof want);
  assert_int_equal(g.epoch_ends, 4);
  assert_int_equal(lm_history_n_epochs(h), 4);
  lm_history_free(h);

  /* Unknown length: the end found mid-epoch ends that epoch; the next starts over. */
  gen_init(&g, 20);
  h = lm_fit_source(m, &g.base, .epochs = 3, .steps_per_epoch = 3, .verbose = LM_SILENT);
  CHECK(h);
  static const int64_t want2[] = {0, 1, 2, 3, 4, 5, 0, 1, 2};
  assert_int_equal(g.calls, 9);
  assert_memory_equal(g.asked, want2, sizeof want2);
  lm_history_free(h);

  /* Arrays: 90 samples in batches of 20 are 5 batches; 2 an epoch walk through them. */
  lm_model *m2 = build();
  h = lm_fit(m2, LM_FEED(xa, xb), LM_FEED(ycls, yreg), .epochs = 3, .batch_size = 20, .steps_per_epoch = 2,
             .verbose = LM_SILENT);
  CHECK(h);
  assert_int_equal(lm_history_n_epochs(h), 3);
  lm_history_free(h);
  gen_free(&g);
  lm_session_clear();
}

static void expect_fail(lm_history *h, const char *words) {
  if (h) fail_msg("expected a failure with \"%s\"", words);
  if (!strstr(lm_last_error(), words)) fail_msg("the message lacks \"%s\": %s", words, lm_last_error());
}

static void test_errors(void **state) {
  (void)state;
  lm_model *m = build();
  gen g = {0};
  gen_init(&g, 20);
  g.fail_at = 2;
  expect_fail(lm_fit_source(m, &g.base, .verbose = LM_SILENT), "fit: the data source failed at batch 2: disk on fire");
  gen_init(&g, 20);
  g.bad_shape_at = 1;
  expect_fail(lm_fit_source(m, &g.base, .verbose = LM_SILENT), "fit (data source, batch 1): input 'a'");
  assert_non_null(strstr(lm_last_error(), "(None, 6)"));
  assert_non_null(strstr(lm_last_error(), "(20, 5)"));
  gen_free(&g);
  gen_init(&g, 20);
  g.rows = 0; /* ends at once */
  expect_fail(lm_fit_source(m, &g.base, .verbose = LM_SILENT), "no batch");
  expect_fail(lm_evaluate_source(m, &g.base, .verbose = LM_SILENT), "no batch");
  lm_outputs o = lm_predict_source(m, &g.base, .verbose = LM_SILENT);
  assert_int_equal(o.n, 0);
  gen_init(&g, 20);
  expect_fail(lm_fit_source(m, &g.base, .batch_size = 8, .verbose = LM_SILENT), "batch_size does not apply");
  expect_fail(lm_fit_source(m, &g.base, .validation_split = 0.2, .verbose = LM_SILENT), "validation_split is only supported");
  expect_fail(lm_fit_source(m, NULL, .verbose = LM_SILENT), "the data source is NULL");
  expect_fail(lm_fit_source(m, &g.base, .steps_per_epoch = -1, .verbose = LM_SILENT), "steps_per_epoch -1");
  expect_fail(lm_fit(m, LM_FEED(xa, xb), LM_FEED(ycls, yreg), .validation_source = &g.base,
                     .validation_x = LM_FEED(vxa, vxb), .validation_y = LM_FEED(vycls, vyreg), .verbose = LM_SILENT),
              "validation data given twice");
  /* A source that fails leaves the model usable. */
  lm_history *h = lm_fit_source(m, &g.base, .verbose = LM_SILENT);
  CHECK(h);
  lm_history_free(h);
  assert_null(lm_array_source(LM_FEED(xa, vxa), (lm_feed){0}));
  gen_free(&g);
  lm_session_clear();
}

/* On a terminal, the bar of a source of unknown length counts against "Unknown" in the
 * first epoch, and against the count it learnt afterwards. */
static void test_progress_unknown(void **state) {
  (void)state;
  int master, slave;
  if (openpty(&master, &slave, NULL, NULL, NULL) != 0) skip();
  fcntl(master, F_SETFL, O_NONBLOCK);
  lm_model *m = build();
  gen g = {0};
  gen_init(&g, 30);
  fflush(stdout);
  int saved = dup(1);
  dup2(slave, 1);
  lm_history *h = lm_fit_source(m, &g.base, .epochs = 2, .verbose = 1);
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  close(slave);
  char out[16384];
  ssize_t got = 0, r;
  while (got < (ssize_t)sizeof out - 1 && (r = read(master, out + got, sizeof out - 1 - (size_t)got)) > 0) got += r;
  close(master);
  out[got > 0 ? got : 0] = 0;
  CHECK(h);
  char *second = strstr(out, "Epoch 2/2");
  assert_non_null(second);
  char *unknown = strstr(out, "1/Unknown");
  if (!unknown || unknown > second) fail_msg("no \"1/Unknown\" in the first epoch:\n%s", out);
  assert_non_null(strstr(out, "3/3 [=============================="));
  assert_null(strstr(second, "Unknown"));
  lm_history_free(h);
  gen_free(&g);
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fit_matches_arrays), cmocka_unit_test(test_unknown_length),
      cmocka_unit_test(test_steps_per_epoch),    cmocka_unit_test(test_errors),
      cmocka_unit_test(test_progress_unknown),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
