/* The chapter's Siamese LSTM: one LSTM layer, called on two inputs, so both branches use
 * and train the same weights; the two encodings are concatenated and scored. Here the
 * label says which of the two sequences has the larger mean, a symmetric question.
 *
 *   siamese_lstm [--samples N] [--epochs N] */
#include <lamina/lamina.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STEPS = 12, FEATURES = 128 };

static uint32_t next(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

int main(int argc, char **argv) {
  int samples = 256, epochs = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--samples")) samples = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--epochs")) epochs = atoi(argv[i + 1]);
  }
  lm_set_seed(5);
  lm_layer *lstm = lm_lstm(32);
  lm_tensor *left_input = lm_input(LM_SHAPE(LM_NONE, FEATURES));
  lm_tensor *left_output = lm_call(lstm, left_input);
  lm_tensor *right_input = lm_input(LM_SHAPE(LM_NONE, FEATURES));
  lm_tensor *right_output = lm_call(lstm, right_input);
  lm_tensor *merged = lm_concatenate(LM_TENSORS(left_output, right_output), .axis = -1);
  lm_tensor *predictions = lm_call(lm_dense(1, .activation = LM_SIGMOID), merged);
  lm_model *model = lm_model_new(LM_TENSORS(left_input, right_input), LM_TENSORS(predictions), .name = "siamese");
  if (lm_model_status(model) != LM_OK) {
    fprintf(stderr, "%s\n", lm_model_error(model));
    return 1;
  }
  lm_summary(model, stdout);
  lm_compile(model, .optimizer = lm_rmsprop(), .loss = LM_LOSSES("binary_crossentropy"), .metrics = LM_METRICS("acc"));

  lm_array *left = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, STEPS, FEATURES));
  lm_array *right = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, STEPS, FEATURES));
  lm_array *labels = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, 1));
  uint32_t s = 13;
  for (int n = 0; n < samples; n++) {
    float bias_l = (float)((next(&s) >> 8) % 100) / 100.0f - 0.5f, bias_r = (float)((next(&s) >> 8) % 100) / 100.0f - 0.5f;
    for (int i = 0; i < STEPS * FEATURES; i++) {
      lm_array_f32(left)[n * STEPS * FEATURES + i] = bias_l + (float)((next(&s) >> 8) % 100) / 200.0f - 0.25f;
      lm_array_f32(right)[n * STEPS * FEATURES + i] = bias_r + (float)((next(&s) >> 8) % 100) / 200.0f - 0.25f;
    }
    lm_array_f32(labels)[n] = bias_l > bias_r;
  }
  /* The shared layer's kernel before training, to show both calls trained one set of weights. */
  const char *name;
  lm_array *kernel = lm_layer_weight(lstm, 0, &name);
  float before = lm_array_f32(kernel)[0];

  lm_history *h = lm_fit(model, LM_FEED(left, right), LM_FEED(labels), .epochs = epochs, .batch_size = 32, .verbose = 2);
  if (!h) {
    fprintf(stderr, "fit: %s\n", lm_last_error());
    return 1;
  }
  const double *loss = lm_history_get(h, "loss");
  int last = lm_history_n_epochs(h) - 1;
  printf("shared LSTM %s[0]: %.5f -> %.5f; %lld parameters; loss %.4f -> %.4f\n", name, before, lm_array_f32(kernel)[0],
         (long long)lm_model_count_params(model), loss[0], loss[last]);
  int ok = loss[last] < loss[0] && lm_array_f32(kernel)[0] != before && lm_model_count_params(model) == 20608 + 65;
  lm_history_free(h);
  lm_array_free(left);
  lm_array_free(right);
  lm_array_free(labels);
  lm_session_clear();
  return ok ? 0 : 1;
}
