/* Saving and loading in Keras's files (src/io/saving.c, h5.c, zip.c).
 *
 * - Keras's own files (tests/fixtures/saving/keras, made by
 *   tools/keras_fixtures/make_saving_fixtures.py): each of the chapter's models, saved by
 *   Keras 3 as .keras and .h5 after two training steps, loads in lamina and predicts what
 *   Keras predicted; one more training step from the loaded optimizer state gives Keras's
 *   predictions after that step (so slots and iteration counts were mapped right).
 * - lamina's files read by Keras (tests/fixtures/saving/lamina, checked against Keras by
 *   tools/keras_fixtures/check_lamina_files.py): lamina still writes the same groups,
 *   attributes and values, and reads them back to Keras's predictions.
 * - Round trips of every layer kind, in every format; the layout Keras 3 expects.
 * - Resuming training from a saved model continues bit for bit.
 * - A save that fails half-way leaves the previous file; corrupt, truncated and mismatched
 *   files give errors that name the file and the problem, and leave the model untouched.
 *
 * - Hostile HDF5 files (soft and external links, external storage, cycles, shape bombs)
 *   are refused; libhdf5 itself only ever reads them in a child process (see io/h5.h).
 *
 * With LAMINA_SAVING_OUT=<dir> in the environment, the test also writes its lamina-made
 * files there, with lamina's predictions (for check_lamina_files.py);
 * LAMINA_TEST_FILTER=<pattern> runs only the matching tests. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fixture.h"
#include "io/h5.h"
#include "io/zip.h"
#include "train/train.h"
#include <dirent.h>
#include <hdf5.h>
#include <errno.h>
#include <lamina/lamina.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static int setup_dir(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/lamina_saving_XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
      chmod(p, 0755);
      remove_tree(p);
    } else unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

static int teardown_dir(void **state) {
  (void)state;
  remove_tree(tmpdir);
  return 0;
}

/* A path in the test's directory; the last 64 stay valid. */
static const char *tmp(const char *name) {
  static char path[64][512];
  static int k;
  k = (k + 1) % 64;
  snprintf(path[k], sizeof path[k], "%s/%s", tmpdir, name);
  return path[k];
}

static const char *fixture(const char *rel) {
  static char path[2][1024];
  static int k;
  k ^= 1;
  char r[512];
  snprintf(r, sizeof r, "tests/fixtures/saving/%s", rel);
  return fx_source_path(path[k], sizeof path[k], r);
}

static uint8_t *read_bytes(const char *path, size_t *len) {
  uint8_t *b;
  if (lm__read_file(path, &b, len)) return NULL;
  return b;
}

static void write_bytes(const char *path, const uint8_t *b, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  if (len) assert_int_equal(fwrite(b, 1, len, f), len);
  fclose(f);
}

/* ---- Comparing arrays ---- */

static void assert_close(const float *got, const float *want, int64_t n, double rtol, double atol, const char *what) {
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - (double)want[i]);
    if (!(d <= atol + rtol * fabs((double)want[i])))
      fail_msg("%s: element %lld is %.9g, expected %.9g", what, (long long)i, got[i], want[i]);
  }
}

/* Every weight of a model, flattened, in lm__layer_visit_weights order. */
typedef struct weights_copy {
  float *v;
  int64_t n, cap;
} weights_copy;

static void copy_weight(lm_weight *w, void *ctx) {
  weights_copy *c = ctx;
  lm_array *a = lm__weight_array(w);
  if (c->n + a->size > c->cap) {
    c->cap = (c->n + a->size) * 2;
    c->v = realloc(c->v, (size_t)c->cap * sizeof *c->v);
  }
  memcpy(c->v + c->n, a->data, (size_t)a->size * sizeof(float));
  c->n += a->size;
}

static weights_copy all_weights(const lm_model *m) {
  weights_copy c = {0};
  lm__layer_visit_weights(&m->base, copy_weight, &c);
  return c;
}

static void assert_same_weights(const lm_model *a, const lm_model *b) {
  weights_copy x = all_weights(a), y = all_weights(b);
  assert_int_equal(x.n, y.n);
  if (x.n && memcmp(x.v, y.v, (size_t)x.n * sizeof(float)) != 0) {
    for (int64_t i = 0; i < x.n; i++)
      if (x.v[i] != y.v[i]) fail_msg("weights differ at flat index %lld: %.9g vs %.9g", (long long)i, x.v[i], y.v[i]);
  }
  free(x.v);
  free(y.v);
}

/* ---- Keras's files ---- */

typedef struct npz {
  char **names;
  lm_array **arrays;
  int n;
} npz;

static npz load_npz(const char *path) {
  npz z = {0};
  if (lm_load_npz(path, &z.names, &z.arrays, &z.n) != LM_OK) fail_msg("%s", lm_last_error());
  return z;
}

static lm_array *npz_get(const npz *z, const char *name) {
  for (int i = 0; i < z->n; i++)
    if (!strcmp(z->names[i], name)) return z->arrays[i];
  return NULL;
}

static lm_feed npz_feed(const npz *z, char prefix, int n) {
  lm_feed f = {.n = n};
  for (int i = 0; i < n; i++) {
    char key[16];
    snprintf(key, sizeof key, "%c%d", prefix, i);
    f.item[i] = npz_get(z, key);
    assert_non_null(f.item[i]);
  }
  return f;
}

static void check_predictions(lm_model *m, const npz *z, char prefix, double rtol, double atol, const char *what) {
  lm_outputs out = lm_predict(m, npz_feed(z, 'x', m->n_inputs), .verbose = LM_SILENT);
  if (out.n != m->n_outputs) fail_msg("%s: predict failed: %s", what, lm_last_error());
  for (int o = 0; o < out.n; o++) {
    char key[16], msg[512];
    snprintf(key, sizeof key, "%c%d", prefix, o);
    lm_array *want = npz_get(z, key);
    assert_non_null(want);
    assert_int_equal(out.a[o]->size, want->size);
    snprintf(msg, sizeof msg, "%s, output %d (%s)", what, o, key);
    assert_close(lm_array_f32(out.a[o]), lm_array_f32(want), want->size, rtol, atol, msg);
  }
  lm_outputs_free(&out);
}

static const char *keras_models[] = {"mlp",        "imdb_conv1d", "siamese_lstm", "question_answering",
                                     "posts",      "separable_classifier", "inception", "residual",
                                     "dual_camera", "bidirectional_rnn", "sequential", "masked_rnn"};

static void check_keras_model(const char *name, const char *ext) {
  char rel[128], what[160];
  snprintf(rel, sizeof rel, "keras/%s.npz", name);
  npz z = load_npz(fixture(rel));
  snprintf(rel, sizeof rel, "keras/%s.%s", name, ext);
  snprintf(what, sizeof what, "%s.%s", name, ext);
  lm_model *m = lm_load_model(fixture(rel));
  if (!m) fail_msg("%s: %s", what, lm_last_error());
  assert_non_null(m->compiled);
  assert_non_null(m->compiled->opt);
  check_predictions(m, &z, 'p', 1e-5, 1e-6, what);
  if (npz_get(&z, "q0")) {
    /* One more step from the optimizer state Keras saved: Keras's numbers again. */
    lm_history *h = lm_fit(m, npz_feed(&z, 'x', m->n_inputs), npz_feed(&z, 'y', m->n_outputs),
                           .batch_size = (int)npz_get(&z, "x0")->shape.dim[0], .no_shuffle = true, .verbose = LM_SILENT);
    if (!h) fail_msg("%s: fit: %s", what, lm_last_error());
    lm_history_free(h);
    snprintf(what, sizeof what, "%s.%s after a training step", name, ext);
    check_predictions(m, &z, 'q', 1e-4, 1e-5, what);
  }
  /* The weights alone, from the .keras archive, into the model just loaded. */
  snprintf(rel, sizeof rel, "keras/%s.keras", name);
  if (lm_load_weights(m, fixture(rel)) != LM_OK) fail_msg("%s: lm_load_weights: %s", what, lm_last_error());
  snprintf(what, sizeof what, "%s.%s, weights reloaded from .keras", name, ext);
  check_predictions(m, &z, 'p', 1e-5, 1e-6, what);
  lm_npz_free(z.names, z.arrays, z.n);
  lm_session_clear();
}

static void test_keras_files(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof keras_models / sizeof *keras_models; i++) {
    check_keras_model(keras_models[i], "keras");
    check_keras_model(keras_models[i], "h5");
  }
}

/* ---- lamina's models ---- */

static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

static lm_array *random_floats(lm_shape shape, uint32_t seed) {
  lm_array *a = lm_array_new(LM_FLOAT32, shape);
  for (int64_t i = 0; i < a->size; i++) lm_array_f32(a)[i] = (float)((lcg(&seed) >> 8) % 2001) / 1000.0f - 1.0f;
  return a;
}

static lm_array *random_ints(lm_shape shape, int hi, uint32_t seed) {
  lm_array *a = lm_array_new(LM_INT32, shape);
  for (int64_t i = 0; i < a->size; i++) lm_array_i32(a)[i] = (int32_t)((lcg(&seed) >> 8) % (uint32_t)hi);
  return a;
}

static lm_array *one_hot(int64_t n, int classes, uint32_t seed) {
  lm_array *a = lm_array_new(LM_FLOAT32, LM_SHAPE(n, classes));
  for (int64_t i = 0; i < n; i++) lm_array_f32(a)[i * classes + (lcg(&seed) >> 8) % (uint32_t)classes] = 1;
  return a;
}

/* A model with its data: inputs and targets in model order. */
typedef struct sample {
  lm_model *m;
  int n_x, n_y;
  lm_array *x[4], *y[4];
} sample;

static void sample_free(sample *s) {
  for (int i = 0; i < s->n_x; i++) lm_array_free(s->x[i]);
  for (int i = 0; i < s->n_y; i++) lm_array_free(s->y[i]);
}

static lm_feed feed_of(lm_array **a, int n) {
  lm_feed f = {.n = n};
  for (int i = 0; i < n; i++) f.item[i] = a[i];
  return f;
}

static lm_optimizer *make_optimizer(int kind) {
  switch (kind) {
  case 0: return lm_sgd(.learning_rate = 0.05, .momentum = 0.9, .nesterov = true);
  case 1: return lm_rmsprop(.learning_rate = 0.01);
  case 2: return lm_adam(.learning_rate = 0.01);
  case 3: return lm_adamw(.learning_rate = 0.01, .weight_decay = 0.01);
  default: return lm_adagrad(.learning_rate = 0.1);
  }
}

/* Text: Embedding, Conv1D, pooling, batch normalization, Bidirectional LSTM, GRU, layer
 * normalization, SimpleRNN, a nested model called twice, Concatenate, Dropout. */
static sample build_text(int opt) {
  lm_tensor *tokens = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32, .name = "tokens");
  lm_tensor *h = lm_call(lm_embedding(50, 6), tokens);
  h = lm_call(lm_conv1d(6, 3, .activation = LM_RELU), h);
  h = lm_call(lm_max_pooling1d(2), h);
  h = lm_call(lm_batch_normalization(), h);
  h = lm_call(lm_bidirectional(lm_lstm(4, .return_sequences = true)), h);
  h = lm_call(lm_gru(4, .return_sequences = true), h);
  h = lm_call(lm_layer_normalization(), h);
  h = lm_call(lm_simple_rnn(5), h);
  h = lm_call(lm_dense(5, .activation = LM_RELU), h);
  lm_tensor *hin = lm_input(LM_SHAPE(5));
  lm_model *head = lm_model_new(LM_TENSORS(hin), LM_TENSORS(lm_call(lm_dense(3, .activation = LM_TANH), hin)), .name = "head");
  lm_tensor *a = lm_call(head, h), *b = lm_call(head, lm_call(lm_dense(5), h));
  /* A seeded Dropout: its configuration keeps the seed, so a loaded model draws the same
   * masks (they follow the seed and the restored step count). */
  lm_tensor *x = lm_call(lm_dropout(0.25, .seed = 77), lm_concatenate(LM_TENSORS(a, b)));
  lm_tensor *out = lm_call(lm_dense(3, .activation = LM_SOFTMAX, .name = "label"), x);
  sample s = {.m = lm_model_new(LM_TENSORS(tokens), LM_TENSORS(out), .name = "text"), .n_x = 1, .n_y = 1};
  assert_int_equal(lm_model_status(s.m), LM_OK);
  assert_int_equal(lm_compile(s.m, .optimizer = make_optimizer(opt), .loss = LM_LOSSES("categorical_crossentropy"),
                              .metrics = LM_METRICS("acc")),
                   LM_OK);
  s.x[0] = random_ints(LM_SHAPE(12, 9), 50, 11);
  s.y[0] = one_hot(12, 3, 12);
  return s;
}

/* Images and a second input: Conv2D, SeparableConv2D, DepthwiseConv2D, batch
 * normalization, pooling, Flatten, Add, Reshape; two outputs, one with logits. */
static sample build_vision(int opt) {
  lm_tensor *image = lm_input(LM_SHAPE(10, 10, 3), .name = "image"), *meta = lm_input(LM_SHAPE(4), .name = "meta");
  lm_tensor *h = lm_call(lm_conv2d(4, 3, .padding = LM_SAME, .activation = LM_RELU), image);
  h = lm_call(lm_separable_conv2d(6, 3), h);
  h = lm_call(lm_depthwise_conv2d(3, .padding = LM_SAME), h);
  h = lm_call(lm_batch_normalization(), h);
  h = lm_call(lm_max_pooling2d(2), h);
  h = lm_call(lm_average_pooling2d(2, .padding = LM_SAME), h);
  h = lm_call(lm_dense(6), lm_call(lm_flatten(), h));
  lm_tensor *sum = lm_add(LM_TENSORS(h, lm_call(lm_dense(6, .activation = LM_SIGMOID), meta)));
  lm_tensor *grid = lm_call(lm_dense(2, .name = "grid"), lm_call(lm_reshape(LM_SHAPE(2, 3)), sum));
  lm_tensor *score = lm_call(lm_dense(1, .name = "score"), sum);
  sample s = {.m = lm_model_new(LM_TENSORS(image, meta), LM_TENSORS(grid, score), .name = "vision"), .n_x = 2, .n_y = 2};
  assert_int_equal(lm_model_status(s.m), LM_OK);
  assert_int_equal(lm_compile(s.m, .optimizer = make_optimizer(opt),
                              .loss = LM_LOSS_DICT("grid", "mse", "score", "binary_crossentropy:logits"),
                              .loss_weights = LM_LOSS_WEIGHTS(1.0, 0.5), .metrics = LM_METRIC_DICT("score", "acc")),
                   LM_OK);
  s.x[0] = random_floats(LM_SHAPE(8, 10, 10, 3), 21);
  s.x[1] = random_floats(LM_SHAPE(8, 4), 22);
  s.y[0] = random_floats(LM_SHAPE(8, 2, 2), 23);
  s.y[1] = lm_array_new(LM_FLOAT32, LM_SHAPE(8, 1));
  for (int i = 0; i < 8; i++) lm_array_f32(s.y[1])[i] = (float)(i % 2);
  return s;
}

/* The Sequential that the stack models nest. */
static lm_model *inner_sequential(void) {
  lm_model *inner = lm_sequential(.name = "inner");
  assert_int_equal(lm_sequential_add(inner, lm_input_layer(LM_SHAPE(12))), LM_OK);
  assert_int_equal(lm_sequential_add(inner, lm_dense(6, .activation = LM_TANH)), LM_OK);
  assert_int_equal(lm_sequential_add(inner, lm_layer_normalization()), LM_OK);
  return inner;
}

/* Sequential, with a Sequential inside. */
static sample build_stack(int opt) {
  lm_model *inner = inner_sequential();
  lm_model *m = lm_sequential(.name = "stack");
  assert_int_equal(lm_sequential_add(m, lm_input_layer(LM_SHAPE(3, 4))), LM_OK);
  assert_int_equal(lm_sequential_add(m, lm_flatten()), LM_OK);
  assert_int_equal(lm_sequential_add(m, lm_model_layer(inner)), LM_OK);
  assert_int_equal(lm_sequential_add(m, lm_batch_normalization()), LM_OK);
  assert_int_equal(lm_sequential_add(m, lm_dense(2)), LM_OK);
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm_compile(m, .optimizer = make_optimizer(opt), .loss = LM_LOSSES("mae")), LM_OK);
  sample s = {.m = m, .n_x = 1, .n_y = 1};
  s.x[0] = random_floats(LM_SHAPE(6, 3, 4), 31);
  s.y[0] = random_floats(LM_SHAPE(6, 2), 32);
  return s;
}

/* ---- The chapter's models, as tools/keras_fixtures/make_saving_fixtures.py builds them
 * in Keras (same layers, sizes, optimizers and losses), built with lamina: the files
 * lamina writes of them are read by real Keras (see test_lamina_files). ---- */

static sample compiled(lm_model *m, lm_status st, int n_x, int n_y) {
  assert_int_equal(lm_model_status(m), LM_OK);
  if (st != LM_OK) fail_msg("compile: %s", lm_last_error());
  return (sample){.m = m, .n_x = n_x, .n_y = n_y};
}

static lm_array *class_ids(int64_t n, int classes, uint32_t seed) {
  lm_array *a = lm_array_new(LM_FLOAT32, LM_SHAPE(n));
  for (int64_t i = 0; i < n; i++) lm_array_f32(a)[i] = (float)((lcg(&seed) >> 8) % (uint32_t)classes);
  return a;
}

static lm_array *zeros_ones(int64_t n, uint32_t seed) {
  lm_array *a = lm_array_new(LM_FLOAT32, LM_SHAPE(n, 1));
  for (int64_t i = 0; i < n; i++) lm_array_f32(a)[i] = (float)((lcg(&seed) >> 8) % 2);
  return a;
}

static sample chapter_mlp(int opt) {
  (void)opt;
  lm_tensor *x = lm_input(LM_SHAPE(16));
  lm_tensor *y = lm_call(lm_dense(8, .activation = LM_RELU), x);
  y = lm_call(lm_dense(8, .activation = LM_RELU), y);
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(4, .activation = LM_SOFTMAX), y)));
  sample s = compiled(m, lm_compile(m, .optimizer = lm_adam(.learning_rate = 0.01), .loss = LM_LOSSES("categorical_crossentropy"),
                                    .metrics = LM_METRICS("acc")), 1, 1);
  s.x[0] = random_floats(LM_SHAPE(8, 16), 101);
  s.y[0] = one_hot(8, 4, 102);
  return s;
}

static sample chapter_imdb_conv1d(int opt) {
  (void)opt;
  lm_tensor *x = lm_input(LM_SHAPE(100), .dtype = LM_INT32);
  lm_tensor *y = lm_call(lm_embedding(500, 8), x);
  y = lm_call(lm_conv1d(8, 7, .activation = LM_RELU), y);
  y = lm_call(lm_max_pooling1d(5), y);
  y = lm_call(lm_conv1d(8, 7, .activation = LM_RELU), y);
  y = lm_call(lm_global_max_pooling1d(), y);
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(1), y)));
  sample s = compiled(m, lm_compile(m, .optimizer = lm_rmsprop(.learning_rate = 0.01), .loss = LM_LOSSES("mse")), 1, 1);
  s.x[0] = random_ints(LM_SHAPE(4, 100), 500, 111);
  s.y[0] = random_floats(LM_SHAPE(4, 1), 112);
  return s;
}

static sample chapter_siamese_lstm(int opt) {
  (void)opt;
  lm_layer *lstm = lm_lstm(8);
  lm_tensor *left = lm_input(LM_SHAPE(LM_NONE, 16)), *right = lm_input(LM_SHAPE(LM_NONE, 16));
  lm_tensor *merged = lm_concatenate(LM_TENSORS(lm_call(lstm, left), lm_call(lstm, right)));
  lm_model *m = lm_model_new(LM_TENSORS(left, right), LM_TENSORS(lm_call(lm_dense(1, .activation = LM_SIGMOID), merged)));
  sample s = compiled(m, lm_compile(m, .optimizer = lm_sgd(.learning_rate = 0.1, .momentum = 0.9, .nesterov = true),
                                    .loss = LM_LOSSES("binary_crossentropy"), .metrics = LM_METRICS("acc")), 2, 1);
  s.x[0] = random_floats(LM_SHAPE(4, 5, 16), 121);
  s.x[1] = random_floats(LM_SHAPE(4, 5, 16), 122);
  s.y[0] = zeros_ones(4, 123);
  return s;
}

static sample chapter_question_answering(int opt) {
  (void)opt;
  lm_tensor *text = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32, .name = "text");
  lm_tensor *t = lm_call(lm_lstm(8), lm_call(lm_embedding(500, 8), text));
  lm_tensor *question = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32, .name = "question");
  lm_tensor *q = lm_call(lm_lstm(4), lm_call(lm_embedding(500, 4), question));
  lm_tensor *answer = lm_call(lm_dense(20, .activation = LM_SOFTMAX), lm_concatenate(LM_TENSORS(t, q)));
  lm_model *m = lm_model_new(LM_TENSORS(text, question), LM_TENSORS(answer));
  sample s = compiled(m, lm_compile(m, .optimizer = lm_adagrad(.learning_rate = 0.1),
                                    .loss = LM_LOSSES("sparse_categorical_crossentropy"), .metrics = LM_METRICS("acc")), 2, 1);
  s.x[0] = random_ints(LM_SHAPE(4, 12), 500, 131);
  s.x[1] = random_ints(LM_SHAPE(4, 6), 500, 132);
  s.y[0] = class_ids(4, 20, 133);
  return s;
}

static sample chapter_posts(int opt) {
  (void)opt;
  lm_tensor *in = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32, .name = "posts");
  lm_tensor *x = lm_call(lm_embedding(500, 8), in);
  x = lm_call(lm_conv1d(8, 5, .activation = LM_RELU), x);
  x = lm_call(lm_max_pooling1d(5), x);
  x = lm_call(lm_conv1d(8, 5, .activation = LM_RELU), x);
  x = lm_call(lm_conv1d(8, 5, .activation = LM_RELU), x);
  x = lm_call(lm_max_pooling1d(5), x);
  x = lm_call(lm_conv1d(8, 5, .activation = LM_RELU), x);
  x = lm_call(lm_conv1d(8, 5, .activation = LM_RELU), x);
  x = lm_call(lm_global_max_pooling1d(), x);
  x = lm_call(lm_dense(8, .activation = LM_RELU), x);
  lm_tensor *age = lm_call(lm_dense(1, .name = "age"), x);
  lm_tensor *income = lm_call(lm_dense(10, .activation = LM_SOFTMAX, .name = "income"), x);
  lm_tensor *gender = lm_call(lm_dense(1, .activation = LM_SIGMOID, .name = "gender"), x);
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(age, income, gender));
  sample s = compiled(m, lm_compile(m, .optimizer = lm_adamw(.learning_rate = 0.01),
                                    .loss = LM_LOSS_DICT("age", "mse", "income", "categorical_crossentropy", "gender",
                                                         "binary_crossentropy"),
                                    .loss_weights = LM_LOSS_WEIGHTS(0.25, 1.0, 10.0),
                                    .metrics = LM_METRIC_DICT("income", "acc", "gender", "acc")), 1, 3);
  s.x[0] = random_ints(LM_SHAPE(4, 270), 500, 141);
  s.y[0] = random_floats(LM_SHAPE(4, 1), 142);
  s.y[1] = one_hot(4, 10, 143);
  s.y[2] = zeros_ones(4, 144);
  return s;
}

static sample chapter_separable_classifier(int opt) {
  (void)opt;
  lm_tensor *x = lm_input(LM_SHAPE(32, 32, 3));
  lm_tensor *y = lm_call(lm_separable_conv2d(8, 3, .activation = LM_RELU), x);
  y = lm_call(lm_separable_conv2d(8, 3, .activation = LM_RELU), y);
  y = lm_call(lm_max_pooling2d(2), y);
  y = lm_call(lm_separable_conv2d(8, 3, .activation = LM_RELU), y);
  y = lm_call(lm_separable_conv2d(16, 3, .activation = LM_RELU), y);
  y = lm_call(lm_max_pooling2d(2), y);
  y = lm_call(lm_separable_conv2d(8, 3, .activation = LM_RELU), y);
  y = lm_call(lm_separable_conv2d(16, 3, .activation = LM_RELU), y);
  y = lm_call(lm_global_average_pooling2d(), y);
  y = lm_call(lm_dense(8, .activation = LM_RELU), y);
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(10, .activation = LM_SOFTMAX), y)));
  sample s = compiled(m, lm_compile(m, .optimizer = lm_sgd(.learning_rate = 0.05, .momentum = 0.9),
                                    .loss = LM_LOSSES("sparse_categorical_crossentropy"), .metrics = LM_METRICS("acc")), 1, 1);
  s.x[0] = random_floats(LM_SHAPE(2, 32, 32, 3), 151);
  s.y[0] = class_ids(2, 10, 152);
  return s;
}

static lm_tensor *conv_relu(lm_tensor *x, int kernel, int stride) {
  return lm_call(lm_conv2d(8, kernel, .strides = {stride}, .padding = LM_SAME, .activation = LM_RELU), x);
}

static sample chapter_inception(int opt) {
  (void)opt;
  lm_tensor *x = lm_input(LM_SHAPE(8, 8, 3));
  lm_tensor *a = conv_relu(x, 1, 2);
  lm_tensor *b = conv_relu(conv_relu(x, 1, 1), 3, 2);
  lm_tensor *c = conv_relu(lm_call(lm_average_pooling2d(3, .strides = {2}, .padding = LM_SAME), x), 3, 1);
  lm_tensor *d = conv_relu(conv_relu(conv_relu(x, 1, 1), 3, 1), 3, 2);
  lm_tensor *y = lm_call(lm_global_average_pooling2d(), lm_concatenate(LM_TENSORS(a, b, c, d)));
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(10, .activation = LM_SOFTMAX), y)));
  sample s = compiled(m, lm_compile(m, .optimizer = lm_rmsprop(.learning_rate = 0.005),
                                    .loss = LM_LOSSES("categorical_crossentropy")), 1, 1);
  s.x[0] = random_floats(LM_SHAPE(3, 8, 8, 3), 161);
  s.y[0] = one_hot(3, 10, 162);
  return s;
}

static sample chapter_residual(int opt) {
  (void)opt;
  lm_tensor *x = lm_input(LM_SHAPE(8, 8, 8));
  lm_tensor *y = lm_add(LM_TENSORS(conv_relu(conv_relu(conv_relu(x, 3, 1), 3, 1), 3, 1), x));
  lm_tensor *z = lm_call(lm_max_pooling2d(2, .strides = {2}), conv_relu(conv_relu(y, 3, 1), 3, 1));
  z = lm_add(LM_TENSORS(z, lm_call(lm_conv2d(8, 1, .strides = {2}, .padding = LM_SAME), y)));
  lm_tensor *out = lm_call(lm_dense(1), lm_call(lm_global_average_pooling2d(), z));
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(out), .name = "residual");
  sample s = compiled(m, lm_compile(m, .optimizer = lm_adam(.learning_rate = 0.005), .loss = LM_LOSSES("mse")), 1, 1);
  s.x[0] = random_floats(LM_SHAPE(3, 8, 8, 8), 171);
  s.y[0] = random_floats(LM_SHAPE(3, 1), 172);
  return s;
}

/* Xception's pattern on a small scale: one convolutional base, a model, called on both
 * cameras (its weights shared). */
static sample chapter_dual_camera(int opt) {
  (void)opt;
  lm_tensor *img = lm_input(LM_SHAPE(12, 12, 3));
  lm_tensor *f = lm_call(lm_conv2d(8, 3, .strides = {2}, .no_bias = true), img);
  f = lm_call(lm_batch_normalization(), f);
  f = lm_call(lm_activation_layer(LM_RELU), f);
  f = lm_call(lm_separable_conv2d(8, 3, .padding = LM_SAME, .no_bias = true), f);
  f = lm_call(lm_batch_normalization(), f);
  f = lm_call(lm_depthwise_conv2d(3, .padding = LM_SAME), f);
  lm_model *base = lm_model_new(LM_TENSORS(img), LM_TENSORS(f), .name = "base");
  lm_tensor *left = lm_input(LM_SHAPE(12, 12, 3), .name = "left"), *right = lm_input(LM_SHAPE(12, 12, 3), .name = "right");
  lm_tensor *merged = lm_concatenate(LM_TENSORS(lm_call(base, left), lm_call(base, right)));
  lm_tensor *distance = lm_call(lm_dense(1, .name = "distance"), lm_call(lm_global_average_pooling2d(), merged));
  lm_model *m = lm_model_new(LM_TENSORS(left, right), LM_TENSORS(distance), .name = "dual_camera");
  sample s = compiled(m, lm_compile(m, .optimizer = lm_adam(.learning_rate = 0.01), .loss = LM_LOSSES("mse")), 2, 1);
  s.x[0] = random_floats(LM_SHAPE(3, 12, 12, 3), 181);
  s.x[1] = random_floats(LM_SHAPE(3, 12, 12, 3), 182);
  s.y[0] = random_floats(LM_SHAPE(3, 1), 183);
  return s;
}

static sample chapter_bidirectional_rnn(int opt) {
  (void)opt;
  lm_tensor *x = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32);
  lm_tensor *y = lm_call(lm_embedding(100, 6), x);
  y = lm_call(lm_bidirectional(lm_gru(4, .return_sequences = true)), y);
  y = lm_call(lm_bidirectional(lm_lstm(3, .return_sequences = true), .merge_mode = LM_MERGE_SUM), y);
  y = lm_call(lm_simple_rnn(5), y);
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(2, .activation = LM_SOFTMAX), y)));
  sample s = compiled(m, lm_compile(m, .optimizer = lm_rmsprop(.learning_rate = 0.01),
                                    .loss = LM_LOSSES("categorical_crossentropy"), .metrics = LM_METRICS("acc")), 1, 1);
  s.x[0] = random_ints(LM_SHAPE(4, 7), 100, 191);
  s.y[0] = one_hot(4, 2, 192);
  return s;
}

static sample chapter_sequential(int opt) {
  (void)opt;
  lm_model *inner = inner_sequential();
  lm_model *m = lm_sequential(.name = "stack");
  assert_int_equal(lm_sequential_add(m, lm_input_layer(LM_SHAPE(3, 4))), LM_OK);
  assert_int_equal(lm_sequential_add(m, lm_flatten()), LM_OK);
  assert_int_equal(lm_sequential_add(m, lm_model_layer(inner)), LM_OK);
  assert_int_equal(lm_sequential_add(m, lm_batch_normalization()), LM_OK);
  assert_int_equal(lm_sequential_add(m, lm_dropout(0.2)), LM_OK);
  assert_int_equal(lm_sequential_add(m, lm_reshape(LM_SHAPE(2, 3))), LM_OK);
  assert_int_equal(lm_sequential_add(m, lm_dense(2)), LM_OK);
  sample s = compiled(m, lm_compile(m, .optimizer = lm_sgd(.learning_rate = 0.05), .loss = LM_LOSSES("mae")), 1, 1);
  s.x[0] = random_floats(LM_SHAPE(4, 3, 4), 201);
  s.y[0] = random_floats(LM_SHAPE(4, 2, 2), 202);
  return s;
}
typedef sample (*builder)(int opt);
static const struct {
  const char *name;
  builder build;
  int opt;
} models[] = {{"text", build_text, 2}, {"vision", build_vision, 1}, {"stack", build_stack, 0}};

static void train(sample *s, int epochs, int initial_epoch) {
  lm_history *h = lm_fit(s->m, feed_of(s->x, s->n_x), feed_of(s->y, s->n_y), .epochs = epochs,
                         .initial_epoch = initial_epoch, .batch_size = 4, .no_shuffle = true, .verbose = LM_SILENT);
  if (!h) fail_msg("fit: %s", lm_last_error());
  lm_history_free(h);
}

static lm_outputs predict(lm_model *m, const sample *s) {
  lm_outputs out = lm_predict(m, feed_of((lm_array **)s->x, s->n_x), .verbose = LM_SILENT);
  if (out.n != m->n_outputs) fail_msg("predict: %s", lm_last_error());
  return out;
}

static void assert_same_outputs(lm_outputs *a, lm_outputs *b) {
  assert_int_equal(a->n, b->n);
  for (int o = 0; o < a->n; o++) {
    assert_int_equal(a->a[o]->size, b->a[o]->size);
    assert_memory_equal(a->a[o]->data, b->a[o]->data, (size_t)a->a[o]->size * sizeof(float));
  }
  lm_outputs_free(a);
  lm_outputs_free(b);
}

/* ---- Round trips ---- */

static void test_round_trips(void **state) {
  (void)state;
  for (size_t k = 0; k < sizeof models / sizeof *models; k++) {
    lm_set_seed(1);
    sample s = models[k].build(models[k].opt);
    train(&s, 1, 0);
    const char *w3 = tmp("m.weights.h5"), *w2 = tmp("m.h5"), *mk = tmp("m.keras"), *mh = tmp("model.h5");
    assert_int_equal(lm_save_weights(s.m, w3), LM_OK);
    assert_int_equal(lm_save_weights(s.m, w2), LM_OK);
    assert_int_equal(lm_save_model(s.m, mk), LM_OK);
    assert_int_equal(lm_save_model(s.m, mh), LM_OK);
    const char *weight_files[] = {w3, w2, mk, mh};
    for (int f = 0; f < 4; f++) {
      lm_set_seed(2); /* other initial weights */
      sample t = models[k].build(models[k].opt);
      if (lm_load_weights(t.m, weight_files[f]) != LM_OK) fail_msg("%s: %s", weight_files[f], lm_last_error());
      assert_same_weights(s.m, t.m);
      lm_outputs a = predict(s.m, &s), b = predict(t.m, &s);
      assert_same_outputs(&a, &b);
      sample_free(&t);
    }
    const char *model_files[] = {mk, mh};
    for (int f = 0; f < 2; f++) {
      lm_model *m = lm_load_model(model_files[f]);
      if (!m) fail_msg("%s: %s", model_files[f], lm_last_error());
      assert_string_equal(lm_model_name(m), lm_model_name(s.m));
      assert_int_equal(lm_model_n_layers(m), lm_model_n_layers(s.m));
      assert_int_equal(lm_model_count_params(m), lm_model_count_params(s.m));
      assert_int_equal(lm_model_count_trainable_params(m), lm_model_count_trainable_params(s.m));
      assert_same_weights(s.m, m);
      assert_non_null(m->compiled);
      assert_int_equal(m->compiled->opt->kind, s.m->compiled->opt->kind);
      assert_int_equal(m->compiled->opt->iterations, s.m->compiled->opt->iterations);
      for (int o = 0; o < m->n_outputs; o++) {
        assert_int_equal(m->compiled->loss[o].kind, s.m->compiled->loss[o].kind);
        assert_int_equal(m->compiled->loss[o].from_logits, s.m->compiled->loss[o].from_logits);
        assert_true(m->compiled->loss_weight[o] == s.m->compiled->loss_weight[o]);
        assert_int_equal(m->compiled->n_metrics[o], s.m->compiled->n_metrics[o]);
      }
      lm_outputs a = predict(s.m, &s), b = predict(m, &s);
      assert_same_outputs(&a, &b);
    }
    sample_free(&s);
    lm_session_clear();
  }
}

/* Training resumed from a saved model goes on exactly as if it had not stopped: every
 * optimizer, both model formats, dropout (whose masks follow the restored step count) and
 * batch normalization's moving statistics included. */
static void test_resume_training(void **state) {
  (void)state;
  const char *formats[] = {"resume.keras", "resume.h5"};
  for (int opt = 0; opt < 5; opt++) {
    for (int f = 0; f < 2; f++) {
      lm_set_seed(5);
      sample a = build_text(opt);
      train(&a, 2, 0);
      lm_set_seed(5);
      sample b = build_text(opt);
      train(&b, 1, 0);
      assert_int_equal(lm_save_model(b.m, tmp(formats[f])), LM_OK);
      lm_model *m = lm_load_model(tmp(formats[f]));
      if (!m) fail_msg("%s: %s", formats[f], lm_last_error());
      assert_int_equal(m->compiled->opt->iterations, 3); /* 12 samples, batches of 4 */
      b.m = m;
      train(&b, 2, 1);
      assert_same_weights(a.m, m);
      assert_int_equal(m->compiled->opt->iterations, a.m->compiled->opt->iterations);
      sample_free(&a);
      sample_free(&b);
      lm_session_clear();
    }
  }
  /* The same through the weights files alone, into a model compiled the same way. */
  const char *wformats[] = {"resume.weights.h5", "resume_w.h5"};
  for (int f = 0; f < 2; f++) {
    lm_set_seed(5);
    sample a = build_vision(2);
    train(&a, 2, 0);
    lm_set_seed(5);
    sample b = build_vision(2);
    train(&b, 1, 0);
    if (f == 0) assert_int_equal(lm_save_weights(b.m, tmp(wformats[f])), LM_OK);
    else assert_int_equal(lm_save_model(b.m, tmp(wformats[f])), LM_OK);
    lm_set_seed(9);
    sample c = build_vision(2);
    if (lm_load_weights(c.m, tmp(wformats[f])) != LM_OK) fail_msg("%s", lm_last_error());
    train(&c, 2, 1);
    assert_same_weights(a.m, c.m);
    sample_free(&a);
    sample_free(&b);
    sample_free(&c);
    lm_session_clear();
  }
}

/* ---- The layout Keras 3 reads ---- */

static void expect_group(lm_h5 *h, const char *path, const char *name) {
  if (lm__h5_kind(h, path) != LM_H5_GROUP) fail_msg("no group %s", path);
  if (name) {
    char *got;
    assert_int_equal(lm__h5_get_attr_str(h, path, "name", &got), LM_OK);
    if (strcmp(got, name)) fail_msg("%s: name %s, expected %s", path, got, name);
    free(got);
  }
}

static void expect_dataset(lm_h5 *h, const char *path, lm_shape want) {
  lm_shape got;
  if (lm__h5_dataset_shape(h, path, &got) != LM_OK) fail_msg("%s", lm_last_error());
  if (!lm__shape_equal(got, want)) fail_msg("%s: wrong shape", path);
}

static void expect_strings(lm_h5 *h, const char *obj, const char *attr, const char *const *want, int n) {
  char **got;
  int k;
  if (lm__h5_get_attr_strs(h, obj, attr, &got, &k) != LM_OK) fail_msg("%s", lm_last_error());
  assert_int_equal(k, n);
  for (int i = 0; i < n; i++)
    if (strcmp(got[i], want[i])) fail_msg("%s %s[%d]: %s, expected %s", obj, attr, i, got[i], want[i]);
  lm__h5_free_strs(got, k);
}

static void open_file(lm_h5 *h, const char *path) {
  uint8_t *b;
  size_t len;
  assert_int_equal(lm__read_file(path, &b, &len), LM_OK);
  assert_int_equal(lm__h5_open_image(h, b, len, path), LM_OK);
  free(b);
}

static void count_trainable(lm_weight *w, void *ctx) { *(int64_t *)ctx += lm__weight_trainable(w); }

static void test_keras_layout(void **state) {
  (void)state;
  lm_set_seed(1);
  sample s = build_text(2);
  train(&s, 1, 0);
  assert_int_equal(lm_save_weights(s.m, tmp("t.weights.h5")), LM_OK);
  lm_h5 h;
  open_file(&h, tmp("t.weights.h5"));
  /* Groups named after classes (unique per list), with the object's name as attribute. */
  expect_group(&h, "vars", "text");
  expect_group(&h, "layers/input_layer/vars", "tokens");
  expect_dataset(&h, "layers/embedding/vars/0", LM_SHAPE(50, 6));
  expect_dataset(&h, "layers/conv1d/vars/0", LM_SHAPE(3, 6, 6));
  expect_group(&h, "layers/max_pooling1d/vars", lm_layer_name(lm_model_get_layer(s.m, 3)));
  expect_dataset(&h, "layers/batch_normalization/vars/3", LM_SHAPE(6)); /* moving_variance */
  expect_group(&h, "layers/bidirectional/vars", lm_layer_name(lm_model_get_layer(s.m, 5)));
  expect_group(&h, "layers/bidirectional/forward_layer/cell/vars", "lstm_cell");
  expect_group(&h, "layers/bidirectional/backward_layer/cell/vars", "lstm_cell");
  expect_dataset(&h, "layers/bidirectional/forward_layer/cell/vars/0", LM_SHAPE(6, 16));
  expect_dataset(&h, "layers/bidirectional/backward_layer/cell/vars/1", LM_SHAPE(4, 16));
  expect_group(&h, "layers/gru/cell/vars", "gru_cell");
  expect_dataset(&h, "layers/gru/cell/vars/2", LM_SHAPE(2, 12)); /* reset_after bias */
  expect_group(&h, "layers/simple_rnn/cell/vars", "simple_rnn_cell");
  expect_dataset(&h, "layers/layer_normalization/vars/1", LM_SHAPE(4));
  expect_group(&h, "layers/functional/vars", "head");
  expect_dataset(&h, "layers/functional/layers/dense/vars/0", LM_SHAPE(5, 3));
  expect_group(&h, "layers/functional/layers/input_layer/vars", NULL);
  expect_dataset(&h, "layers/dense/vars/0", LM_SHAPE(5, 5));
  expect_dataset(&h, "layers/dense_1/vars/0", LM_SHAPE(5, 5));
  expect_dataset(&h, "layers/dense_2/vars/0", LM_SHAPE(6, 3));
  expect_group(&h, "layers/dropout/vars", NULL);
  assert_int_equal(lm__h5_n_children(&h, "layers/dense/vars"), 2);
  /* Adam: iteration, learning_rate, then momentum and velocity per trainable weight. */
  expect_group(&h, "optimizer/vars", "adam");
  int64_t trainable = 0;
  lm__layer_visit_weights(&s.m->base, count_trainable, &trainable);
  assert_int_equal(lm__h5_n_children(&h, "optimizer/vars"), 2 + 2 * trainable);
  double it, lr;
  assert_int_equal(lm__h5_read_scalar(&h, "optimizer/vars/0", &it), LM_OK);
  assert_int_equal(lm__h5_read_scalar(&h, "optimizer/vars/1", &lr), LM_OK);
  assert_true(it == 3 && lr == (double)0.01f);
  expect_dataset(&h, "optimizer/vars/2", LM_SHAPE(50, 6)); /* the embeddings' momentum */
  expect_dataset(&h, "optimizer/vars/3", LM_SHAPE(50, 6));
  lm__h5_close(&h);

  /* The legacy layout: layer names, weight names as variable paths. */
  assert_int_equal(lm_save_model(s.m, tmp("t.h5")), LM_OK);
  open_file(&h, tmp("t.h5"));
  const char *names[32];
  for (int i = 0; i < lm_model_n_layers(s.m); i++) names[i] = lm_layer_name(lm_model_get_layer(s.m, i));
  expect_strings(&h, "model_weights", "layer_names", names, lm_model_n_layers(s.m));
  char g[256], k[256], r[256], b[256], *cfg;
  const char *bidi = names[5];
  snprintf(g, sizeof g, "model_weights/%s", bidi);
  snprintf(k, sizeof k, "%s/forward_lstm/lstm_cell/kernel", bidi);
  snprintf(r, sizeof r, "%s/forward_lstm/lstm_cell/recurrent_kernel", bidi);
  snprintf(b, sizeof b, "%s/forward_lstm/lstm_cell/bias", bidi);
  char bk[256], br[256], bb[256];
  snprintf(bk, sizeof bk, "%s/backward_lstm/lstm_cell/kernel", bidi);
  snprintf(br, sizeof br, "%s/backward_lstm/lstm_cell/recurrent_kernel", bidi);
  snprintf(bb, sizeof bb, "%s/backward_lstm/lstm_cell/bias", bidi);
  expect_strings(&h, g, "weight_names", (const char *[]){k, r, b, bk, br, bb}, 6);
  /* A nested model is one layer of the legacy file, with its layers' weights. */
  const lm_model *head = lm_model_layer_by_name(s.m, "head")->model;
  const char *dense = lm_layer_name(lm_model_get_layer(head, 1));
  snprintf(k, sizeof k, "%s/kernel", dense);
  snprintf(b, sizeof b, "%s/bias", dense);
  expect_strings(&h, "model_weights/head", "weight_names", (const char *[]){k, b}, 2);
  snprintf(g, sizeof g, "model_weights/head/%s/kernel", dense);
  expect_dataset(&h, g, LM_SHAPE(5, 3));
  assert_int_equal(lm__h5_get_attr_str(&h, "", "model_config", &cfg), LM_OK);
  assert_non_null(strstr(cfg, "\"class_name\": \"Functional\""));
  free(cfg);
  assert_int_equal(lm__h5_get_attr_str(&h, "", "training_config", &cfg), LM_OK);
  assert_non_null(strstr(cfg, "\"optimizer_config\": {\"class_name\": \"Adam\""));
  free(cfg);
  lm__h5_close(&h);

  /* .keras: three members, as Keras writes them. */
  assert_int_equal(lm_save_model(s.m, tmp("t.keras")), LM_OK);
  size_t len;
  uint8_t *zipb = read_bytes(tmp("t.keras"), &len);
  lm_zip z;
  assert_int_equal(lm__zip_open(&z, zipb, len, "t.keras"), LM_OK);
  assert_int_equal(z.n, 3);
  assert_string_equal(z.m[0].name, "metadata.json");
  assert_string_equal(z.m[1].name, "config.json");
  assert_string_equal(z.m[2].name, "model.weights.h5");
  uint8_t *text;
  size_t tlen;
  assert_int_equal(lm__zip_read(&z, 0, 1 << 20, &text, &tlen), LM_OK);
  assert_non_null(strstr((char *)text, "{\"keras_version\": \"3.15.1\", \"date_saved\": \""));
  free(text);
  assert_int_equal(lm__zip_read(&z, 1, 1 << 20, &text, &tlen), LM_OK);
  assert_non_null(strstr((char *)text, "\"compile_config\": {\"optimizer\": {\"module\": \"keras.optimizers\", \"class_name\": \"Adam\""));
  assert_non_null(strstr((char *)text, "\"loss\": \"categorical_crossentropy\", \"loss_weights\": null, \"metrics\": [\"acc\"]"));
  free(text);
  lm__zip_close(&z);
  free(zipb);
  sample_free(&s);
  lm_session_clear();
}

/* ---- Failures ---- */

static bool error_names(const char *path, const char *words) {
  return strstr(lm_last_error(), path) && (!words || strstr(lm_last_error(), words));
}

static void expect_error(lm_status st, const char *path, const char *words) {
  if (st == LM_OK) fail_msg("expected a failure for %s", path);
  if (!error_names(path, words)) fail_msg("the error for %s lacks \"%s\": %s", path, words ? words : "", lm_last_error());
}

static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  if (d) closedir(d);
  return n;
}

/* A save that fails half-way leaves the previous file as it was, and no temporary file. */
static void test_failed_saves_keep_previous(void **state) {
  (void)state;
  lm_set_seed(1);
  sample small = build_stack(2), big = build_text(2);
  train(&small, 1, 0);
  train(&big, 1, 0);
  char dir[600];
  snprintf(dir, sizeof dir, "%s/atomic", tmpdir);
  assert_int_equal(mkdir(dir, 0755), 0);
  const char *names[] = {"a.keras", "a.h5", "a.weights.h5", "w.h5"};
  for (int f = 0; f < 4; f++) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, names[f]);
    lm_status (*save)(const lm_model *, const char *) = f < 2 ? lm_save_model : lm_save_weights;
    assert_int_equal(save(small.m, path), LM_OK);
    size_t len0, len1;
    uint8_t *before = read_bytes(path, &len0);
    /* Writes past 4 KiB fail (EFBIG) while the limit holds: a disk that fills up. */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    lm_status st = save(big.m, path);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    expect_error(st, path, "error");
    uint8_t *after = read_bytes(path, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    assert_int_equal(count_files(dir), f + 1); /* no temporary file left behind */
    free(before);
    free(after);
    /* The previous file still loads. */
    lm_set_seed(3);
    sample again = build_stack(2);
    assert_int_equal(lm_load_weights(again.m, path), LM_OK);
    assert_same_weights(small.m, again.m);
    sample_free(&again);
  }
  /* A directory that does not exist; a path that is a directory. */
  char path[700];
  snprintf(path, sizeof path, "%s/missing/m.keras", dir);
  expect_error(lm_save_model(small.m, path), path, "cannot create");
  snprintf(path, sizeof path, "%s/sub.keras", dir);
  assert_int_equal(mkdir(path, 0755), 0);
  expect_error(lm_save_model(small.m, path), path, "rename");
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  /* An unwritable directory (permissions do not stop root, who is skipped). */
  if (geteuid() != 0) {
    snprintf(path, sizeof path, "%s/a.keras", dir);
    chmod(dir, 0555);
    expect_error(lm_save_model(big.m, path), path, "cannot create");
    chmod(dir, 0755);
  }
  sample_free(&small);
  sample_free(&big);
  lm_session_clear();
}

/* Loading a file of another model: errors name the layer, the weight and both shapes, and
 * the model keeps its weights. */
static lm_model *mlp(int hidden, bool extra) {
  lm_tensor *x = lm_input(LM_SHAPE(16));
  lm_tensor *h = lm_call(lm_dense(hidden, .activation = LM_RELU, .name = "hidden"), x);
  if (extra) h = lm_call(lm_dense(hidden, .name = "extra"), h);
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(4, .name = "out"), h)));
  assert_int_equal(lm_compile(m, .optimizer = lm_adam(), .loss = LM_LOSSES("mse")), LM_OK);
  return m;
}

static void test_mismatched_files(void **state) {
  (void)state;
  lm_model *saved = mlp(8, false);
  const char *files[] = {tmp("mm.weights.h5"), tmp("mm.h5"), tmp("mm.keras")};
  assert_int_equal(lm_save_weights(saved, files[0]), LM_OK);
  assert_int_equal(lm_save_weights(saved, files[1]), LM_OK);
  assert_int_equal(lm_save_model(saved, files[2]), LM_OK);
  lm_model *wider = mlp(9, false), *deeper = mlp(8, true);
  weights_copy before = all_weights(wider);
  for (int f = 0; f < 3; f++) {
    expect_error(lm_load_weights(wider, files[f]), files[f], "layer \"hidden\" (Dense): weight kernel has shape (16, 9)");
    assert_non_null(strstr(lm_last_error(), "but (16, 8) in the file"));
    weights_copy now = all_weights(wider);
    assert_memory_equal(before.v, now.v, (size_t)before.n * sizeof(float));
    free(now.v);
  }
  free(before.v);
  expect_error(lm_load_weights(deeper, files[0]), files[0], "layer \"extra\" (Dense): weight kernel has shape (8, 8)");
  expect_error(lm_load_weights(deeper, files[1]), files[1], "layer count mismatch: the model has 3 layers with weights, the file has 2");
  /* An optimizer whose variables differ (SGD without momentum has none) is left alone, as
   * Keras does; the weights load. */
  lm_tensor *x = lm_input(LM_SHAPE(16));
  lm_tensor *h = lm_call(lm_dense(8, .activation = LM_RELU, .name = "hidden"), x);
  lm_model *sgd = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(4, .name = "out"), h)));
  assert_int_equal(lm_compile(sgd, .optimizer = lm_sgd(), .loss = LM_LOSSES("mse")), LM_OK);
  saved->compiled->opt->iterations = 7;
  assert_int_equal(lm_save_weights(saved, files[0]), LM_OK);
  assert_int_equal(lm_load_weights(sgd, files[0]), LM_OK);
  assert_same_weights(saved, sgd);
  assert_int_equal(sgd->compiled->opt->iterations, 0);
  lm_model *same = mlp(8, false);
  assert_int_equal(lm_load_weights(same, files[0]), LM_OK);
  assert_int_equal(same->compiled->opt->iterations, 7);
  lm_session_clear();
}

static void test_bad_paths(void **state) {
  (void)state;
  lm_model *m = mlp(8, false);
  assert_int_equal(lm_save_weights(NULL, tmp("x.weights.h5")), LM_ERROR_VALUE);
  assert_int_equal(lm_save_weights(m, NULL), LM_ERROR_VALUE);
  assert_int_equal(lm_load_weights(m, NULL), LM_ERROR_VALUE);
  assert_null(lm_load_model(NULL));
  expect_error(lm_save_weights(m, tmp("x.txt")), tmp("x.txt"), ".weights.h5");
  expect_error(lm_save_model(m, tmp("x.weights.h5")), tmp("x.weights.h5"), ".keras or .h5");
  expect_error(lm_load_weights(m, tmp("none.weights.h5")), tmp("none.weights.h5"), "cannot open");
  assert_null(lm_load_model(tmp("none.keras")));
  assert_true(error_names(tmp("none.keras"), "cannot open"));
  write_bytes(tmp("text.weights.h5"), (const uint8_t *)"hello, world", 12);
  expect_error(lm_load_weights(m, tmp("text.weights.h5")), tmp("text.weights.h5"), "not an HDF5 file");
  write_bytes(tmp("text.keras"), (const uint8_t *)"hello, world", 12);
  assert_null(lm_load_model(tmp("text.keras")));
  assert_true(error_names(tmp("text.keras"), "not a zip"));
  /* A zip that is not a Keras file; an HDF5 file that holds no weights or model. */
  const char *names[] = {"a"};
  lm_array *a = lm_array_new(LM_FLOAT32, LM_SHAPE(2));
  assert_int_equal(lm_save_npz(tmp("npz.keras"), names, (const lm_array *const *)&a, 1), LM_OK);
  assert_null(lm_load_model(tmp("npz.keras")));
  assert_true(error_names(tmp("npz.keras"), "no config.json"));
  lm_array_free(a);
  lm_h5 h;
  assert_int_equal(lm__h5_create(&h, "empty"), LM_OK);
  assert_int_equal(lm__h5_make_group(&h, "stuff"), LM_OK);
  uint8_t *img;
  size_t len;
  assert_int_equal(lm__h5_image(&h, &img, &len), LM_OK);
  lm__h5_close(&h);
  write_bytes(tmp("empty.h5"), img, len);
  free(img);
  expect_error(lm_load_weights(m, tmp("empty.h5")), tmp("empty.h5"), "no Keras weights");
  assert_null(lm_load_model(tmp("empty.h5")));
  assert_true(error_names(tmp("empty.h5"), "no model config"));
  lm_session_clear();
}

/* Truncated and corrupted files: an error naming the file, or (for a byte that changes a
 * value only) a load; never a crash (run under ASan), and a failed load changes nothing. */
static void test_corrupt_files(void **state) {
  (void)state;
  lm__h5_set_read_timeout(3, 1); /* libhdf5 loops on some corrupt files until stopped */
  lm_set_seed(1);
  sample s = build_text(2);
  train(&s, 1, 0);
  char files[4][512];
  snprintf(files[0], sizeof files[0], "%s", tmp("c.weights.h5"));
  snprintf(files[1], sizeof files[1], "%s", tmp("c.h5"));
  snprintf(files[2], sizeof files[2], "%s", tmp("c.keras"));
  snprintf(files[3], sizeof files[3], "%s", tmp("cw.h5"));
  assert_int_equal(lm_save_weights(s.m, files[0]), LM_OK);
  assert_int_equal(lm_save_model(s.m, files[1]), LM_OK);
  assert_int_equal(lm_save_model(s.m, files[2]), LM_OK);
  assert_int_equal(lm_save_weights(s.m, files[3]), LM_OK);
  lm_set_seed(2);
  sample t = build_text(2);
  const char *names[] = {"cut.weights.h5", "cut.h5", "cut.keras", "cut.h5"};
  for (int f = 0; f < 4; f++) {
    size_t len;
    uint8_t *b = read_bytes(files[f], &len);
    char cut[512];
    snprintf(cut, sizeof cut, "%s", tmp(names[f]));
    int failures = 0;
    /* Truncations, dense near the start (the headers) and sparse after. */
    for (size_t at = 0; at < len; at = at < 600 ? at + 29 : at + len / 23 + 1) {
      write_bytes(cut, b, at);
      lm_status st = lm_load_weights(t.m, cut);
      if (st == LM_OK) fail_msg("%s cut to %zu bytes loaded", files[f], at);
      if (!error_names(cut, NULL)) fail_msg("%s cut to %zu: the error does not name the file: %s", files[f], at, lm_last_error());
      failures++;
    }
    /* Bytes flipped all over the file (each load forks a reader: keep the count modest). */
    for (size_t at = 5; at < len; at += at < 4096 ? 41 : len / 50 + 1) {
      b[at] ^= 0x5A;
      write_bytes(cut, b, len);
      b[at] ^= 0x5A;
      weights_copy keep = all_weights(t.m);
      lm_status st = lm_load_weights(t.m, cut);
      if (st != LM_OK) {
        if (!error_names(cut, NULL)) fail_msg("%s, byte %zu: the error does not name the file: %s", files[f], at, lm_last_error());
        weights_copy now = all_weights(t.m);
        assert_memory_equal(keep.v, now.v, (size_t)keep.n * sizeof(float));
        free(now.v);
        failures++;
      }
      free(keep.v);
      if (f == 1 || f == 2) { /* whole models too */
        lm_model *m = lm_load_model(cut);
        if (!m && !error_names(cut, NULL))
          fail_msg("%s, byte %zu: the error does not name the file: %s", files[f], at, lm_last_error());
      }
    }
    assert_true(failures > 0);
    free(b);
    /* The model loaded no garbage along the way: one good load makes it the saved one. */
    if (lm_load_weights(t.m, files[f]) != LM_OK) fail_msg("%s", lm_last_error());
    assert_same_weights(s.m, t.m);
  }
  sample_free(&s);
  sample_free(&t);
  lm__h5_set_read_timeout(10, 1);
  lm_session_clear();
}

/* Files made to harm: links that lead elsewhere, data stored outside the file, a cycle of
 * groups, a dataset of text; and a file of Keras 2.13's era, which names "layers"
 * "_layer_checkpoint_dependencies". */
typedef void (*h5_edit)(hid_t f);

static void edit_soft(hid_t f) {
  H5Ldelete(f, "layers/dense/vars", H5P_DEFAULT);
  H5Lcreate_soft("/layers/dense_1/vars", f, "layers/dense/vars", H5P_DEFAULT, H5P_DEFAULT);
}
static void edit_external(hid_t f) {
  H5Ldelete(f, "layers/dense/vars", H5P_DEFAULT);
  H5Lcreate_external("/etc/other.h5", "/vars", f, "layers/dense/vars", H5P_DEFAULT, H5P_DEFAULT);
}
static void edit_external_storage(hid_t f) {
  H5Ldelete(f, "layers/dense/vars/0", H5P_DEFAULT);
  hsize_t dims[2] = {16, 8};
  hid_t space = H5Screate_simple(2, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_external(dcpl, "/etc/passwd", 0, 16 * 8 * 4);
  hid_t d = H5Dcreate2(f, "layers/dense/vars/0", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Dclose(d), H5Pclose(dcpl), H5Sclose(space);
}
static void edit_text(hid_t f) {
  H5Ldelete(f, "layers/dense/vars/1", H5P_DEFAULT);
  hid_t t = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR);
  H5Tset_size(t, 8);
  hid_t d = H5Dcreate2(f, "layers/dense/vars/1", t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, "abcdefgh");
  H5Dclose(d), H5Sclose(space), H5Tclose(t);
}
static void edit_cycle(hid_t f) { H5Lcreate_hard(f, "/", f, "layers/dense/loop", H5P_DEFAULT, H5P_DEFAULT); }
static void edit_old_names(hid_t f) { H5Lmove(f, "layers", f, "_layer_checkpoint_dependencies", H5P_DEFAULT, H5P_DEFAULT); }
static void edit_shape_bomb(hid_t f) {
  /* A chunked, compressed dataset declaring 2^40 values while storing none. */
  H5Ldelete(f, "layers/dense/vars/1", H5P_DEFAULT);
  hsize_t dims[1] = {(hsize_t)1 << 40}, chunk[1] = {1 << 16};
  hid_t space = H5Screate_simple(1, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 1, chunk);
  H5Pset_deflate(dcpl, 9);
  hid_t d = H5Dcreate2(f, "layers/dense/vars/1", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Dclose(d), H5Pclose(dcpl), H5Sclose(space);
}

static void test_hostile_hdf5(void **state) {
  (void)state;
  lm_model *m = mlp(8, false);
  struct {
    h5_edit edit;
    const char *words; /* NULL: it loads */
  } cases[] = {{edit_soft, "layers/dense/vars: not allowed: a soft link"},
               {edit_external, "layers/dense/vars: not allowed: an external link"},
               {edit_external_storage, "layers/dense/vars/0: not allowed: a dataset stored in external files"},
               {edit_text, "layers/dense/vars/1: not a numeric dataset"},
               {edit_cycle, "nested more than 64 deep"},
               {edit_shape_bomb, "declares 1099511627776 values"},
               {edit_old_names, NULL}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s", tmp("hostile.weights.h5"));
    assert_int_equal(lm_save_weights(m, path), LM_OK);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    cases[i].edit(f);
    H5Fclose(f);
    lm_status st = lm_load_weights(m, path);
    if (!cases[i].words) {
      if (st != LM_OK) fail_msg("case %zu: %s", i, lm_last_error());
    } else
      expect_error(st, path, cases[i].words);
  }
  lm_session_clear();
}

/* ---- lamina's files, as Keras reads them ----
 *
 * Each model below (the three of `models`, and the chapter's models that
 * test_keras_files loads from Keras) is saved after one epoch in three formats: .keras,
 * the legacy .h5 and a weights file. With LAMINA_SAVING_OUT set, the files are written
 * there with <name>.npz (inputs x*, targets y*, lamina's predictions p*, and for models
 * without dropout q*, the predictions after one more step on the whole batch), for
 * check_lamina_files.py, which has Keras load them and commits them to
 * tests/fixtures/saving/lamina with Keras's predictions k*. Here the committed files load
 * back to Keras's predictions, and saving what was loaded writes the same bytes (the
 * .keras metadata, which holds the date, aside). */
static const struct {
  const char *name;
  builder build;
  int opt;
  const char *weights; /* the weights file: .weights.h5, or a legacy .h5 */
} lamina_models[] = {{"text", build_text, 2, "text.weights.h5"},
                     {"vision", build_vision, 1, "vision.weights.h5"},
                     {"stack", build_stack, 0, "stack_weights.h5"},
                     {"mlp", chapter_mlp, 0, "mlp.weights.h5"},
                     {"imdb_conv1d", chapter_imdb_conv1d, 0, "imdb_conv1d.weights.h5"},
                     {"siamese_lstm", chapter_siamese_lstm, 0, "siamese_lstm.weights.h5"},
                     {"question_answering", chapter_question_answering, 0, "question_answering.weights.h5"},
                     {"posts", chapter_posts, 0, "posts.weights.h5"},
                     {"separable_classifier", chapter_separable_classifier, 0, "separable_classifier.weights.h5"},
                     {"inception", chapter_inception, 0, "inception.weights.h5"},
                     {"residual", chapter_residual, 0, "residual.weights.h5"},
                     {"dual_camera", chapter_dual_camera, 0, "dual_camera.weights.h5"},
                     {"bidirectional_rnn", chapter_bidirectional_rnn, 0, "bidirectional_rnn.weights.h5"},
                     {"sequential", chapter_sequential, 0, "sequential.weights.h5"}};
#define N_LAMINA_MODELS (int)(sizeof lamina_models / sizeof *lamina_models)

/* The k-th model's f-th file: .keras, .h5, weights. */
static const char *lamina_file(int k, int f, char *buf, size_t cap) {
  if (f == 2) return lamina_models[k].weights;
  snprintf(buf, cap, "%s.%s", lamina_models[k].name, f == 0 ? "keras" : "h5");
  return buf;
}

/* Whether a model (or a model inside it) has a Dropout layer, whose masks differ between
 * libraries. */
static bool has_dropout(const lm_model *m) {
  for (int i = 0; i < lm_model_n_layers(m); i++) {
    const lm_layer *l = lm_model_get_layer(m, i);
    if (!strcmp(l->vt->class_name, "Dropout") || (l->model && has_dropout(l->model))) return true;
  }
  return false;
}

static lm_status save_as(const lm_model *m, const char *file, const char *path) {
  bool weights_only = strstr(file, "weights") != NULL;
  return weights_only ? lm_save_weights(m, path) : lm_save_model(m, path);
}

/* Appends arrays as prefix0, prefix1 ... to an npz list. */
static void add_arrays(const char *prefix, lm_array **a, int n, const char **names, lm_array **all, int *k) {
  static char keys[64][16];
  for (int i = 0; i < n; i++) {
    snprintf(keys[*k], sizeof keys[0], "%s%d", prefix, i);
    names[*k] = keys[*k];
    all[(*k)++] = a[i];
  }
}

static void write_lamina_files(const char *dir) {
  for (int k = 0; k < N_LAMINA_MODELS; k++) {
    lm_session_clear();
    lm_set_seed(1);
    sample s = lamina_models[k].build(lamina_models[k].opt);
    train(&s, 1, 0);
    for (int f = 0; f < 3; f++) {
      char path[1024], buf[128];
      const char *file = lamina_file(k, f, buf, sizeof buf);
      snprintf(path, sizeof path, "%s/%s", dir, file);
      if (save_as(s.m, file, path) != LM_OK) fail_msg("%s: %s", path, lm_last_error());
    }
    const char *names[64];
    lm_array *arrays[64];
    int n = 0;
    lm_outputs p = predict(s.m, &s), q = {0};
    add_arrays("x", s.x, s.n_x, names, arrays, &n);
    add_arrays("y", s.y, s.n_y, names, arrays, &n);
    add_arrays("p", p.a, p.n, names, arrays, &n);
    if (!has_dropout(s.m)) {
      lm_history *h = lm_fit(s.m, feed_of(s.x, s.n_x), feed_of(s.y, s.n_y), .batch_size = (int)s.x[0]->shape.dim[0],
                             .no_shuffle = true, .verbose = LM_SILENT);
      assert_non_null(h);
      lm_history_free(h);
      q = predict(s.m, &s);
      add_arrays("q", q.a, q.n, names, arrays, &n);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.npz", dir, lamina_models[k].name);
    assert_int_equal(lm_save_npz(path, names, (const lm_array *const *)arrays, n), LM_OK);
    lm_outputs_free(&p);
    lm_outputs_free(&q);
    sample_free(&s);
  }
  lm_session_clear();
}

/* The member `name` of a zip file, malloc'd. */
static uint8_t *zip_member(const char *path, const char *name, size_t *len) {
  size_t n;
  uint8_t *b = read_bytes(path, &n), *out = NULL;
  assert_non_null(b);
  lm_zip z;
  assert_int_equal(lm__zip_open(&z, b, n, path), LM_OK);
  int i = lm__zip_find(&z, name);
  assert_true(i >= 0);
  assert_int_equal(lm__zip_read(&z, i, (uint64_t)1 << 30, &out, len), LM_OK);
  lm__zip_close(&z);
  free(b);
  return out;
}

static void assert_same_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, const char *what) {
  if (alen != blen) fail_msg("%s: %zu bytes, the committed file has %zu", what, alen, blen);
  for (size_t i = 0; i < alen; i++)
    if (a[i] != b[i]) fail_msg("%s: byte %zu differs from the committed file", what, i);
}

static void test_lamina_files(void **state) {
  (void)state;
  const char *out = getenv("LAMINA_SAVING_OUT");
  if (out && *out) write_lamina_files(out);
  for (int k = 0; k < N_LAMINA_MODELS; k++) {
    char rel[256], buf[128];
    snprintf(rel, sizeof rel, "lamina/%s.npz", lamina_models[k].name);
    npz z = load_npz(fixture(rel));
    for (int f = 0; f < 3; f++) {
      const char *file = lamina_file(k, f, buf, sizeof buf);
      char committed[1024], again[600], what[300];
      snprintf(rel, sizeof rel, "lamina/%s", file);
      snprintf(committed, sizeof committed, "%s", fixture(rel));
      snprintf(again, sizeof again, "%s", tmp(file));
      lm_session_clear();
      lm_model *m;
      if (strstr(file, "weights")) {
        lm_set_seed(3);
        sample fresh = lamina_models[k].build(lamina_models[k].opt);
        sample_free(&fresh);
        m = fresh.m;
        if (lm_load_weights(m, committed) != LM_OK) fail_msg("%s", lm_last_error());
      } else if (!(m = lm_load_model(committed)))
        fail_msg("%s", lm_last_error());
      snprintf(what, sizeof what, "lamina's %s as Keras predicts it", file);
      check_predictions(m, &z, 'k', 1e-5, 1e-6, what);
      /* Written again, byte for byte (for .keras: its configuration and weights). */
      assert_int_equal(save_as(m, file, again), LM_OK);
      size_t alen, blen;
      if (strstr(file, ".keras")) {
        const char *members[] = {"config.json", "model.weights.h5"};
        for (int i = 0; i < 2; i++) {
          uint8_t *a = zip_member(again, members[i], &alen), *b = zip_member(committed, members[i], &blen);
          snprintf(what, sizeof what, "%s, member %s", file, members[i]);
          assert_same_bytes(a, alen, b, blen, what);
          free(a);
          free(b);
        }
      } else {
        uint8_t *a = read_bytes(again, &alen), *b = read_bytes(committed, &blen);
        assert_same_bytes(a, alen, b, blen, file);
        free(a);
        free(b);
      }
    }
    lm_npz_free(z.names, z.arrays, z.n);
  }
  lm_session_clear();
}

/* A Dropout without a seed, saved and loaded. Keras stores no seed for it ("seed": null in
 * the configuration) and no state of its seed generator (its weights group is empty), so a
 * loaded model draws a new seed from the global one: keras.utils.set_random_seed(s) before
 * load_model gives the same masks every time, another s other masks (checked with Keras
 * 3.15.1 on tests/fixtures/saving/keras/sequential.keras). lamina does the same with
 * lm_set_seed: loads are deterministic under the same session seed. A Dropout with a seed
 * keeps it, and with it its masks. */
static lm_model *dropout_model(uint64_t seed) {
  lm_tensor *x = lm_input(LM_SHAPE(16));
  lm_tensor *h = lm_call(lm_dense(32, .activation = LM_RELU), x);
  h = lm_call(lm_dropout(0.5, .seed = seed), h);
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(4), h)));
  assert_int_equal(lm_compile(m, .optimizer = lm_sgd(.learning_rate = 0.1), .loss = LM_LOSSES("mse")), LM_OK);
  return m;
}

/* The weights after loading `path` under session seed `seed` and one training step. */
static weights_copy trained_after_load(const char *path, uint64_t seed, lm_array *x, lm_array *y) {
  lm_set_seed(seed);
  lm_model *m = lm_load_model(path);
  if (!m) fail_msg("%s: %s", path, lm_last_error());
  lm_history *h = lm_fit(m, LM_FEED(x), LM_FEED(y), .batch_size = 8, .no_shuffle = true, .verbose = LM_SILENT);
  if (!h) fail_msg("fit: %s", lm_last_error());
  lm_history_free(h);
  return all_weights(m);
}

static void test_dropout_seed_on_load(void **state) {
  (void)state;
  lm_array *x = random_floats(LM_SHAPE(8, 16), 41), *y = random_floats(LM_SHAPE(8, 4), 42);
  for (int seeded = 0; seeded < 2; seeded++) {
    lm_set_seed(1);
    lm_model *m = dropout_model(seeded ? 1234 : 0);
    const char *files[] = {tmp("dropout.keras"), tmp("dropout.h5")};
    assert_int_equal(lm_save_model(m, files[0]), LM_OK);
    assert_int_equal(lm_save_model(m, files[1]), LM_OK);
    size_t len;
    char *cfg = (char *)zip_member(files[0], "config.json", &len);
    assert_non_null(strstr(cfg, seeded ? "\"rate\": 0.5, \"seed\": 1234," : "\"rate\": 0.5, \"seed\": null,"));
    free(cfg);
    lm_h5 h;
    uint8_t *w = zip_member(files[0], "model.weights.h5", &len);
    assert_int_equal(lm__h5_open_image(&h, w, len, "model.weights.h5"), LM_OK);
    expect_group(&h, "layers/dropout/vars", NULL);
    assert_int_equal(lm__h5_n_children(&h, "layers/dropout/vars"), 0); /* no seed generator state */
    lm__h5_close(&h);
    free(w);
    for (int f = 0; f < 2; f++) {
      weights_copy a = trained_after_load(files[f], 7, x, y), b = trained_after_load(files[f], 7, x, y),
                   c = trained_after_load(files[f], 8, x, y);
      assert_int_equal(a.n, b.n);
      assert_memory_equal(a.v, b.v, (size_t)a.n * sizeof(float)); /* the same session seed: the same masks */
      bool same = !memcmp(a.v, c.v, (size_t)a.n * sizeof(float));
      if (seeded && !same) fail_msg("%s: a Dropout with a seed lost it in the file", files[f]);
      if (!seeded && same) fail_msg("%s: a Dropout without a seed drew the same masks under another session seed", files[f]);
      free(a.v), free(b.v), free(c.v);
    }
    lm_session_clear();
  }
  lm_array_free(x);
  lm_array_free(y);
}

/* A model nested so deep that its HDF5 paths outgrow the layout's buffers: a clear error
 * naming the file and the path, never a file written under shortened names. */
static void test_too_long_paths(void **state) {
  (void)state;
  lm_tensor *x = lm_input(LM_SHAPE(2));
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(2), x)));
  for (int depth = 0; depth < 40; depth++) {
    lm_tensor *y = lm_input(LM_SHAPE(2));
    m = lm_model_new(LM_TENSORS(y), LM_TENSORS(lm_call(m, y)));
  }
  assert_int_equal(lm_model_status(m), LM_OK);
  const char *path = tmp("deep.weights.h5");
  assert_int_not_equal(lm_save_weights(m, path), LM_OK);
  if (!error_names(path, "the HDF5 path or name \"layers/functional/layers/functional/") || !strstr(lm_last_error(), "more than the 639"))
    fail_msg("%s", lm_last_error());
  assert_int_equal(access(path, F_OK), -1);
  assert_int_not_equal(lm_load_weights(m, path), LM_OK);
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keras_files),
      cmocka_unit_test(test_round_trips),
      cmocka_unit_test(test_resume_training),
      cmocka_unit_test(test_keras_layout),
      cmocka_unit_test(test_failed_saves_keep_previous),
      cmocka_unit_test(test_mismatched_files),
      cmocka_unit_test(test_bad_paths),
      cmocka_unit_test(test_corrupt_files),
      cmocka_unit_test(test_hostile_hdf5),
      cmocka_unit_test(test_lamina_files),
      cmocka_unit_test(test_dropout_seed_on_load),
      cmocka_unit_test(test_too_long_paths),
  };
  if (getenv("LAMINA_TEST_FILTER")) cmocka_set_test_filter(getenv("LAMINA_TEST_FILTER"));
  return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
