/* The chapter's ActivationLogger, a callback written by the user: at the end of every
 * epoch it runs the first validation sample through the model and saves what every layer
 * made of it to activations_at_epoch_<n>.npz, which numpy.load opens:
 *
 *   class ActivationLogger(keras.callbacks.Callback):
 *       def set_model(self, model):
 *           self.model = model
 *           layer_outputs = [layer.output for layer in model.layers]
 *           self.activations_model = keras.models.Model(model.input, layer_outputs)
 *       def on_epoch_end(self, epoch, logs=None):
 *           validation_sample = self.validation_data[0][0:1]
 *           activations = self.activations_model.predict(validation_sample)
 *           np.savez('activations_at_epoch_' + str(epoch) + '.npz', activations)
 *
 * Each array is saved under its layer's name (np.savez of one list would need an object
 * array, which numpy refuses to load by default). The data: 600 noisy waves, slow or fast,
 * which a small 1D convnet tells apart.
 *
 *   activation_logger [--epochs N] [--out DIR]
 *   python3 -c "import numpy as np; d = np.load('activations_at_epoch_0.npz'); print({k: d[k].shape for k in d})"
 */
#define _POSIX_C_SOURCE 200809L /* mkdir */
#include <lamina/lamina.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct activation_logger {
  lm_model *activations_model; /* built once, at the first epoch's end */
  const char *dir;
  int saved;
  lm_status status;
} activation_logger;

static void on_epoch_end(lm_callback *cb, int epoch, const lm_logs *logs) {
  (void)logs;
  activation_logger *log = cb->user;
  lm_model *model = cb->model;
  if (cb->n_validation_x < 1) {
    fprintf(stderr, "ActivationLogger: fit has no validation data\n");
    log->status = LM_ERROR_STATE;
    lm_model_stop_training(model);
    return;
  }
  if (!log->activations_model) {
    /* Keras's [layer.output for layer in model.layers], InputLayers aside (their output is
     * the input itself); a model has at most LM_MAX_OUTPUTS outputs. */
    lm_tensors outputs = {0};
    for (int i = 0; i < lm_model_n_layers(model) && outputs.n < LM_MAX_OUTPUTS; i++) {
      lm_layer *layer = lm_model_get_layer(model, i);
      if (strcmp(lm_layer_class(layer), "InputLayer")) outputs.t[outputs.n++] = lm_layer_output(layer, 0, 0);
    }
    log->activations_model = lm_model_new(lm_model_inputs(model), outputs, .name = "activations");
    if (lm_model_status(log->activations_model) != LM_OK) {
      fprintf(stderr, "ActivationLogger: %s\n", lm_model_error(log->activations_model));
      log->status = lm_model_status(log->activations_model);
      lm_model_stop_training(model);
      return;
    }
  }
  /* validation_data[0][0:1]: a view of the first row of each validation input. */
  lm_feed feed = {.n = cb->n_validation_x};
  lm_array *rows[LM_MAX_TENSORS];
  for (int k = 0; k < cb->n_validation_x; k++) {
    const lm_array *v = cb->validation_x[k];
    lm_shape one = v->shape;
    one.dim[0] = 1;
    rows[k] = lm_array_wrap(v->dtype, one, v->data);
    feed.item[k] = rows[k];
  }
  lm_outputs acts = lm_predict(log->activations_model, feed, .verbose = LM_SILENT);
  for (int k = 0; k < cb->n_validation_x; k++) lm_array_free(rows[k]);
  if (acts.n == 0) {
    fprintf(stderr, "ActivationLogger: predict: %s\n", lm_last_error());
    log->status = LM_ERROR_STATE;
    lm_model_stop_training(model);
    return;
  }
  /* Each array is named after its layer: the model's layers, InputLayers aside, in the
   * order the outputs were listed. */
  const char *names[LM_MAX_OUTPUTS] = {0};
  for (int i = 0, k = 0; i < lm_model_n_layers(model) && k < acts.n; i++) {
    lm_layer *layer = lm_model_get_layer(model, i);
    if (strcmp(lm_layer_class(layer), "InputLayer")) names[k++] = lm_layer_name(layer);
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/activations_at_epoch_%d.npz", log->dir, epoch);
  lm_status st = lm_save_npz(path, names, (const lm_array *const *)acts.a, acts.n);
  lm_outputs_free(&acts);
  if (st != LM_OK) {
    fprintf(stderr, "ActivationLogger: %s\n", lm_last_error());
    log->status = st;
    lm_model_stop_training(model);
    return;
  }
  printf("ActivationLogger: saved %s\n", path);
  log->saved++;
}

int main(int argc, char **argv) {
  int epochs = 3;
  const char *dir = ".";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--epochs") && i + 1 < argc) epochs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) dir = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--epochs N] [--out DIR]\n", argv[0]);
      return 2;
    }
  }
  if (epochs < 1) {
    fprintf(stderr, "activation_logger: --epochs must be >= 1\n");
    return 2;
  }
  mkdir(dir, 0777);

  /* Waves of 32 steps, slow (label 0) or fast (label 1), with a random phase and noise. */
  enum { N = 600, STEPS = 32 };
  lm_array *x = lm_array_new(LM_FLOAT32, LM_SHAPE(N, STEPS, 1)), *y = lm_array_new(LM_FLOAT32, LM_SHAPE(N, 1));
  uint32_t s = 12345;
#define UNIFORM() ((float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f)
  for (int n = 0; n < N; n++) {
    int fast = n % 2;
    float freq = fast ? 0.9f : 0.25f, phase = 6.2831853f * UNIFORM();
    for (int t = 0; t < STEPS; t++)
      lm_array_f32(x)[n * STEPS + t] = sinf(freq * (float)t + phase) + 0.3f * (UNIFORM() - 0.5f);
    lm_array_f32(y)[n] = (float)fast;
  }

  lm_set_seed(42);
  lm_tensor *in = lm_input(LM_SHAPE(STEPS, 1), .name = "wave");
  lm_tensor *h = lm_call(lm_conv1d(8, 5, .activation = LM_RELU), in);
  h = lm_call(lm_max_pooling1d(2), h);
  h = lm_call(lm_flatten(), h);
  h = lm_call(lm_dense(16, .activation = LM_RELU), h);
  lm_tensor *out = lm_call(lm_dense(1, .activation = LM_SIGMOID), h);
  lm_model *model = lm_model_new(LM_TENSORS(in), LM_TENSORS(out), .name = "waves");
  if (lm_model_status(model) != LM_OK) {
    fprintf(stderr, "%s\n", lm_model_error(model));
    return 1;
  }
  lm_summary(model, stdout);
  lm_compile(model, .optimizer = lm_rmsprop(), .loss = LM_LOSSES("binary_crossentropy"), .metrics = LM_METRICS("acc"));

  activation_logger state = {.dir = dir};
  lm_callback logger = {.on_epoch_end = on_epoch_end, .user = &state};
  lm_history *hist = lm_fit(model, LM_FEED(x), LM_FEED(y), .epochs = epochs, .batch_size = 32, .validation_split = 0.2,
                            .verbose = 2, .callbacks = LM_CALLBACKS(&logger));
  if (!hist || state.status != LM_OK || state.saved != epochs) {
    fprintf(stderr, "activation_logger: %s\n", hist ? "the logger failed" : lm_last_error());
    return 1;
  }

  /* Read the last file back: one array per layer, the first sample's activations. */
  char path[1024], **names;
  lm_array **arrays;
  int n;
  snprintf(path, sizeof path, "%s/activations_at_epoch_%d.npz", dir, epochs - 1);
  if (lm_load_npz(path, &names, &arrays, &n) != LM_OK) {
    fprintf(stderr, "activation_logger: %s\n", lm_last_error());
    return 1;
  }
  int ok = n == lm_model_n_layers(model) - 1;
  for (int i = 0; i < n; i++) {
    char shape[96];
    printf("  %-16s %s\n", names[i], lm_shape_format(arrays[i]->shape, shape, sizeof shape));
    ok &= arrays[i]->shape.dim[0] == 1;
  }
  /* The last array is the model's prediction for the first validation sample. */
  lm_outputs pred = lm_predict(model, LM_FEED(x), .verbose = LM_SILENT);
  int first_val = (int)(N * 0.8);
  ok &= pred.n == 1 && fabsf(lm_array_f32(arrays[n - 1])[0] - lm_array_f32(pred.a[0])[first_val]) < 1e-5f;
  printf("Final val_acc %.4f; activations of %d layers read back from %s: %s\n", lm_history_last(hist, "val_acc"), n, path,
         ok ? "ok" : "WRONG");

  lm_outputs_free(&pred);
  lm_npz_free(names, arrays, n);
  lm_history_free(hist);
  lm_array_free(x);
  lm_array_free(y);
  lm_session_clear();
  return ok ? 0 : 1;
}
