/* lamina's side of the benchmark (bench/run.sh runs it beside PyTorch and Keras).
 *
 *   lamina_bench --model A|B|C|D|E|F|F1024 [--warmup 5] [--steps 20] [--threads 2]
 *
 * Times one training step (forward, backward, RMSprop update) and one predict of one batch,
 * each step timed on its own through fit's and predict's batch hooks, and prints one JSON
 * line: medians in ms, the model's FLOPs per training step and per predict (counted from
 * its layers' shapes: 2 per multiply-add; training counts forward, input gradient and
 * weight gradient of each matrix layer), peak RSS, and a checksum of the trained weights
 * so that runs with 1 and 2 threads can be compared bit for bit. The models are those of
 * bench/README.md; the PyTorch and Keras scripts build the same ones. */
#include <lamina/lamina.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* CPU time of the whole process: with one thread it shows the work of a step even while
 * other processes share the cores (wall time is the benchmark's figure). */
static double cpu_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static double rss_now_mb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  double kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6)) kb = atof(line + 6);
  if (f) fclose(f);
  return kb / 1024.0;
}

static double rss_peak_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0;
}

/* ---- The models, and their multiply-adds ---- */

typedef struct bench_model {
  lm_model *model;
  int batch;
  double fwd_macs;   /* multiply-adds of one forward pass over the batch */
  double train_macs; /* forward + input gradients + weight gradients */
} bench_model;

/* A matrix layer: forward MACs, and whether backward also needs its input's gradient. */
static void count(bench_model *b, double macs, int needs_input_grad) {
  b->fwd_macs += macs;
  b->train_macs += macs * (needs_input_grad ? 3 : 2);
}

static lm_tensor *conv1d(bench_model *b, lm_tensor *x, int filters, int k, int *len, int cin, int first) {
  *len -= k - 1;
  count(b, (double)b->batch * *len * k * cin * filters, !first);
  return lm_call(lm_conv1d(filters, k, .activation = LM_RELU), x);
}

static lm_tensor *dense(bench_model *b, lm_tensor *x, int units, int in, lm_activation act, const char *name) {
  count(b, (double)b->batch * in * units, 1);
  return lm_call(lm_dense(units, .activation = act, .name = name), x);
}

static lm_tensor *separable(bench_model *b, lm_tensor *x, int filters, int *hw, int cin, int first) {
  *hw -= 2;
  double px = (double)b->batch * *hw * *hw;
  count(b, px * 9 * cin, !first);
  count(b, px * cin * filters, 1);
  return lm_call(lm_separable_conv2d(filters, 3, .activation = LM_RELU), x);
}

static lm_tensor *conv2d_same(bench_model *b, lm_tensor *x, int k, int stride, int *hw, int cin, int first) {
  *hw = (*hw + stride - 1) / stride;
  count(b, (double)b->batch * *hw * *hw * k * k * cin * 128, !first);
  return lm_call(lm_conv2d(128, k, .strides = {stride}, .padding = LM_SAME, .activation = LM_RELU), x);
}

static bench_model build(const char *name) {
  bench_model b = {0};
  if (!strcmp(name, "A")) { /* the chapter's IMDB Conv1D */
    b.batch = 128;
    int len = 500;
    lm_tensor *in = lm_input(LM_SHAPE(500), .dtype = LM_INT32);
    lm_tensor *x = lm_call(lm_embedding(2000, 128), in);
    x = conv1d(&b, x, 32, 7, &len, 128, 1);
    x = lm_call(lm_max_pooling1d(5), x);
    len /= 5;
    x = conv1d(&b, x, 32, 7, &len, 32, 0);
    x = lm_call(lm_global_max_pooling1d(), x);
    x = dense(&b, x, 1, 32, LM_SIGMOID, NULL);
    b.model = lm_model_new(LM_TENSORS(in), LM_TENSORS(x));
    lm_compile(b.model, .optimizer = lm_rmsprop(), .loss = LM_LOSSES("binary_crossentropy"));
  } else if (!strcmp(name, "B")) { /* the chapter's separable-conv classifier */
    b.batch = 128;
    int hw = 64;
    lm_tensor *in = lm_input(LM_SHAPE(64, 64, 3));
    lm_tensor *x = separable(&b, in, 32, &hw, 3, 1);
    x = separable(&b, x, 64, &hw, 32, 0);
    x = lm_call(lm_max_pooling2d(2), x);
    hw /= 2;
    x = separable(&b, x, 64, &hw, 64, 0);
    x = separable(&b, x, 128, &hw, 64, 0);
    x = lm_call(lm_max_pooling2d(2), x);
    hw /= 2;
    x = separable(&b, x, 64, &hw, 128, 0);
    x = separable(&b, x, 128, &hw, 64, 0);
    x = lm_call(lm_global_average_pooling2d(), x);
    x = dense(&b, x, 32, 128, LM_RELU, NULL);
    x = dense(&b, x, 10, 32, LM_SOFTMAX, NULL);
    b.model = lm_model_new(LM_TENSORS(in), LM_TENSORS(x));
    lm_compile(b.model, .optimizer = lm_rmsprop(), .loss = LM_LOSSES("categorical_crossentropy"));
  } else if (!strcmp(name, "C")) { /* the chapter's Siamese LSTM */
    b.batch = 128;
    lm_layer *lstm = lm_lstm(32);
    lm_tensor *left = lm_input(LM_SHAPE(LM_NONE, 128)), *right = lm_input(LM_SHAPE(LM_NONE, 128));
    lm_tensor *merged = lm_concatenate(LM_TENSORS(lm_call(lstm, left), lm_call(lstm, right)));
    for (int side = 0; side < 2; side++) count(&b, (double)b.batch * 100 * (128 + 32) * 4 * 32, 0);
    lm_tensor *y = dense(&b, merged, 1, 64, LM_SIGMOID, NULL);
    b.model = lm_model_new(LM_TENSORS(left, right), LM_TENSORS(y));
    lm_compile(b.model, .optimizer = lm_rmsprop(), .loss = LM_LOSSES("binary_crossentropy"));
  } else if (!strcmp(name, "D")) { /* the chapter's posts model: three heads, loss weights */
    b.batch = 64;
    int len = 500;
    lm_tensor *in = lm_input(LM_SHAPE(500), .dtype = LM_INT32, .name = "posts");
    lm_tensor *x = lm_call(lm_embedding(50000, 256), in);
    x = conv1d(&b, x, 128, 5, &len, 256, 1);
    x = lm_call(lm_max_pooling1d(5), x);
    len /= 5;
    x = conv1d(&b, x, 256, 5, &len, 128, 0);
    x = conv1d(&b, x, 256, 5, &len, 256, 0);
    x = lm_call(lm_max_pooling1d(5), x);
    len /= 5;
    x = conv1d(&b, x, 256, 5, &len, 256, 0);
    x = conv1d(&b, x, 256, 5, &len, 256, 0);
    x = lm_call(lm_global_max_pooling1d(), x);
    x = dense(&b, x, 128, 256, LM_RELU, NULL);
    lm_tensor *age = dense(&b, x, 1, 128, LM_LINEAR, "age");
    lm_tensor *income = dense(&b, x, 10, 128, LM_SOFTMAX, "income");
    lm_tensor *gender = dense(&b, x, 1, 128, LM_SIGMOID, "gender");
    b.model = lm_model_new(LM_TENSORS(in), LM_TENSORS(age, income, gender));
    lm_compile(b.model, .optimizer = lm_rmsprop(),
               .loss = LM_LOSSES("mse", "categorical_crossentropy", "binary_crossentropy"),
               .loss_weights = LM_LOSS_WEIGHTS(0.25, 1.0, 10.0));
  } else if (!strcmp(name, "E")) { /* the chapter's Inception module */
    b.batch = 16;
    lm_tensor *in = lm_input(LM_SHAPE(64, 64, 3));
    int hw;
    hw = 64;
    lm_tensor *a = conv2d_same(&b, in, 1, 2, &hw, 3, 1);
    hw = 64;
    lm_tensor *bb = conv2d_same(&b, in, 1, 1, &hw, 3, 1);
    bb = conv2d_same(&b, bb, 3, 2, &hw, 128, 0);
    hw = 32;
    lm_tensor *c = lm_call(lm_average_pooling2d(3, .strides = {2}, .padding = LM_SAME), in);
    c = conv2d_same(&b, c, 3, 1, &hw, 3, 1);
    hw = 64;
    lm_tensor *d = conv2d_same(&b, in, 1, 1, &hw, 3, 1);
    d = conv2d_same(&b, d, 3, 1, &hw, 128, 0);
    d = conv2d_same(&b, d, 3, 2, &hw, 128, 0);
    lm_tensor *x = lm_concatenate(LM_TENSORS(a, bb, c, d), .axis = -1);
    x = lm_call(lm_global_average_pooling2d(), x);
    x = dense(&b, x, 10, 512, LM_SOFTMAX, NULL);
    b.model = lm_model_new(LM_TENSORS(in), LM_TENSORS(x));
    lm_compile(b.model, .optimizer = lm_rmsprop(), .loss = LM_LOSSES("categorical_crossentropy"));
  } else if (!strcmp(name, "F") || !strcmp(name, "F1024")) { /* an MLP */
    b.batch = name[1] ? 1024 : 128;
    lm_tensor *in = lm_input(LM_SHAPE(64));
    lm_tensor *x = dense(&b, in, 32, 64, LM_RELU, NULL);
    b.train_macs -= b.fwd_macs; /* no gradient for the input */
    x = dense(&b, x, 32, 32, LM_RELU, NULL);
    x = dense(&b, x, 10, 32, LM_SOFTMAX, NULL);
    b.model = lm_model_new(LM_TENSORS(in), LM_TENSORS(x));
    lm_compile(b.model, .optimizer = lm_rmsprop(), .loss = LM_LOSSES("categorical_crossentropy"));
  }
  return b;
}

/* Random data for n batches: integer inputs in range, one-hot or 0/1 targets. */
static uint32_t next_u32(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(*s >> 33);
}

static lm_array *random_array(lm_tensor *t, int64_t rows, int vocabulary, uint64_t *s) {
  lm_shape shape = lm_tensor_shape(t);
  shape.dim[0] = rows;
  for (int i = 1; i < shape.rank; i++)
    if (shape.dim[i] == LM_NONE) shape.dim[i] = 100; /* the LSTM's steps */
  lm_array *a = lm_array_new(lm_tensor_dtype(t), shape);
  for (int64_t i = 0; i < a->size; i++) {
    if (a->dtype == LM_INT32) lm_array_i32(a)[i] = (int32_t)(next_u32(s) % (uint32_t)vocabulary);
    else lm_array_f32(a)[i] = (float)next_u32(s) / 4294967296.0f - 0.5f;
  }
  return a;
}

static lm_array *random_target(lm_tensor *out, int64_t rows, uint64_t *s) {
  lm_shape shape = lm_tensor_shape(out);
  shape.dim[0] = rows;
  int64_t cols = shape.dim[shape.rank - 1];
  lm_array *a = lm_array_new(LM_FLOAT32, shape);
  for (int64_t r = 0; r < rows; r++) {
    if (cols > 1) lm_array_f32(a)[r * cols + next_u32(s) % (uint32_t)cols] = 1;
    else lm_array_f32(a)[r] = (float)(next_u32(s) % 2);
  }
  return a;
}

/* ---- Timing through the batch hooks ---- */

typedef struct timer {
  double begin, cpu_begin, *ms, *cpu;
  int n;
} timer;

static void batch_begin(lm_callback *cb, int batch, const lm_logs *logs) {
  timer *t = cb->user;
  t->begin = now_ms();
  t->cpu_begin = cpu_ms();
}
static void batch_end(lm_callback *cb, int batch, const lm_logs *logs) {
  timer *t = cb->user;
  t->ms[t->n] = now_ms() - t->begin;
  t->cpu[t->n++] = cpu_ms() - t->cpu_begin;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, by_value);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* FNV-1a over every weight's bytes, layer by layer. */
static uint64_t weights_checksum(const lm_model *m) {
  uint64_t h = 1469598103934665603ull;
  for (int l = 0; l < lm_model_n_layers(m); l++) {
    lm_layer *layer = lm_model_get_layer(m, l);
    lm_array *w;
    for (int i = 0; (w = lm_layer_weight(layer, i, NULL)); i++) {
      const unsigned char *bytes = w->data;
      for (int64_t k = 0; k < w->size * 4; k++) h = (h ^ bytes[k]) * 1099511628211ull;
    }
  }
  return h;
}

int main(int argc, char **argv) {
  const char *name = "F";
  int warmup = 5, steps = 20, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--model")) name = argv[i + 1];
    else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
  }
  lm_set_num_threads(threads);
  lm_set_seed(1);
  bench_model b = build(name);
  if (!b.model || lm_model_status(b.model) != LM_OK) {
    fprintf(stderr, "model %s: %s\n", name, b.model ? lm_model_error(b.model) : "unknown model (A-F, F1024)");
    return 2;
  }
  int n = warmup + steps;
  int64_t rows = (int64_t)n * b.batch;
  lm_tensors ins = lm_model_inputs(b.model), outs = lm_model_outputs(b.model);
  uint64_t s = 42;
  lm_feed x = {.n = ins.n}, y = {.n = outs.n};
  for (int i = 0; i < ins.n; i++) x.item[i] = random_array(ins.t[i], rows, !strcmp(name, "A") ? 2000 : 50000, &s);
  for (int i = 0; i < outs.n; i++) y.item[i] = random_target(outs.t[i], rows, &s);

  double *train_ms = calloc((size_t)n, sizeof *train_ms), *predict_ms = calloc((size_t)n, sizeof *predict_ms);
  double *train_cpu = calloc((size_t)n, sizeof *train_cpu), *predict_cpu = calloc((size_t)n, sizeof *predict_cpu);
  timer tt = {.ms = train_ms, .cpu = train_cpu}, pt = {.ms = predict_ms, .cpu = predict_cpu};
  lm_callback train_cb = {.on_train_batch_begin = batch_begin, .on_train_batch_end = batch_end, .user = &tt};
  lm_callback predict_cb = {.on_predict_batch_begin = batch_begin, .on_predict_batch_end = batch_end, .user = &pt};
  double rss_before = rss_now_mb();
  lm_history *h = lm_fit(b.model, x, y, .epochs = 1, .batch_size = b.batch, .no_shuffle = true,
                         .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(&train_cb));
  if (!h) {
    fprintf(stderr, "fit: %s\n", lm_last_error());
    return 1;
  }
  uint64_t checksum = weights_checksum(b.model);
  double loss = lm_history_last(h, "loss");
  lm_outputs pred = lm_predict(b.model, x, .batch_size = b.batch, .verbose = LM_SILENT,
                               .callbacks = LM_CALLBACKS(&predict_cb));
  if (!pred.n) {
    fprintf(stderr, "predict: %s\n", lm_last_error());
    return 1;
  }
  double train = median(train_ms + warmup, steps), predict = median(predict_ms + warmup, steps);
  printf("{\"framework\": \"lamina\", \"version\": \"%s\", \"model\": \"%s\", \"batch\": %d, \"threads\": %d, "
         "\"params\": %lld, \"train_ms\": %.4f, \"predict_ms\": %.4f, \"train_ms_all\": [",
         LAMINA_VERSION, name, b.batch, threads, (long long)lm_model_count_trainable_params(b.model), train,
         predict);
  for (int i = 0; i < n; i++) printf("%s%.3f", i ? ", " : "", train_ms[i]);
  printf("], \"train_cpu_ms\": %.4f, \"predict_cpu_ms\": %.4f", median(train_cpu + warmup, steps),
         median(predict_cpu + warmup, steps));
  printf(", \"train_flops\": %.6g, \"predict_flops\": %.6g, \"rss_before_mb\": %.1f, \"rss_peak_mb\": %.1f, "
         "\"loss\": %.9g, \"checksum\": \"%016llx\"}\n",
         2 * b.train_macs, 2 * b.fwd_macs, rss_before, rss_peak_mb(), loss, (unsigned long long)checksum);
  lm_outputs_free(&pred);
  lm_history_free(h);
  for (int i = 0; i < x.n; i++) lm_array_free((lm_array *)x.item[i]);
  for (int i = 0; i < y.n; i++) lm_array_free((lm_array *)y.item[i]);
  free(train_ms);
  free(predict_ms);
  free(train_cpu);
  free(predict_cpu);
  lm_session_clear();
  return 0;
}
