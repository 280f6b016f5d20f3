/* Trains a small two-input model with the TensorBoard callback, then writes what the logs
 * should hold as JSON (the History, the final weights, the model's layers) for
 * tools/tensorboard/check_logs.py to compare with what TensorBoard itself reads.
 *
 * Usage: tb_run LOGDIR EXPECTED.json */
#include <lamina/lamina.h>
#include <lamina/tensorboard.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EPOCHS 3
#define BATCH 16
#define SAMPLES 200
#define UPDATE_FREQ 4
#define VOCAB 50
#define TOKENS 6

static void put_floats(FILE *f, const float *v, int64_t n) {
  fputc('[', f);
  for (int64_t i = 0; i < n; i++) fprintf(f, "%s%.9g", i ? ", " : "", (double)v[i]);
  fputc(']', f);
}

static void put_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s LOGDIR EXPECTED.json\n", argv[0]);
    return 2;
  }
  lm_set_seed(42);
  lm_tensor *tokens = lm_input(LM_SHAPE(TOKENS), .dtype = LM_INT32, .name = "tokens");
  lm_tensor *meta = lm_input(LM_SHAPE(4), .name = "meta");
  lm_tensor *t = lm_call(lm_flatten(), lm_call(lm_embedding(VOCAB, 8), tokens));
  lm_tensor *m = lm_call(lm_dense(8, .activation = LM_TANH), meta);
  lm_tensor *x = lm_concatenate(LM_TENSORS(t, m));
  x = lm_call(lm_dense(16, .activation = LM_RELU), x);
  x = lm_call(lm_dropout(0.2), x);
  lm_tensor *y = lm_call(lm_dense(1, .activation = LM_SIGMOID, .name = "score"), x);
  lm_model *model = lm_model_new(LM_TENSORS(tokens, meta), LM_TENSORS(y), .name = "tb_run");
  if (lm_model_status(model)) {
    fprintf(stderr, "%s\n", lm_model_error(model));
    return 1;
  }
  lm_compile(model, .optimizer = lm_adam(.learning_rate = 0.01), .loss = LM_LOSSES("binary_crossentropy"),
             .metrics = LM_METRICS("acc"));

  /* A learnable target: the label is whether token 3 appears or meta[0] > 0. */
  lm_array *xt = lm_array_new(LM_INT32, LM_SHAPE(SAMPLES, TOKENS)), *xm = lm_array_new(LM_FLOAT32, LM_SHAPE(SAMPLES, 4));
  lm_array *ys = lm_array_new(LM_FLOAT32, LM_SHAPE(SAMPLES, 1));
  uint32_t r = 12345;
  for (int i = 0; i < SAMPLES; i++) {
    int hit = 0;
    for (int k = 0; k < TOKENS; k++) {
      r = r * 1664525u + 1013904223u;
      int tok = (int)(r >> 16) % VOCAB;
      lm_array_i32(xt)[i * TOKENS + k] = tok;
      hit |= tok == 3;
    }
    for (int k = 0; k < 4; k++) {
      r = r * 1664525u + 1013904223u;
      lm_array_f32(xm)[i * 4 + k] = (float)(r >> 8) / 16777216.0f - 0.5f;
    }
    lm_array_f32(ys)[i] = (float)(hit || lm_array_f32(xm)[i * 4] > 0.2f);
  }

  lm_callback *cb = lm_tensorboard(.log_dir = argv[1], .histogram_freq = 1, .update_freq = UPDATE_FREQ,
                                   .embeddings_freq = 1, .write_images = true);
  lm_history *h = lm_fit(model, LM_FEED(xt, xm), LM_FEED(ys), .epochs = EPOCHS, .batch_size = BATCH,
                         .validation_split = 0.2, .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(cb));
  if (!h || lm_history_n_epochs(h) != EPOCHS) {
    fprintf(stderr, "fit failed: %s\n", lm_last_error());
    return 1;
  }

  FILE *f = fopen(argv[2], "w");
  if (!f) {
    perror(argv[2]);
    return 1;
  }
  int train_samples = SAMPLES - SAMPLES / 5;
  fprintf(f, "{\"epochs\": %d, \"steps_per_epoch\": %d, \"update_freq\": %d, \"histogram_freq\": 1,\n", EPOCHS,
          (train_samples + BATCH - 1) / BATCH, UPDATE_FREQ);
  fprintf(f, " \"learning_rate\": %.9g,\n \"history\": {", lm_model_learning_rate(model));
  for (int k = 0; k < lm_history_n_keys(h); k++) {
    const char *key = lm_history_key(h, k);
    fprintf(f, "%s\n  ", k ? "," : "");
    put_string(f, key);
    fputs(": [", f);
    for (int e = 0; e < EPOCHS; e++) fprintf(f, "%s%.17g", e ? ", " : "", lm_history_get(h, key)[e]);
    fputc(']', f);
  }
  fputs("},\n \"layers\": [", f);
  for (int i = 0; i < lm_model_n_layers(model); i++) {
    lm_layer *layer = lm_model_get_layer(model, i);
    fprintf(f, "%s{\"name\": ", i ? ", " : "");
    put_string(f, lm_layer_name(layer));
    fputs(", \"class_name\": ", f);
    put_string(f, lm_layer_class(layer));
    fputc('}', f);
  }
  fputs("],\n \"weights\": {", f);
  int first = 1;
  for (int i = 0; i < lm_model_n_layers(model); i++) {
    lm_layer *layer = lm_model_get_layer(model, i);
    const char *wname;
    lm_array *w;
    for (int k = 0; (w = lm_layer_weight(layer, k, &wname)); k++) {
      fprintf(f, "%s\n  \"%s/%s\": {\"shape\": [", first ? "" : ",", lm_layer_name(layer), wname);
      for (int d = 0; d < w->shape.rank; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)w->shape.dim[d]);
      fputs("], \"values\": ", f);
      put_floats(f, lm_array_f32(w), w->size);
      fputc('}', f);
      first = 0;
    }
  }
  fputs("}}\n", f);
  fclose(f);

  lm_history_free(h);
  lm_callback_free(cb);
  lm_array_free(xt);
  lm_array_free(xm);
  lm_array_free(ys);
  lm_session_clear();
  return 0;
}
