/* The chapter's multi-output model: from a social-media post, predict the author's age
 * (regression), income group (10 classes) and gender (binary). Compiled twice, as the
 * chapter shows: losses as a list, then by output name, both with loss weights that
 * balance the heads' scales.
 *
 *   posts_multi_output [--samples N] [--epochs N] */
#include <lamina/lamina.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { VOCABULARY = 50000, INCOME_GROUPS = 10, LENGTH = 500 };

static uint32_t next(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

int main(int argc, char **argv) {
  int samples = 64, epochs = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--samples")) samples = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--epochs")) epochs = atoi(argv[i + 1]);
  }
  lm_set_seed(2);
  lm_tensor *posts = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32, .name = "posts");
  lm_tensor *x = lm_call(lm_embedding(VOCABULARY, 256), posts);
  x = lm_call(lm_conv1d(128, 5, .activation = LM_RELU), x);
  x = lm_call(lm_max_pooling1d(5), x);
  x = lm_call(lm_conv1d(256, 5, .activation = LM_RELU), x);
  x = lm_call(lm_conv1d(256, 5, .activation = LM_RELU), x);
  x = lm_call(lm_max_pooling1d(5), x);
  x = lm_call(lm_conv1d(256, 5, .activation = LM_RELU), x);
  x = lm_call(lm_conv1d(256, 5, .activation = LM_RELU), x);
  x = lm_call(lm_global_max_pooling1d(), x);
  x = lm_call(lm_dense(128, .activation = LM_RELU), x);
  lm_tensor *age = lm_call(lm_dense(1, .name = "age"), x);
  lm_tensor *income = lm_call(lm_dense(INCOME_GROUPS, .activation = LM_SOFTMAX, .name = "income"), x);
  lm_tensor *gender = lm_call(lm_dense(1, .activation = LM_SIGMOID, .name = "gender"), x);
  lm_model *model = lm_model_new(LM_TENSORS(posts), LM_TENSORS(age, income, gender));
  if (lm_model_status(model) != LM_OK) {
    fprintf(stderr, "%s\n", lm_model_error(model));
    return 1;
  }
  lm_summary(model, stdout);

  lm_array *x_posts = lm_array_new(LM_INT32, LM_SHAPE(samples, LENGTH));
  lm_array *y_age = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, 1));
  lm_array *y_income = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, INCOME_GROUPS));
  lm_array *y_gender = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, 1));
  uint32_t s = 11;
  for (int n = 0; n < samples; n++) {
    for (int t = 0; t < LENGTH; t++) lm_array_i32(x_posts)[n * LENGTH + t] = 1 + (int)(next(&s) >> 8) % (VOCABULARY - 1);
    lm_array_f32(y_age)[n] = 20.0f + (float)((next(&s) >> 8) % 40);
    lm_array_f32(y_income)[n * INCOME_GROUPS + (next(&s) >> 8) % INCOME_GROUPS] = 1;
    lm_array_f32(y_gender)[n] = (float)((next(&s) >> 8) % 2);
  }

  /* Losses as a list, in output order... */
  lm_compile(model, .optimizer = lm_rmsprop(),
             .loss = LM_LOSSES("mse", "categorical_crossentropy", "binary_crossentropy"),
             .loss_weights = LM_LOSS_WEIGHTS(0.25, 1.0, 10.0));
  lm_history *h1 = lm_fit(model, LM_FEED(x_posts), LM_FEED(y_age, y_income, y_gender), .epochs = epochs,
                          .batch_size = 32, .verbose = 2);
  /* ...or by output name, with the targets fed by name too. */
  lm_compile(model, .optimizer = lm_rmsprop(),
             .loss = LM_LOSS_DICT("age", "mse", "income", "categorical_crossentropy", "gender", "binary_crossentropy"),
             .loss_weights = LM_LOSS_WEIGHT_DICT({"age", 0.25}, {"income", 1.0}, {"gender", 10.0}));
  lm_history *h2 = lm_fit(model, LM_FEED_NAMED("posts", x_posts),
                          LM_FEED_NAMED("age", y_age, "income", y_income, "gender", y_gender), .epochs = epochs,
                          .batch_size = 32, .verbose = 2);
  int ok = h1 && h2 && lm_history_get(h2, "age_loss") && lm_history_get(h2, "gender_loss");
  if (!ok) fprintf(stderr, "fit: %s\n", lm_last_error());
  lm_history_free(h1);
  lm_history_free(h2);
  lm_array_free(x_posts);
  lm_array_free(y_age);
  lm_array_free(y_income);
  lm_array_free(y_gender);
  lm_session_clear();
  return ok ? 0 : 1;
}
