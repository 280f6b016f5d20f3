/* The chapter's residual connections: an identity shortcut where the shapes already
 * agree, and a strided 1x1 convolution that projects the shortcut where they do not.
 * Adding mismatched shapes without the projection is refused with both shapes named.
 *
 *   residual_connections [--samples N] [--epochs N] */
#include <lamina/lamina.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lm_tensor *conv3(lm_tensor *x) {
  return lm_call(lm_conv2d(128, 3, .activation = LM_RELU, .padding = LM_SAME), x);
}

static uint32_t next(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

int main(int argc, char **argv) {
  int samples = 16, epochs = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--samples")) samples = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--epochs")) epochs = atoi(argv[i + 1]);
  }
  lm_set_seed(4);
  lm_tensor *x = lm_input(LM_SHAPE(16, 16, 128));

  /* Identity residual: the output has x's shape, so x is added as it is. */
  lm_tensor *y = conv3(conv3(conv3(x)));
  y = lm_add(LM_TENSORS(y, x));

  /* Projection residual: pooling halves the feature maps, so the shortcut is projected. */
  lm_tensor *z = conv3(conv3(y));
  z = lm_call(lm_max_pooling2d(2, .strides = {2}), z);
  lm_tensor *residual = lm_call(lm_conv2d(128, 1, .strides = {2}, .padding = LM_SAME), y);
  z = lm_add(LM_TENSORS(z, residual));

  /* Without the projection the shapes do not fit, and lamina says so. */
  lm_tensor *wrong = lm_add(LM_TENSORS(lm_call(lm_max_pooling2d(2), y), y));
  printf("Without the projection: %s\n", lm_tensor_error(wrong));
  if (lm_tensor_status(wrong) != LM_ERROR_SHAPE) return 1;

  lm_tensor *out = lm_call(lm_dense(1), lm_call(lm_global_average_pooling2d(), z));
  lm_model *model = lm_model_new(LM_TENSORS(x), LM_TENSORS(out), .name = "residual");
  if (lm_model_status(model) != LM_OK) {
    fprintf(stderr, "%s\n", lm_model_error(model));
    return 1;
  }
  lm_summary(model, stdout);
  lm_compile(model, .optimizer = lm_rmsprop(), .loss = LM_LOSSES("mse"));
  lm_array *images = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, 16, 16, 128));
  lm_array *targets = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, 1));
  uint32_t s = 9;
  for (int64_t i = 0; i < images->size; i++) lm_array_f32(images)[i] = (float)((next(&s) >> 8) % 256) / 256.0f;
  for (int n = 0; n < samples; n++) lm_array_f32(targets)[n] = lm_array_f32(images)[(int64_t)n * 16 * 16 * 128];
  lm_history *h = lm_fit(model, LM_FEED(images), LM_FEED(targets), .epochs = epochs, .batch_size = 8, .verbose = 2);
  if (!h) fprintf(stderr, "fit: %s\n", lm_last_error());
  int ok = h != NULL;
  lm_history_free(h);
  lm_array_free(images);
  lm_array_free(targets);
  lm_session_clear();
  return ok ? 0 : 1;
}
