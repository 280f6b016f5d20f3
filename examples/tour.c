/* The README's tour: two inputs fed by name, three outputs with a loss each and loss
 * weights, a shared layer, and a model called as a layer. Synthetic data with a known
 * answer, so the loss must fall. */
#include <lamina/lamina.h>
#include <stdio.h>

int main(void) {
  lm_set_seed(7);
  lm_tensor *text = lm_input(LM_SHAPE(32), .name = "text");
  lm_tensor *meta = lm_input(LM_SHAPE(8), .name = "meta");

  /* One layer, two calls: both branches train the same weights. */
  lm_layer *shared = lm_dense(16, .activation = LM_RELU, .name = "shared");
  lm_tensor *a = lm_call(shared, text);
  lm_tensor *b = lm_call(lm_dense(16, .activation = LM_RELU), meta);
  lm_tensor *x = lm_concatenate(LM_TENSORS(a, b));

  /* A small model used as a layer. */
  lm_tensor *inner_in = lm_input(LM_SHAPE(32));
  lm_tensor *inner_out = lm_call(lm_dense(32, .activation = LM_TANH), inner_in);
  lm_model *block = lm_model_new(LM_TENSORS(inner_in), LM_TENSORS(inner_out), .name = "block");
  x = lm_call(block, x);

  lm_tensor *age = lm_call(lm_dense(1, .name = "age"), x);
  lm_tensor *income = lm_call(lm_dense(3, .activation = LM_SOFTMAX, .name = "income"), x);
  lm_tensor *gender = lm_call(lm_dense(1, .activation = LM_SIGMOID, .name = "gender"), x);

  lm_model *model = lm_model_new(LM_TENSORS(text, meta), LM_TENSORS(age, income, gender), .name = "tour");
  if (lm_model_status(model) != LM_OK) {
    fprintf(stderr, "%s\n", lm_model_error(model));
    return 1;
  }
  lm_summary(model, stdout);
  lm_compile(model, .optimizer = lm_rmsprop(),
             .loss = LM_LOSS_DICT("age", "mse", "income", "categorical_crossentropy", "gender", "binary_crossentropy"),
             .loss_weights = LM_LOSS_WEIGHTS(0.25, 1.0, 10.0), .metrics = LM_METRIC_DICT("income", "acc", "gender", "acc"));

  /* Targets that follow from the inputs. */
  enum { N = 2048 };
  lm_array *xt = lm_array_new(LM_FLOAT32, LM_SHAPE(N, 32)), *xm = lm_array_new(LM_FLOAT32, LM_SHAPE(N, 8));
  lm_array *ya = lm_array_new(LM_FLOAT32, LM_SHAPE(N, 1)), *yi = lm_array_new(LM_FLOAT32, LM_SHAPE(N, 3)),
           *yg = lm_array_new(LM_FLOAT32, LM_SHAPE(N, 1));
  uint32_t s = 1;
  for (int n = 0; n < N; n++) {
    float sum_t = 0, sum_m = 0;
    for (int j = 0; j < 32; j++) sum_t += lm_array_f32(xt)[n * 32 + j] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (int j = 0; j < 8; j++) sum_m += lm_array_f32(xm)[n * 8 + j] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    lm_array_f32(ya)[n] = sum_t + 2 * sum_m;
    lm_array_f32(yi)[n * 3 + (sum_t < -0.5f ? 0 : sum_t < 0.5f ? 1 : 2)] = 1;
    lm_array_f32(yg)[n] = sum_m > 0;
  }

  lm_history *h = lm_fit(model, LM_FEED_NAMED("text", xt, "meta", xm), LM_FEED(ya, yi, yg), .epochs = 10,
                         .batch_size = 64, .validation_split = 0.2, .verbose = 2);
  if (!h) {
    fprintf(stderr, "fit: %s\n", lm_last_error());
    return 1;
  }
  const double *loss = lm_history_get(h, "loss");
  int n = lm_history_n_epochs(h);
  printf("loss %.4f -> %.4f, val_gender_acc %.4f\n", loss[0], loss[n - 1], lm_history_last(h, "val_gender_acc"));
  int ok = loss[n - 1] < 0.5 * loss[0];

  lm_history_free(h);
  lm_array *arrays[] = {xt, xm, ya, yi, yg};
  for (int i = 0; i < 5; i++) lm_array_free(arrays[i]);
  lm_session_clear();
  return ok ? 0 : 1;
}
